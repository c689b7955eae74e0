"""Benchmark: the physics profiles side by side, per simulated second.

Usage: python benchmarks/profiles.py --original ORIGINAL.pt --fast FAST.pt [--seconds 4]
       [--rounds 2]

ORIGINAL.pt and FAST.pt: policies trained on each profile (a default run's results/train/
seed_0/best.pt, with `sim.profile: original` and with the default `fast`); each profile runs
its own policy. Every row is measured for both profiles in the same run, rows interleaved, best
of `--rounds` (slow spells of a shared machine hit both), one torch thread:

- raw physics: the expert's trot (forward, turns, stand; native servos) through
  `mujoco.rollout`, one thread, no Python per step;
- the batched closed loop (evaluation.rollouts.run_groups: one observation and one MLP call per
  step for every live episode, `mj_step` per episode) with 32 and with 100 suite episodes
  (nominal physics), on 1 thread, and 100 episodes on 2 threads (the thread scaling);
- one fine-tuning iteration (learn.finetuning.rollout.collect then update: 32 episodes of 4 s, the
default
  finetune settings) on 1 thread.
Closed-loop rows count episode-steps while an episode is up (a fallen one stops), so each
figure is wall milliseconds per simulated second of walking. Ends with one line per row:
`<row>: original / fast <r>x`.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import mujoco
import numpy as np
import torch
from mujoco import rollout

from quadpipe.config import PROFILES, ExpertConfig
from quadpipe.control.closed_loop import start_qpos
from quadpipe.evaluation.rollouts import run_groups
from quadpipe.evaluation.suite import SuiteConfig, episode_plan
from quadpipe.learn.finetuning.actor_critic import ActorCritic
from quadpipe.learn.finetuning.env import draw_episodes
from quadpipe.learn.finetuning.ppo import make_optimizer, update
from quadpipe.learn.finetuning.rollout import collect
from quadpipe.learn.finetuning.runner import FinetuneConfig
from quadpipe.learn.policy import load_for
from quadpipe.sim.expert import references
from quadpipe.sim.model import build_model, full_state


def raw_physics(expert: ExpertConfig) -> float:
    """Wall ms per simulated second of the expert's open-loop trot, MuJoCo's C loop."""
    model = build_model(expert)
    refs = references(np.array([1, 1, 3, 5, 4, 1]), expert)
    state = full_state(model, start_qpos(model))
    data = mujoco.MjData(model)
    start = time.perf_counter()
    rollout.rollout(model, data, state[None], refs[None])
    return 1e3 * (time.perf_counter() - start) / (len(refs) * expert.dt)


def closed_loop(expert: ExpertConfig, policy, obs, n: int, seconds: float, threads: int
                ) -> float:
    """Wall ms per simulated episode-second of the policy on n suite episodes."""
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    num = int(round(seconds / expert.dt))
    plan = episode_plan(SuiteConfig(episodes=n, seconds=seconds), "nominal", expert, q0, num)
    runs = run_groups([p["target"] for p in plan], num, q0, [model] * n,
                      {"policy": (policy, obs)}, expert, threads=threads,
                      record_every=expert.sim.steps(10.0), with_expert=False)
    return 1e3 / (runs.steps_per_s * expert.dt)


def finetune_iteration(expert: ExpertConfig, policy, obs, seconds: float) -> float:
    """Wall s of one default fine-tuning iteration (collection and PPO update), 1 thread."""
    cfg = FinetuneConfig(seconds=seconds)
    eps = draw_episodes(0, 0, cfg.episodes, cfg.seconds, cfg.speed, obs.offsets, expert, None)
    ac = ActorCritic(policy, cfg.critic_hidden, cfg.init_std)
    opt = make_optimizer(ac, cfg.ppo)
    start = time.perf_counter()
    r = collect(ac, obs, eps, expert, cfg.reward, cfg.ppo, torch.Generator().manual_seed(0))
    update(ac, opt, r, cfg.ppo, np.random.default_rng(0), True, 0.0)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--original", type=Path, required=True, help="a policy of the original")
    ap.add_argument("--fast", type=Path, required=True, help="a policy of the fast profile")
    ap.add_argument("--seconds", type=float, default=4.0, help="s per closed-loop episode")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    profiles = {}
    for name, ckpt in (("original", args.original), ("fast", args.fast)):
        expert = ExpertConfig(sim=PROFILES[name])
        policy, obs, _ = load_for(ckpt, expert)
        profiles[name] = (expert, policy, obs)
    rows = {
        "raw physics (ms per simulated s)": lambda e, p, o: raw_physics(e),
        "closed loop, 32 episodes, 1 thread (ms per episode-s)":
            lambda e, p, o: closed_loop(e, p, o, 32, args.seconds, 1),
        "closed loop, 100 episodes, 1 thread (ms per episode-s)":
            lambda e, p, o: closed_loop(e, p, o, 100, args.seconds, 1),
        "closed loop, 100 episodes, 2 threads (ms per episode-s)":
            lambda e, p, o: closed_loop(e, p, o, 100, args.seconds, 2),
        "fine-tuning iteration, 1 thread (s)":
            lambda e, p, o: finetune_iteration(e, copy.deepcopy(p), o, 4.0),
    }
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for row, measure in rows.items():
            for name, (expert, policy, obs) in profiles.items():
                value = measure(expert, policy, obs)
                best[row, name] = min(best.get((row, name), np.inf), value)
    print(f"{'':58s} {'original':>10s} {'fast':>10s}")
    for row in rows:
        print(f"{row:58s} {best[row, 'original']:10.2f} {best[row, 'fast']:10.2f}")
    for row in rows:
        print(f"{row}: original / fast {best[row, 'original'] / best[row, 'fast']:.1f}x")
    for name in profiles:
        one = best["closed loop, 100 episodes, 1 thread (ms per episode-s)", name]
        two = best["closed loop, 100 episodes, 2 threads (ms per episode-s)", name]
        print(f"{name}: closed loop 1 -> 2 threads {one / two:.2f}x")


if __name__ == "__main__":
    main()
