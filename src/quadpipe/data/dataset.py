"""The quadpipe HDF5 format: the one place that names groups, datasets, attributes and dtypes.

Every reader and writer goes through this module. A file (a shard, or the merged dataset) holds one
group per stable trajectory, `trajectory_00001`, ...:

| name | shape | dtype | unit / meaning |
|---|---|---|---|
| states | (T, 36) | storage dtype | the original's state vector, layout in quadpipe.sim.state |
| actions | (T, 12) | storage dtype | N m, the torque the expert commands at each step |
| command_sequence | (n,) | int32 | codes 1..5, each held cmd_duration s; T = n cmd_duration / dt |
| initial_state | (36,) | float64 | states[0] at full precision |
| qpos | (T, 19) | storage dtype | MuJoCo qpos (base pos, quaternion w x y z, 12 joints) |
| qvel | (T, 18) | storage dtype | MuJoCo qvel at each step |
| initial_qpos, initial_qvel | (19,), (18,) | float64 | exact start for replay |

Group attributes: trajectory_id, is_stable, stability_reason, dt, cmd_duration, num_timesteps,
state_dim (the original's) and attempt, shard, random_seed (where it came from; a merged file adds
source_shard, source_trajectory_id and split = "train" | "valid").

A trajectory generated with randomised physics (`randomize.data`) also has `physics_json`: its
draw and pushes (quadpipe.sim.randomize), from which replay rebuilds the model; its motors apply
motor_strength x the stored command (equal when not randomised).

Root attributes: the original summary (num_trajectories, stable_count, rejected_count,
total_attempts, acceptance_rate, random_seed, dt, cmd_duration, resumed_from), `rejected_<reason>`
for every reason of quadpipe.sim.stability, format, format_version and config_json (the expert,
stability and generation settings, for exact replay). A merged file also has merged, num_tasks.
A randomised file has the root dataset `attempts`: one row per attempt the shards used (shard,
attempt, reason, and the draw's scalars of quadpipe.sim.randomize.summary), for the statistics of
rejections against the drawn physics.

Row t of states/qpos/qvel is the state *before* step t and actions[t] the torque applied during
step t, so (states[t], actions[t]) is a training pair.

Two optional layouts, both read through this module exactly like the default:

- **lean storage** (`generate.layout: lean`, root attribute storage_layout = "lean"): no `states`
  dataset; `states` is computed from qpos/qvel on reading (`time_series`, `read_trajectory`).
  Every stored array reads back identical to the full layout's; `states` differs only in the
  rotation-vector columns 3:6, recomputed from the stored float32 quaternion, by float32 rounding.
  The original's readers, which read `states` directly, need the full layout (the default).
- **linked merge** (`quadpipe merge --layout link`, root attribute linked_files): the merged
  file's trajectory groups hold the attributes and the small datasets, and their time series are
  HDF5 external links into the shard files (paths relative to the merged file), so merging
  writes no time series a second time. Plain h5py (and any HDF5 reader) follows the links;
  `open_file` checks first that every linked shard is there, unchanged, and says which is not.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from isal import isal_zlib

from quadpipe.errors import DatasetError
from quadpipe.sim.stability import REASONS
from quadpipe.sim.state import ACTION_DIM, STATE_DIM, states_from

FORMAT = "quadpipe"
FORMAT_VERSION = 1
GROUP_PREFIX = "trajectory_"
NQ, NV = 19, 18

# name -> (trailing shape, whether it follows the storage dtype and is chunked along time)
TIME_SERIES = {"states": (STATE_DIM,), "actions": (ACTION_DIM,), "qpos": (NQ,), "qvel": (NV,)}
FIXED = {"command_sequence": None, "initial_state": (STATE_DIM,), "initial_qpos": (NQ,),
         "initial_qvel": (NV,)}
TRAJ_ATTRS = ("trajectory_id", "is_stable", "stability_reason", "dt", "cmd_duration",
              "num_timesteps", "state_dim", "attempt", "shard", "random_seed")
SUMMARY_ATTRS = ("num_trajectories", "stable_count", "rejected_count", "total_attempts",
                 "acceptance_rate", "random_seed", "dt", "cmd_duration", "resumed_from")
REJECTION_ATTRS = tuple(f"rejected_{r}" for r in REASONS)


@dataclasses.dataclass
class Storage:
    """How time series are stored: dtype, compression filter and chunk length along time."""

    dtype: str = "float32"
    compression: str | None = "gzip"
    compression_level: int | None = 4
    gzip_encoder: str = "isal"
    chunk_steps: int = 1600
    layout: str = "full"  # "full" or "lean" (no `states`; see the module docstring)


LAYOUTS = ("full", "lean")
STORAGE_LAYOUT_ATTR = "storage_layout"  # root attribute, written only for "lean"
LINKED_ATTR = "linked_files"  # root attribute of a linked merge: JSON [{path, size}, ...]


def _isal_compress(data: bytes, level: int) -> bytes:
    return isal_zlib.compress(data, min(level, isal_zlib.ISAL_BEST_COMPRESSION))


# Deflate encoders for gzip chunks; both write the zlib stream HDF5's deflate filter decodes, and
# both release the GIL while they compress. ISA-L is ~3x faster than zlib at the same size on
# these shuffled float columns (benchmarks/README.md), so it is the default.
GZIP_ENCODERS = {"isal": _isal_compress, "zlib": zlib.compress}


@dataclasses.dataclass
class Trajectory:
    """One stable trajectory in memory, as written to and read from a group."""

    command_sequence: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    initial_state: np.ndarray
    initial_qpos: np.ndarray
    initial_qvel: np.ndarray
    attrs: dict[str, Any]


ATTEMPTS = "attempts"  # root dataset of a randomised file (module docstring)


def write_attempts(f: h5py.File, rows: list[dict[str, Any]]) -> None:
    """The attempts table as one compound dataset (reason as a fixed-length string)."""
    if not rows:
        return
    names = list(rows[0])
    dtype = [(n, "S32" if n == "reason" else "i8" if n in ("shard", "attempt") else "f8")
             for n in names]
    table = np.array([tuple(r[n].encode() if n == "reason" else r[n] for n in names)
                      for r in rows], dtype=dtype)
    f.create_dataset(ATTEMPTS, data=table)


def read_attempts(f: h5py.File) -> list[dict[str, Any]] | None:
    """The rows `write_attempts` stored, or None for a file without randomisation."""
    if ATTEMPTS not in f:
        return None
    table = f[ATTEMPTS][()]
    return [{n: (row[n].decode() if n == "reason" else row[n].item()) for n in table.dtype.names}
            for row in table]


def group_name(trajectory_id: int) -> str:
    return f"{GROUP_PREFIX}{trajectory_id:05d}"


def trajectory_names(f: h5py.File) -> list[str]:
    """Trajectory group names in id order."""
    return sorted(k for k in f if k.startswith(GROUP_PREFIX))


def trajectory_ids(f: h5py.File) -> list[int]:
    """The ids of the file's trajectories (the numbers in their group names), in order."""
    return [int(n[len(GROUP_PREFIX):]) for n in trajectory_names(f)]


