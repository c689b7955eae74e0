"""Benchmark: the evaluation jobs (suite condition, path video), before vs after, side by side.

Usage: python benchmarks/evaluation.py [--checkpoints A.pt B.pt C.pt] [--episodes 50]
       [--seconds 4] [--condition nominal] [--path zigzag] [--video-seconds 4] [--repeats 3]
       [--before d70d8f7] [--after REV] [--skip suite|video]

"Before" is control/closed_loop.py, evaluation/rollouts.py, evaluation/metrics.py and
sim/render.py as they were at git revision --before (the last commit before this benchmark's
changes), read with `git show` into private modules; "after" is this checkout (or those files
at --after, to time one commit). Each row runs before and after alternately, --repeats times
(the first of a pair alternates), in this process:

- suite: one suite condition's closed loop and its metrics (evaluation.rollouts.run_groups:
  every checkpoint's policy and the expert on the suite's episodes of --condition, --episodes x
  --seconds);
- video loop: the closed loop of `quadpipe render-path` (one episode, the first policy, on the
  named --path for --video-seconds);
- video frames: the frames of that episode with the target path drawn (sim.render.render_frames);
- encode: the mp4 of those frames (sim.render.write_video; the same code before and after).

CPU seconds are this process's (all its threads, llvmpipe's included) and its finished children's
(the encoder): on a shared machine they measure the work where wall time measures the neighbours.
Ratios: before/after of the fastest repeat of each, and the median of the repeats' pair ratios.
The suite row also splits its CPU between the controllers (observation, MLP, expert) and the
stepping (`mj_step` and the loop around it). Checked, or the script fails: the trajectories of
every group and episode and their metrics are equal bit for bit, the frames pixel for pixel.

Without checkpoints (default: results/train/seed_{0,1,2}/best.pt) untrained policies of the
default size are timed; they fall within a second, so the suite row then times mostly the expert.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import types
from functools import partial
from pathlib import Path

import numpy as np
import torch

from quadpipe.config import ExpertConfig
from quadpipe.control import closed_loop
from quadpipe.control.closed_loop import start_qpos
from quadpipe.control.paths import parse_path
from quadpipe.evaluation import rollouts
from quadpipe.evaluation.named import EvalConfig, place_target
from quadpipe.evaluation.suite import SuiteConfig, episode_plan
from quadpipe.learn.imitation.train import TrainConfig
from quadpipe.learn.policy import Policy, load_checkpoint
from quadpipe.sim import render
from quadpipe.sim.model import build_model
from quadpipe.sim.physics import apply

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "d70d8f7"


def load_before(rev: str, path: str, name: str, replace: tuple[tuple[str, str], ...] = ()
                ) -> types.ModuleType:
    """Module `path` as it was at git revision `rev`, imported as `name`."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                         capture_output=True, text=True).stdout
    for old, new in replace:
        if old not in src:
            raise SystemExit(f"{rev}:{path} has no {old!r}")
        src = src.replace(old, new)
    mod = types.ModuleType(name)
    mod.__file__ = f"{rev}:{path}"
    sys.modules[name] = mod
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


def cpu() -> float:
    """CPU s of this process and its finished children."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_version(rev: str, tag: str) -> tuple[types.ModuleType, ...]:
    """(closed_loop, rollouts, render) as they were at `rev`, rollouts with that rev's metrics."""
    loop = load_before(rev, "src/quadpipe/control/closed_loop.py", f"{tag}_loop")
    load_before(rev, "src/quadpipe/evaluation/metrics.py", f"{tag}_metrics")
    roll = load_before(rev, "src/quadpipe/evaluation/rollouts.py", f"{tag}_rollouts",
                       (("from quadpipe.control.closed_loop import", f"from {tag}_loop import"),
                        ("from quadpipe.evaluation.metrics import", f"from {tag}_metrics import")))
    return loop, roll, load_before(rev, "src/quadpipe/sim/render.py", f"{tag}_render")


