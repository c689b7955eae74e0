"""Merge shards into one dataset file: the original's merge_dataset.jl, improved.

Every shard's trajectory groups go into the merged file in shard order (the order of the files
given), renumbered trajectory_00001, ...; each keeps where it came from (`source_shard`,
`source_trajectory_id`) and gets its fixed train/valid label (`dataset.SPLIT_ATTR`). Two layouts:

- `link` (the workflow's default): each group holds the attributes and the small datasets, and its
  time series are HDF5 external links into the shard (quadpipe.data.dataset). Merging costs
  milliseconds per trajectory whatever the data's size, and no byte of the time series is stored
  twice (at 5,000 trajectories the copy is ~36 GB more; benchmarks/README.md). The shards must stay
  where they are, relative to the merged file; readers check this and name a missing shard.
- `copy`: groups copied with HDF5's object copy (H5Ocopy), which moves the compressed chunks as
  they are, without decompressing and re-encoding them: a self-contained file, to move alone.

The root attributes are the combined summary; `summary.h5` repeats them for readers of the
original format. Both files are written atomically (a temporary file renamed into place), so an
interrupted merge leaves no half file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py

from quadpipe.data import dataset
from quadpipe.errors import DatasetError, QuadpipeError

log = logging.getLogger(__name__)

# Root attributes that every shard must share: trajectories made with different settings must not
# be mixed silently, since training and replay assume one dt, one command length, one expert.
MUST_MATCH = ("dt", "cmd_duration", "config_json")
SOURCE_SHARD, SOURCE_ID = "source_shard", "source_trajectory_id"
LAYOUTS = ("link", "copy")


def merge_shards(shards: Sequence[str | Path], out: str | Path, summary: str | Path | None = None,
                 valid_fraction: float = 0.1, seed: int = 0, layout: str = "link"
                 ) -> dict[str, Any]:
    """Merge shard files `shards` (in this order) into `out`; return the combined root attributes.

    `valid_fraction` of the trajectories (at least one, if there are two or more) are labelled
    "valid" by `dataset.assign_split(num, valid_fraction, seed)`. `layout`: "link" or "copy" (the
    module docstring). Raises DatasetError naming the file when a shard is missing, damaged, or
    made with settings that differ from the first one.
    """
    shards = [Path(s) for s in shards]
    out = Path(out)
    if not shards:
        raise QuadpipeError("merge needs at least one shard file")
    if not 0.0 <= valid_fraction < 1.0:
        raise QuadpipeError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    if layout not in LAYOUTS:
        raise QuadpipeError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if out.resolve() in {s.resolve() for s in shards}:
        raise QuadpipeError(f"--out {out} is also an input; write the merged file elsewhere")
    roots = [dataset.validate(s, read_data=False) for s in shards]
    _check_compatible(shards, roots)
    combined = combined_summary(roots)
    splits = dataset.assign_split(int(combined["num_trajectories"]), valid_fraction, seed)

    _make_parent(out)
    targets = [_relative(s, out) for s in shards]  # each shard's path as the links name it
    if layout == "link":
        combined[dataset.LINKED_ATTR] = json.dumps(
            [{"path": t, "size": s.stat().st_size} for s, t in zip(shards, targets, strict=True)])
    with dataset.atomic_path(out) as tmp, h5py.File(tmp, "w", track_order=True) as dst:
        dataset.write_root_attrs(dst, combined)
        new_id = 0
        attempts: list[dict[str, Any]] = []
        for path, target in zip(shards, targets, strict=True):
            with dataset.open_file(path) as src:
                attempts += dataset.read_attempts(src) or []
                for name in dataset.trajectory_names(src):
                    new_id += 1
                    new = dataset.group_name(new_id)
                    if layout == "link":
                        g = dataset.link_trajectory(src[name], dst, new, target)
                    else:
                        # expand_external: a shard whose data are links is copied whole
                        src.copy(src[name], dst, name=new, expand_external=True)
                        g = dst[new]
                    g.attrs[SOURCE_SHARD] = g.attrs["shard"]
                    g.attrs[SOURCE_ID] = g.attrs["trajectory_id"]
                    g.attrs["trajectory_id"] = new_id
                    g.attrs[dataset.SPLIT_ATTR] = splits[new_id - 1]
        dataset.write_attempts(dst, attempts)  # randomised shards: their attempts, in order
    if summary is not None:
        write_summary(summary, combined)
    dataset.validate(out, read_data=False)
    log.info("merged %d shards into %s (%s): %d trajectories (%d valid)", len(shards), out,
             layout, new_id, splits.count(dataset.VALID))
    return combined


def combined_summary(roots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The merged root attributes from the shards' own (the original's names, counts summed).

    `random_seed` is the shards' common base seed, or -1 when they came from different seeds.
    """
    first = roots[0]
    total = sum(int(r["total_attempts"]) for r in roots)
    num = sum(int(r["num_trajectories"]) for r in roots)
    seeds = {int(r["random_seed"]) for r in roots}
    out: dict[str, Any] = {
        "num_trajectories": num,
        "stable_count": sum(int(r["stable_count"]) for r in roots),
        "rejected_count": sum(int(r["rejected_count"]) for r in roots),
        "total_attempts": total,
        "acceptance_rate": num / total if total else 0.0,
        "random_seed": seeds.pop() if len(seeds) == 1 else -1,
        "dt": float(first["dt"]),
        "cmd_duration": float(first["cmd_duration"]),
        "resumed_from": 0,
        **{key: sum(int(r[key]) for r in roots) for key in dataset.REJECTION_ATTRS},
        "config_json": first["config_json"],
        "merged": True,
        "num_tasks": len(roots),
    }
    for key in (dataset.STORAGE_LAYOUT_ATTR, "sim_profile", "sim_json"):  # where the shards have
        if key in first:
            out[key] = first[key]
    return out


def write_summary(path: str | Path, attrs: Mapping[str, Any]) -> None:
    """summary.h5: an HDF5 file holding only the combined root attributes (the original's file)."""
    _make_parent(Path(path))
    with dataset.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        dataset.write_root_attrs(f, attrs)


def _check_compatible(shards: Sequence[Path], roots: Sequence[Mapping[str, Any]]) -> None:
    for key in MUST_MATCH:
        if key not in roots[0]:
            raise DatasetError(f"{shards[0]}: root attribute '{key}' is missing")
    seen: dict[tuple[int, int], Path] = {}
    for path, root in zip(shards, roots, strict=True):
        for key in MUST_MATCH:
            if root.get(key) != roots[0][key]:
                raise DatasetError(
                    f"{path} and {shards[0]} were made with different settings ({key}: "
                    f"{root.get(key)!r} vs {roots[0][key]!r}); merge only shards of one run, "
                    "or regenerate them with the same config")
        origin = (int(root["random_seed"]), int(root.get("shard", -1)))
        if origin[1] >= 0 and origin in seen:
            raise DatasetError(f"{path} and {seen[origin]} are the same shard (seed {origin[0]}, "
                               f"shard {origin[1]}); give each shard once")
        seen[origin] = path


def _relative(shard: Path, out: Path) -> str:
    """`shard`'s path from `out`'s folder: the pair can move together (results/ to a cluster)."""
    return os.path.relpath(shard.resolve(), out.resolve().parent)


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QuadpipeError(f"cannot create folder {path.parent} ({exc.strerror})") from exc
