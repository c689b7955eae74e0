"""The evaluation suite: many held-out random-path episodes per condition, policy vs expert, paired.

Episode i of the suite is the same path and target speed in every condition and for every training
seed (common random numbers), so conditions and seeds are compared on identical tasks; within a
condition the policy of every seed and the expert face the same physics draw and the same pushes.

Random streams (evaluation.episodes). Episode i's path and speed come from
`SeedSequence(entropy=(SUITE_STREAM, suite.seed), spawn_key=(i, 0))`, its physics and pushes in
condition c from spawn key (i, 1 + c). DAgger's entropy carries DAGGER_STREAM and the checkpoint
selection's SELECT_STREAM, so none of them ever starts from the suite's state whatever the seeds:
the suite's paths are held out from every path the policy was trained or selected on. Paths are
drawn like DAgger's (control.paths.random_path: straight runs, arcs, corners), speeds uniformly in
the expert's envelope. The push curve kicks nominal episode i at every size of `push_sizes`, the
kicks' times and directions from spawn key (i, PUSH_CURVE_KEY), the same at every size.

Figures: per episode the metrics of evaluation.metrics; success = no fall and progress >= 0.9.
The episode is the independent unit: the expert and every seed's policy share it, so outcomes on
one episode move together. The expert's and each seed's success rates get Wilson 95 % intervals
(one trial per episode); the policy's rate pooled over seeds gets a Wilson interval at the
clustered outcomes' effective number of trials, not at S x E (`paired_success`); policy vs expert
is one paired figure, the success difference with an episode-bootstrap interval and exact
McNemar tests. The policy/expert tracking-error ratio is taken per episode where both walked (no
fall), and its median and mean get bootstrap 95 % intervals that resample seeds and episodes
(evaluation.intervals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.config import PROFILES, ExpertConfig, check_ranges, from_mapping_nested
from quadpipe.control.closed_loop import start_qpos
from quadpipe.control.follower import FollowerConfig
from quadpipe.data import dataset
from quadpipe.errors import ConfigError
from quadpipe.evaluation.episodes import CONDITIONS, draw_episode
from quadpipe.evaluation.intervals import (
    bootstrap,
    cluster_bootstrap,
    effective_n,
    mcnemar_exact,
    wilson,
)
from quadpipe.evaluation.metrics import success
from quadpipe.evaluation.rollouts import EXPERT, run_groups
from quadpipe.learn.policy import load_for
from quadpipe.sim.model import build_model
from quadpipe.sim.physics import PhysicsRanges, PushRanges, apply, draw_pushes

BASELINE = "baseline"  # the imitated policies evaluated beside fine-tuned ones
# the nominal episodes on the original's physics: a policy that walks only on the cheap physics
# of its training shows up here (paired with the expert on the same physics)
FIDELITY = "fidelity"
# push recovery as a curve: nominal episodes kicked at fixed sizes, the same kicks' times and
# directions at every size, so success against size is read on one set of episodes
PUSH_CURVE = "push_curve"
SUITE_CONDITIONS = (*CONDITIONS, FIDELITY, PUSH_CURVE)
# spawn key (i, PUSH_CURVE_KEY) draws episode i's kick times and directions: after the keys
# (i, 1 + c) of the drawn conditions (evaluation.episodes)
PUSH_CURVE_KEY = 1 + len(CONDITIONS)
SUITE_STREAM = 0x5717E  # tag in every suite seed's entropy: never equal to a DAgger stream
METRIC_KEYS = ("fell", "fall_time_s", "mean_tracking_error_m", "mean_cross_track_error_m",
               "progress_fraction", "success")


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
    """The `suite` section of config.yaml."""

    episodes: int = 100  # a few discordant pairs need many episodes to be told apart
    seconds: float = 10.0  # s per episode, from standing
    seed: int = 1  # evaluation seed (its stream is disjoint from DAgger's: module docstring)
    speed: tuple[float, float] = (0.15, 0.28)  # m/s, the target; the expert walks 0.27-0.29
    success_progress: float = 0.9  # progress fraction a success needs (and no fall)
    lookahead: float = 0.4  # m, the expert follower's look-ahead
    record_every: int = 10  # ms between recorded poses (metrics at 100 Hz; whole steps)
    threads: int = 1  # simulation threads per condition job
    jobs: int = 1  # jobs per condition for each seed's policies, and for the expert
    conditions: tuple[str, ...] = SUITE_CONDITIONS
    fidelity_episodes: int = 50  # the fidelity condition's: nominal's first n (<= episodes)
    fidelity_profile: str = "original"  # the physics the fidelity condition runs on
    push_sizes: tuple[float, ...] = (0.6, 0.8, 0.9, 1.0, 1.2)  # m/s, push_curve's kick sizes
    push_episodes: int = 50  # push_curve's episodes per size (nominal's first n, kicked)
    randomized: PhysicsRanges = PhysicsRanges()
    pushes: PushRanges = PushRanges()

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.seconds <= 0 or self.record_every < 1 or self.jobs < 1:
            raise ConfigError("suite.episodes, suite.jobs and suite.record_every must be >= 1, "
                              "suite.seconds > 0")
        if self.fidelity_episodes < 1:
            raise ConfigError(f"suite.fidelity_episodes must be >= 1, got "
                              f"{self.fidelity_episodes}")
        if self.push_episodes < 1 or not self.push_sizes or min(self.push_sizes) < 0:
            raise ConfigError(f"suite.push_episodes must be >= 1 and suite.push_sizes a list of "
                              f"kick sizes >= 0 m/s, got {self.push_episodes} and "
                              f"{list(self.push_sizes)}")
        if self.fidelity_profile not in PROFILES:
            raise ConfigError(f"suite.fidelity_profile must be one of {', '.join(PROFILES)}, "
                              f"got {self.fidelity_profile!r}")
        for c in self.conditions:
            check_suite_condition(c)
        check_ranges("suite", self, skip=("conditions", "push_sizes"))
        check_ranges("suite.randomized", self.randomized)
        check_ranges("suite.pushes", self.pushes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> SuiteConfig:
        return from_mapping_nested(cls, data, "suite",
                                   {"randomized": PhysicsRanges, "pushes": PushRanges})


def check_suite_condition(name: str) -> str:
    if name not in SUITE_CONDITIONS:
        raise ConfigError(f"unknown suite condition {name!r}; choose from "
                          f"{', '.join(SUITE_CONDITIONS)}")
    return name


def condition_episodes(cfg: SuiteConfig, condition: str) -> int:
    """How many episodes `condition` runs: the fidelity condition's at most the others', the push
    curve's `push_episodes` per size."""
    if condition == PUSH_CURVE:
        return cfg.push_episodes * len(cfg.push_sizes)
    return min(cfg.fidelity_episodes, cfg.episodes) if condition == FIDELITY else cfg.episodes


