"""Benchmark: training samples/s on the CPU, and DAgger collection vs the raw simulation.

Usage: python benchmarks/train.py [--dataset FILE] [--json OUT]
Without --dataset a small shard is generated in a temporary directory (~1 minute).
Prints training samples/s (batch 256, the default MLP; learn.optimizers' AdamW and clipping
against torch.optim.AdamW's per-tensor loop and its multi-tensor path with torch's clipping,
alternating, the weights checked equal), the wall time of one simulated second
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
from quadpipe.learn import optimizers
from quadpipe.learn.imitation.epochs import build_policy, make_optimizer
from quadpipe.learn.imitation.prepare import load_arrays, prepare_for
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.model import build_model

KINDS = ("per-tensor", "foreach", "learn.optimizers")


def training_rate(dataset: Path, work: Path, batches: int = 1000, kind: str = "learn.optimizers"
                  ) -> tuple[float, torch.Tensor]:
    """Samples/s of forward + backward + clipping + AdamW step on the CPU, batch 256, prepared
    arrays, and the weights after them. kind: torch.optim.AdamW's per-tensor loop (the CPU's
    default) with torch's clipping, its multi-tensor (foreach) path with torch's clipping, or
    learn.optimizers (the same kernels called directly: what training uses)."""
    cfg = TrainConfig(device="cpu")
    # as quadpipe.learn.imitation.train.train_stage does on the CPU
    torch.set_num_threads(cfg.threads)
    meta = prepare_for(dataset, work / "samples", cfg, progress=False)
    x, y = load_arrays(work / "samples", "train")
    policy = build_policy(cfg, meta)
    if kind == "learn.optimizers":
        opt = make_optimizer(policy, cfg, torch.device("cpu"))
        clip = optimizers.clip_grad_norm_
    else:
        opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                foreach=kind == "foreach")
        clip = torch.nn.utils.clip_grad_norm_
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(batches):
        idx = np.sort(rng.integers(0, len(x), cfg.batch_size))
        xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        err = policy.forward_normalised(xb) - policy.normalise_output(yb)
        loss = (err * err).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip(policy.parameters(), cfg.grad_clip)
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
        kernels: dict[str, list[float]] = {k: [] for k in KINDS}
        weights = {}
        for r in range(3):  # the three side by side, in alternating order
            for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                got, weights[kind] = training_rate(dataset, work, kind=kind)
                kernels[kind].append(got)
        if not all(torch.equal(weights[k], weights[KINDS[0]]) for k in KINDS):
            raise SystemExit("the optimizers' weights differ: they must give torch's bits")
        rate = max(kernels["learn.optimizers"])
    obs = TrainConfig().obs_at(expert.dt)  # the default observation on the default physics
    policy = Policy(obs.dim, 12, TrainConfig().hidden)  # untrained: timing only
    raw = raw_second(expert)
    dagger = dagger_second(policy, obs, expert, threads=TrainConfig().threads)
    rows = {
        "training_samples_per_s": rate,
        "training_samples_per_s_per_tensor_adamw": max(kernels["per-tensor"]),
        "training_samples_per_s_foreach_adamw": max(kernels["foreach"]),
        "raw_mj_step_s_per_sim_s": raw,
        "dagger_s_per_episode_sim_s": dagger,
        "torch_threads": TrainConfig().threads,
        "load_average_1min": os.getloadavg()[0],
    }
    print(f"training (CPU, batch 256):          {rate:10.0f} samples/s "
          f"({rate / max(kernels['per-tensor']):.2f}x torch's AdamW per-tensor loop, "
          f"{rate / max(kernels['foreach']):.2f}x its multi-tensor path, the same weights; "
          f"best of 3 each)")
    print(f"raw mj_step, 1 simulated s:         {raw * 1e3:10.1f} ms")
    print(f"DAgger, 64 episodes batched, 1 simulated s of one episode: {dagger * 1e3:6.1f} ms "
          f"({dagger / raw:.2f}x raw mj_step)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
