"""The lean storage layout: no `states` on disk, everything reads back as from the full layout.

Both shards below are generated for real with the same seed and settings, so they hold the same
trajectories; only the layout differs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TINY_EXPERT, TINY_GEN

from quadpipe.data import dataset
from quadpipe.data.generate import generate_shard
from quadpipe.data.merge import merge_shards
from quadpipe.data.stats import summary_table
from quadpipe.errors import QuadpipeError
from quadpipe.learn.imitation.prepare import load_arrays, prepare
from quadpipe.learn.samples import ObsConfig

OBS = ObsConfig(horizon=50, waypoint_every=10, dt=TINY_EXPERT.dt)


@pytest.fixture(scope="module")
def lean_shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lean") / "shard_0.h5"
    generate_shard(out, num=6, seed=7, shard=0, expert=TINY_EXPERT,
                   gen=dataclasses.replace(TINY_GEN, layout="lean"), progress=False)
    return out


def test_lean_shard_reads_back_like_the_full_one(tiny_shard, lean_shard):
    full_attrs, lean_attrs = dataset.validate(tiny_shard), dataset.validate(lean_shard)
    assert lean_attrs[dataset.STORAGE_LAYOUT_ATTR] == "lean"
    assert dataset.STORAGE_LAYOUT_ATTR not in full_attrs
    with h5py.File(tiny_shard) as f, h5py.File(lean_shard) as g:
        names = dataset.trajectory_names(f)
        assert names == dataset.trajectory_names(g)
        for name in names:
            assert "states" in f[name] and "states" not in g[name]
            a, b = dataset.read_trajectory(f, name), dataset.read_trajectory(g, name)
            for key in ("actions", "qpos", "qvel", *dataset.FIXED):
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
            assert a.attrs == b.attrs
            assert b.states.dtype == a.states.dtype == np.float32
            # every state column is a stored number, except the rotation vector, which is
            # computed from the float32 quaternion instead of the float64 one
            rest = np.r_[0:3, 6:36]
            np.testing.assert_array_equal(a.states[:, rest], b.states[:, rest])
            np.testing.assert_allclose(a.states[:, 3:6], b.states[:, 3:6], rtol=0, atol=2e-6)
    full_bytes, lean_bytes = tiny_shard.stat().st_size, lean_shard.stat().st_size
    assert lean_bytes < 0.8 * full_bytes


def test_lean_and_full_give_the_same_training_samples(tiny_shard, lean_shard, tmp_path):
    for name, shard in (("full", tiny_shard), ("lean", lean_shard)):
        prepare(shard, tmp_path / name, OBS, stride=10, progress=False)
    for split in (dataset.TRAIN, dataset.VALID):
        full, lean = load_arrays(tmp_path / "full", split), load_arrays(tmp_path / "lean", split)
        for a, b in zip(full, lean, strict=True):
            assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("layout", ["link", "copy"])
def test_lean_shards_merge_and_summarise(lean_shard, tiny_shard, tmp_path, layout):
    out = tmp_path / "dataset.h5"
    merge_shards([lean_shard], out, layout=layout)
    attrs = dataset.validate(out)
    assert attrs[dataset.STORAGE_LAYOUT_ATTR] == "lean"
    lean = summary_table(out).set_index("quantity")["value"]
    full = summary_table(tiny_shard).set_index("quantity")["value"]
    states = [q for q in full.index if q.startswith("state_")]
    np.testing.assert_allclose(lean[states].astype(float), full[states].astype(float),
                               rtol=1e-5, atol=1e-6)


def test_default_layout_leaves_config_json_as_before(tiny_shard, lean_shard):
    """The default's files do not mention the layout, so they stay byte for byte as before."""
    with h5py.File(tiny_shard) as f, h5py.File(lean_shard) as g:
        assert "layout" not in json.loads(f.attrs["config_json"])["storage"]
        assert json.loads(g.attrs["config_json"])["storage"]["layout"] == "lean"


def test_a_lean_dataset_missing_qpos_is_refused(lean_shard, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(lean_shard.read_bytes())
    with h5py.File(bad, "r+") as f:
        del f["trajectory_00002/qpos"]
    with pytest.raises(dataset.DatasetError, match="trajectory_00002: dataset 'qpos' is missing"):
        dataset.validate(bad)


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(QuadpipeError, match="generate.layout must be one of full, lean"):
        generate_shard(tmp_path / "x.h5", 1, seed=1, expert=TINY_EXPERT,
                       gen=dataclasses.replace(TINY_GEN, layout="tiny"), progress=False)
