"""DAgger on random paths: label the states the policy visits with the path-following expert.

Behaviour cloning sees only the expert's own states, and only paths made of the dataset's
commands. In closed loop on a path the policy's small errors take it to states it has never seen
(docs/training-findings.md, Finding 4). DAgger closes that gap: run the policy on a path, ask the
expert at every state the policy reached what it would do there, and train on those pairs too.

The expert here is the evaluation's path follower (control.follower.Steering: the CPG with its
turning knobs steered toward a look-ahead point every 25 ms), run along the policy's own states,
so its label is exact and cheap: the knob filter and CPG give the joint reference ref(t), and the
torque is clamp(Kp (ref(t) - q) - Kd qd) at the visited state. The paths are random pieces of
straight runs, arcs and sharp corners (control.paths.random_path), not the evaluation paths, at
random speeds; each episode starts standing, as the evaluation does, and observes the moving
target exactly as the evaluation does (learn.controller, control.closed_loop).

In round r a share beta / 2**(r-1) of the episodes is driven by the expert itself (fresh
demonstrations of path following), the rest by the policy.

With `randomize.dagger` every episode also has its own physics and pushes (quadpipe.sim.randomize,
drawn from the stream `(r, i, 1)` beside its path's `(r, i)`, so the paths stay those of nominal
DAgger): the policy meets the states that other masses, frictions, motors, slopes and kicks lead
to, and the expert's label there says how to recover. Labels are the expert's torque *command*
(what the policy outputs); a weak motor applies strength x that, to both.

A round's episodes can be collected by several jobs (`part` of `parts`, workflow key
`train.dagger_jobs`) and the samples are the same bit for bit however they are split:
- episode i draws its path and speed from its own stream, `SeedSequence((DAGGER_STREAM, seed),
  spawn_key=(round, i))`, and is expert- or policy-driven by its global index i;
- a job takes episodes i = part, part + parts, ... (every job gets expert- and policy-driven ones);
- the MLP runs on a batch of fixed size (the round's episode count) with episode i at row i, rows
  of episodes of other jobs or already fallen left at zero: on this CPU a matrix product's last
  bits depend on the batch size, so a smaller batch would change the policy's torques;
- samples are stored with their episode index and ordered by (episode, step) when merged (`merge`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import Episodes, run, start_qpos
from quadpipe.control.follower import ExpertController, FollowerConfig, Target
from quadpipe.control.paths import ARC_ANGLE_DEG, random_path
from quadpipe.data import dataset
from quadpipe.errors import QuadpipeError
from quadpipe.learn.controller import PolicyController
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim import randomize
from quadpipe.sim.model import build_model
from quadpipe.sim.physics import PhysicsDraw, apply
from quadpipe.sim.randomize import RandomizeConfig

SPEED_RANGE = (0.15, 0.35)  # m/s of the target; the evaluation's default is 0.25
DAGGER_STREAM = 0xDA66E  # tag in every DAgger seed's entropy (the suite's is SUITE_STREAM)
PART_FORMAT = "quadpipe-dagger-part-1"


class CollectionError(QuadpipeError):
    """DAgger part files that are missing, unreadable or do not make up one whole round."""


@dataclasses.dataclass
class Collected:
    """Samples of some episodes of one round, each sample tagged with its episode.

    x (N, obs.dim), y (N, 12) float32, episode (N,) int64, in (episode, step) order once merged.
    Per episode of the round (E,): sq (float64, N m squared summed over the policy-driven steps),
    count (policy-driven torque values compared), fell, by_policy, and mine (collected here).
    """

    x: np.ndarray
    y: np.ndarray
    episode: np.ndarray
    sq: np.ndarray
    count: np.ndarray
    fell: np.ndarray
    by_policy: np.ndarray
    mine: np.ndarray

    @property
    def fall_fraction(self) -> float:
        """Share of the policy-driven episodes that fell."""
        p = self.by_policy & self.mine
        return float(np.mean(self.fell[p])) if p.any() else 0.0

    @property
    def torque_rmse(self) -> float:
        """N m, policy vs expert torque over the policy-driven episodes' states."""
        return float(np.sqrt(np.sum(self.sq) / max(int(np.sum(self.count)), 1)))


def episode_rng(seed: int, rnd: int, episode: int) -> np.random.Generator:
    """Episode `episode` of round `rnd`'s own stream: the same whichever job collects it."""
    return np.random.default_rng(np.random.SeedSequence((DAGGER_STREAM, seed),
                                                        spawn_key=(rnd, episode)))


