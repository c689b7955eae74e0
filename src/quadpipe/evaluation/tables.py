"""The evaluation's tables and pages: per named path, per suite condition, and the headline.

The headline (reStructuredText) is what the report's front page shows without a click: policy vs
expert per path and per condition, each figure with its spread over seeds or its 95 % interval.
"""

from __future__ import annotations

import base64
import io
import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quadpipe.data.stats import html_page

CURVE = "push_curve"  # evaluation.suite.PUSH_CURVE (not imported: this module stays light)
PATH_COLUMNS = ("mean_tracking_error_m", "mean_cross_track_error_m", "progress_fraction", "fell",
                "fall_time_s", "policy_to_expert_error_ratio")


def load_results(files) -> list[dict[str, Any]]:
    return [json.loads(Path(f).read_text()) for f in files]


def split_curve(suite: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(the conditions, the push curve or None): the curve's figures pooled over its kick sizes
    would mean nothing, so it gets a table and a plot of its own, per size."""
    curve = [r for r in suite if r["condition"] == CURVE and "curve" in r]
    return [r for r in suite if r["condition"] != CURVE], (curve[0] if curve else None)


def curve_rows(r: dict[str, Any]) -> list[list[str]]:
    """Per kick size, as text cells: the size, the expert's and the pooled policy's success,
    their paired difference; with a baseline, the imitated policies' success and difference."""
    rows = []
    for p in r["curve"]:
        row = [f"{p['kick_m_s']:g}", _rate(p["expert"]), _rate(p["policy"]["pooled"]),
               _diff(p["paired"])]
        if "baseline" in p:
            row += [_rate(p["baseline"]["policy"]["pooled"]), _diff(p["baseline"]["paired"])]
        rows.append(row)
    return rows


def curve_header(r: dict[str, Any]) -> list[str]:
    head = ["kick (m/s)", "expert success", "policy success", "policy - expert"]
    if r["curve"] and "baseline" in r["curve"][0]:
        head += ["imitated success", "imitated - expert"]
    return head


def curve_caption(r: dict[str, Any]) -> str:
    cfg = r["suite_config"]
    lo, hi = cfg["pushes"]["interval_s"]
    return (f"Push recovery: the first {cfg['push_episodes']} nominal episodes at each kick size, "
            f"a kick every {lo:g}-{hi:g} s in a random direction (the same times and directions "
            "at every size), policy and expert on the same episodes; success and paired "
            "difference as in the suite.")


def path_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (path, controller): each seed's policy, the expert, standing still."""
    rows = []
    for r in results:
        runs = [(f"policy (seed {s['seed']})", s) for s in r["seeds"]]
        runs += [("expert", r["expert"]), ("standing", r["standing"])]
        for who, m in runs:
            rows.append({"path": r["path"], "controller": who,
                         **{c: m.get(c) for c in PATH_COLUMNS}})
    return pd.DataFrame(rows).set_index(["path", "controller"])


def _ci(ci: list[float] | None, pct: bool = False) -> str:
    if ci is None:
        return "-"
    return f"[{100 * ci[0]:.0f}, {100 * ci[1]:.0f}] %" if pct else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _rate(r: dict[str, Any]) -> str:
    return f"{r['successes']}/{r['n']} = {100 * r['rate']:.0f} % {_ci(r['ci95'], True)}"


def _num(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _diff(paired: dict[str, Any] | None) -> str:
    """Policy - expert success in percentage points with its 95 % interval; '-' for a JSON written
    before the paired statistics existed."""
    if not paired or paired["success_diff"] is None:
        return "-"
    ci = paired["success_diff_ci95"]
    d = points(paired["success_diff"])
    return f"{d} pp [{points(ci[0])}, {points(ci[1])}]" if ci else f"{d} pp"


def points(share: float) -> str:
    """A share as signed percentage points, whole unless that reads 0 for a difference that is
    not (-1/3 of a point, 296/300 against 99/100, is -0.3, not -0)."""
    whole = f"{100 * share:+.0f}"
    return f"{100 * share:+.1f}" if share != 0 and whole in ("+0", "-0") else whole


def suite_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per condition: success of expert and policy, their paired difference and McNemar
    p, the paired error ratio."""
    rows = []
    for r in split_curve(results)[0]:
        pol, ratio, paired = r["policy"], r["ratio"], r.get("paired")
        rows.append({
            "condition": r["condition"], "episodes": r["expert"]["n"],
            "seeds": len(r["seeds"]),
            "expert success (95% CI)": _rate(r["expert"]),
            "policy success, pooled (95% CI, episode-clustered)": _rate(pol["pooled"]),
            "policy - expert success, paired (95% CI)": _diff(paired),
            "McNemar exact p (Bonferroni over seeds)": _p((paired or {}).get("mcnemar_p")),
            "policy success per seed, mean ± sd":
                f"{100 * pol['success_rate_mean_over_seeds']:.0f} ± "
                f"{100 * pol['success_rate_std_over_seeds']:.0f} %",
            "error ratio median (95% CI)":
                f"{_num(ratio['median'])} {_ci(ratio['median_ci95'])}",
            "error ratio mean (95% CI)": f"{_num(ratio['mean'])} {_ci(ratio['mean_ci95'])}",
            "pairs both walked": ratio["pairs"],
            **_versus_baseline(r)})
    return pd.DataFrame(rows).set_index("condition")


def _versus_baseline(r: dict[str, Any]) -> dict[str, str]:
    """With fine-tuning on: the imitated policies (the baseline) beside the fine-tuned ones."""
    if "baseline" not in r:
        return {}
    return dict(zip(("imitated success, pooled (95% CI)",
                     "imitated - expert success, paired (95% CI)",
                     "imitated error ratio median (95% CI)",
                     "fine-tuned - imitated success, paired (95% CI)",
                     "error ratio fine-tuned / imitated, median (95% CI)"),
                    _baseline_cells(r), strict=True))


def _baseline_cells(r: dict[str, Any]) -> list[str]:
    """The imitated policies' pooled success, their paired difference to the expert and error
    ratio, then fine-tuned - imitated success and error ratio, as text."""
    b, v = r["baseline"], r["vs_baseline"]
    return [_rate(b["policy"]["pooled"]), _diff(b["paired"]),
            f"{_num(b['ratio']['median'])} {_ci(b['ratio']['median_ci95'])}",
            _diff(v), f"{_num(v['ratio']['median'])} {_ci(v['ratio']['median_ci95'])}"]


def seed_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (condition, seed): success, falls, discordant episodes against the expert and
    their McNemar p, error ratios."""
    rows = []
    for r in results:
        mc = {m["seed"]: m for m in (r.get("paired") or {}).get("per_seed", [])}
        for s in r["policy"]["per_seed"]:
            m = mc.get(s["seed"])
            rows.append({"condition": r["condition"], "seed": s["seed"].replace("seed_", ""),
                         "success": _rate(s), "falls": s["falls"],
                         "episodes only policy / only expert succeeded":
                             f"{m['policy_only']} / {m['expert_only']}" if m else "-",
                         "McNemar exact p": _p(m["mcnemar_p"] if m else None),
                         "error ratio median": _num(s["ratio_median"]),
                         "error ratio mean": _num(s["ratio_mean"])})
    return pd.DataFrame(rows).set_index(["condition", "seed"])


def _profile(sim: dict[str, Any]) -> str:
    return (f"`{sim['profile']}` ({1e3 * sim['timestep']:g}-ms steps, {sim['cone']} cones, "
            f"condim-{sim['foot_condim']} feet)")


def physics_sentence(suite: list[dict[str, Any]]) -> str:
    """What the suite's conditions ran on, in one sentence (empty for results from before the
    profiles): the policies' own profile, and the fidelity condition's if it ran."""
    notes = [r["physics"] for r in suite if "physics" in r]
    if not notes:
        return ""
    out = f"Physics: the policies' profile {_profile(notes[0]['policies'])}"
    cross = [(r, r["physics"]) for r in suite if r.get("physics", {}).get("cross_profile")]
    for r, p in cross:
        out += (f"; {r['condition']}: the first {r['expert']['n']} nominal episodes on "
                f"{_profile(p['episodes'])}, each policy deciding every "
                f"{p['policy_decision_ms']:g} ms (torques held between decisions) and the expert "
                f"at every {p['physics_step_ms']:g}-ms step")
    return out + "."


def with_baseline(results: list[dict[str, Any]]) -> bool:
    """Whether every result holds the imitated policies beside the evaluated ones (fine-tuning
    on): the headlines' imitated columns and tables."""
    return all("baseline" in r for r in results)


def headline_rows(paths: list[dict[str, Any]], suite: list[dict[str, Any]]
                  ) -> tuple[list[list[str]], list[list[str]]]:
    """(rows per path, rows per condition) of the headline, as text cells; with the imitated
    policies beside (`with_baseline`), each path's row ends with their ratio."""
    imitated = with_baseline(paths)
    prow = []
    for r in paths:
        errs = np.array([s["mean_tracking_error_m"] for s in r["seeds"]])
        ratios = np.array([s["policy_to_expert_error_ratio"] for s in r["seeds"]])
        spread = f" ± {errs.std(ddof=1):.3f}" if len(errs) > 1 else ""
        rspread = f" ± {ratios.std(ddof=1):.2f}" if len(ratios) > 1 else ""
        prow.append([r["path"], f"{r['expert']['mean_tracking_error_m']:.3f}",
                     f"{errs.mean():.3f}{spread}", f"{ratios.mean():.2f}{rspread}",
                     f"{r['across_seeds']['falls']}/{len(r['seeds'])}"])
        if imitated:
            b = np.array([x["policy_to_expert_error_ratio"] for x in r["baseline"]["seeds"]])
            prow[-1].append(f"{b.mean():.2f}" + (f" ± {b.std(ddof=1):.2f}" if len(b) > 1 else ""))
    crow = [[r["condition"], _rate(r["expert"]), _rate(r["policy"]["pooled"]),
             _diff(r.get("paired")), _p((r.get("paired") or {}).get("mcnemar_p")),
             f"{_num(r['ratio']['median'])} {_ci(r['ratio']['median_ci95'])}"]
            for r in split_curve(suite)[0]]
    return prow, crow


def baseline_rows(suite: list[dict[str, Any]]) -> list[list[str]]:
    """Per condition, as text cells: the condition, then `_baseline_cells`."""
    return [[r["condition"], *_baseline_cells(r)] for r in split_curve(suite)[0]]


def _rst_table(header: list[str], rows: list[list[str]]) -> str:
    """A reStructuredText grid table."""
    cells = [header, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    head = line.replace("-", "=")

    def fmt(r: list[str]) -> str:
        return "|" + "|".join(f" {str(c):<{w}} " for c, w in zip(r, widths, strict=True)) + "|"

    return "\n".join([line, fmt(header), head, *[x for r in rows for x in (fmt(r), line)]])


def headline_rst(paths: list[dict[str, Any]], suite: list[dict[str, Any]]) -> str:
    prow, crow = headline_rows(paths, suite)
    seeds = len(paths[0]["seeds"]) if paths else len(suite[0]["seeds"]) if suite else 0
    out = ["", f"Headline: policy vs expert ({seeds} training seed{'s' if seeds != 1 else ''})",
           "-" * 60, ""]
    imitated = ["imitated ratio"] if prow and with_baseline(paths) else []
    if prow:
        out += ["Named paths: mean tracking error (m), the policy's as mean ± sd over seeds; "
                "ratio = policy / expert on the same path; falls = seeds whose policy fell"
                + ("; imitated ratio = the imitated policies' (fine-tuning's start), same "
                   "path." if imitated else "."), "",
                _rst_table(["path", "expert error", "policy error", "ratio", "falls", *imitated],
                           prow), ""]
    if crow:
        n = split_curve(suite)[0][0]["expert"]["n"]
        out += [f"Evaluation suite: {n} held-out random-path episodes per condition, policy "
                "and expert on the same episodes; success = no fall and >= 90 % progress "
                "(Wilson 95 % intervals; the policy's pooled over seeds at the effective number "
                "of independent trials, as seeds share episodes); policy - expert = paired "
                "success difference in percentage points (bootstrap 95 % interval over "
                "episodes), p = exact McNemar test (Bonferroni over seeds); error ratio = median "
                "over episodes both walked (bootstrap 95 % interval over seeds and episodes).", "",
                _rst_table(["condition", "expert success", "policy success", "policy - expert",
                            "McNemar", "error ratio (median)"], crow), ""]
        if physics_sentence(suite):
            out += [physics_sentence(suite), ""]
        if with_baseline(split_curve(suite)[0]):
            out += ["Fine-tuning is on: the imitated policies it started from, on the same "
                    "episodes, and fine-tuned minus imitated, seed by seed and episode by "
                    "episode.", "",
                    _rst_table(["condition", "imitated success", "imitated - expert",
                                "imitated error ratio", "fine-tuned - imitated",
                                "fine-tuned / imitated error"], baseline_rows(suite)), ""]
    curve = split_curve(suite)[1]
    if curve:
        out += [curve_caption(curve), "", _rst_table(curve_header(curve), curve_rows(curve)), ""]
    return "\n".join(out) + "\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode()


def suite_figures(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, base64 PNG): success rates with interval bars; error distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, curve = split_curve(results)
    conds = [r["condition"] for r in results]
    x = np.arange(len(conds))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for off, who, colour in ((-0.18, "expert", "tab:orange"), (0.18, "policy", "tab:blue")):
        rates = [r[who]["rate"] if who == "expert" else r["policy"]["pooled"]["rate"]
                 for r in results]
        cis = [r[who]["ci95"] if who == "expert" else r["policy"]["pooled"]["ci95"]
               for r in results]
        err = np.maximum(0.0, [[p - c[0] for p, c in zip(rates, cis, strict=True)],
                               [c[1] - p for p, c in zip(rates, cis, strict=True)]])
        ax.bar(x + off, rates, 0.34, yerr=err, capsize=4, color=colour, label=who)
    ax.set(xticks=x, xticklabels=conds, ylim=(0, 1.05), ylabel="success rate (95 % CI)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    figs = [("Success rate per condition", _png(fig))]
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    data, labels = [], []
    for r in results:
        for who in ("expert", "policy"):
            vals = [e["expert"]["mean_tracking_error_m"] for e in r["episodes"]
                    if not e["expert"]["fell"]] if who == "expert" else \
                [m["mean_tracking_error_m"] for e in r["episodes"] for m in e["policy"].values()
                 if not m["fell"]]
            data.append(vals or [np.nan])
            labels.append(f"{r['condition']}\n{who}")
    ax.boxplot(data, tick_labels=labels)
    ax.set(ylabel="tracking error (m), no-fall episodes")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    figs.append(("Tracking error distributions, policy vs expert", _png(fig)))
    plt.close(fig)
    if curve:
        figs.append(("Push recovery: success against the kick's size", curve_figure(curve, plt)))
    return figs


def curve_figure(r: dict[str, Any], plt) -> str:
    """Success against kick size, with Wilson 95 % bars: expert, policy (pooled over seeds) and,
    with fine-tuning on, the imitated policies; as base64 PNG."""
    sizes = [p["kick_m_s"] for p in r["curve"]]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    lines = [("expert", "tab:orange", lambda p: p["expert"]),
             ("policy", "tab:blue", lambda p: p["policy"]["pooled"])]
    if "baseline" in r["curve"][0]:
        lines.append(("imitated", "tab:gray", lambda p: p["baseline"]["policy"]["pooled"]))
    for k, (who, colour, pick) in enumerate(lines):
        rates = np.array([pick(p)["rate"] for p in r["curve"]])
        ci = np.array([pick(p)["ci95"] for p in r["curve"]])
        x = np.array(sizes) + 0.008 * (k - 1)  # apart, so the bars do not hide each other
        ax.errorbar(x, rates, yerr=np.maximum(0.0, [rates - ci[:, 0], ci[:, 1] - rates]),
                    color=colour, marker="o", capsize=3, label=who)
    ax.set(xlabel="kick size (m/s)", ylabel="success rate (95 % CI)", ylim=(-0.03, 1.03))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def suite_page(results: list[dict[str, Any]]) -> str:
    """A self-contained HTML page: condition table, figures, per-seed table."""
    cfg = results[0]["suite_config"]
    intro = (f"{cfg['episodes']} held-out random-path episodes of {cfg['seconds']:g} s per "
             f"condition (suite seed {cfg['seed']}, target speed {cfg['speed'][0]:g}-"
             f"{cfg['speed'][1]:g} m/s), every seed's policy and the expert on the same "
             "episodes and the same physics draws and pushes. The episode is the independent "
             "unit: the policy's pooled interval counts the effective number of independent "
             "trials, the paired difference (policy - expert, percentage points) resamples "
             "episodes, and McNemar's exact test compares each seed with the expert on the "
             "episodes where exactly one of them succeeded.")
    page = html_page(seed_table(results), "Evaluation suite", index=True)
    conditions = suite_table(results).to_html(border=0, classes="quadpipe-table")
    curve = split_curve(results)[1]
    if curve:
        frame = pd.DataFrame(curve_rows(curve), columns=curve_header(curve))
        conditions += (f"\n<h3>Push recovery</h3><p>{escape(curve_caption(curve))}</p>\n"
                       + frame.to_html(border=0, index=False, classes="quadpipe-table"))
    figs = "".join(f"<h3>{escape(t)}</h3><img alt='{escape(t)}' src='data:image/png;base64,"
                   f"{b}'/>" for t, b in suite_figures(results))
    top = f"<p>{escape(intro)}</p>\n{conditions}\n{figs}\n<h3>Per training seed</h3>"
    return page.replace("</h2>\n", f"</h2>\n{top}\n", 1)


def write_reports(paths: list, suite: list, table_html, table_csv, suite_html=None,
                  suite_csv=None, headline=None) -> dict[str, Path]:
    """Write whichever pages are asked for; returns name -> file."""
    pr, sr = load_results(paths), load_results(suite)
    out: dict[str, Path] = {}
    if pr:
        table = path_table(pr)
        table.to_csv(table_csv)
        Path(table_html).write_text(html_page(table, "Closed-loop evaluation per path"))
        out |= {"table_html": Path(table_html), "table_csv": Path(table_csv)}
    if sr and suite_html:
        Path(suite_html).write_text(suite_page(sr))
        out["suite_html"] = Path(suite_html)
    if sr and suite_csv:
        suite_table(sr).to_csv(suite_csv)
        out["suite_csv"] = Path(suite_csv)
    if headline:
        Path(headline).write_text(headline_rst(pr, sr))
        out["headline"] = Path(headline)
    return out
