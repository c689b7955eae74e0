"""The video renderer draws real frames of a walking robot into a browser-playable mp4."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from quadpipe.data.dataset import open_file, trajectory_names
from quadpipe.errors import QuadpipeError
from quadpipe.sim.model import build_model
from quadpipe.sim.render import frame_indices, render_frames, render_video


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


def test_bad_shape_is_refused(tmp_path) -> None:
    with pytest.raises(QuadpipeError, match="qpos must be"):
        render_video(build_model(), np.zeros((10, 7)), tmp_path / "x.mp4", 0.001)
