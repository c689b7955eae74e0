"""Perturbed physics: per-episode draws of friction, masses, motor strength and slope; base pushes.

Legged-locomotion work judges a controller on physics it was not tuned on (legged_gym, MuJoCo
Playground randomise exactly these). A draw is a plain record made from a numpy Generator, so the
same stream gives the same physics, and `apply` turns it into a modified copy of the model:

- friction: the sliding friction of the feet and the floor (the feet have contact priority, so
  theirs is the one MuJoCo uses);
- trunk mass: kg added to the trunk, its inertia scaled with it;
- link mass scale: one factor per leg link (mass and inertia);
- motor strength: one factor per motor on the torque actuators' gain, so a weak motor also has a
  lower peak torque (the controller's command is clamped to the limit before the gain);
- slope: gravity tilted by the slope angle about a random horizontal axis, which for a robot on a
  flat floor is the same as standing on an incline (no new geometry, heights stay measured from
  the floor).

Pushes are instantaneous changes of the base's horizontal velocity at random times.
"""

from __future__ import annotations

import copy
import dataclasses

import mujoco
import numpy as np

from quadpipe.sim.model import LEGS

LINKS = tuple(f"{leg}_{link}" for leg in LEGS for link in ("hip", "thigh", "calf"))
GRAVITY = 9.81


@dataclasses.dataclass(frozen=True)
class PhysicsRanges:
    """Uniform ranges of the randomised physics (sources in the config schema)."""

    friction: tuple[float, float] = (0.4, 1.25)
    trunk_mass_kg: tuple[float, float] = (-1.0, 2.0)
    link_mass_scale: tuple[float, float] = (0.9, 1.1)
    motor_strength: tuple[float, float] = (0.8, 1.0)
    slope_deg: tuple[float, float] = (0.0, 4.0)


@dataclasses.dataclass(frozen=True)
class PushRanges:
    """Random base-velocity kicks: one every `interval_s`, of horizontal size `velocity` m/s."""

    interval_s: tuple[float, float] = (2.0, 4.0)
    velocity: tuple[float, float] = (0.3, 0.8)


@dataclasses.dataclass(frozen=True)
class PhysicsDraw:
    """One episode's physics; `as_dict` is what results files store."""

    friction: float
    trunk_mass_kg: float
    link_mass_scale: tuple[float, ...]  # (12,) in LINKS order
    motor_strength: tuple[float, ...]  # (12,) in actuator order
    slope_deg: float
    slope_direction_deg: float  # direction of steepest descent in the world, from +x

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def draw_physics(rng: np.random.Generator, r: PhysicsRanges) -> PhysicsDraw:
    return PhysicsDraw(
        friction=float(rng.uniform(*r.friction)),
        trunk_mass_kg=float(rng.uniform(*r.trunk_mass_kg)),
        link_mass_scale=tuple(float(v) for v in rng.uniform(*r.link_mass_scale, size=len(LINKS))),
        motor_strength=tuple(float(v) for v in rng.uniform(*r.motor_strength, size=12)),
        slope_deg=float(rng.uniform(*r.slope_deg)),
        slope_direction_deg=float(rng.uniform(0.0, 360.0)))


def apply(model: mujoco.MjModel, d: PhysicsDraw) -> mujoco.MjModel:
    """A copy of `model` (torque actuators) with the physics of draw `d`."""
    m = copy.copy(model)
    feet = [m.geom(f"{leg}_foot").id for leg in LEGS]
    m.geom_friction[feet + [m.geom("floor").id], 0] = d.friction
    trunk = m.body("trunk").id
    scale = (m.body_mass[trunk] + d.trunk_mass_kg) / m.body_mass[trunk]
    m.body_mass[trunk] *= scale
    m.body_inertia[trunk] *= scale
    for name, s in zip(LINKS, d.link_mass_scale, strict=True):
        b = m.body(name).id
        m.body_mass[b] *= s
        m.body_inertia[b] *= s
    m.actuator_gainprm[:, 0] *= np.asarray(d.motor_strength)
    a, phi = np.deg2rad(d.slope_deg), np.deg2rad(d.slope_direction_deg)
    m.opt.gravity[:] = GRAVITY * np.array([np.sin(a) * np.cos(phi), np.sin(a) * np.sin(phi),
                                           -np.cos(a)])
    return m


def draw_pushes(rng: np.random.Generator, r: PushRanges, seconds: float, dt: float
                ) -> list[tuple[int, np.ndarray]]:
    """[(step, (3,) m/s added to the base's linear velocity), ...] over `seconds`, in order."""
    out = []
    t = rng.uniform(*r.interval_s)
    while t < seconds:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        size = rng.uniform(*r.velocity)
        out.append((int(round(t / dt)), size * np.array([np.cos(angle), np.sin(angle), 0.0])))
        t += rng.uniform(*r.interval_s)
    return out
