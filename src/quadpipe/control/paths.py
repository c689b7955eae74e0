"""Target paths as data: named shapes with parameters, or a user's waypoints; random paths.

Every path starts at the origin heading along +x and is parameterised by arc length s (m), so a
target moving at constant speed is at s = speed * t; `place` puts it at the robot's start position
and heading. An evaluation path is an entry of `eval.paths` (`parse_paths`):

- a built-in shape by name (`circle`), or a mapping `{name, shape, <parameters>}`;
- a user's polyline `{name, waypoints: [[x, y], ...]}` or `{name, waypoints: FILE}` (CSV with
  two columns x, y, optional header; or YAML with a list of [x, y]). Waypoints are metres in the
  robot's start frame (x forward, y left), moved so that the first one is at the robot; the path
  is the polyline through them, followed by arc length, and ends at the last one.

Shapes (every one starts at the origin heading +x):

| shape | parameters (default) | |
|---|---|---|
| straight | - | along +x |
| circle | radius (eval.radius), direction (left) | a circle of `radius`, turning `direction` |
| figure8 | radius (eval.radius), direction (left) | a circle, then one turning the other way |
| zigzag | leg (eval.radius), corner_deg (60) | legs of length `leg`, heading +-corner/2 |
| square | side (2.0), direction (left) | a square of `side`, 90 deg corners |
| sine | amplitude (0.5), wavelength (4.0) | y = amplitude sin(2 pi x / wavelength) |

The four originals (circle, figure8, straight, zigzag with eval.radius = 1 m) are the defaults.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quadpipe.errors import ConfigError
from quadpipe.sim.state import rotate_xy

RESOLUTION = 0.005  # m between the points of a sampled path
NAME = re.compile(r"^[A-Za-z0-9_-]+$")
DIRECTIONS = {"left": 1.0, "right": -1.0}
# shape -> {parameter: default}; None = eval.radius
SHAPES: dict[str, dict[str, Any]] = {
    "straight": {},
    "circle": {"radius": None, "direction": "left"},
    "figure8": {"radius": None, "direction": "left"},
    "zigzag": {"leg": None, "corner_deg": 60.0},
    "square": {"side": 2.0, "direction": "left"},
    "sine": {"amplitude": 0.5, "wavelength": 4.0},
}
ORIGINALS = ("circle", "figure8", "straight", "zigzag")


@dataclasses.dataclass(frozen=True)
class PathSpec:
    """One evaluation path: a shape with its parameters, or a waypoint polyline."""

    name: str
    shape: str  # a key of SHAPES, or "waypoints"
    params: tuple[tuple[str, Any], ...] = ()
    points: tuple[tuple[float, float], ...] = ()  # waypoints, first at the origin

    @property
    def length(self) -> float:
        """m of path; inf for the shapes, which go on for ever."""
        if self.shape != "waypoints":
            return math.inf
        return float(np.sum(np.linalg.norm(np.diff(np.array(self.points), axis=0), axis=1)))

    def sample(self, length: float, resolution: float = RESOLUTION
               ) -> tuple[np.ndarray, np.ndarray]:
        """(s (N,), xy (N, 2)): the path every `resolution` m up to `length` (or its end)."""
        if self.shape == "waypoints":
            return resample(np.array(self.points), resolution, length)
        s = np.arange(0.0, length + resolution, resolution)
        return s, shape_xy(self.shape, s, **dict(self.params))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": self.shape, **dict(self.params)}
        if self.points:
            out["waypoints"] = [list(p) for p in self.points]
        return out


def shape_xy(shape: str, s: np.ndarray, **p: Any) -> np.ndarray:
    """(N, 2) m points at arc lengths s (N,) >= 0 of a built-in shape."""
    s = np.asarray(s, dtype=np.float64)
    if shape == "straight":
        return np.stack([s, np.zeros_like(s)], axis=-1)
    if shape == "circle":
        r, side = p["radius"], DIRECTIONS[p["direction"]]
        a = s / r
        return np.stack([r * np.sin(a), side * r * (1.0 - np.cos(a))], axis=-1)
    if shape == "figure8":
        r, first = p["radius"], DIRECTIONS[p["direction"]]
        lobe = 2.0 * np.pi * r
        u = np.mod(s, 2.0 * lobe)
        side = np.where(u < lobe, first, -first)
        a = np.mod(u, lobe) / r
        return np.stack([r * np.sin(a), side * r * (1.0 - np.cos(a))], axis=-1)
    if shape == "zigzag":
        # a triangle wave in arc length (slope +-1), the first leg half length so the path
        # oscillates around the x axis; x advances cos(angle) and y sin(angle) times it.
        leg, angle = p["leg"], np.deg2rad(p["corner_deg"] / 2.0)
        u = s + 0.5 * leg
        n = np.floor(u / leg)
        w = u - n * leg
        tri = np.where(np.mod(n, 2) == 0, w - 0.5 * leg, 0.5 * leg - w)
        return np.stack([np.cos(angle) * s, np.sin(angle) * tri], axis=-1)
    if shape == "square":
        side, turn = p["side"], DIRECTIONS[p["direction"]]
        corners = np.array([[0, 0], [1, 0], [1, turn], [0, turn], [0, 0]]) * side
        laps = int(np.ceil((s[-1] + 1e-9) / (4 * side))) if len(s) else 1
        pts = np.concatenate([corners[:-1]] * laps + [corners[-1:]])
        return _at(pts, s)
    if shape == "sine":
        amp, wave = p["amplitude"], p["wavelength"]
        # arc length >= x, so x up to the longest s covers it; dense enough for 0.1 mm accuracy
        x = np.linspace(0.0, max(float(s[-1]) if len(s) else 0.0, 1e-3) + wave, 20000 + 1)
        return _at(np.stack([x, amp * np.sin(2 * np.pi * x / wave)], axis=-1), s)
    raise ConfigError(f"unknown path shape {shape!r}; choose one of {', '.join(SHAPES)}")


def _at(points: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(N, 2) points of the polyline `points` at arc lengths s (clamped to its end)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 0])
    points = points[keep]
    cum = np.concatenate([[0.0], np.cumsum(seg[seg > 0])])
    return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], axis=-1)


def resample(points: np.ndarray, resolution: float = RESOLUTION, length: float = math.inf
             ) -> tuple[np.ndarray, np.ndarray]:
    """(s, xy) of the polyline `points` (M, 2) every `resolution` m, its end point included."""
    total = float(np.sum(np.linalg.norm(np.diff(points, axis=0), axis=1)))
    end = min(total, length)
    s = np.arange(0.0, end, resolution)
    s = np.append(s, end) if len(s) == 0 or s[-1] < end - 1e-12 else s
    return s, _at(points, s)


def place(xy: np.ndarray, start_xy: np.ndarray, start_yaw: float) -> np.ndarray:
    """Rotate path points (N, 2) by start_yaw and move them to start_xy (world frame, m)."""
    pts = np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)
    return rotate_xy(pts, np.full(len(xy), start_yaw))[:, :2] + np.asarray(start_xy)[:2]


# ----------------------------------------------------------------------------- config entries


def parse_paths(entries: Sequence[Any], radius: float = 1.0, where: str = "eval.paths",
                base_dir: str | Path = ".") -> list[PathSpec]:
    """The PathSpecs of a config list; one ConfigError naming the entry for anything wrong."""
    if not isinstance(entries, list | tuple) or not entries:
        raise ConfigError(f"{where} must be a non-empty list of paths")
    specs = [parse_path(e, radius, f"{where}[{i}]", base_dir) for i, e in enumerate(entries)]
    names = [s.name for s in specs]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"{where}[{i}]: the name {n!r} is used twice; names must be unique")
    return specs


def parse_path(entry: Any, radius: float = 1.0, where: str = "eval.paths[0]",
               base_dir: str | Path = ".") -> PathSpec:
    if isinstance(entry, str):
        entry = {"name": entry, "shape": entry}
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a shape name or a mapping with name and shape or "
                          f"waypoints, got {entry!r}")
    entry = dict(entry)
    name = entry.pop("name", None)
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}.name must be letters, digits, _ or - (it names the result "
                          f"file), got {name!r}")
    where = f"{where} ({name})"
    if "waypoints" in entry:
        extra = sorted(set(entry) - {"waypoints", "shape"})
        if extra or entry.get("shape", "waypoints") != "waypoints":
            raise ConfigError(f"{where}: a waypoint path takes only name and waypoints, got "
                              f"{', '.join(extra) or 'shape ' + repr(entry.get('shape'))}")
        return PathSpec(name, "waypoints", points=_waypoints(entry["waypoints"], where, base_dir))
    shape = entry.pop("shape", None)
    if shape not in SHAPES:
        raise ConfigError(f"{where}.shape: unknown shape {shape!r}; choose one of "
                          f"{', '.join(SHAPES)}, or give waypoints")
    defaults = SHAPES[shape]
    unknown = sorted(set(entry) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} for shape {shape}; it takes "
                          f"{', '.join(defaults) or 'no parameters'}")
    params = {}
    for key, default in defaults.items():
        value = entry.get(key, radius if default is None else default)
        if key == "direction":
            if value not in DIRECTIONS:
                raise ConfigError(f"{where}.direction must be left or right, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 \
                or (key == "corner_deg" and value >= 180):
            limit = " and < 180" if key == "corner_deg" else ""
            raise ConfigError(f"{where}.{key} must be a number > 0{limit}, got {value!r}")
        else:
            value = float(value)
        params[key] = value
    return PathSpec(name, shape, tuple(params.items()))


def _waypoints(value: Any, where: str, base_dir: str | Path) -> tuple[tuple[float, float], ...]:
    if isinstance(value, str):
        value = _read_waypoints(Path(base_dir) / value, where)
    try:
        pts = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.waypoints must be a list of [x, y] pairs in metres, got "
                          f"{value!r}") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ConfigError(f"{where}.waypoints must be a list of [x, y] pairs in metres, got "
                          f"shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ConfigError(f"{where}.waypoints holds a non-finite coordinate")
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    pts = pts[np.concatenate([[True], seg > 0])]  # repeated points add nothing
    if len(pts) < 2:
        raise ConfigError(f"{where}.waypoints needs at least two distinct points")
    pts = pts - pts[0]
    return tuple((float(x), float(y)) for x, y in pts)


def _read_waypoints(path: Path, where: str) -> list:
    if not path.exists():
        raise ConfigError(f"{where}.waypoints: file {path} does not exist")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}.waypoints: {path} is not valid YAML ({exc})") from exc
        if isinstance(data, Mapping):
            data = data.get("waypoints")
        return [[p["x"], p["y"]] if isinstance(p, Mapping) else p for p in data or []]
    rows = [r for r in csv.reader(path.read_text().splitlines()) if r and any(c.strip()
                                                                              for c in r)]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # a header line such as "x,y"
    for i, r in enumerate(rows):
        if len(r) != 2 or not _numeric(r):
            raise ConfigError(f"{where}.waypoints: {path} line {i + 1}: expected two numbers "
                              f"x,y, got {','.join(r)!r}")
    return [[float(a), float(b)] for a, b in rows]


def _numeric(row: list[str]) -> bool:
    try:
        [float(c) for c in row]
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- random paths

# Random paths for DAgger (learn.imitation.dagger) and the evaluation suite: pieces of the kinds the
# evaluation paths are made of (straight runs, arcs, sharp corners) with random lengths, radii and
# angles, so the policy learns, and is judged, on paths in general, not on four fixed ones.
STRAIGHT_M = (0.3, 1.5)  # straight piece length
ARC_RADIUS_M = (0.7, 2.5)
ARC_ANGLE_DEG = (30.0, 180.0)
CORNER_DEG = (20.0, 75.0)  # heading jump at a sharp corner


PIECES = (1.0, 1.0, 1.0)  # relative odds of a straight piece, an arc and a corner


def random_path(rng: np.random.Generator, length: float, resolution: float = RESOLUTION,
                pieces: tuple[float, float, float] = PIECES,
                arc_deg: tuple[float, float] = ARC_ANGLE_DEG) -> tuple[np.ndarray, np.ndarray]:
    """(s (N,), xy (N, 2)) a random path from the origin heading +x, sampled every `resolution` m.

    Built from its heading along the arc length: straight pieces keep it, arcs turn it at a
    constant rate, corners jump it (a zigzag's kink). `pieces` weighs the three; even odds draw
    the piece as they always did, so DAgger's and the suite's paths stay the same. `arc_deg`:
    the range of an arc's turn (the same draws: a different range scales each arc's angle).
    """
    s = np.arange(0.0, length + resolution, resolution)
    heading = np.empty_like(s)
    pos, angle = 0, 0.0
    odds = None if tuple(pieces) == PIECES else np.asarray(pieces, float) / float(sum(pieces))
    while pos < len(s):
        kind = rng.integers(0, 3) if odds is None else rng.choice(3, p=odds)
        if kind == 0:
            n = int(rng.uniform(*STRAIGHT_M) / resolution)
            heading[pos:pos + n] = angle
        elif kind == 1:
            radius = rng.uniform(*ARC_RADIUS_M)
            turn = np.deg2rad(rng.uniform(*arc_deg)) * rng.choice([-1.0, 1.0])
            n = max(1, int(abs(turn) * radius / resolution))
            heading[pos:pos + n] = angle + turn * np.arange(1, n + 1)[:len(s) - pos] / n
            angle += turn
        else:
            angle += np.deg2rad(rng.uniform(*CORNER_DEG)) * rng.choice([-1.0, 1.0])
            n = int(rng.uniform(*STRAIGHT_M) / resolution)
            heading[pos:pos + n] = angle
        pos += n
    steps = np.stack([np.cos(heading), np.sin(heading)], axis=-1) * resolution
    xy = np.concatenate([np.zeros((1, 2)), np.cumsum(steps[:-1], axis=0)])
    return s, xy
