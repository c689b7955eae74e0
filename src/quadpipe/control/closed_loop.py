"""The closed loop's shared pieces: the standing start, the fall test, batched episodes.

DAgger (learn.dagger) and evaluation both run controllers from the standing pose, stop an episode
when the robot falls, and step many episodes together; all three live here, below both.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np

from quadpipe.sim.expert import standing_pose
from quadpipe.sim.model import standing_qpos
from quadpipe.sim.state import up_z

FALL_HEIGHT = 0.15  # m, base below this: fallen
FALL_UP_Z = 0.5  # body up-axis z below this (tilt > 60 deg): fallen


def start_qpos(model: mujoco.MjModel) -> np.ndarray:
    """(19,) the original's standing start: feet on the ground, joints at the standing pose."""
    return standing_qpos(model, *standing_pose())


def fallen(qpos: np.ndarray) -> np.ndarray:
    """(N,) bool: base below FALL_HEIGHT or body tilted more than 60 degrees."""
    qpos = np.atleast_2d(qpos)
    return (qpos[:, 2] < FALL_HEIGHT) | (up_z(qpos[:, 3:7]) < FALL_UP_Z)


class Episodes:
    """One MjData per episode, stepped with `mj_step` like the evaluation's closed loop (the
    solver's warm start carries over between steps); the episodes are split over `threads`
    Python threads, which run in parallel because `mj_step` releases the GIL."""

    def __init__(self, model: mujoco.MjModel, qpos0: np.ndarray, episodes: int, threads: int):
        self.model = model
        self.datas = [mujoco.MjData(model) for _ in range(episodes)]
        for d in self.datas:
            d.qpos[:] = qpos0
            mujoco.mj_forward(model, d)
        self.qpos = np.tile(qpos0, (episodes, 1))
        self.qvel = np.zeros((episodes, model.nv))
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def _run(self, idx: np.ndarray, ctrl: np.ndarray) -> None:
        for i, u in zip(idx, ctrl, strict=True):
            d = self.datas[i]
            d.ctrl[:] = u
            mujoco.mj_step(self.model, d)
            self.qpos[i] = d.qpos
            self.qvel[i] = d.qvel

    def step(self, idx: np.ndarray, ctrl: np.ndarray) -> None:
        """One step of episodes `idx` with torques ctrl (len(idx), 12)."""
        if self.pool is None or len(idx) < 2:
            self._run(idx, ctrl)
            return
        parts = np.array_split(np.arange(len(idx)), self.threads)
        list(self.pool.map(lambda p: self._run(idx[p], ctrl[p]), parts))

    def __enter__(self) -> Episodes:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown()

