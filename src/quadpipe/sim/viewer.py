"""The interactive MuJoCo viewer as a player of precomputed frames, like the original's
`visualize_trajectory.jl`: real-time playback, pause, single steps, the command on screen.

The window is MuJoCo's passive viewer (`mujoco.viewer.launch_passive`): it draws our MjData and
leaves the stepping to us, so each frame only sets qpos and runs mj_forward, and nothing is
simulated. Which frame to show is decided by `Transport`, pure and testable; `play` is the shell.

The viewer needs a display. Without one (no DISPLAY / WAYLAND_DISPLAY on Linux), or when GLFW
cannot open an OpenGL window, `play` raises ViewerError: on Linux a hidden window is tried
first, since the launcher would otherwise hang or exit the process, and the viewer's own window
then gets OPEN_TIMEOUT_S to appear.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mujoco
import numpy as np

from quadpipe.errors import QuadpipeError

# GLFW key codes, as the viewer's key callback reports them
KEY_SPACE, KEY_RIGHT, KEY_LEFT, KEY_HOME = 32, 262, 263, 268
OPEN_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 10.0
REDRAW_S = 1 / 60  # the loop redraws this often; the frame shown follows the clock
HELP = ("space\nright arrow\nleft arrow\nhome",
        "play / pause\nnext frame (pauses)\nprevious frame (pauses)\nfirst frame")


class ViewerError(QuadpipeError):
    """No display, or the MuJoCo viewer cannot open its window."""


def display_problem(environ: Mapping[str, str], platform: str) -> str | None:
    """Why no window can open here, or None when one may.

    Only Linux is decided from the environment (X11 needs DISPLAY, Wayland WAYLAND_DISPLAY);
    elsewhere opening the window is the test.
    """
    if platform.startswith("linux") and not (environ.get("DISPLAY")
                                             or environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    return None


@dataclasses.dataclass
class Transport:
    """Which of `num_frames` frames to show at wall-clock time `now` (s): playback at `fps` x
    `speed` frames per second, pause (space), single steps (right / left arrow, which pause),
    back to the start (home). Playback stops on the last frame; space there starts again."""

    num_frames: int
    fps: float
    speed: float = 1.0
    frame: int = 0
    paused: bool = False
    _anchor: tuple[float, int] | None = None  # (wall time, frame) playback counts from

    def press(self, key: int, now: float) -> None:
        """Apply one key press."""
        last = self.num_frames - 1
        if key == KEY_SPACE:
            if self.paused and self.frame >= last:
                self.frame = 0
            self.paused = not self.paused
        elif key in (KEY_RIGHT, KEY_LEFT):
            self.paused = True
            self.frame = min(max(self.frame + (1 if key == KEY_RIGHT else -1), 0), last)
        elif key == KEY_HOME:
            self.frame = 0
        else:
            return
        self._anchor = None if self.paused else (now, self.frame)

    def tick(self, now: float) -> int:
        """The frame to show at `now`; advances in real time unless paused."""
        if self.paused:
            return self.frame
        if self._anchor is None:
            self._anchor = (now, self.frame)
        start_time, start_frame = self._anchor
        elapsed_frames = math.floor((now - start_time) * self.fps * self.speed + 1e-9)
        self.frame = min(start_frame + elapsed_frames, self.num_frames - 1)
        if self.frame == self.num_frames - 1:
            self.paused, self._anchor = True, None
        return self.frame


def play(model: mujoco.MjModel, qpos: np.ndarray, times: np.ndarray, captions: Sequence[str],
         fps: float, title: str, environ: Mapping[str, str], platform: str,
         speed: float = 1.0, fallback: str = "",
         announce: Callable[[str], Any] = print) -> None:
    """Show frames qpos (F, nq) in the viewer until its window is closed.

    times (F,) s and captions (F,) (e.g. the command in force) are drawn over the scene; each
    new caption is also passed to `announce` (printed), so a terminal shows it too. Raises
    ViewerError when no window can open; `fallback` (what to do instead) ends its message.
    """
    if len(qpos) != len(times) or len(qpos) != len(captions) or len(qpos) < 1:
        raise QuadpipeError(f"play: {len(qpos)} frames, {len(times)} times and {len(captions)} "
                            "captions; pass one of each per frame, at least one frame")
    if not (fps > 0 and speed > 0):
        raise QuadpipeError(f"play: fps ({fps}) and speed ({speed}) must be positive")
    suffix = f"; {fallback}" if fallback else ""
    problem = display_problem(environ, platform)
    if problem is not None:
        raise ViewerError(f"cannot open the MuJoCo viewer: {problem}{suffix}")
    data = mujoco.MjData(model)
    data.qpos[:] = qpos[0]
    keys: queue.SimpleQueue[int] = queue.SimpleQueue()
    viewer, threads = _open(model, data, keys.put, platform, suffix)
    transport = Transport(len(qpos), fps, speed)
    last_caption = None
    announce(f"{title}: {times[-1]:.3f} s in {len(qpos)} frames; space plays / pauses, the "
             "arrow keys step, home goes back to the start; close the window to quit")
    try:
        with viewer.lock():
            viewer.cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            viewer.cam.trackbodyid = 1  # the trunk, so the robot stays in view
            viewer.cam.distance, viewer.cam.elevation = 1.8, -20.0
        while viewer.is_running():
            now = time.perf_counter()
            while not keys.empty():
                transport.press(keys.get(), now)
            k = transport.tick(now)
            with viewer.lock():
                data.qpos[:] = qpos[k]
                mujoco.mj_forward(model, data)
            state = "paused" if transport.paused else f"playing x{speed:g}"
            viewer.set_texts([
                (None, mujoco.mjtGridPos.mjGRID_TOPLEFT, f"{title}\ncommand\ntime\nframe",
                 f"{state}\n{captions[k]}\n{times[k]:.3f} s of {times[-1]:.3f} s\n"
                 f"{k + 1} of {len(qpos)}"),
                (None, mujoco.mjtGridPos.mjGRID_BOTTOMLEFT, *HELP),
            ])
            if captions[k] != last_caption:
                announce(f"{times[k]:8.3f} s  {captions[k]}")
                last_caption = captions[k]
            viewer.sync()
            time.sleep(max(0.0, REDRAW_S - (time.perf_counter() - now)))
    finally:
        # the window's thread must finish tearing it down before Python exits (and GLFW ends):
        # after Ctrl+C, exiting under it crashes
        viewer.close()
        for thread in threads:
            thread.join(CLOSE_TIMEOUT_S)


def _open(model: mujoco.MjModel, data: mujoco.MjData, on_key: Callable[[int], Any],
          platform: str, suffix: str) -> tuple[Any, list[threading.Thread]]:
    """The passive viewer's handle and the threads it runs in, or ViewerError saying why no
    window opened."""
    try:
        import glfw
        import mujoco.viewer
    except (ImportError, RuntimeError) as exc:
        raise ViewerError(f"cannot load the MuJoCo viewer ({exc}){suffix}") from exc
    if platform.startswith("linux"):
        problem = _window_problem(glfw)
        if problem is not None:
            raise ViewerError(f"cannot open the MuJoCo viewer: {problem}{suffix}")
    opened: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def launch() -> None:
        try:
            # both side panels stay (Tab / Shift+Tab hide them): mujoco 4.0 crashes on closing
            # a window opened without them
            opened.put(mujoco.viewer.launch_passive(model, data, key_callback=on_key))
        except Exception as exc:  # any failure to open means: no viewer, say why
            opened.put(exc)

    before = set(threading.enumerate())
    threading.Thread(target=launch, daemon=True).start()
    try:
        result = opened.get(timeout=OPEN_TIMEOUT_S)
    except queue.Empty:
        raise ViewerError(f"cannot open the MuJoCo viewer: no window after {OPEN_TIMEOUT_S:g} s "
                          f"(check the display and OpenGL){suffix}") from None
    if isinstance(result, Exception):
        raise ViewerError(f"cannot open the MuJoCo viewer ({type(result).__name__}: "
                          f"{result}){suffix}") from result
    return result, [t for t in threading.enumerate() if t not in before]


def _window_problem(glfw: Any) -> str | None:
    """Why GLFW cannot open an OpenGL window here, or None (it opened and closed a hidden one).

    Tried before the viewer is launched because the launcher, on Linux, starts GLFW in a thread
    of its own, then waits forever when GLFW fails to start, or exits the whole process when the
    window cannot be made. (Not on macOS: there GLFW belongs to the main thread, which mjpython
    keeps for itself.)
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if not glfw.init():
            return f"no usable display ({_glfw_errors(caught, 'glfw.init() failed')})"
        glfw.window_hint(glfw.VISIBLE, glfw.FALSE)
        window = glfw.create_window(64, 64, "quadpipe", None, None)
        glfw.default_window_hints()
        if not window:
            return f"no OpenGL window ({_glfw_errors(caught, 'glfwCreateWindow failed')})"
        glfw.destroy_window(window)
    return None


def _glfw_errors(caught: list[warnings.WarningMessage], default: str) -> str:
    """GLFW's own words, without pyGLFW's wrapping: "(65550) b'X11: ...'" -> "X11: ..."."""
    return "; ".join(re.sub(r"^\(\d+\) b?'(.*)'$", r"\1", str(w.message))
                     for w in caught) or default
