"""Every stability check rejects a history crafted to break it, with the original's reason."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from quadpipe.config import PROFILES, ExpertConfig, StabilityConfig
from quadpipe.sim.expert import references, standing_pose
from quadpipe.sim.model import build_model, full_state, standing_qpos
from quadpipe.sim.rollout import simulate_one
from quadpipe.sim.stability import REASONS, check_stability

DT = 0.001


@pytest.fixture(scope="module")
def walk():
    cfg = ExpertConfig(sim=PROFILES["original"])  # DT and the step indices below are 1 ms
    model = build_model(cfg)
    r = simulate_one(model, mujoco.MjData(model),
                     full_state(model, standing_qpos(model, *standing_pose())),
                     references(np.array([1, 5, 3]), cfg))
    return r.qpos, r.qvel, r.time


def broken(walk, reason):
    qpos, qvel, time = (a.copy() for a in walk)
    if reason == "fell_through_ground":
        qpos[2000:2100, 2] = -0.2
    elif reason == "numerical_instability":
        qvel[3000, 7] = np.nan
    elif reason == "position_exploded":
        qpos[4000:, 0] = 150.0
    elif reason == "velocity_exploded":
        qvel[4000, 1] = -80.0
    elif reason == "tipped_over":
        qpos[:, 2] *= 0.4  # lying on the floor for the whole run (above the fall-through floor)
    elif reason == "bad_orientation":
        half = np.radians(100) / 2  # rolled 100 deg onto its back for a moment
        qpos[2500:2600, 3:7] = [np.cos(half), np.sin(half), 0.0, 0.0]
    elif reason == "simulation_diverged":
        qpos[3000:] = qpos[3000]  # mujoco.rollout repeats the last good state ...
        qvel[3000:] = qvel[3000]
        time[3000:] = time[3000]  # ... and the clock stops
    return qpos, qvel, time


def test_real_walk_is_stable(walk):
    assert check_stability(*walk, DT) == "stable"


@pytest.mark.parametrize("reason", REASONS)
def test_each_check_rejects_its_failure(walk, reason):
    assert check_stability(*broken(walk, reason), DT, StabilityConfig()) == reason


def test_thresholds_come_from_config(walk):
    assert check_stability(*walk, DT, StabilityConfig(min_mean_height=0.5)) == "tipped_over"
    assert check_stability(*walk, DT, StabilityConfig(max_velocity=0.05)) == "velocity_exploded"
