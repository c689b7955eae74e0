"""Shard generation: determinism, the file format, and bad input."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import TINY_EXPERT, TINY_GEN
from helpers import file_contents

from quadpipe.config import PROFILES, GenerateConfig, StabilityConfig
from quadpipe.data import dataset
from quadpipe.data.generate import generate_shard
from quadpipe.errors import DatasetError, QuadpipeError


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quadpipe", *args], capture_output=True,
                          text=True, timeout=300)


def test_shard_follows_the_format(tiny_shard):
    attrs = dataset.validate(tiny_shard)
    assert attrs["num_trajectories"] == attrs["stable_count"] == 6
    assert attrs["total_attempts"] == 6 + attrs["rejected_count"]
    assert attrs["acceptance_rate"] == pytest.approx(6 / attrs["total_attempts"])
    with h5py.File(tiny_shard) as f:
        names = dataset.trajectory_names(f)
        assert names == [f"trajectory_{i:05d}" for i in range(1, 7)]
        g = f[names[0]]
        n = g.attrs["num_timesteps"]
        assert g["states"].shape == (n, 36) and g["states"].dtype == np.float32
        assert g["actions"].shape == (n, 12)
        assert n == len(g["command_sequence"]) * round(0.4 / TINY_EXPERT.dt)  # 0.4-s commands
        assert g["states"].chunks[0] <= n and g["states"].compression == "gzip"
        assert np.abs(g["actions"][()]).max() <= 33.5 + 1e-4
        assert g.attrs["stability_reason"] == "stable" and g.attrs["is_stable"]
        np.testing.assert_allclose(g["initial_state"][()], g["states"][0], rtol=1e-6, atol=1e-6)


def test_same_seed_same_shard_any_thread_count(tiny_shard, tmp_path):
    again = tmp_path / "again.h5"
    generate_shard(again, 6, seed=7, shard=0, expert=TINY_EXPERT,
                   gen=GenerateConfig(min_moves=1, max_moves=2, threads=1), progress=False)
    assert file_contents(again) == file_contents(tiny_shard)


def test_other_shard_other_data(tiny_shard, tmp_path):
    other = tmp_path / "other.h5"
    generate_shard(other, 6, seed=7, shard=1, expert=TINY_EXPERT, gen=TINY_GEN, progress=False)
    with h5py.File(other) as a, h5py.File(tiny_shard) as b:
        cmds_a = [a[n]["command_sequence"][()].tolist() for n in dataset.trajectory_names(a)]
        cmds_b = [b[n]["command_sequence"][()].tolist() for n in dataset.trajectory_names(b)]
        assert cmds_a != cmds_b
        assert a.attrs["shard"] == 1


def test_rejections_are_counted_and_resampled(tmp_path):
    """A velocity bound of 0.45 m/s, which about a third of these short walks exceed (measured
    peaks 0.31-0.61): those attempts are rejected, counted by reason and replaced."""
    out = tmp_path / "strict.h5"
    strict = StabilityConfig(max_velocity=0.45)
    original = dataclasses.replace(TINY_EXPERT, sim=PROFILES["original"])  # where it was measured
    generate_shard(out, 5, seed=3, expert=original, stability=strict, gen=TINY_GEN,
                   progress=False)
    attrs = dataset.validate(out)
    assert attrs["rejected_count"] > 0
    assert attrs["rejected_velocity_exploded"] == attrs["rejected_count"]
    assert attrs["total_attempts"] == 5 + attrs["rejected_count"]
    with h5py.File(out) as f:
        kept = [f[n] for n in dataset.trajectory_names(f)]
        assert all(np.abs(g["qvel"][:, 0:3]).max() <= 0.45 for g in kept)
        attempts = [int(g.attrs["attempt"]) for g in kept]
    assert attempts == sorted(attempts) and attempts[-1] == attrs["total_attempts"] - 1


def test_hopeless_settings_stop_with_a_clear_error(tmp_path):
    with pytest.raises(QuadpipeError, match="only 0 of 2 trajectories were stable after 4"):
        generate_shard(tmp_path / "x.h5", 2, seed=1, expert=TINY_EXPERT,
                       stability=StabilityConfig(max_velocity=0.01),
                       gen=GenerateConfig(min_moves=1, max_moves=1, max_attempts_factor=2,
                                          threads=1), progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_validate_refuses_truncated_file(tiny_shard, tmp_path):
    bad = tmp_path / "truncated.h5"
    data = tiny_shard.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated.h5.*truncated or corrupt"):
        dataset.validate(bad)


def test_validate_refuses_missing_dataset(tiny_shard, tmp_path):
    bad = tmp_path / "missing.h5"
    shutil.copy(tiny_shard, bad)
    with h5py.File(bad, "a") as f:
        del f["trajectory_00003/actions"]
    with pytest.raises(DatasetError, match=r"missing.h5:/trajectory_00003: dataset 'actions'"):
        dataset.validate(bad)


def test_cli_generates_and_rerun_is_a_no_op(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("expert: {cmd_duration: 0.2}\ngenerate: {min_moves: 1, max_moves: 1}\n")
    out = tmp_path / "s.h5"
    first = run_cli("generate", "--num", "2", "--seed", "3", "--out", str(out), "--config",
                    str(cfg))
    assert first.returncode == 0, first.stderr
    assert "2 trajectories" in first.stdout
    before = out.read_bytes()
    second = run_cli("generate", "--num", "2", "--seed", "3", "--out", str(out), "--config",
                     str(cfg))
    assert second.returncode == 0 and out.read_bytes() == before
    clash = run_cli("generate", "--num", "2", "--seed", "4", "--out", str(out), "--config",
                    str(cfg))
    assert clash.returncode == 2 and "already exists with other settings" in clash.stderr
    assert out.read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--num", "0"], "--num must be a positive number"),
    (["--num", "-3"], "--num must be a positive number"),
])
def test_cli_bad_numbers(tmp_path, args, message):
    res = run_cli("generate", *args, "--seed", "1", "--out", str(tmp_path / "x.h5"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and message in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_unwritable_folder(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("precious")
    res = run_cli("generate", "--num", "1", "--seed", "1", "--out", str(blocker / "s.h5"))
    assert res.returncode == 2 and "cannot write to folder" in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert blocker.read_text() == "precious"


def test_cli_unknown_config_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("generate: {min_move: 1}\n")
    res = run_cli("generate", "--num", "1", "--seed", "1", "--out", str(tmp_path / "s.h5"),
                  "--config", str(cfg))
    assert res.returncode == 2 and "unknown key generate.min_move" in res.stderr


@pytest.mark.parametrize("encoder", sorted(dataset.GZIP_ENCODERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_precompressed_chunks_read_back_exactly(tmp_path, dtype, encoder):
    """The gzip chunks compressed by quadpipe decode, through HDF5's own filters, to the data."""
    rng = np.random.default_rng(0)
    t = 2500  # not a multiple of the chunk: the padded edge chunk must decode too
    arrays = {"states": rng.normal(size=(t, 36)), "actions": rng.normal(size=(t, 12)),
              "qpos": rng.normal(size=(t, 19)), "qvel": rng.normal(size=(t, 18))}
    traj = dataset.Trajectory(command_sequence=np.array([1]), initial_state=np.zeros(36),
                              initial_qpos=np.zeros(19), initial_qvel=np.zeros(18), attrs={},
                              **arrays)
    storage = dataset.Storage(dtype=dtype, chunk_steps=1000, gzip_encoder=encoder)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        dataset.write_trajectory(f, "g", traj, storage)
    with h5py.File(tmp_path / "t.h5") as f:
        for key, values in arrays.items():
            d = f["g"][key]
            assert d.compression == "gzip" and d.shuffle and d.chunks == (1000, values.shape[1])
            np.testing.assert_array_equal(d[()], values.astype(dtype))