def condition_physics(cfg: SuiteConfig, condition: str, expert: ExpertConfig) -> ExpertConfig:
    """The expert on the physics `condition` runs: the run's own, or for the fidelity condition
    the profile `fidelity_profile` (the original's 1 kHz physics by default)."""
    if condition != FIDELITY:
        return expert
    return dataclasses.replace(expert, sim=PROFILES[cfg.fidelity_profile])


def episode_plan(cfg: SuiteConfig, condition: str, expert: ExpertConfig, q0: np.ndarray,
                 num_steps: int) -> list[dict[str, Any]]:
    """Per episode: its target, physics draw (or None) and pushes, from the suite's streams.
    The fidelity condition's episodes are the nominal ones (same paths, speeds, no pushes); the
    push curve's episode k * push_episodes + i is nominal episode i kicked at size k (`kicks`)."""
    if condition == PUSH_CURVE:
        base = []
        for i in range(cfg.push_episodes):
            e = draw_episode((SUITE_STREAM, cfg.seed), i, "nominal", cfg.speed, num_steps,
                             cfg.seconds, cfg.lookahead, cfg.randomized, cfg.pushes, expert, q0)
            base.append({"target": e.target, "speed": e.speed, "physics": None,
                         "pushes": kicks(cfg, i, expert.dt)})
        return [{**b, "kick_m_s": size, "pushes": [(k, size * unit) for k, unit in b["pushes"]]}
                for size in cfg.push_sizes for b in base]
    plan = []
    drawn = "nominal" if condition == FIDELITY else condition
    for i in range(condition_episodes(cfg, condition)):
        e = draw_episode((SUITE_STREAM, cfg.seed), i, drawn, cfg.speed, num_steps,
                         cfg.seconds, cfg.lookahead, cfg.randomized, cfg.pushes, expert, q0)
        plan.append({"target": e.target, "speed": e.speed, "physics": e.physics,
                     "pushes": e.pushes})
    return plan


