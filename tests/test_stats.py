"""Dataset statistics."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import TINY_EXPERT

from quadpipe.cli import main
from quadpipe.data import dataset
from quadpipe.data.stats import (
    JOINT_NAMES,
    PLOTS,
    STATE_NAMES,
    TABLES,
    summary_table,
    trajectory_table,
)


def test_trajectory_table_has_one_row_per_trajectory_with_its_figures(tiny_shard):
    table = trajectory_table(tiny_shard)
    assert list(table.index) == list(range(1, 7))
    with h5py.File(tiny_shard) as f:
        g = f["trajectory_00003"]
        n = int(g.attrs["num_timesteps"])
        cmds = g["command_sequence"][()]
        peak = np.abs(g["actions"][()]).max(axis=0)
        z = g["qpos"][:, 2].astype(float)
    row = table.loc[3]
    assert row["num_timesteps"] == n
    assert row["duration_s"] == pytest.approx(n * TINY_EXPERT.dt)
    assert row["num_commands"] == len(cmds)
    assert row["n_stand"] == int(np.sum(cmds == 5))
    assert row[[f"n_{k}" for k in ("forward", "backward", "turn_right", "turn_left",
                                   "stand")]].sum() == len(cmds)
    assert row["height_mean_m"] == pytest.approx(z.mean())
    np.testing.assert_allclose(row[[f"peak_torque_{j}" for j in JOINT_NAMES]].astype(float), peak)
    assert row["distance_m"] >= row["displacement_m"] > 0
    assert row["mean_speed_mps"] == pytest.approx(row["distance_m"] / row["duration_s"])


def test_summary_table_gives_the_original_figures(tiny_shard):
    table = summary_table(tiny_shard).set_index("quantity")["value"]
    assert table["num_trajectories"] == 6
    assert table["num_train"] + table["num_valid"] == 6
    assert table["acceptance_rate"] == 1.0
    assert table["file_size"] == pytest.approx(tiny_shard.stat().st_size / 1e6)
    with h5py.File(tiny_shard) as f:
        states = np.concatenate([f[n]["states"][()] for n in dataset.trajectory_names(f)])
    for i in (2, 14):
        name = STATE_NAMES[i]
        assert table[f"state_mean.{name}"] == pytest.approx(states[:, i].mean(), rel=1e-5)
        assert table[f"state_std.{name}"] == pytest.approx(states[:, i].std(), rel=1e-4)
    assert f"action_std.{JOINT_NAMES[-1]}" in table


def test_cli_stats_writes_tables_and_plots(tiny_shard, tmp_path):
    assert main(["stats", str(tiny_shard), "--out-dir", str(tmp_path)]) == 0
    for name in TABLES:
        assert (tmp_path / name).stat().st_size > 0
    for name in PLOTS:
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(tmp_path / "trajectories.csv")) == 6
    assert "<table" in (tmp_path / "summary.html").read_text()


def test_box_stats_from_the_histogram_match_the_data():
    """The torque box plot is drawn from fixed bins (flat memory): its figures must be those of
    the data, to a bin (quartiles) or three (whiskers, whose limits carry the quartiles' error)."""
    from quadpipe.data.stats import TORQUE_BIN, TORQUE_MAX, box_stats

    values = np.abs(np.random.default_rng(0).standard_normal(100_000) * 5.0)
    hist = np.bincount((values / TORQUE_BIN).astype(int), minlength=int(TORQUE_MAX / TORQUE_BIN))
    got = box_stats(hist)
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    iqr = q3 - q1
    want = {"q1": q1, "med": med, "q3": q3, "whislo": values[values >= q1 - 1.5 * iqr].min(),
            "whishi": values[values <= q3 + 1.5 * iqr].max()}
    for key, value in want.items():
        tolerance = TORQUE_BIN if key in ("q1", "med", "q3") else 3 * TORQUE_BIN
        assert abs(got[key] - value) <= tolerance, key
