"""The storage and collection of one PPO iteration: every episode under the stochastic actor,
stepped together over the batched closed loop (control.closed_loop), its transitions per block.

Decisions every `block` ms (20 ms: 50 Hz, the legged-robotics norm; whole physics steps), torques
every physics step. The policy outputs torques at each step at the state reached, as in evaluation;
what is sampled per block is the exploration offset a - mean(s_j), held for the block, on top of
the policy's own mean at each step (state-dependent exploration held over several steps, as gSDE
does: white noise at the physics rate is filtered away by the legs' inertia before it changes the
return). The transition of block j is (s_j, a_j, log pi(a_j | s_j), V(s_j), the block's summed
reward); the log-probability is the per-block marginal Gaussian at s_j, as gSDE's PPO uses. With
`labels`, the expert's torques at the same states are stored beside them (the optional DAgger
loss of learn.finetuning.ppo).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import Episodes, run
from quadpipe.control.follower import ExpertController, FollowerConfig
from quadpipe.learn.controller import functional
from quadpipe.learn.finetuning.actor_critic import ActorCritic
from quadpipe.learn.finetuning.env import TERMS, EpisodeSet, RewardConfig, reward_terms
from quadpipe.learn.samples import ObsConfig, observe
from quadpipe.sim.expert import MODE_FORWARD, gait_phase

if TYPE_CHECKING:  # the algorithm's settings; ppo imports this module's Rollout at run time
    from quadpipe.learn.finetuning.ppo import PPOConfig

SUCCESS_PROGRESS = 0.9  # the suite's (evaluation.metrics), which learn/ may not import


@dataclasses.dataclass
class Rollout:
    """One iteration's transitions, (B blocks, E episodes) each; valid: the episode was up."""

    obs: np.ndarray  # (B, E, D) float32
    action: np.ndarray  # (B, E, 12) normalised
    mean: np.ndarray  # (B, E, 12) the action mean when it was sampled
    logp: np.ndarray  # (B, E)
    value: np.ndarray  # (B, E)
    reward: np.ndarray  # (B, E)
    label: np.ndarray | None  # (B, E, 12) the expert's normalised torque at s_j
    valid: np.ndarray  # (B, E) bool
    done: np.ndarray  # (B, E) bool: the episode fell in this block
    last_value: np.ndarray  # (E,) V at the final state (bootstrap of a time out)
    terms: dict[str, np.ndarray]  # per episode, each reward term summed (x dt)
    fell: np.ndarray  # (E,) bool
    tracking_error: np.ndarray  # (E,) m, mean base-to-target distance while up
    steps_per_s: float
    success: np.ndarray | None = None  # (E,) bool: no fall, >= 90 % of the target's arc length


