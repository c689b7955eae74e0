"""Closed-loop evaluation on a target path: policy vs path-following expert vs standing still.

All three start from the standing pose; the target starts at the robot's start position (standing
height) heading +x of the robot, and moves along the path at `speed`. The policy runs at 1 kHz: each
step it observes the state and the target's positions at the next waypoint offsets (the same
offsets it was trained with) and its torques, clamped to the motor limit, drive the torque model.

Metrics (`path_metrics`), all in m or s: the original's tracking error (mean/max/final distance
between the base and the target at the same time), path length walked, base height mean/std; plus
fell / fall_time (height < FALL_HEIGHT or body tilted > 60 deg; the run stops there), cross-track
error (distance to the nearest point of the path) and progress (arc length reached / arc length of
the target at the end).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import fallen, start_qpos
from quadpipe.control.follower import FollowerConfig, Projector, follow_path
from quadpipe.control.paths import KINDS, check_kind, path_xy, place
from quadpipe.errors import ConfigError
from quadpipe.learn.policy import Policy, load_checkpoint
from quadpipe.learn.samples import ObsConfig, observe
from quadpipe.sim.expert import MODE_FORWARD, gait_phase
from quadpipe.sim.model import build_model, full_state
from quadpipe.sim.rollout import simulate_one
from quadpipe.sim.state import yaw


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The `eval` section of config.yaml."""

    paths: tuple[str, ...] = KINDS
    duration: float = 30.0  # s of closed-loop control per path
    speed: float = 0.25  # m/s of the target along the path
    radius: float = 1.0  # m, circle / figure8 radius, zigzag leg length
    lookahead: float = 0.4  # m, the expert follower's look-ahead distance
    video: bool = True
    video_seconds: float = 10.0  # s of the policy's run shown in the video
    fps: int = 30

    def __post_init__(self) -> None:
        for kind in self.paths:
            check_kind(kind)
        if self.duration <= 0 or self.speed <= 0 or self.radius <= 0:
            raise ConfigError("eval.duration, eval.speed and eval.radius must be > 0")


@dataclasses.dataclass
class Run:
    """One closed-loop run: qpos (T+1, 19) from the start; steps_per_s of the whole loop."""

    qpos: np.ndarray
    steps_per_s: float


def target_positions(kind: str, steps: np.ndarray, cfg: EvalConfig, dt: float,
                     q0: np.ndarray) -> np.ndarray:
    """(..., 3) world target at step indices `steps` (time steps * dt), z = start height."""
    s = cfg.speed * dt * np.asarray(steps, dtype=float)
    xy = place(path_xy(kind, s.reshape(-1), cfg.radius), q0[:2], float(yaw(q0[3:7])))
    out = np.concatenate([xy, np.full((len(xy), 1), q0[2])], axis=1)
    return out.reshape(*np.shape(s), 3)


def run_policy(policy: Policy, obs: ObsConfig, kind: str, cfg: EvalConfig,
               expert: ExpertConfig = ExpertConfig(), stop_on_fall: bool = True) -> Run:
    """The policy in closed loop at 1 kHz on the torque model; stops at a fall."""
    model = build_model(expert, pd="torque")
    data = mujoco.MjData(model)
    q0 = start_qpos(model)
    data.qpos[:] = q0
    mujoco.mj_forward(model, data)
    num = int(round(cfg.duration / expert.dt))
    future = target_positions(kind, np.arange(num)[:, None] + obs.offsets[None, :], cfg,
                              expert.dt, q0)  # (T, W, 3)
    phase = gait_phase(np.arange(1, num + 1), np.full(num, MODE_FORWARD))
    qpos = np.empty((num + 1, model.nq))
    qpos[0] = q0
    limit = expert.torque_limit
    policy = policy.cpu().eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch of one: threading only adds overhead
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for t in range(num):
                x = observe(data.qpos[None], data.qvel[None], future[t:t + 1], obs,
                            phase[t:t + 1] if obs.gait_clock else None)
                u = policy(torch.from_numpy(x.astype(np.float32)))[0].numpy()
                data.ctrl[:] = np.clip(u, -limit, limit)
                mujoco.mj_step(model, data)
                qpos[t + 1] = data.qpos
                if stop_on_fall and t % 50 == 0 and fallen(data.qpos)[0]:
                    qpos = qpos[:t + 2]
                    break
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - start
    return Run(qpos=qpos, steps_per_s=(len(qpos) - 1) / elapsed)


def run_expert(kind: str, cfg: EvalConfig, expert: ExpertConfig = ExpertConfig()) -> Run:
    model = build_model(expert, pd="native")
    num = int(round(cfg.duration / expert.dt))
    start = time.perf_counter()
    r = follow_path(kind, num, cfg.speed, cfg.radius, start_qpos(model), expert,
                    FollowerConfig(lookahead=cfg.lookahead), model)
    return Run(qpos=r.qpos, steps_per_s=num / (time.perf_counter() - start))