def write_trajectory(f: h5py.Group, name: str, traj: Trajectory, storage: Storage) -> None:
    g = f.create_group(name)
    n = traj.states.shape[0]
    chunk = min(n, storage.chunk_steps)
    for key, (width,) in TIME_SERIES.items():
        if key == "states" and storage.layout == "lean":
            continue
        data = np.ascontiguousarray(getattr(traj, key), dtype=storage.dtype)
        if storage.compression == "gzip":
            _write_gzip_chunks(g, key, data, chunk, storage.compression_level or 0,
                               GZIP_ENCODERS[storage.gzip_encoder])
            continue
        kwargs: dict[str, Any] = {}
        if storage.compression:
            kwargs = {"compression": storage.compression,
                      "compression_opts": storage.compression_level, "shuffle": True}
        g.create_dataset(key, data=data, chunks=(chunk, width), **kwargs)
    g.create_dataset("command_sequence", data=np.asarray(traj.command_sequence, dtype=np.int32))
    for key in ("initial_state", "initial_qpos", "initial_qvel"):
        g.create_dataset(key, data=np.asarray(getattr(traj, key), dtype=np.float64))
    for key, value in traj.attrs.items():
        g.attrs[key] = value


def _write_gzip_chunks(g: h5py.Group, key: str, data: np.ndarray, chunk: int, level: int,
                       compress: Callable[[bytes, int], bytes]) -> None:
    """A shuffle+gzip dataset whose chunks are compressed here, then written as they are.

    The chunks are in the format of HDF5's shuffle and deflate filters (any reader decodes them
    the same way), but the encoder releases the GIL while it compresses, where h5py's filter
    pipeline holds it: generation compresses in its worker threads, so this lets one thread
    compress while the others keep simulating.
    """
    rows, width = data.shape
    dset = g.create_dataset(key, shape=data.shape, dtype=data.dtype, chunks=(chunk, width),
                            compression="gzip", compression_opts=level, shuffle=True)
    itemsize = data.dtype.itemsize
    for start in range(0, rows, chunk):
        block = data[start:start + chunk]
        if len(block) < chunk:  # HDF5 stores edge chunks at full size
            block = np.concatenate([block, np.zeros((chunk - len(block), width), data.dtype)])
        shuffled = block.view(np.uint8).reshape(-1, itemsize).T.tobytes()
        dset.id.write_direct_chunk((start, 0), compress(shuffled, level))


