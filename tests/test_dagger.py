"""DAgger on random paths: exact expert labels, reproducible rounds, aggregation into training."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from quadpipe.config import ExpertConfig, expert_from_json, steps_in
from quadpipe.control.follower import expert_torque
from quadpipe.control.paths import ARC_ANGLE_DEG, CORNER_DEG, random_path
from quadpipe.data import dataset
from quadpipe.errors import ConfigError
from quadpipe.learn.imitation import dagger
from quadpipe.learn.imitation.train import train
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import Policy, load_checkpoint
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.expert import references

EXPERT = ExpertConfig()  # the default physics profile
OBS = ObsConfig(horizon=50, waypoint_every=10, gait_clock=True, dt=EXPERT.dt)


def test_label_is_the_torque_the_expert_applied(tiny_shard) -> None:
    """The DAgger label formula, at the expert's own states, gives the torques stored in the shard
    (which MuJoCo's position actuators applied): the label is exact, not a learned estimate."""
    with dataset.open_file(tiny_shard) as f:
        expert = expert_from_json(f.attrs["config_json"])
        for name in dataset.trajectory_names(f):
            g = f[name]
            label = expert_torque(g["qpos"][()].astype(float), g["qvel"][()].astype(float),
                                         references(g["command_sequence"][()], expert), expert)
            np.testing.assert_allclose(label, g["actions"][()], atol=1e-4)  # float32 file


def test_random_path_is_arc_length_sampled_with_bounded_corners() -> None:
    s, xy = random_path(np.random.default_rng(3), 12.0)
    steps = np.diff(xy, axis=0)
    np.testing.assert_allclose(np.linalg.norm(steps, axis=1), 0.005, rtol=1e-9)
    assert s[-1] == pytest.approx(12.0) and np.all(xy[0] == 0.0)
    heading = np.unwrap(np.arctan2(steps[:, 1], steps[:, 0]))
    assert np.abs(np.diff(heading)).max() <= np.deg2rad(CORNER_DEG[1]) + 1e-9
    assert np.ptp(heading) > np.deg2rad(30)  # it does turn
    _, other = random_path(np.random.default_rng(4), 12.0)
    assert not np.allclose(xy, other)


def _corners(xy: np.ndarray) -> int:
    heading = np.unwrap(np.arctan2(*np.diff(xy, axis=0)[:, ::-1].T))
    return int(np.sum(np.abs(np.diff(heading)) >= np.deg2rad(CORNER_DEG[0]) - 1e-9))


def test_piece_odds_weigh_corners_and_even_odds_keep_the_old_stream() -> None:
    # even odds must draw the pieces as before (DAgger's data and the suite's episodes are
    # pinned by their streams): the explicit default is the same path, bit for bit
    _, xy = random_path(np.random.default_rng(3), 12.0)
    _, same = random_path(np.random.default_rng(3), 12.0, pieces=(1.0, 1.0, 1.0))
    assert np.array_equal(xy, same)
    even = sum(_corners(random_path(np.random.default_rng(k), 30.0)[1]) for k in range(8))
    heavy = sum(_corners(random_path(np.random.default_rng(k), 30.0, pieces=(1, 1, 4))[1])
                for k in range(8))
    none = sum(_corners(random_path(np.random.default_rng(k), 30.0, pieces=(1, 1, 0))[1])
               for k in range(8))
    assert none == 0 and heavy > 1.5 * even > 0


def _arc_turns(xy: np.ndarray) -> list[float]:
    """Total heading change (deg) of each run of constant nonzero turning rate (an arc)."""
    heading = np.unwrap(np.arctan2(*np.diff(xy, axis=0)[:, ::-1].T))
    rate = np.round(np.diff(heading), 9)
    turns, run = [], 0.0
    for a, b in zip(rate[:-1], rate[1:], strict=True):
        if a != 0.0 and abs(a) < np.deg2rad(CORNER_DEG[0]) - 1e-9:
            run += a
            if b != a:
                turns.append(abs(np.rad2deg(run)))
                run = 0.0
    return turns


def test_arc_range_scales_the_arcs_and_keeps_the_pieces() -> None:
    """train.dagger_arc_deg: the same draws, each arc turning its angle from the new range, so
    the pieces (straights, corners) stay where they were and only the arcs turn further; the
    suite's default range keeps its old stream."""
    _, xy = random_path(np.random.default_rng(5), 40.0)
    _, same = random_path(np.random.default_rng(5), 40.0, arc_deg=ARC_ANGLE_DEG)
    assert np.array_equal(xy, same)
    short = _arc_turns(xy)
    _, wide = random_path(np.random.default_rng(5), 40.0, arc_deg=(60.0, 360.0))
    long = _arc_turns(wide)
    assert len(short) >= 3 and max(short) <= ARC_ANGLE_DEG[1] + 1.0
    assert max(long) > ARC_ANGLE_DEG[1] + 1.0 and min(long) >= 60.0 - 1.0
    # uniform draws u in [0, 1) map to lo + u (hi - lo): the same u for the first arc
    u = (short[0] - ARC_ANGLE_DEG[0]) / (ARC_ANGLE_DEG[1] - ARC_ANGLE_DEG[0])
    assert long[0] == pytest.approx(60.0 + u * 300.0, abs=1.0)
    with pytest.raises(ConfigError, match="dagger_arc_deg"):
        TrainConfig(dagger_arc_deg=(90.0, 45.0))
    assert TrainConfig().dagger_arc_deg == ARC_ANGLE_DEG  # the suite's range by default


def _collect(policy: Policy, share: float, seed: int = 0) -> dagger.Collected:
    return dagger.collect(policy, OBS, EXPERT, episodes=3, seconds=0.3, stride=10,
                          expert_share=share, seed=seed, rnd=1, threads=2)


def test_expert_driven_episodes_walk_and_repeat_exactly() -> None:
    torch.manual_seed(0)
    policy = Policy(OBS.dim, 12, (16, 16, 16))  # untrained: only the expert's episodes walk
    a, b = _collect(policy, 1.0), _collect(policy, 1.0)
    per = len(range(0, round(0.3 / EXPERT.dt), 10))  # every 10th step of 0.3 s
    assert a.x.shape == (3 * per, OBS.dim) and a.y.shape == (3 * per, 12)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.fall_fraction == 0.0 and a.torque_rmse == 0.0  # no policy-driven episode
    assert np.abs(a.y).max() <= ExpertConfig().torque_limit
    c = _collect(policy, 0.0)  # the untrained policy drives: its torques are far from the labels
    assert c.torque_rmse > 1.0
    assert not np.array_equal(c.x, a.x)


def test_dagger_rounds_add_samples_and_best_comes_from_the_last_round(tiny_shard, tmp_path):
    cfg = TrainConfig(epochs=2, lr_decay_epoch=0, sample_stride=5, hidden=(32, 32, 32),
                      batch_size=64, device="cpu", horizon=200, waypoint_every=40,
                      dagger_rounds=2, dagger_episodes=2, dagger_seconds=0.3, dagger_stride=10,
                      dagger_epochs=1, dagger_expert_share=1.0)
    summary = train(tiny_shard, tmp_path, cfg, progress=False)
    with (tmp_path / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(int(r["epoch"]), int(r["round"])) for r in rows] == [(1, 0), (2, 0), (3, 1), (4, 2)]
    # round 1: 2 episodes x 0.3 s every 10 ms (in whole steps), both expert-driven; round 2:
    # expert share 0.5 -> 1 of 2
    per = len(range(0, round(0.3 / EXPERT.dt), steps_in(10, EXPERT.dt)))
    assert [int(r["dagger_samples"]) for r in rows][2] == 2 * per
    assert summary["dagger_samples"] >= 2 * per + 3  # round 2's policy episode may fall early
    _, _, ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["dagger_round"] == 2 and ckpt["epoch"] == 4
    plain = train(tiny_shard, tmp_path / "plain", dataclasses.replace(cfg, dagger_rounds=0),
                  progress=False)
    assert plain["dagger_samples"] == 0 and len(plain["history"]) == 2
