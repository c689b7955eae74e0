"""Experiment tracking: TensorBoard's own reader and an offline wandb run see the training run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from quadpipe.errors import ConfigError
from quadpipe.learn.imitation.train import train
from quadpipe.learn.imitation.train_config import TrainConfig

# One behaviour-cloning epoch and one short DAgger round: every kind of figure, in seconds.
TINY = dict(epochs=2, sample_stride=10, hidden=(16, 16), horizon=200, waypoint_every=40,
            dagger_rounds=1, dagger_episodes=2, dagger_seconds=0.3, dagger_epochs=1)


def tiny_policy_csv(shard: Path, tmp_path: Path) -> Path:
    train(shard, tmp_path / "csv", TrainConfig(**{**TINY, "dagger_rounds": 0, "epochs": 1}),
          progress=False)
    assert not (tmp_path / "csv" / "tensorboard").exists()
    return tmp_path / "csv" / "best.pt"


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for f in sorted(logdir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def _wandb_records(path: Path):
    """The protobuf records of an offline .wandb file (wandb 0.31 has no Python reader left).

    The file is a 7-byte header then LevelDB's log format: 32 KiB blocks of records, each a
    7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and its bytes.
    """
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, buf = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # the block's tail is padding
            pos += 32768 - pos % 32768
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        buf += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def test_tensorboard_gets_config_losses_rounds_and_eval(tiny_shard, tmp_path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from quadpipe.learn import tracking

    out = tmp_path / "run"
    train(tiny_shard, out, TrainConfig(logger="tensorboard", **TINY), progress=False)
    with (out / "history.csv").open() as fh:
        history = list(csv.DictReader(fh))  # csv stays on whatever the logger
    scalars = _scalars(out / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    for (step, value), row in zip(scalars["train/loss"], history, strict=True):
        assert step == int(row["epoch"]) and value == pytest.approx(float(row["train_loss"]),
                                                                     rel=1e-6)
    assert [v for _, v in scalars["valid/loss"]] == pytest.approx(
        [float(r["valid_loss"]) for r in history], rel=1e-6)
    # the DAgger round is logged at the first epoch trained on its samples
    assert scalars["dagger/samples"] == [(3, pytest.approx(float(history[2]["dagger_samples"])))]
    assert "dagger/fall_fraction" in scalars
    # one event file per training stage (each is its own job: behaviour cloning, DAgger round 1),
    # every one with the run's config
    events = sorted((out / "tensorboard").glob("*.train"))
    assert len(events) == 2
    for event in events:
        acc = EventAccumulator(str(event))
        acc.Reload()
        text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
        assert json.loads(text.strip("`\n"))["train"]["dagger_rounds"] == 1
    # an evaluation job (the evaluate verb) appends to the same run, at the last epoch
    (tmp_path / "eval.yaml").write_text("expert: {cmd_duration: 0.4}\neval: {duration: 0.3}\n")
    r = subprocess.run([sys.executable, "-m", "quadpipe", "evaluate", "--checkpoint",
                        str(out / "best.pt"), "--path", "circle", "--out",
                        str(tmp_path / "circle.json"), "--config", str(tmp_path / "eval.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "circle.json").read_text())["seeds"][0]
    scalars = _scalars(out / "tensorboard")
    assert scalars["eval/circle/mean_tracking_error_m"] == [
        (3, pytest.approx(got["mean_tracking_error_m"], rel=1e-6))]
    # a checkpoint trained with the csv logger adds nothing anywhere
    assert not tracking.log_evaluation(tiny_policy_csv(tiny_shard, tmp_path), {"x": 1.0}, "e")


def test_wandb_offline_run_without_network(tiny_shard, tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    cfg = TrainConfig(logger="wandb", **{**TINY, "dagger_rounds": 0})
    train(tiny_shard, out, cfg, progress=False)
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert runs, "no offline wandb run written"
    (record,) = list(runs[0].glob("run-*.wandb"))
    losses, config, kinds = [], None, []
    for rec in _wandb_records(record):
        kind = rec.WhichOneof("record_type")
        kinds.append(kind)
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                     for i in rec.history.item}
            if "train/loss" in items:
                losses.append((items["_step"], items["train/loss"]))
        elif kind == "run":
            config = {i.key: json.loads(i.value_json) for i in rec.run.config.update}
    with (out / "history.csv").open() as fh:
        history = list(csv.DictReader(fh))
    assert [s for s, _ in losses] == [1, 2], (record.stat().st_size, kinds)
    assert [v for _, v in losses] == pytest.approx([float(r["train_loss"]) for r in history])
    assert config is not None and config["train"]["logger"] == "wandb"


def test_unknown_logger_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="train.logger must be one of csv, tensorboard, wandb"):
        TrainConfig(logger="mlflow")


def test_tensorboard_gets_each_fine_tuning_iteration(tiny_policies, tmp_path) -> None:
    """Per iteration the reward terms, success, episode length, KL and learning rate, in the
    seed's run directory (where training's scalars are)."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from quadpipe.learn.finetuning.runner import FinetuneConfig, run_job

    cfg = FinetuneConfig(iterations=2, iterations_per_job=2, episodes=2, seconds=0.2,
                         critic_hidden=(8,), critic_warmup=1)
    run_job(tiny_policies[0], tmp_path / "seed_0" / "finetune" / "job_0.pt", cfg, 0, 0,
            logger="tensorboard", progress=False)
    scalars = _scalars(tmp_path / "seed_0" / "tensorboard")
    for tag in ("finetune/reward_track", "finetune/reward_action_rate", "finetune/success",
                "finetune/episode_length_s", "finetune/kl", "finetune/lr", "finetune/return"):
        assert [step for step, _ in scalars[tag]] == [1, 2], tag
