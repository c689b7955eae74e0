"""The ablation table of docs/training-findings.md, from the results of several runs of the
workflow.

Each run is a working directory in which `snakemake results/eval/table.csv
results/eval/suite/{nominal,randomized,pushes}.json` has run with one variant of config.yaml
(every run with the same suite: same episodes, same physics draws, so the rows are paired). Per
run and condition the table gives the suite's figures over all training seeds: expert and policy
success with Wilson 95 % intervals (policy pooled over seeds x episodes), the median paired
policy/expert error ratio with its bootstrap 95 % interval; and for the named paths, falls over
seeds x paths and the largest per-seed ratio.

    python benchmarks/ablation.py "nominal data, nominal DAgger=/work/exp/A" "...=DIR" ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CONDITIONS = ("nominal", "randomized", "pushes")


def _rate(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{100 * r['rate']:.0f} [{100 * lo:.0f}, {100 * hi:.0f}]"


def _ratio(r: dict) -> str:
    if r["median"] is None:
        return "-"
    lo, hi = r["median_ci95"]
    return f"{r['median']:.2f} [{lo:.2f}, {hi:.2f}]"


def named(run: Path) -> str:
    """Falls / (seeds x paths) and the largest per-seed ratio over the named paths."""
    falls = episodes = 0
    worst = 0.0
    for f in sorted((run / "results/eval").glob("*.json")):
        r = json.loads(f.read_text())
        for s in r["seeds"]:
            episodes += 1
            falls += bool(s["fell"])
            worst = max(worst, s["policy_to_expert_error_ratio"] or 0.0)
    return f"{falls}/{episodes} falls, max ratio {worst:.2f}"


def table(runs: list[tuple[str, Path]]) -> str:
    head = ("| variant | condition | expert success % | policy success % | median ratio | "
            "named paths |")
    lines = [head, "|---|---|---|---|---|---|"]
    for name, run in runs:
        for i, c in enumerate(CONDITIONS):
            r = json.loads((run / f"results/eval/suite/{c}.json").read_text())
            lines.append(f"| {name if i == 0 else ''} | {c} | {_rate(r['expert'])} | "
                         f"{_rate(r['policy']['pooled'])} | {_ratio(r['ratio'])} | "
                         f"{named(run) if i == 0 else ''} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="NAME=DIR: a variant's name and its working directory")
    args = p.parse_args()
    runs = [(r.split("=", 1)[0], Path(r.split("=", 1)[1])) for r in args.runs]
    print(table(runs))


if __name__ == "__main__":
    main()
