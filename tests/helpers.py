"""Comparisons shared by the tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def file_contents(path: Path) -> dict:
    """Every dataset (values, dtype) and attribute of an HDF5 file, keyed by path.

    Links are followed, external ones too (h5py's visititems would skip those), so a merge that
    links to its shards' data has the same contents as one that copies it, root attributes aside.
    """
    out: dict = {}
    with h5py.File(path) as f:
        out["/"] = {k: _plain(v) for k, v in f.attrs.items()}

        def walk(group: h5py.Group, prefix: str) -> None:
            for key in group:
                obj, name = group[key], prefix + key
                out[name + "@attrs"] = {k: _plain(v) for k, v in obj.attrs.items()}
                if isinstance(obj, h5py.Dataset):
                    out[name] = (obj.dtype.str, obj.shape, obj[()].tobytes())
                else:
                    walk(obj, name + "/")

        walk(f, "")
    return out


def _plain(v):
    return v.tolist() if isinstance(v, np.ndarray) else v
