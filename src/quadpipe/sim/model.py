"""The MuJoCo model of the Unitree A1 with the expert's joint PD running inside MuJoCo.

With the PD as `position` actuators the whole rollout is open-loop in `ctrl` (the joint
references), so `mujoco.rollout` can run it in C threads with no Python per step. `actuatorfrc`
sensors record the torque actually applied (after the clamp): the action stored in the dataset.
"""

from __future__ import annotations

from importlib import resources

import mujoco
import numpy as np

from quadpipe.config import ExpertConfig, SimConfig

MODEL_FILE = "a1.xml"
LEGS = ("FR", "FL", "RR", "RL")
JOINTS = ("hip", "thigh", "calf")
NUM_JOINTS = 12
FOOT_RADIUS = 0.02


def _load() -> mujoco.MjModel:
    xml = resources.files("quadpipe.assets").joinpath(MODEL_FILE).read_text()
    return mujoco.MjModel.from_xml_string(xml)


INTEGRATORS = {"Euler": mujoco.mjtIntegrator.mjINT_EULER,
               "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
               "implicit": mujoco.mjtIntegrator.mjINT_IMPLICIT,
               "RK4": mujoco.mjtIntegrator.mjINT_RK4}
CONES = {"pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL, "elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC}


def apply_profile(model: mujoco.MjModel, sim: SimConfig) -> None:
    """Set `model`'s step, integrator, friction cone, solver and foot contacts to profile `sim`.

    The XML holds the original's settings; the profile overwrites all of them, so a model's
    physics is exactly its profile's whatever the XML says.
    """
    opt = model.opt
    opt.timestep = sim.timestep
    opt.integrator = INTEGRATORS[sim.integrator]
    opt.cone = CONES[sim.cone]
    opt.impratio = sim.impratio
    opt.iterations = sim.iterations
    opt.ls_iterations = sim.ls_iterations
    for leg in LEGS:
        model.geom_condim[model.geom(f"{leg}_foot").id] = sim.foot_condim


def build_model(cfg: ExpertConfig = ExpertConfig(), pd: str = "native") -> mujoco.MjModel:
    """The A1 model on the physics of `cfg.sim`, with actuators set for `pd`.

    pd="native": position servos, ctrl = joint reference, torque = clamp(Kp (ref-q) - Kd qd).
    pd="torque": ctrl = joint torque (clamped to the limit), for a PD computed outside MuJoCo
    (the policy, and the naive per-step Python loop the tests and benchmarks compare against).
    """
    model = _load()
    apply_profile(model, cfg.sim)
    kp = np.tile(np.asarray(cfg.kp, dtype=float), 4)
    kd = np.tile(np.asarray(cfg.kd, dtype=float), 4)
    model.actuator_biasprm[:] = 0.0
    model.actuator_gainprm[:] = 0.0
    if pd == "native":
        model.actuator_gainprm[:, 0] = kp
        model.actuator_biasprm[:, 1] = -kp
        model.actuator_biasprm[:, 2] = -kd
    elif pd == "torque":
        model.actuator_gainprm[:, 0] = 1.0
    else:
        raise ValueError(f"pd must be 'native' or 'torque', got {pd!r}")
    model.actuator_forcelimited[:] = 1
    model.actuator_forcerange[:] = (-cfg.torque_limit, cfg.torque_limit)
    return model


def standing_qpos(model: mujoco.MjModel, thigh: float, calf: float) -> np.ndarray:
    """The original's start: joints (0, thigh, calf), body lowered until the feet touch ground."""
    data = mujoco.MjData(model)
    qpos = model.qpos0.copy()
    qpos[7:] = np.tile([0.0, thigh, calf], 4)
    qpos[2] = 1.0
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    feet = [model.geom(f"{leg}_foot").id for leg in LEGS]
    lowest = min(data.geom_xpos[g][2] for g in feet) - FOOT_RADIUS
    qpos[2] -= lowest
    return qpos


def full_state(model: mujoco.MjModel, qpos: np.ndarray,
               qvel: np.ndarray | None = None) -> np.ndarray:
    """MuJoCo's full physics state vector (what `mujoco.rollout` starts from) at time 0."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    if qvel is not None:
        data.qvel[:] = qvel
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    out = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, out, spec)
    return out