def run_standing(cfg: EvalConfig, expert: ExpertConfig = ExpertConfig()) -> Run:
    """The robot holding its standing pose (native PD) for the whole duration."""
    model = build_model(expert, pd="native")
    q0 = start_qpos(model)
    num = int(round(cfg.duration / expert.dt))
    start = time.perf_counter()
    r = simulate_one(model, mujoco.MjData(model), full_state(model, q0),
                     np.tile(q0[7:], (num, 1)))
    return Run(qpos=r.qpos, steps_per_s=num / (time.perf_counter() - start))


def path_metrics(qpos: np.ndarray, kind: str, cfg: EvalConfig, dt: float) -> dict[str, Any]:
    """Metrics of one run (see module docstring); qpos (T+1, 19) from the standing start."""
    q0 = qpos[0]
    steps = np.arange(len(qpos))
    tgt = target_positions(kind, steps, cfg, dt, q0)
    err = np.linalg.norm(qpos[:, :2] - tgt[:, :2], axis=1)
    fell_mask = fallen(qpos)
    fell = bool(fell_mask.any())
    target_len = cfg.speed * cfg.duration
    proj = Projector.for_kind(kind, cfg.radius, q0[:2], float(yaw(q0[3:7])), target_len + 2.0)
    sub = steps[::20]
    s = np.array([proj.project(qpos[i, :2]) for i in sub])
    cross = np.array([np.sqrt(np.min(np.sum((proj.xy - qpos[i, :2]) ** 2, axis=1)))
                      for i in sub])
    walked = float(np.sum(np.linalg.norm(np.diff(qpos[:, :2], axis=0), axis=1)))
    return {
        "duration_s": float((len(qpos) - 1) * dt),
        "mean_tracking_error_m": float(err.mean()),
        "max_tracking_error_m": float(err.max()),
        "final_tracking_error_m": float(err[-1]),
        "path_length_m": walked,
        "target_path_length_m": float(target_len),
        "height_mean_m": float(qpos[:, 2].mean()),
        "height_std_m": float(qpos[:, 2].std()),
        "fell": fell,
        "fall_time_s": float(np.argmax(fell_mask) * dt) if fell else None,
        "mean_cross_track_error_m": float(cross.mean()),
        "max_cross_track_error_m": float(cross.max()),
        "progress_m": float(s[-1]),
        "progress_fraction": float(s[-1] / target_len),
    }


def evaluate_path(checkpoint: str | Path, kind: str, cfg: EvalConfig = EvalConfig(),
                  expert: ExpertConfig = ExpertConfig(), out: str | Path | None = None,
                  plot: str | Path | None = None, video: str | Path | None = None
                  ) -> dict[str, Any]:
    """Policy vs expert vs standing on one path; write the JSON, the top-view plot and the video."""
    check_kind(kind)
    policy, obs, ckpt = load_checkpoint(checkpoint)
    runs = {"policy": run_policy(policy, obs, kind, cfg, expert),
            "expert": run_expert(kind, cfg, expert),
            "standing": run_standing(cfg, expert)}
    result: dict[str, Any] = {
        "path": kind, "checkpoint": str(checkpoint), "eval_config": dataclasses.asdict(cfg),
        "obs": dataclasses.asdict(obs), "checkpoint_epoch": ckpt.get("epoch"),
        **{name: {**path_metrics(r.qpos, kind, cfg, expert.dt),
                  "steps_per_s": r.steps_per_s} for name, r in runs.items()}}
    pe, ee = result["policy"], result["expert"]
    result["policy_to_expert_error_ratio"] = pe["mean_tracking_error_m"] / max(
        ee["mean_tracking_error_m"], 1e-9)
    result["target_met"] = (not pe["fell"]) and result["policy_to_expert_error_ratio"] <= 2.0
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    if plot is not None:
        plot_runs(runs, kind, cfg, expert.dt, Path(plot))
    if video is not None and cfg.video:
        from quadpipe.sim.render import render_video

        n = int(round(cfg.video_seconds / expert.dt)) + 1
        q = runs["policy"].qpos[:n]
        tgt = target_positions(kind, np.arange(len(runs["policy"].qpos)), cfg, expert.dt,
                               q[0])[:, :2]
        render_video(build_model(expert), q, Path(video), expert.dt, cfg.fps, target_xy=tgt)
    return result


def plot_runs(runs: dict[str, Run], kind: str, cfg: EvalConfig, dt: float, out: Path) -> Path:
    """Top view: the target path and the base track of each run (x marks a fall)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q0 = runs["policy"].qpos[0]
    tgt = target_positions(kind, np.arange(int(round(cfg.duration / dt)) + 1), cfg, dt, q0)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(tgt[:, 0], tgt[:, 1], "k--", lw=1.5, label="target")
    colours = {"policy": "tab:blue", "expert": "tab:orange", "standing": "tab:gray"}
    for name, r in runs.items():
        ax.plot(r.qpos[:, 0], r.qpos[:, 1], color=colours[name], lw=1.2, label=name)
        if fallen(r.qpos[-1])[0]:
            ax.plot(r.qpos[-1, 0], r.qpos[-1, 1], "x", color=colours[name], ms=10)
    ax.set(xlabel="x (m)", ylabel="y (m)", title=f"{kind}: target vs actual (top view)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
