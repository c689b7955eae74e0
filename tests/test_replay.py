"""Replay: a stored trajectory re-simulates to its stored states; a changed one does not."""

from __future__ import annotations

import json
import shutil

import h5py
import pytest

from quadpipe.cli import main
from quadpipe.data.replay import ReplayError, replay, replay_to_files, video_page
from quadpipe.errors import QuadpipeError


def test_a_stored_trajectory_replays_to_its_states(tiny_shard):
    result = replay(tiny_shard, 2)
    report, qpos = result.report, result.qpos
    assert report["reproduced"]
    assert report["max_qpos_error"] < 1e-5 and report["max_qvel_error"] < 1e-4
    with h5py.File(tiny_shard) as f:
        assert qpos.shape == f["trajectory_00002/qpos"].shape


def test_altered_commands_are_detected(tiny_shard, tmp_path):
    bad = tmp_path / "altered.h5"
    shutil.copy(tiny_shard, bad)
    with h5py.File(bad, "r+") as f:
        cmds = f["trajectory_00001/command_sequence"]
        cmds[0] = 2 if cmds[0] != 2 else 1
    out = tmp_path / "check.json"
    with pytest.raises(ReplayError, match="does not replay"):
        replay_to_files(bad, 1, out)
    assert json.loads(out.read_text())["reproduced"] is False


def test_unknown_trajectory_is_refused_with_the_range(tiny_shard):
    with pytest.raises(QuadpipeError, match="ids 1..6"):
        replay(tiny_shard, 99)


@pytest.mark.slow
def test_cli_replay_writes_check_and_video(tiny_shard, tmp_path):
    out, video = tmp_path / "t.json", tmp_path / "t.mp4"
    code = main(["replay", str(tiny_shard), "--trajectory", "1", "--out", str(out), "--video",
                 str(video), "--video-seconds", "0.5"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["reproduced"] and report["video_seconds"] == pytest.approx(0.5)
    assert video.read_bytes()[4:8] == b"ftyp"
    page = video_page([video], tmp_path / "videos.html", "Replays")
    html = page.read_text()
    assert html.count("<video") == 1 and "data:video/mp4;base64," in html
