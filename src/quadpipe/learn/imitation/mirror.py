"""Left-right mirror images of training samples: the robot's symmetry as a second demonstration.

The A1 is built mirror-symmetric about its sagittal (x-z) plane, up to its trunk's centre of mass
(4 mm to the left), so the mirror image of a demonstrated (observation, torque) pair is one more
demonstration: a left turn becomes a right turn, the right legs' torques the left legs'. Built
against each seed's turning bias (the same policy tracked a left circle at 1.45x the expert's
error and the right one at 1.01x) and measured not to remove it (docs/training-findings.md,
Finding 9: five seeds still 1.03-1.49x on the left circle, 1.23-1.38x on the right), so it is
off by default and kept for studies.

`train.mirror` mirrors every other row of every training batch (learn.imitation.epochs.run_epoch):
half of each batch, a different half each epoch as the batches are reshuffled, with no random
generator of its own (so nothing new to checkpoint or resume) and no extra samples to store or step
through.

The mirror (y -> -y in the robot's heading frame): legs FR <-> FL and RR <-> RL; hip (abduction)
angles, velocities and torques change sign, thigh and calf ones do not (their axes lie in the
plane); base roll and yaw (rotation vector x, z; angular velocity x, z) and lateral velocity change
sign, pitch does not; the path's waypoints change the sign of y; the trot's diagonal pairs swap, so
the gait clock moves half a period on (sin, cos -> -sin, -cos).
"""

from __future__ import annotations

import numpy as np
import torch

from quadpipe.errors import ConfigError
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.state import ACTION_DIM, STATE_DIM

MIRRORED_LEG = np.array([1, 0, 3, 2])  # legs FR, FL, RR, RL -> FL, FR, RL, RR


def _legs(width: int, hip: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Source index and sign of 4 legs x `width` columns; `hip`: the columns that change sign."""
    src = np.concatenate([MIRRORED_LEG[leg] * width + np.arange(width) for leg in range(4)])
    sign = np.tile([-1.0 if k in hip else 1.0 for k in range(width)], 4)
    return src, sign


def observation_map(obs: ObsConfig) -> tuple[np.ndarray, np.ndarray]:
    """(src, sign), each (obs.dim,): mirrored x = x[:, src] * sign (heading frame only)."""
    if obs.frame != "heading":
        raise ConfigError("train.mirror needs train.path_frame: heading (a world-frame "
                          "observation has no left and right of the robot to swap)")
    base_sign = [1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1]  # x y z, rotvec, lin vel, ang vel
    legs_src, legs_sign = _legs(6, [0, 1])  # (q, qd) of hip, thigh, calf
    w = obs.num_waypoints
    src = [np.arange(12), STATE_DIM - 24 + legs_src, STATE_DIM + np.arange(3 * w)]
    sign = [np.array(base_sign, float), legs_sign, np.tile([1.0, -1.0, 1.0], w)]
    if obs.gait_clock:
        src.append(STATE_DIM + 3 * w + np.arange(2))
        sign.append(np.array([-1.0, -1.0]))
    out = np.concatenate(src), np.concatenate(sign)
    assert len(out[0]) == obs.dim
    return out


def action_map() -> tuple[np.ndarray, np.ndarray]:
    """(src, sign), each (12,): mirrored torques u[:, src] * sign (joints FR, FL, RR, RL x
    hip, thigh, calf)."""
    src, sign = _legs(3, [0])
    assert len(src) == ACTION_DIM
    return src, sign


def mirror_mujoco_state(qpos: np.ndarray, qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The world's mirror image (y -> -y) of MuJoCo states qpos (..., 19), qvel (..., 18):
    what the observation map above must agree with (tests/test_mirror.py)."""
    qpos, qvel = np.array(qpos, dtype=np.float64), np.array(qvel, dtype=np.float64)
    joints, jsign = action_map()  # qpos[7:] and qvel[6:] are in the torques' joint order
    qpos[..., 1] *= -1.0
    qpos[..., 3:7] *= [1.0, -1.0, 1.0, -1.0]  # quaternion (w, x, y, z) of M R M
    qpos[..., 7:] = qpos[..., 7 + joints] * jsign
    qvel[..., 0:6] *= [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]  # world linear, body angular
    qvel[..., 6:] = qvel[..., 6 + joints] * jsign
    return qpos, qvel


class Mirror:
    """Mirror every other row of a training batch, observations and torques together."""

    def __init__(self, obs: ObsConfig, device: torch.device) -> None:
        xs, xg = observation_map(obs)
        ys, yg = action_map()
        self.x_src = torch.as_tensor(xs, device=device)
        self.x_sign = torch.as_tensor(xg, dtype=torch.float32, device=device)
        self.y_src = torch.as_tensor(ys, device=device)
        self.y_sign = torch.as_tensor(yg, dtype=torch.float32, device=device)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = x.clone(), y.clone()
        x[1::2] = x[1::2][:, self.x_src] * self.x_sign
        y[1::2] = y[1::2][:, self.y_src] * self.y_sign
        return x, y
