"""Training in stages: a killed stage resumes to the weights of an uninterrupted run, a resume
checkpoint of other settings is not used, and the DAgger samples (so the policy) do not depend on
how many jobs collect them."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from quadpipe.cli import main
from quadpipe.learn.imitation.stages import load_state
from quadpipe.learn.imitation.train import collect_part, finish, train, train_stage
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import load_checkpoint
from quadpipe.learn.tagged_files import resume_path

# Tiny but with enough batches per epoch (stride 1, batch 16) that a stage runs for seconds and
# can be killed between its epochs' checkpoints; noise on, so the noise generator's state counts.
CFG = TrainConfig(epochs=12, lr_decay_epoch=6, sample_stride=1, hidden=(32, 32, 32),
                  batch_size=16, device="cpu", horizon=200, waypoint_every=40, seed=3,
                  dagger_rounds=1, dagger_episodes=5, dagger_seconds=0.3, dagger_stride=10,
                  dagger_epochs=8, dagger_expert_share=0.4, dagger_full_lr_epochs=2)
RESUMED = re.compile(r"resuming round (\d) after epoch (\d+)")
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def chain(tiny_shard, tmp_path_factory) -> dict[str, Path]:
    """The uninterrupted reference: round 0, round 1 collected in one job, round 1's epochs."""
    d = tmp_path_factory.mktemp("chain")
    samples, r0, r1 = d / "samples", d / "round_0.pt", d / "round_1.pt"
    train_stage(tiny_shard, samples, r0, CFG, 0, progress=False)
    part = collect_part(r0, tiny_shard, CFG, 1, 0, 1, d / "part_0_of_1.npz")
    train_stage(tiny_shard, samples, r1, CFG, 1, r0, [part], progress=False)
    return {"dir": d, "samples": samples, "round_0": r0, "round_1": r1, "part": part}


def stage_command(tiny_shard, chain, rnd: int, out: Path, config: Path) -> list[str]:
    cmd = [sys.executable, "-m", "quadpipe", "train-stage", "--dataset", str(tiny_shard),
           "--samples", str(chain["samples"]), "--round", str(rnd), "--out", str(out),
           "--config", str(config)]
    if rnd:
        cmd += ["--previous", str(chain["round_0"]), "--dagger", str(chain["part"])]
    return cmd


