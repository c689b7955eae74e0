"""The expert as a path follower: the CPG trot, turning knobs steered toward a look-ahead point.

Every `chunk_ms` (25 ms, in whole physics steps) the robot is projected onto the path (arc length
s, searched in a window around the last one so a figure8 crossing cannot make it jump), the look-
ahead point path(s + lookahead) gives a heading error e, and the knob targets become a continuous
turn command u = clip(e / heading_saturation, -1, 1) (+1 = the full "turn left" knobs of
ExpertConfig, -1 = full right). When the robot is ahead of the moving target the amplitude scale of
both sides is reduced (slower steps), so it can also wait for the target. Within the chunk the
joint references follow the CPG and each step's torque is the servo law at the state reached
(`expert_torque`, the law of the dataset's native position servos), so the expert drives the torque
model in the batched closed loop (control.closed_loop) beside the policies it is compared with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from quadpipe.config import ExpertConfig
from quadpipe.control.paths import place
from quadpipe.sim.expert import KNOBS_AT_REST, forward_references, knob_run
from quadpipe.sim.state import wrap_angle, yaw


@dataclasses.dataclass(frozen=True)
class FollowerConfig:
    """Steering of the path-following expert."""

    lookahead: float = 0.4  # m along the path ahead of the robot's projection
    chunk_ms: float = 25.0  # ms between steering updates (rounded to whole physics steps)
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

    def project(self, xy: np.ndarray, back: float = 0.3, ahead: float = 0.6) -> float:
        lo = max(0, self.last - int(back / self.res))
        hi = min(len(self.s), self.last + int(ahead / self.res) + 1)
        d = np.sum((self.xy[lo:hi] - xy[:2]) ** 2, axis=1)
        self.last = lo + int(np.argmin(d))
        return float(self.s[self.last])

    def point(self, s: float) -> np.ndarray:
        """(2,) the path point at arc length s (linear between samples, the end beyond it)."""
        return np.array([np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1])])

    def points(self, s: np.ndarray) -> np.ndarray:
        """(..., 2) path points at arc lengths s (...), as `point`."""
        s = np.asarray(s, dtype=float)
        return np.stack([np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1])],
                        axis=-1)

    @property
    def length(self) -> float:
        return float(self.s[-1])


def project_walks(paths: Sequence[Projector], walks: Sequence[np.ndarray], back: float = 0.3,
                  ahead: float = 0.6) -> list[np.ndarray]:
    """(S_e,) the arc lengths a fresh Projector on paths[e] returns for the points of walks[e]
    (S_e, 2), projected one after another: the same windows and the same first nearest sample, so
    the same bits, for every walk at once. Why: the suite's metrics projected each episode's
    walk point by point, 50 Python calls per simulated second of every episode
    (benchmarks/README.md, "The metrics of every episode at once")."""
    num = len(paths)
    if num == 0:
        return []
    n = np.array([len(p.s) for p in paths])
    lo_n = np.array([int(back / p.res) for p in paths])
    hi_n = np.array([int(ahead / p.res) + 1 for p in paths])
    width = int(np.max(lo_n + hi_n))
    xy = np.zeros((num, int(n.max()) + width, 2))
    s = np.zeros((num, int(n.max())))
    for e, p in enumerate(paths):
        xy[e, :n[e]], s[e, :n[e]] = p.xy, p.s
    lengths = np.array([len(w) for w in walks])
    points = np.zeros((num, int(lengths.max(initial=0)), 2))
    for e, w in enumerate(walks):
        points[e, :len(w)] = np.asarray(w, dtype=float)[:, :2]
    last = np.zeros(num, dtype=int)
    out = np.zeros(points.shape[:2])
    cols = np.arange(width)
    for j in range(points.shape[1]):
        a = np.flatnonzero(lengths > j)
        lo = np.maximum(0, last[a] - lo_n[a])
        hi = np.minimum(n[a], last[a] + hi_n[a])
        idx = lo[:, None] + cols
        d = np.sum((xy[a[:, None], idx] - points[a, j][:, None, :]) ** 2, axis=2)
        d[idx >= hi[:, None]] = np.inf
        last[a] = lo + np.argmin(d, axis=1)
        out[a, j] = s[a, last[a]]
    return [out[e, :lengths[e]].copy() for e in range(num)]


def knob_target(turn: float, scale: float, cfg: ExpertConfig) -> np.ndarray:
    """(4,) knobs (scaleL, scaleR, hipBL, hipBR) for turn in [-1, 1] (+ left) and common scale."""
    d = cfg.turn_scale_delta
    return np.array([scale * (1.0 - d * turn), scale * (1.0 + d * turn),
                     -cfg.turn_hip_bias[0] * turn, -cfg.turn_hip_bias[1] * turn])


@dataclasses.dataclass
class Target:
    """A target moving along a placed path at `speed` m/s from time 0; it stops at the end."""

    path: Projector
    speed: float  # m/s
    dt: float  # s per step

    @classmethod
    def from_start(cls, s: np.ndarray, xy: np.ndarray, start_qpos: np.ndarray, speed: float,
                   dt: float) -> Target:
        """A path (s, xy) that starts at the origin heading +x (control.paths), placed at the
        robot's start pose (19,): it begins under the robot, heading where the robot faces."""
        start = place(xy, start_qpos[:2], float(yaw(start_qpos[3:7])))
        return cls(Projector(s, start), speed, dt)

    def at(self, steps: np.ndarray) -> np.ndarray:
        """(..., 2) world xy of the target at step indices `steps` (...)."""
        return self.path.points(np.minimum(self.speed * self.dt * np.asarray(steps, dtype=float),
                                           self.path.length))

    def future(self, num_steps: int, offsets: np.ndarray, z: float) -> np.ndarray:
        """(num_steps, W, 3) the target at steps k + offsets for k < num_steps, at height z: what a
        policy observes (learn.samples.observe)."""
        xy = self.at(np.arange(num_steps)[:, None] + np.asarray(offsets)[None, :])
        return np.concatenate([xy, np.full(xy.shape[:-1] + (1,), z)], axis=-1)

    def steering(self, expert: ExpertConfig, cfg: FollowerConfig) -> Steering:
        """A fresh steering law for this target (its own projector state and knob filter)."""
        return Steering(Projector(self.path.s, self.path.xy), self.speed, expert, cfg)


