"""Run open-loop rollouts of the native-PD model in C, many trajectories over a thread pool.

Each trajectory is one `mujoco.rollout.rollout` call of exactly its own length on the calling
thread's private MjData; a Python thread pool keeps every core busy while the calls run in C with
the GIL released. One call per trajectory (rather than one padded batch) wastes no steps on
trajectories of different lengths, and makes every result independent of how trajectories are
grouped into threads, so a resumed shard reproduces an uninterrupted one bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

_STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS


@dataclasses.dataclass
class Rollout:
    """One simulated trajectory of T steps.

    qpos (T+1, 19), qvel (T+1, 18), time (T+1,): row 0 is the initial state, row t+1 the state
    after step t. torque (T, 12): the joint torque applied during step t (after the clamp).
    """

    qpos: np.ndarray
    qvel: np.ndarray
    time: np.ndarray
    torque: np.ndarray


def resolve_threads(threads: int) -> int:
    """0 means every core this process may use."""
    if threads > 0:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _state_slices(model: mujoco.MjModel) -> tuple[slice, slice, slice]:
    ntime = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_TIME)
    nq = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_QPOS)
    nv = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_QVEL)
    return slice(0, ntime), slice(ntime, ntime + nq), slice(ntime + nq, ntime + nq + nv)


def simulate_one(model: mujoco.MjModel, data: mujoco.MjData, initial: np.ndarray,
                 ctrl: np.ndarray, pushes: Sequence[tuple[int, np.ndarray]] = ()) -> Rollout:
    """Roll out one trajectory: `initial` full physics state, `ctrl` (T, nu) controls.

    pushes: [(step, dv), ...] in step order, dv (3,) m/s added to the base's linear velocity just
    before that step (so row `step` of the result is the state after the kick). The rollout is
    split at the kicks and each piece continues from the previous one's state and solver warm
    start, which is exactly one uninterrupted rollout when there are no kicks.
    """
    ctrl = np.ascontiguousarray(ctrl, dtype=np.float64)
    state = np.ascontiguousarray(initial, dtype=np.float64)
    warm = np.zeros(model.nv)
    t, q, v = _state_slices(model)
    bounds = [s for s, _ in pushes if 0 < s < len(ctrl)]
    kicks = {s: dv for s, dv in pushes}
    if 0 in kicks:
        state = state.copy()
        state[v][:3] += kicks[0]
    rows, torques = [state[None]], []
    for a, b in zip([0, *bounds], [*bounds, len(ctrl)], strict=True):
        states, sensors = mj_rollout.rollout(model, data, state[None], ctrl[None, a:b],
                                             initial_warmstart=warm[None])
        rows.append(states[0])
        torques.append(sensors[0])
        if b < len(ctrl):
            state = states[0, -1].copy()
            state[v][:3] += kicks[b]
            rows[-1][-1] = state
            warm = data.qacc_warmstart.copy()  # the rollout leaves `data` at its last step
    states = np.concatenate(rows, axis=0)
    return Rollout(qpos=states[:, q], qvel=states[:, v], time=states[:, t][:, 0],
                   torque=np.concatenate(torques, axis=0))


class ThreadData:
    """One MjData per thread of a pool, made on first use: MjData must never be shared."""

    def __init__(self, model: mujoco.MjModel):
        self.model = model
        self._local = threading.local()

    def get(self) -> mujoco.MjData:
        if not hasattr(self._local, "data"):
            self._local.data = mujoco.MjData(self.model)
        return self._local.data


def simulate(model: mujoco.MjModel, initial: np.ndarray, ctrls: Sequence[np.ndarray],
             threads: int = 0) -> Iterator[Rollout]:
    """Roll out each (T_i, nu) control sequence from `initial`; yields results in input order."""
    nthreads = min(resolve_threads(threads), max(1, len(ctrls)))
    datas = ThreadData(model)

    def run(ctrl: np.ndarray) -> Rollout:
        return simulate_one(model, datas.get(), initial, ctrl)

    if nthreads == 1:
        yield from map(run, ctrls)
        return
    with ThreadPoolExecutor(max_workers=nthreads) as pool:
        yield from pool.map(run, ctrls)
