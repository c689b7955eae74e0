"""A trained policy as a closed-loop controller of a batch of episodes (control.closed_loop).

Each step it observes every live episode exactly as training did (learn.samples.observe: state in
the heading frame, the target's future positions at the waypoint offsets, the gait clock) and
makes one MLP call for all of them; the torques are clamped to the motor limit.
"""

from __future__ import annotations

import numpy as np
import torch

from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig, observe
from quadpipe.sim.expert import MODE_FORWARD, gait_phase


class PolicyController:
    """future (P, T, W, 3): the targets of P paths; path_of (E,): the path of each episode."""

    def __init__(self, policy: Policy, obs: ObsConfig, future: np.ndarray, path_of: np.ndarray,
                 torque_limit: float) -> None:
        policy = policy.cpu().eval()
        # Traced once: the same kernels (bit-identical output, tested) with less per-call Python
        # overhead, which matters at one call per simulated millisecond.
        with torch.inference_mode():
            self.policy = torch.jit.trace(policy, torch.zeros(2, obs.dim), check_trace=False)
        self.obs, self.future, self.path_of = obs, future, np.asarray(path_of)
        self.limit = torque_limit
        num = future.shape[1]
        self.phase = gait_phase(np.arange(1, num + 1), np.full(num, MODE_FORWARD))
        self.last_x: np.ndarray | None = None  # float32 observations of the last call

    def torques(self, k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray
                ) -> np.ndarray:
        """(len(idx), 12) float64 unclamped policy output; keeps the observations in last_x."""
        x = observe(qpos, qvel, self.future[self.path_of[idx], k], self.obs,
                    np.full(len(idx), self.phase[k]) if self.obs.gait_clock else None
                    ).astype(np.float32)
        self.last_x = x
        with torch.inference_mode():
            return self.policy(torch.from_numpy(x)).numpy().astype(np.float64)

    def __call__(self, k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray
                 ) -> np.ndarray:
        return np.clip(self.torques(k, idx, qpos, qvel), -self.limit, self.limit)