def timed(fn):
    """(result, CPU s, wall s) of fn()."""
    c, t = cpu(), time.perf_counter()
    out = fn()
    return out, cpu() - c, time.perf_counter() - t


class Split:
    """CPU s spent in a closed-loop module's controllers (Mixed) and stepping (Episodes.step)."""

    def __init__(self, loop: types.ModuleType) -> None:
        self.parts = {"controllers": 0.0, "stepping": 0.0}
        for cls, method, part in ((loop.Mixed, "__call__", "controllers"),
                                  (loop.Episodes, "step", "stepping")):
            setattr(cls, method, self._wrap(getattr(cls, method), part))

    def _wrap(self, fn, part):
        def timed_call(*a, **k):
            c = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                self.parts[part] += time.process_time() - c
        return timed_call


def same_runs(a: rollouts.Runs, b: rollouts.Runs) -> bool:
    """Every group's qpos and metrics equal bit for bit (JSON keeps floats exactly)."""
    return (a.qpos.keys() == b.qpos.keys()
            and all(np.array_equal(a.qpos[k], b.qpos[k]) for k in a.qpos)
            and json.dumps(a.metrics, sort_keys=True) == json.dumps(b.metrics, sort_keys=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="+", type=Path,
                    default=[Path(f"results/train/seed_{s}/best.pt") for s in range(3)])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--condition", default="nominal")
    ap.add_argument("--path", default="zigzag")
    ap.add_argument("--video-seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", default=BEFORE, help="git revision of the 'before' code")
    ap.add_argument("--after", help="git revision of the 'after' code (default: this checkout)")
    ap.add_argument("--skip", choices=("suite", "video"), action="append", default=[])
    args = ap.parse_args()

    old_loop, old_rollouts, old_render = load_version(args.before, "before")
    if args.after:
        new_loop, new_rollouts, new_render = load_version(args.after, "after")
    else:
        new_loop, new_rollouts, new_render = closed_loop, rollouts, render
    split = {"before": Split(old_loop), "after": Split(new_loop)}

    expert = ExpertConfig()
    if all(c.exists() for c in args.checkpoints):
        policies = {f"seed_{i}": load_checkpoint(c)[:2] for i, c in enumerate(args.checkpoints)}
        print(f"policies: {' '.join(map(str, args.checkpoints))}")
    else:
        cfg = TrainConfig()
        policies = {}
        for i in range(len(args.checkpoints)):
            torch.manual_seed(i)
            obs = cfg.obs_at(expert.dt)
            policies[f"seed_{i}"] = (Policy(obs.dim, 12, cfg.hidden).eval(), obs)
        print("policies: untrained (checkpoints not found); they fall early")
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)

    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    checks: dict[str, bool] = {}

    def pair(row: str, r: int, before, after, same) -> dict:
        """Run before and after once each (order alternating with r); check they agree."""
        order = [("before", before), ("after", after)]
        results = {}
        for label, fn in order if r % 2 == 0 else order[::-1]:
            out, cpu, wall = timed(fn)
            results[label] = out
            rows.setdefault(row, {}).setdefault(label, []).append((cpu, wall))
        checks[row] = checks.get(row, True) and same(results["before"], results["after"])
        return results

    num = int(round(args.seconds / expert.dt))
    plan = episode_plan(SuiteConfig(episodes=args.episodes, seconds=args.seconds),
                        args.condition, expert, q0, num)
    models = [apply(model, p["physics"]) if p["physics"] else model for p in plan]
    targets, pushes = [p["target"] for p in plan], [p["pushes"] for p in plan]

    parts: dict[str, list[dict[str, float]]] = {"before": [], "after": []}

    def suite(mod, tag):
        def go():
            for k in split[tag].parts:
                split[tag].parts[k] = 0.0
            runs = mod.run_groups(targets, num, q0, models, policies, expert, pushes=pushes,
                                  record_every=10)
            parts[tag].append(dict(split[tag].parts))
            return runs
        return go

    ev = EvalConfig(video_seconds=args.video_seconds)
    target, vnum = place_target(parse_path(args.path, radius=ev.radius), ev, expert, q0)
    vnum = min(vnum, int(round(ev.video_seconds / expert.dt)))
    first = dict(list(policies.items())[:1])
    path_xy = target.at(np.arange(int(round(ev.duration / expert.dt)) + 1))
    native = build_model(expert)

    def video_loop(mod):
        return lambda: mod.run_groups([target], vnum, q0, [model], first, expert, ev.follower,
                                      with_expert=False)

    def frames(mod, qpos):
        return lambda: mod.render_frames(native, qpos, expert.dt, ev.fps, target_xy=path_xy)

    for r in range(args.repeats):
        if "suite" not in args.skip:
            pair("suite", r, suite(old_rollouts, "before"), suite(new_rollouts, "after"),
                 same_runs)
        if "video" not in args.skip:
            pair("video loop", r, video_loop(old_rollouts), video_loop(new_rollouts), same_runs)
            qpos = new_rollouts.run_groups([target], vnum, q0, [model], first, expert, ev.follower,
                                       with_expert=False).qpos[next(iter(first))][0]
            shown = pair("video frames", r, frames(old_render, qpos), frames(new_render, qpos),
                         np.array_equal)["after"]
            with tempfile.TemporaryDirectory() as tmp:
                _, c, w = timed(partial(render.write_video, shown, Path(tmp) / "v.mp4"))
                rows.setdefault("encode", {}).setdefault("after", []).append((c, w))
        print(f"round {r + 1}/{args.repeats} done", flush=True)

    groups = len(policies) + 1
    shown_frames = len(render.frame_indices(vnum + 1, expert.dt, ev.fps))
    print(f"suite: {args.episodes} episodes x {args.seconds:g} s x ({len(policies)} policies + "
          f"expert) = {args.episodes * num * groups:,} steps, {args.condition}; video: "
          f"{args.path}, {args.video_seconds:g} s ({shown_frames} frames)")
    print(f"{'':14} {'before CPU s':>13} {'after CPU s':>12} {'CPU ratio':>10} {'median':>7} "
          f"{'before wall s':>14} {'after wall s':>13} {'wall ratio':>11}  identical")
    ratio = {}
    for row, by in rows.items():
        best = {k: (min(c for c, _ in v), min(w for _, w in v)) for k, v in by.items()}
        b, a = best.get("before"), best["after"]
        if b is None:
            print(f"{row:14} {'':>13} {a[0]:12.2f} {'':>10} {'':>7} {'':>14} {a[1]:13.2f}")
            continue
        ratio[row] = b[0] / a[0]
        median = np.median([x[0] / y[0] for x, y in zip(by["before"], by["after"], strict=True)])
        print(f"{row:14} {b[0]:13.2f} {a[0]:12.2f} {ratio[row]:9.2f}x {median:6.2f}x "
              f"{b[1]:14.2f} {a[1]:13.2f} {b[1] / a[1]:10.2f}x  "
              f"{'yes' if checks[row] else 'NO'}")
    for part in ("controllers", "stepping"):
        if parts["after"]:
            b, a = (min(x[part] for x in parts[t]) for t in ("before", "after"))
            print(f"  suite {part:<11}{b:8.2f} {a:12.2f} {b / a:9.2f}x")
    if "video" not in args.skip:
        by = {k: {lab: min(c for c, _ in v) for lab, v in rows[k].items()}
              for k in ("video loop", "video frames", "encode")}
        before = by["video loop"]["before"] + by["video frames"]["before"] + by["encode"]["after"]
        after = by["video loop"]["after"] + by["video frames"]["after"] + by["encode"]["after"]
        ratio["video job"] = before / after
    print("evaluation (CPU, before/after): " + ", ".join(f"{k} {v:.2f}x"
                                                          for k, v in ratio.items()))
    if not all(checks.values()):
        raise SystemExit("before and after differ: " + ", ".join(k for k, v in checks.items()
                                                                  if not v))


if __name__ == "__main__":
    main()
