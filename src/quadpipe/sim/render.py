"""Offscreen video of a trajectory: qpos (T, 19) -> an H.264 mp4 a browser <video> can play.

Why a low-level renderer instead of `mujoco.Renderer`: MuJoCo picks its GL backend from MUJOCO_GL
once, when `mujoco` is first imported (by sim.model, long before anyone wants a video), and its
default (GLFW) needs a display. Here the headless backend is chosen at call time: MUJOCO_GL if
the caller set it to "egl"/"osmesa", else EGL (Debian: libegl1 + libegl-mesa0), then OSMesa
(libosmesa6).
Shadows and reflections are off: they cost most of the software-rendering time and add nothing.

The target path is drawn as up to 400 line segments PATH_LINE_PX pixels wide on the floor. As
capsules (~2,000 triangles each, drawn twice by MuJoCo's two transparency passes) the path was
85 % of a frame's software-rendering time (llvmpipe), 67-110 s of CPU per 10-s video; as lines
a frame costs 7x less and looks the same at 320x240 (benchmarks/README.md). Each frame also hands
the renderer only the segments whose bounding sphere meets the camera's view frustum: the ones
left out are clipped whole by OpenGL and would give no pixel, and MuJoCo sorts transparent geoms
with a stable sort, so the ones drawn keep their order (the same pixels: tests/test_render.py).
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
PATH_LINE_PX = 3.0  # pixels, width of the target path's line
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


class _Path:
    """The target path (N, 2) m as line segments lying on the floor at height z, added to a scene
    frame by frame: only the segments the camera can see (module docstring)."""

    # m added to each segment's bounding sphere in the view test: more than half a line's width
    # (1.5 px) even where a pixel spans several centimetres of floor, far from the camera
    MARGIN = 0.1

    def __init__(self, target_xy: np.ndarray, z: float = 0.004) -> None:
        pts = np.asarray(target_xy, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise RenderError(f"render_video: target_xy must be (N>=2, 2) m, got shape {pts.shape}")
        step = max(1, int(np.ceil((len(pts) - 1) / MAX_PATH_SEGMENTS)))
        pts = pts[::step] if (len(pts) - 1) % step == 0 else np.vstack([pts[::step], pts[-1:]])
        a = np.column_stack([pts[:-1], np.full(len(pts) - 1, z)])
        b = np.column_stack([pts[1:], np.full(len(pts) - 1, z)])
        keep = ~np.all(np.isclose(pts[:-1], pts[1:]), axis=1)  # as np.allclose per segment
        self.a, self.b = a[keep], b[keep]
        self.centre = 0.5 * (self.a + self.b)
        self.radius = 0.5 * np.linalg.norm(self.b - self.a, axis=1) + self.MARGIN
        self.rgba = np.asarray(PATH_RGBA, dtype=np.float32)

    def visible(self, scene: mujoco.MjvScene, viewport: mujoco.MjrRect) -> np.ndarray:
        """(S,) bool: segments whose bounding sphere is not wholly outside the view frustum that
        mjr_render sets up (render_gl3.c setView: the average of the scene's two cameras)."""
        cam = mujoco.mjv_averageCamera(scene.camera[0], scene.camera[1])
        if cam.orthographic or scene.enabletransform:
            return np.ones(len(self.a), dtype=bool)
        forward = np.asarray(cam.forward, dtype=float)
        up = np.asarray(cam.up, dtype=float)
        rel = self.centre - np.asarray(cam.pos, dtype=float)
        x, y, depth = rel @ np.cross(forward, up), rel @ up, rel @ forward
        near, far = float(cam.frustum_near), float(cam.frustum_far)
        half = float(cam.frustum_width) or \
            0.5 * viewport.width / viewport.height * (cam.frustum_top - cam.frustum_bottom)
        left, right = cam.frustum_center - half, cam.frustum_center + half
        bottom, top = float(cam.frustum_bottom), float(cam.frustum_top)
        r = self.radius
        return ((depth > near - r) & (depth < far + r)
                & ((near * x - left * depth) / np.hypot(near, left) > -r)
                & ((right * depth - near * x) / np.hypot(near, right) > -r)
                & ((near * y - bottom * depth) / np.hypot(near, bottom) > -r)
                & ((top * depth - near * y) / np.hypot(near, top) > -r))

    def add(self, scene: mujoco.MjvScene, viewport: mujoco.MjrRect, cull: bool = True) -> None:
        """Append the segments (the visible ones if `cull`) to the scene, in path order."""
        idx = np.flatnonzero(self.visible(scene, viewport)) if cull else range(len(self.a))
        for i in idx:
            if scene.ngeom >= scene.maxgeom:
                return
            g = scene.geoms[scene.ngeom]
            mujoco.mjv_initGeom(g, mujoco.mjtGeom.mjGEOM_LINE, np.zeros(3), np.zeros(3),
                                np.zeros(9), self.rgba)
            mujoco.mjv_connector(g, mujoco.mjtGeom.mjGEOM_LINE, PATH_LINE_PX, self.a[i],
                                 self.b[i])
            scene.ngeom += 1


def render_frames(model: mujoco.MjModel, qpos: np.ndarray, dt: float, fps: int = 30,
                  width: int = 320, height: int = 240,
                  target_xy: np.ndarray | None = None, cull: bool = True) -> np.ndarray:
    """Frames (F, height, width, 3) uint8 seen by the model's "track" camera, F = frame_indices.

    cull=False hands every path capsule to the renderer (the same pixels, slower; for tests and
    benchmarks/evaluation.py)."""
    qpos = np.asarray(qpos, dtype=float)
    if qpos.ndim != 2 or qpos.shape[1] != model.nq:
        raise RenderError(f"render_video: qpos must be (T, {model.nq}), got shape {qpos.shape}")
    if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
        raise RenderError(
            f"render_video: {width}x{height} exceeds the model's offscreen buffer "
            f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}; use a smaller size")
    path = None if target_xy is None else _Path(target_xy)
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
            if path is not None:
                path.add(scene, viewport, cull)
            mujoco.mjr_render(viewport, scene, con)
            mujoco.mjr_readPixels(frames[k], None, viewport, con)
        con.free()
    finally:
        ctx.free()
    return frames[:, ::-1]  # OpenGL rows start at the bottom


def _imageio():
    try:
        import imageio.v2 as imageio
    except ImportError as exc:
        raise RenderError("render_video needs imageio and imageio-ffmpeg: "
                          "pip install imageio imageio-ffmpeg") from exc
    return imageio


def render_video(model: mujoco.MjModel, qpos: np.ndarray, out: Path, dt: float, fps: int = 30,
                 width: int = 320, height: int = 240,
                 target_xy: np.ndarray | None = None) -> Path:
    """Write an H.264/yuv420p mp4 of qpos (T, 19) sampled every dt s, played at real time.

    `target_xy` (N, 2) m, world frame, is drawn on the floor as a blue line. Width and height must
    be even (yuv420p). Returns `out`.
    """
    if width % 2 or height % 2:
        raise RenderError(f"render_video: width and height must be even, got {width}x{height}")
    _imageio()  # before the rendering, not after it
    return write_video(render_frames(model, qpos, dt, fps, width, height, target_xy), out, fps)


def write_video(frames: np.ndarray, out: Path, fps: int = 30) -> Path:
    """Encode frames (F, H, W, 3) uint8, H and W even, as an H.264/yuv420p mp4 at fps."""
    imageio = _imageio()
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
