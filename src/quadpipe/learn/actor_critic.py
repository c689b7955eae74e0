"""The policy as a stochastic actor, with a critic beside it, for fine-tuning (learn.ppo).

The actor is the imitated Policy itself, weights, normalisation and all, so what fine-tuning
hands back is a Policy with the same inputs and outputs (export, evaluation, the suite take it
as any other). Its action distribution lives in the policy's normalised output space (torque
minus the training mean, over the training std): a Gaussian around `forward_normalised` with one
learned log-std per joint, so one std means the same share of each joint's usual torque range.
The critic is an MLP on the policy's normalised observation (ELU, as rsl-rl's), trained from
scratch (learn.finetune warms it up before the actor moves).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from quadpipe.learn.policy import Policy


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
