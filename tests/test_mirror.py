"""The left-right mirror of training samples (learn.imitation.mirror) against the observation code,
the physics and training."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from quadpipe.config import PROFILES, ExpertConfig
from quadpipe.control.closed_loop import start_qpos
from quadpipe.errors import ConfigError
from quadpipe.learn.imitation.batches import Batches
from quadpipe.learn.imitation.epochs import run_epoch
from quadpipe.learn.imitation.mirror import Mirror, action_map, mirror_mujoco_state, observation_map
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig, observe
from quadpipe.sim.commands import FORWARD, TURN_LEFT
from quadpipe.sim.expert import references
from quadpipe.sim.model import build_model

OBS = TrainConfig().obs_at(0.001)


def random_states(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    qpos = np.concatenate([rng.normal(size=(n, 3)), rng.normal(size=(n, 4)),
                           rng.normal(size=(n, 12))], axis=1)
    qpos[:, 3:7] /= np.linalg.norm(qpos[:, 3:7], axis=1, keepdims=True)
    qvel = rng.normal(size=(n, 18))
    future = qpos[:, None, 0:3] + rng.normal(size=(n, OBS.num_waypoints, 3))
    phase = rng.uniform(0, 2 * np.pi, n)
    phase[::4] = np.nan  # standing: clock (0, 0)
    return qpos, qvel, future, phase


def test_the_observation_of_the_mirrored_state_is_the_mirrored_observation():
    qpos, qvel, future, phase = random_states(np.random.default_rng(0), 64)
    src, sign = observation_map(OBS)
    x = observe(qpos, qvel, future, OBS, phase)
    mq, mv = mirror_mujoco_state(qpos, qvel)
    mf = future * [1.0, -1.0, 1.0]
    xm = observe(mq, mv, mf, OBS, phase + np.pi)  # the diagonal pairs swap: half a period on
    np.testing.assert_allclose(xm, x[:, src] * sign, atol=1e-9)
    assert not np.allclose(xm, x, atol=1e-3)  # the map is not the identity on these states


def test_the_maps_undo_themselves():
    x = np.random.default_rng(1).normal(size=(8, OBS.dim))
    src, sign = observation_map(OBS)
    np.testing.assert_array_equal((x[:, src] * sign)[:, src] * sign, x)
    u = np.arange(12.0) + 1
    a_src, a_sign = action_map()
    np.testing.assert_array_equal((u[a_src] * a_sign)[a_src] * a_sign, u)
    # FR hip torque becomes FL's with its sign changed; FR thigh becomes FL thigh unchanged
    assert (u[a_src] * a_sign)[3] == -u[0] and (u[a_src] * a_sign)[4] == u[1]


def test_mirrored_torques_drive_the_mirrored_robot():
    """From a turning trot's state, the mirrored torques move the mirrored robot as the mirror
    image of the original (up to the trunk's 4-mm centre-of-mass offset); a map that forgets the
    hips' sign does not."""
    cfg = ExpertConfig(sim=PROFILES["original"])  # steps below are 1 ms
    model = build_model(cfg, "torque")
    refs = references(np.array([FORWARD, TURN_LEFT]), cfg)
    kp, kd = np.tile(cfg.kp, 4), np.tile(cfg.kd, 4)

    def run(qpos, qvel, torques, n):
        d = mujoco.MjData(model)
        d.qpos[:], d.qvel[:] = qpos, qvel
        mujoco.mj_forward(model, d)
        out, applied = [], []
        for k in range(n):
            u = torques(k, d)
            d.ctrl[:] = u
            applied.append(u.copy())
            mujoco.mj_step(model, d)
            out.append((d.qpos.copy(), d.qvel.copy()))
        return out, np.array(applied)

    def pd(k, d):
        return np.clip(kp * (refs[k] - d.qpos[7:]) - kd * d.qvel[6:], -cfg.torque_limit,
                       cfg.torque_limit)

    walk, torques = run(start_qpos(model), np.zeros(18), pd, 1300)  # turning from 1.2 s
    q, v = walk[1199]
    ahead, _ = run(q, v, lambda k, d: torques[1200 + k], 100)
    want = mirror_mujoco_state(*ahead[-1])[0]
    src, sign = action_map()
    mq, mv = mirror_mujoco_state(q, v)
    got = run(mq, mv, lambda k, d: torques[1200 + k][src] * sign, 100)[0][-1][0]
    wrong = run(mq, mv, lambda k, d: torques[1200 + k][src], 100)[0][-1][0]
    assert np.abs(got[:3] - want[:3]).max() < 1e-3
    assert np.abs(got[7:] - want[7:]).max() < 0.02
    assert np.abs(wrong[7:] - want[7:]).max() > 0.05


def test_a_batch_is_mirrored_on_every_other_row():
    x = torch.randn(5, OBS.dim)
    y = torch.randn(5, 12)
    xm, ym = Mirror(OBS, torch.device("cpu"))(x, y)
    src, sign = observation_map(OBS)
    a_src, a_sign = action_map()
    torch.testing.assert_close(xm[0::2], x[0::2])
    torch.testing.assert_close(ym[0::2], y[0::2])
    torch.testing.assert_close(xm[1::2], x[1::2][:, src] * torch.tensor(sign, dtype=torch.float32))
    torch.testing.assert_close(ym[1::2], y[1::2][:, a_src] * torch.tensor(a_sign,
                                                                          dtype=torch.float32))


def equivariance_error(mirror: bool) -> float:
    """Fit a lopsided linear map with or without train.mirror; how far is the fit from
    commuting with the mirror (|f(M x) - M f(x)| over |f(x)|)?"""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4096, OBS.dim)).astype(np.float32)
    y = (x @ rng.normal(size=(OBS.dim, 12)) / np.sqrt(OBS.dim)).astype(np.float32)
    torch.manual_seed(0)
    policy = Policy(OBS.dim, 12, (64,))
    policy.set_normalisation(np.zeros(OBS.dim), np.ones(OBS.dim), np.zeros(12), np.ones(12))
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    batches = Batches([(x, y)], 256, torch.device("cpu"))
    flip = Mirror(OBS, torch.device("cpu")) if mirror else None
    for epoch in range(15):
        run_epoch(policy, opt, batches, np.random.default_rng(epoch).permutation(len(x)), None,
                  10.0, mirror=flip)
    src, sign = observation_map(OBS)
    a_src, a_sign = action_map()
    with torch.no_grad():
        fx = policy(torch.from_numpy(x[:512])).numpy()
        fmx = policy(torch.from_numpy(x[:512, src] * sign.astype(np.float32))).numpy()
    return float(np.abs(fmx - fx[:, a_src] * a_sign).mean() / np.abs(fx).mean())


def test_training_with_the_mirror_learns_a_policy_that_commutes_with_it():
    with_mirror, without = equivariance_error(True), equivariance_error(False)
    assert with_mirror < 0.5 * without, (with_mirror, without)


def test_a_world_frame_observation_cannot_be_mirrored():
    with pytest.raises(ConfigError, match="train.mirror needs train.path_frame: heading"):
        TrainConfig(mirror=True, path_frame="world")
    with pytest.raises(ConfigError, match="path_frame"):
        observation_map(ObsConfig(frame="world"))