def kicks(cfg: SuiteConfig, i: int, dt: float) -> list[tuple[int, np.ndarray]]:
    """Episode i's push-curve kicks as unit vectors: times every `pushes.interval_s`, directions
    uniform, from spawn key (i, PUSH_CURVE_KEY); each size scales the same kicks."""
    rng = np.random.default_rng(np.random.SeedSequence((SUITE_STREAM, cfg.seed),
                                                       spawn_key=(i, PUSH_CURVE_KEY)))
    return draw_pushes(rng, PushRanges(cfg.pushes.interval_s, (1.0, 1.0)), cfg.seconds, dt)


def part_episodes(episodes: int, part: int, parts: int) -> np.ndarray:
    """The suite episodes job `part` of `parts` runs: a contiguous share, the first ones one
    longer where they do not divide evenly."""
    if not 0 <= part < parts or parts > episodes:
        raise ConfigError(f"suite part {part} of {parts} for {episodes} episodes: the part must "
                          f"be in 0..{parts - 1}, and there are at most as many parts as episodes")
    return np.array_split(np.arange(episodes), parts)[part]


def run_part(checkpoints: list[str | Path], seeds: list[int], condition: str,
             cfg: SuiteConfig = SuiteConfig(), expert: ExpertConfig = ExpertConfig(),
             baseline: list[str | Path] | None = None, part: int = 0, parts: int = 1,
             with_expert: bool = True) -> dict[str, Any]:
    """Every seed's policy (and baseline) and the expert on one part of the condition's episodes.

    A part may run some of the controllers only (`combine` joins them episode by episode): the
    policies of some seeds without the expert (with_expert False), or the expert alone (no
    checkpoints). The workflow runs each seed's policies and the expert as parts of their own,
    so a seed's suite starts when its own policy is ready, not when the slowest seed's is.

    The policies must have been trained on `expert.sim`; the fidelity condition then runs them
    and the expert on its own profile (condition_physics), each policy at its own decision rate
    with its torques held between decisions, and says so in the result (`physics`).

    Every part draws the whole plan (cheap) and runs its share; each policy's MLP takes the
    episode's row of a batch of all `cfg.episodes` rows (evaluation.rollouts.run_groups), so an
    episode's figures are the same bits whichever part runs it: `combine` of any split equals
    the unsplit condition (tested).
    """
    if len(seeds) != len(checkpoints) or (baseline and len(baseline) != len(seeds)):
        raise ConfigError(f"{len(checkpoints)} checkpoints and "
                          f"{len(baseline or [])} baselines but {len(seeds)} seeds")
    if not checkpoints and not with_expert:
        raise ConfigError("a suite part runs the expert, policies or both: give checkpoints or "
                          "leave the expert in")
    episodes_n = condition_episodes(cfg, check_suite_condition(condition))
    mine = part_episodes(episodes_n, part, parts)
    names = [f"seed_{s}" for s in seeds]
    policies = {n: load_for(c, expert)[:2] for n, c in zip(names, checkpoints, strict=True)}
    base_names = [f"{BASELINE}_seed_{s}" for s in seeds] if baseline else []
    for n, c in zip(base_names, baseline or [], strict=True):
        policies[n] = load_for(c, expert)[:2]
    trained = expert
    expert = condition_physics(cfg, condition, expert)
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    num = int(round(cfg.seconds / expert.dt))
    whole = episode_plan(cfg, condition, expert, q0, num)
    plan = [whole[i] for i in mine]
    models = [apply(model, p["physics"]) if p["physics"] else model for p in plan]
    runs = run_groups([p["target"] for p in plan], num, q0, models, policies, expert,
                      FollowerConfig(lookahead=cfg.lookahead), pushes=[p["pushes"] for p in plan],
                      threads=cfg.threads, record_every=expert.sim.steps(cfg.record_every),
                      rows=mine, batch=episodes_n, cross_profile=condition == FIDELITY,
                      with_expert=with_expert)
    for group in runs.metrics.values():
        for m in group:
            m["success"] = success(m, cfg.success_progress)
    episodes = []
    for j, (i, p) in enumerate(zip(mine.tolist(), plan, strict=True)):
        episodes.append({
            "episode": i, "speed_m_s": p["speed"],
            "physics": p["physics"].as_dict() if p["physics"] else None,
            "pushes": [[step * expert.dt, *dv[:2].tolist()] for step, dv in p["pushes"]],
            **({"kick_m_s": p["kick_m_s"]} if "kick_m_s" in p else {}),
            **({EXPERT: _pick(runs.metrics[EXPERT][j])} if with_expert else {}),
            "policy": {n: _pick(runs.metrics[n][j]) for n in names}})
        if base_names:
            episodes[-1][BASELINE] = {n: _pick(runs.metrics[b][j])
                                      for n, b in zip(names, base_names, strict=True)}
    return {"condition": condition, "seeds": list(seeds),
            "checkpoints": [str(c) for c in checkpoints],
            "baseline_checkpoints": [str(c) for c in baseline or []],
            "with_expert": with_expert,
            "suite_config": dataclasses.asdict(cfg), "part": part, "parts": parts,
            "physics": physics_note(trained, expert),
            "steps_per_s": runs.steps_per_s, "episodes": episodes}


