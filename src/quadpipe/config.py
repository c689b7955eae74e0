"""Typed settings for the simulation, the expert and the stability filter.

Configuration is data passed in by the caller (the CLI, the Snakemake rules or a notebook); no
module reads files or the environment on its own. `from_mapping` turns a plain dict (a section of
config.yaml) into a dataclass and refuses unknown keys by name, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from quadpipe.errors import ConfigError

T = TypeVar("T")


def steps_in(ms: float, dt: float) -> int:
    """Whole steps of `dt` s in `ms` milliseconds, rounded, at least 1: how a duration the config
    states in time becomes steps of whichever physics profile runs it."""
    return max(1, int(round(ms * 1e-3 / dt)))


PROFILE_NAMES = ("fast", "original")
INTEGRATORS = ("Euler", "implicitfast", "implicit", "RK4")
CONES = ("pyramidal", "elliptic")


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """A physics profile: what one MuJoCo step costs and how exactly it resolves the contacts.

    Everything the expert and the policy time is stated in seconds (or milliseconds) and turned
    into steps of `timestep`, so a profile changes the rate of the simulation, not the gait.
    `original` is the original system's 1 kHz physics (MuJoCo Menagerie's A1 contact settings:
    elliptic cones, impratio 100, condim-6 feet); `fast` is the field's cost (MuJoCo Playground's
    quadrupeds: 4-ms steps, pyramidal cones, condim-3 feet, few solver iterations), where the
    expert still trots as closely (docs/physics.md has the measurements).
    """

    profile: str = "fast"  # the named profile the other keys start from (PROFILES)
    timestep: float = 0.004  # s per physics step; the policy acts once per step
    # MuJoCo's: Euler, implicitfast, implicit, RK4. Euler keeps the dataset's native servos and
    # the closed loop's torque PD the same dynamics (implicitfast damps the servos implicitly)
    integrator: str = "Euler"
    cone: str = "pyramidal"  # friction cone: pyramidal or elliptic
    impratio: float = 1.0  # frictional-to-normal constraint impedance (elliptic cones)
    foot_condim: int = 3  # the feet's contact dimensions: 3 (sliding), 6 (+ torsion, rolling)
    iterations: int = 4  # constraint solver iterations
    ls_iterations: int = 8  # line-search iterations per solver iteration

    def __post_init__(self) -> None:
        if self.profile not in PROFILE_NAMES:
            raise ConfigError(f"sim.profile must be one of {', '.join(PROFILE_NAMES)}, "
                              f"got {self.profile!r}")
        if not self.timestep > 0:
            raise ConfigError(f"sim.timestep must be > 0, got {self.timestep!r}")
        if self.integrator not in INTEGRATORS:
            raise ConfigError(f"sim.integrator must be one of {', '.join(INTEGRATORS)}, "
                              f"got {self.integrator!r}")
        if self.cone not in CONES:
            raise ConfigError(f"sim.cone must be one of {', '.join(CONES)}, got {self.cone!r}")
        if self.foot_condim not in (1, 3, 4, 6):
            raise ConfigError(f"sim.foot_condim must be 1, 3, 4 or 6, got {self.foot_condim!r}")
        if self.iterations < 1 or self.ls_iterations < 1 or self.impratio < 1:
            raise ConfigError("sim.iterations and sim.ls_iterations must be >= 1, "
                              "sim.impratio >= 1")

    def steps(self, ms: float) -> int:
        """Whole physics steps in `ms` milliseconds (steps_in)."""
        return steps_in(ms, self.timestep)


PROFILES: dict[str, SimConfig] = {
    "fast": SimConfig(),  # the field's cost, the default (docs/physics.md)
    # the original system's physics: 1 kHz, Menagerie's A1 contacts, MuJoCo's default solver
    "original": SimConfig(profile="original", timestep=0.001, integrator="Euler",
                          cone="elliptic", impratio=100.0, foot_condim=6, iterations=100,
                          ls_iterations=50),
}
DEFAULT_PROFILE = "fast"


def sim_config(data: Mapping[str, Any] | None, where: str = "sim") -> SimConfig:
    """The `sim` section: its named profile's settings, then any key the section sets itself.

    An unknown profile or key, or a value of the wrong type, raises one ConfigError naming it.
    """
    data = dict(data or {})
    name = data.get("profile", DEFAULT_PROFILE)
    if name not in PROFILES:
        raise ConfigError(f"{where}.profile must be one of {', '.join(PROFILES)}, got {name!r}")
    return from_mapping(SimConfig, {**dataclasses.asdict(PROFILES[name]), **data}, where)


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
    """The scripted trot expert and the robot's joint servos (see docs: expert-controller).

    `turn_scale_delta` and `turn_hip_bias` are the turning knobs. Defaults are the retuned,
    symmetric turning measured on the MuJoCo A1 (~20 deg/s). The original system's knobs are
    `turn_scale_delta=0.15, turn_hip_bias=[0.06, -0.06]` (~5 deg/s, asymmetric).
    `turn_hip_bias` is (left side, right side) for *turn right*; turn left uses the negation.
    """

    cmd_duration: float = 1.6  # s each high-level command is held
    kp: tuple[float, float, float] = (100.0, 80.0, 60.0)  # N m / rad (hip, thigh, calf)
    kd: tuple[float, float, float] = (5.0, 4.0, 3.0)  # N m s / rad
    torque_limit: float = 33.5  # N m, |torque| clamp (the real A1 motors)
    knob_tau: float = 0.08  # s, low-pass time constant of the turning knobs
    turn_scale_delta: float = 0.45  # amplitude scale 1 +- delta between the sides when turning
    turn_hip_bias: tuple[float, float] = (-0.2, -0.2)  # rad, hip bias (left, right) on turn right
    # the physics every model of this expert is built with (the `sim` section; sim_config)
    sim: SimConfig = dataclasses.field(default_factory=SimConfig)

    @property
    def dt(self) -> float:
        """s per physics and control step (the profile's)."""
        return self.sim.timestep

    @property
    def steps_per_command(self) -> int:
        return int(round(self.cmd_duration / self.dt))


@dataclasses.dataclass(frozen=True)
class StabilityConfig:
    """Thresholds of the stability filter; a trajectory is kept only if every check passes."""

    min_height: float = 0.05  # m, base below this at any step: fell through the ground
    max_position: float = 100.0  # m, |base position| component above this: exploded
    max_velocity: float = 50.0  # m/s, |base linear velocity| component above this
    min_mean_height: float = 0.15  # m, mean base height below this: tipped over
    max_height_std: float = 0.3  # m, base height std above this: tipped over
    min_up_z: float = 0.5  # z of the body's up axis below this (tilt > 60 deg): bad orientation


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """How one shard is generated and stored."""

    min_moves: int = 5  # movement commands per sequence, drawn uniformly in [min, max]
    max_moves: int = 15
    threads: int = 0  # simulation threads; 0 = all cores
    dtype: str = "float32"  # dtype of states/actions/qpos/qvel in the HDF5 file
    compression: str | None = "gzip"  # h5py filter name, or None
    compression_level: int = 4  # gzip's 0-9 scale
    # Who writes the gzip chunks: "isal" (ISA-L, levels above 3 use its 3) or "zlib" (exact
    # levels). Either file reads the same everywhere; why isal: benchmarks/README.md.
    gzip_encoder: str = "isal"
    chunk_steps: int = 1600  # HDF5 chunk length along time
    # "full" (the original's states + qpos/qvel/actions) or "lean" (no states: computed from
    # qpos/qvel on reading; 0.6 of the bytes, but the original's readers need states)
    layout: str = "full"
    max_attempts_factor: int = 20  # give up after num * factor attempts (a broken expert)


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build dataclass `cls` from `data`, refusing unknown keys and wrong types by name."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]}; valid keys are: {', '.join(sorted(fields))}"
        )
    defaults = cls()
    out = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        # A field annotated `tuple[X, ...]` takes a list of any non-empty length.
        variable = "..." in str(fields[name].type)
        out[name] = _coerce(value, default, f"{where}.{name}", variable)
    return cls(**out)


