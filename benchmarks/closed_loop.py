"""Benchmark: the batched closed loop (control.closed_loop) vs the single-episode loop it replaced.

Usage: python benchmarks/closed_loop.py [--checkpoint results/train/best.pt] [--episodes 50]
       [--seconds 4] [--threads 2]

Policy steps per second of wall time, all rows on the same random paths (the suite's, nominal
physics), measured side by side in one run:
- the single-episode loop evaluation used before (one observation, one MLP call and one `mj_step`
  per step for one episode; kept here as the reference);
- the batched loop with one episode (a named path), and with all episodes on 1 and on `--threads`
  threads (the suite): one MLP call per step for all live episodes, `mj_step` per episode;
- the ceiling: the same episodes' torques replayed through the same per-episode `mj_step` calls
  with no observation and no policy (physics alone, 1 thread).
With a trained checkpoint the policy walks; without one an untrained policy is timed and falls
early (steps after a fall are not simulated, in either loop, so the ratios still compare like with
like). Then the price of the suite split's bit-identity: half the episodes (one of two suite
parts) with one MLP row each, against the same on their rows of a zero-padded batch of all
(learn.controller.PolicyController). Ends with `closed loop: batched/single per thread <r>x
(1 thread), <r>x per thread (<n> threads)` and `suite part: padded/unpadded <r>x`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mujoco
import numpy as np
import torch

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import Episodes, fallen, run, start_qpos
from quadpipe.evaluation.rollouts import run_groups
from quadpipe.evaluation.suite import SuiteConfig, episode_plan
from quadpipe.learn.controller import PolicyController
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import Policy, load_checkpoint
from quadpipe.learn.samples import ObsConfig, observe
from quadpipe.sim.expert import MODE_FORWARD, gait_phase
from quadpipe.sim.model import build_model


def single_episode(policy: Policy, obs: ObsConfig, future: np.ndarray, num: int,
                   expert: ExpertConfig) -> tuple[int, float]:
    """(steps, seconds) of the loop evaluation used before the batched one (one episode)."""
    model = build_model(expert, pd="torque")
    data = mujoco.MjData(model)
    data.qpos[:] = start_qpos(model)
    mujoco.mj_forward(model, data)
    phase = gait_phase(np.arange(1, num + 1), np.full(num, MODE_FORWARD), expert.dt)
    limit = expert.torque_limit
    start = time.perf_counter()
    steps = 0
    with torch.inference_mode():
        for t in range(num):
            if fallen(data.qpos)[0]:
                break
            x = observe(data.qpos[None], data.qvel[None], future[t:t + 1], obs,
                        phase[t:t + 1] if obs.gait_clock else None)
            u = policy(torch.from_numpy(x.astype(np.float32)))[0].numpy()
            data.ctrl[:] = np.clip(u, -limit, limit)
            mujoco.mj_step(model, data)
            steps += 1
    return steps, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("results/train/best.pt"))
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--single", type=int, default=4, help="episodes timed in the single loop")
    args = ap.parse_args()
    expert = ExpertConfig()
    if args.checkpoint.exists():
        policy, obs, _ = load_checkpoint(args.checkpoint)
        print(f"policy: {args.checkpoint}")
    else:
        cfg = TrainConfig()
        obs = cfg.obs_at(expert.dt)
        policy = Policy(obs.dim, 12, cfg.hidden).eval()
        print(f"policy: untrained ({args.checkpoint} not found); it falls early")
    torch.set_num_threads(1)
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    num = int(round(args.seconds / expert.dt))
    plan = episode_plan(SuiteConfig(episodes=args.episodes, seconds=args.seconds), "nominal",
                        expert, q0, num)
    targets = [p["target"] for p in plan]

    def batched(n: int, threads: int, padded: bool = False) -> float:
        """padded: the first n episodes on rows 0..n-1 of a batch of all --episodes rows, as
        a suite part runs them (evaluation.suite: bit-identical to the unsplit suite)."""
        pad = dict(rows=np.arange(n), batch=args.episodes) if padded else {}
        runs = run_groups(targets[:n], num, q0, [model] * n, {"policy": (policy, obs)}, expert,
                          threads=threads, record_every=10, with_expert=False, **pad)
        return runs.steps_per_s

    def ceiling(n: int) -> float:
        """Steps/s of replaying the batched policy's torques: the physics alone."""
        future = np.stack([t.future(num, obs.offsets, q0[2]) for t in targets[:n]])
        actor = PolicyController(policy, obs, future, np.arange(n), expert)
        torques: list[np.ndarray] = []

        def record(k, idx, qpos, qvel):
            torques.append(actor(k, idx, qpos, qvel))
            return torques[-1]

        with Episodes(model, q0, n) as sim:
            run(sim, num, record, record_every=10)
        replay = iter(torques)
        with Episodes(model, q0, n) as sim:
            return run(sim, num, lambda k, idx, qpos, qvel: next(replay),
                       record_every=10).steps_per_s

    half = args.episodes // 2
    rows: dict[str, list[float]] = {}
    for _ in range(2):  # interleaved rounds, best of 2: slow spells of a shared machine hit all
        steps = secs = 0.0
        for t in targets[:args.single]:
            s, dt = single_episode(policy, obs, t.future(num, obs.offsets, q0[2]), num, expert)
            steps, secs = steps + s, secs + dt
        for key, value in (("single-episode loop (before), 1 thread", steps / secs),
                           ("batched loop, 1 episode, 1 thread", batched(1, 1)),
                           (f"batched loop, {args.episodes} episodes, 1 thread",
                            batched(args.episodes, 1)),
                           (f"batched loop, {args.episodes} episodes, {args.threads} threads",
                            batched(args.episodes, args.threads)),
                           (f"ceiling: physics alone, {args.episodes} episodes, 1 thread",
                            ceiling(args.episodes)),
                           (f"batched loop, {half} episodes, 1 thread", batched(half, 1)),
                           (f"the same, padded to {args.episodes} rows (a suite part), 1 thread",
                            batched(half, 1, padded=True))):
            rows.setdefault(key, []).append(value)
    best = {k: max(v) for k, v in rows.items()}
    for k, v in best.items():
        print(f"{k:<48} {v:10.0f} policy steps/s")
    vals = list(best.values())
    one = vals[2] / vals[0]
    per_thread = vals[3] / args.threads / vals[0]
    print(f"batched loop at 1 thread = {vals[2] / vals[4]:.0%} of the physics ceiling; "
          f"the ceiling is {vals[4] / vals[0]:.1f}x the single-episode loop")
    print(f"closed loop: batched/single per thread {one:.1f}x (1 thread), {per_thread:.1f}x per "
          f"thread ({args.threads} threads)")
    print(f"suite part ({half} of {args.episodes} episodes): padded/unpadded "
          f"{vals[6] / vals[5]:.2f}x the steps per second")


if __name__ == "__main__":
    main()