def episode_physics(seed: int, rnd: int, episode: int, rand: RandomizeConfig, seconds: float,
                    dt: float) -> tuple[PhysicsDraw, randomize.Pushes]:
    """Episode `episode` of round `rnd`'s physics and pushes (module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence((DAGGER_STREAM, seed),
                                                       spawn_key=(rnd, episode, 1)))
    return randomize.draw(rng, rand, seconds, dt)


def part_episodes(episodes: int, part: int, parts: int) -> np.ndarray:
    """Global indices of the episodes job `part` of `parts` collects: part, part + parts, ..."""
    if not 0 <= part < parts:
        raise CollectionError(f"part {part} is not in 0..{parts - 1}")
    return np.arange(part, episodes, parts)


def collect(policy: Policy, obs: ObsConfig, expert: ExpertConfig, episodes: int,
            seconds: float, stride: int, expert_share: float, seed: int, rnd: int,
            part: int = 0, parts: int = 1, threads: int = 1,
            follower: FollowerConfig = FollowerConfig(),
            rand: RandomizeConfig = RandomizeConfig(),
            arc_deg: tuple[float, float] = ARC_ANGLE_DEG) -> Collected:
    """Run job `part`'s share of the round's `episodes` random-path episodes; every `stride`-th
    step record (observation, label).

    An episode stops when the robot falls (height or tilt, as in evaluation): states after a fall
    teach nothing about walking.
    """
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    num = int(round(seconds / expert.dt))
    mine = part_episodes(episodes, part, parts)
    by_policy = np.arange(episodes) >= int(round(expert_share * episodes))
    targets = []
    for i in mine:
        rng = episode_rng(seed, rnd, int(i))
        speed = rng.uniform(*SPEED_RANGE)
        reach = speed * (num + obs.horizon) * expert.dt + 2.0 * follower.lookahead + 1.0
        s, xy = random_path(rng, reach, arc_deg=arc_deg)
        targets.append(Target.from_start(s, xy, q0, speed, expert.dt))
    future = np.stack([t.future(num, obs.offsets, q0[2]) for t in targets]) if targets else \
        np.zeros((0, num + 1, len(obs.offsets), 3))
    labels = ExpertController({j: t.steering(expert, follower) for j, t in enumerate(targets)},
                              expert, follower)
    actor = PolicyController(policy, obs, future, np.arange(len(mine)), expert,
                             rows=mine, batch=episodes)
    xs, ys, eps = [], [], []
    sq, count = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)

    def control(k: int, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        label = labels(k, idx, qpos, qvel)
        u = actor.torques(k, idx, qpos, qvel)
        g = mine[idx]
        pol = by_policy[g]
        sq[g[pol]] += np.sum((u[pol] - label[pol]) ** 2, axis=1)
        count[g[pol]] += 12
        if k % stride == 0:
            xs.append(actor.last_x)
            ys.append(label.astype(np.float32))
            eps.append(g)
        return np.where(pol[:, None], np.clip(u, -expert.torque_limit, expert.torque_limit),
                        label)

    models: Any = model
    pushes = None
    if rand.dagger:
        draws = [episode_physics(seed, rnd, int(i), rand, seconds, expert.dt) for i in mine]
        models = [apply(model, physics) for physics, _ in draws]
        pushes = [p for _, p in draws]
    fell = np.zeros(episodes, dtype=bool)
    if len(mine):
        with Episodes(models, q0, len(mine), threads) as sim:
            trace = run(sim, num, control, pushes=pushes)
        fell[mine] = trace.fall_step >= 0
    own = np.zeros(episodes, dtype=bool)
    own[mine] = True
    got = Collected(
        x=np.concatenate(xs) if xs else np.zeros((0, obs.dim), np.float32),
        y=np.concatenate(ys) if ys else np.zeros((0, 12), np.float32),
        episode=np.concatenate(eps).astype(np.int64) if eps else np.zeros(0, np.int64),
        sq=sq, count=count, fell=fell, by_policy=by_policy, mine=own)
    return _by_episode(got)


def _by_episode(c: Collected) -> Collected:
    """The samples in (episode, step) order: the order does not depend on how jobs split them."""
    order = np.argsort(c.episode, kind="stable")
    return dataclasses.replace(c, x=c.x[order], y=c.y[order], episode=c.episode[order])


def save(path: str | Path, c: Collected, meta: dict[str, Any]) -> Path:
    """Write one job's samples and `meta` (seed, round, part, parts) atomically: a reader
    never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with dataset.atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, format=np.array(PART_FORMAT), meta=np.array(json.dumps(meta)),
                 **dataclasses.asdict(c))
    return path


def load(path: str | Path) -> tuple[Collected, dict[str, Any]]:
    """(samples, meta) of a file written by `save`, or one clear CollectionError."""
    path = Path(path)
    if not path.exists():
        raise CollectionError(f"{path}: no such DAgger part; run `quadpipe collect` first")
    try:
        with np.load(path) as z:
            if str(z["format"]) != PART_FORMAT:
                raise CollectionError(f"{path}: not a DAgger part file ({PART_FORMAT}); "
                                      "collect it again")
            got = Collected(**{f.name: z[f.name] for f in dataclasses.fields(Collected)})
            return got, json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise CollectionError(f"{path}: cannot be read as a DAgger part ({exc}); collect it "
                              "again") from exc


def merge(parts: Sequence[Collected]) -> Collected:
    """One round from the parts of all its jobs, in (episode, step) order.

    Refused unless every episode of the round was collected by exactly one part.
    """
    if not parts:
        raise CollectionError("no DAgger part to merge")
    n = len(parts[0].mine)
    owners = np.sum([p.mine for p in parts], axis=0)
    if any(len(p.mine) != n for p in parts) or not np.all(owners == 1):
        raise CollectionError("the DAgger parts do not cover every episode of the round exactly "
                              "once; collect the round again with one `dagger_jobs` setting")
    own = [p.mine for p in parts]
    pick = np.argmax(own, axis=0)  # the part that owns each episode

    def per_episode(name: str) -> np.ndarray:
        values = np.stack([getattr(p, name) for p in parts])
        return values[pick, np.arange(n)]

    return _by_episode(Collected(
        x=np.concatenate([p.x for p in parts]), y=np.concatenate([p.y for p in parts]),
        episode=np.concatenate([p.episode for p in parts]), sq=per_episode("sq"),
        count=per_episode("count"), fell=per_episode("fell"), by_policy=parts[0].by_policy,
        mine=np.ones(n, dtype=bool)))
