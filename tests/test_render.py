"""The video renderer draws real frames of a walking robot into a browser-playable mp4."""

from __future__ import annotations

import subprocess

import mujoco
import numpy as np
import pytest

from quadpipe.data.dataset import open_file, trajectory_names
from quadpipe.errors import QuadpipeError
from quadpipe.sim.model import build_model
from quadpipe.sim.render import _Path, frame_indices, render_frames, render_video


def _walk(tiny_shard):
    with open_file(tiny_shard) as f:
        g = f[trajectory_names(f)[0]]
        return np.asarray(g["qpos"], dtype=float), float(g.attrs["dt"])


def test_frame_indices_real_time() -> None:
    idx = frame_indices(1001, 0.001, 30)  # 1 s of simulation -> 31 frames (t = 0 ... 1 s)
    assert len(idx) == 31 and idx[0] == 0 and idx[-1] <= 1000
    assert np.all(np.diff(idx) > 0)


def test_video_decodes_with_expected_frames(tiny_shard, tmp_path) -> None:
    import imageio.v2 as imageio
    import imageio_ffmpeg

    qpos, dt = _walk(tiny_shard)
    qpos = qpos[:600]
    target = qpos[:, :2] + np.array([0.0, 0.1])
    out = render_video(build_model(), qpos, tmp_path / "v" / "walk.mp4", dt, fps=30,
                       target_xy=target)
    assert out.exists() and out.stat().st_size > 1000
    expected = len(frame_indices(len(qpos), dt, 30))
    frames = [np.asarray(fr) for fr in imageio.get_reader(out)]
    assert len(frames) == expected
    assert frames[0].shape == (240, 320, 3)
    info = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(out)],
                          capture_output=True, text=True).stderr
    assert "h264" in info and "yuv420p" in info


def test_frames_change_as_robot_moves(tiny_shard) -> None:
    qpos, dt = _walk(tiny_shard)
    frames = render_frames(build_model(), qpos[:900], dt, fps=10)
    assert frames.std() > 5  # not a blank image
    diffs = [np.abs(frames[i].astype(int) - frames[0]).mean() for i in range(1, len(frames))]
    assert max(diffs) > 1.0


def test_frames_with_only_the_path_in_view_handed_over_are_the_same(tiny_shard) -> None:
    qpos, dt = _walk(tiny_shard)
    qpos = qpos[:600]
    # 8 m along x under the robot (its ends out of the picture), then 8 m back behind the camera
    t = np.linspace(0.0, 1.0, 800)[:, None]
    path = np.vstack([np.hstack([-4 + 8 * t, 0.1 + 0 * t]), np.hstack([4 - 8 * t, -3 + 0 * t])])
    model = build_model()
    culled = render_frames(model, qpos, dt, fps=10, target_xy=path)
    every = render_frames(model, qpos, dt, fps=10, target_xy=path, cull=False)
    np.testing.assert_array_equal(culled, every)
    # the view test did leave capsules out, and kept some
    data = mujoco.MjData(model)
    data.qpos[:] = qpos[0]
    mujoco.mj_forward(model, data)
    scene, cam = mujoco.MjvScene(model, maxgeom=100), mujoco.MjvCamera()
    cam.type, cam.fixedcamid = mujoco.mjtCamera.mjCAMERA_FIXED, model.camera("track").id
    mujoco.mjv_updateScene(model, data, mujoco.MjvOption(), None, cam, mujoco.mjtCatBit.mjCAT_ALL,
                           scene)
    seen = _Path(path).visible(scene, mujoco.MjrRect(0, 0, 320, 240))
    assert 0 < seen.sum() < len(seen) / 2


def test_bad_shape_is_refused(tmp_path) -> None:
    with pytest.raises(QuadpipeError, match="qpos must be"):
        render_video(build_model(), np.zeros((10, 7)), tmp_path / "x.mp4", 0.001)
