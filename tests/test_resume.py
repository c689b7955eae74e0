"""A shard killed with SIGKILL at any point and restarted equals one that ran straight through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import pytest
from helpers import file_contents

from quadpipe.config import StabilityConfig
from quadpipe.data.generate import generate_shard, journal_header, partial_dir
from quadpipe.data.journal import Journal
from quadpipe.errors import ResumeError

CONFIG = "generate: {min_moves: 2, max_moves: 4, threads: 2}\n"
# randomised physics with kicks the trot does not always survive: rejections in the journal, and
# the attempts table rebuilt on resume
RANDOMIZED = CONFIG + ("expert: {cmd_duration: 0.8}\n"
                       "randomize: {data: true, pushes: {interval_s: [0.4, 0.8], "
                       "velocity: [0.3, 0.9]}}\n")
NUM, SEED, SHARD = 16, 11, 2


def start(out, cfg):
    return subprocess.Popen(
        [sys.executable, "-m", "quadpipe", "generate", "--num", str(NUM), "--seed", str(SEED),
         "--shard", str(SHARD), "--out", str(out), "--config", str(cfg)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def journal_lines(out) -> int:
    try:
        return (partial_dir(out) / "journal.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_when(proc, condition, timeout=120.0) -> bool:
    """SIGKILL `proc` as soon as `condition()` holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return False


@pytest.mark.slow
@pytest.mark.parametrize("config", [CONFIG, RANDOMIZED], ids=["nominal", "randomized"])
def test_sigkill_and_resume_equals_straight_run(tmp_path, config):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config)
    straight = tmp_path / "straight" / "s.h5"
    proc = start(straight, cfg)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    resumed = tmp_path / "resumed" / "s.h5"
    # Kill mid-simulation twice (after new journal lines), once right after start-up (while the
    # journal is replayed), once as soon as the shard's temp file exists (while the journal's
    # trajectories are copied in), then in the final write (the last journal line is written).
    killed = [kill_when(start(resumed, cfg), lambda: journal_lines(resumed) >= 3)]
    n = journal_lines(resumed)
    killed.append(kill_when(start(resumed, cfg), lambda: journal_lines(resumed) >= n + 3))
    t0 = time.monotonic()
    killed.append(kill_when(start(resumed, cfg), lambda: time.monotonic() - t0 > 1.0))
    killed.append(kill_when(start(resumed, cfg),
                            lambda: any(resumed.parent.glob(f".{resumed.name}.tmp-*"))))
    with h5py.File(straight) as f:
        attempts = int(f.attrs["total_attempts"])
    last_line = attempts + 1  # the header, then one line per attempt
    killed.append(kill_when(start(resumed, cfg), lambda: journal_lines(resumed) >= last_line))
    assert killed[:2] == [True, True], killed
    proc = start(resumed, cfg)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    assert not partial_dir(resumed).exists()
    assert not list(resumed.parent.glob(".*tmp*"))
    assert file_contents(resumed) == file_contents(straight)
    if config == RANDOMIZED:
        with h5py.File(straight) as f:
            assert f.attrs["rejected_count"] > 0 and "attempts" in f


def test_torn_journal_line_is_dropped(tmp_path):
    """A kill in the middle of appending a line leaves a torn tail: dropped, appends line up."""
    header = {"seed": 1, "shard": 0, "settings": "{}"}
    journal = Journal.open(tmp_path / "p", header)
    journal.record(0, "tipped_over")
    journal.tmp_path(1).write_bytes(b"data of attempt 1")
    journal.record(1, "stable")
    path = tmp_path / "p" / "journal.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"attempt": 2, "rea')
    reopened = Journal.open(tmp_path / "p", header)
    assert reopened.outcomes == ["tipped_over", "stable"]
    reopened.tmp_path(2).write_bytes(b"data of attempt 2")
    reopened.record(2, "stable")
    again = Journal.open(tmp_path / "p", header)
    assert again.outcomes == ["tipped_over", "stable", "stable"]
    assert again.data_path(2).read_bytes() == b"data of attempt 2"


def test_journal_of_other_settings_is_refused(tmp_path):
    Journal.open(tmp_path / "p", {"seed": 1, "shard": 0, "settings": "{}"})
    with pytest.raises(ResumeError, match="other settings \\(seed\\)"):
        Journal.open(tmp_path / "p", {"seed": 2, "shard": 0, "settings": "{}"})


def test_damaged_side_file_is_reported_and_kept(tmp_path):
    """Resume finds a side file that was damaged after it was committed: a clear error, and
    nothing is deleted, so the user decides."""
    from conftest import TINY_EXPERT, TINY_GEN

    out = tmp_path / "s.h5"
    generate_shard(out, 2, seed=7, expert=TINY_EXPERT, gen=TINY_GEN, progress=False)
    # Rebuild the journal of a run killed just before its final write, with damaged data.
    out.unlink()
    header = journal_header(7, 0, TINY_EXPERT, StabilityConfig(), TINY_GEN)
    journal = Journal.open(partial_dir(out), header)
    for attempt in range(2):
        journal.tmp_path(attempt).write_bytes(b"not hdf5 at all")
        journal.record(attempt, "stable")
    with pytest.raises(ResumeError, match="attempt_000000.h5: corrupt side file"):
        generate_shard(out, 2, seed=7, expert=TINY_EXPERT, gen=TINY_GEN, progress=False)
    assert journal.data_path(0).read_bytes() == b"not hdf5 at all"
    assert not out.exists()


def test_corrupt_side_file_is_reported_and_kept(tmp_path):
    from conftest import TINY_EXPERT, TINY_GEN

    out = tmp_path / "s.h5"
    folder = partial_dir(out)
    folder.mkdir()
    (folder / "journal.jsonl").write_text("this is not json\n")
    with pytest.raises(ResumeError, match=r"s.h5.partial/journal.jsonl: unreadable header; "
                                          r"delete the folder"):
        generate_shard(out, 2, seed=7, expert=TINY_EXPERT, gen=TINY_GEN, progress=False)
    assert (folder / "journal.jsonl").read_text() == "this is not json\n"
    assert not out.exists()
