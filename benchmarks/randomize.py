"""What randomised physics costs, side by side with nominal physics in one run.

1. generate: one shard of `--num` kept trajectories (the default config's expert and sampler),
   nominal and with `randomize.data` (the default ranges and pushes). Reports wall time per kept
   trajectory, simulated steps per second over every attempt (rejected ones included), and the
   acceptance: per kept trajectory the randomised shard costs (1 / acceptance) x the per-step cost.
2. DAgger collection: `--episodes` episodes of 8 s of one round (the policy drives half of them),
   nominal and with `randomize.dagger`, with the policy of `--policy`.

The rows alternate (nominal, randomised) for `--repeat` rounds and each keeps its best time.

    python benchmarks/randomize.py [--num 24] [--episodes 32] [--policy results/train/best.pt]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py

from quadpipe.config import ExpertConfig, GenerateConfig
from quadpipe.data import dataset
from quadpipe.data.generate import generate_shard
from quadpipe.learn.imitation import dagger
from quadpipe.learn.policy import load_checkpoint
from quadpipe.sim.randomize import RandomizeConfig


def shard(num: int, seed: int, rand: RandomizeConfig, threads: int) -> tuple[float, int, int]:
    """(wall s, steps simulated over all attempts, attempts) of one fresh shard."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.h5"
        start = time.perf_counter()
        summary = generate_shard(out, num, seed, 0, gen=GenerateConfig(threads=threads),
                                 progress=False, rand=rand)
        wall = time.perf_counter() - start
        with h5py.File(out) as f:
            rows = dataset.read_attempts(f)
            if rows is None:  # nominal: every attempt kept
                steps = sum(int(f[n].attrs["num_timesteps"]) for n in dataset.trajectory_names(f))
            else:
                steps = sum(int(round(r["duration_s"] / ExpertConfig().dt)) for r in rows)
        return wall, steps, int(summary["total_attempts"])


def collect(policy, obs, episodes: int, rand: RandomizeConfig) -> tuple[float, int]:
    """(wall s, samples) of one DAgger round's collection."""
    start = time.perf_counter()
    got = dagger.collect(policy, obs, ExpertConfig(), episodes, 8.0, 5, 0.5, 0, 1, rand=rand)
    return time.perf_counter() - start, len(got.x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=24, help="kept trajectories per shard")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="generation threads (0 = all cores)")
    p.add_argument("--episodes", type=int, default=32, help="DAgger episodes")
    p.add_argument("--policy", default="results/train/best.pt", help="a trained checkpoint")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()

    variants = {"nominal": RandomizeConfig(), "randomised": RandomizeConfig(data=True,
                                                                            dagger=True)}
    gen: dict[str, tuple[float, int, int]] = {}
    for _ in range(args.repeat):
        for name, rand in variants.items():
            r = shard(args.num, args.seed, rand, args.threads)
            if name not in gen or r[0] < gen[name][0]:
                gen[name] = r
    print(f"generate, {args.num} kept trajectories, {args.threads or 'all'} threads:")
    for name, (wall, steps, attempts) in gen.items():
        print(f"  {name:10s} {wall:6.1f} s  {wall / args.num:5.2f} s/kept trajectory  "
              f"{steps / wall:9.0f} steps/s  acceptance {args.num / attempts:.0%} "
              f"({attempts} attempts)")
    policy, obs, _ = load_checkpoint(args.policy)
    col: dict[str, tuple[float, int]] = {}
    for _ in range(args.repeat):
        for name, rand in variants.items():
            r = collect(policy, obs, args.episodes, rand)
            if name not in col or r[0] < col[name][0]:
                col[name] = r
    print(f"DAgger collection, {args.episodes} episodes of 8 s, one thread:")
    for name, (wall, samples) in col.items():
        print(f"  {name:10s} {wall:6.1f} s  {samples} samples")
    g = (gen["randomised"][0] / gen["nominal"][0])
    s = (gen["nominal"][1] / gen["nominal"][0]) / (gen["randomised"][1] / gen["randomised"][0])
    c = col["randomised"][0] / col["nominal"][0]
    print(f"randomize: generate {g:.2f}x per kept trajectory ({s:.2f}x per simulated step), "
          f"DAgger collection {c:.2f}x")


if __name__ == "__main__":
    main()
