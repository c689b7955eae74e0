"""Domain randomisation: off is the nominal data byte for byte; on, every draw is reproducible,
stored, replayed, and every rejected attempt is counted under its reason against its draw."""

from __future__ import annotations

import dataclasses
import filecmp
import json

import h5py
import mujoco
import numpy as np
import pandas as pd
import pytest
from conftest import TINY_EXPERT, TINY_GEN

from quadpipe.config import StabilityConfig, expert_from_json
from quadpipe.control.follower import expert_torque
from quadpipe.data import dataset
from quadpipe.data.generate import generate_shard
from quadpipe.data.merge import merge_shards
from quadpipe.data.replay import replay
from quadpipe.data.stats import acceptance_table, scan, write_stats
from quadpipe.learn.imitation import dagger
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim import randomize
from quadpipe.sim.commands import attempt_rng, sample_sequence
from quadpipe.sim.expert import references, standing_pose
from quadpipe.sim.model import build_model, full_state, standing_qpos
from quadpipe.sim.physics import PhysicsRanges, PushRanges, apply
from quadpipe.sim.randomize import RandomizeConfig
from quadpipe.sim.rollout import simulate_one
from quadpipe.sim.stability import REASONS, STABLE, check_stability

# Kicks every 0.2-0.4 s, so the tiny trajectories (0.4-0.8 s) get some.
RAND = RandomizeConfig(data=True, pushes=PushRanges(interval_s=(0.2, 0.4), velocity=(0.3, 0.8)))
# Kicks the open-loop trot cannot take: the stability filter rejects some attempts.
HARD = RandomizeConfig(data=True, pushes=PushRanges(interval_s=(0.1, 0.3), velocity=(1.0, 2.5)))


def _generate(out, rand, num=6, seed=7, shard=0, gen=TINY_GEN):
    return generate_shard(out, num, seed, shard, expert=TINY_EXPERT, gen=gen, progress=False,
                          rand=rand)


@pytest.fixture(scope="module")
def rand_shard(tmp_path_factory):
    out = tmp_path_factory.mktemp("rand") / "shard_0.h5"
    _generate(out, RAND)
    return out


def test_off_is_the_nominal_dataset_byte_for_byte(tiny_shard, tmp_path):
    """Randomisation off, whatever its ranges and the DAgger switch: the same bytes as a shard
    made without the argument, nothing drawn or stored, and the states are those of the nominal
    model driven by the attempt's commands."""
    off = RandomizeConfig(data=False, dagger=True,
                          physics=PhysicsRanges(friction=(0.1, 0.2), slope_deg=(5.0, 9.0)))
    out = tmp_path / "off.h5"
    _generate(out, off)
    assert filecmp.cmp(out, tiny_shard, shallow=False)
    with h5py.File(out) as f:
        assert dataset.ATTEMPTS not in f
        assert "randomize" not in json.loads(f.attrs["config_json"])
        g = f["trajectory_00001"]
        assert randomize.PHYSICS_ATTR not in g.attrs
        commands = sample_sequence(attempt_rng(7, 0, int(g.attrs["attempt"])),
                                   TINY_GEN.min_moves, TINY_GEN.max_moves)
        np.testing.assert_array_equal(g["command_sequence"][()], commands)
        model = build_model(TINY_EXPERT)
        r = simulate_one(model, mujoco.MjData(model),
                         full_state(model, standing_qpos(model, *standing_pose())),
                         references(commands, TINY_EXPERT))
        np.testing.assert_array_equal(g["qpos"][()], r.qpos[:-1].astype(np.float32))


def test_same_seed_same_randomised_dataset_whatever_the_threads(rand_shard, tmp_path):
    one = tmp_path / "one_thread.h5"
    _generate(one, RAND, gen=dataclasses.replace(TINY_GEN, threads=1))
    assert filecmp.cmp(one, rand_shard, shallow=False)
    other = tmp_path / "other_seed.h5"
    _generate(other, RAND, seed=8)
    with h5py.File(rand_shard) as a, h5py.File(other) as b:
        assert a["trajectory_00001"].attrs[randomize.PHYSICS_ATTR] != \
            b["trajectory_00001"].attrs[randomize.PHYSICS_ATTR]


