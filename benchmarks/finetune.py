"""Benchmark: one fine-tuning iteration, and what PPO's bookkeeping adds to the closed loop.

Usage: python benchmarks/finetune.py --checkpoint results/train/seed_0/best.pt [--episodes 32]
       [--seconds 4] [--threads 2]

All rows on the same episodes (iteration 0 of seed 0: random paths, randomised physics and
pushes), measured side by side in one run, steps of simulated episode per second of wall time:
- the policy alone in the batched closed loop (learn.controller.PolicyController: observation,
  MLP, `mj_step`), what evaluation and DAgger run;
- the fine-tuning rollout (learn.finetuning.rollout.collect: the same plus the held exploration, the
critic
  and log-probability each 20-ms block, the reward each millisecond), without and with the
  expert's labels (finetune.bc_weight > 0), on 1 and on `--threads` threads;
- the PPO update of that rollout (5 epochs x 4 mini-batches, one torch thread), in seconds.
Ends with `finetune: rollout / closed loop <r>x (1 thread); iteration <s> s (<n> threads)`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import Episodes, run
from quadpipe.learn.controller import PolicyController
from quadpipe.learn.finetuning.actor_critic import ActorCritic
from quadpipe.learn.finetuning.env import RewardConfig, draw_episodes
from quadpipe.learn.finetuning.ppo import PPOConfig, make_optimizer, update
from quadpipe.learn.finetuning.rollout import collect
from quadpipe.learn.policy import load_checkpoint
from quadpipe.sim.randomize import RandomizeConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a trained policy (best.pt)")
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    expert = ExpertConfig()
    policy, obs, _ = load_checkpoint(args.checkpoint)
    eps = draw_episodes(0, 0, args.episodes, args.seconds, (0.15, 0.3), obs.offsets, expert,
                        RandomizeConfig())
    cfg = PPOConfig()

    def plain(threads: int) -> float:
        actor = PolicyController(policy, obs, eps.future, np.arange(args.episodes),
                                 expert)
        with Episodes(eps.models, eps.q0, args.episodes, threads) as sim:
            trace = run(sim, eps.num_steps, actor, record_every=eps.num_steps,
                        pushes=eps.pushes)
        return trace.steps_per_s

    def rollout(threads: int, labels: bool):
        ac = ActorCritic(policy, (256, 256), 0.2)
        return collect(ac, obs, eps, expert, RewardConfig(), cfg,
                       torch.Generator().manual_seed(0), threads, labels)

    rows = {"policy alone, closed loop, 1 thread": plain(1),
            f"policy alone, closed loop, {args.threads} threads": plain(args.threads)}
    r1 = rollout(1, False)
    rows["fine-tuning rollout, 1 thread"] = r1.steps_per_s
    rows["fine-tuning rollout with expert labels, 1 thread"] = rollout(1, True).steps_per_s
    start = time.perf_counter()
    rn = rollout(args.threads, False)
    collect_s = time.perf_counter() - start
    rows[f"fine-tuning rollout, {args.threads} threads"] = rn.steps_per_s
    for name, value in rows.items():
        print(f"{name:55s} {value:9.0f} steps/s")
    ac = ActorCritic(policy, (256, 256), 0.2)
    opt = make_optimizer(ac, cfg)
    start = time.perf_counter()
    update(ac, opt, rn, cfg, np.random.default_rng(0), True, 0.0)
    update_s = time.perf_counter() - start
    print(f"{'PPO update (' + str(int(rn.valid.sum())) + ' transitions)':55s} {update_s:9.2f} s")
    ratio = rows["fine-tuning rollout, 1 thread"] / rows["policy alone, closed loop, 1 thread"]
    print(f"finetune: rollout / closed loop {ratio:.2f}x (1 thread); iteration "
          f"{collect_s + update_s:.1f} s ({args.threads} threads)")


if __name__ == "__main__":
    main()
