"""A quadpipe dataset in LeRobot's v3.0 layout, for LeRobotDataset and LeRobot's policies.

Layout (LeRobot codebase v3.0, read by lerobot.datasets.lerobot_dataset.LeRobotDataset):

- `meta/info.json`: codebase_version, robot_type, fps, totals, `splits`, `data_path`, features.
- `data/chunk-000/file-000.parquet`, ...: one row per frame, episodes never split across files,
  a new file every ~100 MB (LeRobot's default size), a new chunk every 1000 files.
- `meta/episodes/chunk-000/file-000.parquet`: one row per episode (its frame range, data file,
  task), plus `quadpipe/trajectory` and `quadpipe/split` naming its source.
- `meta/tasks.parquet`: task strings (index) and task_index. An episode's task is its command
  sequence in words ("forward, stand, turn left"), the instruction the expert followed.
- `meta/stats.json`: min, max, mean, std, count and the 1/10/50/90/99 % quantiles of every
  numeric feature over all frames (exact, not LeRobot's streaming estimate).

Features: `observation.state` (36, the original's state vector), `observation.qpos` (19),
`observation.qvel` (18), `observation.command` (code 1..5 in force), `action` (12 torques, N m),
and LeRobot's own timestamp, frame_index, episode_index, index, task_index. Vectors are float32.
quadpipe's split is kept: training episodes come first, so `splits` is {"train": "0:a",
"valid": "a:n"}. No images or videos (quadpipe renders videos only on request).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.data import dataset
from quadpipe.data.export_frames import (
    DEFAULT_EVERY,
    ROBOT,
    Frames,
    read_frames,
    resolve_every,
    settings,
)
from quadpipe.errors import ConfigError, QuadpipeError

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
CHUNKS_SIZE, FILE_MB = 1000, 100
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
LEGS, JOINTS = ("FR", "FL", "RR", "RL"), ("hip", "thigh", "calf")


def _names() -> dict[str, list[str]]:
    state = ["x", "y", "z", "rotvec_x", "rotvec_y", "rotvec_z", "vel_x", "vel_y", "vel_z",
             "angvel_x", "angvel_y", "angvel_z"]
    state += [f"{leg}_{j}_{q}" for leg in LEGS for j in JOINTS for q in ("q", "qd")]
    qpos = ["x", "y", "z", "qw", "qx", "qy", "qz"] + [f"{leg}_{j}" for leg in LEGS for j in JOINTS]
    qvel = ["vx", "vy", "vz", "wx", "wy", "wz"] + [f"{leg}_{j}" for leg in LEGS for j in JOINTS]
    action = [f"{leg}_{j}_torque" for leg in LEGS for j in JOINTS]
    return {"observation.state": state, "observation.qpos": qpos, "observation.qvel": qvel,
            "action": action}


def features() -> dict[str, dict[str, Any]]:
    """LeRobot's features dict: dtype, shape, names of every column."""
    out = {k: {"dtype": "float32", "shape": [len(v)], "names": v} for k, v in _names().items()}
    out["observation.command"] = {"dtype": "int64", "shape": [1], "names": None}
    for k, dtype in (("timestamp", "float32"), ("frame_index", "int64"),
                     ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
        out[k] = {"dtype": dtype, "shape": [1], "names": None}
    return out


def fps_of(dt: float, every: int) -> int:
    """The integer frame rate LeRobot needs, or one clear error naming a rate that works."""
    rate = 1.0 / (dt * every)
    if abs(rate - round(rate)) > 1e-6 * rate:
        raise ConfigError(f"--every {every} at dt = {dt} s gives {rate:.4g} Hz; LeRobot needs a "
                          f"whole number of frames per second (e.g. --every "
                          f"{max(1, round(0.02 / dt))}: 50 Hz)")
    return int(round(rate))


def _columns(fr: Frames, episode: int, start: int, task: int, fps: int) -> dict[str, np.ndarray]:
    n = len(fr.steps)
    return {"observation.state": fr.state.astype(np.float32),
            "observation.qpos": fr.qpos.astype(np.float32),
            "observation.qvel": fr.qvel.astype(np.float32),
            "observation.command": fr.command.astype(np.int64),
            "action": fr.action.astype(np.float32),
            "timestamp": (np.arange(n) / fps).astype(np.float32),
            "frame_index": np.arange(n, dtype=np.int64),
            "episode_index": np.full(n, episode, dtype=np.int64),
            "index": np.arange(start, start + n, dtype=np.int64),
            "task_index": np.full(n, task, dtype=np.int64)}


def _table(cols: list[dict[str, np.ndarray]], feats: dict[str, dict[str, Any]]):
    import pyarrow as pa

    arrays, names = [], []
    for key, ft in feats.items():
        v = np.concatenate([c[key] for c in cols])
        if ft["shape"] == [1]:
            arrays.append(pa.array(v))
        else:
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)),
                                                            ft["shape"][0]))
        names.append(key)
    return pa.Table.from_arrays(arrays, names=names)


