"""Benchmark: what every stage after generation costs per trajectory at 160, 1,280 and 5,120.

Usage: python benchmarks/scale.py [--shards DIR] [--sizes 160,1280,5120] [--work DIR] [--no-copy]

DIR holds real generated shards (default results/shards, the default run's: 4 x 40 trajectories).
For N trajectories the benchmark writes N/40 shard files numbered 0, 1, ...; shard k holds the 40
trajectories of real shard k mod 4, its time series HDF5 external links to that shard's (each
real shard is so used N/160 times, and read from the page cache after the first: the only thing
here not as in a real run of N trajectories). Then each stage runs as the workflow runs it, as
its own `python -m quadpipe` process:

- merge: `quadpipe merge --layout link` (the default) and `--layout copy` (which copies every
  byte, through the links; skipped with --no-copy; its 5,120-trajectory file is ~37 GB);
- stats, prepare (the default train settings), and one epoch (`quadpipe train` with epochs 1 and
  no DAgger, default batch and threads; its prepare is reused).

Per stage and size: wall and CPU seconds, per-trajectory milliseconds, and two peaks: RSS (all
resident pages, including the memory-mapped sample files the OS page cache holds) and anon (the
process's own memory, RssAnon sampled every 20 ms: what grows if a stage holds data in memory).
Then a projection for 5,000 trajectories on a cluster, from the largest size's per-trajectory
figures: generation from the shards' mean steps per trajectory at --sim-steps-per-core-s (the
simulation benchmark's figure, benchmarks/README.md) over --array-tasks x --cores-per-task
cores; 100 epochs on the CPU from the measured epoch (one torch thread, train.threads' default)
and on a GPU at --gpu-samples-per-s (benchmarks/input_path.py's figures on an H200, at the
recipe's batch 256 and at batch 4096).

The last line gives, per stage, the per-trajectory wall time at the largest size over that at
the smallest (the line above it: the same for CPU time, which a busy machine disturbs less),
then each stage's peak anonymous memory in MB at the largest size.
`--from-json FILE` prints the tables again from a saved run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import yaml

from quadpipe.data import dataset

PER_SHARD = 40
STAGES = ("merge", "merge_copy", "stats", "prepare", "epoch")


def build_shards(real: list[Path], n: int, out: Path) -> list[Path]:
    """n/40 shard files whose trajectories link to the real shards' (see the docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(n // PER_SHARD):
        src_path = real[k % len(real)]
        dst_path = out / f"shard_{k}.h5"
        with h5py.File(src_path) as src, h5py.File(dst_path, "w", track_order=True) as dst:
            names = dataset.trajectory_names(src)[:PER_SHARD]
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            dst.attrs["shard"] = k
            dst.attrs["num_trajectories"] = len(names)
            target = os.path.relpath(src_path.resolve(), out.resolve())
            for name in names:
                g = dataset.link_trajectory(src[name], dst, name, target)
                g.attrs["shard"] = k
        files.append(dst_path)
    return files


def measure(cmd: list[str], log: Path) -> dict[str, float]:
    """Run `cmd`; its wall and CPU seconds, peak RSS and peak anonymous memory (MB)."""
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    peak_anon = [0.0]
    done = threading.Event()

    def sample() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while not done.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        peak_anon[0] = max(peak_anon[0], int(line.split()[1]) / 1024)
            except OSError:
                return
            done.wait(0.02)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "anon_mb": peak_anon[0]}


def run_size(real: list[Path], n: int, work: Path, copy: bool) -> dict[str, dict[str, float]]:
    base = work / str(n)
    shutil.rmtree(base, ignore_errors=True)
    shards = build_shards(real, n, base / "shards")
    cfg = base / "config.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"epochs": 1, "dagger_rounds": 0,
                                             "device": "cpu"}}))
    py = [sys.executable, "-m", "quadpipe"]
    data = base / "dataset" / "dataset.h5"
    steps = {
        "merge": py + ["merge", *map(str, shards), "--out", str(data), "--layout", "link"],
        "merge_copy": py + ["merge", *map(str, shards), "--out", str(base / "copy.h5"),
                            "--layout", "copy"],
        "stats": py + ["stats", str(data), "--out-dir", str(base / "stats")],
        "prepare": py + ["prepare", "--dataset", str(data), "--out", str(base / "samples"),
                         "--config", str(cfg)],
        "epoch": py + ["train", "--dataset", str(data), "--samples", str(base / "samples"),
                       "--out-dir", str(base / "train"), "--config", str(cfg)],
    }
    out = {}
    for stage, cmd in steps.items():
        if stage == "merge_copy" and not copy:
            continue
        out[stage] = measure(cmd, base / f"{stage}.log")
        if stage == "merge_copy":
            out[stage]["bytes"] = (base / "copy.h5").stat().st_size
            (base / "copy.h5").unlink()
        print(f"  {n:>5} {stage:<10} {out[stage]['wall_s']:8.1f} s", flush=True)
    out["merge"]["bytes"] = data.stat().st_size
    meta = json.loads((base / "samples" / "meta.json").read_text())
    out["prepare"]["samples"] = sum(meta["counts"].values())
    out["prepare"]["bytes"] = sum(f.stat().st_size for f in (base / "samples").glob("*.npy"))
    return out


def shard_figures(real: list[Path]) -> dict[str, float]:
    """Bytes and simulated steps per trajectory of the real shards."""
    steps = trajectories = 0
    for path in real:
        with h5py.File(path) as f:
            for name in dataset.trajectory_names(f):
                steps += int(f[name].attrs["num_timesteps"])
                trajectories += 1
    size = sum(p.stat().st_size for p in real)
    return {"bytes_per_trajectory": size / trajectories,
            "steps_per_trajectory": steps / trajectories}


