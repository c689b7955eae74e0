"""The stability filter: a trajectory is kept only if every check passes.

The first five checks and their reason strings are the original system's, in its order; the last
two are added for MuJoCo: a tilt check (the original listed "orientation consistency") and a
diverged-simulation check, because `mujoco.rollout` repeats the last good state after a blow-up
instead of returning NaN, so only the clock stopping reveals it.
"""

from __future__ import annotations

import numpy as np

from quadpipe.config import StabilityConfig
from quadpipe.sim.state import up_z

STABLE = "stable"
REASONS = (
    "fell_through_ground",
    "numerical_instability",
    "position_exploded",
    "velocity_exploded",
    "tipped_over",
    "bad_orientation",
    "simulation_diverged",
)


def check_stability(qpos: np.ndarray, qvel: np.ndarray, time: np.ndarray, dt: float,
                    cfg: StabilityConfig = StabilityConfig()) -> str:
    """Reason string of the first failing check, or "stable".

    qpos (T, 19), qvel (T, 18): the state history; time (T,): simulated time of each row, which must
    advance by `dt` per row.
    """
    z = qpos[:, 2]
    with np.errstate(invalid="ignore"):
        if np.any(z < cfg.min_height):
            return "fell_through_ground"
        if not (np.all(np.isfinite(qpos)) and np.all(np.isfinite(qvel))
                and np.all(np.isfinite(time))):
            return "numerical_instability"
        if np.any(np.abs(qpos[:, 0:3]) > cfg.max_position):
            return "position_exploded"
        if np.any(np.abs(qvel[:, 0:3]) > cfg.max_velocity):
            return "velocity_exploded"
        if z.mean() < cfg.min_mean_height or z.std() > cfg.max_height_std:
            return "tipped_over"
        if np.any(up_z(qpos[:, 3:7]) < cfg.min_up_z):
            return "bad_orientation"
        expected = time[0] + dt * np.arange(len(time))
        if np.any(np.abs(time - expected) > 0.5 * dt):
            return "simulation_diverged"
    return STABLE