def _stats(values: np.ndarray) -> dict[str, list]:
    v = values.reshape(len(values), -1).astype(np.float64)
    out = {"min": v.min(0), "max": v.max(0), "mean": v.mean(0), "std": v.std(0),
           "count": np.array([len(v)])}
    for q in QUANTILES:
        out[f"q{round(q * 100):02d}"] = np.quantile(v, q, axis=0)
    return {k: np.asarray(a).tolist() for k, a in out.items()}


def export(source: str | Path, out: str | Path, every: int | None = DEFAULT_EVERY
           ) -> dict[str, int]:
    """Write the LeRobot dataset folder `out` (replaced whole) from the quadpipe file `source`."""
    try:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise QuadpipeError("LeRobot export needs pyarrow; pip install 'quadpipe[export]'") \
            from exc
    every = resolve_every(source, every)
    meta = settings(source, every)
    fps = fps_of(meta["dt_s"], every)
    frames = list(read_frames(source, every))
    # training episodes first, so quadpipe's split is two ranges of episode indices
    order = [f for f in frames if f.split == dataset.TRAIN] + \
        [f for f in frames if f.split != dataset.TRAIN]
    tasks: dict[str, int] = {}
    feats = features()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "meta/info.json").exists():
        raise QuadpipeError(f"{out}: exists and is not a LeRobot dataset; give a new folder")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    bytes_per_frame = sum(4 * ft["shape"][0] if ft["dtype"] == "float32" else 8
                          for ft in feats.values())
    frames_per_file = max(1, FILE_MB * 1024 * 1024 // bytes_per_frame)
    episodes, pending, every_col = [], [], []
    chunk = file = start = in_file = 0

    def flush() -> None:
        if pending:
            path = tmp / DATA_PATH.format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(_table(pending, feats), path, compression="snappy")
            pending.clear()

    for ep, fr in enumerate(order):
        n = len(fr.steps)
        if in_file and in_file + n > frames_per_file:  # next file; episodes are never split
            flush()
            file += 1
            if file == CHUNKS_SIZE:
                chunk, file = chunk + 1, 0
            in_file = 0
        task = tasks.setdefault(fr.task, len(tasks))
        cols = _columns(fr, ep, start, task, fps)
        pending.append(cols)
        every_col.append(cols)
        episodes.append({"episode_index": ep, "tasks": [fr.task], "length": n,
                         "data/chunk_index": chunk, "data/file_index": file,
                         "dataset_from_index": start, "dataset_to_index": start + n,
                         "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                         "quadpipe/trajectory": fr.name, "quadpipe/split": fr.split})
        start += n
        in_file += n
    flush()
    n_train = sum(f.split == dataset.TRAIN for f in order)
    splits = {}
    if n_train:
        splits["train"] = f"0:{n_train}"
    if n_train < len(order):
        splits["valid"] = f"{n_train}:{len(order)}"
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": ROBOT,
            "total_episodes": len(order), "total_frames": start, "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": FILE_MB,
            "video_files_size_in_mb": 200, "fps": fps, "splits": splits,
            "data_path": DATA_PATH, "video_path": None, "features": feats,
            "quadpipe": meta}
    (tmp / "meta").mkdir(parents=True, exist_ok=True)
    (tmp / "meta/info.json").write_text(json.dumps(info, indent=4))
    stats = {k: _stats(np.concatenate([c[k] for c in every_col])) for k in feats}
    (tmp / "meta/stats.json").write_text(json.dumps(stats, indent=4))
    pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks)).to_parquet(
        tmp / "meta/tasks.parquet")
    ep_path = tmp / EPISODES_PATH
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episodes), ep_path)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {"episodes": len(order), "frames": start, "fps": fps, "tasks": len(tasks),
            "train": n_train, "valid": len(order) - n_train}
