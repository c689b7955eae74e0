"""CLI verbs of the learning stage: prepare, train, and the stages the workflow runs as jobs
(train-stage, collect, finish-training); thin shells over learn.imitation.prepare and
learn.imitation.train."""

from __future__ import annotations

import argparse
import dataclasses

from quadpipe.cli.main import load_config, verb


def _train_config(path: str | None):
    from quadpipe.config import from_mapping
    from quadpipe.learn.imitation.train_config import TrainConfig

    return from_mapping(TrainConfig, load_config(path).get("train"), "train")


def _randomize(path: str | None):
    from quadpipe.sim.randomize import RandomizeConfig

    return RandomizeConfig.from_mapping(load_config(path).get("randomize"))


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="merged dataset (or a shard) HDF5 file")
    p.add_argument("--out", required=True, help="directory for the float32 sample arrays")
    p.add_argument("--config", help="YAML with a train section")


@verb("prepare", _prepare_args)
def _prepare(args: argparse.Namespace) -> None:
    """Write the training samples as memory-mapped float32 arrays (train/valid split)."""
    from quadpipe.learn.imitation.prepare import prepare_for

    cfg = _train_config(args.config)
    meta = prepare_for(args.dataset, args.out, cfg)
    print(f"{args.out}: {meta['counts']['train']} train, {meta['counts']['valid']} valid samples")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="merged dataset (or a shard) HDF5 file")
    p.add_argument("--out-dir", required=True, help="where best.pt, last.pt, history.csv go")
    p.add_argument("--samples", help="prepared sample directory (default OUT_DIR/samples)")
    p.add_argument("--config", help="YAML with a train section (and randomize, for DAgger)")


@verb("train", _train_args)
def _train(args: argparse.Namespace) -> None:
    """Train the path-following policy by behaviour cloning."""
    from quadpipe.learn.imitation.train import train

    summary = train(args.dataset, args.out_dir, _train_config(args.config), args.samples,
                    rand=_randomize(args.config))
    print(f"{args.out_dir}: best epoch {summary['best_epoch']}, valid loss "
          f"{summary['best_valid_loss']:.4f}, {summary['samples_per_s']:.0f} samples/s")


def _stage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="merged dataset (or a shard) HDF5 file")
    p.add_argument("--samples", required=True, help="prepared sample directory")
    p.add_argument("--round", type=int, required=True,
                   help="0: behaviour cloning; r >= 1: the epochs of DAgger round r")
    p.add_argument("--previous", help="state file of round - 1 (not for round 0)")
    p.add_argument("--dagger", nargs="*", default=[],
                   help="DAgger part files of rounds 1..round (`quadpipe collect`)")
    p.add_argument("--out", required=True, help="this stage's state file (resume checkpoint: "
                   "OUT.partial/resume.pt while it runs)")
    p.add_argument("--config", help="YAML with a train section (with `seed`)")


@verb("train-stage", _stage_args)
def _train_stage(args: argparse.Namespace) -> None:
    """One training stage (behaviour cloning or a DAgger round's epochs); resumes after a kill."""
    from quadpipe.learn.imitation.train import train_stage

    state = train_stage(args.dataset, args.samples, args.out, _train_config(args.config),
                        args.round, args.previous, args.dagger)
    print(f"{args.out}: round {args.round} done at epoch {state['epoch']}, "
          f"{state['samples_seen']} samples seen")


def _collect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="the dataset (for its expert settings)")
    p.add_argument("--policy", required=True, help="state file of the previous training stage")
    p.add_argument("--round", type=int, required=True, help="DAgger round (>= 1)")
    p.add_argument("--part", type=int, default=0, help="this job's part, 0-based")
    p.add_argument("--parts", type=int, default=1, help="jobs the round is split over")
    p.add_argument("--out", required=True, help="the part's .npz file")
    p.add_argument("--config", help="YAML with a train section (with `seed`); a randomize "
                   "section randomises the episodes (randomize.dagger)")