def from_mapping_nested(cls: type[T], data: Mapping[str, Any] | None, where: str,
                        nested: Mapping[str, type]) -> T:
    """`from_mapping` for a section with subsections (name -> dataclass): each subsection's keys
    are refused or coerced under `where.name`, and a key it leaves out takes the value of `cls`'s
    own default subsection (which may differ from the subsection class's defaults)."""
    data = dict(data or {})
    defaults = cls()
    sub = {k: from_mapping(t, {**dataclasses.asdict(getattr(defaults, k)),
                               **(data.pop(k, None) or {})}, f"{where}.{k}")
           for k, t in nested.items()}
    return dataclasses.replace(from_mapping(cls, data, where), **sub)


def shares_fit(*shares: float) -> bool:
    """Whether shares of one set of episodes, each of different episodes, add up to at most 1
    (up to rounding: 0.3 + 0.7 fits)."""
    return sum(float(s) for s in shares) <= 1.0 + 1e-9


def check_ranges(where: str, obj: Any, skip: tuple[str, ...] = ()) -> None:
    """Refuse a [low, high] tuple field of dataclass `obj` with low > high, naming it."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name not in skip and isinstance(v, tuple) and v[0] > v[1]:
            raise ConfigError(f"{where}.{f.name} must be [low, high] with low <= high, "
                              f"got {list(v)}")


def _coerce(value: Any, default: Any, key: str, variable: bool = False) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if isinstance(default, tuple):
        if variable and isinstance(value, list | tuple) and value and default:
            return tuple(_coerce(v, default[0], key) for v in value)
        if not isinstance(value, list | tuple) or len(value) != len(default):
            raise ConfigError(f"{key} must be a list of {len(default)} values, got {value!r}")
        return tuple(_coerce(v, d, key) for v, d in zip(value, default, strict=True))
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if isinstance(default, str) or default is None:
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def to_json(**sections: Any) -> str:
    """Serialise named settings (dataclasses or dicts) into one JSON string.

    Stored in every HDF5 file, so a trajectory can be replayed with the settings that made it.
    """
    return json.dumps(
        {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
         for k, v in sections.items()}, sort_keys=True)


def expert_config(cfg: Mapping[str, Any]) -> ExpertConfig:
    """The expert of a job's settings: its `expert` section on the physics of its `sim` section."""
    expert = dict(cfg.get("expert") or {})
    if "dt" in expert:
        raise ConfigError("expert.dt is now sim.timestep (or a named sim.profile: "
                          f"{', '.join(PROFILE_NAMES)}); move it there")
    return dataclasses.replace(from_mapping(ExpertConfig, expert, "expert"),
                               sim=sim_config(cfg.get("sim")))


def expert_from_json(text: str) -> ExpertConfig:
    """The ExpertConfig stored by `to_json(expert=...)` in a file's config_json attribute.

    Files written before physics profiles hold `expert.dt` and no `sim`: the original's physics.
    """
    expert = dict(json.loads(text)["expert"])
    sim = expert.pop("sim", None)
    if sim is None:
        sim = {"profile": "original", "timestep": expert.pop("dt", 0.001)}
    return dataclasses.replace(from_mapping(ExpertConfig, expert, "config_json.expert"),
                               sim=sim_config(sim, "config_json.expert.sim"))
