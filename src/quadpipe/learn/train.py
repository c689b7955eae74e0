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

import csv
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quadpipe.config import ExpertConfig, expert_from_json
from quadpipe.data import dataset
from quadpipe.errors import ConfigError, DatasetError
from quadpipe.learn import tracking
from quadpipe.learn.batches import Batches
from quadpipe.learn.policy import Policy, save_checkpoint
from quadpipe.learn.samples import ObsConfig, trajectory_phase, trajectory_samples
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
    dagger_rounds: int = 2  # 0 = plain behaviour cloning
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
    st = path.stat()
    return {"version": PREPARE_VERSION, "dataset": str(path.resolve()), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "obs": dataclasses.asdict(obs), "stride": stride}


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
        if meta.get("fingerprint") == fp:
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
        arrays = {(s, a): np.lib.format.open_memmap(
            out / f"{s}_{a}.npy", mode="w+", dtype=np.float32,
            shape=(counts[s], obs.dim if a == "X" else ACTION_DIM)) for s in SPLITS for a in "XY"}
        sums = {a: np.zeros(obs.dim if a == "X" else ACTION_DIM) for a in "XY"}
        sq = {a: np.zeros_like(sums[a]) for a in "XY"}
        filled = {s: 0 for s in SPLITS}
        for name, s in _progress(list(zip(names, splits, strict=True)), progress, "prepare"):
            g = f[name]
            qpos, qvel, actions = g["qpos"][()], g["qvel"][()], g["actions"][()]
            phase = trajectory_phase(g["command_sequence"][()], len(qpos),
                                     float(g.attrs["cmd_duration"]), float(g.attrs["dt"])) \
                if obs.gait_clock else None
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
    meta_file.write_text(json.dumps(meta))
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


def _progress(items, progress: bool | None, desc: str, total: int | None = None):
    show = sys.stderr.isatty() if progress is None else progress
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="traj" if desc == "prepare" else "batch", leave=False,
                total=total)


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


def train(dataset_path: str | Path, out_dir: str | Path, cfg: TrainConfig = TrainConfig(),
          sample_dir: str | Path | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Train a policy; write best.pt, last.pt, history.csv, loss.png to `out_dir`.

    `sample_dir` holds the prepared arrays (default `out_dir/samples`; prepared if missing or
    stale). Returns a summary: best epoch and validation loss, samples/s, file paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sdir = Path(sample_dir) if sample_dir is not None else out / "samples"
    meta = prepare(dataset_path, sdir, cfg.obs, cfg.sample_stride, progress)
    xt, yt = load_arrays(sdir, dataset.TRAIN)
    xv, yv = load_arrays(sdir, dataset.VALID)
    device = resolve_device(cfg.device)
    policy = build_policy(cfg, meta).to(device)
    opt = make_optimizer(policy, cfg, device)
    rng = np.random.default_rng(cfg.seed)
    noise = JointNoise(cfg, meta["expert"], device, meta["X_std"]) \
        if cfg.noise_q or cfg.noise_qd or cfg.noise_base else None
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    sources = [(xt, yt)]
    batches: Batches | None = None
    expert = _dataset_expert(Path(dataset_path)) if cfg.dagger_rounds else None
    history: list[dict[str, float]] = []
    best = (math.inf, 0)
    dag: dict[str, float] = {"dagger_samples": 0, "dagger_fall_fraction": math.nan,
                             "dagger_torque_rmse": math.nan}
    log.info("training on %d samples (%d valid), device %s", len(xt), len(xv), device)
    tracker = tracking.for_training(cfg, out, {"train": dataclasses.asdict(cfg), "dataset": str(
        dataset_path), "obs_dim": cfg.obs.dim, "train_samples": len(xt), "valid_samples": len(xv)})
    # The round of each epoch: behaviour cloning (0), then dagger_epochs per DAgger round.
    rounds = [0] * cfg.epochs + [r for r in range(1, cfg.dagger_rounds + 1)
                                 for _ in range(cfg.dagger_epochs)]
    last_round, total, current = cfg.dagger_rounds, len(rounds), 0
    for epoch, rnd in enumerate(rounds, start=1):
        if rnd != current:  # a new DAgger round: its samples first, then its epochs
            current = rnd
            x_new, y_new, stats = _dagger_round(policy, cfg, expert, rnd)
            sources.append((x_new, y_new))
            batches = None  # the input path of the grown sample set
            dag = {"dagger_samples": sum(len(x) for x, _ in sources[1:]), **stats}
            tracker.log_round(rnd, epoch, dag)
            policy.to(device)
        lr = cfg.lr * (0.1 if 0 < cfg.lr_decay_epoch <= epoch else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        if batches is None:
            batches = Batches(sources, cfg.batch_size, device)
        start = time.perf_counter()
        train_loss, seen = run_epoch(policy, opt, batches, rng.permutation(batches.rows), noise,
                                     cfg.grad_clip, progress, f"epoch {epoch}/{total}")
        seconds = time.perf_counter() - start
        vloss = _valid_loss(policy, xv, yv, device)
        row = {"epoch": epoch, "round": rnd, "lr": lr, "train_loss": train_loss,
               "valid_loss": vloss, "seconds": seconds, "samples_per_s": seen / seconds, **dag}
        history.append(row)
        tracker.log_epoch(row)
        log.info("epoch %d (round %d): train %.4f valid %.4f (%.0f samples/s)", epoch, rnd,
                 row["train_loss"], vloss, row["samples_per_s"])
        # best.pt comes from the last round: earlier policies never saw their own states.
        score = vloss if not math.isnan(vloss) else row["train_loss"]
        extra = {"epoch": epoch, "valid_loss": vloss, "train_loss": row["train_loss"],
                 "dataset": str(dataset_path), "dagger_round": rnd}
        if rnd == last_round and score < best[0]:
            best = (score, epoch)
            save_checkpoint(out / "best.pt", policy.cpu(), cfg.obs, cfg, extra)
            policy.to(device)
        _write_history(out / "history.csv", history)
    save_checkpoint(out / "last.pt", policy.cpu(), cfg.obs, cfg, extra)
    plot_history(history, out / "loss.png")
    tracker.close()
    return {"best_epoch": best[1], "best_valid_loss": best[0], "history": history,
            "train_samples": len(xt), "valid_samples": len(xv),
            "dagger_samples": int(dag["dagger_samples"]),
            "samples_per_s": float(np.median([h["samples_per_s"] for h in history]))}


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
    for xb, yb in _progress(batches.epoch(perm), progress, desc, total=len(batches)):
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


def _dagger_round(policy: Policy, cfg: TrainConfig, expert: ExpertConfig, rnd: int
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Collect round `rnd` of DAgger samples with the current policy (quadpipe.learn.dagger)."""
    from quadpipe.learn import dagger

    start = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(rnd,)))
    got = dagger.collect(policy, cfg.obs, expert, cfg.dagger_episodes, cfg.dagger_seconds,
                         cfg.dagger_stride, cfg.dagger_expert_share / 2 ** (rnd - 1), rng,
                         threads=max(1, cfg.threads))
    log.info("DAgger round %d: %d samples in %.0f s; policy episodes fell %.0f%%, torque error "
             "%.2f N m RMS", rnd, len(got.x), time.perf_counter() - start,
             100 * got.fall_fraction, got.torque_rmse)
    stats = {"dagger_fall_fraction": got.fall_fraction, "dagger_torque_rmse": got.torque_rmse}
    return got.x, got.y, stats


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
