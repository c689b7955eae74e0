"""The training input path: an epoch's batches from the prepared arrays, fast enough for a GPU.

Batch i of an epoch holds the rows perm[i*B:(i+1)*B] of the sources stacked end to end (the
prepared memory maps, then the in-memory DAgger samples), in ascending row order. That definition
is what fixes the training result; everything below only changes how fast the rows arrive.

Two ways to deliver them, chosen per device:

- **Blocks (CPU, or a GPU too small for the samples).** The rows of whole batches, ~16k rows at
  a time, are gathered with one `np.take` per source and cut into batches: one gather of 16k rows
  costs about as much as a few gathers of 256 (benchmarks/README.md has the figures), and memory
  stays one block, whatever the dataset's size: the memory maps are read through the OS page
  cache. On CUDA a block goes into pinned memory and is copied
  asynchronously, two buffers alternating, so the copy overlaps the previous block's steps.
- **Resident (CUDA, when the samples fit in a quarter of the free GPU memory).** The sources are
  copied to the GPU once per round, a block at a time (host memory stays flat), and each batch is
  one `index_select` on the GPU: the input path then costs microseconds per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

Source = tuple[np.ndarray, np.ndarray]
BLOCK_ROWS = 16384  # rows gathered at once (rounded to whole batches): ~4 MB, cache-sized
RESIDENT_SHARE = 0.25  # of the free GPU memory the samples may take to be held there


def batch_order(perm: np.ndarray, batch: int) -> np.ndarray:
    """`perm` with each batch's rows sorted: sequential reads, same batches."""
    full = len(perm) // batch * batch
    head = np.sort(perm[:full].reshape(-1, batch), axis=1).ravel()
    return np.concatenate([head, np.sort(perm[full:])])


def gather(sources: Sequence[Source], rows: np.ndarray, out_x: np.ndarray | None = None,
           out_y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows `rows` (global, in the given order) of the sources stacked end to end."""
    width_x, width_y = sources[0][0].shape[1], sources[0][1].shape[1]
    n = len(rows)
    x = np.empty((n, width_x), np.float32) if out_x is None else out_x[:n]
    y = np.empty((n, width_y), np.float32) if out_y is None else out_y[:n]
    if len(sources) == 1:
        np.take(sources[0][0], rows, axis=0, out=x)
        np.take(sources[0][1], rows, axis=0, out=y)
        return x, y
    start = 0
    for sx, sy in sources:
        inside = (rows >= start) & (rows < start + len(sx))
        local = rows[inside] - start
        x[inside] = np.take(sx, local, axis=0)
        y[inside] = np.take(sy, local, axis=0)
        start += len(sx)
    return x, y


class Batches:
    """An epoch's (x, y) batches on `device` from `sources`; see the module docstring."""

    def __init__(self, sources: Sequence[Source], batch: int, device: torch.device,
                 block_rows: int = BLOCK_ROWS, resident: bool | None = None) -> None:
        self.sources, self.batch, self.device = list(sources), batch, device
        self.step = max(1, block_rows // batch) * batch
        self.rows = sum(len(x) for x, _ in self.sources)
        self.resident = _fits_gpu(self.sources, device) if resident is None else resident
        self._on_gpu: tuple[torch.Tensor, torch.Tensor] | None = None
        self._pinned: list[tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]] = []
        self._events: list[torch.cuda.Event | None] = []

    def __len__(self) -> int:
        return -(-self.rows // self.batch)

    def epoch(self, perm: np.ndarray) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = batch_order(perm, self.batch)
        if self.resident:
            yield from self._resident(order)
        elif self.device.type == "cuda":
            yield from self._pinned_blocks(order)
        else:
            yield from self._cpu_blocks(order)

    def _cpu_blocks(self, order: np.ndarray) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        step = self.step
        for a in range(0, len(order), step):
            x, y = gather(self.sources, order[a:a + step])
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            for i in range(0, len(x), self.batch):
                yield tx[i:i + self.batch], ty[i:i + self.batch]

    def _pinned_blocks(self, order: np.ndarray) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        step = self.step
        if not self._pinned:
            wx, wy = self.sources[0][0].shape[1], self.sources[0][1].shape[1]
            for _ in range(2):
                px = torch.empty((step, wx), dtype=torch.float32).pin_memory()
                py = torch.empty((step, wy), dtype=torch.float32).pin_memory()
                self._pinned.append((px.numpy(), py.numpy(), px, py))
                self._events.append(None)
        for k, a in enumerate(range(0, len(order), step)):
            nx, ny, px, py = self._pinned[k % 2]
            event = self._events[k % 2]
            if event is not None:  # the copy out of this buffer two blocks ago is done
                event.synchronize()
            rows = order[a:a + step]
            gather(self.sources, rows, nx, ny)
            dx = px[:len(rows)].to(self.device, non_blocking=True)
            dy = py[:len(rows)].to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._events[k % 2] = event
            for i in range(0, len(rows), self.batch):
                yield dx[i:i + self.batch], dy[i:i + self.batch]

    def _resident(self, order: np.ndarray) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._on_gpu is None:
            self._on_gpu = _to_device(self.sources, self.device)
        gx, gy = self._on_gpu
        idx = torch.from_numpy(order).to(self.device)
        for a in range(0, len(order), self.batch):
            rows = idx[a:a + self.batch]
            yield gx.index_select(0, rows), gy.index_select(0, rows)


def _fits_gpu(sources: Sequence[Source], device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    need = sum(x.nbytes + y.nbytes for x, y in sources)
    free, _ = torch.cuda.mem_get_info(device)
    return need <= RESIDENT_SHARE * free


def _to_device(sources: Sequence[Source], device: torch.device, chunk: int = 1 << 18
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The sources stacked on `device`, copied a chunk at a time (host memory stays flat)."""
    rows = sum(len(x) for x, _ in sources)
    gx = torch.empty((rows, sources[0][0].shape[1]), dtype=torch.float32, device=device)
    gy = torch.empty((rows, sources[0][1].shape[1]), dtype=torch.float32, device=device)
    start = 0
    for sx, sy in sources:
        for a in range(0, len(sx), chunk):
            b = min(a + chunk, len(sx))
            gx[start + a:start + b] = torch.from_numpy(np.array(sx[a:b])).to(device)
            gy[start + a:start + b] = torch.from_numpy(np.array(sy[a:b])).to(device)
        start += len(sx)
    return gx, gy
