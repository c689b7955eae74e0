"""The expert as a path follower: the CPG trot, turning knobs steered toward a look-ahead point.

Every `chunk_steps` steps (25 ms) the robot is projected onto the path (arc length s, searched in a
window around the last one so a figure8 crossing cannot make it jump), the look-ahead point
path(s + lookahead) gives a heading error e, and the knob targets become a continuous turn command
u = clip(e / heading_saturation, -1, 1) (+1 = the full "turn left" knobs of ExpertConfig, -1 = full
right). When the robot is ahead of the moving target the amplitude scale of both sides is reduced
(slower steps), so it can also wait for the target. The chunk then runs natively in MuJoCo
(`mujoco.rollout`, the PD inside the model) from the current full state: no Python per step.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

from quadpipe.config import ExpertConfig
from quadpipe.control.paths import path_xy, place
from quadpipe.sim.expert import KNOBS_AT_REST, MODE_FORWARD, filter_knobs, joint_references
from quadpipe.sim.model import build_model, full_state
from quadpipe.sim.rollout import Rollout
from quadpipe.sim.state import yaw


@dataclasses.dataclass(frozen=True)
class FollowerConfig:
    """Steering of the path-following expert."""

    lookahead: float = 0.4  # m along the path ahead of the robot's projection
    chunk_steps: int = 25  # steps simulated natively between steering updates
    heading_saturation: float = 0.35  # rad of heading error for the full turn knobs
    slow_distance: float = 0.1  # m ahead of the target at which the gait amplitude is halved
    min_scale: float = 0.5  # smallest common amplitude scale (slowest walk)


class Projector:
    """Nearest arc length on a polyline path, searched in a window after the previous one.

    The window keeps the projection monotone-ish, so a figure8 crossing cannot make it jump.
    `s` (N,) arc lengths and `xy` (N, 2) world points, sampled densely (5 mm for the paths here).
    """

    def __init__(self, s: np.ndarray, xy: np.ndarray) -> None:
        self.s, self.xy = np.asarray(s, dtype=float), np.asarray(xy, dtype=float)
        self.res = float(self.s[1] - self.s[0])
        self.last = 0

    @classmethod
    def for_kind(cls, kind: str, radius: float, start_xy: np.ndarray, start_yaw: float,
                 length: float, resolution: float = 0.005) -> Projector:
        """Path `kind` of quadpipe.control.paths placed at the robot's start, `length` m of it."""
        s = np.arange(0.0, length + resolution, resolution)
        return cls(s, place(path_xy(kind, s, radius), start_xy, start_yaw))

    def project(self, xy: np.ndarray, back: float = 0.3, ahead: float = 0.6) -> float:
        lo = max(0, self.last - int(back / self.res))
        hi = min(len(self.s), self.last + int(ahead / self.res) + 1)
        d = np.sum((self.xy[lo:hi] - xy[:2]) ** 2, axis=1)
        self.last = lo + int(np.argmin(d))
        return float(self.s[self.last])

    def point(self, s: float) -> np.ndarray:
        """(2,) the path point at arc length s (linear between samples, the end beyond it)."""
        return np.array([np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1])])


def knob_target(turn: float, scale: float, cfg: ExpertConfig) -> np.ndarray:
    """(4,) knobs (scaleL, scaleR, hipBL, hipBR) for turn in [-1, 1] (+ left) and common scale."""
    d = cfg.turn_scale_delta
    return np.array([scale * (1.0 - d * turn), scale * (1.0 + d * turn),
                     -cfg.turn_hip_bias[0] * turn, -cfg.turn_hip_bias[1] * turn])


class Steering:
    """The follower's steering law and knob filter state, chunk by chunk.

    One implementation serves the expert's own runs (`follow_path`) and DAgger, where the same law
    labels the states a policy visits (quadpipe.learn.dagger).
    """

    def __init__(self, proj: Projector, speed: float, expert: ExpertConfig,
                 cfg: FollowerConfig) -> None:
        self.proj, self.speed, self.expert, self.cfg = proj, speed, expert, cfg
        self.knobs = KNOBS_AT_REST.copy()

    def references(self, qpos: np.ndarray, step: int, n: int) -> np.ndarray:
        """(n, 12) joint references for steps step+1 .. step+n, steered from pose `qpos` (19,)."""
        cfg, expert = self.cfg, self.expert
        s = self.proj.project(qpos[:2])
        look = self.proj.point(s + cfg.lookahead)
        err = np.arctan2(look[1] - qpos[1], look[0] - qpos[0]) - yaw(qpos[3:7])
        err = (err + np.pi) % (2.0 * np.pi) - np.pi
        turn = float(np.clip(err / cfg.heading_saturation, -1.0, 1.0))
        lead = s - self.speed * step * expert.dt
        scale = float(np.clip(1.0 - 0.5 * lead / cfg.slow_distance, cfg.min_scale, 1.0))
        targets = np.tile(knob_target(turn, scale, expert), (n, 1))
        k = filter_knobs(targets, expert, start=self.knobs)
        self.knobs = k[-1]
        steps = np.arange(step + 1, step + n + 1)
        return joint_references(steps, np.full(n, MODE_FORWARD, dtype=np.int8), k)


def follow_path(kind: str, num_steps: int, speed: float, radius: float, start_qpos: np.ndarray,
                expert: ExpertConfig = ExpertConfig(), cfg: FollowerConfig = FollowerConfig(),
                model: mujoco.MjModel | None = None) -> Rollout:
    """Run the steered expert for num_steps from start_qpos; qpos (T+1, 19) as in sim.rollout.

    The target moves along path `kind` (placed at the start position and heading) at `speed` m/s.
    """
    model = model or build_model(expert, pd="native")
    data = mujoco.MjData(model)
    start_yaw = float(yaw(start_qpos[3:7]))
    length = speed * num_steps * expert.dt + 2.0 * cfg.lookahead + 1.0
    steer = Steering(Projector.for_kind(kind, radius, start_qpos[:2], start_yaw, length), speed,
                     expert, cfg)
    state = full_state(model, start_qpos)
    nq, nv = model.nq, model.nv
    qpos = [np.asarray(start_qpos, dtype=float)[None]]
    qvel = [np.zeros((1, nv))]
    torque = []
    step = 0
    while step < num_steps:
        n = min(cfg.chunk_steps, num_steps - step)
        ctrl = steer.references(qpos[-1][-1], step, n)
        states, sensors = mj_rollout.rollout(model, data, state[None], ctrl[None],
                                             initial_warmstart=np.zeros((1, nv)))
        state = states[0, -1]
        qpos.append(states[0, :, 1:1 + nq])
        qvel.append(states[0, :, 1 + nq:1 + nq + nv])
        torque.append(sensors[0])
        step += n
    qp = np.concatenate(qpos)
    return Rollout(qpos=qp, qvel=np.concatenate(qvel), time=np.arange(len(qp)) * expert.dt,
                   torque=np.concatenate(torque))
