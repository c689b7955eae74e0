"""Held-out random-path episodes: a path, a target speed, and a condition's physics and pushes.

The suite (evaluation.suite) and the closed-loop checkpoint selection (evaluation.selection) both
test policies on episodes drawn here, each from its own stream: episode i's path and speed come
from `SeedSequence(entropy, spawn_key=(i, 0))`, its physics and pushes under condition c from
spawn key (i, 1 + c). The entropy carries a tag per user (SUITE_STREAM, SELECT_STREAM) beside
the seed, and DAgger's carries DAGGER_STREAM, so no two of them ever draw the same episodes:
selecting a checkpoint on the suite's episodes would report an in-sample figure.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from quadpipe.config import ExpertConfig
from quadpipe.control.follower import Target
from quadpipe.control.paths import random_path
from quadpipe.errors import ConfigError
from quadpipe.sim.physics import PhysicsDraw, PhysicsRanges, PushRanges, draw_physics, draw_pushes

CONDITIONS = ("nominal", "randomized", "pushes")  # index c gives the spawn key (i, 1 + c)


def check_condition(name: str) -> str:
    if name not in CONDITIONS:
        raise ConfigError(f"unknown suite condition {name!r}; choose from {', '.join(CONDITIONS)}")
    return name


@dataclasses.dataclass
class Episode:
    """One episode's task: `pushes` are [(step, (3,) m/s), ...], `physics` None when nominal."""

    condition: str
    target: Target
    speed: float  # m/s
    physics: PhysicsDraw | None
    pushes: list


def draw_episode(entropy: tuple[int, int], i: int, condition: str, speed: tuple[float, float],
                 num_steps: int, seconds: float, lookahead: float, physics: PhysicsRanges,
                 pushes: PushRanges, expert: ExpertConfig, q0: np.ndarray) -> Episode:
    """Episode `i` of the stream `entropy` under `condition` (module docstring), from pose q0.

    The path is long enough for the target's `num_steps` steps plus the look-ahead and a metre
    to spare; pushes fall within `seconds`.
    """
    c = CONDITIONS.index(check_condition(condition))
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(i, 0)))
    v = float(rng.uniform(*speed))
    s, xy = random_path(rng, v * num_steps * expert.dt + 2.0 * lookahead + 1.0)
    target = Target.from_start(s, xy, q0, v, expert.dt)
    crng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(i, 1 + c)))
    draw = draw_physics(crng, physics) if condition == "randomized" else None
    kicks = draw_pushes(crng, pushes, seconds, expert.dt) \
        if condition == "pushes" else []
    return Episode(condition, target, v, draw, kicks)
