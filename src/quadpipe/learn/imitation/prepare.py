"""Training samples: the dataset turned into float32 arrays of (observation, torque) pairs.

`prepare` streams the dataset one trajectory at a time into memory-mapped .npy files (X, Y per
split) and accumulates the normalisation statistics, so memory does not grow with the dataset; a
stage then reads batches from those files (`load_arrays`; the OS page cache does the buffering).
The arrays are prepared once and reused while the dataset, the observation and the stride stay the
same (the fingerprint in meta.json).

The split is by trajectory and comes from the dataset (`dataset.split_of`): the original split by
sample, which put the neighbours of every validation step in the training set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.config import ExpertConfig, expert_from_json, steps_in
from quadpipe.data import dataset
from quadpipe.errors import DatasetError
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.progress import progress_bar
from quadpipe.learn.samples import ObsConfig, trajectory_phase, trajectory_samples
from quadpipe.sim.state import ACTION_DIM

SPLITS = (dataset.TRAIN, dataset.VALID)
PREPARE_VERSION = 2


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
        expert = _file_expert(f, path)
        if abs(obs.dt - expert.dt) > 1e-12:
            raise DatasetError(f"{path}: made at {expert.dt * 1e3:g}-ms physics steps, the "
                               f"samples asked for observe at {obs.dt * 1e3:g} ms; prepare "
                               "them with the dataset's step (TrainConfig.obs_at)")
        gains = _expert_gains(expert)
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
            for name, s in progress_bar(list(zip(names, splits, strict=True)), progress,
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
        s: splits.count(s) for s in SPLITS}, "expert": gains, "dt": expert.dt,
        "sim": dataclasses.asdict(expert.sim), **stats}
    with dataset.atomic_path(meta_file) as tmp_meta:
        tmp_meta.write_text(json.dumps(meta))
    return meta


def prepare_for(dataset_path: str | Path, out_dir: str | Path, cfg: TrainConfig,
                progress: bool | None = None) -> dict[str, Any]:
    """`prepare` with `cfg`'s durations in whole steps of the dataset's physics profile."""
    dt = dataset_expert(Path(dataset_path)).dt
    return prepare(dataset_path, out_dir, cfg.obs_at(dt), steps_in(cfg.sample_stride, dt),
                   progress)


def dataset_expert(path: Path) -> ExpertConfig:
    """The expert settings that made the dataset: DAgger must label with the same expert."""
    path = Path(path)
    if not path.exists():
        _missing(path)
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


def load_arrays(sample_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (X, Y) of one split written by `prepare`."""
    d = Path(sample_dir)
    return (np.load(d / f"{split}_X.npy", mmap_mode="r"),
            np.load(d / f"{split}_Y.npy", mmap_mode="r"))