@pytest.mark.slow
@pytest.mark.parametrize("rnd", [0, 1])
def test_a_killed_stage_resumes_to_the_uninterrupted_weights(tiny_shard, chain, tmp_path, rnd):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(CFG).items()}}))
    out = tmp_path / f"round_{rnd}.pt"
    cmd = stage_command(tiny_shard, chain, rnd, out, config)
    with (tmp_path / "first.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV)
        end = time.monotonic() + 120
        resume = resume_path(out)
        while not resume.exists():  # the first epoch's checkpoint
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < end
            time.sleep(0.02)
        time.sleep(0.3)  # somewhere in a later epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists(), "the stage ended before it was killed: make CFG longer"
    killed_at = load_state(resume)["epoch"]
    n = CFG.epochs if rnd == 0 else CFG.dagger_epochs
    assert load_state(resume)["stage_epoch"] < n

    again = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    m = RESUMED.search(again.stderr)
    assert m and int(m.group(1)) == rnd and int(m.group(2)) == killed_at, again.stderr[-2000:]
    assert not resume.parent.exists()  # removed once the stage is written
    resumed, reference = load_state(out), load_state(chain[f"round_{rnd}"])
    assert tensors_equal(resumed["model"], reference["model"])
    assert tensors_equal(resumed["best"]["model"], reference["best"]["model"])
    assert resumed["samples_seen"] == reference["samples_seen"]
    assert [h["train_loss"] for h in resumed["history"]] == \
        [h["train_loss"] for h in reference["history"]]
    assert len(reference["history"]) == CFG.epochs + (CFG.dagger_epochs if rnd else 0)

    # A resume checkpoint of other settings (another learning rate) is not resumed from.
    other = tmp_path / "other.pt"
    resume_path(other).parent.mkdir()
    torch.save(load_state(out), resume_path(other))  # a complete, valid checkpoint
    config.write_text(config.read_text().replace("lr: 0.001", "lr: 0.002"))
    proc = subprocess.run(stage_command(tiny_shard, chain, rnd, other, config),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "not resuming: written with other settings or inputs" in proc.stderr
    assert not RESUMED.search(proc.stderr)
    assert load_state(other)["history"][-n]["epoch"] == (CFG.epochs + 1 if rnd else 1)


@pytest.mark.slow
def test_one_or_three_collection_jobs_give_the_same_policy(tiny_shard, chain, tmp_path):
    parts = [collect_part(chain["round_0"], tiny_shard, CFG, 1, p, 3,
                          tmp_path / f"part_{p}_of_3.npz") for p in range(3)]
    r1 = train_stage(tiny_shard, chain["samples"], tmp_path / "round_1.pt", CFG, 1,
                     chain["round_0"], parts[::-1], progress=False)  # order of files: any
    reference = load_state(chain["round_1"])
    assert r1["dagger"]["dagger_samples"] == reference["dagger"]["dagger_samples"] > 0
    assert r1["dagger"]["dagger_torque_rmse"] == reference["dagger"]["dagger_torque_rmse"]
    finish(tmp_path / "round_1.pt", tmp_path / "three", CFG)
    finish(chain["round_1"], tmp_path / "one", CFG)
    for name in ("best.pt", "last.pt"):
        a, _, _ = load_checkpoint(tmp_path / "three" / name)
        b, _, _ = load_checkpoint(tmp_path / "one" / name)
        assert tensors_equal(a.state_dict(), b.state_dict()), name
    # ... and `quadpipe train` (every stage in one process) gives that policy too
    train(tiny_shard, tmp_path / "whole", CFG, sample_dir=chain["samples"], progress=False)
    for name in ("best.pt", "last.pt"):  # (best against best: it compared with last.pt alone)
        a, _, _ = load_checkpoint(tmp_path / "whole" / name)
        b, _, _ = load_checkpoint(tmp_path / "one" / name)
        assert tensors_equal(a.state_dict(), b.state_dict()), name


def test_a_stage_of_the_wrong_round_is_refused_in_one_line(tiny_shard, chain, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("train: {seed: 3, dagger_rounds: 2}\n")
    assert main(["finish-training", "--stage", str(chain["round_1"]), "--out-dir",
                 str(tmp_path / "o"), "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds round 1 of seed 3" in err, err
    assert main(["finish-training", "--stage", str(tmp_path / "missing.pt"), "--out-dir",
                 str(tmp_path / "o"), "--config", str(config)]) == 2
    assert "no such training stage" in capsys.readouterr().err


@pytest.mark.slow
def test_best_pt_is_the_closed_loop_choice_whatever_the_job_split(tiny_shard, chain, tmp_path,
                                                                  capsys):
    """`quadpipe select` over 2 jobs, then `finish-training --selection`: best.pt holds the chosen
    candidate's weights and the selection; history.csv marks every candidate's score."""
    import pandas as pd

    from quadpipe.evaluation.selection import choose
    from quadpipe.learn.imitation.candidates import candidates

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "train": {**dataclasses.asdict(CFG), "hidden": list(CFG.hidden)},
        "select": {"episodes": 3, "seconds": 0.5}}))
    stages = [str(chain["round_0"]), str(chain["round_1"])]
    parts = [tmp_path / f"part_{p}_of_2.json" for p in range(2)]
    for p, f in enumerate(parts):
        assert main(["select", "--stage", *stages, "--dataset", str(tiny_shard), "--part", str(p),
                     "--parts", "2", "--out", str(f), "--config", str(config)]) == 0
    whole = tmp_path / "part_0_of_1.json"
    assert main(["select", "--stage", *stages, "--dataset", str(tiny_shard), "--out", str(whole),
                 "--config", str(config)]) == 0
    sel = choose(parts)
    assert sel["candidates"] == choose([whole])["candidates"]  # the split changes nothing
    assert len(sel["candidates"]) == CFG.dagger_epochs  # round 1's every epoch, no cloning
    capsys.readouterr()
    assert main(["finish-training", "--stage", *stages, "--selection", *map(str, parts),
                 "--out-dir", str(tmp_path / "out"), "--config", str(config)]) == 0
    assert "closed loop" in capsys.readouterr().out
    _, _, ckpt = load_checkpoint(tmp_path / "out" / "best.pt")
    assert ckpt["selection"]["chosen"] == sel["chosen"] and ckpt["selection"]["method"] == \
        "closed_loop"
    chosen = candidates([load_state(s) for s in stages])[sel["chosen"]["index"]]
    assert tensors_equal(ckpt["state_dict"], chosen.model)
    assert ckpt["epoch"] == chosen.epoch == sel["chosen"]["epoch"]
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    assert history["selected"].sum() == 1
    assert history.loc[history["selected"] == 1, "epoch"].item() == chosen.epoch
    assert history["select_successes"].notna().sum() == len(sel["candidates"])
    # without a selection: the last stage's lowest validation loss, as before
    finish(chain["round_1"], tmp_path / "loss", CFG)
    _, _, by_loss = load_checkpoint(tmp_path / "loss" / "best.pt")
    assert by_loss["selection"] == {"method": "valid_loss"}
    assert tensors_equal(by_loss["state_dict"], load_state(chain["round_1"])["best"]["model"])


@pytest.mark.slow
def test_a_killed_selection_job_leaves_nothing_and_its_rerun_chooses_the_same(tiny_shard, chain,
                                                                              tmp_path):
    from quadpipe.evaluation.selection import choose

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "train": {**dataclasses.asdict(CFG), "hidden": list(CFG.hidden)},
        "select": {"episodes": 30, "seconds": 6.0}}))  # long enough to be killed mid-way
    stages = [str(chain["round_0"]), str(chain["round_1"])]

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "quadpipe", "select", "--stage", *stages, "--dataset",
                str(tiny_shard), "--out", str(out), "--config", str(config)]

    reference = tmp_path / "reference" / "part_0_of_1.json"
    assert subprocess.run(cmd(reference), env=ENV, capture_output=True).returncode == 0
    out = tmp_path / "killed" / "part_0_of_1.json"
    proc = subprocess.Popen(cmd(out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(3.0)  # past the imports, inside the rollouts
    assert proc.poll() is None, "the selection ended before it was killed: make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and not any(out.parent.glob("*"))  # nothing half-written
    assert subprocess.run(cmd(out), env=ENV, capture_output=True).returncode == 0
    assert choose([out]) == choose([reference])


def test_each_dagger_round_starts_again_at_the_full_learning_rate(chain):
    """dagger_full_lr_epochs: a round's first epochs at lr, then lr x0.1; behaviour cloning keeps
    its own decay. Before (0), the rounds stayed at the decayed rate and underfit their samples."""
    history = load_state(chain["round_1"])["history"]
    lrs = {(row["round"], row["epoch"]): row["lr"] for row in history}
    assert [lrs[(0, e)] for e in range(1, 13)] == [CFG.lr] * 5 + [CFG.lr * 0.1] * 7
    rnd1 = [lrs[(1, e)] for e in range(13, 13 + CFG.dagger_epochs)]
    assert CFG.dagger_full_lr_epochs == 2
    assert rnd1 == [CFG.lr] * 2 + [CFG.lr * 0.1] * (CFG.dagger_epochs - 2)
