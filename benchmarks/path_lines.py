"""The target path drawn as lines vs as capsules (the earlier way), side by side on one trajectory.

A 320x240 frame in software OpenGL (llvmpipe) spent ~85 % of its time on the path's capsules
(benchmarks/README.md, "Evaluation"); sim.render now draws line segments. This renders the same
frames both ways, alternating, and prints the CPU seconds and their ratio, and how far the two
pictures are apart (mean absolute difference of the pixels, 0-255).

    python benchmarks/path_lines.py [--seconds 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import mujoco
import numpy as np

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import start_qpos
from quadpipe.sim import render
from quadpipe.sim.model import build_model

CAPSULE_RADIUS = 0.012  # m, the capsules' radius before the path became lines


def add_capsules(self, scene, viewport, cull=True):  # the earlier _Path.add, for comparison
    for i in range(len(self.a)):
        if scene.ngeom >= scene.maxgeom:
            return
        g = scene.geoms[scene.ngeom]
        mujoco.mjv_initGeom(g, mujoco.mjtGeom.mjGEOM_CAPSULE, np.zeros(3), np.zeros(3),
                            np.zeros(9), self.rgba)
        mujoco.mjv_connector(g, mujoco.mjtGeom.mjGEOM_CAPSULE, CAPSULE_RADIUS, self.a[i],
                             self.b[i])
        scene.ngeom += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = build_model(ExpertConfig(), pd="torque")
    q0 = start_qpos(model)
    n = int(args.seconds * 1000) + 1
    qpos = np.tile(q0, (n, 1))
    qpos[:, 0] = np.linspace(0.0, 0.25 * args.seconds, n)  # walking pace along x
    t = np.linspace(0.0, 2.0 * np.pi, 400)
    circle = np.column_stack([np.sin(t), 1.0 - np.cos(t)])  # the circle path, radius 1 m
    lines_add = render._Path.add
    times = {"capsules": [], "lines": []}
    frames = {}
    for _ in range(args.repeats):
        for name, add in (("capsules", add_capsules), ("lines", lines_add)):
            render._Path.add = add
            start = time.process_time()
            frames[name] = render.render_frames(model, qpos, 0.001, 30, 320, 240, circle)
            times[name].append(time.process_time() - start)
    render._Path.add = lines_add
    cap, lin = min(times["capsules"]), min(times["lines"])
    diff = np.abs(frames["capsules"].astype(int) - frames["lines"].astype(int)).mean()
    print(f"{len(frames['lines'])} frames: capsules {cap:.2f} s CPU, lines {lin:.2f} s CPU, "
          f"ratio {cap / lin:.2f}x; mean pixel difference {diff:.2f} of 255")


if __name__ == "__main__":
    main()
