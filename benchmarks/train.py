"""Benchmark: training samples/s on the CPU, and DAgger collection vs the raw simulation.

Usage: python benchmarks/train.py [--dataset FILE] [--json OUT]
Without --dataset a small shard is generated in a temporary directory (~1 minute).
Prints training samples/s (batch 256, the default MLP; AdamW's multi-tensor kernels against its
per-tensor loop, alternating, the weights checked equal), the wall time of one simulated second
(1000 steps) of raw mj_step, and the DAgger collection cost per simulated episode-second with 64
episodes batched. The closed loop of evaluation: benchmarks/closed_loop.py.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import mujoco
import numpy as np
import torch

from quadpipe.config import ExpertConfig, GenerateConfig
from quadpipe.control.closed_loop import start_qpos
from quadpipe.learn.imitation.epochs import build_policy
from quadpipe.learn.imitation.prepare import load_arrays, prepare_for
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.model import build_model


def training_rate(dataset: Path, work: Path, batches: int = 200, foreach: bool = True
                  ) -> tuple[float, torch.Tensor]:
    """Samples/s of forward + backward + AdamW step on the CPU, batch 256, prepared arrays, and
    the weights after them. foreach: AdamW's multi-tensor kernels (learn.optimizers, the
    default) or torch's per-tensor loop (the CPU's default before)."""
    cfg = TrainConfig(device="cpu")
    # as quadpipe.learn.imitation.train.train_stage does on the CPU
    torch.set_num_threads(cfg.threads)
    meta = prepare_for(dataset, work / "samples", cfg, progress=False)
    x, y = load_arrays(work / "samples", "train")
    policy = build_policy(cfg, meta)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            foreach=foreach)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(batches):
        idx = np.sort(rng.integers(0, len(x), cfg.batch_size))
        xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        err = policy.forward_normalised(xb) - policy.normalise_output(yb)
        loss = (err * err).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        opt.step()
    rate = batches * cfg.batch_size / (time.perf_counter() - start)
    return rate, torch.cat([p.detach().flatten() for p in policy.parameters()])


def raw_second(expert: ExpertConfig, steps: int = 3000) -> float:
    """Wall seconds per simulated second of bare mj_step on the torque model (standing torques)."""
    model = build_model(expert, pd="torque")
    data = mujoco.MjData(model)
    data.qpos[:] = start_qpos(model)
    start = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(model, data)
    return (time.perf_counter() - start) / (steps * expert.dt)


def dagger_second(policy: Policy, obs: ObsConfig, expert: ExpertConfig, threads: int,
                  episodes: int = 64, seconds: float = 1.0) -> float:
    """Wall seconds per simulated episode-second of DAgger collection
    (quadpipe.learn.imitation.dagger).

    The expert drives every episode (an untrained policy would fall and end them early), but the
    policy is still evaluated on every state, so the cost per step is that of a real round.
    """
    from quadpipe.learn.imitation import dagger

    start = time.perf_counter()
    dagger.collect(policy, obs, expert, episodes, seconds, stride=5, expert_share=1.0, seed=0,
                   rnd=1, threads=threads)
    return (time.perf_counter() - start) / (episodes * seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    expert = ExpertConfig()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset = args.dataset
        if dataset is None:
            from quadpipe.data.generate import generate_shard

            dataset = work / "bench.h5"
            generate_shard(dataset, 6, seed=3, gen=GenerateConfig(min_moves=2, max_moves=3),
                           progress=False)
        kernels: dict[bool, list[float]] = {False: [], True: []}
        weights = {}
        for r in range(3):  # per-tensor and multi-tensor AdamW alternating
            for foreach in (False, True) if r % 2 == 0 else (True, False):
                got, weights[foreach] = training_rate(dataset, work, foreach=foreach)
                kernels[foreach].append(got)
        if not torch.equal(weights[False], weights[True]):
            raise SystemExit("AdamW's multi-tensor kernels changed the weights")
        rate = max(kernels[True])
    obs = TrainConfig().obs_at(expert.dt)  # the default observation on the default physics
    policy = Policy(obs.dim, 12, TrainConfig().hidden)  # untrained: timing only
    raw = raw_second(expert)
    dagger = dagger_second(policy, obs, expert, threads=TrainConfig().threads)
    rows = {
        "training_samples_per_s": rate,
        "training_samples_per_s_per_tensor_adamw": max(kernels[False]),
        "raw_mj_step_s_per_sim_s": raw,
        "dagger_s_per_episode_sim_s": dagger,
        "torch_threads": TrainConfig().threads,
        "load_average_1min": os.getloadavg()[0],
    }
    print(f"training (CPU, batch 256):          {rate:10.0f} samples/s "
          f"({rate / max(kernels[False]):.2f}x AdamW's per-tensor loop, the same weights; "
          f"best of 3 each)")
    print(f"raw mj_step, 1 simulated s:         {raw * 1e3:10.1f} ms")
    print(f"DAgger, 64 episodes batched, 1 simulated s of one episode: {dagger * 1e3:6.1f} ms "
          f"({dagger / raw:.2f}x raw mj_step)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
