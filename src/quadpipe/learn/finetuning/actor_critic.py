"""The policy as a stochastic actor, with a critic beside it, for fine-tuning
(learn.finetuning.ppo).

The actor is the imitated Policy itself, weights, normalisation and all, so what fine-tuning
hands back is a Policy with the same inputs and outputs (export, evaluation, the suite take it
as any other). Its action distribution lives in the policy's normalised output space (torque
minus the training mean, over the training std): a Gaussian around `forward_normalised` with one
learned log-std per joint, so one std means the same share of each joint's usual torque range.
The critic is an MLP on the policy's normalised observation (ELU, as rsl-rl's), trained from
scratch (learn.finetuning.runner warms it up before the actor moves).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from quadpipe.errors import ConfigError
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.state import STATE_DIM


class ActorCritic(nn.Module):
    def __init__(self, policy: Policy, critic_hidden: tuple[int, ...], init_std: float) -> None:
        super().__init__()
        self.actor = policy
        self.log_std = nn.Parameter(torch.full((policy.out_dim,), math.log(init_std)))
        layers: list[nn.Module] = []
        width = policy.in_dim
        for h in critic_hidden:
            layers += [nn.Linear(width, h), nn.ELU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.critic = nn.Sequential(*layers)

    def fit_input_scale(self, obs: torch.Tensor, fresh: torch.Tensor, widen: bool = True,
                        gain: float = 1.0) -> torch.Tensor:
        """Set the scale of new inputs (`fresh`, (in_dim,) bool) from observations `obs` (N,
        in_dim) and, with `widen`, widen the others' to their spread there (`widen_input_scale`).

        A fresh input has zero weights, so its mean and std change nothing yet; it is centred
        on the episodes it will be learnt on and scaled to `gain` times their spread: Adam moves
        a weight by about the learning rate whatever its input's size, so a gain of 10 lets the
        new weights learn 10 times faster than the pretrained ones around them.
        """
        mean, spread = obs.mean(dim=0), obs.std(dim=0)
        p = self.actor
        with torch.no_grad():
            p.in_mean.copy_(torch.where(fresh, mean, p.in_mean))
            p.in_std.copy_(torch.where(fresh, torch.clamp(spread, min=1e-3) / gain, p.in_std))
        return self.widen_input_scale(torch.where(fresh | (not widen), torch.zeros_like(spread),
                                                  spread))

    def widen_input_scale(self, spread: torch.Tensor) -> torch.Tensor:
        """Normalise each input by max(its imitation std, `spread`), the policy unchanged.

        Imitation's data keeps the robot near the path, so some inputs have a std of millimetres
        (the nearest waypoint's lateral offset: ~1 cm): off the path, as after a push or in
        exploration, they reach 40-50 of those stds, and one optimiser step on the first layer
        then moves the action there 40-50 times more than elsewhere. The KL that adapts the
        learning rate is dominated by those few states and pins it at its floor. Widening the
        scale to the fine-tuning episodes' own spread and scaling the first layer's columns by
        the same factor leaves the function as it is (W z_old = (W diag(new/old)) z_new) and
        takes the outliers' leverage away. Returns the factors (in_dim,).
        """
        p = self.actor
        new = torch.maximum(p.in_std, spread.to(p.in_std.dtype))
        factor = new / p.in_std
        with torch.no_grad():
            p.net[0].weight.mul_(factor)
            p.in_std.copy_(new)
        return factor

    def actor_parameters(self) -> list[nn.Parameter]:
        return [*self.actor.parameters(), self.log_std]

    def mean(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, 12) the action mean, normalised torques."""
        return self.actor.forward_normalised(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """(B,) the critic's value of raw observations."""
        return self.critic(self.actor.normalise_input(obs)).squeeze(-1)

    def log_prob(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B,) log density of normalised actions (B, 12) under N(mean, exp(log_std)^2)."""
        z = (action - mean) / self.log_std.exp()
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * math.log(2.0 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        """The Gaussian's entropy (it does not depend on the state)."""
        return (self.log_std + 0.5 * math.log(2.0 * math.pi * math.e)).sum()

    def kl_from(self, old_mean: torch.Tensor, old_log_std: torch.Tensor, mean: torch.Tensor
                ) -> torch.Tensor:
        """(B,) KL(old || new) between diagonal Gaussians, summed over the joints."""
        ls = self.log_std
        return (ls - old_log_std + (old_log_std.exp().pow(2) + (old_mean - mean).pow(2))
                / (2.0 * ls.exp().pow(2)) - 0.5).sum(-1)


def extend_horizon(policy: Policy, obs: ObsConfig, horizon: int
                   ) -> tuple[Policy, ObsConfig, torch.Tensor]:
    """(the same policy observing `horizon` steps of future path, its ObsConfig, the mask of its
    new input columns).

    Imitation sees as far ahead as the original (1 s); a path that turns back within a few
    seconds (a zigzag) is followed best by cutting across, which needs to see further. The new
    waypoints (same spacing, beyond the old last one) enter the first layer with zero weights,
    so the policy starts as the imitated one and fine-tuning learns what they are worth.
    Observation layout (learn.samples): state, waypoints in order, then the gait clock.
    """
    if horizon == obs.horizon:
        return policy, obs, torch.zeros(policy.in_dim, dtype=torch.bool)
    if horizon < obs.horizon or horizon % obs.waypoint_every:
        ms = 1e3 * obs.dt
        raise ConfigError(f"finetune.horizon ({horizon * ms:g} ms) must be 0 or a multiple of "
                          f"the policy's waypoint spacing ({obs.waypoint_every * ms:g} ms) >= its "
                          f"horizon ({obs.horizon * ms:g} ms)")
    new_obs = dataclasses.replace(obs, horizon=horizon)
    old_w, new_w = 3 * obs.num_waypoints, 3 * new_obs.num_waypoints
    old_cols = torch.cat([torch.arange(STATE_DIM + old_w),
                          torch.arange(STATE_DIM + new_w, new_obs.dim)])
    out = Policy(new_obs.dim, policy.out_dim, policy.hidden)
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    first = out.net[0].weight.detach().clone().zero_()
    first[:, old_cols] = state["net.0.weight"]
    state["net.0.weight"] = first
    for name, fill in (("in_mean", 0.0), ("in_std", 1.0)):
        full = torch.full((new_obs.dim,), fill)
        full[old_cols] = state[name]
        state[name] = full
    out.load_state_dict(state)
    fresh = torch.ones(new_obs.dim, dtype=torch.bool)
    fresh[old_cols] = False
    return out, new_obs, fresh
