"""Metrics of one closed-loop episode on a target path, and success.

All in m or s. The original's tracking error is the distance between the base and the target at
the same time (mean/max/final); cross-track error is the distance from the base to the nearest
point of the path (how far off the path, whatever the timing); progress is the arc length the
robot reached (projected onto the path in a window that moves forward, so a figure8 crossing does
not make it jump), as a fraction of the arc length the target covered. Metrics stop at a fall
(base below 0.15 m or body tilted > 60 deg, control.closed_loop.fallen).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from quadpipe.config import steps_in
from quadpipe.control.follower import Projector, Target, project_walks

SUCCESS_PROGRESS = 0.9  # progress fraction an episode needs (and no fall) to count as a success


def episode_metrics(qpos: np.ndarray, record_every: int, fall_step: int, target: Target,
                    num_steps: int) -> dict[str, Any]:
    """Metrics of one episode of `num_steps` steps: qpos (K, 19) recorded every `record_every`."""
    return episodes_metrics([qpos], record_every, [fall_step], [target], num_steps)[0]


def episodes_metrics(qpos: Sequence[np.ndarray], record_every: int, fall_step: Sequence[int],
                     targets: Sequence[Target], num_steps: int) -> list[dict[str, Any]]:
    """`episode_metrics` of many episodes, their progress projected all at once
    (control.follower.project_walks: the same bits as one episode at a time)."""
    rows = [q[: f // record_every + 1] if f >= 0 else q for q, f in zip(qpos, fall_step,
                                                                         strict=True)]
    subs = [_measured_at(r, record_every, t.dt) for r, t in zip(rows, targets, strict=True)]
    reached = project_walks([Projector(t.path.s, t.path.xy) for t in targets], subs)
    return [_metrics(r, record_every, f, t, num_steps, sub, got[-1])
            for r, f, t, sub, got in zip(rows, fall_step, targets, subs, reached, strict=True)]


def _measured_at(rows: np.ndarray, record_every: int, dt: float) -> np.ndarray:
    """(S, 2) the base's xy every 20 ms and at the end: where progress and cross-track error are
    measured (the projection window moves 0.6 m a call)."""
    every = max(1, steps_in(20.0, dt) // record_every)
    return np.concatenate([rows[::every, :2], rows[-1:, :2]])


def _metrics(rows: np.ndarray, record_every: int, fall_step: int, target: Target, num_steps: int,
             sub: np.ndarray, reached: float) -> dict[str, Any]:
    """One episode's metrics from its rows up to the fall, the points `sub` its progress and
    cross-track error are measured at, and the arc length it reached."""
    dt = target.dt
    fell = fall_step >= 0
    steps = np.arange(len(rows)) * record_every
    xy = rows[:, :2]
    err = np.linalg.norm(xy - target.at(steps), axis=1)
    goal = min(target.speed * num_steps * dt, target.path.length)
    path = target.path
    near = path.xy[path.s <= goal + 1.0]
    cross = cross_track(sub, near)
    return {
        "duration_s": float(steps[-1] * dt),
        "mean_tracking_error_m": float(err.mean()),
        "max_tracking_error_m": float(err.max()),
        "final_tracking_error_m": float(err[-1]),
        "mean_cross_track_error_m": float(cross.mean()),
        "max_cross_track_error_m": float(cross.max()),
        "path_length_m": float(np.sum(np.linalg.norm(np.diff(xy, axis=0), axis=1))),
        "target_path_length_m": float(goal),
        "progress_m": float(reached),
        "progress_fraction": float(reached / goal),
        "height_mean_m": float(rows[:, 2].mean()),
        "height_std_m": float(rows[:, 2].std()),
        "fell": bool(fell),
        "fall_time_s": float(fall_step * dt) if fell else None,
    }


def cross_track(points: np.ndarray, path_xy: np.ndarray, rows: int = 256) -> np.ndarray:
    """(S,) distance of each point (S, 2) to the nearest path sample (M, 2), a block of `rows`
    points at a time. The squared distance is dx * dx + dy * dy in place, the sum a two-element
    reduction gives (the same bits as the per-point loop, tested): the broadcast (rows, M, 2)
    difference and its reduction took several times as long (benchmarks/README.md)."""
    out = np.empty(len(points))
    px, py = path_xy[:, 0], path_xy[:, 1]
    for a in range(0, len(points), rows):
        d = px[None, :] - points[a:a + rows, 0, None]
        dy = py[None, :] - points[a:a + rows, 1, None]
        d *= d
        dy *= dy
        d += dy
        out[a:a + rows] = np.sqrt(np.min(d, axis=1))
    return out


def success(m: dict[str, Any], min_progress: float = SUCCESS_PROGRESS) -> bool:
    """No fall and at least `min_progress` of the target's arc length reached."""
    return (not m["fell"]) and m["progress_fraction"] >= min_progress
