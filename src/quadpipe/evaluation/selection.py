"""Closed-loop checkpoint selection: best.pt is the candidate that walks best, not the lowest loss.

The validation loss is measured on labelled samples; it does not say how a policy walks once its
own errors feed back into its inputs, and closed-loop learning makes that differ from seed to
seed and from machine to machine (last-bit differences grow through DAgger's episodes). So, as
robomimic keeps the checkpoint with the best rollout success, every seed's candidates are rolled
out on validation episodes and the best by a closed-loop score becomes best.pt.

Candidates: every epoch of the last training stage (learn.imitation.candidates says why not earlier
ones).

Validation episodes: `select.episodes` random paths and speeds from the stream
`(SELECT_STREAM, select.seed)` (evaluation.episodes: disjoint from DAgger's and the suite's),
episode i under condition i mod 3 (nominal, randomised physics, pushes; the ranges are the
`randomize` section's), so a candidate that only walks on nominal physics or falls to a kick
loses. Every candidate faces the same episodes.

Score: successes (no fall, progress >= `select.success_progress`), then fewer falls, then the
mean tracking error over all episodes (a fallen episode counts its error up to the fall, which is
why falls rank before the error: a policy that drops at once stays near the start), then the later
candidate. Success comes first because a fall or a robot left behind is the failure users see;
the error breaks ties among the many candidates that rarely fail.

As jobs: part j of J rolls out candidates j, j + J, ... in one batched closed loop and writes
their per-episode results. A candidate's episodes are its own group in that loop (one MLP call
for its live episodes, `mj_step` per episode), so its results do not depend on which other
candidates share the job: the choice is the same bit for bit whatever J. A killed job is rerun
from scratch (it writes its file atomically); finished parts stay.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.config import ExpertConfig, check_ranges, from_mapping
from quadpipe.control.closed_loop import start_qpos
from quadpipe.control.follower import FollowerConfig
from quadpipe.data import dataset
from quadpipe.errors import ConfigError, QuadpipeError
from quadpipe.evaluation.episodes import CONDITIONS, draw_episode
from quadpipe.evaluation.metrics import success
from quadpipe.evaluation.rollouts import run_groups
from quadpipe.learn.imitation.candidates import candidates
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.model import build_model
from quadpipe.sim.physics import apply
from quadpipe.sim.randomize import RandomizeConfig

SELECT_STREAM = 0x5E1EC7  # tag in the selection episodes' entropy (evaluation.episodes)
PART_FORMAT = "quadpipe-selection-part-1"


class SelectionError(QuadpipeError):
    """Selection part files that are missing, unreadable, or do not make one whole selection."""


@dataclasses.dataclass(frozen=True)
class SelectConfig:
    """The `select` section of config.yaml (closed-loop checkpoint selection)."""

    episodes: int = 0  # validation episodes per candidate (30 in the study); 0 = off, best.pt by
    # the validation loss (why off by default: docs/training-findings.md, Finding 7)
    seconds: float = 8.0  # s per episode, from standing
    seed: int = 1  # the episodes' stream (with SELECT_STREAM: never DAgger's or the suite's)
    speed: tuple[float, float] = (0.15, 0.28)  # m/s of the target (the suite's range)
    success_progress: float = 0.9  # progress fraction a success needs (and no fall)
    lookahead: float = 0.4  # m, what the path is extended by (as the suite)
    record_every: int = 10  # ms between recorded poses (metrics at 100 Hz; whole steps)
    threads: int = 1  # simulation threads per job
    jobs: int = 2  # jobs per seed (the workflow's split; the choice does not depend on it)

    def __post_init__(self) -> None:
        if self.episodes < 0 or self.seconds <= 0 or self.record_every < 1 or self.jobs < 1:
            raise ConfigError("select.episodes must be >= 0, select.seconds > 0, "
                                 "select.record_every and select.jobs >= 1")
        check_ranges("select", self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> SelectConfig:
        return from_mapping(cls, data, "select")

    def result_keys(self) -> dict[str, Any]:
        """What a candidate's score depends on (not how the work is split or threaded)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("threads", "jobs")}


def episodes(cfg: SelectConfig, rand: RandomizeConfig, expert: ExpertConfig, q0: np.ndarray
             ) -> list:
    """The validation episodes: episode i under condition i mod 3 (module docstring)."""
    num = int(round(cfg.seconds / expert.dt))
    return [draw_episode((SELECT_STREAM, cfg.seed), i, CONDITIONS[i % len(CONDITIONS)],
                         cfg.speed, num, cfg.seconds, cfg.lookahead, rand.physics, rand.pushes,
                         expert, q0) for i in range(cfg.episodes)]


