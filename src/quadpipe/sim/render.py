"""Offscreen video of a trajectory: qpos (T, 19) -> an H.264 mp4 a browser <video> can play.

Why a low-level renderer instead of `mujoco.Renderer`: MuJoCo picks its GL backend from MUJOCO_GL
once, when `mujoco` is first imported (by sim.model, long before anyone wants a video), and its
default (GLFW) needs a display. Here the headless backend is chosen at call time: MUJOCO_GL if
the caller set it to "egl"/"osmesa", else EGL (Debian: libegl1 + libegl-mesa0), then OSMesa
(libosmesa6).
Shadows and reflections are off: they cost most of the software-rendering time and add nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import mujoco
import numpy as np

from quadpipe.errors import QuadpipeError

HEADLESS_BACKENDS = ("egl", "osmesa")
CAMERA = "track"
PATH_RGBA = (0.1, 0.4, 1.0, 0.9)  # target path colour
PATH_WIDTH = 0.012  # m, radius of the target path's capsules
MAX_PATH_SEGMENTS = 400


class RenderError(QuadpipeError):
    """No headless OpenGL backend works, or the video cannot be written."""


def frame_indices(num_steps: int, dt: float, fps: int) -> np.ndarray:
    """Row of qpos shown in each video frame, one every 1/fps s of simulated time: (F,) int."""
    if num_steps < 1:
        raise RenderError("render_video: qpos has no rows; pass a (T, 19) array with T >= 1")
    duration = (num_steps - 1) * dt
    num_frames = int(np.floor(duration * fps + 1e-9)) + 1
    idx = np.rint(np.arange(num_frames) / (fps * dt)).astype(int)
    return np.minimum(idx, num_steps - 1)


def _gl_context(width: int, height: int):
    """A current offscreen GL context from the first backend that works (see module docstring)."""
    wanted = os.environ.get("MUJOCO_GL", "").lower().strip()
    order = [wanted] if wanted in HEADLESS_BACKENDS else []
    order += [b for b in HEADLESS_BACKENDS if b not in order]
    errors = []
    for backend in order:
        try:
            if backend == "egl":
                from mujoco.egl import GLContext
            else:
                from mujoco.osmesa import GLContext
            ctx = GLContext(width, height)
            ctx.make_current()
            return ctx
        except Exception as exc:  # any import/driver failure means: try the next backend
            errors.append(f"{backend}: {type(exc).__name__}: {exc}")
    raise RenderError(
        "no headless OpenGL backend works (" + "; ".join(errors) + "); install EGL "
        "(apt-get install libegl1 libegl-mesa0) or OSMesa (apt-get install libosmesa6), "
        "or set eval.video: false")


def _add_path(scene: mujoco.MjvScene, target_xy: np.ndarray, z: float = 0.004) -> None:
    """Append the target path (N, 2) m as thin capsules lying on the floor."""
    pts = np.asarray(target_xy, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise RenderError(f"render_video: target_xy must be (N>=2, 2) m, got shape {pts.shape}")
    step = max(1, int(np.ceil((len(pts) - 1) / MAX_PATH_SEGMENTS)))
    pts = pts[::step] if (len(pts) - 1) % step == 0 else np.vstack([pts[::step], pts[-1:]])
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        if scene.ngeom >= scene.maxgeom:
            return
        if np.allclose(a, b):
            continue
        g = scene.geoms[scene.ngeom]
        mujoco.mjv_initGeom(g, mujoco.mjtGeom.mjGEOM_CAPSULE, np.zeros(3), np.zeros(3),
                            np.zeros(9), np.asarray(PATH_RGBA, dtype=np.float32))
        mujoco.mjv_connector(g, mujoco.mjtGeom.mjGEOM_CAPSULE, PATH_WIDTH,
                             np.array([a[0], a[1], z]), np.array([b[0], b[1], z]))
        scene.ngeom += 1


def render_frames(model: mujoco.MjModel, qpos: np.ndarray, dt: float, fps: int = 30,
                  width: int = 320, height: int = 240,
                  target_xy: np.ndarray | None = None) -> np.ndarray:
    """Frames (F, height, width, 3) uint8 seen by the model's "track" camera, F = frame_indices."""
    qpos = np.asarray(qpos, dtype=float)
    if qpos.ndim != 2 or qpos.shape[1] != model.nq:
        raise RenderError(f"render_video: qpos must be (T, {model.nq}), got shape {qpos.shape}")
    if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
        raise RenderError(
            f"render_video: {width}x{height} exceeds the model's offscreen buffer "
            f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}; use a smaller size")
    ctx = _gl_context(width, height)
    try:
        data = mujoco.MjData(model)
        scene = mujoco.MjvScene(model, maxgeom=model.ngeom + MAX_PATH_SEGMENTS + 100)
        scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, con)
        cam = mujoco.MjvCamera()
        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA)
        if cam_id >= 0:
            cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            cam.fixedcamid = cam_id
        else:  # a model without the tracking camera: a free camera looking at the trunk
            cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            cam.trackbodyid = 1
            cam.distance, cam.elevation = 1.8, -20.0
        opt = mujoco.MjvOption()
        viewport = mujoco.MjrRect(0, 0, width, height)
        idx = frame_indices(len(qpos), dt, fps)
        frames = np.empty((len(idx), height, width, 3), dtype=np.uint8)
        for k, t in enumerate(idx):
            data.qpos[:] = qpos[t]
            mujoco.mj_forward(model, data)
            mujoco.mjv_updateScene(model, data, opt, None, cam, mujoco.mjtCatBit.mjCAT_ALL, scene)
            if target_xy is not None:
                _add_path(scene, target_xy)
            mujoco.mjr_render(viewport, scene, con)
            mujoco.mjr_readPixels(frames[k], None, viewport, con)
        con.free()
    finally:
        ctx.free()
    return frames[:, ::-1]  # OpenGL rows start at the bottom


def render_video(model: mujoco.MjModel, qpos: np.ndarray, out: Path, dt: float, fps: int = 30,
                 width: int = 320, height: int = 240,
                 target_xy: np.ndarray | None = None) -> Path:
    """Write an H.264/yuv420p mp4 of qpos (T, 19) sampled every dt s, played at real time.

    `target_xy` (N, 2) m, world frame, is drawn on the floor as a blue line. Width and height must
    be even (yuv420p). Returns `out`.
    """
    if width % 2 or height % 2:
        raise RenderError(f"render_video: width and height must be even, got {width}x{height}")
    try:
        import imageio.v2 as imageio
    except ImportError as exc:
        raise RenderError("render_video needs imageio and imageio-ffmpeg: "
                          "pip install imageio imageio-ffmpeg") from exc
    frames = render_frames(model, qpos, dt, fps, width, height, target_xy)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        writer = imageio.get_writer(out, fps=fps, codec="libx264", pixelformat="yuv420p",
                                    macro_block_size=2, ffmpeg_log_level="error",
                                    ffmpeg_params=["-movflags", "+faststart", "-crf", "23"])
        with writer:
            for frame in frames:
                writer.append_data(np.ascontiguousarray(frame))
    except (OSError, RuntimeError) as exc:
        raise RenderError(f"cannot write video {out}: {exc}; check the directory and that "
                          "imageio-ffmpeg is installed") from exc
    return out
