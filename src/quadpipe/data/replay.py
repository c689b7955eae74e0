"""Replay a stored trajectory: re-simulate it from its commands and check it matches (the original's
visualize step), and render a short video of it.

The expert settings come from the file's own `config_json`, the start from `initial_qpos` /
`initial_qvel`, a randomised trajectory's physics and pushes from its `physics_json`
(quadpipe.sim.randomize), so a replay needs nothing but the dataset. States are stored as
float32 by default; the replay agrees with them to that precision, hence the tolerance.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from quadpipe.data import dataset
from quadpipe.errors import QuadpipeError

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest |replayed - stored| accepted in qpos (m, rad) and qvel (m/s, rad/s)


class ReplayError(QuadpipeError):
    """A re-simulated trajectory does not reproduce the stored states."""


@dataclasses.dataclass
class Replay:
    """A re-simulated trajectory: the check's report, qpos (T, 19), and the model that made it."""

    report: dict[str, Any]
    qpos: np.ndarray
    model: Any  # mujoco.MjModel
    dt: float


def require_trajectory(f: h5py.File, path: str | Path, trajectory_id: int, fix: str) -> str:
    """The group name of trajectory `trajectory_id` in open file `f`, or QuadpipeError naming the
    file, the ids it holds and `fix` (what the caller's user should change)."""
    name = dataset.group_name(trajectory_id)
    if name not in f:
        ids = dataset.trajectory_ids(f)
        raise QuadpipeError(f"{path} has no trajectory {trajectory_id} (it holds {len(ids)}: "
                            f"ids {id_ranges(ids)}); {fix}")
    return name


def id_ranges(ids: Sequence[int]) -> str:
    """Sorted ids as runs, e.g. "1..6" or "1..3, 5, 8..9" ("none" when empty)."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}..{b}" if b > a else str(a) for a, b in runs) or "none"


def stored_model(config_json: str, physics_json: str | None) -> tuple[Any, Any, list]:
    """The expert settings, MuJoCo model and pushes a stored trajectory was simulated with.

    `config_json` is the file's root attribute, `physics_json` the trajectory's randomised draw
    (None when not randomised), whose physics is applied to the model. Returns (ExpertConfig,
    mujoco.MjModel, pushes).
    """
    from quadpipe.config import expert_from_json
    from quadpipe.sim import randomize
    from quadpipe.sim.model import build_model
    from quadpipe.sim.physics import apply

    expert = expert_from_json(config_json)
    model = build_model(expert)
    pushes: list = []
    if physics_json is not None:
        physics, pushes = randomize.from_json(physics_json)
        model = apply(model, physics)
    return expert, model, pushes


def replay(path: str | Path, trajectory_id: int, tolerance: float = TOLERANCE) -> Replay:
    """Re-simulate trajectory `trajectory_id` of `path` from its commands.

    The report holds the largest deviation of qpos and qvel from the stored ones (absolute, or
    relative above 1) and `reproduced`: whether both are within `tolerance`.
    """
    import mujoco

    from quadpipe.sim import randomize
    from quadpipe.sim.expert import references
    from quadpipe.sim.model import full_state
    from quadpipe.sim.rollout import simulate_one

    with dataset.open_file(path) as f:
        name = require_trajectory(f, path, trajectory_id, "fix replay.trajectories")
        traj = dataset.read_trajectory(f, name)
        config_json = str(f.attrs["config_json"])
    drawn = traj.attrs.get(randomize.PHYSICS_ATTR)
    expert, model, pushes = stored_model(config_json, None if drawn is None else str(drawn))
    initial = full_state(model, traj.initial_qpos, traj.initial_qvel)
    rollout = simulate_one(model, mujoco.MjData(model), initial,
                           references(traj.command_sequence, expert), pushes)
    qpos, qvel = rollout.qpos[:-1], rollout.qvel[:-1]
    err_q = _max_error(qpos, traj.qpos)
    err_v = _max_error(qvel, traj.qvel)
    report = {
        "file": str(path),
        "trajectory_id": trajectory_id,
        "num_timesteps": len(qpos),
        "duration_s": len(qpos) * expert.dt,
        "max_qpos_error": err_q,
        "max_qvel_error": err_v,
        "tolerance": tolerance,
        "reproduced": bool(err_q <= tolerance and err_v <= tolerance),
        "final_position_m": [float(v) for v in qpos[-1, 0:3]],
        "randomized": drawn is not None,
        "pushes": len(pushes),
    }
    return Replay(report, qpos, model, expert.dt)


def _max_error(replayed: np.ndarray, stored: np.ndarray) -> float:
    """Largest deviation, absolute for |x| <= 1 and relative above (float32 storage rounding)."""
    scale = np.maximum(1.0, np.abs(stored.astype(np.float64)))
    return float(np.max(np.abs(replayed - stored) / scale))


def replay_to_files(path: str | Path, trajectory_id: int, out_json: str | Path,
                    video: str | Path | None = None, video_seconds: float = 8.0, fps: int = 30,
                    tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Replay, write the report JSON and (optionally) an mp4 of the first `video_seconds`.

    Raises ReplayError, after writing the JSON, when the replay does not reproduce the data.
    """
    result = replay(path, trajectory_id, tolerance)
    report = result.report
    if video is not None:
        from quadpipe.sim.render import render_video

        steps = min(len(result.qpos), max(1, int(round(video_seconds / result.dt))))
        render_video(result.model, result.qpos[:steps], Path(video), result.dt, fps=fps)
        report["video"] = str(video)
        report["video_seconds"] = steps * result.dt
    dataset.write_json(report, out_json)
    log.info("replayed trajectory %d of %s: max qpos error %.2e, qvel %.2e", trajectory_id, path,
             report["max_qpos_error"], report["max_qvel_error"])
    if not report["reproduced"]:
        raise ReplayError(
            f"trajectory {trajectory_id} of {path} does not replay: max qpos error "
            f"{report['max_qpos_error']:.3g}, qvel {report['max_qvel_error']:.3g} > {tolerance}; "
            "the simulator or expert changed since the data was made, regenerate the shards")
    return report


def video_page(videos: Sequence[str | Path], out: str | Path, title: str,
               labels: Sequence[str] | None = None) -> Path:
    """A self-contained HTML page with one <video> per mp4, embedded as data URIs.

    Self-contained because Snakemake's single-file report embeds each report item as one data URI
    and cannot carry a folder of side files.
    """
    labels = list(labels) if labels is not None else [Path(v).stem for v in videos]
    parts = []
    for label, video in zip(labels, videos, strict=True):
        data = base64.b64encode(Path(video).read_bytes()).decode("ascii")
        parts.append(f"<figure><figcaption>{html.escape(label)}</figcaption>"
                     f"<video controls loop muted width='320' src='data:video/mp4;base64,{data}'>"
                     "</video></figure>")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif}}"
        "figure{display:inline-block;margin:8px}</style></head><body>"
        f"<h2>{html.escape(title)}</h2>\n" + "\n".join(parts) + "\n</body></html>\n")
    return out
