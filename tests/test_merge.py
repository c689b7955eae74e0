"""Merging shards: renumbering, provenance, split, combined summary, raw chunk copy, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import file_contents

from quadpipe.cli import main
from quadpipe.data import dataset
from quadpipe.data.merge import merge_shards
from quadpipe.errors import DatasetError, QuadpipeError
from quadpipe.sim.stability import REASONS


def _fake_shard(src: Path, dst: Path, shard: int, **root: object) -> Path:
    """A copy of the real tiny shard relabelled as shard `shard` (and any root attrs changed)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        f.attrs["shard"] = shard
        for name in dataset.trajectory_names(f):
            f[name].attrs["shard"] = shard
        for key, value in root.items():
            f.attrs[key] = value
    return dst


@pytest.fixture
def two_shards(tiny_shard: Path, tmp_path: Path) -> list[Path]:
    a = _fake_shard(tiny_shard, tmp_path / "shard_0.h5", 0)
    b = _fake_shard(tiny_shard, tmp_path / "shard_1.h5", 1, total_attempts=8, rejected_count=2,
                    rejected_tipped_over=2, acceptance_rate=0.75)
    return [a, b]


def test_merge_renumbers_in_shard_order_and_keeps_provenance(two_shards, tmp_path):
    out = tmp_path / "merged" / "dataset.h5"
    merge_shards(two_shards, out, tmp_path / "merged" / "summary.h5", valid_fraction=0.25,
                 seed=3)
    assert dataset.validate(out)["num_trajectories"] == 12
    with h5py.File(out) as f:
        names = dataset.trajectory_names(f)
        assert names == [dataset.group_name(i) for i in range(1, 13)]
        for i, name in enumerate(names):
            a = f[name].attrs
            assert a["trajectory_id"] == i + 1
            assert a["source_shard"] == i // 6
            assert a["source_trajectory_id"] == i % 6 + 1
        splits = [f[n].attrs[dataset.SPLIT_ATTR] for n in names]
    assert splits == dataset.assign_split(12, 0.25, 3)
    assert splits.count(dataset.VALID) == 3


@pytest.mark.parametrize("layout", ["link", "copy"])
def test_merged_data_equal_the_shards_and_chunks_stay_compressed(two_shards, tmp_path, layout):
    out = tmp_path / "dataset.h5"
    merge_shards(two_shards, out, layout=layout)
    with h5py.File(two_shards[1]) as src, h5py.File(out) as dst:
        s, d = src["trajectory_00002"], dst["trajectory_00008"]
        for key in (*dataset.TIME_SERIES, *dataset.FIXED):
            np.testing.assert_array_equal(s[key][()], d[key][()])
        for key in dataset.TIME_SERIES:
            assert d[key].compression == s[key].compression == "gzip"
            assert d[key].chunks == s[key].chunks
            # the stored (compressed) bytes of the first chunk are copied as they are
            assert (d[key].id.read_direct_chunk((0, 0))[1]
                    == s[key].id.read_direct_chunk((0, 0))[1])


def test_root_attributes_are_the_combined_summary(two_shards, tmp_path):
    out, summary = tmp_path / "dataset.h5", tmp_path / "summary.h5"
    merge_shards(two_shards, out, summary)
    with h5py.File(out) as f, h5py.File(summary) as s, h5py.File(two_shards[0]) as first:
        for attrs in (dict(f.attrs), dict(s.attrs)):
            assert attrs["num_trajectories"] == attrs["stable_count"] == 12
            assert attrs["total_attempts"] == 6 + 8
            assert attrs["rejected_count"] == 2
            assert attrs["rejected_tipped_over"] == 2
            assert attrs["acceptance_rate"] == pytest.approx(12 / 14)
            assert attrs["merged"] and attrs["num_tasks"] == 2
            assert attrs["dt"] == first.attrs["dt"]
            assert attrs["cmd_duration"] == first.attrs["cmd_duration"]
            assert attrs["random_seed"] == 7
            assert attrs["config_json"] == first.attrs["config_json"]
            for reason in REASONS:
                assert f"rejected_{reason}" in attrs
        assert not dataset.trajectory_names(s)


@pytest.mark.parametrize("key, value", [
    ("dt", 0.002),
    ("cmd_duration", 0.8),
    ("config_json", json.dumps({"expert": {"kp": [1, 2, 3]}})),
])
def test_shards_made_with_other_settings_are_refused_by_name(tiny_shard, tmp_path, key, value):
    a = _fake_shard(tiny_shard, tmp_path / "a.h5", 0)
    b = _fake_shard(tiny_shard, tmp_path / "b.h5", 1, **{key: value})
    out = tmp_path / "dataset.h5"
    with pytest.raises(DatasetError, match=key) as err:
        merge_shards([a, b], out)
    assert "a.h5" in str(err.value) and "b.h5" in str(err.value)
    assert not out.exists()
    assert not dataset.stale_temporaries(out)


