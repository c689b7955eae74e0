"""The 36-number state layout matches MuJoCo's qpos/qvel."""

from __future__ import annotations

import h5py
import mujoco
import numpy as np

from quadpipe.data import dataset
from quadpipe.sim.state import quat_to_rotvec, states_from


def test_joint_columns_are_qpos_and_qvel(tiny_shard):
    with h5py.File(tiny_shard) as f:
        g = f[dataset.trajectory_names(f)[0]]
        states, qpos, qvel = g["states"][()], g["qpos"][()], g["qvel"][()]
    for leg in range(4):
        for j in range(3):
            np.testing.assert_array_equal(states[:, 12 + 6 * leg + 2 * j], qpos[:, 7 + 3 * leg + j])
            np.testing.assert_array_equal(states[:, 13 + 6 * leg + 2 * j], qvel[:, 6 + 3 * leg + j])
    np.testing.assert_array_equal(states[:, 0:3], qpos[:, 0:3])
    np.testing.assert_array_equal(states[:, 6:12], qvel[:, 0:6])
    assert np.ptp(states[:, 12:]) > 0.1  # the legs really moved


def test_rotation_vector_agrees_with_mujoco():
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(50, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    for q in quats:
        expected = np.zeros(3)
        qq = q if q[0] >= 0 else -q
        mujoco.mju_quat2Vel(expected, qq, 1.0)
        np.testing.assert_allclose(quat_to_rotvec(q), expected, atol=1e-9)
    np.testing.assert_allclose(quat_to_rotvec(np.array([1.0, 0, 0, 0])), 0.0)


def test_states_from_shapes():
    qpos = np.zeros((5, 19))
    qpos[:, 3] = 1.0
    assert states_from(qpos, np.zeros((5, 18))).shape == (5, 36)