class Steering:
    """The follower's steering law and knob filter state, chunk by chunk.

    One implementation serves the expert's own runs (ExpertController) and DAgger, where the same
    law labels the states a policy visits (quadpipe.learn.imitation.dagger).
    """

    def __init__(self, proj: Projector, speed: float, expert: ExpertConfig,
                 cfg: FollowerConfig) -> None:
        self.proj, self.speed, self.expert, self.cfg = proj, speed, expert, cfg
        self.knobs = KNOBS_AT_REST.copy()

    def target(self, qpos: np.ndarray, step: int) -> np.ndarray:
        """(4,) knob targets of the chunk after step `step`, steered from pose `qpos` (19,)."""
        cfg, expert = self.cfg, self.expert
        s = self.proj.project(qpos[:2])
        look = self.proj.point(s + cfg.lookahead)
        err = np.arctan2(look[1] - qpos[1], look[0] - qpos[0]) - yaw(qpos[3:7])
        err = wrap_angle(err)
        turn = float(np.clip(err / cfg.heading_saturation, -1.0, 1.0))
        lead = s - self.speed * step * expert.dt
        scale = float(np.clip(1.0 - 0.5 * lead / cfg.slow_distance, cfg.min_scale, 1.0))
        return knob_target(turn, scale, expert)

    def references(self, qpos: np.ndarray, step: int, n: int) -> np.ndarray:
        """(n, 12) joint references for steps step+1 .. step+n, steered from pose `qpos` (19,)."""
        return plan([self], qpos[None], step, n, self.expert)[0]


def plan(steering: Sequence[Steering], qpos: np.ndarray, step: int, n: int,
         expert: ExpertConfig) -> np.ndarray:
    """(E, n, 12) joint references of E episodes for steps step+1 .. step+n, steered from their
    poses qpos (E, 19); advances each one's knob filter.

    Only the steering (a windowed projection per path) runs per episode; the knob filter and the
    CPG run for every episode's chunk at once: the chunk's knob target is constant, so the filter
    is one run of `filter_knobs` (`knob_run`), and the CPG's cosines are the chunk's alone
    (`forward_references`). The same operations on the same arrays as one episode at a time, so
    the same bits whichever episodes share a call (a DAgger job's share, tested); a DAgger
    round's labels and the suite's expert spent as long here as in the physics when it looped.
    """
    targets = np.stack([s.target(q, step) for s, q in zip(steering, qpos, strict=True)])
    knobs = knob_run(np.stack([s.knobs for s in steering]), targets, n, expert)
    for s, last in zip(steering, knobs[:, -1], strict=True):
        s.knobs = last.copy()
    return forward_references(np.arange(step + 1, step + n + 1), knobs, expert.dt)


def expert_torque(qpos: np.ndarray, qvel: np.ndarray, ref: np.ndarray, expert: ExpertConfig
                  ) -> np.ndarray:
    """(N, 12) torque the expert applies at states qpos (N, 19), qvel (N, 18) given ref (N, 12).

    The same law as the model's native position servos (sim.model, pd="native"), computed outside
    MuJoCo so the expert can drive the torque model alongside a policy.
    """
    kp, kd = np.tile(expert.kp, 4), np.tile(expert.kd, 4)
    limit = expert.torque_limit
    return np.clip(kp * (ref - qpos[:, 7:]) - kd * qvel[:, 6:], -limit, limit)


class ExpertController:
    """The path-following expert as a closed-loop controller of a batch of episodes.

    `steering[i]` steers episode i (its path, speed and knob state); every `chunk_ms` the
    joint references of the next chunk are planned from the current pose, and each step's torque
    is the servo law at the state reached (closed_loop.Controller).
    """

    def __init__(self, steering: dict[int, Steering], expert: ExpertConfig,
                 cfg: FollowerConfig = FollowerConfig()) -> None:
        self.steering, self.expert, self.cfg = steering, expert, cfg
        self.chunk = expert.sim.steps(cfg.chunk_ms)
        self.refs = np.empty((max(steering, default=-1) + 1, self.chunk, 12))

    def __call__(self, k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray
                 ) -> np.ndarray:
        j = k % self.chunk
        if j == 0:
            self.refs[idx] = plan([self.steering[i] for i in idx], qpos, k, self.chunk,
                                  self.expert)
        return expert_torque(qpos, qvel, self.refs[idx, j], self.expert)


def standing_controller(qpos0: np.ndarray, expert: ExpertConfig):
    """A controller holding the joints at the standing pose qpos0[7:] with the expert's servos."""
    ref = np.asarray(qpos0[7:], dtype=float)

    def control(k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        return expert_torque(qpos, qvel, np.broadcast_to(ref, (len(idx), 12)), expert)

    return control
