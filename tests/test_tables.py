"""The evaluation's tables: per path and seed, per condition, and the headline the report shows."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from docutils.core import publish_parts

from quadpipe.evaluation.intervals import wilson
from quadpipe.evaluation.suite import summarise
from quadpipe.evaluation.tables import headline_rst, path_table, suite_table, write_reports


class _Tables(HTMLParser):
    """rows[t][r]: the cell texts of row r of table t."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.rows.append([])
        elif tag == "tr":
            self.rows[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None


def _path_result(name: str, expert: float, policies: list[float]) -> dict:
    def m(err: float, fell: bool = False) -> dict:
        return {"mean_tracking_error_m": err, "mean_cross_track_error_m": err / 2,
                "progress_fraction": 1.0, "fell": fell, "fall_time_s": None}

    seeds = [{"seed": k, **m(e), "policy_to_expert_error_ratio": e / expert}
             for k, e in enumerate(policies)]
    return {"path": name, "seeds": seeds, "expert": m(expert), "standing": m(1.0),
            "across_seeds": {"falls": 0}}


def _suite_result(condition: str, expert_ok: list[bool], policy_ok: list[list[bool]]) -> dict:
    names = [f"seed_{k}" for k in range(len(policy_ok))]

    def m(ok: bool, err: float) -> dict:
        return {"fell": not ok, "success": ok, "mean_tracking_error_m": err}

    episodes = [{"expert": m(x, 0.1), "policy": {n: m(p[i], 0.12) for n, p in
                                                 zip(names, policy_ok, strict=True)}}
                for i, x in enumerate(expert_ok)]
    return {"condition": condition, "seeds": list(range(len(names))), "episodes": episodes,
            "suite_config": {"episodes": len(expert_ok), "seconds": 10.0, "seed": 1,
                             "speed": [0.15, 0.35]}, **summarise(episodes, names)}


def test_path_table_has_a_row_per_seed_expert_and_standing() -> None:
    table = path_table([_path_result("circle", 0.1, [0.12, 0.14]),
                        _path_result("mine", 0.2, [0.3, 0.2])])
    assert len(table) == 8
    assert table.loc[("mine", "policy (seed 1)"), "policy_to_expert_error_ratio"] == 1.0
    assert table.loc[("circle", "expert"), "mean_tracking_error_m"] == 0.1


def test_suite_summary_counts_successes_and_pairs_only_walked_episodes() -> None:
    r = _suite_result("pushes", [True, True, False, True], [[True, False, True, True]])
    assert r["expert"]["successes"] == 3 and r["policy"]["pooled"]["successes"] == 3
    assert r["ratio"]["pairs"] == 2  # episodes 0 and 3: neither fell
    assert r["ratio"]["median"] == 1.2
    row = suite_table([r]).loc["pushes"]
    assert row["expert success (95% CI)"].startswith("3/4 = 75 %")
    # per episode policy - expert: (0, -1, +1, 0): no difference on average, b = c = 1
    assert r["paired"]["success_diff"] == 0.0
    assert r["paired"]["per_seed"] == [{"seed": "seed_0", "policy_only": 1, "expert_only": 1,
                                        "mcnemar_p": 1.0}]
    assert row["policy - expert success, paired (95% CI)"].startswith("+0 pp [")
    assert row["McNemar exact p (Bonferroni over seeds)"] == "p = 1"


def test_headline_is_valid_rst_with_both_tables(tmp_path) -> None:
    paths = [_path_result("circle", 0.1, [0.12, 0.14])]
    suite = [_suite_result("nominal", [True] * 5, [[True] * 5, [True, True, True, True, False]])]
    html = publish_parts(headline_rst(paths, suite), writer="html",
                         settings_overrides={"halt_level": 2})["html_body"]
    tables = _Tables()
    tables.feed(html)
    assert len(tables.rows) == 2
    paths, conditions = ({h: row for h, row in zip(t[0], t[1], strict=True)}
                         for t in tables.rows)
    assert paths["path"] == "circle" and paths["falls"] == "0/2"
    assert conditions["condition"] == "nominal"
    # per-episode policy success (1, 1, 1, 1, 0.5): p = 0.9, sample variance 0.2 / 4 = 0.05,
    # Var(p) = 0.05 / 5 = 0.01, effective trials 0.09 / 0.01 = 9 (not 10: seeds share episodes)
    pooled = suite[0]["policy"]["pooled"]
    assert pooled["effective_n"] == pytest.approx(9.0)
    assert pooled["ci95"] == pytest.approx(wilson(0.9 * 9, 9))
    lo, hi = (round(100 * x) for x in pooled["ci95"])
    assert conditions["policy success"] == f"9/10 = 90 % [{lo}, {hi}] %"
    # policy - expert per episode (0, 0, 0, 0, -0.5): -10 pp; seed 1 fails once alone: p = 1
    assert conditions["policy - expert"].startswith("-10 pp [")
    assert conditions["McNemar"] == "p = 1"
    files = []
    for i, r in enumerate(suite):
        files.append(tmp_path / f"s{i}.json")
        files[-1].write_text(json.dumps(r))
    written = write_reports([], files, tmp_path / "t.html", tmp_path / "t.csv",
                            tmp_path / "s.html", tmp_path / "s.csv", tmp_path / "h.rst")
    assert set(written) == {"suite_html", "suite_csv", "headline"}
    assert (tmp_path / "s.html").read_text().count("data:image/png;base64") == 2
    page = _Tables()
    page.feed((tmp_path / "s.html").read_text())
    by_condition, per_seed = page.rows[0], page.rows[-1]
    assert "policy - expert success, paired (95% CI)" in by_condition[0]
    header = next(r for r in per_seed if "McNemar exact p" in r)
    seed_1 = {h: c for h, c in zip(header[-len(per_seed[-1]):], per_seed[-1], strict=True)}
    assert seed_1["episodes only policy / only expert succeeded"] == "0 / 1"


def test_a_difference_under_half_a_point_is_not_printed_as_zero() -> None:
    """296/300 against the expert's 99/100 is -1/3 of a point: "-0.3", where a whole-point format
    gave "-0"; an exact zero stays "+0", whole points stay whole."""
    from quadpipe.evaluation.tables import points

    assert points(296 / 300 - 99 / 100) == "-0.3"
    assert points(0.0) == "+0" and points(0.02) == "+2" and points(-0.05) == "-5"
    assert points(0.004) == "+0.4"
