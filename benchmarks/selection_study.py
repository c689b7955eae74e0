"""The checkpoint-selection study of docs/training-findings.md: the validation loss's choice vs the
closed loop's, per training seed, on the same named paths and suite episodes.

A finished workflow run (RUN) holds every seed's stage files, selection parts and evaluation of
the closed-loop choice (best.pt). `baseline` writes, per seed, the checkpoint the validation loss
would have chosen (the last round's lowest loss: best.pt before the selection existed) into
OUT/seed_<k>/best.pt and says which seeds differ; evaluate those with the workflow's own verbs
(named paths and the suite, same episodes); `table` then prints, per seed, both choices' epochs,
selection scores, named-path ratios and suite successes, and per condition the paired difference
closed loop - loss over the differing seeds' episodes.

    python benchmarks/selection_study.py baseline RUN OUT
    # for each condition and path, with the differing seeds' OUT checkpoints (printed above):
    #   quadpipe suite --checkpoint ... --seeds ... --condition C --out OUT/suite/C.json \\
    #       --config RUN/results/logs/suite/C.json
    #   quadpipe evaluate --checkpoint ... --seeds ... --path P --out OUT/eval/P.json \\
    #       --config RUN/results/logs/evaluate/P.json
    python benchmarks/selection_study.py table RUN OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quadpipe.evaluation.intervals import cluster_bootstrap  # noqa: E402
from quadpipe.evaluation.selection import choose  # noqa: E402
from quadpipe.learn.imitation.stages import load_state  # noqa: E402

CONDITIONS = ("nominal", "randomized", "pushes")


def seeds(run: Path) -> list[int]:
    return sorted(int(d.name.split("_")[1]) for d in (run / "results/train").glob("seed_*")
                  if (d / "best.pt").exists())


def choices(run: Path, seed: int) -> dict:
    """The two choices of one seed, as selection rows (round, epoch, score) found by epoch: the
    last round's lowest validation loss and the closed loop's; and that loss epoch's weights."""
    d = run / f"results/train/seed_{seed}"
    last = load_state(max((d / "stages").glob("round_*.pt"),
                          key=lambda f: int(f.stem.split("_")[1])))
    sel = choose(sorted((d / "select").glob("part_*.json")))
    by_epoch = {c["epoch"]: c for c in sel["candidates"]}
    loss_epoch = last["best"]["epoch"]
    weights = next(e["model"] for e in last["epoch_models"] if e["epoch"] == loss_epoch)
    return {"loss": by_epoch[loss_epoch], "closed_loop": sel["chosen"], "weights": weights}


def baseline(run: Path, out: Path) -> None:
    from quadpipe.learn.policy import Policy, load_checkpoint, save_checkpoint

    differ = []
    for s in seeds(run):
        c = choices(run, s)
        _, obs, ckpt = load_checkpoint(run / f"results/train/seed_{s}/best.pt")
        policy = Policy.from_architecture(ckpt["architecture"])
        policy.load_state_dict(c["weights"])
        save_checkpoint(out / f"seed_{s}/best.pt", policy, obs, ckpt["train_config"],
                        {"epoch": c["loss"]["epoch"], "valid_loss": c["loss"]["valid_loss"],
                         "selection": {"method": "valid_loss"}})
        same = c["loss"]["epoch"] == c["closed_loop"]["epoch"]
        print(f"seed {s}: loss chooses epoch {c['loss']['epoch']}, the closed loop epoch "
              f"{c['closed_loop']['epoch']}" + (" (the same)" if same else ""))
        if not same:
            differ.append(s)
    print("differing seeds:", " ".join(map(str, differ)))
    (out / "differ.json").write_text(json.dumps(differ))


def table(run: Path, out: Path) -> None:
    differ = json.loads((out / "differ.json").read_text())
    paths = sorted(p.stem for p in (run / "results/eval").glob("*.json")
                   if p.stem != "headline")
    rows = ["| seed | chosen by | epoch | selection successes / falls / error (m) | "
            + " | ".join(paths) + " | " + " | ".join(f"suite {c}" for c in CONDITIONS) + " |",
            "|---|---|---|---|" + "---|" * (len(paths) + len(CONDITIONS))]
    suites = {c: json.loads((run / f"results/eval/suite/{c}.json").read_text())
              for c in CONDITIONS}
    base_suites = {c: json.loads((out / f"suite/{c}.json").read_text())
                   for c in CONDITIONS if (out / f"suite/{c}.json").exists()}
    named = {p: json.loads((run / f"results/eval/{p}.json").read_text()) for p in paths}
    base_named = {p: json.loads((out / f"eval/{p}.json").read_text()) for p in paths
                  if (out / f"eval/{p}.json").exists()}
    for s in seeds(run):
        c = choices(run, s)
        for how in ("loss", "closed_loop"):
            score = c[how]
            use_base = how == "loss" and s in differ
            cells = []
            for p in paths:
                src = base_named.get(p) if use_base else named[p]
                r = _seed_row(src, s)
                cells.append("-" if r is None else
                             f"{r['policy_to_expert_error_ratio']:.2f}" + (" fell" if r["fell"]
                                                                          else ""))
            for cond in CONDITIONS:
                src = base_suites.get(cond) if use_base else suites[cond]
                cells.append(_suite_cell(src, s))
            rows.append(f"| {s} | {how.replace('_', ' ')} | {score['epoch']} | "
                        f"{score['successes']}/{score['n']} / {score['falls']} / "
                        f"{score['mean_tracking_error_m']:.3f} | " + " | ".join(cells) + " |")
    print("\n".join(rows))
    print()
    for cond, base in base_suites.items():
        print(f"{cond}: closed loop - loss, paired over the differing seeds' episodes: "
              + _paired(suites[cond], base, differ))


def _seed_row(results: dict | None, seed: int) -> dict | None:
    if results is None:
        return None
    return next((row for row in results["seeds"] if int(row["seed"]) == seed), None)


def _suite_cell(results: dict | None, seed: int) -> str:
    if results is None:
        return "-"
    n = f"seed_{seed}"
    ok = [e["policy"][n]["success"] for e in results["episodes"] if n in e["policy"]]
    return f"{sum(ok)}/{len(ok)}" if ok else "-"


def _paired(new: dict, old: dict, differ: list[int]) -> str:
    """Mean over episodes of (closed-loop success - loss success), averaged over the differing
    seeds, with an episode bootstrap interval."""
    if not differ:
        return "no seed differs"
    names = [f"seed_{s}" for s in differ]
    d = np.array([[float(a["policy"][n]["success"]) - float(b["policy"][n]["success"])
                   for n in names] for a, b in zip(new["episodes"], old["episodes"],
                                                   strict=True)]).mean(axis=1)
    lo, hi = cluster_bootstrap(d)
    return f"{100 * d.mean():+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] over {len(d)} episodes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("baseline", "table"))
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    (baseline if args.what == "baseline" else table)(args.run, args.out)


if __name__ == "__main__":
    main()