def test_each_trajectory_stores_its_own_draw_and_keeps_its_commands(rand_shard, tiny_shard):
    """The physics stream is separate from the commands': switching randomisation on keeps every
    attempt's commands. Each kept trajectory stores the draw of its attempt."""
    with h5py.File(rand_shard) as f, h5py.File(tiny_shard) as nominal:
        config = json.loads(f.attrs["config_json"])
        assert config["randomize"] == json.loads(json.dumps(RAND.ranges()))
        draws, pushes = set(), 0
        for name in dataset.trajectory_names(f):
            g = f[name]
            attempt = int(g.attrs["attempt"])
            physics, kicks = randomize.from_json(g.attrs[randomize.PHYSICS_ATTR])
            expected = randomize.attempt_physics(7, 0, attempt, RAND,
                                                 len(g["command_sequence"]) * 0.4, TINY_EXPERT.dt)
            assert physics == expected[0]
            assert [(s, dv.tolist()) for s, dv in kicks] == \
                [(s, dv.tolist()) for s, dv in expected[1]]
            draws.add(physics.friction)
            pushes += len(kicks)
            commands = sample_sequence(attempt_rng(7, 0, attempt), 1, 2)
            np.testing.assert_array_equal(g["command_sequence"][()], commands)
        assert len(draws) == len(dataset.trajectory_names(f)) and pushes > 0
        # nominal and randomised shards accept the same first attempts here, with other states
        assert not np.array_equal(f["trajectory_00001/qpos"][()],
                                  nominal["trajectory_00001/qpos"][()])


def test_replay_reproduces_randomised_trajectories_from_what_is_stored(rand_shard, tmp_path):
    with h5py.File(rand_shard) as f:
        n = len(dataset.trajectory_names(f))
    for tid in range(1, n + 1):
        report = replay(rand_shard, tid).report
        assert report["reproduced"] and report["randomized"], report
        assert report["max_qpos_error"] < 1e-5
    # without its draw the same commands give other states: replay uses the stored physics
    stripped = tmp_path / "stripped.h5"
    stripped.write_bytes(rand_shard.read_bytes())
    with h5py.File(stripped, "r+") as f:
        del f["trajectory_00001"].attrs[randomize.PHYSICS_ATTR]
    report = replay(stripped, 1).report
    assert not report["reproduced"] and report["max_qpos_error"] > 1e-3


def test_actions_are_the_torque_the_expert_commanded(rand_shard):
    """The motors apply strength x command; the data hold the command, which is what the
    expert's PD law gives at the stored states (and what a policy outputs)."""
    with dataset.open_file(rand_shard) as f:
        expert = expert_from_json(f.attrs["config_json"])
        weak = 0
        for name in dataset.trajectory_names(f):
            g = f[name]
            physics, _ = randomize.from_json(g.attrs[randomize.PHYSICS_ATTR])
            weak += min(physics.motor_strength) < 0.95
            label = expert_torque(g["qpos"][()].astype(float), g["qvel"][()].astype(float),
                                  references(g["command_sequence"][()], expert), expert)
            np.testing.assert_allclose(label, g["actions"][()], atol=1e-4)
        assert weak > 0


def test_rejected_attempts_are_counted_under_their_reason(tmp_path):
    """Every attempt the shard used is in its attempts table with the reason the stability
    filter gives its own re-simulation; the root counts and the stats table agree."""
    out = tmp_path / "hard.h5"
    summary = _generate(out, HARD, num=4)
    assert summary["rejected_count"] > 0
    with h5py.File(out) as f:
        rows = dataset.read_attempts(f)
    assert [r["attempt"] for r in rows] == list(range(summary["total_attempts"]))
    model = build_model(TINY_EXPERT)
    initial = full_state(model, standing_qpos(model, *standing_pose()))
    for r in rows:
        commands = sample_sequence(attempt_rng(7, 0, r["attempt"]), 1, 2)
        physics, pushes = randomize.attempt_physics(7, 0, r["attempt"], HARD,
                                                    len(commands) * 0.4, TINY_EXPERT.dt)
        m = apply(model, physics)
        sim = simulate_one(m, mujoco.MjData(m), initial, references(commands, TINY_EXPERT),
                           pushes)
        assert r["reason"] == check_stability(sim.qpos, sim.qvel, sim.time, TINY_EXPERT.dt,
                                              StabilityConfig())
        assert r["friction"] == physics.friction and r["pushes"] == len(pushes)
    counts = pd.Series([r["reason"] for r in rows]).value_counts()
    for reason in REASONS:
        assert summary[f"rejected_{reason}"] == counts.get(reason, 0)
    assert counts[STABLE] == 4
    # stats: per drawn quantity, the bins hold every attempt once, with the same reasons
    table = acceptance_table(scan(out))
    for _, rows_q in table.groupby("quantity"):
        assert rows_q["attempts"].sum() == summary["total_attempts"]
        assert rows_q["accepted"].sum() == 4
        for reason in REASONS:
            assert rows_q[f"rejected_{reason}"].sum() == summary[f"rejected_{reason}"]
    assert "joint_damping_scale" in set(table["quantity"])


