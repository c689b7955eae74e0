"""DAgger on random paths: label the states the policy visits with the path-following expert.

Behaviour cloning sees only the expert's own states, and only paths made of the dataset's
commands. In closed loop on a path the policy's small errors take it to states it has never seen
(docs/training.md). DAgger closes that gap: run the policy on a path, ask the expert at every
state the policy reached what it would do there, and train on those pairs too.

The expert here is the evaluation's path follower (control.follower.Steering: the CPG with its
turning knobs steered toward a look-ahead point every 25 ms), run along the policy's own states,
so its label is exact and cheap: the knob filter and CPG give the joint reference ref(t), and the
torque is clamp(Kp (ref(t) - q) - Kd qd) at the visited state. The paths are random pieces of
straight runs, arcs and sharp corners (control.paths.random_path), not the evaluation paths, at
random speeds; each episode starts standing, as the evaluation does, and observes the moving
target exactly as the evaluation does (quadpipe.evaluation.evaluate.run_policy).

In round r a share beta / 2**(r-1) of the episodes is driven by the expert itself (fresh
demonstrations of path following), the rest by the policy. All episodes run as one batch: one MLP
call and one `mj_step` per episode (over a few threads) per time step.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import Episodes, fallen, start_qpos
from quadpipe.control.follower import FollowerConfig, Projector, Steering
from quadpipe.control.paths import place, random_path
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig, observe
from quadpipe.sim.expert import MODE_FORWARD, gait_phase
from quadpipe.sim.model import build_model
from quadpipe.sim.state import yaw

SPEED_RANGE = (0.15, 0.35)  # m/s of the target; the evaluation's default is 0.25


@dataclasses.dataclass
class Collected:
    """Samples of one round: X (N, obs.dim), Y (N, 12) float32, and how the policy fared."""

    x: np.ndarray
    y: np.ndarray
    fall_fraction: float  # share of the policy-driven episodes that fell
    torque_rmse: float  # N m, policy vs expert torque over the policy-driven episodes' states


def expert_torque(qpos: np.ndarray, qvel: np.ndarray, ref: np.ndarray, expert: ExpertConfig
                  ) -> np.ndarray:
    """(N, 12) torque the expert applies at states qpos (N, 19), qvel (N, 18) given ref (N, 12)."""
    kp, kd = np.tile(expert.kp, 4), np.tile(expert.kd, 4)
    limit = expert.torque_limit
    return np.clip(kp * (ref - qpos[:, 7:]) - kd * qvel[:, 6:], -limit, limit)


def collect(policy: Policy, obs: ObsConfig, expert: ExpertConfig, episodes: int,
            seconds: float, stride: int, expert_share: float, rng: np.random.Generator,
            threads: int = 1, follower: FollowerConfig = FollowerConfig()) -> Collected:
    """Run `episodes` random-path episodes; every `stride`-th step record (observation, label).

    An episode stops when the robot falls (height or tilt, as in evaluation): states after a fall
    teach nothing about walking.
    """
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)

    num = int(round(seconds / expert.dt))
    steps = np.arange(num)
    phase = gait_phase(steps + 1, np.full(num, MODE_FORWARD))
    speeds = rng.uniform(*SPEED_RANGE, size=episodes)
    driven_by_expert = np.arange(episodes) < int(round(expert_share * episodes))
    future = np.empty((episodes, num, obs.num_waypoints, 3))
    steering = []
    for i in range(episodes):
        reach = speeds[i] * (num + obs.horizon) * expert.dt + 2.0 * follower.lookahead + 1.0
        s, xy = random_path(rng, reach)
        xy = place(xy, q0[:2], float(yaw(q0[3:7])))
        arc = speeds[i] * expert.dt * (steps[:, None] + obs.offsets[None, :])
        future[i, :, :, 0] = np.interp(arc, s, xy[:, 0])
        future[i, :, :, 1] = np.interp(arc, s, xy[:, 1])
        future[i, :, :, 2] = q0[2]
        steering.append(Steering(Projector(s, xy), speeds[i], expert, follower))

    sim = Episodes(model, q0, episodes, threads)
    refs = np.empty((episodes, follower.chunk_steps, 12))
    alive = np.ones(episodes, dtype=bool)
    xs, ys = [], []
    sq_err, count = 0.0, 0
    limit = expert.torque_limit
    policy = policy.cpu().eval()
    with torch.inference_mode(), sim:
        for k in range(num):
            idx = np.flatnonzero(alive)
            qpos, qvel = sim.qpos[idx], sim.qvel[idx]
            down = fallen(qpos)
            if down.any():
                alive[idx[down]] = False
                idx, qpos, qvel = idx[~down], qpos[~down], qvel[~down]
            if len(idx) == 0:
                break
            j = k % follower.chunk_steps
            if j == 0:
                n = min(follower.chunk_steps, num - k)
                for row, i in enumerate(idx):
                    refs[i, :n] = steering[i].references(qpos[row], k, n)
            label = expert_torque(qpos, qvel, refs[idx, j], expert)
            x = observe(qpos, qvel, future[idx, k], obs,
                        np.full(len(idx), phase[k]) if obs.gait_clock else None
                        ).astype(np.float32)
            u = policy(torch.from_numpy(x)).numpy().astype(np.float64)
            by_policy = ~driven_by_expert[idx]
            sq_err += float(np.sum((u[by_policy] - label[by_policy]) ** 2))
            count += int(by_policy.sum()) * 12
            if k % stride == 0:
                xs.append(x)
                ys.append(label.astype(np.float32))
            sim.step(idx, np.where(by_policy[:, None], np.clip(u, -limit, limit), label))
    policy_eps = ~driven_by_expert
    return Collected(
        x=np.concatenate(xs) if xs else np.zeros((0, obs.dim), np.float32),
        y=np.concatenate(ys) if ys else np.zeros((0, 12), np.float32),
        fall_fraction=float(np.mean(~alive[policy_eps])) if policy_eps.any() else 0.0,
        torque_rmse=float(np.sqrt(sq_err / max(count, 1))))