def score_part(stages: Sequence[dict[str, Any]], obs: ObsConfig, expert: ExpertConfig,
               cfg: SelectConfig, rand: RandomizeConfig, part: int, parts: int,
               out: str | Path | None = None) -> dict[str, Any]:
    """Roll out candidates part, part + parts, ... of the seed's `stages` on the validation
    episodes; their per-episode results (and the file `out`)."""
    if not 0 <= part < parts:
        raise SelectionError(f"part {part} is not in 0..{parts - 1}")
    if cfg.episodes == 0:
        raise ConfigError("select.episodes is 0: the closed-loop selection is off; set it (e.g. "
                          "30) to roll out the candidates")
    every = candidates(stages)
    mine = list(range(part, len(every), parts))
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    num = int(round(cfg.seconds / expert.dt))
    plan = episodes(cfg, rand, expert, q0)
    scored = []
    if mine and plan:
        policies = {}
        for k in mine:
            policy = Policy.from_architecture(stages[-1]["architecture"])
            policy.load_state_dict(every[k].model)
            policies[str(k)] = (policy.eval(), obs)
        runs = run_groups([e.target for e in plan], num, q0,
                          [apply(model, e.physics) if e.physics else model for e in plan],
                          policies, expert, FollowerConfig(lookahead=cfg.lookahead),
                          pushes=[e.pushes for e in plan], threads=cfg.threads,
                          record_every=expert.sim.steps(cfg.record_every), with_expert=False)
        for k in mine:
            rows = [{"condition": e.condition, "success": success(m, cfg.success_progress),
                     "fell": m["fell"], "mean_tracking_error_m": m["mean_tracking_error_m"],
                     "progress_fraction": m["progress_fraction"]}
                    for e, m in zip(plan, runs.metrics[str(k)], strict=True)]
            c = every[k]
            scored.append({"index": k, "round": c.round, "epoch": c.epoch,
                           "valid_loss": c.valid_loss, **_summary(rows), "episodes": rows})
    result = {"format": PART_FORMAT, "seed": int(stages[-1]["seed"]), "part": part,
              "parts": parts, "num_candidates": len(every), "config": cfg.result_keys(),
              "randomize": rand.ranges(), "stages": [s["fingerprint"] for s in stages],
              "candidates": scored}
    if out is not None:
        dataset.write_json(result, out, indent=1)
    return result


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A candidate's score and its parts per condition."""
    by = {c: [r for r in rows if r["condition"] == c] for c in CONDITIONS}
    return {"successes": int(sum(r["success"] for r in rows)), "n": len(rows),
            "falls": int(sum(r["fell"] for r in rows)),
            "mean_tracking_error_m": float(np.mean([r["mean_tracking_error_m"] for r in rows])),
            "successes_by_condition": {c: int(sum(r["success"] for r in v))
                                       for c, v in by.items() if v}}


def rank_key(c: Mapping[str, Any]) -> tuple:
    """Sort key, best first: most successes, fewest falls, lowest mean tracking error, latest."""
    return (-c["successes"], c["falls"], c["mean_tracking_error_m"], -c["round"], -c["epoch"])


def choose(part_files: Sequence[str | Path]) -> dict[str, Any]:
    """The selection from a seed's part files (any order): every candidate's score (in
    candidate order, without per-episode rows) and the chosen one."""
    parts = [_load_part(Path(p)) for p in part_files]
    if not parts:
        raise SelectionError("no selection part files given")
    first = parts[0]
    for p, f in zip(parts, part_files, strict=True):
        for key in ("seed", "parts", "num_candidates", "config", "randomize", "stages"):
            if p[key] != first[key]:
                raise SelectionError(f"{f}: its {key} differs from {part_files[0]}'s; rerun the "
                                     "selection jobs of this seed")
    got = sorted((c for p in parts for c in p["candidates"]), key=lambda c: c["index"])
    if sorted(p["part"] for p in parts) != list(range(first["parts"])) or \
            [c["index"] for c in got] != list(range(first["num_candidates"])):
        raise SelectionError(f"the part files {', '.join(map(str, part_files))} are not parts "
                             f"0..{first['parts'] - 1} of one selection; rerun them")
    table = [{k: v for k, v in c.items() if k != "episodes"} for c in got]
    best = min(table, key=rank_key) if table else None
    return {"method": "closed_loop", "seed": first["seed"], "config": first["config"],
            "randomize": first["randomize"], "stages": first["stages"], "chosen": best,
            "candidates": table}


def _load_part(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SelectionError(f"{path}: no such selection part; run `quadpipe select` first")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SelectionError(f"{path}: unreadable selection part ({exc}); rerun it") from exc
    if not isinstance(data, dict) or data.get("format") != PART_FORMAT:
        raise SelectionError(f"{path}: not a quadpipe selection part (expected format "
                             f"{PART_FORMAT}); rerun it")
    return data
