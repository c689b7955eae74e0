"""Stage files and resume checkpoints: what makes a chain of stage jobs train as one process.

Training runs in stages: behaviour cloning is round 0, DAgger round r (1..dagger_rounds) is the
collection of its samples (`learn.imitation.train.collect_part`, possibly split over jobs) then
`dagger_epochs` epochs on everything (`learn.imitation.train.train_stage`). A stage starts from the
previous stage's state file and writes its own: weights, optimiser, every random generator, epoch,
samples seen, history and the stage's best weights, so a chain of stage jobs trains exactly as one
process would. Each epoch a stage also writes the same state as its resume checkpoint
(OUT.partial/resume.pt, atomically); run again after a kill, with the same settings and inputs, it
goes on from there and ends with the weights an uninterrupted run gets. The fingerprint says whether
a checkpoint was written by this very stage; the DAgger samples enter it by content.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quadpipe.data import dataset
from quadpipe.errors import QuadpipeError
from quadpipe.learn import optimizers
from quadpipe.learn.imitation.noise import JointNoise
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import Policy
from quadpipe.learn.tagged_files import load_tagged

log = logging.getLogger(__name__)

STAGE_FORMAT = "quadpipe-train-stage-1"
# keys that do not change a stage's result (a resume checkpoint is valid across them)
_NOT_RESULT = {"threads", "logger", "wandb_mode", "wandb_project"}
# keys round 0 (behaviour cloning) does not use, and dagger_rounds that no stage uses: the
# workflow leaves them out of the stage jobs' settings, so changing them reruns no stage
DAGGER_KEYS = {"dagger_rounds", "dagger_episodes", "dagger_seconds", "dagger_stride",
               "dagger_epochs", "dagger_expert_share", "dagger_arc_deg",
               "dagger_full_lr_epochs"}


class StageError(QuadpipeError):
    """A training-stage file that is missing, unreadable or from another stage or seed."""


def stage_keys(rnd: int) -> set[str]:
    """The train keys that a stage of round `rnd` does not use."""
    return DAGGER_KEYS if rnd == 0 else {"dagger_rounds"}


def stage_fingerprint(cfg: TrainConfig, rnd: int, meta: dict[str, Any],
                      previous: dict[str, Any] | None, dagger_hash: str,
                      device: torch.device) -> str:
    """What a stage's result depends on: its settings, the samples, the previous stage, the
    DAgger samples (by content) and the device type. A resume checkpoint with another
    fingerprint is not resumed from."""
    drop = stage_keys(rnd) | _NOT_RESULT
    key = {"cfg": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in drop},
           "round": rnd, "samples": meta["fingerprint"], "device": device.type,
           "previous": None if previous is None else previous["fingerprint"],
           "dagger": dagger_hash}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def load_state(path: str | Path) -> dict[str, Any]:
    """A stage's state file (or resume checkpoint), or one clear StageError."""
    return load_tagged(path, STAGE_FORMAT, StageError, "training stage",
                       "run `quadpipe train-stage` first", "run that stage again")


def load_dagger(paths: list[Path], cfg: TrainConfig, rnd: int
                ) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, float], str]:
    """The DAgger samples of rounds 1..rnd from their part files: (x, y) per round in (episode,
    step) order, the last round's statistics, and a hash of their content."""
    from quadpipe.learn.imitation import dagger

    by_round: dict[int, list] = {}
    for p in paths:
        got, meta = dagger.load(p)
        if meta.get("seed") != cfg.seed:
            raise StageError(f"{p}: DAgger samples of seed {meta.get('seed')}, not of seed "
                             f"{cfg.seed}")
        by_round.setdefault(int(meta["round"]), []).append(got)
    if sorted(by_round) != list(range(1, rnd + 1)):
        raise StageError(f"round {rnd} trains on the DAgger samples of rounds 1..{rnd}; got "
                         f"rounds {sorted(by_round)}")
    digest = hashlib.sha256()
    rounds, stats = [], {}
    for r in range(1, rnd + 1):
        merged = dagger.merge(by_round[r])
        digest.update(merged.x.tobytes())
        digest.update(merged.y.tobytes())
        rounds.append((merged.x, merged.y))
        stats = {"dagger_fall_fraction": merged.fall_fraction,
                 "dagger_torque_rmse": merged.torque_rmse}
    return rounds, stats, digest.hexdigest()


def snapshot(state: dict[str, Any], fp: str, rnd: int, cfg: TrainConfig, meta: dict[str, Any],
             dag: dict[str, float], policy: Policy, opt: optimizers.Optimizer,
             rng: np.random.Generator, noise: JointNoise | None) -> dict[str, Any]:
    """Everything that determines the rest of the training, as a torch.save-able dict."""
    return {
        "format": STAGE_FORMAT, "fingerprint": fp, "round": rnd, "seed": cfg.seed,
        "architecture": policy.architecture,
        "model": {n: v.detach().cpu() for n, v in policy.state_dict().items()},
        "optimizer": opt.state_dict(), "np_rng": rng.bit_generator.state,
        "noise_rng": None if noise is None else noise.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "counts": {"train": int(meta["counts"][dataset.TRAIN]),
                   "valid": int(meta["counts"][dataset.VALID])},
        "dt": meta["dt"], "sim": meta["sim"],  # the physics the policy learned on
        "dagger": dict(dag), **state}


def restore(saved: dict[str, Any], policy: Policy, opt: optimizers.Optimizer,
            rng: np.random.Generator, noise: JointNoise | None, device: torch.device) -> None:
    """Put a saved state's weights, optimiser and every random generator back: training then
    goes on exactly as if it had never stopped."""
    policy.load_state_dict(saved["model"])
    policy.to(device)
    optimizers.load(opt, saved["optimizer"])
    rng.bit_generator.state = saved["np_rng"]
    if noise is not None and saved["noise_rng"] is not None:
        noise.gen.set_state(saved["noise_rng"])
    torch.set_rng_state(saved["torch_rng"])
    if saved["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])


def try_resume(path: Path, fp: str, rnd: int, n_epochs: int, policy: Policy,
               opt: optimizers.Optimizer, rng: np.random.Generator, noise: JointNoise | None,
               device: torch.device) -> dict[str, Any] | None:
    """Restore the resume checkpoint at `path` if it was written by this very stage (same
    fingerprint); else say why in one log line, remove it and return None."""
    try:
        saved = load_state(path)
    except StageError as exc:
        log.warning("not resuming: %s; round %d starts at its first epoch", exc, rnd)
        path.unlink(missing_ok=True)
        return None
    if saved.get("fingerprint") != fp or saved.get("round") != rnd:
        log.warning("%s: not resuming: written with other settings or inputs (fingerprint %.12s, "
                    "this run %.12s); round %d starts at its first epoch", path,
                    saved.get("fingerprint"), fp, rnd)
        path.unlink(missing_ok=True)
        return None
    restore(saved, policy, opt, rng, noise, device)
    log.info("%s: resuming round %d after epoch %d (%d of %d epochs of this round done, %d "
             "samples seen)", path, rnd, saved["epoch"], saved["stage_epoch"], n_epochs,
             saved["samples_seen"])
    got = {k: saved[k] for k in ("epoch", "samples_seen", "history", "stage_epoch", "best",
                                 "last")}
    # a resume checkpoint written before stages kept each epoch's weights has none of its own
    return {**got, "epoch_models": list(saved.get("epoch_models", []))}
