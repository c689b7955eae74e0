"""The training input path delivers exactly the batches its definition names, on every device.

Batch i of an epoch = rows perm[i*B:(i+1)*B] of the sources stacked end to end, in ascending row
order (quadpipe.learn.imitation.batches). The reference below computes that row by row; every
delivery (CPU blocks, pinned blocks and GPU-resident on CUDA) must equal it, for block sizes that do
and do not divide the epoch, a last short batch, and several sources (prepared + DAgger samples).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quadpipe.learn.imitation.batches import Batches, batch_order

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _sources(rng: np.random.Generator, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(rng.standard_normal((n, 7)).astype(np.float32),
             rng.standard_normal((n, 3)).astype(np.float32)) for n in sizes]


def _reference(sources, perm: np.ndarray, batch: int):
    x = np.concatenate([s[0] for s in sources])
    y = np.concatenate([s[1] for s in sources])
    for a in range(0, len(perm), batch):
        rows = np.sort(perm[a:a + batch])
        yield x[rows], y[rows]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resident", [False, True])
@pytest.mark.parametrize(("sizes", "batch", "block_rows"),
                         [([1000], 64, 256), ([700, 123, 50], 32, 100), ([10], 4, 1)])
def test_batches_equal_their_definition(device: str, resident: bool, sizes: list[int],
                                        batch: int, block_rows: int) -> None:
    if resident and device == "cpu":
        pytest.skip("resident is the CUDA path")
    rng = np.random.default_rng(len(sizes) + batch)
    sources = _sources(rng, sizes)
    b = Batches(sources, batch, torch.device(device), block_rows=block_rows, resident=resident)
    for _ in range(2):  # a second epoch reuses buffers (pinned) or the GPU copy (resident)
        perm = rng.permutation(b.rows)
        got = [(x.cpu().numpy().copy(), y.cpu().numpy().copy()) for x, y in b.epoch(perm)]
        want = list(_reference(sources, perm, batch))
        assert len(got) == len(want) == len(b)
        for (gx, gy), (wx, wy) in zip(got, want, strict=True):
            np.testing.assert_array_equal(gx, wx)
            np.testing.assert_array_equal(gy, wy)


def test_batch_order_sorts_within_batches_only() -> None:
    perm = np.array([5, 3, 9, 0, 8, 1, 7])
    assert batch_order(perm, 3).tolist() == [3, 5, 9, 0, 1, 8, 7]


def test_partial_permutation_gives_its_rows_only() -> None:
    """A benchmark or a partial epoch passes a prefix of a permutation: only those rows come."""
    rng = np.random.default_rng(0)
    sources = _sources(rng, [300])
    perm = rng.permutation(300)[:70]
    got = np.concatenate([x.numpy() for x, _ in Batches(sources, 16, torch.device("cpu"),
                                                         block_rows=32).epoch(perm)])
    np.testing.assert_array_equal(np.sort(got[:, 0]), np.sort(sources[0][0][perm, 0]))
