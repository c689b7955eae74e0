"""What the dataset exporters share: the trajectories at a chosen rate, in quadpipe's split.

A quadpipe trajectory has one row per physics step (1 ms on the original profile, 4 ms on the
default one); other libraries train on control-rate frames. Frame j of a trajectory is step `j *
every` (every >= 1; by default a frame every 20 ms, 50 Hz, the stride the policy trains on), and
holds that step's state (before the step) and the torque applied during it (data.dataset's
pairing). `every` keeps the torque of the frame's own step rather than an average: it is what the
expert commanded in that state, so a learner sees (state, action) pairs of the expert and nothing
interpolated.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.config import steps_in
from quadpipe.data import dataset
from quadpipe.errors import ConfigError, DatasetError
from quadpipe.sim.commands import NAMES

DEFAULT_EVERY = None  # a frame every FRAME_MS, in the file's steps
FRAME_MS = 20.0
ROBOT = "unitree_a1"


@dataclasses.dataclass
class Frames:
    """One trajectory at the export rate: n frames, arrays in the file's storage dtype."""

    name: str  # the quadpipe group, trajectory_00001
    split: str  # "train" or "valid": the split stored in the merged dataset
    steps: np.ndarray  # (n,) int64 simulation step of each frame
    state: np.ndarray  # (n, 36) the original's state vector (quadpipe.sim.state)
    qpos: np.ndarray  # (n, 19)
    qvel: np.ndarray  # (n, 18)
    action: np.ndarray  # (n, 12) N m
    command: np.ndarray  # (n,) int32 command code 1..5 in force (quadpipe.sim.commands)
    commands: np.ndarray  # (m,) the trajectory's command sequence
    # the same at the step of the next frame (for the last frame: the trajectory's last step)
    next_state: np.ndarray
    next_qpos: np.ndarray
    next_qvel: np.ndarray
    next_command: np.ndarray

    @property
    def task(self) -> str:
        """The command sequence in words: what the expert was told to do in this trajectory."""
        return ", ".join(NAMES[int(c)] for c in self.commands)


def check_every(every: int) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"--every must be an integer >= 1, got {every!r}")
    return every


def resolve_every(path: str | Path, every: int | None) -> int:
    """`every`, or None: the steps of the file's physics in FRAME_MS (50 Hz)."""
    if every is not None:
        return check_every(every)
    with dataset.open_file(path) as f:
        return steps_in(FRAME_MS, float(f.attrs["dt"]))


def command_per_step(commands: np.ndarray, num_steps: int, cmd_duration: float, dt: float
                     ) -> np.ndarray:
    """(num_steps,) the code in force at each step: each command lasts cmd_duration / dt steps."""
    per = int(round(cmd_duration / dt))
    idx = np.minimum(np.arange(num_steps) // per, len(commands) - 1)
    return np.asarray(commands, dtype=np.int32)[idx]


def read_frames(path: str | Path, every: int | None = DEFAULT_EVERY) -> Iterator[Frames]:
    """Every trajectory of a quadpipe file at the export rate, in id order."""
    every = resolve_every(path, every)
    with dataset.open_file(path) as f:
        names = dataset.trajectory_names(f)
        if not names:
            raise DatasetError(f"{path}: holds no trajectories; generate some first")
        for name, split in zip(names, dataset.split_of(f, names), strict=True):
            t = dataset.read_trajectory(f, name)
            num = len(t.states)
            steps = np.arange(0, num, every, dtype=np.int64)
            cmd = command_per_step(t.command_sequence, num, float(t.attrs["cmd_duration"]),
                                   float(t.attrs["dt"]))
            nxt = np.minimum(steps + every, num - 1)
            yield Frames(name, split, steps, t.states[steps], t.qpos[steps], t.qvel[steps],
                         t.actions[steps], cmd[steps], np.asarray(t.command_sequence),
                         t.states[nxt], t.qpos[nxt], t.qvel[nxt], cmd[nxt])


def settings(path: str | Path, every: int | None) -> dict[str, Any]:
    """The robot and the generation settings of the file, for the export's own metadata."""
    every = resolve_every(path, every)
    with dataset.open_file(path) as f:
        attrs = dict(f.attrs)
    try:
        config = json.loads(attrs["config_json"])
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: root attribute config_json is missing or unreadable "
                           f"({exc}); regenerate the file with `quadpipe generate`") from exc
    dt = float(attrs["dt"])
    return {"robot": ROBOT, "model": "quadpipe/assets/a1.xml (MuJoCo)", "source": str(path),
            "dt_s": dt, "every": every, "rate_hz": 1.0 / (dt * every),
            "action": "joint torques, N m, actuator order FR, FL, RR, RL x (hip, thigh, calf)",
            "command_codes": {str(k): v for k, v in NAMES.items()}, "config": config}
