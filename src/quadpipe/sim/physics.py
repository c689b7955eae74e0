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
  the floor);
- joint damping and friction loss: one factor per leg joint on the model's passive damping and
  dry friction (drawn last, so ranges of [1, 1] leave every other draw as it was).

Motor strength scales the whole actuator, so it means the same for the torque actuators (ctrl =
torque) and the native position servos of generation (ctrl = joint reference, torque = Kp (ref - q)
- Kd qd): the applied torque is strength x what the controller commands, its peak strength x the
limit. The controller's command is what a policy must learn; the dataset stores that.

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
    joint_damping_scale: tuple[float, float] = (1.0, 1.0)  # [1, 1]: not varied
    frictionloss_scale: tuple[float, float] = (1.0, 1.0)


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
    joint_damping_scale: tuple[float, ...] = (1.0,) * 12  # (12,) per leg joint
    frictionloss_scale: tuple[float, ...] = (1.0,) * 12

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PhysicsDraw:
        """The draw `as_dict` stored (JSON floats round-trip exactly)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def draw_physics(rng: np.random.Generator, r: PhysicsRanges) -> PhysicsDraw:
    return PhysicsDraw(
        friction=float(rng.uniform(*r.friction)),
        trunk_mass_kg=float(rng.uniform(*r.trunk_mass_kg)),
        link_mass_scale=tuple(float(v) for v in rng.uniform(*r.link_mass_scale, size=len(LINKS))),
        motor_strength=tuple(float(v) for v in rng.uniform(*r.motor_strength, size=12)),
        slope_deg=float(rng.uniform(*r.slope_deg)),
        slope_direction_deg=float(rng.uniform(0.0, 360.0)),
        joint_damping_scale=tuple(float(v) for v in rng.uniform(*r.joint_damping_scale, size=12)),
        frictionloss_scale=tuple(float(v) for v in rng.uniform(*r.frictionloss_scale, size=12)))


def apply(model: mujoco.MjModel, d: PhysicsDraw) -> mujoco.MjModel:
    """A copy of `model` (torque actuators or native servos) with the physics of draw `d`."""
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
    strength = np.asarray(d.motor_strength)
    m.actuator_gainprm[:, 0] *= strength
    m.actuator_biasprm[:, 1:3] *= strength[:, None]  # the native servo's -Kp, -Kd
    m.actuator_forcerange *= strength[:, None]
    m.dof_damping[6:] *= np.asarray(d.joint_damping_scale)
    m.dof_frictionloss[6:] *= np.asarray(d.frictionloss_scale)
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