def test_merge_and_stats_keep_every_shards_attempts(tmp_path):
    shards = []
    for k in range(2):
        shards.append(tmp_path / f"shard_{k}.h5")
        _generate(shards[-1], HARD, num=2, shard=k)
    merged = merge_shards(shards, tmp_path / "dataset.h5")
    with h5py.File(tmp_path / "dataset.h5") as f:
        rows = dataset.read_attempts(f)
    assert len(rows) == merged["total_attempts"]
    assert [r["shard"] for r in rows] == sorted(r["shard"] for r in rows)
    files = write_stats(tmp_path / "dataset.h5", tmp_path / "stats")
    accept = pd.read_csv(files["acceptance.csv"])
    friction = accept[accept["quantity"] == "friction"]
    assert friction["attempts"].sum() == merged["total_attempts"]
    assert friction["acceptance_rate"].between(0, 1).all()
    trajectories = pd.read_csv(files["trajectories.csv"])
    assert trajectories["physics_friction"].between(0.4, 1.25).all()
    # a shard alone bins its own attempts
    alone = acceptance_table(scan(shards[0]))
    with h5py.File(shards[0]) as f:
        assert alone[alone["quantity"] == "friction"]["attempts"].sum() == \
            f.attrs["total_attempts"]


def test_nominal_acceptance_table_is_the_summary(tiny_shard):
    table = acceptance_table(scan(tiny_shard))
    assert list(table["quantity"]) == ["all attempts"]
    with h5py.File(tiny_shard) as f:
        assert table["attempts"].iloc[0] == f.attrs["total_attempts"]
        assert table["accepted"].iloc[0] == f.attrs["stable_count"]


def test_randomised_dagger_draws_per_episode_and_splits_exactly() -> None:
    """Randomised DAgger episodes get their own physics and pushes; the samples are the same
    however the round is split over jobs, and differ from the nominal round's."""
    import torch

    obs = ObsConfig(horizon=200, waypoint_every=40, gait_clock=True)
    torch.manual_seed(0)
    policy = Policy(obs.dim, 12, (16, 16, 16))
    rand = RandomizeConfig(dagger=True, pushes=PushRanges(interval_s=(0.1, 0.2),
                                                          velocity=(0.3, 0.8)))

    def collect(part, parts, r):
        return dagger.collect(policy, obs, TINY_EXPERT, episodes=4, seconds=0.3, stride=10,
                              expert_share=1.0, seed=0, rnd=1, part=part, parts=parts, rand=r)

    whole = collect(0, 1, rand)
    split = dagger.merge([collect(1, 2, rand), collect(0, 2, rand)])
    np.testing.assert_array_equal(whole.x, split.x)
    np.testing.assert_array_equal(whole.y, split.y)
    nominal = collect(0, 1, RandomizeConfig())
    assert whole.x.shape == nominal.x.shape  # expert-driven: nobody falls in 0.3 s
    assert not np.array_equal(whole.x, nominal.x)
    draws = [dagger.episode_physics(0, 1, i, rand, 0.3, 0.001) for i in range(4)]
    assert len({d[0].friction for d in draws}) == 4 and all(d[1] for d in draws)


def test_bad_ranges_are_refused_by_name() -> None:
    from quadpipe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"randomize.physics.friction must be \[low, high\]"):
        RandomizeConfig.from_mapping({"physics": {"friction": [1.0, 0.5]}})
    with pytest.raises(ConfigError, match="unknown key randomize.pushes.strength"):
        RandomizeConfig.from_mapping({"pushes": {"strength": [1, 2]}})
    cfg = RandomizeConfig.from_mapping({"data": True, "physics": {"slope_deg": [1.0, 2.0]}})
    assert cfg.data and cfg.physics.slope_deg == (1.0, 2.0)
    assert cfg.physics.joint_damping_scale == RandomizeConfig().physics.joint_damping_scale


def test_a_rollout_split_at_zero_kicks_is_the_uninterrupted_rollout() -> None:
    """Kicks split the C rollout; each piece carries on from the last one's state and warm start,
    so zero-size kicks change nothing, bit for bit, and a real kick changes the velocity."""
    model = build_model(TINY_EXPERT)
    initial = full_state(model, standing_qpos(model, *standing_pose()))
    ctrl = references(np.array([1, 3], dtype=np.int32), TINY_EXPERT)
    data = mujoco.MjData(model)
    whole = simulate_one(model, data, initial, ctrl)
    zero = [(s, np.zeros(3)) for s in (0, 1, 37, 100, len(ctrl) - 1)]
    split = simulate_one(model, data, initial, ctrl, zero)
    for a, b in ((whole.qpos, split.qpos), (whole.qvel, split.qvel), (whole.torque, split.torque),
                 (whole.time, split.time)):
        np.testing.assert_array_equal(a, b)
    kicked = simulate_one(model, data, initial, ctrl, [(150, np.array([0.5, 0.0, 0.0]))])
    np.testing.assert_array_equal(kicked.qpos[:151], whole.qpos[:151])
    assert kicked.qvel[150, 0] == pytest.approx(whole.qvel[150, 0] + 0.5)
