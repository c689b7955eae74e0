"""Policies, the expert and a standing robot on the same targets, in one batched closed loop.

Every controller ("group") gets one episode per target, with the same physics and the same pushes
as the other groups on that target: the comparison is paired. All episodes advance together
(control.closed_loop.run): one MLP call per policy per step, `mj_step` per episode over threads.
Policies that observe alike (the seeds of one training config) share one observation per step
(SharedObservation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np
import torch

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import Episodes, Held, Mixed, run
from quadpipe.control.follower import ExpertController, FollowerConfig, Target, standing_controller
from quadpipe.errors import ConfigError
from quadpipe.evaluation.metrics import episodes_metrics
from quadpipe.learn.controller import PolicyController
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig, observe

EXPERT, STANDING = "expert", "standing"


@dataclasses.dataclass
class Runs:
    """metrics[group][p]: metrics of the group's episode on target p; qpos[group] (P, K, 19)."""

    metrics: dict[str, list[dict[str, Any]]]
    qpos: dict[str, np.ndarray]
    record_every: int
    steps_per_s: float


class SharedObservation:
    """Policies that observe alike, each driving its own episodes: one observation per step.

    controllers: PolicyControllers with the same ObsConfig, target futures, episode-to-path map
    and torque limit; member (E,): which of them drives episode e (-1: none of them). Each step
    the live episodes are observed once, then each policy's MLP runs on the rows of its own
    episodes, in order: the batch its own PolicyController would build, so the torques are the
    same bits (tests/test_evaluate.py). Observing costs mostly per call (~140 us for 50 rows,
    ~180 us for 150), so three seeds observe for about 0.45 of what they did one by one.
    """

    def __init__(self, controllers: Sequence[PolicyController], member: np.ndarray) -> None:
        self.controllers, self.member = list(controllers), np.asarray(member)

    def __call__(self, k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray
                 ) -> np.ndarray:
        first = self.controllers[0]
        x = observe(qpos, qvel, first.future[first.path_of[idx], k], first.obs,
                    np.full(len(idx), first.phase[k]) if first.obs.gait_clock else None
                    ).astype(np.float32)
        out = np.empty((len(idx), 12))
        who = self.member[idx]
        for j, control in enumerate(self.controllers):
            rows = who == j
            if rows.any():
                out[rows] = control.mlp(idx[rows], x[rows])
        return np.clip(out, -first.limit, first.limit)


def decision_hold(obs: ObsConfig, expert: ExpertConfig, cross_profile: bool, name: str) -> int:
    """Physics steps per decision of a policy that acts every obs.dt s on steps of expert.dt s."""
    hold = int(round(obs.dt / expert.dt))
    if abs(hold * expert.dt - obs.dt) > 1e-9 * obs.dt or hold < 1:
        raise ConfigError(f"policy {name} acts every {obs.dt * 1e3:g} ms, not a whole number of "
                          f"the {expert.dt * 1e3:g}-ms physics steps")
    if hold != 1 and not cross_profile:
        raise ConfigError(f"policy {name} acts every {obs.dt * 1e3:g} ms but the physics steps "
                          f"{expert.dt * 1e3:g} ms: evaluate it on the physics profile it was "
                          "trained on (only the suite's fidelity condition crosses profiles)")
    return hold


def run_groups(targets: Sequence[Target], num_steps: int, q0: np.ndarray,
               models: Sequence[mujoco.MjModel], policies: dict[str, tuple[Policy, ObsConfig]],
               expert: ExpertConfig, follower: FollowerConfig = FollowerConfig(),
               standing: bool = False, pushes: Sequence[list] | None = None, threads: int = 1,
               record_every: int = 1, with_expert: bool = True,
               rows: np.ndarray | None = None, batch: int | None = None,
               cross_profile: bool = False) -> Runs:
    """Run every group on every target for `num_steps` steps from pose q0 (torque models):
    the policies, the expert (unless with_expert is false) and standing still (if asked).

    A policy acts at its own step (obs.dt), which must be the physics step `expert.dt`; with
    cross_profile (the suite's fidelity condition) it may be a whole multiple of it: the policy
    then acts every obs.dt / expert.dt physics steps and its torques are held in between.

    rows (P,) and batch: target p's episodes take row rows[p] of a zero-padded MLP batch of
    `batch` rows (learn.controller.PolicyController), so that a job running some of the targets
    gets the same torques, bit for bit, as one running all of them (the suite's split).
    """
    names = [*policies] + ([EXPERT] if with_expert else []) + ([STANDING] if standing else [])
    holds = {n: decision_hold(o, expert, cross_profile, n) for n, (_, o) in policies.items()}
    p = len(targets)
    controllers = []
    futures: dict[tuple[int, ...], np.ndarray] = {}  # policies with the same waypoints share one
    for g, name in enumerate(names):
        episodes = range(g * p, (g + 1) * p)
        if name == EXPERT:
            controllers.append(ExpertController(
                {e: targets[e - g * p].steering(expert, follower) for e in episodes}, expert,
                follower))
        elif name == STANDING:
            controllers.append(standing_controller(q0, expert))
        else:
            policy, obs = policies[name]
            hold = holds[name]
            key = (tuple(obs.offsets.tolist()), hold)
            if key not in futures:
                futures[key] = np.stack([
                    dataclasses.replace(t, dt=obs.dt).future(num_steps // hold + 1, obs.offsets,
                                                             q0[2]) for t in targets])
            controllers.append(PolicyController(
                policy, obs, futures[key], np.arange(len(names) * p) % p, expert,
                rows=None if rows is None else np.tile(np.asarray(rows), len(names)),
                batch=batch))
    alike: dict[ObsConfig, list[int]] = {}  # groups of the policies that observe alike
    for g, name in enumerate(names):
        if name in policies:
            alike.setdefault(policies[name][1], []).append(g)
    slot = np.arange(len(names))  # the controller of each group
    for groups in alike.values():
        if len(groups) > 1:
            member = np.full(len(names) * p, -1)
            for j, h in enumerate(groups):
                member[h * p:(h + 1) * p] = j
            controllers[groups[0]] = SharedObservation([controllers[h] for h in groups], member)
            slot[groups] = groups[0]
    used, slot = np.unique(slot, return_inverse=True)
    controllers = [controllers[u] for u in used]
    for j, u in enumerate(used):  # a policy slower than the physics: held between decisions
        if holds.get(names[u], 1) > 1:
            controllers[j] = Held(controllers[j], holds[names[u]], len(names) * p)
    owner = np.repeat(slot, p)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: more torch threads only add overhead
    try:
        with Episodes(list(models) * len(names), q0, len(names) * p, threads) as sim:
            control = controllers[0] if len(controllers) == 1 else Mixed(owner, controllers)
            trace = run(sim, num_steps, control, record_every,
                        None if pushes is None else list(pushes) * len(names))
    finally:
        torch.set_num_threads(threads_before)
    metrics, qpos = {}, {}
    for g, name in enumerate(names):
        sl = slice(g * p, (g + 1) * p)
        qpos[name] = trace.qpos[sl]
        metrics[name] = episodes_metrics(list(trace.qpos[sl]), record_every,
                                         trace.fall_step[sl].tolist(), targets, num_steps)
    return Runs(metrics, qpos, record_every, trace.steps_per_s)

