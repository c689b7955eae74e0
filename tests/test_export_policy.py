"""Exported policies: ONNX Runtime and TorchScript give the PyTorch torques and walk the same."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from quadpipe.learn.policy import load_checkpoint


@pytest.fixture(scope="module")
def exported(tiny_policies, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is absent")
    from quadpipe.learn.export import export_checkpoint

    d = tmp_path_factory.mktemp("export")
    return export_checkpoint(tiny_policies[0], d / "policy.onnx", d / "policy.pt")


def _real_observations(tiny_shard, obs) -> np.ndarray:
    """Observations of every step of a real demonstration, as training builds them."""
    import h5py

    from quadpipe.learn.samples import trajectory_phase, trajectory_samples

    with h5py.File(tiny_shard) as f:
        g = f["trajectory_00001"]
        phase = trajectory_phase(g["command_sequence"][()], len(g["qpos"]),
                                 float(g.attrs["cmd_duration"]), float(g.attrs["dt"]))
        x, _ = trajectory_samples(g["qpos"][()], g["qvel"][()], g["actions"][()], obs, 1, phase)
    return x


def test_onnx_and_torchscript_match_pytorch(exported, tiny_policies, tiny_shard) -> None:
    import onnxruntime as ort

    policy, obs, ckpt = load_checkpoint(tiny_policies[0])
    x = _real_observations(tiny_shard, obs)
    assert len(x) > 20
    with torch.inference_mode():
        want = policy(torch.from_numpy(x)).numpy()
    assert np.abs(want).max() > 1.0  # real torques, not a degenerate all-zero check
    sess = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    (got_onnx,) = sess.run(["torques"], {"observation": x})
    scripted = torch.jit.load(str(exported["torchscript"]))
    with torch.inference_mode():
        got_ts = scripted(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got_onnx, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got_ts, want, atol=1e-5, rtol=0)
    # The scale-free form of the same claim: the export is as close to the exact (float64)
    # torques as PyTorch's own float32 is. (With the default 256-256-128 network the float32
    # rounding itself reaches ~1.1e-5 N m on 20 N m torques, for PyTorch and ONNX alike.)
    with torch.inference_mode():
        exact = policy.double()(torch.from_numpy(x).double()).numpy()
    own = np.abs(want - exact).max()
    assert np.abs(got_onnx - exact).max() <= 2 * own + 1e-7
    # the file documents its own input: one named column per observation entry, with units
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["quadpipe"])
    assert len(meta["input_layout"]) == x.shape[1] == obs.dim
    assert meta["input_layout"][36] == {"name": "waypoint1_x", "unit": "m"}
    assert meta["output_layout"][0] == {"name": "FR_hip_torque", "unit": "N m"}
    files = {"quadpipe.json": ""}
    torch.jit.load(str(exported["torchscript"]), _extra_files=files)
    assert json.loads(files["quadpipe.json"])["obs"] == meta["obs"]
    # and the rate it expects: one decision per step of the profile it was trained on
    assert meta["dt_s"] == obs.dt == 0.004 and meta["rate_hz"] == pytest.approx(250.0)
    assert meta["sim"] == ckpt["sim"] and meta["sim"]["profile"] == "fast"


@pytest.mark.slow
def test_onnx_policy_walks_like_the_pytorch_policy(exported, tiny_policies) -> None:
    """A closed loop driven by ONNX Runtime follows the PyTorch policy's trajectory."""
    import onnxruntime as ort

    from quadpipe.config import ExpertConfig
    from quadpipe.control.closed_loop import Episodes, run, start_qpos
    from quadpipe.control.paths import parse_path
    from quadpipe.evaluation.named import EvalConfig, place_target
    from quadpipe.learn.controller import PolicyController
    from quadpipe.sim.model import build_model

    policy, obs, _ = load_checkpoint(tiny_policies[0])
    expert = ExpertConfig(cmd_duration=0.4)
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    target, _ = place_target(parse_path("straight", 1.0, "path"), EvalConfig(), expert, q0)
    num = 1500  # 1.5 s
    future = target.future(num, obs.offsets, q0[2])[None]
    sess = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])

    def onnx_forward(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run(["torques"], {"observation": x.numpy()})[0])

    traces = {}
    for name in ("torch", "onnx"):
        control = PolicyController(policy, obs, future, np.zeros(1, int), expert)
        if name == "onnx":
            control.policy = onnx_forward  # the controller's MLP call, now ONNX Runtime's
        with Episodes(model, q0, 1) as sim:
            traces[name] = run(sim, num, control, record_every=10)
    a, b = traces["torch"], traces["onnx"]
    assert a.fall_step[0] == b.fall_step[0]
    moved = np.linalg.norm(a.qpos[0, -1, :2] - a.qpos[0, 0, :2])
    gap = np.abs(a.qpos[0, :, :3] - b.qpos[0, :, :3]).max()
    assert moved > 0.05 and gap < 0.01 * max(moved, 1.0), (moved, gap)


def test_cli_export_policy_and_its_errors(tiny_policies, tmp_path) -> None:
    pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is absent")
    out = tmp_path / "p.onnx"
    r = subprocess.run([sys.executable, "-m", "quadpipe", "export-policy", str(tiny_policies[0]),
                        "--onnx", str(out), "--torchscript", str(tmp_path / "p.pt")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0 and (tmp_path / "p.pt").stat().st_size > 0
    r = subprocess.run([sys.executable, "-m", "quadpipe", "export-policy",
                        str(tmp_path / "missing.pt"), "--onnx", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such checkpoint" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