def projection(results: dict[int, dict], shards: dict[str, float], a: argparse.Namespace,
               n: int = 5000) -> None:
    big = max(results)
    r = results[big]
    per = {s: r[s]["wall_s"] / big for s in r}
    gen_core_s = shards["steps_per_trajectory"] / a.sim_steps_per_core_s
    cores = a.array_tasks * a.cores_per_task
    samples = r["prepare"]["samples"] / big * n
    rows = [
        ("generate", f"{n * gen_core_s / cores / 60:.1f} min on {a.array_tasks} tasks x "
                     f"{a.cores_per_task} cores ({n * gen_core_s / 3600:.1f} core-hours)",
         f"shards {n * shards['bytes_per_trajectory'] / 1e9:.1f} GB"),
        ("merge (link)", f"{n * per['merge']:.0f} s",
         f"dataset.h5 {r['merge']['bytes'] / big * n / 1e6:.0f} MB"),
    ]
    if "merge_copy" in per:
        rows.append(("merge (copy)", f"{n * per['merge_copy'] / 60:.1f} min",
                     f"dataset.h5 {r['merge_copy']['bytes'] / big * n / 1e9:.1f} GB more"))
    rows += [
        ("stats", f"{n * per['stats'] / 60:.1f} min", f"peak {r['stats']['anon_mb']:.0f} MB"),
        ("prepare", f"{n * per['prepare'] / 60:.1f} min",
         f"samples {r['prepare']['bytes'] / big * n / 1e9:.2f} GB ({samples / 1e6:.1f} M)"),
        ("100 epochs, CPU (train.threads 1)", f"{100 * n * per['epoch'] / 3600:.1f} h",
         f"peak {r['epoch']['anon_mb']:.0f} MB + page cache"),
    ]
    for rate, label in zip(a.gpu_samples_per_s, ("batch 256", "batch 4096"), strict=False):
        rows.append((f"100 epochs, GPU ({label})", f"{100 * samples / rate / 60:.0f} min",
                     f"at {rate:,.0f} samples/s"))
    print(f"\nprojection for {n:,} trajectories ({shards['steps_per_trajectory']:,.0f} steps "
          "each on average)")
    print("| stage | time | data / memory |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def report(results: dict[int, dict], shards: dict[str, float], a: argparse.Namespace) -> None:
    sizes = sorted(results)
    stages = [s for s in STAGES if s in results[sizes[0]]]
    print("\n| trajectories | stage | wall s | CPU s | ms/trajectory | peak RSS MB | "
          "peak anon MB |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        for s in stages:
            r = results[n][s]
            print(f"| {n:,} | {s} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                  f"{1000 * r['wall_s'] / n:.1f} | {r['rss_mb']:.0f} | {r['anon_mb']:.0f} |")
    for n in sizes:
        r = results[n]
        print(f"{n:,} trajectories: linked dataset.h5 {r['merge']['bytes'] / 1e6:.1f} MB"
              + (f", copied {r['merge_copy']['bytes'] / 1e9:.2f} GB" if "merge_copy" in r else "")
              + f"; {r['prepare']['samples']:,} samples, {r['prepare']['bytes'] / 1e9:.2f} GB")
    projection(results, shards, a)
    big, small = sizes[-1], sizes[0]
    ratio = {s: (results[big][s]["wall_s"] / big) / (results[small][s]["wall_s"] / small)
             for s in stages}
    names = {"merge_copy": "merge-copy"}
    cpu = {s: (results[big][s]["cpu_s"] / big) / (results[small][s]["cpu_s"] / small)
           for s in stages}
    print("CPU time per trajectory, largest over smallest size: "
          + " ".join(f"{names.get(s, s)} {cpu[s]:.2f}x" for s in stages))
    print("scale: " + " ".join(f"{names.get(s, s)} {ratio[s]:.2f}x" for s in stages)
          + "; peak MB " + " ".join(f"{names.get(s, s)} {results[big][s]['anon_mb']:.0f}"
                                    for s in stages))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", type=Path, default=Path("results/shards"),
                   help="folder of real shard_*.h5 files (default: the default run's)")
    p.add_argument("--from-json", type=Path, help="print the tables of a saved run")
    p.add_argument("--sim-steps-per-core-s", type=float, default=14_500)
    p.add_argument("--array-tasks", type=int, default=50)
    p.add_argument("--cores-per-task", type=int, default=2)
    p.add_argument("--gpu-samples-per-s", type=float, nargs="+", default=[130_000, 1_950_000])
    p.add_argument("--sizes", default="160,1280,5120")
    p.add_argument("--work", type=Path, default=Path("results/benchmarks/scale"))
    p.add_argument("--no-copy", action="store_true", help="skip the copying merge")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    a = p.parse_args()
    if a.from_json:
        saved = json.loads(a.from_json.read_text())
        report({int(n): r for n, r in saved["results"].items()}, saved["shards"], a)
        return
    real = sorted(a.shards.glob("shard_*.h5")) if a.shards else []
    if not real:
        sys.exit(f"no shard_*.h5 in {a.shards}: run the workflow first (snakemake --cores all "
                 "merge) or give --shards")
    results = {}
    for n in (int(s) for s in a.sizes.split(",")):
        results[n] = run_size(real, n, a.work, not a.no_copy)
    if not a.keep:
        shutil.rmtree(a.work, ignore_errors=True)
    shards = shard_figures(real)
    if a.json:
        a.json.write_text(json.dumps({"results": results, "shards": shards}, indent=1))
    report(results, shards, a)


if __name__ == "__main__":
    main()
