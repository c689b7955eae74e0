"""Domain randomisation of the training data: per-trajectory physics and pushes, and their streams.

The `randomize` section of config.yaml. `data` randomises generation (every attempt of every
shard), `dagger` the DAgger episodes; the ranges are quadpipe.sim.physics's. Off, nothing is drawn
and nothing is stored: the data are those of a pipeline without randomisation, byte for byte.

Streams. The physics of generation attempt i of shard k comes from
`SeedSequence((PHYSICS_STREAM, seed), spawn_key=(k, i))`, its commands from `(seed, (k, i))`
(quadpipe.sim.commands.attempt_rng), so switching randomisation on keeps every attempt's commands
and adds physics to them, and a resumed shard draws exactly what an uninterrupted one did.
DAgger episode i of round r draws its physics from `SeedSequence((DAGGER_STREAM, seed),
spawn_key=(r, i, 1))`, beside the `(r, i)` stream of its path (learn.imitation.dagger). Within a
stream the physics is drawn first, then the pushes over the episode's duration.

What a trajectory stores (`as_json`, group attribute `physics_json`): the draw of
quadpipe.sim.physics and its pushes as [step, dvx, dvy, dvz]; `from_json` gives them back exactly,
so `replay` rebuilds the same model and kicks.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from quadpipe.config import check_ranges, from_mapping_nested
from quadpipe.sim.physics import PhysicsDraw, PhysicsRanges, PushRanges, draw_physics, draw_pushes

PHYSICS_STREAM = 0x9417D  # tag in every generation physics stream's entropy
PHYSICS_ATTR = "physics_json"  # the group attribute of a randomised trajectory

Pushes = list[tuple[int, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class RandomizeConfig:
    """The `randomize` section: what is randomised, and the ranges (sources: the config schema)."""

    data: bool = False  # randomise the generated trajectories
    dagger: bool = False  # randomise the DAgger episodes
    physics: PhysicsRanges = PhysicsRanges(joint_damping_scale=(0.8, 1.2),
                                           frictionloss_scale=(0.9, 1.1))
    pushes: PushRanges = PushRanges()

    def __post_init__(self) -> None:
        check_ranges("randomize.physics", self.physics)
        check_ranges("randomize.pushes", self.pushes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> RandomizeConfig:
        return from_mapping_nested(cls, data, "randomize",
                                   {"physics": PhysicsRanges, "pushes": PushRanges})

    def ranges(self) -> dict[str, Any]:
        """The ranges alone (what a randomised shard's settings record)."""
        return {"physics": dataclasses.asdict(self.physics),
                "pushes": dataclasses.asdict(self.pushes)}


def draw(rng: np.random.Generator, cfg: RandomizeConfig, seconds: float, dt: float
         ) -> tuple[PhysicsDraw, Pushes]:
    """One trajectory's physics and its pushes over `seconds`, in that order from `rng`."""
    physics = draw_physics(rng, cfg.physics)
    return physics, draw_pushes(rng, cfg.pushes, seconds, dt)


def attempt_physics(seed: int, shard: int, attempt: int, cfg: RandomizeConfig, seconds: float,
                    dt: float) -> tuple[PhysicsDraw, Pushes]:
    """The draw of generation attempt `attempt` of shard `shard` (module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence((PHYSICS_STREAM, seed),
                                                       spawn_key=(shard, attempt)))
    return draw(rng, cfg, seconds, dt)


def as_json(physics: PhysicsDraw, pushes: Pushes) -> str:
    return json.dumps({**physics.as_dict(),
                       "pushes": [[int(s), *map(float, dv)] for s, dv in pushes]},
                      sort_keys=True)


def from_json(text: str) -> tuple[PhysicsDraw, Pushes]:
    d = json.loads(text)
    pushes = [(int(p[0]), np.asarray(p[1:], dtype=np.float64)) for p in d.pop("pushes")]
    return PhysicsDraw.from_dict(d), pushes


def summary(physics: PhysicsDraw, pushes: Pushes) -> dict[str, float]:
    """Scalars of a draw for tables and plots: one number per randomised quantity."""
    return {
        "friction": physics.friction,
        "trunk_mass_kg": physics.trunk_mass_kg,
        "link_mass_scale": float(np.mean(physics.link_mass_scale)),
        "motor_strength_min": float(np.min(physics.motor_strength)),
        "joint_damping_scale": float(np.mean(physics.joint_damping_scale)),
        "frictionloss_scale": float(np.mean(physics.frictionloss_scale)),
        "slope_deg": physics.slope_deg,
        "pushes": float(len(pushes)),
        "push_max_m_s": float(max((np.linalg.norm(dv) for _, dv in pushes), default=0.0)),
    }
