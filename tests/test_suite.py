"""The evaluation suite: intervals, perturbed physics, pushes, the batched loop, determinism."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from quadpipe.cli import main
from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import Episodes, start_qpos
from quadpipe.errors import ConfigError
from quadpipe.evaluation.headline import headline_markdown
from quadpipe.evaluation.intervals import bootstrap, effective_n, mcnemar_exact, wilson
from quadpipe.evaluation.metrics import success
from quadpipe.evaluation.rollouts import run_groups
from quadpipe.evaluation.suite import (
    SUITE_STREAM,
    SuiteConfig,
    combine,
    episode_plan,
    part_episodes,
    run_condition,
)
from quadpipe.sim.model import LEGS, build_model
from quadpipe.sim.physics import LINKS, PhysicsRanges, apply, draw_physics

EXPERT = ExpertConfig()


@pytest.mark.parametrize("k, n, low, high", [  # Newcombe (1998), Stat. Med. 17:857, method 3
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_published_values(k, n, low, high) -> None:
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_is_never_degenerate_at_0_or_n() -> None:
    assert wilson(50, 50)[0] == pytest.approx(0.9287, abs=1e-4) and wilson(50, 50)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_bootstrap_interval_covers_the_statistic_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.lognormal(0, 0.3, 20), rng.lognormal(0, 0.3, 2000)
    lo_s, hi_s = bootstrap(small, np.median)
    lo_l, hi_l = bootstrap(large, np.median)
    assert lo_s <= np.median(small) <= hi_s and lo_l <= 1.0 <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3
    assert bootstrap(np.full((2, 5), 1.5), np.mean) == (1.5, 1.5)
    assert bootstrap(np.full(4, np.nan), np.mean) is None
    # seed-to-seed spread widens the interval: two seeds with shifted errors vs one
    two = np.stack([small, small + 0.5])
    lo2, hi2 = bootstrap(two, np.median)
    assert hi2 - lo2 > hi_s - lo_s


def test_physics_draw_changes_the_model() -> None:
    model = build_model(EXPERT, pd="torque")
    d = dataclasses.replace(draw_physics(np.random.default_rng(0), PhysicsRanges()),
                            friction=0.45, trunk_mass_kg=1.5, slope_deg=3.0,
                            slope_direction_deg=90.0)
    m = apply(model, d)
    assert m.geom_friction[m.geom(f"{LEGS[0]}_foot").id, 0] == pytest.approx(0.45)
    trunk = m.body("trunk").id
    assert m.body_mass[trunk] == pytest.approx(model.body_mass[trunk] + 1.5)
    assert m.body_mass[m.body(LINKS[4]).id] == pytest.approx(
        model.body_mass[model.body(LINKS[4]).id] * d.link_mass_scale[4])
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], d.motor_strength)
    np.testing.assert_allclose(np.linalg.norm(m.opt.gravity), 9.81)
    assert np.degrees(np.arccos(-m.opt.gravity[2] / 9.81)) == pytest.approx(3.0)
    assert m.opt.gravity[1] > 0 and abs(m.opt.gravity[0]) < 1e-9
    assert model.geom_friction[model.geom(f"{LEGS[0]}_foot").id, 0] == pytest.approx(0.8)


def test_a_push_moves_a_standing_robot() -> None:
    model = build_model(EXPERT, pd="torque")
    q0 = start_qpos(model)
    plan = episode_plan(SuiteConfig(episodes=2, seconds=1.0), "nominal", EXPERT, q0, 1000)
    kick = [[(100, np.array([0.6, 0.0, 0.0]))], []]
    runs = run_groups([p["target"] for p in plan], 1000, q0, [model] * 2, {}, EXPERT,
                      pushes=kick, standing=True)
    pushed, still = runs.metrics["standing"]
    assert pushed["path_length_m"] > 0.03 > still["path_length_m"]
    with Episodes(model, q0, 1) as sim:
        sim.push(0, np.array([0.0, -0.4, 0.0]))
        assert sim.qvel[0, 1] == pytest.approx(-0.4)


def test_the_suite_stream_is_disjoint_from_daggers() -> None:
    """DAgger's (train seed, round) stream never starts from a suite episode's state."""
    suite = {tuple(np.random.SeedSequence((SUITE_STREAM, s), spawn_key=(i, c)).generate_state(4))
             for s in range(4) for i in range(8) for c in range(4)}
    dagger = {tuple(np.random.SeedSequence(s, spawn_key=(r,)).generate_state(4))
              for s in range(4) for r in range(1, 4)}
    assert not suite & dagger
    assert len(suite) == 4 * 8 * 4


def test_episodes_are_the_same_alone_in_a_batch_and_over_threads() -> None:
    model = build_model(EXPERT, pd="torque")
    q0 = start_qpos(model)
    cfg = SuiteConfig(episodes=3, seconds=0.5)
    plan = episode_plan(cfg, "randomized", EXPERT, q0, 500)
    models = [apply(model, p["physics"]) for p in plan]
    targets = [p["target"] for p in plan]
    alone = run_groups(targets[1:2], 500, q0, models[1:2], {}, EXPERT)
    batch = run_groups(targets, 500, q0, models, {}, EXPERT, threads=2)
    np.testing.assert_array_equal(alone.qpos["expert"][0], batch.qpos["expert"][1])


@pytest.mark.slow
def test_the_expert_succeeds_and_standing_still_fails_on_nominal_random_paths() -> None:
    model = build_model(EXPERT, pd="torque")
    q0 = start_qpos(model)
    cfg = SuiteConfig(episodes=6, seconds=8.0)
    plan = episode_plan(cfg, "nominal", EXPERT, q0, 8000)
    runs = run_groups([p["target"] for p in plan], 8000, q0, [model] * 6, {}, EXPERT,
                      standing=True, threads=2, record_every=10)
    assert all(success(m) for m in runs.metrics["expert"])
    assert not any(success(m) for m in runs.metrics["standing"])
    assert all(m["progress_fraction"] < 0.1 for m in runs.metrics["standing"])


def test_same_seed_gives_the_same_json_whatever_the_threads(tiny_policies, tmp_path) -> None:
    tiny_policies = [str(p) for p in tiny_policies]
    cfg = SuiteConfig(episodes=3, seconds=0.6)
    a = run_condition(tiny_policies, [0, 1], "pushes", cfg)
    b = run_condition(tiny_policies, [0, 1], "pushes", dataclasses.replace(cfg, threads=2))
    for r in (a, b):
        r.pop("steps_per_s")
        r["suite_config"].pop("threads")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    other = run_condition(tiny_policies, [0, 1], "pushes", dataclasses.replace(cfg, seed=2))
    assert other["episodes"][0]["speed_m_s"] != a["episodes"][0]["speed_m_s"]


def test_suite_json_pairs_every_seed_with_the_expert(tiny_policies, tmp_path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("suite:\n  episodes: 4\n  seconds: 0.5\n"
                        "  randomized: {friction: [0.5, 0.6]}\n")
    out = tmp_path / "randomized.json"
    assert main(["suite", "--checkpoint", *map(str, tiny_policies), "--seeds", "3", "7",
                 "--condition", "randomized", "--out", str(out), "--config", str(cfg_file)]) == 0
    r = json.loads(out.read_text())
    assert r["seeds"] == [3, 7] and len(r["episodes"]) == 4
    for e in r["episodes"]:
        assert set(e["policy"]) == {"seed_3", "seed_7"}
        assert 0.5 <= e["physics"]["friction"] <= 0.6
        assert e["expert"]["success"] == success(e["expert"])
    assert r["policy"]["pooled"]["n"] == 8 and r["expert"]["n"] == 4
    k = sum(e["expert"]["success"] for e in r["episodes"])
    assert r["expert"]["successes"] == k and r["expert"]["ci95"] == list(wilson(k, 4))
    # the pooled policy interval counts episodes, not seeds x episodes, as independent trials
    ok = np.array([[e["policy"][n]["success"] for e in r["episodes"]]
                   for n in ("seed_3", "seed_7")])
    pooled = r["policy"]["pooled"]
    assert pooled["successes"] == ok.sum() and pooled["effective_n"] == effective_n(ok)
    assert pooled["ci95"] == list(wilson(ok.mean() * effective_n(ok), effective_n(ok)))
    # paired: policy (mean over seeds) - expert per episode, and each seed's discordant episodes
    x = np.array([e["expert"]["success"] for e in r["episodes"]])
    assert r["paired"]["success_diff"] == pytest.approx((ok.mean(axis=0) - x).mean())
    for row, m in zip(ok, r["paired"]["per_seed"], strict=True):
        assert (m["policy_only"], m["expert_only"]) == ((row & ~x).sum(), (~row & x).sum())
        assert m["mcnemar_p"] == mcnemar_exact(m["policy_only"], m["expert_only"])
    assert len({e["physics"]["friction"] for e in r["episodes"]}) == 4


def test_a_bad_suite_setting_is_one_line(tiny_policies, tmp_path, capsys) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("suite:\n  randomized: {friction: [1.0, 0.5]}\n")
    assert main(["suite", "--checkpoint", str(tiny_policies[0]), "--condition", "nominal", "--out",
                 str(tmp_path / "x.json"), "--config", str(cfg_file)]) == 2
    assert "suite.randomized.friction must be [low, high]" in capsys.readouterr().err


def test_the_split_suite_is_the_unsplit_one_bit_for_bit(tiny_policies, tmp_path) -> None:
    """suite.jobs: parts run apart and combined give the whole condition's JSON, every episode's
    figures included (each MLP row is the episode's whatever the part), via the CLI as the
    workflow runs it; parts of different runs or a missing part are refused."""
    ckpts = [str(p) for p in tiny_policies]
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("suite:\n  episodes: 5\n  seconds: 0.6\n")
    base = ["suite", "--checkpoint", *ckpts, "--seeds", "0", "1", "--baseline", *ckpts[::-1],
            "--condition", "pushes", "--config", str(cfg_file)]
    assert main([*base, "--out", str(tmp_path / "whole.json")]) == 0
    parts = [tmp_path / f"part_{k}_of_2.json" for k in range(2)]
    for k, out in enumerate(parts):
        assert main([*base, "--part", str(k), "--parts", "2", "--out", str(out)]) == 0
    assert [len(json.loads(p.read_text())["episodes"]) for p in parts] == [3, 2]
    assert main(["suite-combine", "--parts", *map(str, parts[::-1]),
                 "--out", str(tmp_path / "split.json")]) == 0
    whole, split = (json.loads((tmp_path / f).read_text()) for f in ("whole.json", "split.json"))
    for r in (whole, split):
        r.pop("steps_per_s")
    assert split == whole
    assert [e["episode"] for e in split["episodes"]] == list(range(5))
    assert "baseline" in split and "vs_baseline" in split
    # suite.jobs: 1, as the workflow runs it: one part of one, then its combination
    one = tmp_path / "part_0_of_1.json"
    assert main([*base, "--part", "0", "--parts", "1", "--out", str(one)]) == 0
    assert main(["suite-combine", "--parts", str(one), "--out", str(tmp_path / "one.json")]) == 0
    alone = json.loads((tmp_path / "one.json").read_text())
    alone.pop("steps_per_s")
    assert alone == whole

    with pytest.raises(ConfigError, match="each part exactly once"):
        combine([json.loads(parts[0].read_text())])
    other = json.loads(parts[1].read_text())
    other["suite_config"]["seed"] = 2
    with pytest.raises(ConfigError, match="different runs"):
        combine([json.loads(parts[0].read_text()), other])
    with pytest.raises(ConfigError, match="at most as many parts as episodes"):
        part_episodes(2, 0, 3)


def test_each_seeds_parts_and_the_experts_combine_to_the_whole_bit_for_bit(tiny_policies,
                                                                          tmp_path) -> None:
    """As the workflow runs the suite: per condition each seed's policies (with their baseline)
    without the expert, and the expert alone, in parts of their own; combined, every figure is
    that of one job running them all. Groups that clash are refused in one line."""
    ckpts = [str(p) for p in tiny_policies]
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("suite:\n  episodes: 4\n  seconds: 0.6\n")
    common = ["--condition", "randomized", "--config", str(cfg_file)]
    assert main(["suite", "--checkpoint", *ckpts, "--seeds", "0", "1", "--baseline",
                 *ckpts[::-1], *common, "--out", str(tmp_path / "whole.json")]) == 0
    parts = []
    for s in (0, 1):
        for k in range(2):
            parts.append(tmp_path / f"seed_{s}_{k}.json")
            assert main(["suite", "--checkpoint", ckpts[s], "--seeds", str(s), "--no-expert",
                         "--baseline", ckpts[1 - s], *common, "--part", str(k), "--parts", "2",
                         "--out", str(parts[-1])]) == 0
    parts.append(tmp_path / "expert.json")
    assert main(["suite", *common, "--part", "0", "--parts", "1", "--out", str(parts[-1])]) == 0
    seed_part = json.loads(parts[0].read_text())
    assert "expert" not in seed_part["episodes"][0]
    assert list(json.loads(parts[-1].read_text())["episodes"][0]["policy"]) == []
    assert main(["suite-combine", "--parts", *map(str, parts),
                 "--out", str(tmp_path / "split.json")]) == 0
    whole, split = (json.loads((tmp_path / f).read_text()) for f in ("whole.json", "split.json"))
    for r in (whole, split):
        r.pop("steps_per_s")
    assert split == whole
    assert json.dumps(split["episodes"]) == json.dumps(whole["episodes"])  # key order too

    loaded = [json.loads(p.read_text()) for p in parts]
    with pytest.raises(ConfigError, match="exactly one must"):
        combine(loaded[:4])
    with pytest.raises(ConfigError, match="exactly one must"):
        combine([*loaded, json.loads((tmp_path / "expert.json").read_text()) | {"seeds": [9]}])
    twice = [{**p, "seeds": [1, 0]} for p in loaded[2:4]]
    with pytest.raises(ConfigError, match="repeat"):
        combine([*loaded[:2], *twice, loaded[4]])
    with pytest.raises(ConfigError, match="different runs"):  # one seed, two checkpoints
        combine([*loaded[:2], *({**p, "seeds": [0]} for p in loaded[2:4]), loaded[4]])
    bare = [{**p, "baseline_checkpoints": []} for p in loaded[2:4]]
    with pytest.raises(ConfigError, match="baseline"):
        combine([*loaded[:2], *bare, loaded[4]])
    with pytest.raises(ConfigError, match="each part exactly once"):
        combine([loaded[0], *loaded[2:]])
    with pytest.raises(ConfigError, match="only the expert"):
        combine(loaded[4:])
    assert main(["suite", "--checkpoint", ckpts[0], "--no-expert", *common,
                 "--out", str(tmp_path / "x.json")]) == 2


def test_the_push_curve_kicks_the_same_episodes_harder_and_reports_each_size(tiny_policies
                                                                             ) -> None:
    """push_curve: nominal episode i at every size, the same kick times and directions scaled;
    its JSON has one point per size whose figures are those of that size's episodes alone, and
    the headline shows them as a table of their own, not pooled into the conditions' table."""
    cfg = SuiteConfig(episodes=4, seconds=3.0, push_sizes=(0.2, 1.5), push_episodes=2,
                      pushes=dataclasses.replace(SuiteConfig().pushes, interval_s=(0.5, 1.0)))
    q0 = start_qpos(build_model(EXPERT, pd="torque"))
    plan = episode_plan(cfg, "push_curve", EXPERT, q0, 3000)
    nominal = episode_plan(cfg, "nominal", EXPERT, q0, 3000)
    assert [p["kick_m_s"] for p in plan] == [0.2, 0.2, 1.5, 1.5]
    for i in range(2):
        small, big = plan[i], plan[2 + i]
        assert small["speed"] == big["speed"] == nominal[i]["speed"] and not small["physics"]
        assert len(small["pushes"]) >= 2
        assert [k for k, _ in small["pushes"]] == [k for k, _ in big["pushes"]]
        for (_, a), (_, b) in zip(small["pushes"], big["pushes"], strict=True):
            assert np.linalg.norm(a) == pytest.approx(0.2)
            assert b == pytest.approx(a * 1.5 / 0.2)
    ck = [str(p) for p in tiny_policies]
    r = run_condition(ck, [0, 1], "push_curve", cfg, baseline=ck[::-1])
    assert [p["kick_m_s"] for p in r["curve"]] == [0.2, 1.5]
    for p in r["curve"]:
        mine = [e for e in r["episodes"] if e["kick_m_s"] == p["kick_m_s"]]
        assert p["expert"]["n"] == 2 and p["policy"]["pooled"]["n"] == 4
        assert p["expert"]["successes"] == sum(e["expert"]["success"] for e in mine)
        assert p["baseline"]["policy"]["pooled"]["successes"] == sum(
            e["baseline"][n]["success"] for e in mine for n in ("seed_0", "seed_1"))
    # the 1.5 m/s kicks every 0.5-1 s fell the expert more often than the 0.2 m/s ones
    falls = [sum(e["expert"]["fell"] for e in r["episodes"] if e["kick_m_s"] == k)
             for k in (0.2, 1.5)]
    assert falls[0] <= falls[1] and falls[1] >= 1
    nominal_r = run_condition(ck, [0, 1], "nominal", dataclasses.replace(cfg, episodes=2))
    md = headline_markdown([], [nominal_r, r], {"date": "d", "cpu": "c", "cores": 2,
                                                 "torch": "t", "mujoco": "m"})
    assert "| nominal |" in md and "| push_curve |" not in md
    assert "| 1.5 | " in md and "imitated - expert" in md and "Push recovery" in md
    with pytest.raises(ConfigError, match="push_sizes"):
        SuiteConfig(push_sizes=())