def physics_note(trained: ExpertConfig, run: ExpertConfig) -> dict[str, Any]:
    """What a condition's result says of its physics: the profile the episodes ran on and the
    one the policies were trained on (they differ only in the fidelity condition)."""
    return {"episodes": dataclasses.asdict(run.sim), "policies": dataclasses.asdict(trained.sim),
            "cross_profile": trained.sim != run.sim,
            "policy_decision_ms": 1e3 * trained.dt, "physics_step_ms": 1e3 * run.dt}


def _same_run(suite_config: dict[str, Any]) -> dict[str, Any]:
    """What every part of one condition must agree on (threads and jobs change no figure)."""
    return {k: v for k, v in suite_config.items() if k not in ("threads", "jobs")}


def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The condition's JSON (figures over all episodes) from the parts `run_part` wrote.

    Parts form groups by the controllers they ran (their seeds, and whether the expert): each
    group's parts must cover the episodes once, exactly one group must have run the expert, and
    no seed may be in two groups. Seeds come in the order of their groups' first parts.
    """
    if not parts:
        raise ConfigError("no suite parts to combine")
    first = parts[0]
    for p in parts[1:]:
        if p["condition"] != first["condition"] or \
                _same_run(p["suite_config"]) != _same_run(first["suite_config"]):
            raise ConfigError(f"suite parts of different runs: part {p['part']} differs from "
                              f"part {first['part']} in its condition or settings; rerun the "
                              f"condition's parts together")
    groups: dict[tuple[tuple[int, ...], bool], list[dict[str, Any]]] = {}
    for p in parts:
        groups.setdefault((tuple(p["seeds"]), p.get("with_expert", True)), []).append(p)
    n = condition_episodes(SuiteConfig.from_mapping(first["suite_config"]), first["condition"])
    joined = [_group_episodes(g, n) for g in groups.values()]
    seeds = [s for key in groups for s in key[0]]
    if not seeds:
        raise ConfigError("suite parts: only the expert's; combine them with the policies' parts")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"suite parts: seeds {seeds} repeat across parts that ran different "
                          f"controllers; each seed's policy once per condition")
    experts = sum(with_expert for _, with_expert in groups)
    if experts != 1:
        raise ConfigError(f"suite parts: {experts} groups of parts ran the expert; exactly one "
                          f"must")
    with_base = {bool(g[0]["baseline_checkpoints"]) for key, g in groups.items() if key[0]}
    if len(with_base) > 1:
        raise ConfigError("suite parts: some seeds have baseline policies beside them, others "
                          "not; rerun the condition's parts together")
    baseline = with_base == {True}
    episodes = [_join(row, baseline) for row in zip(*joined, strict=True)]
    names = [f"seed_{s}" for s in seeds]
    result = {"condition": first["condition"], "seeds": seeds,
              "checkpoints": [c for g in groups.values() for c in g[0]["checkpoints"]]}
    if "physics" in first:
        result["physics"] = first["physics"]
    result.update(suite_config=first["suite_config"], **summarise(episodes, names),
                  steps_per_s=float(np.mean([p["steps_per_s"] for p in parts])))
    if baseline:
        result[BASELINE] = {
            "checkpoints": [c for g in groups.values() for c in g[0]["baseline_checkpoints"]],
            **baseline_summary(episodes, names)}
        result["vs_baseline"] = versus(episodes, names)
    if first["condition"] == PUSH_CURVE:
        result["curve"] = curve(episodes, names, baseline)
    result["episodes"] = episodes
    return result


def _group_episodes(group: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Episodes 0..n-1 of one group of parts (the same controllers), in order."""
    first = group[0]
    keys = ("checkpoints", "baseline_checkpoints", "parts")
    for p in group[1:]:
        if any(p[k] != first[k] for k in keys):
            raise ConfigError(f"suite parts of different runs: seeds {first['seeds']}' part "
                              f"{p['part']} differs from their part {first['part']} in its "
                              f"checkpoints or number of parts; rerun the condition's parts "
                              f"together")
    have = sorted(p["part"] for p in group)
    if have != list(range(first["parts"])):
        raise ConfigError(f"suite parts {have} of {first['parts']} (seeds {first['seeds']}): "
                          f"each part exactly once")
    episodes = [e for p in sorted(group, key=lambda p: p["part"]) for e in p["episodes"]]
    if [e["episode"] for e in episodes] != list(range(n)):
        raise ConfigError("suite parts do not cover the episodes 0..N-1 once each")
    return episodes


