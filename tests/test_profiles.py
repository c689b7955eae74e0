"""Physics profiles: what each one sets, the gait they share, where the profile is recorded, and
that a policy never runs on other physics than its own except in the suite's fidelity condition."""

from __future__ import annotations

import dataclasses
import json

import h5py
import mujoco
import numpy as np
import pytest
from conftest import TINY_EXPERT

from quadpipe.config import (
    PROFILES,
    ExpertConfig,
    expert_config,
    expert_from_json,
    sim_config,
    steps_in,
    to_json,
)
from quadpipe.control.closed_loop import Held, start_qpos
from quadpipe.errors import ConfigError
from quadpipe.evaluation.rollouts import decision_hold
from quadpipe.evaluation.suite import SuiteConfig, run_condition, run_part
from quadpipe.learn.policy import CheckpointError, load_checkpoint, load_for
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.expert import GAIT_FORWARD, MODE_FORWARD, gait_phase, references
from quadpipe.sim.model import LEGS, _load, build_model

ORIGINAL = ExpertConfig(sim=PROFILES["original"])
FAST = ExpertConfig(sim=PROFILES["fast"])


def test_the_original_profile_is_the_models_own_physics() -> None:
    """The XML holds the original's settings: its profile must change none of them."""
    xml, built = _load(), build_model(ORIGINAL)
    for name in ("timestep", "integrator", "cone", "impratio", "iterations", "ls_iterations"):
        assert getattr(built.opt, name) == getattr(xml.opt, name), name
    np.testing.assert_array_equal(built.geom_condim, xml.geom_condim)


def test_the_fast_profile_sets_every_one_of_its_settings() -> None:
    m = build_model(FAST)
    assert m.opt.timestep == 0.004 and m.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL
    assert m.opt.iterations == 4 and m.opt.ls_iterations == 8 and m.opt.impratio == 1.0
    feet = [m.geom(f"{leg}_foot").id for leg in LEGS]
    assert set(m.geom_condim[feet]) == {3} and ExpertConfig().sim == PROFILES["fast"]


