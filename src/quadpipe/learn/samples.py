"""The policy's observation: state + future path (+ optional gait clock), for training and control.

One function builds the observation from MuJoCo qpos/qvel and future base positions, so a training
sample and a closed-loop control step see exactly the same features:

- columns 0:36: the 36-D state of quadpipe.sim.state. In the "heading" frame x, y are zeroed, the
  orientation keeps only roll/pitch (yaw removed), the base linear velocity is rotated by -yaw.
- columns 36:36+3W: W = horizon / waypoint_every future base positions minus the current one (m);
  in the "heading" frame rotated by -yaw.
- +2 with gait_clock: sin, cos of the CPG phase (0, 0 while standing).

Why the heading frame: the original fed world-frame x, y, yaw and world-frame offsets, so a path in
a new place or direction is an input never seen in training. In the heading frame the same motion
gives the same observation wherever the robot is and whichever way it faces.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from quadpipe.config import ExpertConfig
from quadpipe.errors import ConfigError
from quadpipe.sim.expert import MODE_STAND, command_modes, gait_phase
from quadpipe.sim.state import STATE_DIM, quat_mul, rotate_xy, states_from, yaw

FRAMES = ("heading", "world")


@dataclasses.dataclass(frozen=True)
class ObsConfig:
    """What the policy observes; stored in every checkpoint so evaluation rebuilds it exactly."""

    horizon: int = 50  # steps ahead of the last waypoint (the original; TrainConfig sets 1 s)
    waypoint_every: int = 10  # steps between waypoints
    gait_clock: bool = False  # add sin/cos of the CPG phase
    frame: str = "heading"  # "heading" (robot-centred, yaw removed) or "world" (the original)
    dt: float = 0.001  # s per step: the rate the policy acts at (its physics profile's step)

    def __post_init__(self) -> None:
        if self.waypoint_every < 1 or self.horizon < self.waypoint_every:
            raise ConfigError(f"train.horizon ({self.horizon}) must be >= train.waypoint_every "
                              f"({self.waypoint_every}) >= 1")
        if self.horizon % self.waypoint_every:
            raise ConfigError(f"train.horizon ({self.horizon}) must be a multiple of "
                              f"train.waypoint_every ({self.waypoint_every})")
        if self.frame not in FRAMES:
            raise ConfigError(f"train.path_frame must be one of {FRAMES}, got {self.frame!r}")

    @property
    def num_waypoints(self) -> int:
        return self.horizon // self.waypoint_every

    @property
    def offsets(self) -> np.ndarray:
        """(W,) steps from now to each waypoint."""
        return np.arange(1, self.num_waypoints + 1) * self.waypoint_every

    @property
    def dim(self) -> int:
        return STATE_DIM + 3 * self.num_waypoints + (2 if self.gait_clock else 0)


def observe(qpos: np.ndarray, qvel: np.ndarray, future: np.ndarray, obs: ObsConfig,
            phase: np.ndarray | None = None) -> np.ndarray:
    """(N, obs.dim) float64 observations.

    qpos (N, 19), qvel (N, 18): the current MuJoCo state; future (N, W, 3) m: world positions the
    base should reach at the W waypoint offsets; phase (N,) rad or NaN while standing (needed only
    with gait_clock).

    It runs once per physics step for every live episode of a closed loop (evaluation, DAgger,
    fine-tuning), where its small numpy calls cost more than the MLP at a few dozen episodes. So
    the state is written in place (states_from's `out`), once, with the yaw-free orientation in
    the heading frame rather than the world one written first and overwritten.
    """
    qpos, qvel = np.atleast_2d(qpos), np.atleast_2d(qvel)
    n = len(qpos)
    out = np.empty((n, obs.dim))
    path = out[:, STATE_DIM:STATE_DIM + 3 * obs.num_waypoints]
    rel = np.asarray(future, dtype=np.float64) - qpos[:, None, 0:3]
    if obs.frame == "heading":
        heading = yaw(qpos[:, 3:7])
        half = -0.5 * heading
        unyaw = np.empty((n, 4))
        unyaw[:, 0], unyaw[:, 1:3], unyaw[:, 3] = np.cos(half), 0.0, np.sin(half)
        states_from(qpos, qvel, out, quat=quat_mul(unyaw, qpos[:, 3:7]))
        out[:, 0:2] = 0.0
        out[:, 6:9] = rotate_xy(out[:, 6:9], -heading)
        path[:] = rotate_xy(rel, -heading).reshape(n, -1)
    else:
        states_from(qpos, qvel, out)
        path[:] = rel.reshape(n, -1)
    if obs.gait_clock:
        if phase is None:
            raise ValueError("gait_clock observations need the CPG phase")
        ph = np.asarray(phase, dtype=np.float64)
        standing = np.isnan(ph)
        out[:, -2] = np.where(standing, 0.0, np.sin(ph))
        out[:, -1] = np.where(standing, 0.0, np.cos(ph))
    return out


def trajectory_phase(commands: np.ndarray, num_steps: int, cmd_duration: float, dt: float
                     ) -> np.ndarray:
    """(T,) CPG phase (rad) the expert used at each step of a trajectory, NaN while standing."""
    sim = dataclasses.replace(ExpertConfig().sim, timestep=dt)
    modes = command_modes(commands, ExpertConfig(cmd_duration=cmd_duration, sim=sim))[:num_steps]
    phase = gait_phase(np.arange(1, len(modes) + 1), modes, dt)
    return np.where(modes == MODE_STAND, np.nan, phase)


def trajectory_samples(qpos: np.ndarray, qvel: np.ndarray, actions: np.ndarray,
                       obs: ObsConfig, stride: int, phase: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs of one demonstration: X (N, obs.dim), Y (N, 12) float32 torques (N m).

    Sample t (every `stride`-th step with t + horizon < T) observes the robot's own future base
    positions at t + waypoint_every, ..., t + horizon: the path it actually walked next.
    """
    num = len(qpos)
    idx = np.arange(0, max(num - obs.horizon, 0), stride)
    future = qpos[idx[:, None] + obs.offsets[None, :], 0:3]
    x = observe(qpos[idx], qvel[idx], future, obs, None if phase is None else phase[idx])
    return x.astype(np.float32), np.asarray(actions[idx], dtype=np.float32)
