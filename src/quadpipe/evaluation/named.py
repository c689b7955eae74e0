"""Closed-loop evaluation on a named path: the policy of every training seed vs the expert vs
standing still, all from the standing pose on the same target (evaluation.rollouts).

The target starts at the robot's start position (standing height) heading +x of the robot and moves
along the path at `speed`; a waypoint path ends where its polyline ends, and so does the episode.
The policy acts at every physics step (its profile's, which must be the run's): it observes the
state and the target's positions at the next waypoint offsets (the offsets it was trained with);
its torques, clamped to the motor limit, drive the torque model. The expert is the path-following
trot (control.follower) with the same servo law as the dataset's, on the same torque model.
Metrics: evaluation.metrics.

The JSON keeps the first seed's policy at the top (`policy`, `policy_to_expert_error_ratio`,
`target_met`), as before several seeds, and adds every seed under `seeds` and their spread under
`across_seeds`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import start_qpos
from quadpipe.control.follower import FollowerConfig, Target
from quadpipe.control.paths import PathSpec
from quadpipe.data import dataset
from quadpipe.errors import ConfigError
from quadpipe.evaluation.rollouts import EXPERT, STANDING, Runs, run_groups
from quadpipe.learn.policy import load_for
from quadpipe.sim.model import build_model

TARGET_RATIO = 2.0  # policy/expert mean tracking error at most this, and no fall: target met


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The `eval` section of config.yaml (its `paths` list is parsed by control.paths)."""

    duration: float = 30.0  # s of closed-loop control per path
    speed: float = 0.25  # m/s of the target along the path
    radius: float = 1.0  # m, default circle / figure8 radius and zigzag leg length
    lookahead: float = 0.4  # m, the expert follower's look-ahead distance
    video: bool = True
    video_seconds: float = 10.0  # s of the first seed's policy shown in the video
    fps: int = 30

    def __post_init__(self) -> None:
        if self.duration <= 0 or self.speed <= 0 or self.radius <= 0:
            raise ConfigError("eval.duration, eval.speed and eval.radius must be > 0")

    @property
    def follower(self) -> FollowerConfig:
        return FollowerConfig(lookahead=self.lookahead)


def place_target(spec: PathSpec, cfg: EvalConfig, expert: ExpertConfig, q0: np.ndarray
                 ) -> tuple[Target, int]:
    """(the target on `spec` placed at pose q0, the episode's steps)."""
    num = int(round(cfg.duration / expert.dt))
    if np.isfinite(spec.length):
        num = min(num, int(spec.length / cfg.speed / expert.dt))
    s, xy = spec.sample(cfg.speed * num * expert.dt + 2.0 * cfg.lookahead + 1.0)
    return Target.from_start(s, xy, q0, cfg.speed, expert.dt), num


def evaluate_path(checkpoints: list[str | Path], spec: PathSpec, cfg: EvalConfig = EvalConfig(),
                  expert: ExpertConfig = ExpertConfig(), seeds: list[int] | None = None,
                  out: str | Path | None = None, plot: str | Path | None = None,
                  threads: int = 1, baseline: list[str | Path] | None = None
                  ) -> dict[str, Any]:
    """Every checkpoint's policy vs expert vs standing on `spec`; write the JSON and the plot.

    baseline: one more checkpoint per seed (the imitated policies a fine-tuning started from),
    on the same path in the same run; their figures go under "baseline", and the plot shows the
    first seed's, dotted, beside its fine-tuned policy.
    """
    seeds = list(range(len(checkpoints))) if seeds is None else list(seeds)
    if len(seeds) != len(checkpoints) or (baseline and len(baseline) != len(seeds)):
        raise ConfigError(f"{len(checkpoints)} checkpoints and {len(baseline or [])} baselines "
                          f"but {len(seeds)} seeds")
    loaded = [load_for(c, expert) for c in checkpoints]
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    target, num = place_target(spec, cfg, expert, q0)
    names = [f"seed_{s}" for s in seeds]
    groups = {n: (p, o) for n, (p, o, _) in zip(names, loaded, strict=True)}
    base_names = [f"baseline_seed_{s}" for s in seeds] if baseline else []
    for n, c in zip(base_names, baseline or [], strict=True):
        groups[n] = load_for(c, expert)[:2]
    runs = run_groups([target], num, q0, [model], groups, expert, cfg.follower, standing=True,
                      threads=threads)
    ee = runs.metrics[EXPERT][0]

    def seed_entries(run_names: list[str], files: list) -> list[dict[str, Any]]:
        out = []
        for seed, name, ckpt in zip(seeds, run_names, files, strict=True):
            m = runs.metrics[name][0]
            ratio = m["mean_tracking_error_m"] / max(ee["mean_tracking_error_m"], 1e-9)
            out.append({"seed": seed, "checkpoint": str(ckpt), **m,
                        "policy_to_expert_error_ratio": ratio,
                        "target_met": (not m["fell"]) and ratio <= TARGET_RATIO})
        return out

    per_seed = seed_entries(names, checkpoints)
    first = per_seed[0]
    ratios = np.array([s["policy_to_expert_error_ratio"] for s in per_seed])
    result: dict[str, Any] = {
        "path": spec.name, "spec": spec.as_dict(), "checkpoint": str(checkpoints[0]),
        "eval_config": dataclasses.asdict(cfg), "obs": dataclasses.asdict(loaded[0][1]),
        "checkpoint_epoch": loaded[0][2].get("epoch"),
        "policy": {k: v for k, v in first.items() if k not in (
            "seed", "checkpoint", "policy_to_expert_error_ratio", "target_met")},
        "expert": ee, "standing": runs.metrics[STANDING][0],
        "policy_to_expert_error_ratio": first["policy_to_expert_error_ratio"],
        "target_met": first["target_met"],
        "seeds": per_seed,
        "across_seeds": {
            "n": len(per_seed), "falls": int(sum(s["fell"] for s in per_seed)),
            "ratio_mean": float(ratios.mean()), "ratio_std": float(ratios.std(ddof=1))
            if len(ratios) > 1 else 0.0, "ratio_min": float(ratios.min()),
            "ratio_max": float(ratios.max()),
            "all_target_met": all(s["target_met"] for s in per_seed)},
        "steps_per_s": runs.steps_per_s,
    }
    if baseline:
        base = seed_entries(base_names, baseline)
        result["baseline"] = {"seeds": base, "falls": int(sum(b["fell"] for b in base))}
    if out is not None:  # atomically: a killed job leaves no half file for Snakemake to keep
        dataset.write_json(result, out)
    if plot is not None:
        plot_runs(runs, target, num, spec.name, Path(plot))
    return result


