"""The scripted trot expert: joint references for a command sequence, vectorised over time.

An open-loop central pattern generator (two diagonal phase groups) gives thigh/calf references;
four filtered "turning knobs" (amplitude scale and hip bias per side) steer it. The joint PD that
tracks these references runs inside MuJoCo (see quadpipe.sim.model), so the references are the whole
expert: `references(commands)` is computed once with numpy and the physics never calls back into
Python. The facts come from the original system; see docs in `expert-controller.md`.
"""

from __future__ import annotations

import numpy as np

from quadpipe.config import ExpertConfig
from quadpipe.sim.commands import BACKWARD, STAND, TURN_LEFT, TURN_RIGHT, check_commands

# (freq, A_thigh, C_thigh, A_calf, C_calf) of the original system.
GAIT_FORWARD = (0.26525665033578044, 0.04331492786316298, 0.8633149317316002,
                -0.3418982967378247, -1.3331979248705708)
GAIT_BACKWARD = (0.21293431713739921, -0.26125882252618804, 0.7896398347924382,
                 -0.15418034163543437, -1.395866081515512)

# Gait modes per step: which parameters, and whether the oscillator runs.
MODE_FORWARD, MODE_BACKWARD, MODE_STAND = 0, 1, 2

# Legs FR, FL, RR, RL. Diagonal trot: FR+RL in group A, FL+RR in group B.
IS_LEFT = np.array([False, True, False, True])
THIGH_OFFSET = np.array([0.0, np.pi, np.pi, 0.0])
CALF_OFFSET = np.array([-np.pi / 2, np.pi / 2, np.pi / 2, -np.pi / 2])

# Knob order: (scaleL, scaleR, hipBL, hipBR); their value before the first step.
KNOBS_AT_REST = np.array([1.0, 1.0, 0.0, 0.0])


def command_modes(commands: np.ndarray, cfg: ExpertConfig) -> np.ndarray:
    """(T,) gait mode per step for a command sequence, T = len(commands) * steps_per_command."""
    cmds = np.repeat(check_commands(commands), cfg.steps_per_command)
    modes = np.full(cmds.shape, MODE_FORWARD, dtype=np.int8)
    modes[cmds == BACKWARD] = MODE_BACKWARD
    modes[cmds == STAND] = MODE_STAND
    return modes


def knob_targets(commands: np.ndarray, cfg: ExpertConfig) -> np.ndarray:
    """(T, 4) knob targets per step: straight for forward/backward/stand, split for turns."""
    cmds = np.repeat(check_commands(commands), cfg.steps_per_command)
    targets = np.tile(KNOBS_AT_REST, (cmds.size, 1))
    d = cfg.turn_scale_delta
    right = np.array([1.0 + d, 1.0 - d, *cfg.turn_hip_bias])
    left = np.array([1.0 - d, 1.0 + d, -cfg.turn_hip_bias[0], -cfg.turn_hip_bias[1]])
    targets[cmds == TURN_RIGHT] = right
    targets[cmds == TURN_LEFT] = left
    return targets


def filter_knobs(targets: np.ndarray, cfg: ExpertConfig, start: np.ndarray = KNOBS_AT_REST
                 ) -> np.ndarray:
    """The original's per-step low-pass v += a (target - v), a = dt / (tau + dt), in closed form.

    Targets are piecewise constant, so each constant run is v_n = target + (v0 - target)(1-a)^(n+1):
    one numpy expression per run instead of a Python step loop.
    """
    targets = np.asarray(targets, dtype=np.float64)
    out = np.empty_like(targets)
    change = np.flatnonzero(np.any(np.diff(targets, axis=0) != 0, axis=1)) + 1
    bounds = np.concatenate([[0], change, [len(targets)]])
    v = np.asarray(start, dtype=np.float64)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        out[a:b] = knob_run(v, targets[a], b - a, cfg)
        v = out[b - 1]
    return out


def knob_run(start: np.ndarray, target: np.ndarray, n: int, cfg: ExpertConfig) -> np.ndarray:
    """(..., n, 4) the filtered knobs over n steps of one constant target (..., 4) from their
    values `start` (..., 4): one run of `filter_knobs`, for one episode or many at once."""
    alpha = cfg.dt / (cfg.knob_tau + cfg.dt)
    decay = (1.0 - alpha) ** np.arange(1, n + 1)
    return target[..., None, :] + (start - target)[..., None, :] * decay[:, None]