def read_trajectory(f: h5py.File, name: str) -> Trajectory:
    g = f[name]
    data = {k: time_series(g, k) for k in TIME_SERIES}
    data.update({k: g[k][()] for k in FIXED})
    return Trajectory(**data, attrs=dict(g.attrs))


def time_series(g: h5py.Group, key: str) -> np.ndarray:
    """Time series `key` of trajectory group `g`; `states` computed if the layout is lean."""
    if key == "states" and key not in g:
        qpos = g["qpos"][()]
        return states_from(qpos, g["qvel"][()]).astype(qpos.dtype)
    return g[key][()]


def link_trajectory(src: h5py.Group, dst: h5py.Group, name: str, target: str) -> h5py.Group:
    """Group `name` in `dst` with `src`'s attributes and small datasets, its time series
    external links into file `target` (a path relative to `dst`'s file)."""
    g = dst.create_group(name)
    for key in FIXED:
        src.file.copy(src[key], g, name=key)
    for key in TIME_SERIES:
        if key in src:
            g[key] = h5py.ExternalLink(target, f"{src.name}/{key}")
    for key, value in src.attrs.items():
        g.attrs[key] = value
    return g


def check_linked(path: Path, f: h5py.File) -> None:
    """Raise DatasetError unless every shard a linked merge refers to is there, unchanged."""
    if LINKED_ATTR not in f.attrs:
        return
    for entry in json.loads(f.attrs[LINKED_ATTR]):
        shard = path.parent / entry["path"]
        if not shard.exists():
            raise DatasetError(
                f"{path}: its time series are in the shard {shard}, which is missing (a merge "
                "with --layout link references its shards); put the shard back, or rerun the "
                "merge (--layout copy makes a self-contained file)")
        if shard.stat().st_size != entry["size"]:
            raise DatasetError(
                f"{path}: the shard {shard} changed since the merge ({shard.stat().st_size} "
                f"bytes, {entry['size']} when merged); rerun the merge")


SPLIT_ATTR = "split"
TRAIN, VALID = "train", "valid"


def assign_split(num: int, valid_fraction: float, seed: int) -> list[str]:
    """A fixed train/valid split by trajectory: `num` labels, a `valid_fraction` share "valid".

    Splitting by trajectory (not by sample) keeps neighbouring, nearly identical steps of one
    trajectory out of both sets. At least one trajectory goes to each set when num >= 2.
    """
    n_valid = int(round(num * valid_fraction))
    if num >= 2:
        n_valid = min(max(n_valid, 1), num - 1)
    order = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(2**31,)))
    valid = set(order.permutation(num)[:n_valid].tolist())
    return [VALID if i in valid else TRAIN for i in range(num)]


