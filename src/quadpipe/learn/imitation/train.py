"""Training the policy, stage by stage: behaviour cloning of the expert, then DAgger.

This module runs the stages; what they are made of lives beside it, each module named for its
job: the settings (train_config), the sample arrays (prepare), the optimisation (epochs, with the
joint noise of noise), the stage files and resume checkpoints (stages), history.csv and loss.png
(history).

`train_stage` runs one stage. Round 0 is behaviour cloning: `epochs` epochs on the prepared
samples, the learning rate x0.1 from the decay epoch. Round r is DAgger round r: `collect_part`
jobs run the previous stage's policy on random paths and record its own states labelled by the
path-following expert (learn.imitation.dagger), then `dagger_epochs` epochs train on everything;
those samples stay in memory (their number is set by the config, not by the dataset). `finish`
writes best.pt (the candidate the closed-loop selection chose, evaluation.selection; without one the
last stage's lowest validation loss: earlier policies never saw their own states), last.pt,
history.csv and loss.png. `train` runs the whole chain in one process; the workflow runs each stage
and each collection part as a job of its own.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quadpipe.config import steps_in
from quadpipe.data import dataset
from quadpipe.learn import tracking
from quadpipe.learn.history import plot_history, write_history
from quadpipe.learn.imitation.batches import Batches
from quadpipe.learn.imitation.candidates import Candidate, candidates
from quadpipe.learn.imitation.epochs import (
    build_policy,
    make_optimizer,
    resolve_device,
    run_epoch,
    valid_loss,
)
from quadpipe.learn.imitation.mirror import Mirror
from quadpipe.learn.imitation.noise import JointNoise
from quadpipe.learn.imitation.prepare import dataset_expert, load_arrays, prepare_for
from quadpipe.learn.imitation.stages import (
    StageError,
    load_dagger,
    load_state,
    restore,
    snapshot,
    stage_fingerprint,
    try_resume,
)
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import Policy, save_checkpoint
from quadpipe.learn.progress import log_to_bar, progress_bar
from quadpipe.learn.tagged_files import resume_path, save_state
from quadpipe.sim.randomize import RandomizeConfig

log = logging.getLogger(__name__)


def train_stage(dataset_path: str | Path, sample_dir: str | Path, out_file: str | Path,
                cfg: TrainConfig, rnd: int, previous: str | Path | None = None,
                dagger_parts: Sequence[str | Path] = (), progress: bool | None = None
                ) -> dict[str, Any]:
    """Run training stage `rnd` (0: behaviour cloning, r: DAgger round r's epochs); write its
    state file `out_file` and return that state.

    `previous`: the state file of stage rnd - 1 (None for round 0); `dagger_parts`: the part files
    of DAgger rounds 1..rnd (`collect_part`), in any order.
    """
    out_file = Path(out_file)
    if (rnd == 0) != (previous is None):
        raise StageError(f"round {rnd}: " + ("behaviour cloning starts from no previous stage"
                                             if rnd == 0 else "needs the previous stage's state"))
    meta = prepare_for(dataset_path, sample_dir, cfg, progress)
    obs = cfg.obs_at(meta["dt"])
    xt, yt = load_arrays(sample_dir, dataset.TRAIN)
    xv, yv = load_arrays(sample_dir, dataset.VALID)
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    prev = load_state(previous) if previous is not None else None
    if prev is not None and prev["round"] != rnd - 1:
        raise StageError(f"{previous}: holds round {prev['round']}, round {rnd} needs round "
                         f"{rnd - 1}")
    rounds, dag_stats, dagger_hash = load_dagger([Path(p) for p in dagger_parts], cfg, rnd)
    fp = stage_fingerprint(cfg, rnd, meta, prev, dagger_hash, device)
    policy = build_policy(cfg, meta).to(device)
    opt = make_optimizer(policy, cfg, device)
    rng = np.random.default_rng(cfg.seed)
    noise = JointNoise(cfg, meta["expert"], device, meta["X_std"]) \
        if cfg.noise_q or cfg.noise_qd or cfg.noise_base else None
    mirror = Mirror(obs, device) if cfg.mirror else None
    n_epochs = cfg.epochs if rnd == 0 else cfg.dagger_epochs
    state: dict[str, Any] = {"epoch": 0, "samples_seen": 0, "history": [], "stage_epoch": 0,
                             "epoch_models": []}
    if prev is not None:
        restore(prev, policy, opt, rng, noise, device)
        state = {"epoch": prev["epoch"], "samples_seen": prev["samples_seen"],
                 "history": list(prev["history"]), "stage_epoch": 0, "epoch_models": []}
    resume = resume_path(out_file)
    if resume.exists():
        state = try_resume(resume, fp, rnd, n_epochs, policy, opt, rng, noise, device) or state
    best = state.get("best")
    sources = [(xt, yt), *rounds]
    dag = {"dagger_samples": sum(len(x) for x, _ in rounds),
           "dagger_fall_fraction": math.nan, "dagger_torque_rmse": math.nan, **dag_stats}
    history = state["history"]
    batches = Batches(sources, cfg.batch_size, device)  # the stage's samples are fixed
    # the seed's run (…/seed_<k>/stages/round_<r>.pt), which every stage and the evaluation
    # jobs append to (learn.tracking)
    tracker = tracking.for_training(cfg, out_file.parent.parent, {
        "train": dataclasses.asdict(cfg), "dataset": str(dataset_path), "obs_dim": obs.dim,
        "train_samples": len(xt), "valid_samples": len(xv)})
    if state["stage_epoch"] == 0:
        log.info("round %d: training on %d samples (%d valid, %d from DAgger), device %s", rnd,
                 len(xt) + dag["dagger_samples"], len(xv), dag["dagger_samples"], device)
        if rnd > 0:
            tracker.log_round(rnd, state["epoch"] + 1, dag)
    epochs = progress_bar(range(state["stage_epoch"], n_epochs), progress, f"round {rnd}",
                          unit="epoch", initial=state["stage_epoch"], total=n_epochs, leave=True)
    with log_to_bar(epochs):
        for k in epochs:
            epoch = state["epoch"] + 1
            if rnd > 0 and cfg.dagger_full_lr_epochs:
                # each round starts again at the full rate: at the decayed one its new samples
                # stay underfit (docs/training-findings.md, Finding 11)
                decayed = k >= cfg.dagger_full_lr_epochs
            else:
                decayed = 0 < cfg.lr_decay_epoch <= epoch
            lr = cfg.lr * (0.1 if decayed else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr
            start = time.perf_counter()
            train_loss, seen = run_epoch(policy, opt, batches, rng.permutation(batches.rows),
                                         noise, cfg.grad_clip, progress, f"epoch {epoch}",
                                         mirror)
            seconds = time.perf_counter() - start
            vloss = valid_loss(policy, xv, yv, device)
            row = {"epoch": epoch, "round": rnd, "lr": lr, "train_loss": train_loss,
                   "valid_loss": vloss, "seconds": seconds, "samples_per_s": seen / seconds,
                   **dag}
            history.append(row)
            # the stage's best epoch; best.pt is the last stage's (earlier policies never saw
            # their own states)
            score = vloss if not math.isnan(vloss) else row["train_loss"]
            extra = {"epoch": epoch, "valid_loss": vloss, "train_loss": row["train_loss"],
                     "dataset": str(dataset_path), "dagger_round": rnd}
            weights = {n: v.detach().cpu().clone() for n, v in policy.state_dict().items()}
            if best is None or score < best["score"]:
                best = {"score": score, "epoch": epoch, "extra": extra, "model": weights}
            # every epoch's weights: the closed-loop selection's candidates
            # (learn.imitation.candidates)
            models = [*state["epoch_models"], {"epoch": epoch, "model": weights}]
            state = {"epoch": epoch, "samples_seen": state["samples_seen"] + seen,
                     "history": history, "stage_epoch": k + 1, "best": best, "last": extra,
                     "epoch_models": models}
            save_state(resume, snapshot(state, fp, rnd, cfg, meta, dag, policy, opt, rng, noise))
            # logged once its checkpoint is written: a kill after this line loses no epoch
            log.info("epoch %d (round %d): train %.4f valid %.4f (%.0f samples/s)", epoch, rnd,
                     row["train_loss"], vloss, row["samples_per_s"])
            tracker.log_epoch(row)
            if hasattr(epochs, "set_postfix"):
                epochs.set_postfix(loss=f"{row['train_loss']:.4f}",
                                   samples_s=f"{row['samples_per_s']:.0f}")
    tracker.close()
    final = snapshot(state, fp, rnd, cfg, meta, dag, policy, opt, rng, noise)
    save_state(out_file, final)
    shutil.rmtree(resume.parent, ignore_errors=True)
    return final


def collect_part(state_file: str | Path, dataset_path: str | Path, cfg: TrainConfig, rnd: int,
                 part: int, parts: int, out_file: str | Path,
                 rand: RandomizeConfig = RandomizeConfig()) -> Path:
    """Collect job `part` of `parts` of DAgger round `rnd` with the policy of stage rnd - 1
    (on randomised physics when `rand.dagger`)."""
    from quadpipe.learn.imitation import dagger

    prev = load_state(state_file)
    if prev["round"] != rnd - 1 or prev["seed"] != cfg.seed:
        raise StageError(f"{state_file}: holds round {prev['round']} of seed {prev['seed']}; "
                         f"round {rnd} of seed {cfg.seed} collects with round {rnd - 1}'s")
    policy = Policy.from_architecture(prev["architecture"])
    policy.load_state_dict(prev["model"])
    start = time.perf_counter()
    expert = dataset_expert(Path(dataset_path))
    got = dagger.collect(policy, cfg.obs_at(expert.dt), expert,
                         cfg.dagger_episodes, cfg.dagger_seconds,
                         steps_in(cfg.dagger_stride, expert.dt),
                         cfg.dagger_expert_share / 2 ** (rnd - 1), cfg.seed, rnd, part, parts,
                         threads=max(1, cfg.threads), rand=rand, arc_deg=cfg.dagger_arc_deg)
    log.info("DAgger round %d, part %d of %d: %d episodes, %d samples in %.0f s; policy "
             "episodes fell %.0f%%, torque error %.2f N m RMS", rnd, part + 1, parts,
             int(got.mine.sum()), len(got.x), time.perf_counter() - start,
             100 * got.fall_fraction, got.torque_rmse)
    meta = {"seed": cfg.seed, "round": rnd, "part": part, "parts": parts}
    if rand.dagger:
        meta["randomize"] = rand.ranges()
    return dagger.save(out_file, got, meta)


def finish(state_files: str | Path | Sequence[str | Path], out_dir: str | Path,
           cfg: TrainConfig, selection: dict[str, Any] | None = None) -> dict[str, Any]:
    """best.pt, last.pt, history.csv and loss.png in `out_dir` from a seed's stage files
    (rounds 0..R in order; the last alone will do without a selection); the summary `train`
    returns.

    best.pt is the candidate `selection` chose (evaluation.selection.choose: the closed-loop
    score, stored in best.pt and history.csv), or without one the last stage's epoch with the
    lowest validation loss.
    """
    files = [state_files] if isinstance(state_files, str | Path) else list(state_files)
    state = load_state(files[-1])
    last_round = cfg.dagger_rounds
    if state["round"] != last_round or state["seed"] != cfg.seed:
        raise StageError(f"{files[-1]}: holds round {state['round']} of seed {state['seed']}; "
                         f"the policy of seed {cfg.seed} is round {last_round}'s")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = Policy.from_architecture(state["architecture"])
    history = [dict(h) for h in state["history"]]
    if selection is None:
        best_epoch, best_loss = state["best"]["epoch"], state["best"]["score"]
        policy.load_state_dict(state["best"]["model"])
        extra = {**state["best"]["extra"], "selection": {"method": "valid_loss"}}
    else:
        chosen = _chosen(selection, [*map(load_state, files[:-1]), state], files, cfg)
        best_epoch, best_loss = chosen.epoch, chosen.valid_loss
        policy.load_state_dict(chosen.model)
        extra = {"epoch": chosen.epoch, "valid_loss": chosen.valid_loss,
                 "dagger_round": chosen.round, "selection": selection}
        _add_selection(history, selection)
    obs, sim = cfg.obs_at(state["dt"]), {"sim": state["sim"]}
    save_checkpoint(out / "best.pt", policy, obs, cfg, {**extra, **sim})
    policy.load_state_dict(state["model"])
    save_checkpoint(out / "last.pt", policy, obs, cfg, {**state["last"], **sim})
    write_history(out / "history.csv", history)
    plot_history(history, out / "loss.png")
    return {"best_epoch": best_epoch, "best_valid_loss": best_loss,
            "history": history, "train_samples": state["counts"]["train"],
            "valid_samples": state["counts"]["valid"],
            "dagger_samples": int(state["dagger"]["dagger_samples"]),
            "samples_per_s": float(np.median([h["samples_per_s"] for h in history]))}


def _chosen(selection: dict[str, Any], stages: list[dict[str, Any]], files: list[str | Path],
            cfg: TrainConfig) -> Candidate:
    """The chosen candidate's weights, from the stage states (of `files`) the selection rolled
    out."""
    if selection.get("seed") != cfg.seed or selection.get("chosen") is None:
        raise StageError(f"the selection is of seed {selection.get('seed')} with "
                         f"{len(selection.get('candidates', []))} candidates; seed {cfg.seed} "
                         "needs its own: rerun its selection jobs")
    every = candidates(stages)
    if len(every) != len(selection["candidates"]) or \
            selection["stages"] != [s["fingerprint"] for s in stages]:
        raise StageError(f"the selection rolled out other stages than {', '.join(map(str, files))}"
                         "; rerun its selection jobs")
    return every[selection["chosen"]["index"]]


def _add_selection(history: list[dict[str, Any]], selection: dict[str, Any]) -> None:
    """history.csv's selection columns: each candidate epoch's closed-loop score, which won."""
    by_epoch = {c["epoch"]: c for c in selection["candidates"]}
    chosen = selection["chosen"]["epoch"]
    for row in history:
        c = by_epoch.get(row["epoch"])
        row["select_successes"] = c["successes"] if c else math.nan
        row["select_episodes"] = c["n"] if c else math.nan
        row["select_falls"] = c["falls"] if c else math.nan
        row["select_tracking_error_m"] = c["mean_tracking_error_m"] if c else math.nan
        row["selected"] = int(row["epoch"] == chosen)


def train(dataset_path: str | Path, out_dir: str | Path, cfg: TrainConfig = TrainConfig(),
          sample_dir: str | Path | None = None, progress: bool | None = None,
          rand: RandomizeConfig = RandomizeConfig()) -> dict[str, Any]:
    """Train a policy: every stage in this process (the workflow runs them as jobs), the stage
    files under `out_dir/stages`; write best.pt, last.pt, history.csv, loss.png to `out_dir`.

    `sample_dir` holds the prepared arrays (default `out_dir/samples`; prepared if missing or
    stale). Returns a summary: best epoch and validation loss, samples/s, file paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sdir = Path(sample_dir) if sample_dir is not None else out / "samples"
    stages = out / "stages"
    last = stages / "round_0.pt"
    train_stage(dataset_path, sdir, last, cfg, 0, progress=progress)
    parts: list[Path] = []
    for rnd in range(1, cfg.dagger_rounds + 1):
        parts.append(collect_part(last, dataset_path, cfg, rnd, 0, 1,
                                  stages / f"dagger_{rnd}.npz", rand))
        train_stage(dataset_path, sdir, stages / f"round_{rnd}.pt", cfg, rnd, last, parts,
                    progress)
        last = stages / f"round_{rnd}.pt"
    return finish(last, out, cfg)
