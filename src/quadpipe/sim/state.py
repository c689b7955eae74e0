"""The 36-number state vector of the original system, computed from MuJoCo's qpos/qvel.

Layout (one row per step, the only place it is defined):

| index | meaning | frame / unit |
|---|---|---|
| 0:3 | base position x, y, z | world, m |
| 3:6 | base orientation as a rotation vector (axis * angle) | world, rad |
| 6:9 | base linear velocity | world, m/s |
| 9:12 | base angular velocity | body, rad/s (MuJoCo's free-joint qvel[3:6]) |
| 12 + 6*leg + 2*j | joint angle q of leg (FR, FL, RR, RL) and joint j (hip, thigh, calf) | rad |
| 13 + 6*leg + 2*j | joint velocity qd of the same joint | rad/s |

The original indexed leg i as x[12 + 6*i + (0..5)] = (q_hip, qd_hip, q_thigh, qd_thigh, q_calf,
qd_calf); this module keeps that.
"""

from __future__ import annotations

import numpy as np

STATE_DIM = 36
ACTION_DIM = 12


def quat_to_rotvec(quat: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z) to (..., 3) rotation vectors, angle in [0, pi]."""
    q = np.asarray(quat, dtype=np.float64)
    q = np.where(q[..., :1] < 0, -q, q)
    w = q[..., 0]
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1)
    angle = 2.0 * np.arctan2(s, w)
    # angle / s -> 2 / w as s -> 0 (small-angle limit), avoiding 0/0.
    scale = np.where(s > 1e-12, angle / np.maximum(s, 1e-300), 2.0 / np.maximum(w, 1e-300))
    return v * scale[..., None]


def up_z(quat: np.ndarray) -> np.ndarray:
    """z component of the body's up axis in the world: 1 upright, 0 on its side, -1 upside down."""
    q = np.asarray(quat, dtype=np.float64)
    x, y = q[..., 1], q[..., 2]
    n = np.sum(q * q, axis=-1)
    return 1.0 - 2.0 * (x * x + y * y) / n


def yaw(quat: np.ndarray) -> np.ndarray:
    """Heading angle (rad) of the body's x axis in the world xy plane."""
    q = np.asarray(quat, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def wrap_angle(angle):
    """Angles (rad, a float or an array) wrapped to [-pi, pi)."""
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


def states_from(qpos: np.ndarray, qvel: np.ndarray, out: np.ndarray | None = None,
                quat: np.ndarray | None = None) -> np.ndarray:
    """(T, 19) qpos and (T, 18) qvel to (T, 36) float64 states in the layout above.

    out: (T, >= 36) written in its first 36 columns and returned (a policy's observation, with
    the path after them); quat: (T, 4) the orientation to write instead of qpos's (the heading
    frame's yaw-free one)."""
    qpos = np.atleast_2d(qpos)
    qvel = np.atleast_2d(qvel)
    out = np.empty((qpos.shape[0], STATE_DIM)) if out is None else out
    out[:, 0:3] = qpos[:, 0:3]
    out[:, 3:6] = quat_to_rotvec(qpos[:, 3:7] if quat is None else quat)
    out[:, 6:9] = qvel[:, 0:3]
    out[:, 9:12] = qvel[:, 3:6]
    out[:, 12:STATE_DIM:2] = qpos[:, 7:19]
    out[:, 13:STATE_DIM:2] = qvel[:, 6:18]
    return out


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (..., 4) quaternions (w, x, y, z)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw],
                    axis=-1)


def rotate_xy(vec: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate the x, y of (..., 3) or (..., W, 3) vectors by `angle` (rad, broadcast over ...)."""
    c, s = np.cos(angle), np.sin(angle)
    while c.ndim < vec.ndim - 1:
        c, s = c[..., None], s[..., None]
    out = np.array(vec, dtype=np.float64, copy=True)
    out[..., 0] = c * vec[..., 0] - s * vec[..., 1]
    out[..., 1] = s * vec[..., 0] + c * vec[..., 1]
    return out
