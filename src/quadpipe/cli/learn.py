"""CLI verbs of the learning stage: prepare, train (thin shells over learn.train)."""

from __future__ import annotations

import argparse

from quadpipe.cli.main import load_config, verb


def _train_config(path: str | None):
    from quadpipe.config import from_mapping
    from quadpipe.learn.train import TrainConfig

    return from_mapping(TrainConfig, load_config(path).get("train"), "train")


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="merged dataset (or a shard) HDF5 file")
    p.add_argument("--out", required=True, help="directory for the float32 sample arrays")
    p.add_argument("--config", help="YAML with a train section")


@verb("prepare", _prepare_args)
def _prepare(args: argparse.Namespace) -> None:
    """Write the training samples as memory-mapped float32 arrays (train/valid split)."""
    from quadpipe.learn.train import prepare

    cfg = _train_config(args.config)
    meta = prepare(args.dataset, args.out, cfg.obs, cfg.sample_stride)
    print(f"{args.out}: {meta['counts']['train']} train, {meta['counts']['valid']} valid samples")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="merged dataset (or a shard) HDF5 file")
    p.add_argument("--out-dir", required=True, help="where best.pt, last.pt, history.csv go")
    p.add_argument("--samples", help="prepared sample directory (default OUT_DIR/samples)")
    p.add_argument("--config", help="YAML with a train section")


@verb("train", _train_args)
def _train(args: argparse.Namespace) -> None:
    """Train the path-following policy by behaviour cloning."""
    from quadpipe.learn.train import train

    summary = train(args.dataset, args.out_dir, _train_config(args.config), args.samples)
    print(f"{args.out_dir}: best epoch {summary['best_epoch']}, valid loss "
          f"{summary['best_valid_loss']:.4f}, {summary['samples_per_s']:.0f} samples/s")
