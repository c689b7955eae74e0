"""Behaviour cloning of the expert, then DAgger: prepare float32 sample arrays, train the MLP.

`prepare` streams the dataset one trajectory at a time into memory-mapped .npy files (X, Y per
split) and accumulates the normalisation statistics, so memory does not grow with the dataset.
`train` reads batches from those files (the OS page cache does the buffering), optimises the
original's recipe (AdamW, grad clip, lr x0.1 at the decay epoch, MSE on normalised torques), and
writes best.pt (lowest validation loss), last.pt, history.csv and loss.png. After the
behaviour-cloning epochs, `dagger_rounds` rounds of DAgger (learn.dagger) add samples of the
policy's own states labelled by the path-following expert, each round followed by `dagger_epochs`
epochs on everything; those samples stay in memory (their number is set by the config, not by the
dataset), and best.pt then comes from the last round.

The split is by trajectory and comes from the dataset (`dataset.split_of`): the original split by
sample, which put the neighbours of every validation step in the training set.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quadpipe.config import ExpertConfig, expert_from_json
from quadpipe.data import dataset
from quadpipe.errors import ConfigError, DatasetError, QuadpipeError
from quadpipe.learn import tracking
from quadpipe.learn.batches import Batches
from quadpipe.learn.policy import Policy, save_checkpoint
from quadpipe.learn.samples import ObsConfig, trajectory_phase, trajectory_samples
from quadpipe.sim.randomize import RandomizeConfig
from quadpipe.sim.state import ACTION_DIM

log = logging.getLogger(__name__)
SPLITS = (dataset.TRAIN, dataset.VALID)
PREPARE_VERSION = 2


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The `train` section of config.yaml. Defaults fit the 20-minute pipeline on 2 CPU cores."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max global gradient norm
    lr_decay_epoch: int = 15  # 1-based epoch from which lr is x0.1; 0 = never
    hidden: tuple[int, ...] = (256, 256, 128)
    horizon: int = 1000  # steps to the last waypoint (the original: 50; docs/training.md)
    waypoint_every: int = 200  # steps between waypoints (the original: 10)
    sample_stride: int = 20  # use every k-th step of a trajectory as a sample
    gait_clock: bool = True  # add sin/cos of the CPG phase (issue: off; measured: needed)
    noise_q: float = 0.1  # rad, std of joint-angle noise with expert-relabelled torques; 0 = off
    noise_qd: float = 1.0  # rad/s, std of joint-velocity noise (relabelled likewise)
    noise_base: float = 0.5  # std of base-state noise (z, orientation, velocities), in units of
    # each column's std; labels unchanged (the expert ignores the base state); 0 = off
    # DAgger on random paths after behaviour cloning (quadpipe.learn.dagger; why: docs/training.md)
    dagger_rounds: int = 3  # 0 = plain behaviour cloning (why 3: docs/training.md, Finding 6)
    dagger_episodes: int = 64  # episodes per round, each on its own random path
    dagger_seconds: float = 8.0  # s per episode (from standing)
    dagger_stride: int = 5  # record every k-th step of an episode
    dagger_epochs: int = 4  # epochs on the aggregated samples after each round
    dagger_expert_share: float = 0.5  # share of round 1's episodes the expert drives; halved
    # each further round (the rest run the policy)
    threads: int = 1  # torch CPU threads and DAgger simulation threads
    path_frame: str = "heading"  # "heading" (robot-centred) or "world" (the original's inputs)
    seed: int = 0
    device: str = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
    logger: str = "csv"  # csv (history.csv only), tensorboard or wandb (learn.tracking)
    wandb_mode: str = "offline"  # offline (no network), online or disabled
    wandb_project: str = "quadpipe"

    def __post_init__(self) -> None:
        if min(self.noise_q, self.noise_qd, self.noise_base) < 0:
            raise ConfigError("train.noise_q, noise_qd and noise_base must be >= 0")
        if self.dagger_rounds < 0 or not 0.0 <= self.dagger_expert_share <= 1.0:
            raise ConfigError("train.dagger_rounds must be >= 0 and train.dagger_expert_share "
                              "in [0, 1]")
        if self.dagger_rounds and self.dagger_seconds <= 0:
            raise ConfigError(f"train.dagger_seconds must be > 0, got {self.dagger_seconds}")
        for key in ("epochs", "batch_size", "sample_stride", "dagger_episodes", "dagger_stride",
                    "dagger_epochs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        tracking.check(self.logger, self.wandb_mode)

    @property
    def obs(self) -> ObsConfig:
        return ObsConfig(self.horizon, self.waypoint_every, self.gait_clock, self.path_frame)


# ----------------------------------------------------------------------------- prepare


def _fingerprint(path: Path, obs: ObsConfig, stride: int) -> dict[str, Any]:
    """What the samples were made from. Not the dataset's absolute path: results/ moved as a
    whole (`mv`, `cp -a`, `rsync -a` to a cluster) must not prepare its samples again."""
    st = path.stat()
    return {"version": PREPARE_VERSION, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "obs": dataclasses.asdict(obs), "stride": stride}


def prepare(dataset_path: str | Path, out_dir: str | Path, obs: ObsConfig, stride: int,
            progress: bool | None = None) -> dict[str, Any]:
    """Write {train,valid}_{X,Y}.npy (float32) and meta.json to `out_dir`; reuse if up to date.

    Returns meta: sample counts per split and the training split's input/output mean and std.
    """
    path, out = Path(dataset_path), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_file = out / "meta.json"
    fp = _fingerprint(path if path.exists() else _missing(path), obs, stride)
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        stored = dict(meta.get("fingerprint") or {})
        stored.pop("dataset", None)  # samples prepared before the path left the fingerprint
        if stored == fp:
            return meta
    with dataset.open_file(path) as f:
        names = dataset.trajectory_names(f)
        if not names:
            raise DatasetError(f"{path}: holds no trajectories; generate some first")
        splits = dataset.split_of(f, names)
        if dataset.TRAIN not in splits:
            raise DatasetError(f"{path}: no trajectory in the train split; use a dataset with "
                               "at least 2 trajectories")
        gains = _expert_gains(_file_expert(f, path))
        counts = {s: 0 for s in SPLITS}
        per_traj = []
        for name in names:
            n = int(f[name].attrs["num_timesteps"])
            per_traj.append(len(range(0, max(n - obs.horizon, 0), stride)))
        for k, s in zip(per_traj, splits, strict=True):
            counts[s] += k
        # Each array is written beside its name and renamed into place (as meta.json last): a
        # training job that has the old arrays memory-mapped keeps reading them (rewriting them
        # in place would kill it with SIGBUS), and a kill leaves no half array under its name.
        sums = {a: np.zeros(obs.dim if a == "X" else ACTION_DIM) for a in "XY"}
        sq = {a: np.zeros_like(sums[a]) for a in "XY"}
        with contextlib.ExitStack() as stack:
            tmp = {(s, a): stack.enter_context(dataset.atomic_path(out / f"{s}_{a}.npy"))
                   for s in SPLITS for a in "XY"}
            arrays = {(s, a): np.lib.format.open_memmap(
                tmp[(s, a)], mode="w+", dtype=np.float32,
                shape=(counts[s], obs.dim if a == "X" else ACTION_DIM))
                for s in SPLITS for a in "XY"}
            filled = {s: 0 for s in SPLITS}
            for name, s in _progress(list(zip(names, splits, strict=True)), progress,
                                     "prepare"):
                g = f[name]
                qpos, qvel, actions = g["qpos"][()], g["qvel"][()], g["actions"][()]
                phase = trajectory_phase(g["command_sequence"][()], len(qpos),
                                         float(g.attrs["cmd_duration"]),
                                         float(g.attrs["dt"])) if obs.gait_clock else None
                x, y = trajectory_samples(qpos, qvel, actions, obs, stride, phase)
                a, b = filled[s], filled[s] + len(x)
                arrays[(s, "X")][a:b], arrays[(s, "Y")][a:b] = x, y
                filled[s] = b
                if s == dataset.TRAIN:
                    for key, v in (("X", x), ("Y", y)):
                        v64 = v.astype(np.float64)
                        sums[key] += v64.sum(0)
                        sq[key] += (v64 * v64).sum(0)
            for arr in arrays.values():
                arr.flush()
            del arrays
    n = counts[dataset.TRAIN]
    stats = {}
    for key in "XY":
        mean = sums[key] / n
        stats[f"{key}_mean"] = mean.tolist()
        stats[f"{key}_std"] = np.sqrt(np.maximum(sq[key] / n - mean ** 2, 0.0)).tolist()
    meta = {"fingerprint": fp, "counts": counts, "trajectories": {
        s: splits.count(s) for s in SPLITS}, "expert": gains, **stats}
    with dataset.atomic_path(meta_file) as tmp_meta:
        tmp_meta.write_text(json.dumps(meta))
    return meta


def _dataset_expert(path: Path) -> ExpertConfig:
    """The expert settings that made the dataset: DAgger must label with the same expert."""
    with dataset.open_file(path) as f:
        return _file_expert(f, path)


def _file_expert(f, path: Path) -> ExpertConfig:
    """The ExpertConfig in an open quadpipe file's config_json, or one clear DatasetError."""
    try:
        return expert_from_json(f.attrs["config_json"])
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: root attribute config_json is missing or unreadable ({exc}); "
                           "regenerate the file with `quadpipe generate`") from exc


