"""Simulation throughput, side by side on the same command sequences, in one run.

1. raw: `mj_step` in MuJoCo's C loop (`mujoco.rollout`, one thread), the references precomputed;
   the ceiling for one core; and the same rollouts over the thread pool (no checks, no writes).
2. quadpipe generate, end to end: sampling, references, threaded rollouts, stability checks, the
   resume journal and the compressed HDF5 write; with the default gzip encoder (ISA-L) and, for
   comparison, with zlib (`generate.gzip_encoder: zlib`).
3. naive: a per-step Python loop computing the PD and calling `mj_step`, as a straightforward port
   of the original would.

Prints steps/s for each and the ratios the project targets: end to end >= 0.85 x (raw x threads)
and >= 2 x naive. The rows are measured interleaved, each the best of `--repeat` rounds.

    python benchmarks/generate.py [--num 40] [--threads 0] [--seed 5] [--repeat 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import mujoco
import numpy as np

from quadpipe.config import ExpertConfig, GenerateConfig
from quadpipe.data import dataset
from quadpipe.data.generate import generate_shard
from quadpipe.sim.expert import references, standing_pose
from quadpipe.sim.model import build_model, full_state, standing_qpos
from quadpipe.sim.rollout import resolve_threads, simulate, simulate_one


def naive_loop(cfg: ExpertConfig, refs: np.ndarray, qpos0: np.ndarray) -> None:
    model = build_model(cfg, pd="torque")
    data = mujoco.MjData(model)
    data.qpos[:] = qpos0
    kp, kd = np.tile(cfg.kp, 4), np.tile(cfg.kd, 4)
    lim = cfg.torque_limit
    for ref in refs:
        data.ctrl[:] = np.clip(kp * (ref - data.qpos[7:]) - kd * data.qvel[6:], -lim, lim)
        mujoco.mj_step(model, data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=40, help="trajectories (40: a default shard)")
    ap.add_argument("--threads", type=int, default=0, help="0 = all cores")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--naive-num", type=int, default=3, help="trajectories for the slow loop")
    ap.add_argument("--repeat", type=int, default=2,
                    help="rounds; each row reports its best round")
    args = ap.parse_args()
    cfg = ExpertConfig()
    threads = resolve_threads(args.threads)

    model = build_model(cfg)
    qpos0 = standing_qpos(model, *standing_pose())
    init = full_state(model, qpos0)
    data = mujoco.MjData(model)
    best: dict[str, float] = {}

    def keep(key: str, seconds: float) -> None:
        best[key] = min(seconds, best.get(key, float("inf")))

    # Rows interleaved and each the best of --repeat rounds: a shared machine's slow spells then
    # hit every row alike instead of deciding a ratio.
    refs: list[np.ndarray] = []
    size: dict[str, int] = {}
    for rnd in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            for encoder in ("isal", "zlib"):
                out = Path(tmp) / f"bench-{encoder}.h5"
                t0 = time.perf_counter()
                generate_shard(out, args.num, args.seed, expert=cfg,
                               gen=GenerateConfig(threads=threads, gzip_encoder=encoder),
                               progress=False)
                keep(encoder, time.perf_counter() - t0)
                size[encoder] = out.stat().st_size
            if rnd == 0:
                with h5py.File(out) as f:
                    names = dataset.trajectory_names(f)
                    cmds = [f[n]["command_sequence"][()] for n in names]
                    attempts = int(f.attrs["total_attempts"])
                assert attempts == args.num, "benchmark assumes 100% acceptance"
                refs = [references(c, cfg) for c in cmds]
        t0 = time.perf_counter()
        for r in refs:
            simulate_one(model, data, init, r)
        keep("raw", time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in simulate(model, init, refs, threads=threads):
            pass
        keep("pool", time.perf_counter() - t0)
        t0 = time.perf_counter()
        for r in refs[: args.naive_num]:
            naive_loop(cfg, r, qpos0)
        keep("naive", time.perf_counter() - t0)
    # Every attempt is accepted with the default expert (checked above): steps simulated = kept.
    steps = sum(len(r) for r in refs)
    rate = {key: steps / best[key] for key in ("isal", "zlib", "raw", "pool")}
    rate["naive"] = sum(len(r) for r in refs[: args.naive_num]) / best["naive"]
    ceiling = rate["raw"] * threads
    print(f"trajectories {args.num}, steps {steps}, threads {threads}, best of {args.repeat} "
          "interleaved rounds")
    print(f"raw mj_step (C loop, 1 thread)   {rate['raw']:10.0f} steps/s")
    for encoder in ("isal", "zlib"):
        print(f"quadpipe generate, {encoder:4s} gzip     {rate[encoder]:10.0f} "
              f"steps/s   ({best[encoder]:.1f} s, {size[encoder] / 1e6:.0f} MB)")
    print(f"rollouts only, {threads} threads           {rate['pool']:10.0f} steps/s")
    print(f"naive Python PD loop             {rate['naive']:10.0f} steps/s")
    print(f"end to end / (raw x {threads} threads)     {rate['isal'] / ceiling:6.2f}   "
          "(target >= 0.85)")
    print(f"end to end / naive                 {rate['isal'] / rate['naive']:6.2f}   (target >= 2)")
    print(f"the same with zlib gzip            {rate['zlib'] / ceiling:6.2f} and "
          f"{rate['zlib'] / rate['naive']:.2f}")
    print(f"where the rest goes: thread scaling of the rollouts alone "
          f"{rate['pool'] / ceiling:.2f}, end to end / rollouts alone "
          f"{rate['isal'] / rate['pool']:.2f}")

if __name__ == "__main__":
    main()