def render_policy(checkpoint: str | Path, spec: PathSpec, out: str | Path,
                  cfg: EvalConfig = EvalConfig(), expert: ExpertConfig = ExpertConfig()) -> Path:
    """An mp4 of the policy's first `video_seconds` on `spec`, the target drawn on the floor."""
    from quadpipe.sim.render import render_video

    policy, obs, _ = load_for(checkpoint, expert)
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    target, num = place_target(spec, cfg, expert, q0)
    num = min(num, int(round(cfg.video_seconds / expert.dt)))
    runs = run_groups([target], num, q0, [model], {"policy": (policy, obs)}, expert,
                      cfg.follower, with_expert=False)
    path_xy = target.at(np.arange(int(round(cfg.duration / expert.dt)) + 1))
    return render_video(build_model(expert), runs.qpos["policy"][0], Path(out), expert.dt,
                        cfg.fps, target_xy=path_xy)


def plot_runs(runs: Runs, target: Target, num: int, name: str, out: Path) -> Path:
    """Top view: the target path and the base track of each run (x marks a fall)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tgt = target.at(np.arange(num + 1))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(tgt[:, 0], tgt[:, 1], "k--", lw=1.5, label="target")
    colours = {EXPERT: "tab:orange", STANDING: "tab:gray"}
    # the policies evaluated; a baseline (the imitated policies beside fine-tuned ones) is thin
    policies = [n for n in runs.qpos if n not in colours and not n.startswith("baseline")]
    base = [n for n in runs.qpos if n.startswith("baseline")]

    def track(run: str) -> tuple[np.ndarray, dict]:
        """A run's recorded base track up to its fall, and its metrics."""
        q, m = runs.qpos[run][0], runs.metrics[run][0]
        if m["fell"]:
            q = q[: int(round(m["fall_time_s"] / target.dt)) // runs.record_every + 1]
        return q, m

    for k, name_ in enumerate([*policies, EXPERT, STANDING]):
        q, m = track(name_)
        first = k == 0
        colour = colours.get(name_, "tab:blue")
        label = (f"policy ({name_.replace('_', ' ')})" if first else
                 "other seeds" if k == 1 and name_ in policies else
                 None if name_ in policies else name_)
        ax.plot(q[:, 0], q[:, 1], color=colour, lw=1.2 if first or name_ not in policies else 0.6,
                alpha=1.0 if first or name_ not in policies else 0.5, label=label)
        if m["fell"]:
            ax.plot(q[-1, 0], q[-1, 1], "x", color=colour, ms=10)
    if base:  # the first seed's imitated policy, for what fine-tuning changed
        q, _ = track(base[0])
        ax.plot(q[:, 0], q[:, 1], color="tab:green", lw=0.9, ls=":",
                label=f"imitated ({base[0].replace('baseline_', '').replace('_', ' ')})")
    ax.set(xlabel="x (m)", ylabel="y (m)", title=f"{name}: target vs actual (top view)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