def split_of(f: h5py.File, names: list[str], valid_fraction: float = 0.1, seed: int = 0
             ) -> list[str]:
    """The split stored in the file (merged datasets), else `assign_split` (a bare shard)."""
    stored = [f[n].attrs.get(SPLIT_ATTR) for n in names]
    if all(s in (TRAIN, VALID) for s in stored):
        return [str(s) for s in stored]
    return assign_split(len(names), valid_fraction, seed)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it to `path`.

    A reader sees the old file or the whole new one, never a half-written file; a failure or a
    kill leaves at most a hidden `.NAME.tmp-PID` file, which `stale_temporaries` finds.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(obj: Any, path: str | Path, indent: int = 2) -> Path:
    """Write `obj` as JSON through `atomic_path` (folders made): a killed job leaves no
    half-written result for Snakemake to keep."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    return path


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary files of `atomic_path(path)` left by a killed writer."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


def write_root_attrs(f: h5py.File, root_attrs: Mapping[str, Any]) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    for key, value in root_attrs.items():
        f.attrs[key] = value


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def open_file(path: str | Path) -> Iterator[h5py.File]:
    """Open a quadpipe file read-only, turning h5py's errors into one clear DatasetError."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file; run the step that writes it first")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(
            f"{path}: not a readable HDF5 file (truncated or corrupt: {exc}); delete it and "
            "regenerate it") from exc
    with f:
        if f.attrs.get("format") != FORMAT:
            raise DatasetError(f"{path}: not a quadpipe file (root attribute 'format' missing)")
        check_linked(path, f)
        yield f


def validate(path: str | Path, read_data: bool = True) -> dict[str, Any]:
    """Check a shard or merged dataset against this format; return its root attributes.

    Raises DatasetError naming the file and what is wrong. With `read_data`, every dataset is read
    and decompressed, so a damaged chunk is found here and not in the middle of training.
    """
    path = Path(path)
    with open_file(path) as f:
        attrs = dict(f.attrs)
        for key in (*SUMMARY_ATTRS, *REJECTION_ATTRS):
            if key not in attrs:
                raise DatasetError(f"{path}: root attribute '{key}' is missing")
        names = trajectory_names(f)
        if len(names) != attrs["num_trajectories"]:
            raise DatasetError(f"{path}: holds {len(names)} trajectories but num_trajectories "
                               f"says {attrs['num_trajectories']}; the file is incomplete")
        stored = [k for k in TIME_SERIES
                  if not (k == "states" and attrs.get(STORAGE_LAYOUT_ATTR) == "lean")]
        for name in names:
            _validate_group(path, f[name], read_data, stored)
    return attrs


def _validate_group(path: Path, g: h5py.Group, read_data: bool, stored: list[str]) -> None:
    where = f"{path}:{g.name}"
    for key in (*stored, *FIXED):
        if key not in g:
            raise DatasetError(f"{where}: dataset '{key}' is missing")
    for key in TRAJ_ATTRS:
        if key not in g.attrs:
            raise DatasetError(f"{where}: attribute '{key}' is missing")
    n = int(g.attrs["num_timesteps"])
    for key in stored:
        trailing = TIME_SERIES[key]
        if g[key].shape != (n, *trailing):
            raise DatasetError(f"{where}/{key}: shape {g[key].shape}, expected {(n, *trailing)}")
    for key, shape in FIXED.items():
        if shape is not None and g[key].shape != shape:
            raise DatasetError(f"{where}/{key}: shape {g[key].shape}, expected {shape}")
    steps = n / len(g["command_sequence"])
    if abs(steps * float(g.attrs["dt"]) - float(g.attrs["cmd_duration"])) > 1e-9:
        raise DatasetError(f"{where}: {n} steps do not match {len(g['command_sequence'])} "
                           "commands of cmd_duration")
    if read_data:
        for key in (*stored, *FIXED):
            try:
                values = g[key][()]
            except (OSError, RuntimeError) as exc:
                raise DatasetError(f"{where}/{key}: cannot be read ({exc}); the file is "
                                   "damaged, regenerate it") from exc
            if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
                raise DatasetError(f"{where}/{key}: holds NaN or Inf")
