"""The fine-tuning environment: random-path episodes stepped together, scored by a reward.

DAgger can only copy the expert; reinforcement learning optimises what is wanted, so a reward says
it: follow the moving target (the suite's tracking error is the distance to it), face along the
path, stay up, and do it with small, smooth torques. Per physics step, in units per
second (each term is multiplied by dt when summed, so a block's reward does not depend on dt):

    track       w_track   * exp(-(d / track_sigma)^2)        d: base-to-target distance, m
    heading     w_heading * exp(-(e / heading_sigma)^2)      e: yaw minus the path's direction
                                                              at the target, wrapped, rad
    alive       w_alive
    torque      -w_torque * mean((u / limit)^2)              u: applied torques, N m
    action_rate -w_rate   * mean(((u - u_prev) / limit * RATE_DT / dt)^2)
                                                              u_prev: the last step's; the change
                                                              per RATE_DT (1 ms, the original's
                                                              step), so a weight means the same
                                                              on every physics profile

An episode ends when the robot falls (control.closed_loop.fallen, the suite's test: no crawling);
the fall ends the return (no bootstrap), while an episode that runs out of time is bootstrapped
with the critic's value at its last state.

Episodes. Iteration i of a seed runs `episodes` episodes from standing, each `seconds` long, all
starting together (control.closed_loop: one MLP call for all live episodes per physics step,
`mj_step` per episode over threads). Episode e of iteration i draws its path and speed from
`SeedSequence((FINETUNE_STREAM, seed), spawn_key=(i, e))`; if it is among the randomised
share, its physics and pushes from the `randomize` ranges in `(i, e, 1)`; if among the kicked
share (nominal physics), its kicks from `finetune.kicks` in `(i, e, 2)`: streams of their own,
disjoint from DAgger's, the selection's and the suite's. Nothing carries over from one iteration
to the next but the weights, so an iteration is reproduced from (seed, i) and the weights alone
(learn.finetuning.runner).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import mujoco
import numpy as np

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import start_qpos
from quadpipe.control.follower import FollowerConfig, Target
from quadpipe.control.paths import PIECES, random_path
from quadpipe.sim import randomize
from quadpipe.sim.model import build_model
from quadpipe.sim.physics import PushRanges, apply, draw_pushes
from quadpipe.sim.randomize import RandomizeConfig
from quadpipe.sim.state import wrap_angle, yaw

FINETUNE_STREAM = 0xF17E7  # tag in every fine-tuning episode's entropy
RATE_DT = 0.001  # s: action_rate is the torques' change per this time (the original's step)


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Weights (per second) and widths of the reward terms (module docstring)."""

    track: float = 1.0
    track_sigma: float = 0.15  # m; the expert's mean tracking error is ~0.1 m
    heading: float = 0.25
    heading_sigma: float = 0.5  # rad
    alive: float = 0.5
    torque: float = 0.1
    action_rate: float = 0.5


TERMS = ("track", "heading", "alive", "torque", "action_rate")


def reward_terms(qpos: np.ndarray, target_xy: np.ndarray, target_heading: np.ndarray,
                 u: np.ndarray, u_prev: np.ndarray, cfg: RewardConfig, limit: float,
                 dt: float) -> dict[str, np.ndarray]:
    """Each term (N,) per second at states qpos (N, 19) after torques u (N, 12), one step of dt
    after u_prev."""
    d2 = np.sum((qpos[:, :2] - target_xy) ** 2, axis=1)
    e = wrap_angle(yaw(qpos[:, 3:7]) - target_heading)
    return {
        "track": cfg.track * np.exp(-d2 / cfg.track_sigma ** 2),
        "heading": cfg.heading * np.exp(-(e / cfg.heading_sigma) ** 2),
        "alive": np.full(len(qpos), cfg.alive),
        "torque": -cfg.torque * np.mean((u / limit) ** 2, axis=1),
        "action_rate": -cfg.action_rate * np.mean(((u - u_prev) / limit * (RATE_DT / dt)) ** 2,
                                                  axis=1),
    }


@dataclasses.dataclass
class EpisodeSet:
    """One iteration's episodes: targets, what the policy observes of them, physics and pushes.

    target_xy (E, K + 1, 2) and target_heading (E, K + 1): the target at every step k <= K;
    future (E, K + 1, W, 3): the waypoints a policy observes (learn.samples.observe).
    """

    targets: list[Target]
    target_xy: np.ndarray
    target_heading: np.ndarray
    future: np.ndarray
    models: list[mujoco.MjModel]
    pushes: list[Any]
    q0: np.ndarray
    num_steps: int


def path_heading(target: Target, steps: np.ndarray, ds: float = 0.01) -> np.ndarray:
    """(K,) the path's direction, rad, where the target is at each step."""
    s = np.minimum(target.speed * target.dt * np.asarray(steps, dtype=float), target.path.length)
    ahead = target.path.points(np.minimum(s + ds, target.path.length))
    behind = target.path.points(np.maximum(s - ds, 0.0))
    d = ahead - behind
    return np.arctan2(d[:, 1], d[:, 0])


def draw_episodes(seed: int, iteration: int, episodes: int, seconds: float,
                  speed: tuple[float, float], offsets: np.ndarray, expert: ExpertConfig,
                  rand: RandomizeConfig | None, follower: FollowerConfig = FollowerConfig(),
                  randomized: int | None = None, pieces: tuple[float, float, float] = PIECES,
                  kicked: int = 0, kicks: PushRanges = PushRanges()) -> EpisodeSet:
    """Iteration `iteration`'s episodes (module docstring); rand None: nominal physics.

    The first `randomized` episodes (all if None; none if rand is None) take their physics and
    pushes from `rand`, the next `kicked` nominal physics and kicks from `kicks`, the rest
    nominal physics without kicks: fixed shares per iteration, not a coin per episode, so every
    update sees the same mix. `pieces`: the paths' odds of straights, arcs and corners.
    """
    randomized = 0 if rand is None else episodes if randomized is None else randomized
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    num = int(round(seconds / expert.dt))
    steps = np.arange(num + 1)
    targets, models, pushes = [], [], []
    for e in range(episodes):
        rng = np.random.default_rng(np.random.SeedSequence((FINETUNE_STREAM, seed),
                                                           spawn_key=(iteration, e)))
        v = float(rng.uniform(*speed))
        reach = v * (num + int(offsets[-1])) * expert.dt + 2.0 * follower.lookahead + 1.0
        s, xy = random_path(rng, reach, pieces=pieces)
        targets.append(Target.from_start(s, xy, q0, v, expert.dt))
        if e < randomized:
            prng = np.random.default_rng(np.random.SeedSequence((FINETUNE_STREAM, seed),
                                                                spawn_key=(iteration, e, 1)))
            physics, drawn = randomize.draw(prng, rand, seconds, expert.dt)
            models.append(apply(model, physics))
            pushes.append(drawn)
        elif e < randomized + kicked:
            krng = np.random.default_rng(np.random.SeedSequence((FINETUNE_STREAM, seed),
                                                                spawn_key=(iteration, e, 2)))
            models.append(model)
            pushes.append(draw_pushes(krng, kicks, seconds, expert.dt))
        else:
            models.append(model)
            pushes.append([])
    return EpisodeSet(
        targets=targets,
        target_xy=np.stack([t.at(steps) for t in targets]),
        target_heading=np.stack([path_heading(t, steps) for t in targets]),
        future=np.stack([t.future(num + 1, offsets, q0[2]) for t in targets]),
        models=models, pushes=pushes, q0=q0, num_steps=num)
