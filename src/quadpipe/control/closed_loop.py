"""The batched closed loop shared by DAgger and evaluation: many episodes advance together.

DAgger (learn.imitation.dagger) and evaluation (evaluation.suite, evaluation.named) run controllers
from the standing pose, stop an episode when the robot falls, and step many episodes at once: per
time step one controller call for every live episode (one MLP call for all of a policy's episodes),
then `mj_step` per episode, each on its own MjData (the solver's warm start carries over between
steps, as in a single-episode loop), split over threads that run in parallel because `mj_step`
releases the GIL. The physics of an episode does not depend on the number of threads.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
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
    """One MjData per episode (each with its own model, for per-episode physics), all starting at
    the same pose; `step` advances a subset of them over a thread pool."""

    def __init__(self, models: mujoco.MjModel | Sequence[mujoco.MjModel], qpos0: np.ndarray,
                 episodes: int, threads: int = 1):
        self.models = [models] * episodes if isinstance(models, mujoco.MjModel) else list(models)
        if len(self.models) != episodes:
            raise ValueError(f"{len(self.models)} models for {episodes} episodes")
        self.datas = [mujoco.MjData(m) for m in self.models]
        for m, d in zip(self.models, self.datas, strict=True):
            d.qpos[:] = qpos0
            mujoco.mj_forward(m, d)
        # each MjData's ctrl, qpos and qvel wrapped as arrays once (they alias its buffers), not
        # at every step: the loop's own cost per episode-step 1.0 -> 0.6 us (mj_step: ~50 us)
        self._ctrl = [d.ctrl for d in self.datas]
        self._qpos = [d.qpos for d in self.datas]
        self._qvel = [d.qvel for d in self.datas]
        self.qpos = np.tile(qpos0, (episodes, 1))
        self.qvel = np.zeros((episodes, self.models[0].nv))
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(self.threads - 1) if self.threads > 1 else None

    def _run(self, idx: np.ndarray, ctrl: np.ndarray) -> None:
        models, datas, qpos, qvel = self.models, self.datas, self._qpos, self._qvel
        for i, u in zip(idx.tolist(), ctrl, strict=True):
            self._ctrl[i][:] = u
            mujoco.mj_step(models[i], datas[i])
            self.qpos[i] = qpos[i]
            self.qvel[i] = qvel[i]

    def step(self, idx: np.ndarray, ctrl: np.ndarray) -> None:
        """One step of episodes `idx` with torques ctrl (len(idx), 12)."""
        if self.pool is None or len(idx) < 2:
            self._run(idx, ctrl)
            return
        parts = np.array_split(np.arange(len(idx)), min(self.threads, len(idx)))
        # the calling thread steps the first part itself instead of waiting idle
        others = [self.pool.submit(self._run, idx[p], ctrl[p]) for p in parts[1:]]
        self._run(idx[parts[0]], ctrl[parts[0]])
        for f in others:
            f.result()

    def push(self, i: int, dv: np.ndarray) -> None:
        """Add dv (3,) m/s to the base's linear velocity of episode i (a kick)."""
        self._qvel[i][:3] += dv
        self.qvel[i] = self._qvel[i]

    def __enter__(self) -> Episodes:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown()


# controller(step, idx, qpos, qvel) -> (len(idx), 12) torques, N m, for the live episodes idx.
Controller = Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass
class Trace:
    """What happened in a batch of episodes.

    qpos (N, K, 19): the pose before steps 0, r, 2r, ... (r = record_every; K = num_steps // r + 1),
    frozen after a fall; fall_step (N,): first step at which the episode had fallen, -1 if never.
    """

    qpos: np.ndarray
    fall_step: np.ndarray
    record_every: int
    steps_per_s: float  # episode-steps simulated per second of wall time


def run(sim: Episodes, num_steps: int, controller: Controller, record_every: int = 1,
        pushes: Sequence[Sequence[tuple[int, np.ndarray]]] | None = None) -> Trace:
    """Advance every episode of `sim` for `num_steps` steps (or to its fall) under `controller`.

    pushes[i]: [(step, dv), ...] base-velocity kicks of episode i, applied before that step.
    """
    n = len(sim.datas)
    kicks: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, plan in enumerate(pushes or []):
        for step, dv in plan:
            kicks.setdefault(int(step), []).append((i, dv))
    rows = num_steps // record_every + 1
    qpos = np.empty((n, rows, sim.qpos.shape[1]))
    fall_step = np.full(n, -1)
    alive = np.ones(n, dtype=bool)
    done = 0
    start = time.perf_counter()
    for k in range(num_steps + 1):
        idx = np.flatnonzero(alive)
        down = fallen(sim.qpos[idx])
        if down.any():
            fall_step[idx[down]] = k
            alive[idx[down]] = False
            idx = idx[~down]
        if k % record_every == 0:
            qpos[:, k // record_every] = sim.qpos
        if k == num_steps or len(idx) == 0:
            if len(idx) == 0 and k < num_steps:  # everyone fell: freeze the rest of the record
                qpos[:, k // record_every + 1:] = sim.qpos[:, None]
            break
        for i, dv in kicks.get(k, ()):
            if alive[i]:
                sim.push(i, dv)
        ctrl = controller(k, idx, sim.qpos[idx], sim.qvel[idx])
        sim.step(idx, ctrl)
        done += len(idx)
    return Trace(qpos=qpos, fall_step=fall_step, record_every=record_every,
                 steps_per_s=done / max(time.perf_counter() - start, 1e-9))


class Mixed:
    """Several controllers in one batch: episode e is driven by controllers[owner[e]]."""

    def __init__(self, owner: np.ndarray, controllers: Sequence[Controller]) -> None:
        self.owner, self.controllers = np.asarray(owner), list(controllers)

    def __call__(self, k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray
                 ) -> np.ndarray:
        out = np.empty((len(idx), 12))
        who = self.owner[idx]
        for g, control in enumerate(self.controllers):
            m = who == g
            if m.any():
                out[m] = control(k, idx[m], qpos[m], qvel[m])
        return out


class Held:
    """A controller that acts every `hold` steps and holds its torques in between: a policy at
    its own decision rate (its training profile's step) on finer physics (the suite's fidelity
    condition). It sees step k // hold, the step of its own clock."""

    def __init__(self, controller: Controller, hold: int, episodes: int) -> None:
        self.controller, self.hold = controller, hold
        self.last = np.zeros((episodes, 12))

    def __call__(self, k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray
                 ) -> np.ndarray:
        if k % self.hold == 0:
            self.last[idx] = self.controller(k // self.hold, idx, qpos, qvel)
        return self.last[idx]
