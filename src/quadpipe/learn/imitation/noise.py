"""Joint noise with expert-relabelled torques: the feedback plain behaviour cloning never sees."""

from __future__ import annotations

from typing import Any

import torch

from quadpipe.learn.imitation.train_config import TrainConfig


class JointNoise:
    """Perturb the joint angles/velocities of a batch and relabel the torques as the expert would.

    The base state (height, orientation, velocities: columns 2:12) is perturbed too, labels
    unchanged: the expert's torque does not depend on it, and the policy should not either.
    The expert's torque is u = Kp (ref(t) - q) - Kd qd with a reference that does not depend on the
    state (an open-loop CPG), so at a perturbed state (q + dq, qd + dqd) it is exactly
    u - Kp dq - Kd dqd (then clamped). Training on these pairs teaches the policy the expert's
    feedback around the demonstrated states, which plain behaviour cloning never sees: without it
    the closed loop drifts off the demonstrations and falls within ~1 s
    (docs/training-findings.md, Findings 1-2).
    """

    def __init__(self, cfg: TrainConfig, gains: dict[str, Any], device: torch.device,
                 x_std: Any = None) -> None:
        self.base_std = torch.zeros(10, device=device) if x_std is None else \
            torch.as_tensor(x_std[2:12], dtype=torch.float32, device=device) * cfg.noise_base
        self.q_cols = torch.arange(12, 36, 2, device=device)
        self.qd_cols = self.q_cols + 1
        self.kp = torch.tensor(gains["kp"], dtype=torch.float32, device=device)
        self.kd = torch.tensor(gains["kd"], dtype=torch.float32, device=device)
        self.limit = float(gains["torque_limit"])
        self.sq, self.sqd = cfg.noise_q, cfg.noise_qd
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (len(x), 12)
        dq = torch.randn(shape, generator=self.gen, device=x.device) * self.sq
        dqd = torch.randn(shape, generator=self.gen, device=x.device) * self.sqd
        x = x.clone()
        x[:, self.q_cols] += dq
        x[:, self.qd_cols] += dqd
        x[:, 2:12] += torch.randn((len(x), 10), generator=self.gen, device=x.device) \
            * self.base_std
        y = torch.clamp(y - self.kp * dq - self.kd * dqd, -self.limit, self.limit)
        return x, y