def _join(row: tuple[dict[str, Any], ...], baseline: bool) -> dict[str, Any]:
    """One episode's record from each group's: the episode's draw, the expert's metrics, every
    seed's policy (and baseline) metrics, in the order of a part that ran them all."""
    draw = {k: v for k, v in row[0].items() if k not in (EXPERT, "policy", BASELINE)}
    out = {**draw, EXPERT: next(e[EXPERT] for e in row if EXPERT in e),
           "policy": {n: m for e in row for n, m in e["policy"].items()}}
    if baseline:
        out[BASELINE] = {n: m for e in row for n, m in e.get(BASELINE, {}).items()}
    return out


def baseline_summary(episodes: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """The baseline (imitated) policies' figures against the expert, as `summarise` gives the
    policy's."""
    base = summarise([{**e, "policy": e[BASELINE]} for e in episodes], names)
    return {k: base[k] for k in ("policy", "paired", "ratio")}


def curve(episodes: list[dict[str, Any]], names: list[str], baseline: bool
          ) -> list[dict[str, Any]]:
    """The push curve: per kick size, its episodes' figures (`summarise`: the expert's and the
    pooled policy's success, their paired difference, the error ratio), and the baseline's."""
    out = []
    for size in sorted({e["kick_m_s"] for e in episodes}):
        mine = [e for e in episodes if e["kick_m_s"] == size]
        point = {"kick_m_s": size, **summarise(mine, names)}
        if baseline:
            point[BASELINE] = baseline_summary(mine, names)
            point["vs_baseline"] = versus(mine, names)
        out.append(point)
    return out


def run_condition(checkpoints: list[str | Path], seeds: list[int], condition: str,
                  cfg: SuiteConfig = SuiteConfig(), expert: ExpertConfig = ExpertConfig(),
                  out: str | Path | None = None,
                  baseline: list[str | Path] | None = None) -> dict[str, Any]:
    """Every seed's policy and the expert on the suite's episodes of `condition`; the JSON.

    baseline: one more checkpoint per seed (the imitated policies a fine-tuning started from),
    run on the same episodes; the JSON then has their figures under "baseline" and the policy
    vs baseline comparison, seed by seed and episode by episode, under "vs_baseline".
    """
    result = combine([run_part(checkpoints, seeds, condition, cfg, expert, baseline)])
    if out is not None:
        dataset.write_json(result, out)
    return result


def _pick(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in METRIC_KEYS}


def rate(flags: list[bool]) -> dict[str, Any]:
    """Successes, n, rate and its Wilson 95 % interval."""
    k, n = int(sum(flags)), len(flags)
    return {"successes": k, "n": n, "rate": k / n if n else None, "ci95": list(wilson(k, n))}


def paired_success(policy_ok: np.ndarray, expert_ok: np.ndarray, names: list[str]
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pooled policy rate, paired comparison) of outcomes policy_ok (S, E) and expert_ok (E,).

    Why episodes are the unit: episode i's path, physics and pushes are the same for the expert
    and every seed, so its outcomes are correlated (a hard episode fails them all) and S seeds x E
    episodes are not S * E independent trials.

    Pooled policy rate: successes / (S * E) with a Wilson interval at Korn and Graubard's
    effective number of trials (`effective_n`, between E and S * E) rather than a percentile
    bootstrap, which collapses to [1, 1] at 100 % success, the usual case of a good policy;
    `ci95_bootstrap` is the episode-cluster percentile bootstrap, for comparison.

    Paired difference: d_i = (policy success on episode i, mean over seeds) - (expert success on
    i); success_diff = mean of d_i (= pooled policy rate - expert rate), its 95 % interval a
    percentile bootstrap over episodes (the expert and all seeds of an episode drawn together;
    fixed seed). The interval is [d, d] when no episode differs: read it with the p-value.

    McNemar: per seed, the exact test on that seed's discordant episodes (policy_only = policy
    succeeded where the expert failed, expert_only = the reverse). The seeds share the expert's
    outcomes and the episodes, so their discordant pairs are not independent and McNemar on the
    counts summed over seeds would treat one hard episode as S independent pieces of evidence
    (too small a p). The combined `mcnemar_p` is the Bonferroni one, min(1, S * min over seeds),
    valid whatever the dependence between seeds: it tests "no seed differs from the expert". The
    size of the seed-averaged difference is what success_diff_ci95 gives.
    """
    pol = np.atleast_2d(np.asarray(policy_ok, dtype=bool))
    exp = np.asarray(expert_ok, dtype=bool)
    s, e = pol.shape
    k, n_eff = int(pol.sum()), effective_n(pol)
    pooled = {"successes": k, "n": s * e, "rate": k / (s * e) if e else None,
              "ci95": list(wilson(k / (s * e) * n_eff, n_eff)) if e else [0.0, 1.0],
              "effective_n": n_eff,
              "ci95_bootstrap": _list(cluster_bootstrap(pol.mean(axis=0)))}
    d = pol.mean(axis=0) - exp
    per_seed = []
    for name, row in zip(names, pol, strict=True):
        b, c = int((row & ~exp).sum()), int((~row & exp).sum())
        per_seed.append({"seed": name, "policy_only": b, "expert_only": c,
                         "mcnemar_p": mcnemar_exact(b, c)})
    # from the counts, not d.mean(): a mean of thirds is -7e-18 where the counts are equal
    diff = (k - s * int(exp.sum())) / (s * e) if e else None
    paired = {"episodes": e, "success_diff": diff,
              "success_diff_ci95": _list(cluster_bootstrap(d)),
              "mcnemar_p": min(1.0, s * min((p["mcnemar_p"] for p in per_seed), default=1.0)),
              "mcnemar_combination": "bonferroni over seeds",
              "per_seed": per_seed}
    return pooled, paired


def error_ratios(episodes: list[dict[str, Any]], names: list[str], reference) -> np.ndarray:
    """ratio[s, i]: the mean tracking error of seed s's policy on episode i over that of
    reference(episode, seed name) (the expert, or the seed's baseline); NaN unless both walked."""
    ratio = np.full((len(names), len(episodes)), np.nan)
    for i, e in enumerate(episodes):
        for s, n in enumerate(names):
            p, x = e["policy"][n], reference(e, n)
            if not p["fell"] and not x["fell"]:
                ratio[s, i] = p["mean_tracking_error_m"] / max(x["mean_tracking_error_m"], 1e-9)
    return ratio


def summarise(episodes: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Success rates with Wilson intervals, policy vs expert paired by episode (success difference,
    McNemar), and paired error ratios with bootstrap intervals (`paired_success`)."""
    expert_ok = [e[EXPERT]["success"] for e in episodes]
    pooled, paired = paired_success(
        np.array([[e["policy"][n]["success"] for e in episodes] for n in names], dtype=bool
                 ).reshape(len(names), len(episodes)), np.array(expert_ok, dtype=bool), names)
    ratio = error_ratios(episodes, names, lambda e, n: e[EXPERT])
    per_seed = []
    for s, n in enumerate(names):
        r = ratio[s][np.isfinite(ratio[s])]
        per_seed.append({"seed": n, **rate([e["policy"][n]["success"] for e in episodes]),
                         "falls": int(sum(e["policy"][n]["fell"] for e in episodes)),
                         "ratio_median": float(np.median(r)) if len(r) else None,
                         "ratio_mean": float(np.mean(r)) if len(r) else None})
    rates = np.array([p["rate"] for p in per_seed])
    finite = ratio[np.isfinite(ratio)]
    return {
        "expert": {**rate(expert_ok), "falls": int(sum(e[EXPERT]["fell"] for e in episodes)),
                   "mean_tracking_error_m": float(np.mean(
                       [e[EXPERT]["mean_tracking_error_m"] for e in episodes]))},
        "policy": {
            "pooled": pooled,
            "per_seed": per_seed,
            "success_rate_mean_over_seeds": float(rates.mean()),
            "success_rate_std_over_seeds": float(rates.std(ddof=1)) if len(rates) > 1 else 0.0},
        "paired": paired,
        "ratio": {
            "pairs": int(len(finite)),
            "median": float(np.median(finite)) if len(finite) else None,
            "median_ci95": _list(bootstrap(ratio, np.median)),
            "mean": float(np.mean(finite)) if len(finite) else None,
            "mean_ci95": _list(bootstrap(ratio, np.mean))},
    }


def versus(episodes: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Each seed's policy against its own baseline (fine-tuned vs imitated), paired by episode.

    success_diff: mean over episodes of (policy success - baseline success, averaged over
    seeds), with the episode-bootstrap interval as in `paired_success`; per seed the discordant
    episodes and McNemar's exact p. ratio: policy / baseline tracking error per episode and seed
    where neither fell, its median with a seed-and-episode bootstrap interval.
    """
    pol = np.array([[e["policy"][n]["success"] for e in episodes] for n in names], dtype=bool)
    base = np.array([[e[BASELINE][n]["success"] for e in episodes] for n in names], dtype=bool)
    d = (pol.astype(float) - base).mean(axis=0)
    ratio = error_ratios(episodes, names, lambda e, n: e[BASELINE][n])
    per_seed = []
    for s, n in enumerate(names):
        b, c = int((pol[s] & ~base[s]).sum()), int((~pol[s] & base[s]).sum())
        r = ratio[s][np.isfinite(ratio[s])]
        per_seed.append({"seed": n, "policy_only": b, "baseline_only": c,
                         "mcnemar_p": mcnemar_exact(b, c),
                         "ratio_median": float(np.median(r)) if len(r) else None})
    finite = ratio[np.isfinite(ratio)]
    return {"success_diff": (int(pol.sum()) - int(base.sum())) / pol.size if len(d) else None,
            "success_diff_ci95": _list(cluster_bootstrap(d)),
            "ratio": {"pairs": int(len(finite)),
                      "median": float(np.median(finite)) if len(finite) else None,
                      "median_ci95": _list(bootstrap(ratio, np.median))},
            "per_seed": per_seed}


def _list(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else list(ci)
