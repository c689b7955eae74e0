"""Benchmark: the training input path alone (no model), and training samples/s, CPU vs GPU.

Usage: python benchmarks/input_path.py --samples DIR [--rows N] [--work DIR] [--train-batches K]

DIR holds prepared samples (`quadpipe prepare`, e.g. results/train/samples). Their training rows
are repeated end to end into a memory-mapped file of N rows (default 4,000,000, about the training
set of 5,000 default trajectories; the repetition is the only thing not real here), then, side by
side in one run, batches of 256, 1024 and 4096 rows are delivered by:

- `per batch`: the input path before quadpipe.learn.imitation.batches (a DataLoader over a dataset
whose
  item i gathers batch i's sorted rows from the memory map);
- `blocks`: quadpipe.learn.imitation.batches on the CPU (64 batches gathered at once);
- on a CUDA machine also `pinned blocks` (the same, copied to the GPU from pinned memory) and
  `resident` (the rows held on the GPU, one index_select per batch).

Each figure is samples/s over one pass of at least 2M rows after a warm-up pass (the memory map
is then in the page cache, as it is from an epoch's second pass on). Then training samples/s
(forward, backward, AdamW, the default MLP and noise) on the CPU and, where there is one, the
GPU, through quadpipe.learn.imitation.epochs.run_epoch. Ends with one line of ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from quadpipe.learn.imitation.batches import Batches
from quadpipe.learn.imitation.epochs import build_policy, make_optimizer, run_epoch
from quadpipe.learn.imitation.noise import JointNoise
from quadpipe.learn.imitation.prepare import load_arrays
from quadpipe.learn.imitation.train_config import TrainConfig

BATCH_SIZES = (256, 1024, 4096)


class PerBatch(torch.utils.data.Dataset):
    """The input path before quadpipe.learn.imitation.batches, verbatim, kept here as the
    baseline."""

    def __init__(self, sources: list[tuple[np.ndarray, np.ndarray]], batch: int,
                 perm: np.ndarray) -> None:
        self.sources, self.batch, self.perm = sources, batch, perm
        self.starts = np.cumsum([0] + [len(x) for x, _ in sources])

    def __len__(self) -> int:
        return math.ceil(len(self.perm) / self.batch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(self.perm[i * self.batch:(i + 1) * self.batch])
        xs, ys = [], []
        for (x, y), a, b in zip(self.sources, self.starts[:-1], self.starts[1:], strict=True):
            rows = idx[(idx >= a) & (idx < b)] - a
            if len(rows):
                xs.append(x[rows])
                ys.append(y[rows])
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def tiled(samples: Path, rows: int, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training rows of `samples` repeated into memory maps of `rows` rows."""
    x, y = load_arrays(samples, "train")
    out = []
    for name, src in (("X", x), ("Y", y)):
        arr = np.lib.format.open_memmap(work / f"tiled_{name}.npy", mode="w+", dtype=np.float32,
                                        shape=(rows, src.shape[1]))
        for a in range(0, rows, len(src)):
            b = min(rows, a + len(src))
            arr[a:b] = src[:b - a]
        arr.flush()
        out.append(np.load(work / f"tiled_{name}.npy", mmap_mode="r"))
    return out[0], out[1]


