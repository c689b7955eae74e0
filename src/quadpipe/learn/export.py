"""A trained policy as ONNX and TorchScript files, for a robot's computer without quadpipe.

Both files hold the whole policy: input normalisation, the MLP and output de-normalisation, so
they map a raw observation to torques exactly as `Policy.forward` does (the controller's clamp to
the motor limit is left to the robot, as on the real A1). Input `observation`, (batch, D)
float32; output `torques`, (batch, 12) float32 in N m, unclamped, in the model's actuator order
FR, FL, RR, RL x (hip, thigh, calf).
The observation (learn.samples.observe builds it; `input_layout` names every column):

| columns | meaning | unit |
|---|---|---|
| 0:3 | base position x, y, z (x, y are 0 in the heading frame) | m |
| 3:6 | base orientation, rotation vector (heading frame: yaw removed) | rad |
| 6:9 | base linear velocity (heading frame: rotated by -yaw) | m/s |
| 9:12 | base angular velocity, body frame | rad/s |
| 12:36 | per leg FR, FL, RR, RL and joint hip, thigh, calf: angle, velocity | rad, rad/s |
| 36:36+3W | W waypoints: target base position minus current, (x, y, z) each, path frame | m |
| last 2 (gait_clock) | sin, cos of the gait phase; 0, 0 while standing | 1 |

Waypoint k (1-based) is where the base should be `k * waypoint_every` steps (of dt s) ahead. The
policy acts once per step of dt_s (`rate_hz`, the physics profile it was trained on, `sim`). The
layout, the observation settings, the rate and the torque limit go into each file as metadata
(ONNX metadata_props; TorchScript extra file `quadpipe.json`), so a file documents its inputs.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from quadpipe.config import ExpertConfig
from quadpipe.errors import QuadpipeError
from quadpipe.learn.policy import Policy, load_for, trained_profile
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.state import STATE_DIM

INPUT, OUTPUT = "observation", "torques"
LEGS, JOINTS = ("FR", "FL", "RR", "RL"), ("hip", "thigh", "calf")
OPSET = 18


class ExportError(QuadpipeError):
    """A policy cannot be exported: the exporter's package is missing or it refused the model."""


def input_layout(obs: ObsConfig) -> list[dict[str, str]]:
    """One {name, unit} per observation column, in order (len == obs.dim)."""
    cols = [("base_x", "m"), ("base_y", "m"), ("base_z", "m"),
            ("base_rotvec_x", "rad"), ("base_rotvec_y", "rad"), ("base_rotvec_z", "rad"),
            ("base_vel_x", "m/s"), ("base_vel_y", "m/s"), ("base_vel_z", "m/s"),
            ("base_angvel_x", "rad/s"), ("base_angvel_y", "rad/s"), ("base_angvel_z", "rad/s")]
    for leg in LEGS:
        for joint in JOINTS:
            cols += [(f"{leg}_{joint}_q", "rad"), (f"{leg}_{joint}_qd", "rad/s")]
    assert len(cols) == STATE_DIM
    for k in range(1, obs.num_waypoints + 1):
        cols += [(f"waypoint{k}_{a}", "m") for a in "xyz"]
    if obs.gait_clock:
        cols += [("gait_sin", "1"), ("gait_cos", "1")]
    return [{"name": n, "unit": u} for n, u in cols]


def output_layout() -> list[dict[str, str]]:
    return [{"name": f"{leg}_{joint}_torque", "unit": "N m"} for leg in LEGS for joint in JOINTS]


def metadata(obs: ObsConfig, ckpt: dict[str, Any], expert: ExpertConfig) -> dict[str, Any]:
    """What a robot-side program needs to feed the policy, stored inside each exported file."""
    return {"format": "quadpipe-policy-export-1", "input": INPUT, "output": OUTPUT,
            "obs": dataclasses.asdict(obs), "dt_s": obs.dt, "rate_hz": 1.0 / obs.dt,
            "sim": trained_profile(ckpt),
            "input_layout": input_layout(obs), "output_layout": output_layout(),
            "torque_limit_nm": expert.torque_limit,
            "clamp": "not applied; clamp to +-torque_limit_nm",
            "checkpoint_epoch": ckpt.get("epoch"), "dataset": ckpt.get("dataset")}


def export_onnx(policy: Policy, meta: dict[str, Any], out: str | Path) -> Path:
    """Write an ONNX model (opset 18, dynamic batch) of `policy.forward`."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as exc:
        raise ExportError("ONNX export needs the onnx and onnxscript packages; "
                          "pip install 'quadpipe[export]'") from exc
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, policy.in_dim)
    try:
        # torch.export-based exporter (the supported one since torch 2.9; needs onnxscript)
        torch.onnx.export(policy.cpu().eval(), (example,), str(out), input_names=[INPUT],
                          output_names=[OUTPUT], opset_version=OPSET, dynamo=True,
                          dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False,
                          external_data=False)
    except Exception as exc:  # the exporter's own message says what it refused
        raise ExportError(f"{out}: torch.onnx.export failed ({exc})") from exc
    model = onnx.load(str(out))
    for key, value in (("quadpipe", json.dumps(meta)),
                       ("input_layout", json.dumps(meta["input_layout"]))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def export_torchscript(policy: Policy, meta: dict[str, Any], out: str | Path) -> Path:
    """Write a TorchScript module (torch.jit.load, or libtorch's torch::jit::load in C++)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # deprecated in torch, yet what libtorch programs load
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(policy.cpu().eval())
        torch.jit.save(scripted, str(out), _extra_files={"quadpipe.json": json.dumps(meta)})
    return out


def export_checkpoint(checkpoint: str | Path, onnx_out: str | Path | None = None,
                      torchscript_out: str | Path | None = None,
                      expert: ExpertConfig = ExpertConfig()) -> dict[str, Path]:
    """Export a best.pt to whichever of ONNX and TorchScript is asked for.

    `expert` gives the motor torque limit recorded in the files' metadata; its physics must be
    the policy's (the rate the files state is the policy's own step).
    """
    if onnx_out is None and torchscript_out is None:
        raise ExportError("nothing to export: give --onnx OUT.onnx and/or --torchscript OUT.pt")
    policy, obs, ckpt = load_for(checkpoint, expert)
    meta = metadata(obs, ckpt, expert)
    written = {}
    if onnx_out is not None:
        written["onnx"] = export_onnx(policy, meta, onnx_out)
    if torchscript_out is not None:
        written["torchscript"] = export_torchscript(policy, meta, torchscript_out)
    return written