def _expert_gains(exp: ExpertConfig) -> dict[str, list[float] | float]:
    """Kp, Kd (12,) and the torque limit of the expert, for the relabelled joint noise."""
    return {"kp": list(exp.kp) * 4, "kd": list(exp.kd) * 4, "torque_limit": exp.torque_limit}


def _missing(path: Path) -> Path:
    raise DatasetError(f"{path}: no such dataset; run `quadpipe generate`/`merge` first")


def _progress(items, progress: bool | None, desc: str, unit: str = "traj", **kwargs):
    """A tqdm bar over `items` on a terminal (progress None) or when asked; else `items`."""
    show = sys.stderr.isatty() if progress is None else progress
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, **{"leave": False, **kwargs})


def _log_to_bar(bar):
    """Log lines printed above the bar, not through it (a no-op without a bar)."""
    if not hasattr(bar, "set_postfix"):
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def load_arrays(sample_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (X, Y) of one split written by `prepare`."""
    d = Path(sample_dir)
    return (np.load(d / f"{split}_X.npy", mmap_mode="r"),
            np.load(d / f"{split}_Y.npy", mmap_mode="r"))


# ----------------------------------------------------------------------------- train


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def _valid_loss(policy: Policy, x: np.ndarray, y: np.ndarray, device: torch.device,
                chunk: int = 16384) -> float:
    if len(x) == 0:
        return float("nan")
    total = 0.0
    policy.eval()
    with torch.inference_mode():
        for a in range(0, len(x), chunk):
            xb = torch.from_numpy(np.array(x[a:a + chunk])).to(device)
            yb = torch.from_numpy(np.array(y[a:a + chunk])).to(device)
            err = policy.forward_normalised(xb) - policy.normalise_output(yb)
            total += float((err * err).mean(dim=1).sum())
    return total / len(x)


class JointNoise:
    """Perturb the joint angles/velocities of a batch and relabel the torques as the expert would.

    The base state (height, orientation, velocities: columns 2:12) is perturbed too, labels
    unchanged: the expert's torque does not depend on it, and the policy should not either.
    The expert's torque is u = Kp (ref(t) - q) - Kd qd with a reference that does not depend on the
    state (an open-loop CPG), so at a perturbed state (q + dq, qd + dqd) it is exactly
    u - Kp dq - Kd dqd (then clamped). Training on these pairs teaches the policy the expert's
    feedback around the demonstrated states, which plain behaviour cloning never sees: without it
    the closed loop drifts off the demonstrations and falls within ~1 s (docs/training.md).
    """

    def __init__(self, cfg: TrainConfig, gains: dict[str, Any], device: torch.device,
                 x_std: Any = None) -> None:
        self.base_std = torch.zeros(10, device=device) if x_std is None else \
            torch.as_tensor(x_std[2:12], dtype=torch.float32, device=device) * cfg.noise_base
        self.q_cols = torch.arange(12, 36, 2, device=device)
        self.qd_cols = self.q_cols + 1
        self.kp = torch.tensor(gains["kp"], dtype=torch.float32, device=device)
        self.kd = torch.tensor(gains["kd"], dtype=torch.float32, device=device)
        self.limit = float(gains["torque_limit"])
        self.sq, self.sqd = cfg.noise_q, cfg.noise_qd
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (len(x), 12)
        dq = torch.randn(shape, generator=self.gen, device=x.device) * self.sq
        dqd = torch.randn(shape, generator=self.gen, device=x.device) * self.sqd
        x = x.clone()
        x[:, self.q_cols] += dq
        x[:, self.qd_cols] += dqd
        x[:, 2:12] += torch.randn((len(x), 10), generator=self.gen, device=x.device) \
            * self.base_std
        y = torch.clamp(y - self.kp * dq - self.kd * dqd, -self.limit, self.limit)
        return x, y


def make_optimizer(policy: Policy, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; on CUDA the fused kernel: one launch per step instead of one per tensor, which is
    what bounds a small MLP's steps on a GPU (benchmarks/README.md). The CPU keeps the default."""
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                             **fused)


