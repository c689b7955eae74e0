"""`quadpipe view`: the frames it plays are the stored ones with the command in force, the keys
pause and step, and without a display it says so in one line and points to the mp4 instead."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TINY_EXPERT, TINY_GEN

from quadpipe.cli import main
from quadpipe.data import playback
from quadpipe.data.generate import generate_shard
from quadpipe.data.replay import id_ranges, replay
from quadpipe.errors import QuadpipeError
from quadpipe.sim.physics import PushRanges
from quadpipe.sim.randomize import RandomizeConfig
from quadpipe.sim.viewer import KEY_HOME, KEY_LEFT, KEY_RIGHT, KEY_SPACE, Transport, display_problem


@pytest.fixture(scope="module")
def lean_rand_shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two randomised trajectories (with pushes) in the lean layout: qpos stored, no states."""
    out = tmp_path_factory.mktemp("view") / "shard_0.h5"
    rand = RandomizeConfig(data=True, pushes=PushRanges(interval_s=(0.2, 0.4),
                                                        velocity=(0.3, 0.8)))
    generate_shard(out, num=2, seed=3, shard=0, expert=TINY_EXPERT,
                   gen=dataclasses.replace(TINY_GEN, layout="lean"), rand=rand, progress=False)
    return out


def _stored(path: Path, tid: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    with h5py.File(path) as f:
        g = f[f"trajectory_{tid:05d}"]
        return (g["qpos"][()], g["command_sequence"][()], float(g.attrs["dt"]),
                float(g.attrs["cmd_duration"]))


def _headless_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}


@pytest.mark.parametrize("fps", [60.0, 25.0])
def test_frames_are_the_stored_rows_with_the_command_in_force(tiny_shard, fps):
    qpos, commands, dt, cmd_duration = _stored(tiny_shard, 3)
    frames, model = playback.load(tiny_shard, 3, fps)
    assert model.nq == qpos.shape[1]
    # one frame every 1/fps s of simulated time, from the first stored row to the last
    assert frames.steps[0] == 0 and frames.steps[-1] == len(qpos) - 1
    k = np.arange(len(frames.steps) - 1)
    np.testing.assert_allclose(frames.times[:-1], k / fps, rtol=0, atol=dt / 2 + 1e-12)
    np.testing.assert_array_equal(frames.qpos, qpos[frames.steps])
    assert frames.qpos.dtype == qpos.dtype
    # the command held at each frame: the sequence, each code for cmd_duration s
    held = commands[(frames.steps * dt / cmd_duration + 1e-9).astype(int)]
    np.testing.assert_array_equal(frames.commands, held)
    assert [commands[i] for i in sorted(set(frames.command_index))] == list(commands)
    assert frames.caption(0).endswith(f"(command 1 of {len(commands)})")


def test_lean_randomised_frames_use_the_stored_qpos_and_the_drawn_physics(lean_rand_shard):
    qpos, commands, _, _ = _stored(lean_rand_shard, 2)
    frames, model = playback.load(lean_rand_shard, 2, fps=round(1 / TINY_EXPERT.dt))  # every row
    np.testing.assert_array_equal(frames.qpos, qpos)
    assert len(frames.command_sequence) == len(commands)
    # the model replay re-simulates the trajectory with, not the nominal one
    replayed = replay(lean_rand_shard, 2)
    assert replayed.report["randomized"] and replayed.report["reproduced"]
    for field in ("body_mass", "dof_damping", "geom_friction", "actuator_gear"):
        np.testing.assert_array_equal(getattr(model, field), getattr(replayed.model, field))


def test_a_missing_trajectory_names_the_file_and_the_ids(tiny_shard, capsys):
    with pytest.raises(QuadpipeError, match=rf"{tiny_shard} has no trajectory 9 .*ids 1\.\.6"):
        playback.load(tiny_shard, 9)
    assert main(["view", str(tiny_shard), "--trajectory", "9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ids 1..6" in err[0] and "--trajectory" in err[0]
    assert id_ranges([1, 2, 3, 5, 8, 9]) == "1..3, 5, 8..9" and id_ranges([]) == "none"


def test_view_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["view", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--trajectory" in out and "--fps" in out and "--speed" in out


def test_headless_view_exits_with_one_line_naming_the_mp4_target(tiny_shard):
    run = subprocess.run([sys.executable, "-m", "quadpipe", "view", str(tiny_shard),
                          "--trajectory", "3"], capture_output=True, text=True,
                         env=_headless_env(), timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "no display" in lines[0]
    assert "snakemake --cores 1 results/replay/trajectory_00003.mp4" in lines[0]


def test_an_unreachable_display_is_one_line_too(tiny_shard):
    """DISPLAY set but nothing there: GLFW's own reason, in one line, not a hang."""
    env = {**_headless_env(), "DISPLAY": ":187"}
    run = subprocess.run([sys.executable, "-m", "quadpipe", "view", str(tiny_shard)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "results/replay/trajectory_00001.mp4" in lines[0], run.stderr


def test_display_is_needed_on_linux_only():
    assert display_problem({}, "linux") is not None
    assert display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({}, "darwin") is None


def test_transport_plays_in_real_time_pauses_and_steps():
    t = Transport(num_frames=100, fps=50)
    assert t.tick(10.0) == 0 and t.tick(10.5) == 25  # 0.5 s at 50 frames/s
    t.press(KEY_SPACE, 10.5)
    assert t.paused and t.tick(20.0) == 25  # paused: the clock does not move it
    t.press(KEY_RIGHT, 20.0)
    t.press(KEY_RIGHT, 20.0)
    t.press(KEY_LEFT, 20.0)
    assert t.tick(30.0) == 26
    t.press(KEY_SPACE, 30.0)  # resumes from where the steps left it
    assert t.tick(30.2) == 36
    t.press(KEY_LEFT, 30.2)  # a step pauses
    assert t.paused and t.tick(40.0) == 35


def test_transport_stops_at_the_end_and_space_starts_again():
    t = Transport(num_frames=10, fps=10, speed=2.0)
    assert t.tick(0.0) == 0 and t.tick(0.25) == 5  # twice real time
    assert t.tick(5.0) == 9 and t.paused
    t.press(KEY_RIGHT, 5.0)
    assert t.tick(5.0) == 9  # no frame after the last
    t.press(KEY_SPACE, 6.0)
    assert not t.paused and t.tick(6.0) == 0
    t.press(KEY_HOME, 6.3)
    assert t.tick(6.3) == 0 and t.tick(6.4) == 2
    t.press(ord("x"), 6.4)  # other keys are the viewer's own
    assert t.tick(6.4) == 2
