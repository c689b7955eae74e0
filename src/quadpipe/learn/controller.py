"""A trained policy as a closed-loop controller of a batch of episodes (control.closed_loop).

Each step it observes every live episode exactly as training did (learn.samples.observe: state in
the heading frame, the target's future positions at the waypoint offsets, the gait clock) and
makes one MLP call for all of them; the torques are clamped to the motor limit.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from quadpipe.config import ExpertConfig
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig, observe
from quadpipe.sim.expert import MODE_FORWARD, gait_phase


def functional(policy: Policy) -> Callable[[torch.Tensor], torch.Tensor]:
    """`policy`'s forward pass as plain tensor functions over its current weights.

    The same operations in the same order as Policy.forward (bit-identical torques, tested),
    without nn.Module's per-call machinery: at one call per simulated millisecond that machinery
    is a quarter of the MLP's time (benchmarks/README.md).
    """
    layers: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for m in policy.net:
        if isinstance(m, nn.Linear):
            layers.append(partial(F.linear, weight=m.weight.detach(), bias=m.bias.detach()))
        elif isinstance(m, nn.ReLU):
            layers.append(F.relu)
        elif isinstance(m, nn.LayerNorm):
            layers.append(partial(F.layer_norm, normalized_shape=m.normalized_shape,
                                  weight=m.weight.detach(), bias=m.bias.detach(), eps=m.eps))
        else:  # pragma: no cover - Policy builds only these
            raise TypeError(f"no functional form for {type(m).__name__}")
    in_mean, in_std = policy.in_mean, policy.in_std
    out_mean, out_std = policy.out_mean, policy.out_std

    def forward(obs: torch.Tensor) -> torch.Tensor:
        z = (obs - in_mean) / in_std
        for layer in layers:
            z = layer(z)
        return z * out_std + out_mean

    return forward


class PolicyController:
    """future (P, T, W, 3): the targets of P paths; path_of (E,): the path of each episode;
    expert: its torque limit.

    rows (E,) and batch: run the MLP on a zero-padded batch of `batch` rows with episode e at row
    rows[e], so that an episode's torques do not depend on which other episodes share the call
    (a matrix product's last bits depend on the batch size); None: one row per live episode.
    """

    def __init__(self, policy: Policy, obs: ObsConfig, future: np.ndarray, path_of: np.ndarray,
                 expert: ExpertConfig, rows: np.ndarray | None = None,
                 batch: int | None = None) -> None:
        self.policy = functional(policy.cpu().eval())
        self.obs, self.future, self.path_of = obs, future, np.asarray(path_of)
        self.limit = expert.torque_limit
        self.rows = None if rows is None else np.asarray(rows)
        self.batch = batch if batch is not None else (0 if rows is None else len(self.rows))
        num = future.shape[1]
        # the gait clock at the policy's own step (its training profile's)
        self.phase = gait_phase(np.arange(1, num + 1), np.full(num, MODE_FORWARD), obs.dt)
        self.last_x: np.ndarray | None = None  # float32 observations of the last call

    def torques(self, k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray
                ) -> np.ndarray:
        """(len(idx), 12) float64 unclamped policy output; keeps the observations in last_x."""
        x = observe(qpos, qvel, self.future[self.path_of[idx], k], self.obs,
                    np.full(len(idx), self.phase[k]) if self.obs.gait_clock else None
                    ).astype(np.float32)
        self.last_x = x
        return self.mlp(idx, x)

    def mlp(self, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(len(idx), 12) float64 policy output for episodes idx observed as x (float32)."""
        with torch.inference_mode():
            if self.rows is None:
                return self.policy(torch.from_numpy(x)).numpy().astype(np.float64)
            full = np.zeros((self.batch, x.shape[1]), np.float32)
            full[self.rows[idx]] = x
            return self.policy(torch.from_numpy(full)).numpy()[self.rows[idx]].astype(np.float64)

    def __call__(self, k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray
                 ) -> np.ndarray:
        return np.clip(self.torques(k, idx, qpos, qvel), -self.limit, self.limit)