def test_the_same_shard_twice_is_refused(tiny_shard, tmp_path):
    with pytest.raises(DatasetError, match="same shard"):
        merge_shards([tiny_shard, tiny_shard], tmp_path / "dataset.h5")


def test_a_truncated_shard_is_refused_with_its_name(tiny_shard, tmp_path):
    bad = tmp_path / "shard_9.h5"
    bad.write_bytes(tiny_shard.read_bytes()[:5000])
    out = tmp_path / "dataset.h5"
    with pytest.raises(DatasetError, match="shard_9.h5"):
        merge_shards([tiny_shard, bad], out)
    assert not out.exists()


def test_cli_merge_reports_errors_in_one_line(tiny_shard, tmp_path, capsys):
    missing = tmp_path / "nope.h5"
    code = main(["merge", str(tiny_shard), str(missing), "--out", str(tmp_path / "d.h5")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope.h5" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_merge_writes_dataset_and_summary(two_shards, tmp_path):
    out, summary = tmp_path / "d.h5", tmp_path / "s.h5"
    code = main(["merge", *map(str, two_shards), "--out", str(out), "--summary", str(summary),
                 "--valid-fraction", "0.5", "--seed", "1"])
    assert code == 0
    with h5py.File(out) as f:
        splits = [f[n].attrs[dataset.SPLIT_ATTR] for n in dataset.trajectory_names(f)]
    assert splits.count(dataset.VALID) == 6
    assert summary.exists()


def test_linked_merge_reads_exactly_like_the_copy(two_shards, tmp_path):
    """Same groups, datasets, values and attributes through plain h5py; only the root attribute
    naming the linked shards differs, and the linked file is a few kB per trajectory."""
    copy, link = tmp_path / "copy" / "dataset.h5", tmp_path / "link" / "dataset.h5"
    merge_shards(two_shards, copy, layout="copy")
    merge_shards(two_shards, link, layout="link")
    a, b = file_contents(copy), file_contents(link)
    linked = json.loads(b["/"].pop(dataset.LINKED_ATTR))
    assert a == b
    assert [e["path"] for e in linked] == ["../shard_0.h5", "../shard_1.h5"]
    assert link.stat().st_size < 0.1 * copy.stat().st_size
    with h5py.File(link) as f:  # the time series are links, not copies
        assert isinstance(f.get("trajectory_00001/qpos", getlink=True), h5py.ExternalLink)


def test_linked_merge_moves_with_its_shards(two_shards, tmp_path):
    merge_shards(two_shards, tmp_path / "dataset" / "dataset.h5", layout="link")
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    shutil.copytree(tmp_path, moved)
    try:
        assert file_contents(moved / "dataset" / "dataset.h5") == \
            file_contents(tmp_path / "dataset" / "dataset.h5")
        dataset.validate(moved / "dataset" / "dataset.h5")
    finally:
        shutil.rmtree(moved)


def test_a_missing_linked_shard_gives_one_clear_line(two_shards, tmp_path, capsys):
    out = tmp_path / "dataset" / "dataset.h5"
    merge_shards(two_shards, out, layout="link")
    two_shards[1].rename(tmp_path / "elsewhere.h5")
    with pytest.raises(DatasetError, match="shard_1.h5, which is missing") as err:
        dataset.validate(out)
    assert "--layout copy" in str(err.value)
    code = main(["stats", str(out), "--out-dir", str(tmp_path / "stats")])
    err_text = capsys.readouterr().err
    assert code == 2
    assert "shard_1.h5" in err_text and "missing" in err_text and "Traceback" not in err_text
    assert len(err_text.strip().splitlines()) == 1
    assert not (tmp_path / "stats" / "summary.csv").exists()


def test_a_changed_linked_shard_is_refused(two_shards, tmp_path):
    out = tmp_path / "dataset.h5"
    merge_shards(two_shards, out, layout="link")
    with h5py.File(two_shards[0], "r+") as f:
        f.create_dataset("padding", data=np.zeros(10_000))
    with pytest.raises(DatasetError, match="changed since the merge"):
        dataset.validate(out)


def test_unknown_layout_is_refused(two_shards, tmp_path):
    with pytest.raises(QuadpipeError, match="--layout must be one of link, copy"):
        merge_shards(two_shards, tmp_path / "d.h5", layout="symlink")