def collect(ac: ActorCritic, obs_cfg: ObsConfig, eps: EpisodeSet, expert: ExpertConfig,
            reward: RewardConfig, cfg: PPOConfig, gen: torch.Generator, threads: int = 1,
            labels: bool = False, follower: FollowerConfig = FollowerConfig()) -> Rollout:
    """Run every episode of `eps` under the stochastic actor (module docstring)."""
    n, num, block, limit, dt = len(eps.targets), eps.num_steps, expert.sim.steps(cfg.block), \
        expert.torque_limit, expert.dt
    nb = -(-num // block)
    dim = obs_cfg.dim
    policy = ac.actor
    forward = functional(policy)
    std = ac.log_std.detach().exp()
    out_std = policy.out_std.detach()
    phase = gait_phase(np.arange(1, num + 2), np.full(num + 1, MODE_FORWARD), dt)
    r = Rollout(obs=np.zeros((nb, n, dim), np.float32), action=np.zeros((nb, n, 12), np.float32),
                mean=np.zeros((nb, n, 12), np.float32), logp=np.zeros((nb, n), np.float32),
                value=np.zeros((nb, n), np.float32), reward=np.zeros((nb, n)),
                label=np.zeros((nb, n, 12), np.float32) if labels else None,
                valid=np.zeros((nb, n), bool), done=np.zeros((nb, n), bool),
                last_value=np.zeros(n, np.float32), terms={t: np.zeros(n) for t in TERMS},
                fell=np.zeros(n, bool), tracking_error=np.zeros(n), steps_per_s=0.0)
    offset = np.zeros((n, 12))  # the held exploration, N m
    u_last, u_before = np.zeros((n, 12)), np.zeros((n, 12))
    dist_sum, dist_count = np.zeros(n), np.zeros(n)
    expert_control = ExpertController(
        {e: t.steering(expert, follower) for e, t in enumerate(eps.targets)}, expert, follower
    ) if labels else None

    def score(k: int, idx: np.ndarray, qpos: np.ndarray) -> None:
        """The reward of step k - 1 (torques u_last), seen at the state it led to."""
        terms = reward_terms(qpos, eps.target_xy[idx, k], eps.target_heading[idx, k],
                             u_last[idx], u_before[idx], reward, limit, dt)
        total = np.zeros(len(idx))
        for name, value in terms.items():
            r.terms[name][idx] += value * dt
            total += value
        r.reward[(k - 1) // block, idx] += total * dt
        dist_sum[idx] += np.linalg.norm(qpos[:, :2] - eps.target_xy[idx, k], axis=1)
        dist_count[idx] += 1

    def control(k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        if k > 0:
            score(k, idx, qpos)
        x = observe(qpos, qvel, eps.future[idx, k], obs_cfg,
                    np.full(len(idx), phase[k]) if obs_cfg.gait_clock else None
                    ).astype(np.float32)
        label = expert_control(k, idx, qpos, qvel) if expert_control is not None else None
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            if k % block == 0:
                j = k // block
                mu = ac.mean(xt)
                noise = torch.randn((n, 12), generator=gen)[torch.from_numpy(idx)]
                a = mu + std * noise
                r.obs[j, idx], r.mean[j, idx], r.action[j, idx] = x, mu.numpy(), a.numpy()
                r.logp[j, idx] = ac.log_prob(mu, a).numpy()
                r.value[j, idx] = ac.value(xt).numpy()
                r.valid[j, idx] = True
                if label is not None:
                    r.label[j, idx] = ((torch.from_numpy(label.astype(np.float32))
                                        - policy.out_mean) / out_std).numpy()
                offset[idx] = (std * noise * out_std).numpy()
                mean_torque = policy.denormalise_output(mu).numpy()
            else:
                mean_torque = forward(xt).numpy()
        u = np.clip(mean_torque.astype(np.float64) + offset[idx], -limit, limit)
        u_before[idx], u_last[idx] = u_last[idx], u
        return u

    start = time.perf_counter()
    with Episodes(eps.models, eps.q0, n, threads) as sim:
        trace = run(sim, num, control, record_every=num, pushes=eps.pushes)
        up = trace.fall_step < 0
        if up.any():
            idx = np.flatnonzero(up)
            score(num, idx, sim.qpos[idx])
            x = observe(sim.qpos[idx], sim.qvel[idx], eps.future[idx, num], obs_cfg,
                        np.full(len(idx), phase[num]) if obs_cfg.gait_clock else None)
            with torch.inference_mode():
                r.last_value[idx] = ac.value(torch.from_numpy(x.astype(np.float32))).numpy()
        final_xy = sim.qpos[:, :2].copy()
    r.fell = ~up
    r.success = up & (progress(eps, final_xy) >= SUCCESS_PROGRESS)
    for e in np.flatnonzero(r.fell):
        r.done[(int(trace.fall_step[e]) - 1) // block, e] = True
    r.tracking_error = dist_sum / np.maximum(dist_count, 1)
    r.steps_per_s = float(np.sum(np.where(up, num, trace.fall_step))) / max(
        time.perf_counter() - start, 1e-9)
    return r


def progress(eps: EpisodeSet, xy: np.ndarray) -> np.ndarray:
    """(E,) arc length of the path point nearest to xy (E, 2), over what the target covered
    (the suite's progress, without its moving window: an episode here is a few seconds)."""
    out = np.zeros(len(xy))
    for e, t in enumerate(eps.targets):
        goal = min(t.speed * eps.num_steps * t.dt, t.path.length)
        near = t.path.s <= goal + 1.0
        d = np.sum((t.path.xy[near] - xy[e]) ** 2, axis=1)
        out[e] = t.path.s[near][np.argmin(d)] / max(goal, 1e-9)
    return out
