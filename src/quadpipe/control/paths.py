"""Target paths of the evaluation, parameterised by arc length: the target moves at constant speed.

Every path starts at the origin heading along +x (`path_xy(kind, s, radius)`, s in m); `target`
places it at the robot's start position and heading and samples it in time. Shapes:

- circle: a left-hand circle of `radius` (centre at +y).
- figure8: a left circle then a right circle of `radius`, tangent at the start, repeating.
- straight: along +x.
- zigzag: legs of length `radius` at +-30 deg to +x (a 60 deg turn at each corner), centred on x.
"""

from __future__ import annotations

import numpy as np

from quadpipe.errors import ConfigError
from quadpipe.sim.state import rotate_xy

KINDS = ("circle", "figure8", "straight", "zigzag")
ZIGZAG_ANGLE = np.deg2rad(30.0)


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"unknown path {kind!r}; choose one of {', '.join(KINDS)}")
    return kind


def path_xy(kind: str, s: np.ndarray, radius: float) -> np.ndarray:
    """(N, 2) m points at arc lengths s (N,) m >= 0 of path `kind`, starting at 0 heading +x."""
    check_kind(kind)
    if radius <= 0:
        raise ConfigError(f"eval.radius must be > 0, got {radius}")
    s = np.asarray(s, dtype=np.float64)
    r = radius
    if kind == "circle":
        a = s / r
        return np.stack([r * np.sin(a), r * (1.0 - np.cos(a))], axis=-1)
    if kind == "figure8":
        lobe = 2.0 * np.pi * r
        u = np.mod(s, 2.0 * lobe)
        side = np.where(u < lobe, 1.0, -1.0)
        a = np.mod(u, lobe) / r
        return np.stack([r * np.sin(a), side * r * (1.0 - np.cos(a))], axis=-1)
    if kind == "straight":
        return np.stack([s, np.zeros_like(s)], axis=-1)
    # zigzag: a triangle wave in arc length (slope +-1), the first leg half length so the path
    # oscillates around the x axis; x advances cos(angle) and y sin(angle) times it.
    leg = r
    u = s + 0.5 * leg
    n = np.floor(u / leg)
    w = u - n * leg
    tri = np.where(np.mod(n, 2) == 0, w - 0.5 * leg, 0.5 * leg - w)
    x, y = np.cos(ZIGZAG_ANGLE) * s, np.sin(ZIGZAG_ANGLE) * tri
    return np.stack([x, y], axis=-1)


def place(xy: np.ndarray, start_xy: np.ndarray, start_yaw: float) -> np.ndarray:
    """Rotate path points (N, 2) by start_yaw and move them to start_xy (world frame, m)."""
    pts = np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)
    return rotate_xy(pts, np.full(len(xy), start_yaw))[:, :2] + np.asarray(start_xy)[:2]


def target(kind: str, num_steps: int, dt: float, speed: float, radius: float,
           start_xy: np.ndarray, start_yaw: float = 0.0) -> np.ndarray:
    """(num_steps, 2) m target position at each step t (time t dt, arc length speed t dt)."""
    if speed <= 0:
        raise ConfigError(f"eval.speed must be > 0, got {speed}")
    s = speed * dt * np.arange(num_steps)
    return place(path_xy(kind, s, radius), start_xy, start_yaw)


# Random paths for DAgger (quadpipe.learn.dagger): pieces of the kinds the evaluation paths are
# made of (straight runs, arcs, sharp corners) with random lengths, radii and angles, so the policy
# learns to follow paths in general, not the four evaluation paths.
STRAIGHT_M = (0.3, 1.5)  # straight piece length
ARC_RADIUS_M = (0.7, 2.5)
ARC_ANGLE_DEG = (30.0, 180.0)
CORNER_DEG = (20.0, 75.0)  # heading jump at a sharp corner


def random_path(rng: np.random.Generator, length: float, resolution: float = 0.005
                ) -> tuple[np.ndarray, np.ndarray]:
    """(s (N,), xy (N, 2)) a random path from the origin heading +x, sampled every `resolution` m.

    Built from its heading along the arc length: straight pieces keep it, arcs turn it at a
    constant rate, corners jump it (a zigzag's kink).
    """
    s = np.arange(0.0, length + resolution, resolution)
    heading = np.empty_like(s)
    pos, angle = 0, 0.0
    while pos < len(s):
        kind = rng.integers(0, 3)
        if kind == 0:
            n = int(rng.uniform(*STRAIGHT_M) / resolution)
            heading[pos:pos + n] = angle
        elif kind == 1:
            radius = rng.uniform(*ARC_RADIUS_M)
            turn = np.deg2rad(rng.uniform(*ARC_ANGLE_DEG)) * rng.choice([-1.0, 1.0])
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
