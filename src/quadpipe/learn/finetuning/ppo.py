"""PPO, the algorithm: GAE over an iteration's transitions, then the clipped update of actor and
critic (learn.finetuning.rollout collects the transitions).

The algorithm is rsl-rl's (clipped surrogate, clipped value loss, GAE with bootstrapping at time
outs, Adam with the actor's learning rate adapted to a target KL, gradient-norm clipping), written
here over the batched closed loop (control.closed_loop) rather than through rsl-rl's runner,
which keeps environments, their random streams and torch's global generator running from one
iteration to the next: here an iteration's episodes, noise and mini-batches come from (seed,
iteration) alone, so a job killed between iterations resumes bit for bit
(learn.finetuning.runner).

Optionally (`bc_weight`) the actor also regresses onto the expert's torque labels at the states
it visits (the DAgger loss, annealed by `bc_decay` per iteration): it keeps the policy near what
it already does well while the reward pulls it elsewhere.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from quadpipe.learn import optimizers
from quadpipe.learn.finetuning.actor_critic import ActorCritic
from quadpipe.learn.finetuning.rollout import Rollout


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """The update's settings (learn.finetuning.runner.FinetuneConfig holds them with the rest)."""

    block: int = 20  # ms per decision (whole physics steps)
    gamma: float = 0.99  # per block (a 2-s horizon at 20 ms)
    lam: float = 0.95
    clip: float = 0.2
    epochs: int = 10
    minibatches: int = 4
    lr: float = 1e-5  # the actor's first learning rate; then adapted to desired_kl
    lr_range: tuple[float, float] = (1e-6, 1e-4)  # a pretrained actor needs small steps
    critic_lr: float = 1e-3
    desired_kl: float = 0.05
    kl_of: str = "mean"  # the minibatch's KL statistic the lr adapts to: mean or median
    value_coef: float = 1.0
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0


def advantages(r: Rollout, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, returns), each (B, E), by GAE; a fall ends the return, a time out is
    bootstrapped with the last state's value."""
    next_value = np.concatenate([r.value[1:], r.last_value[None]]).astype(np.float64)
    going = ~r.done
    delta = r.reward + gamma * next_value * going - r.value
    adv = np.zeros_like(delta)
    run_on = np.zeros(delta.shape[1])
    for j in range(len(delta) - 1, -1, -1):
        run_on = delta[j] + gamma * lam * going[j] * run_on
        adv[j] = run_on
    return adv, adv + r.value


def update(ac: ActorCritic, opt: optimizers.Optimizer, r: Rollout, cfg: PPOConfig,
           rng: np.random.Generator, train_actor: bool, bc_weight: float) -> dict[str, float]:
    """PPO epochs over the rollout's valid transitions; the mean losses, KL and learning rate.

    opt's param group 0 is the actor's (its lr adapted to cfg.desired_kl once the actor trains),
    group 1 the critic's. train_actor False: the critic alone learns (its warm-up).
    """
    adv, ret = advantages(r, cfg.gamma, cfg.lam)
    v = r.valid
    a = adv[v]
    a = (a - a.mean()) / (a.std() + 1e-8)
    t = {
        "obs": torch.from_numpy(r.obs[v]), "action": torch.from_numpy(r.action[v]),
        "mean": torch.from_numpy(r.mean[v]), "logp": torch.from_numpy(r.logp[v]),
        "value": torch.from_numpy(r.value[v]), "adv": torch.from_numpy(a.astype(np.float32)),
        "ret": torch.from_numpy(ret[v].astype(np.float32)),
    }
    if r.label is not None:
        t["label"] = torch.from_numpy(r.label[v])
    old_log_std = ac.log_std.detach().clone()
    sums = {"surrogate": 0.0, "value_loss": 0.0, "bc_loss": 0.0, "kl": 0.0}
    count = 0
    n = len(a)
    for _ in range(cfg.epochs):
        for mb in np.array_split(rng.permutation(n), cfg.minibatches):
            b = {k: x[torch.from_numpy(mb)] for k, x in t.items()}
            mu = ac.mean(b["obs"])
            value = ac.value(b["obs"])
            with torch.no_grad():
                per = ac.kl_from(b["mean"], old_log_std, mu)
                kl = (per.median() if cfg.kl_of == "median" else per.mean()).item()
            if train_actor and cfg.desired_kl > 0:
                group = opt.param_groups[0]
                lo, hi = cfg.lr_range
                if kl > 2.0 * cfg.desired_kl:
                    group["lr"] = max(lo, group["lr"] / 1.5)
                elif 0.0 < kl < 0.5 * cfg.desired_kl:
                    group["lr"] = min(hi, group["lr"] * 1.5)
            ratio = torch.exp(ac.log_prob(mu, b["action"]) - b["logp"])
            surrogate = torch.max(-b["adv"] * ratio,
                                  -b["adv"] * ratio.clamp(1.0 - cfg.clip, 1.0 + cfg.clip)).mean()
            clipped = b["value"] + (value - b["value"]).clamp(-cfg.clip, cfg.clip)
            value_loss = torch.max((value - b["ret"]).pow(2),
                                   (clipped - b["ret"]).pow(2)).mean()
            loss = cfg.value_coef * value_loss
            bc = torch.zeros(())
            if train_actor:
                loss = loss + surrogate - cfg.entropy_coef * ac.entropy()
                if bc_weight > 0 and "label" in b:
                    bc = (mu - b["label"]).pow(2).mean()
                    loss = loss + bc_weight * bc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            optimizers.clip_grad_norm_(ac.actor_parameters(), cfg.max_grad_norm)
            optimizers.clip_grad_norm_(list(ac.critic.parameters()), cfg.max_grad_norm)
            opt.step()
            sums["surrogate"] += surrogate.item()
            sums["value_loss"] += value_loss.item()
            sums["bc_loss"] += bc.item()
            sums["kl"] += kl
            count += 1
    out = {k: s / max(count, 1) for k, s in sums.items()}
    out["lr"] = float(opt.param_groups[0]["lr"])
    out["std"] = float(ac.log_std.detach().exp().mean())
    out["samples"] = float(n)
    return out


def make_optimizer(ac: ActorCritic, cfg: PPOConfig) -> optimizers.Optimizer:
    """Adam with two groups: the actor's (adapted lr) and the critic's; on the multi-tensor
    kernels (learn.optimizers)."""
    device = next(ac.parameters()).device
    return optimizers.make([{"params": ac.actor_parameters(), "lr": cfg.lr},
                            {"params": list(ac.critic.parameters()), "lr": cfg.critic_lr}],
                           device, lr=cfg.lr)
