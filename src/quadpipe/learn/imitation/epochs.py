"""The optimisation itself: the policy, optimiser and device a stage trains on, one epoch over its
samples and the validation loss after it.

The original's recipe: AdamW, global gradient-norm clipping, MSE on normalised torques (the
learning-rate decay is set per epoch by learn.imitation.train).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from quadpipe.errors import ConfigError
from quadpipe.learn import optimizers
from quadpipe.learn.imitation.batches import Batches
from quadpipe.learn.imitation.mirror import Mirror
from quadpipe.learn.imitation.noise import JointNoise
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import Policy
from quadpipe.learn.progress import progress_bar
from quadpipe.sim.state import ACTION_DIM


def resolve_device(name: str) -> torch.device:
    """The device `train.device` names; cuda without a GPU is a ConfigError, not a silent CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def valid_loss(policy: Policy, x: np.ndarray, y: np.ndarray, device: torch.device,
               chunk: int = 16384) -> float:
    """Mean MSE on normalised torques over a split (nan if it is empty), read `chunk` rows at
    a time: the arrays are memory-mapped and need not fit in memory."""
    if len(x) == 0:
        return float("nan")
    total = 0.0
    policy.eval()
    with torch.inference_mode():
        for a in range(0, len(x), chunk):
            xb = torch.from_numpy(np.array(x[a:a + chunk])).to(device)
            yb = torch.from_numpy(np.array(y[a:a + chunk])).to(device)
            err = policy.forward_normalised(xb) - policy.normalise_output(yb)
            total += float((err * err).mean(dim=1).sum())
    return total / len(x)


def make_optimizer(policy: Policy, cfg: TrainConfig, device: torch.device
                   ) -> optimizers.Optimizer:
    """AdamW on the multi-tensor kernels (learn.optimizers: torch's bits, faster)."""
    return optimizers.make(policy.parameters(), device, lr=cfg.lr,
                           weight_decay=cfg.weight_decay, decoupled=True)


def build_policy(cfg: TrainConfig, meta: dict[str, Any]) -> Policy:
    """The MLP with the training split's normalisation (`meta` from `prepare`); its initial
    weights depend on `cfg.seed` alone (the global torch generator is seeded here)."""
    torch.manual_seed(cfg.seed)
    policy = Policy(len(meta["X_mean"]), ACTION_DIM, tuple(cfg.hidden))
    policy.set_normalisation(meta["X_mean"], meta["X_std"], meta["Y_mean"], meta["Y_std"],
                             in_floor=cfg.input_std_floor)
    return policy


def run_epoch(policy: Policy, opt: optimizers.Optimizer, batches: Batches, perm: np.ndarray,
              noise: JointNoise | None, grad_clip: float, progress: bool | None = False,
              desc: str = "epoch", mirror: Mirror | None = None) -> tuple[float, int]:
    """One pass over `batches` in the order `perm`; returns (mean training loss, samples).

    `mirror` mirrors half of each batch before the joint noise perturbs it (learn.imitation.mirror).

    The loss is summed on the device (in float64, the sum a Python float would give): reading it
    back every batch would make the CPU wait for the GPU after each step.
    """
    policy.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=batches.device)
    seen = 0
    for xb, yb in progress_bar(batches.epoch(perm), progress, desc, unit="batch",
                               total=len(batches)):
        if mirror is not None:
            xb, yb = mirror(xb, yb)
        if noise is not None:
            xb, yb = noise(xb, yb)
        err = policy.forward_normalised(xb) - policy.normalise_output(yb)
        loss = (err * err).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizers.clip_grad_norm_(policy.parameters(), grad_clip)
        opt.step()
        loss_sum += loss.detach().double() * len(xb)
        seen += len(xb)
    return float(loss_sum) / max(seen, 1), seen
