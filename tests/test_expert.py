"""The expert walks where it is told, and the in-MuJoCo PD is the Python PD."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from quadpipe.config import ExpertConfig
from quadpipe.errors import QuadpipeError
from quadpipe.sim.commands import check_commands
from quadpipe.sim.expert import filter_knobs, knob_targets, references, standing_pose
from quadpipe.sim.model import build_model, full_state, standing_qpos
from quadpipe.sim.rollout import simulate_one
from quadpipe.sim.state import yaw

CFG = ExpertConfig()


def hold(command: int, cfg: ExpertConfig = CFG) -> tuple[float, float, float]:
    """dx, dy (m) and yaw change (deg) after holding `command` for 4.8 s from standing."""
    model = build_model(cfg)
    qpos0 = standing_qpos(model, *standing_pose())
    r = simulate_one(model, mujoco.MjData(model), full_state(model, qpos0),
                     references(np.full(3, command), cfg))
    heading = np.degrees(np.unwrap(yaw(r.qpos[:, 3:7])))
    return r.qpos[-1, 0] - qpos0[0], r.qpos[-1, 1] - qpos0[1], heading[-1] - heading[0]


# Measured (mujoco 4.0.0, default knobs): forward dx +1.43, backward -2.20, turn right
# yaw -103 deg, turn left +98 deg, stand moves < 1 mm. Thresholds keep a wide margin.
def test_forward_moves_plus_x():
    dx, dy, dyaw = hold(1)
    assert dx > 1.0 and abs(dy) < 0.3 and abs(dyaw) < 15


def test_backward_moves_minus_x():
    dx, dy, dyaw = hold(2)
    assert dx < -1.5 and abs(dy) < 0.3 and abs(dyaw) < 15


def test_turn_right_yaws_negative():
    _, _, dyaw = hold(3)
    assert dyaw < -60


def test_turn_left_yaws_positive():
    _, _, dyaw = hold(4)
    assert dyaw > 60


def test_stand_stays_put():
    dx, dy, dyaw = hold(5)
    assert abs(dx) < 0.01 and abs(dy) < 0.01 and abs(dyaw) < 0.5


def test_original_knobs_turn_slowly():
    """The original's knobs stay available: ~5 deg/s, i.e. far less than the retuned default."""
    original = ExpertConfig(turn_scale_delta=0.15, turn_hip_bias=(0.06, -0.06))
    _, _, dyaw = hold(3, original)
    assert -45 < dyaw < -10


def test_native_pd_equals_python_pd():
    """The position actuators reproduce u = clip(Kp (ref - q) - Kd qd) computed in Python."""
    refs = references(np.array([1, 5, 3]), CFG)[:3000]
    native = build_model(CFG, pd="native")
    qpos0 = standing_qpos(native, *standing_pose())
    r = simulate_one(native, mujoco.MjData(native), full_state(native, qpos0), refs)

    torque_model = build_model(CFG, pd="torque")
    data = mujoco.MjData(torque_model)
    data.qpos[:] = qpos0
    kp, kd = np.tile(CFG.kp, 4), np.tile(CFG.kd, 4)
    applied = np.empty_like(refs)
    for t, ref in enumerate(refs):
        u = kp * (ref - data.qpos[7:]) - kd * data.qvel[6:]
        data.ctrl[:] = np.clip(u, -CFG.torque_limit, CFG.torque_limit)
        applied[t] = data.ctrl
        mujoco.mj_step(torque_model, data)
    assert np.max(np.abs(data.qpos - r.qpos[-1])) < 1e-9
    assert np.max(np.abs(applied - r.torque)) < 1e-6
    assert np.max(np.abs(r.torque)) <= CFG.torque_limit + 1e-12


def test_knob_filter_matches_the_step_recurrence():
    targets = knob_targets(np.array([3, 5, 4, 1]), ExpertConfig(cmd_duration=0.05))
    alpha = CFG.dt / (CFG.knob_tau + CFG.dt)
    v = np.array([1.0, 1.0, 0.0, 0.0])
    expected = []
    for target in targets:
        v = v + alpha * (target - v)
        expected.append(v)
    np.testing.assert_allclose(filter_knobs(targets, CFG), expected, rtol=0, atol=1e-12)


def test_unknown_command_code_is_refused():
    with pytest.raises(QuadpipeError, match="unknown command code 7"):
        check_commands(np.array([1, 7]))