def rate(make_iter, n: int, device: torch.device) -> float:
    """Samples/s of one pass of the iterator `make_iter()`, after one warm-up pass."""
    for _ in make_iter():
        pass
    start = time.perf_counter()
    seen = 0
    for xb, _ in make_iter():
        seen += len(xb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert seen == n, (seen, n)
    return seen / (time.perf_counter() - start)


def input_rates(x: np.ndarray, y: np.ndarray, gpu: torch.device | None
                ) -> dict[str, dict[int, float]]:
    rng = np.random.default_rng(0)
    out: dict[str, dict[int, float]] = {}
    for b in BATCH_SIZES:
        n = min(len(x), max(2_000_000, 1000 * b)) // b * b
        for name, rate_of in _methods(x, y, b, rng.permutation(len(x))[:n], gpu).items():
            out.setdefault(name, {})[b] = rate_of()
    return out


def _methods(x: np.ndarray, y: np.ndarray, b: int, perm: np.ndarray, gpu: torch.device | None
             ) -> dict[str, Callable[[], float]]:
    cpu, n = torch.device("cpu"), len(perm)

    def per_batch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(torch.utils.data.DataLoader(PerBatch([(x, y)], b, perm), batch_size=None,
                                                shuffle=False, num_workers=0))

    methods = {"per batch": lambda: rate(per_batch, n, cpu),
               "blocks": lambda: rate(lambda: Batches([(x, y)], b, cpu).epoch(perm), n, cpu)}
    if gpu is not None:
        pinned = Batches([(x, y)], b, gpu, resident=False)
        resident = Batches([(x, y)], b, gpu, resident=True)
        methods["pinned blocks"] = lambda: rate(lambda: pinned.epoch(perm), n, gpu)
        methods["resident"] = lambda: rate(lambda: resident.epoch(perm), n, gpu)
    return methods


def training_rate(x: np.ndarray, y: np.ndarray, samples: Path, device: torch.device,
                  batch: int, steps: int, fused: bool = True) -> float:
    """Training samples/s of `steps` batches through run_epoch (after a warm-up of 20).

    `fused=False` on CUDA: the plain AdamW, for the comparison with train's fused one.
    """
    meta = json.loads((samples / "meta.json").read_text())
    cfg = TrainConfig(batch_size=batch, device=device.type)
    policy = build_policy(cfg, meta).to(device)
    opt = make_optimizer(policy, cfg, device) if fused else torch.optim.AdamW(
        policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    noise = JointNoise(cfg, meta["expert"], device, meta["X_std"])
    batches = Batches([(x, y)], batch, device)
    rng = np.random.default_rng(1)
    run_epoch(policy, opt, batches, rng.permutation(len(x))[:20 * batch], noise, cfg.grad_clip)
    perm = rng.permutation(len(x))[:steps * batch]
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    _, seen = run_epoch(policy, opt, batches, perm, noise, cfg.grad_clip)
    return seen / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=Path, required=True, help="a prepared samples folder")
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--work", type=Path, default=None, help="where the tiled arrays go")
    p.add_argument("--train-batches", type=int, default=300)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--cpu-threads", type=int, default=TrainConfig().threads,
                   help="torch threads of the CPU training rows (default: train.threads' default)")
    a = p.parse_args()
    torch.set_num_threads(a.cpu_threads)
    gpu = torch.device("cuda") if torch.cuda.is_available() else None
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        x, y = tiled(a.samples, a.rows, Path(tmp))
        print(f"{a.rows:,} rows of {x.shape[1]} inputs + {y.shape[1]} outputs (float32), "
              f"{(x.nbytes + y.nbytes) / 1e9:.2f} GB; torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads, GPU: "
              f"{torch.cuda.get_device_name() if gpu else 'none'}")
        rates = input_rates(x, y, gpu)
        print("\ninput path alone, million samples/s")
        print(f"| {'method':<14} | " + " | ".join(f"batch {b:>5}" for b in BATCH_SIZES) + " |")
        for name, row in rates.items():
            print(f"| {name:<14} | " + " | ".join(f"{row[b] / 1e6:>11.2f}" for b in BATCH_SIZES)
                  + " |")
        train: dict[str, float] = {}
        print("\ntraining (run_epoch: MLP 256-256-128, noise, AdamW), samples/s")
        for dev in [torch.device("cpu")] + ([gpu] if gpu else []):
            for b in (256, 4096):
                steps = a.train_batches if b == 256 else max(20, a.train_batches // 8)
                if dev.type == "cpu" and b == 4096:
                    steps = max(10, steps // 4)
                r = training_rate(x, y, a.samples, dev, b, steps)
                train[f"{dev.type} batch {b}"] = r
                print(f"| {dev.type:<4} | batch {b:>5} | {r:>12,.0f} |")
                if dev.type == "cuda":
                    r = training_rate(x, y, a.samples, dev, b, steps, fused=False)
                    train[f"cuda batch {b} unfused"] = r
                    print(f"| cuda, AdamW not fused | batch {b:>5} | {r:>12,.0f} |")
    line = "input: " + " ".join(
        f"blocks/per-batch@{b} {rates['blocks'][b] / rates['per batch'][b]:.1f}x" for b in
        BATCH_SIZES) + f"; blocks@256 {rates['blocks'][256] / 1e6:.2f}M/s"
    if gpu:
        line += (f"; resident@256 {rates['resident'][256] / 1e6:.1f}M/s; train gpu/cpu@256 "
                 f"{train['cuda batch 256'] / train['cpu batch 256']:.1f}x @4096 "
                 f"{train['cuda batch 4096'] / train['cpu batch 4096']:.1f}x")
    print(line)
    if a.json:
        a.json.write_text(json.dumps({"input": {k: {str(b): v for b, v in r.items()}
                                                for k, r in rates.items()}, "train": train}))


if __name__ == "__main__":
    main()
