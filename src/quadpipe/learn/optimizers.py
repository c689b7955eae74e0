"""How imitation and fine-tuning run Adam and clip gradients: torch's multi-tensor kernels, called
directly on a CPU.

A training step of the default MLP on one CPU core is a few milliseconds, and
`torch.optim.AdamW(foreach=True)` with `torch.nn.utils.clip_grad_norm_` spend a sixth of it in
Python around their kernels (argument checks, dynamo guards on every call, grouping by device and
dtype); `torch.optim` also imports torch._dynamo (~1.1 s) in every job that builds an optimizer.
`Adam` and `clip_grad_norm_` here call the same `torch._foreach_*` kernels with the same operands
in the same order as torch's multi-tensor Adam and clipping do on a CPU, so they give the same
bits (tests/test_train.py compares them with the installed torch's per-tensor loop and its
multi-tensor path: weight decay, clipping, a group without gradients for a while, a changed
learning rate, resumes from states saved by either side). A behaviour-cloning stage runs 1.15x
as fast (benchmarks/README.md).

On CUDA `make` returns torch's fused AdamW instead: it rounds differently, and there the fused
kernel is what bounds a small MLP's step. A state saved by either is torch's format
(`{"state": {i: {"step", "exp_avg", "exp_avg_sq"}}, "param_groups": [...]}`), so a checkpoint
saved by an older version, with torch.optim, resumes here with the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

HYPER = ("lr", "betas", "eps", "weight_decay")  # what a saved group restores (torch's rule)


class Adam:
    """Adam, or AdamW with `decoupled=True`, as torch's `_multi_tensor_adam` runs it on a CPU
    (no amsgrad, no maximize, float learning rates). Parameters without a gradient in a step are
    left alone and their step count does not advance, as in torch.

    `groups`: parameters, or dicts {"params": [...], and any of HYPER}; `param_groups` is then a
    list of dicts whose "lr" a schedule may change between steps, as with torch.optim.
    """

    def __init__(self, groups: Iterable[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False) -> None:
        groups = list(groups)
        if not groups or not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.decoupled = decoupled
        self.param_groups: list[dict[str, Any]] = [
            {**defaults, **{k: v for k, v in g.items() if k != "params"},
             "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps, wd = (group[k] for k in HYPER)
        grads = [p.grad for p in params]
        states = []
        for p in params:
            s = self.state.get(p)
            if s is None:
                s = self.state[p] = {"step": 0.0, "exp_avg": torch.zeros_like(p),
                                     "exp_avg_sq": torch.zeros_like(p)}
            s["step"] += 1.0
            states.append(s)
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        if wd != 0:
            if self.decoupled:
                torch._foreach_mul_(params, 1 - lr * wd)
            else:
                grads = torch._foreach_add(grads, params, alpha=wd)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        step_size = [(lr / (1 - beta1 ** s["step"])) * -1 for s in states]
        bias_correction2_sqrt = [(1 - beta2 ** s["step"]) ** 0.5 for s in states]
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's format: parameters numbered in group order, a tensor step."""
        index: dict[torch.Tensor, int] = {}
        groups = []
        for group in self.param_groups:
            ids = [index.setdefault(p, len(index)) for p in group["params"]]
            groups.append({**{k: group[k] for k in HYPER}, "amsgrad": False, "maximize": False,
                           "foreach": True, "capturable": False, "differentiable": False,
                           "fused": None, "decoupled_weight_decay": self.decoupled,
                           "params": ids})
        state = {index[p]: {"step": torch.tensor(s["step"], dtype=torch.float32),
                            "exp_avg": s["exp_avg"].clone(),
                            "exp_avg_sq": s["exp_avg_sq"].clone()}
                 for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore a state saved by this class or by torch.optim.Adam/AdamW (any kernels): the
        moments, each parameter's step and each group's hyperparameters (its learning rate as
        adapted or decayed so far)."""
        groups = saved["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(mine["params"])
                for g, mine in zip(groups, self.param_groups, strict=True)):
            raise ValueError("the saved optimizer state has other parameter groups than this one")
        by_id = {i: p for g, mine in zip(groups, self.param_groups, strict=True)
                 for i, p in zip(g["params"], mine["params"], strict=True)}
        for g, mine in zip(groups, self.param_groups, strict=True):
            mine.update({k: tuple(g[k]) if k == "betas" else g[k] for k in HYPER})
        self.state = {}
        for i, s in saved["state"].items():
            p = by_id[int(i)]
            self.state[p] = {"step": float(s["step"]),
                             "exp_avg": s["exp_avg"].to(p.device, p.dtype).clone(),
                             "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).clone()}


Optimizer = Adam | torch.optim.Optimizer  # what make returns: the training loops use either


def make(groups: Iterable[Any], device: torch.device, lr: float, weight_decay: float = 0.0,
         decoupled: bool = False) -> Optimizer:
    """Adam (AdamW if `decoupled`) for parameters on `device` (module docstring)."""
    if device.type == "cuda":
        cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        return cls(groups, lr=lr, weight_decay=weight_decay, fused=True)
    return Adam(groups, lr=lr, weight_decay=weight_decay, decoupled=decoupled)


def load(opt: Optimizer, state: dict[str, Any]) -> None:
    """`opt.load_state_dict(state)`; a torch optimizer keeps its own kernels (a saved state
    carries `foreach` and `fused` in each group, which torch would restore)."""
    if isinstance(opt, Adam):
        opt.load_state_dict(state)
        return
    kept = [{k: g[k] for k in ("foreach", "fused") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, keys in zip(opt.param_groups, kept, strict=True):
        group.update(keys)


@torch.no_grad()
def clip_grad_norm_(params: Sequence[torch.Tensor] | Iterable[torch.Tensor],
                    max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_(params, max_norm)` (2-norm) for parameters on one device
    and of one dtype: the same kernels and bits, without its per-call Python (module
    docstring). Returns the total norm before clipping."""
    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    if len({(g.device, g.dtype) for g in grads}) > 1:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(float(max_norm) / (total + 1e-6), max=1.0))
    return total
