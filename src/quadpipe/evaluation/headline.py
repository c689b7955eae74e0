"""The run's headline in Markdown, with the machine it ran on: what the README quotes.

Closed-loop learning amplifies last-bit differences between CPUs and library versions, so a
figure of policy quality is a claim about one machine's run unless it says which machine, how
many seeds and how far they spread. eval_report writes `results/eval/headline.md` from the run's
own result files; `python docs/update_headline.py` copies it into README.md, so the README's
figures are a run's output, never typed by hand.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.evaluation.tables import (
    baseline_rows,
    curve_caption,
    curve_header,
    curve_rows,
    headline_rows,
    physics_sentence,
    split_curve,
    with_baseline,
)


def machine() -> dict[str, Any]:
    """What the figures may depend on: CPU model, cores, the numeric libraries' versions."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {}
    for package in ("torch", "mujoco", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "?"
    return {"cpu": cpu, "cores": cores, "python": platform.python_version(),
            "system": platform.system(), **versions,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")}


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *["| " + " | ".join(r) + " |" for r in rows]])


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def headline_markdown(paths: list[dict[str, Any]], suite: list[dict[str, Any]],
                      where: dict[str, Any]) -> str:
    """The headline of a run's named-path and suite results, measured on machine `where`."""
    seeds = [s["seed"] for s in paths[0]["seeds"]] if paths else \
        list(suite[0]["seeds"]) if suite else []
    out = [f"Measured on {where['date']}: {where['cpu']}, {where['cores']} cores, torch "
           f"{where['torch']}, MuJoCo {where['mujoco']}; {len(seeds)} training seeds "
           f"({', '.join(map(str, seeds))}), every figure over all of them.", ""]
    if paths:
        imitated = with_baseline(paths)
        rows = []
        for r in paths:
            ratios = [s["policy_to_expert_error_ratio"] for s in r["seeds"]]
            rows.append([r["path"], f"{r['expert']['mean_tracking_error_m']:.3f}",
                         f"{np.mean(ratios):.2f}", _spread(ratios),
                         f"{r['across_seeds']['falls']}/{len(r['seeds'])}"])
            if imitated:
                b = [s["policy_to_expert_error_ratio"] for s in r["baseline"]["seeds"]]
                rows[-1] += [f"{np.mean(b):.2f} ({_spread(b)})",
                             f"{r['baseline']['falls']}/{len(b)}"]
        out += ["Named paths: the policy's mean tracking error over the expert's on the same "
                "path (1.00 = as close as the expert), the mean over seeds and the range from "
                "the best seed to the worst; falls = seeds whose policy fell."
                + (" Fine-tuning is on: the policy is each seed's fine-tuned one, the imitated "
                   "columns the policies it started from, on the same path." if imitated else ""),
                "", _md_table(["path", "expert error (m)", "policy / expert",
                               "seeds (best-worst)", "falls"]
                              + (["imitated / expert", "imitated falls"] if imitated else []),
                              rows), ""]
    suite, curve = split_curve(suite)
    if suite:
        _, crow = headline_rows([], suite)
        rows = []
        for r, c in zip(suite, crow, strict=True):
            per_seed = [s["rate"] for s in r["policy"]["per_seed"]]
            rows.append([c[0], c[1], c[2], c[3], c[4],
                         f"{100 * min(per_seed):.0f}-{100 * max(per_seed):.0f} %", c[5]])
        n = suite[0]["expert"]["n"]
        out += [f"Suite: {n} held-out random-path episodes per condition, the policy of every "
                "seed and the expert on the same episodes; success = no fall and >= 90 % "
                "progress, with 95 % intervals (the policy's pooled over seeds at the effective "
                "number of trials, as seeds share episodes); policy - expert = the paired "
                "success difference in points (episode bootstrap), p = exact McNemar "
                "(Bonferroni over seeds); error ratio = policy / expert tracking error per "
                "episode, median (bootstrap over seeds and episodes).", "",
                _md_table(["condition", "expert success", "policy success", "policy - expert",
                           "McNemar", "per seed", "error ratio"], rows), ""]
        if physics_sentence(suite):
            out += [physics_sentence(suite), ""]
        if with_baseline(suite):
            out += _versus_baseline(suite)
    if curve:
        out += [curve_caption(curve), "", _md_table(curve_header(curve), curve_rows(curve)), ""]
    return "\n".join(out)


def _versus_baseline(suite: list[dict[str, Any]]) -> list[str]:
    """The fine-tuned policies against the imitated ones they started from, same episodes."""
    return ["Fine-tuning is on: the policy above is each seed's fine-tuned one; here the imitated "
            "policies it started from, on the same episodes, and the fine-tuned minus the "
            "imitated, seed by seed and episode by episode (error ratio = fine-tuned / imitated "
            "tracking error).", "",
            _md_table(["condition", "imitated success", "imitated - expert",
                       "imitated error ratio", "fine-tuned - imitated",
                       "fine-tuned / imitated error"], baseline_rows(suite)), ""]