def build_policy(cfg: TrainConfig, meta: dict[str, Any]) -> Policy:
    torch.manual_seed(cfg.seed)
    policy = Policy(cfg.obs.dim, ACTION_DIM, tuple(cfg.hidden))
    policy.set_normalisation(meta["X_mean"], meta["X_std"], meta["Y_mean"], meta["Y_std"])
    return policy


# ----------------------------------------------------------------------------- stages
#
# Training runs in stages: behaviour cloning is round 0, DAgger round r (1..dagger_rounds) is the
# collection of its samples (`collect_part`, possibly split over jobs) then `dagger_epochs` epochs
# on everything (`train_stage`). A stage starts from the previous stage's state file and writes its
# own: weights, optimiser, every random generator, epoch, samples seen, history and the stage's best
# weights, so a chain of stage jobs trains exactly as one process would. Each epoch a stage also
# writes the same state as its resume checkpoint (OUT.partial/resume.pt, atomically); run again
# after a kill, with the same settings and inputs, it goes on from there and ends with the weights
# an uninterrupted run gets.

STAGE_FORMAT = "quadpipe-train-stage-1"
# keys that do not change a stage's result (a resume checkpoint is valid across them)
_NOT_RESULT = {"threads", "logger", "wandb_mode", "wandb_project"}
# keys round 0 (behaviour cloning) does not use, and dagger_rounds that no stage uses: the
# workflow leaves them out of the stage jobs' settings, so changing them reruns no stage
DAGGER_KEYS = {"dagger_rounds", "dagger_episodes", "dagger_seconds", "dagger_stride",
               "dagger_epochs", "dagger_expert_share"}