@verb("collect", _collect_args)
def _collect(args: argparse.Namespace) -> None:
    """Collect one part of a DAgger round: the policy drives, the expert labels."""
    from quadpipe.learn.imitation.train import collect_part

    collect_part(args.policy, args.dataset, _train_config(args.config), args.round, args.part,
                 args.parts, args.out, _randomize(args.config))
    print(f"{args.out}: DAgger round {args.round}, part {args.part + 1} of {args.parts}")


def _finish_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", nargs="+", required=True,
                   help="the seed's training-stage files, rounds 0..R in order (the last alone "
                   "will do without --selection)")
    p.add_argument("--selection", nargs="*", default=[],
                   help="the seed's selection part files (`quadpipe select`): best.pt is the "
                   "candidate that walked best; without them, the lowest validation loss")
    p.add_argument("--out-dir", required=True, help="where best.pt, last.pt, history.csv go")
    p.add_argument("--config", help="YAML with a train section (with `seed`)")


@verb("finish-training", _finish_args)
def _finish(args: argparse.Namespace) -> None:
    """Write best.pt (the closed-loop selection's choice), last.pt, history.csv and loss.png."""
    from quadpipe.learn.imitation.train import finish

    selection = None
    if args.selection:
        from quadpipe.evaluation.selection import choose

        selection = choose(args.selection)
    summary = finish(args.stage, args.out_dir, _train_config(args.config), selection)
    how = "valid loss" if selection is None else \
        f"closed loop, {selection['chosen']['successes']}/{selection['chosen']['n']} successes"
    print(f"{args.out_dir}: best epoch {summary['best_epoch']} ({how}), valid loss "
          f"{summary['best_valid_loss']:.4f}")


def _finetune_config(path: str | None):
    from quadpipe.learn.finetuning.runner import FinetuneConfig

    return FinetuneConfig.from_mapping(load_config(path).get("finetune"))


def _finetune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", required=True, help="job 0: the imitated policy (best.pt); job "
                   "j: job j - 1's state file")
    p.add_argument("--job", type=int, required=True, help="this job, 0-based: iterations "
                   "job * iterations_per_job onwards")
    p.add_argument("--out", required=True, help="this job's state file (resume checkpoint: "
                   "OUT.partial/resume.pt while it runs)")
    p.add_argument("--threads", type=int, help="simulation threads (default finetune.threads; "
                   "the result does not depend on it)")
    p.add_argument("--config", help="YAML with finetune, expert, randomize sections and "
                   "train.seed (and train.logger)")


@verb("finetune", _finetune_args)
def _finetune(args: argparse.Namespace) -> None:
    """One fine-tuning job (PPO from the imitated policy); resumes after a kill."""
    from quadpipe.config import expert_config
    from quadpipe.learn.finetuning.runner import run_job

    raw = load_config(args.config)
    train = _train_config(args.config)
    cfg = _finetune_config(args.config)
    if args.threads:
        cfg = dataclasses.replace(cfg, threads=args.threads)
    state = run_job(args.start, args.out, cfg, train.seed, args.job,
                    expert_config(raw),
                    _randomize(args.config), train.logger,
                    wandb_mode=train.wandb_mode, wandb_project=train.wandb_project)
    last = state["history"][-1]
    print(f"{args.out}: job {args.job} done at iteration {state['iteration']}: tracking "
          f"{last['tracking_error_m']:.3f} m, falls {last['fall_fraction']:.2f}")


def _finish_finetune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", required=True, help="the seed's last fine-tuning job's state")
    p.add_argument("--out-dir", required=True,
                   help="where finetuned.pt, finetune.csv and finetune.png go")
    p.add_argument("--config", help="YAML with a finetune section and train.seed")


@verb("finish-finetune", _finish_finetune_args)
def _finish_finetune(args: argparse.Namespace) -> None:
    """Write the fine-tuned policy (a plain checkpoint), finetune.csv and finetune.png."""
    from quadpipe.learn.finetuning.runner import finish

    path = finish(args.state, args.out_dir, _finetune_config(args.config),
                  _train_config(args.config).seed)
    print(f"{path}: the fine-tuned policy")