def test_a_profile_key_overrides_only_itself_and_bad_ones_are_named() -> None:
    sim = sim_config({"profile": "original", "timestep": 0.002})
    assert sim.timestep == 0.002 and sim.cone == "elliptic" and sim.profile == "original"
    for bad, key in (({"profile": "cheap"}, "sim.profile"), ({"timestep": "4ms"}, "sim.timestep"),
                     ({"cone": "round"}, "sim.cone"), ({"foot_condim": 2}, "sim.foot_condim"),
                     ({"substeps": 2}, "sim.substeps")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            sim_config(bad)
    with pytest.raises(ConfigError, match=r"expert\.dt is now sim\.timestep"):
        expert_config({"expert": {"dt": 0.001}})


def test_settings_round_trip_and_old_files_read_as_the_original() -> None:
    e = expert_config({"sim": {"profile": "original"}, "expert": {"cmd_duration": 0.8}})
    assert expert_from_json(to_json(expert=e)) == e
    old = json.dumps({"expert": {"dt": 0.001, "cmd_duration": 1.6}})  # before profiles
    assert expert_from_json(old).sim == PROFILES["original"]


def test_the_gait_is_stated_in_time_not_steps() -> None:
    """The same second of trot at 1 and at 4 ms: equal phases and references at equal times;
    at 1 ms the original's phase, bit for bit."""
    k = np.arange(1, 1001)
    one = gait_phase(k, np.full(1000, MODE_FORWARD), 0.001)
    np.testing.assert_array_equal(one, k * GAIT_FORWARD[0] * 0.01 * 2.0 * np.pi)
    four = gait_phase(np.arange(1, 251), np.full(250, MODE_FORWARD), 0.004)
    np.testing.assert_allclose(four, one[3::4], rtol=1e-12)
    cmds = np.array([1, 3, 5])
    a, b = references(cmds, ORIGINAL), references(cmds, FAST)
    assert len(a) == 4 * len(b) == 3 * 1600
    # equal times; the knob filter is a first-order lag in time, its steps differ by O(dt)
    np.testing.assert_allclose(b, a[3::4], atol=0.02)
    assert steps_in(25, 0.004) == 6 and steps_in(5, 0.004) == 1 and steps_in(1000, 0.004) == 250


def test_native_servos_and_the_torque_pd_are_the_same_dynamics_on_every_profile() -> None:
    """Generation runs the servos inside MuJoCo, evaluation computes the same law in Python on
    the torque model: on either profile (both Euler) the two are the same physics."""
    from quadpipe.control.follower import expert_torque
    from quadpipe.sim.model import standing_qpos

    for expert in (ORIGINAL, FAST):
        refs = references(np.array([1, 3]), expert)[:200]
        native, torque = build_model(expert), build_model(expert, pd="torque")
        dn, dt = mujoco.MjData(native), mujoco.MjData(torque)
        q0 = standing_qpos(native, 0.86, -1.33)
        dn.qpos[:] = dt.qpos[:] = q0
        for r in refs:
            dn.ctrl[:] = r
            dt.ctrl[:] = expert_torque(dt.qpos[None], dt.qvel[None], r[None], expert)[0]
            mujoco.mj_step(native, dn)
            mujoco.mj_step(torque, dt)
        np.testing.assert_allclose(dn.qpos, dt.qpos, atol=1e-9)


def test_the_profile_reaches_the_dataset_and_the_checkpoint(tiny_shard, tiny_policies) -> None:
    with h5py.File(tiny_shard) as f:
        assert f.attrs["sim_profile"] == TINY_EXPERT.sim.profile == "fast"
        assert f.attrs["dt"] == 0.004
        assert json.loads(f.attrs["sim_json"]) == dataclasses.asdict(TINY_EXPERT.sim)
        assert expert_from_json(f.attrs["config_json"]).sim == TINY_EXPERT.sim
    _, obs, ckpt = load_checkpoint(tiny_policies[0])
    assert obs.dt == 0.004 and ckpt["sim"] == dataclasses.asdict(TINY_EXPERT.sim)


def test_a_policy_on_other_physics_is_refused_naming_both(tiny_policies) -> None:
    with pytest.raises(CheckpointError, match="trained on the 'fast' physics profile, this run "
                                              "simulates 'original'"):
        load_for(tiny_policies[0], ORIGINAL)
    with pytest.raises(CheckpointError, match="iterations 4 vs 20"):
        load_for(tiny_policies[0], ExpertConfig(sim=sim_config({"iterations": 20})))
    with pytest.raises(ConfigError, match="evaluate it on the physics profile it was trained on"):
        decision_hold(ObsConfig(dt=0.004), ORIGINAL, False, "p")
    with pytest.raises(ConfigError, match="not a whole number"):
        decision_hold(ObsConfig(dt=0.004), ExpertConfig(sim=sim_config({"timestep": 0.003})),
                      True, "p")
    assert decision_hold(ObsConfig(dt=0.004), ORIGINAL, True, "p") == 4


def test_a_held_controller_acts_every_hold_steps_on_its_own_clock() -> None:
    seen = []

    def inner(k, idx, qpos, qvel):
        seen.append(k)
        return np.full((len(idx), 12), float(k))

    held = Held(inner, 4, 3)
    idx, z = np.array([0, 2]), np.zeros((2, 19))
    out = [held(k, idx, z, z)[0, 0] for k in range(9)]
    assert seen == [0, 1, 2] and out == [0, 0, 0, 0, 1, 1, 1, 1, 2]


def test_the_fidelity_condition_runs_the_policies_on_the_original_physics(tiny_policies) -> None:
    """Nominal's first episodes on the original's 1-ms steps: each policy acts every 4 ms
    (held), the expert at 1 ms, paired; the result says what ran on what; the split and the
    threads change no figure."""
    cfg = SuiteConfig(episodes=4, fidelity_episodes=3, seconds=0.6, threads=1)
    ckpts = [str(p) for p in tiny_policies]
    whole = run_condition(ckpts, [0, 1], "fidelity", cfg, TINY_EXPERT)
    phys = whole["physics"]
    assert phys["cross_profile"] and phys["policy_decision_ms"] == pytest.approx(4.0)
    assert phys["physics_step_ms"] == pytest.approx(1.0)
    assert phys["episodes"]["profile"] == "original" and phys["policies"]["profile"] == "fast"
    assert [e["episode"] for e in whole["episodes"]] == [0, 1, 2]
    nominal = run_condition(ckpts, [0, 1], "nominal", cfg, TINY_EXPERT)
    assert not nominal["physics"]["cross_profile"]
    for f, n in zip(whole["episodes"], nominal["episodes"], strict=False):
        assert f["speed_m_s"] == n["speed_m_s"]  # the same tasks, other physics
        assert f["expert"] != n["expert"]
    parts = [run_part(ckpts, [0, 1], "fidelity", dataclasses.replace(cfg, threads=2),
                      TINY_EXPERT, part=p, parts=2) for p in (0, 1)]
    episodes = [e for p in parts for e in p["episodes"]]
    assert json.dumps(episodes, sort_keys=True) == json.dumps(whole["episodes"], sort_keys=True)



@pytest.mark.parametrize("expert", [FAST, ORIGINAL], ids=["fast", "original"])
def test_the_experts_chunks_planned_together_are_each_planned_alone(expert) -> None:
    """The path-following expert plans every episode's chunk at once (control.follower.plan):
    the same references and knob states, bit for bit, as the per-episode filter and CPG."""
    from quadpipe.control.follower import FollowerConfig, Target, knob_target, plan
    from quadpipe.control.paths import random_path
    from quadpipe.sim.expert import filter_knobs, joint_references
    from quadpipe.sim.state import wrap_angle, yaw

    q0 = start_qpos(build_model(expert, pd="torque"))
    rng = np.random.default_rng(5)
    targets = [Target.from_start(*random_path(rng, 4.0), q0, 0.25, expert.dt) for _ in range(3)]
    together = [t.steering(expert, FollowerConfig()) for t in targets]
    alone = [t.steering(expert, FollowerConfig()) for t in targets]
    n = expert.sim.steps(25.0)
    for step in (0, n, 2 * n):
        qpos = np.tile(q0, (3, 1))
        qpos[:, :2] += rng.normal(scale=0.05, size=(3, 2))
        got = plan(together, qpos, step, n, expert)
        for e, s in enumerate(alone):  # the formula the expert used one episode at a time
            p = s.proj.project(qpos[e, :2])
            look = s.proj.point(p + s.cfg.lookahead)
            err = wrap_angle(np.arctan2(look[1] - qpos[e, 1], look[0] - qpos[e, 0])
                             - yaw(qpos[e, 3:7]))
            turn = float(np.clip(err / s.cfg.heading_saturation, -1.0, 1.0))
            lead = p - s.speed * step * expert.dt
            scale = float(np.clip(1.0 - 0.5 * lead / s.cfg.slow_distance, s.cfg.min_scale, 1.0))
            k = filter_knobs(np.tile(knob_target(turn, scale, expert), (n, 1)), expert,
                             start=s.knobs)
            s.knobs = k[-1]
            want = joint_references(np.arange(step + 1, step + n + 1),
                                    np.full(n, MODE_FORWARD, dtype=np.int8), k, expert.dt)
            np.testing.assert_array_equal(got[e], want)
            np.testing.assert_array_equal(together[e].knobs, s.knobs)