class StageError(QuadpipeError):
    """A training-stage file that is missing, unreadable or from another stage or seed."""


def stage_keys(rnd: int) -> set[str]:
    """The train keys that a stage of round `rnd` does not use."""
    return DAGGER_KEYS if rnd == 0 else {"dagger_rounds"}


def _stage_fingerprint(cfg: TrainConfig, rnd: int, meta: dict[str, Any],
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


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save through `dataset.atomic_path`: a kill leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with dataset.atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> dict[str, Any]:
    """A stage's state file (or resume checkpoint), or one clear StageError."""
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: no such training stage; run `quadpipe train-stage` first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StageError(f"{path}: cannot be read as a training stage ({exc}); run that stage "
                         "again") from exc
    if not isinstance(state, dict) or state.get("format") != STAGE_FORMAT:
        raise StageError(f"{path}: not a quadpipe training stage (expected format "
                         f"{STAGE_FORMAT}); run that stage again")
    return state


def resume_path(out_file: str | Path) -> Path:
    """Where the stage writing `out_file` keeps its resume checkpoint (removed when done)."""
    out_file = Path(out_file)
    return out_file.with_name(out_file.name + ".partial") / "resume.pt"


def _load_dagger(paths: list[Path], cfg: TrainConfig, rnd: int
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, float], str]:
    """The DAgger samples of rounds 1..rnd from their part files: (x, y) per round in (episode,
    step) order, the last round's statistics, and a hash of their content."""
    from quadpipe.learn import dagger

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
    meta = prepare(dataset_path, sample_dir, cfg.obs, cfg.sample_stride, progress)
    xt, yt = load_arrays(sample_dir, dataset.TRAIN)
    xv, yv = load_arrays(sample_dir, dataset.VALID)
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    prev = load_state(previous) if previous is not None else None
    if prev is not None and prev["round"] != rnd - 1:
        raise StageError(f"{previous}: holds round {prev['round']}, round {rnd} needs round "
                         f"{rnd - 1}")
    rounds, dag_stats, dagger_hash = _load_dagger([Path(p) for p in dagger_parts], cfg, rnd)
    fp = _stage_fingerprint(cfg, rnd, meta, prev, dagger_hash, device)
    policy = build_policy(cfg, meta).to(device)
    opt = make_optimizer(policy, cfg, device)
    rng = np.random.default_rng(cfg.seed)
    noise = JointNoise(cfg, meta["expert"], device, meta["X_std"]) \
        if cfg.noise_q or cfg.noise_qd or cfg.noise_base else None
    n_epochs = cfg.epochs if rnd == 0 else cfg.dagger_epochs
    state: dict[str, Any] = {"epoch": 0, "samples_seen": 0, "history": [], "stage_epoch": 0}
    if prev is not None:
        _restore(prev, policy, opt, rng, noise, device)
        state = {"epoch": prev["epoch"], "samples_seen": prev["samples_seen"],
                 "history": list(prev["history"]), "stage_epoch": 0}
    resume = resume_path(out_file)
    if resume.exists():
        state = _try_resume(resume, fp, rnd, n_epochs, policy, opt, rng, noise, device) or state
    best = state.get("best")
    sources = [(xt, yt), *rounds]
    dag = {"dagger_samples": sum(len(x) for x, _ in rounds),
           "dagger_fall_fraction": math.nan, "dagger_torque_rmse": math.nan, **dag_stats}
    history = state["history"]
    batches = Batches(sources, cfg.batch_size, device)  # the stage's samples are fixed
    # the seed's run (…/seed_<k>/stages/round_<r>.pt), which every stage and the evaluation
    # jobs append to (learn.tracking)
    tracker = tracking.for_training(cfg, out_file.parent.parent, {
        "train": dataclasses.asdict(cfg), "dataset": str(dataset_path), "obs_dim": cfg.obs.dim,
        "train_samples": len(xt), "valid_samples": len(xv)})
    if state["stage_epoch"] == 0:
        log.info("round %d: training on %d samples (%d valid, %d from DAgger), device %s", rnd,
                 len(xt) + dag["dagger_samples"], len(xv), dag["dagger_samples"], device)
        if rnd > 0:
            tracker.log_round(rnd, state["epoch"] + 1, dag)
    epochs = _progress(range(state["stage_epoch"], n_epochs), progress, f"round {rnd}",
                       unit="epoch", initial=state["stage_epoch"], total=n_epochs, leave=True)
    with _log_to_bar(epochs):
        for k in epochs:
            epoch = state["epoch"] + 1
            lr = cfg.lr * (0.1 if 0 < cfg.lr_decay_epoch <= epoch else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr
            start = time.perf_counter()
            train_loss, seen = run_epoch(policy, opt, batches, rng.permutation(batches.rows),
                                         noise, cfg.grad_clip, progress, f"epoch {epoch}")
            seconds = time.perf_counter() - start
            vloss = _valid_loss(policy, xv, yv, device)
            row = {"epoch": epoch, "round": rnd, "lr": lr, "train_loss": train_loss,
                   "valid_loss": vloss, "seconds": seconds, "samples_per_s": seen / seconds,
                   **dag}
            history.append(row)
            # the stage's best epoch; best.pt is the last stage's (earlier policies never saw
            # their own states)
            score = vloss if not math.isnan(vloss) else row["train_loss"]
            extra = {"epoch": epoch, "valid_loss": vloss, "train_loss": row["train_loss"],
                     "dataset": str(dataset_path), "dagger_round": rnd}
            if best is None or score < best["score"]:
                best = {"score": score, "epoch": epoch, "extra": extra,
                        "model": {n: v.detach().cpu().clone()
                                  for n, v in policy.state_dict().items()}}
            state = {"epoch": epoch, "samples_seen": state["samples_seen"] + seen,
                     "history": history, "stage_epoch": k + 1, "best": best, "last": extra}
            _save_state(resume, _snapshot(state, fp, rnd, cfg, meta, dag, policy, opt, rng,
                                          noise))
            # logged once its checkpoint is written: a kill after this line loses no epoch
            log.info("epoch %d (round %d): train %.4f valid %.4f (%.0f samples/s)", epoch, rnd,
                     row["train_loss"], vloss, row["samples_per_s"])
            tracker.log_epoch(row)
            if hasattr(epochs, "set_postfix"):
                epochs.set_postfix(loss=f"{row['train_loss']:.4f}",
                                   samples_s=f"{row['samples_per_s']:.0f}")
    tracker.close()
    final = _snapshot(state, fp, rnd, cfg, meta, dag, policy, opt, rng, noise)
    _save_state(out_file, final)
    shutil.rmtree(resume.parent, ignore_errors=True)
    return final


def _snapshot(state: dict[str, Any], fp: str, rnd: int, cfg: TrainConfig, meta: dict[str, Any],
              dag: dict[str, float], policy: Policy, opt: torch.optim.Optimizer,
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
        "dagger": dict(dag), **state}


def _restore(saved: dict[str, Any], policy: Policy, opt: torch.optim.Optimizer,
             rng: np.random.Generator, noise: JointNoise | None, device: torch.device) -> None:
    policy.load_state_dict(saved["model"])
    policy.to(device)
    opt.load_state_dict(saved["optimizer"])
    rng.bit_generator.state = saved["np_rng"]
    if noise is not None and saved["noise_rng"] is not None:
        noise.gen.set_state(saved["noise_rng"])
    torch.set_rng_state(saved["torch_rng"])
    if saved["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])


def _try_resume(path: Path, fp: str, rnd: int, n_epochs: int, policy: Policy,
                opt: torch.optim.Optimizer, rng: np.random.Generator, noise: JointNoise | None,
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
    _restore(saved, policy, opt, rng, noise, device)
    log.info("%s: resuming round %d after epoch %d (%d of %d epochs of this round done, %d "
             "samples seen)", path, rnd, saved["epoch"], saved["stage_epoch"], n_epochs,
             saved["samples_seen"])
    return {k: saved[k] for k in ("epoch", "samples_seen", "history", "stage_epoch", "best",
                                  "last")}


def collect_part(state_file: str | Path, dataset_path: str | Path, cfg: TrainConfig, rnd: int,
                 part: int, parts: int, out_file: str | Path,
                 rand: RandomizeConfig = RandomizeConfig()) -> Path:
    """Collect job `part` of `parts` of DAgger round `rnd` with the policy of stage rnd - 1
    (on randomised physics when `rand.dagger`)."""
    from quadpipe.learn import dagger

    prev = load_state(state_file)
    if prev["round"] != rnd - 1 or prev["seed"] != cfg.seed:
        raise StageError(f"{state_file}: holds round {prev['round']} of seed {prev['seed']}; "
                         f"round {rnd} of seed {cfg.seed} collects with round {rnd - 1}'s")
    policy = Policy.from_architecture(prev["architecture"])
    policy.load_state_dict(prev["model"])
    start = time.perf_counter()
    got = dagger.collect(policy, cfg.obs, _dataset_expert(Path(dataset_path)),
                         cfg.dagger_episodes, cfg.dagger_seconds, cfg.dagger_stride,
                         cfg.dagger_expert_share / 2 ** (rnd - 1), cfg.seed, rnd, part, parts,
                         threads=max(1, cfg.threads), rand=rand)
    log.info("DAgger round %d, part %d of %d: %d episodes, %d samples in %.0f s; policy "
             "episodes fell %.0f%%, torque error %.2f N m RMS", rnd, part + 1, parts,
             int(got.mine.sum()), len(got.x), time.perf_counter() - start,
             100 * got.fall_fraction, got.torque_rmse)
    meta = {"seed": cfg.seed, "round": rnd, "part": part, "parts": parts}
    if rand.dagger:
        meta["randomize"] = rand.ranges()
    return dagger.save(out_file, got, meta)


def finish(state_file: str | Path, out_dir: str | Path, cfg: TrainConfig) -> dict[str, Any]:
    """From the last stage's state: best.pt (that stage's best epoch), last.pt, history.csv,
    loss.png in `out_dir`; returns the summary `train` returns."""
    state = load_state(state_file)
    last_round = cfg.dagger_rounds
    if state["round"] != last_round or state["seed"] != cfg.seed:
        raise StageError(f"{state_file}: holds round {state['round']} of seed {state['seed']}; "
                         f"the policy of seed {cfg.seed} is round {last_round}'s")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = Policy.from_architecture(state["architecture"])
    policy.load_state_dict(state["best"]["model"])
    save_checkpoint(out / "best.pt", policy, cfg.obs, cfg, state["best"]["extra"])
    policy.load_state_dict(state["model"])
    save_checkpoint(out / "last.pt", policy, cfg.obs, cfg, state["last"])
    history = state["history"]
    _write_history(out / "history.csv", history)
    plot_history(history, out / "loss.png")
    return {"best_epoch": state["best"]["epoch"], "best_valid_loss": state["best"]["score"],
            "history": history, "train_samples": state["counts"]["train"],
            "valid_samples": state["counts"]["valid"],
            "dagger_samples": int(state["dagger"]["dagger_samples"]),
            "samples_per_s": float(np.median([h["samples_per_s"] for h in history]))}


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


def run_epoch(policy: Policy, opt: torch.optim.Optimizer, batches: Batches, perm: np.ndarray,
              noise: JointNoise | None, grad_clip: float, progress: bool | None = False,
              desc: str = "epoch") -> tuple[float, int]:
    """One pass over `batches` in the order `perm`; returns (mean training loss, samples).

    The loss is summed on the device (in float64, the sum a Python float would give): reading it
    back every batch would make the CPU wait for the GPU after each step.
    """
    policy.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=batches.device)
    seen = 0
    for xb, yb in _progress(batches.epoch(perm), progress, desc, unit="batch",
                            total=len(batches)):
        if noise is not None:
            xb, yb = noise(xb, yb)
        err = policy.forward_normalised(xb) - policy.normalise_output(yb)
        loss = (err * err).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
        opt.step()
        loss_sum += loss.detach().double() * len(xb)
        seen += len(xb)
    return float(loss_sum) / max(seen, 1), seen


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


def plot_history(history: list[dict[str, float]], out: Path) -> Path:
    """Training and validation loss (normalised MSE, log scale) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(ep, [h["train_loss"] for h in history], label="train")
    ax.plot(ep, [h["valid_loss"] for h in history], label="valid")
    starts = [h["epoch"] for i, h in enumerate(history)
              if h.get("round", 0) and (i == 0 or history[i - 1].get("round") != h["round"])]
    for k, epoch in enumerate(starts):
        ax.axvline(epoch - 0.5, color="0.6", linestyle=":",
                   label="DAgger round starts" if k == 0 else None)
    ax.set(xlabel="epoch", ylabel="MSE (normalised torques)", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