def test_gzip_encoders_write_different_bytes_of_the_same_data(tmp_path):
    """Each encoder really is used (their deflate streams differ) and neither changes the data."""
    rng = np.random.default_rng(1)
    values = np.cumsum(rng.normal(size=(3000, 36)), axis=0).astype(np.float32)
    chunks, sizes = {}, {}
    for encoder in dataset.GZIP_ENCODERS:
        with h5py.File(tmp_path / f"{encoder}.h5", "w") as f:
            dataset._write_gzip_chunks(f, "x", values, 1000, 4, dataset.GZIP_ENCODERS[encoder])
        with h5py.File(tmp_path / f"{encoder}.h5") as f:
            np.testing.assert_array_equal(f["x"][()], values)
            chunks[encoder] = f["x"].id.read_direct_chunk((0, 0))[1]
            sizes[encoder] = sum(f["x"].id.get_chunk_info(i).size for i in range(3))
    assert chunks["isal"] != chunks["zlib"]
    assert sizes["isal"] < values.nbytes and sizes["zlib"] < values.nbytes


def test_cli_unknown_gzip_encoder(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("generate: {gzip_encoder: zstd}\n")
    res = run_cli("generate", "--num", "1", "--seed", "1", "--out", str(tmp_path / "s.h5"),
                  "--config", str(cfg))
    assert res.returncode != 0 and "generate.gzip_encoder must be one of isal, zlib" in res.stderr
    assert not (tmp_path / "s.h5").exists()