def gait_phase(steps: np.ndarray, modes: np.ndarray, dt: float) -> np.ndarray:
    """CPG phase (rad) at 1-based global step index `steps` of `dt` s: t/ms * freq * 0.01 * 2 pi.

    The original advanced the phase by freq * 0.01 * 2 pi per 1-ms step; stated in time, the
    gait is the same at any step (at 1 ms, `steps * 1.0`: the original's bits).
    """
    freq = np.where(modes == MODE_BACKWARD, GAIT_BACKWARD[0], GAIT_FORWARD[0])
    ms = np.asarray(steps, dtype=np.float64) * (dt / 0.001)
    return ms * freq * 0.01 * 2.0 * np.pi


def joint_references(steps: np.ndarray, modes: np.ndarray, knobs: np.ndarray, dt: float
                     ) -> np.ndarray:
    """(T, 12) joint references from 1-based step indices, gait modes and filtered knobs.

    Joint order FR, FL, RR, RL x (hip, thigh, calf).
    """
    params = np.where((modes == MODE_BACKWARD)[:, None], GAIT_BACKWARD, GAIT_FORWARD)
    a_th, c_th, a_cf, c_cf = (params[:, i:i + 1] for i in range(1, 5))
    phase = gait_phase(steps, modes, dt)[:, None]
    osc = (modes != MODE_STAND)[:, None]
    scale = np.where(IS_LEFT, knobs[:, 0:1], knobs[:, 1:2])  # (T, 4)
    hip = np.where(IS_LEFT, knobs[:, 2:3], knobs[:, 3:4])
    thigh = np.where(osc, a_th * scale * np.cos(phase + THIGH_OFFSET) + c_th, c_th)
    calf = np.where(osc, a_cf * scale * np.cos(phase + CALF_OFFSET) + c_cf, c_cf)
    refs = np.empty((len(modes), 12))
    refs[:, 0::3] = hip
    refs[:, 1::3] = thigh
    refs[:, 2::3] = calf
    return refs


def forward_references(steps: np.ndarray, knobs: np.ndarray, dt: float) -> np.ndarray:
    """(E, n, 12) joint references of E episodes trotting forward over the same steps (n,), each
    with its own filtered knobs (E, n, 4): `joint_references` of each episode, bit for bit.

    The oscillator's cosines depend on the steps alone, so they are computed once, on the same
    (n, 4) array an episode computed alone; what differs per episode is only multiplied and
    added. (Computing the cosines over all episodes' rows at once would not do: numpy's vector
    cosine and its scalar tail differ in the last bit, and which rows fall in the tail depends on
    how many episodes share the call.)
    """
    a_th, c_th, a_cf, c_cf = GAIT_FORWARD[1:5]
    phase = gait_phase(steps, np.full(len(steps), MODE_FORWARD, dtype=np.int8), dt)[:, None]
    cos_th, cos_cf = np.cos(phase + THIGH_OFFSET), np.cos(phase + CALF_OFFSET)
    scale = np.where(IS_LEFT, knobs[..., 0:1], knobs[..., 1:2])  # (E, n, 4)
    hip = np.where(IS_LEFT, knobs[..., 2:3], knobs[..., 3:4])
    refs = np.empty(knobs.shape[:2] + (12,))
    refs[..., 0::3] = hip
    refs[..., 1::3] = a_th * scale * cos_th + c_th
    refs[..., 2::3] = a_cf * scale * cos_cf + c_cf
    return refs


def references(commands: np.ndarray, cfg: ExpertConfig = ExpertConfig()) -> np.ndarray:
    """(T, 12) joint references (the `ctrl` of the native-PD model) for a whole command sequence."""
    modes = command_modes(commands, cfg)
    knobs = filter_knobs(knob_targets(commands, cfg), cfg)
    return joint_references(np.arange(1, len(modes) + 1), modes, knobs, cfg.dt)


def standing_pose() -> tuple[float, float]:
    """(thigh, calf) of the original's standing start: the forward gait's offsets."""
    return GAIT_FORWARD[2], GAIT_FORWARD[4]
