"""What `quadpipe view` shows of a stored trajectory: its qpos and command at each frame.

The frames are the stored rows themselves (no re-simulation), sampled at a playback rate, each
with the command in force; kept apart from the viewer window (quadpipe.sim.viewer) so that what
is shown is testable without a display. The model is rebuilt the way `replay` does: from the
file's expert settings and the trajectory's randomised physics, if any.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.data import dataset
from quadpipe.data.replay import require_trajectory, stored_model
from quadpipe.errors import QuadpipeError
from quadpipe.sim.commands import NAMES
from quadpipe.sim.render import frame_indices


@dataclasses.dataclass(frozen=True)
class Playback:
    """A stored trajectory as F frames, one every 1/fps s of simulated time.

    steps (F,) int: the stored row each frame shows; qpos (F, 19): those rows, as stored;
    times (F,) s: steps * dt; command_index (F,) int: position in `command_sequence` (n,) of the
    command in force; commands (F,) int32: its code 1..5 (quadpipe.sim.commands).
    """

    steps: np.ndarray
    qpos: np.ndarray
    times: np.ndarray
    command_index: np.ndarray
    commands: np.ndarray
    command_sequence: np.ndarray
    fps: float
    dt: float
    cmd_duration: float

    def caption(self, k: int) -> str:
        """The command of frame k for a person: "forward (command 3 of 5)"."""
        i = int(self.command_index[k])
        return f"{NAMES[int(self.commands[k])]} (command {i + 1} of {len(self.command_sequence)})"


def frames(qpos: np.ndarray, command_sequence: np.ndarray, dt: float, cmd_duration: float,
           fps: float = 60.0) -> Playback:
    """Sample qpos (T, nq), stored every `dt` s, at `fps` frames per second of simulated time.

    Frame k shows the row nearest k/fps s, as in the mp4s (quadpipe.sim.render), and the last
    frame the last row; each command of `command_sequence` is held `cmd_duration` s, as the
    expert held it.
    """
    if fps <= 0:
        raise QuadpipeError(f"playback rate must be positive, got fps={fps}")
    qpos = np.asarray(qpos)
    steps = frame_indices(len(qpos), dt, fps)
    if steps[-1] != len(qpos) - 1:  # end on the last stored row, where the robot stopped
        steps = np.append(steps, len(qpos) - 1)
    steps_per_command = max(1, int(round(cmd_duration / dt)))
    command_sequence = np.asarray(command_sequence, dtype=np.int32)
    index = np.minimum(steps // steps_per_command, len(command_sequence) - 1)
    return Playback(steps=steps, qpos=qpos[steps], times=steps * dt, command_index=index,
                    commands=command_sequence[index], command_sequence=command_sequence,
                    fps=float(fps), dt=float(dt), cmd_duration=float(cmd_duration))


def load(path: str | Path, trajectory_id: int, fps: float = 60.0) -> tuple[Playback, Any]:
    """The frames of trajectory `trajectory_id` of a dataset or shard file, and the MuJoCo model
    (mujoco.MjModel) it was simulated with.

    Reads only qpos and the command sequence (a lean file stores qpos too).
    """
    from quadpipe.sim import randomize

    with dataset.open_file(path) as f:
        name = require_trajectory(f, path, trajectory_id, "pick one of those with --trajectory")
        g = f[name]
        qpos = dataset.time_series(g, "qpos")
        commands = g["command_sequence"][()]
        dt, cmd_duration = float(g.attrs["dt"]), float(g.attrs["cmd_duration"])
        drawn = g.attrs.get(randomize.PHYSICS_ATTR)
        config_json = str(f.attrs["config_json"])
    _, model, _ = stored_model(config_json, None if drawn is None else str(drawn))
    return frames(qpos, commands, dt, cmd_duration, fps), model
