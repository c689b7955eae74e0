"""How imitation and fine-tuning run Adam: the multi-tensor kernels, on every device.

torch's Adam and AdamW update each parameter tensor in a Python loop unless told otherwise on a
CPU. The "foreach" implementation does the same arithmetic on all tensors per operation (the same
bits, tested in tests/test_train.py) and saves that loop: a behaviour-cloning step of the
default MLP on one CPU core 1.04x as fast (benchmarks/README.md; the step is mostly the MLP's
matrix products). The fused kernel is faster still but rounds differently, so it is kept for
CUDA, where it bounds a small MLP's steps.

A saved optimizer state carries the implementation it ran with (`foreach`, `fused` in each
parameter group), and `load_state_dict` puts those back: `load` restores them to the ones this
optimizer was built with, so a resumed stage, or one built on a state saved by an older version,
runs as fast as a fresh one (the numbers are the same either way).
"""

from __future__ import annotations

from typing import Any

import torch

IMPLEMENTATION_KEYS = ("foreach", "fused")


def implementation(device: torch.device) -> dict[str, bool]:
    """The keyword that picks Adam's kernels on `device`."""
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def load(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """`opt.load_state_dict(state)`, keeping `opt`'s own choice of kernels."""
    kept = [{k: g[k] for k in IMPLEMENTATION_KEYS if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, keys in zip(opt.param_groups, kept, strict=True):
        group.update(keys)
