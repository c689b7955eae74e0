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
target exactly as the evaluation does (learn.controller, control.closed_loop).

In round r a share beta / 2**(r-1) of the episodes is driven by the expert itself (fresh
demonstrations of path following), the rest by the policy. All episodes run as one batch: one MLP
call and one `mj_step` per episode (over a few threads) per time step.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import Episodes, run, start_qpos
from quadpipe.control.follower import ExpertController, FollowerConfig, Target
from quadpipe.control.paths import random_path
from quadpipe.learn.controller import PolicyController
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.model import build_model

SPEED_RANGE = (0.15, 0.35)  # m/s of the target; the evaluation's default is 0.25


@dataclasses.dataclass
class Collected:
    """Samples of one round: X (N, obs.dim), Y (N, 12) float32, and how the policy fared."""

    x: np.ndarray
    y: np.ndarray
    fall_fraction: float  # share of the policy-driven episodes that fell
    torque_rmse: float  # N m, policy vs expert torque over the policy-driven episodes' states


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
    speeds = rng.uniform(*SPEED_RANGE, size=episodes)
    driven_by_expert = np.arange(episodes) < int(round(expert_share * episodes))
    targets = []
    for i in range(episodes):
        reach = speeds[i] * (num + obs.horizon) * expert.dt + 2.0 * follower.lookahead + 1.0
        s, xy = random_path(rng, reach)
        targets.append(Target.from_start(s, xy, q0, speeds[i], expert.dt))
    future = np.stack([t.future(num, obs.offsets, q0[2]) for t in targets])
    labels = ExpertController({i: t.steering(expert, follower) for i, t in enumerate(targets)},
                              expert, follower)
    actor = PolicyController(policy, obs, future, np.arange(episodes), expert.torque_limit)
    xs, ys = [], []
    err = {"sq": 0.0, "count": 0}

    def control(k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        label = labels(k, idx, qpos, qvel)
        u = actor.torques(k, idx, qpos, qvel)
        by_policy = ~driven_by_expert[idx]
        err["sq"] += float(np.sum((u[by_policy] - label[by_policy]) ** 2))
        err["count"] += int(by_policy.sum()) * 12
        if k % stride == 0:
            xs.append(actor.last_x)
            ys.append(label.astype(np.float32))
        return np.where(by_policy[:, None], np.clip(u, -expert.torque_limit,
                                                    expert.torque_limit), label)

    with Episodes(model, q0, episodes, threads) as sim:
        trace = run(sim, num, control)
    fell = trace.fall_step >= 0
    policy_eps = ~driven_by_expert
    return Collected(
        x=np.concatenate(xs) if xs else np.zeros((0, obs.dim), np.float32),
        y=np.concatenate(ys) if ys else np.zeros((0, 12), np.float32),
        fall_fraction=float(np.mean(fell[policy_eps])) if policy_eps.any() else 0.0,
        torque_rmse=float(np.sqrt(err["sq"] / max(err["count"], 1))))
