"""CLI verbs that hand quadpipe's results to other tools: export-policy, export-dataset."""

from __future__ import annotations

import argparse

from quadpipe.cli.main import load_config, verb


def _policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="policy checkpoint (best.pt)")
    p.add_argument("--onnx", help="ONNX file to write (ONNX Runtime)")
    p.add_argument("--torchscript", help="TorchScript file to write (torch.jit.load, libtorch)")
    p.add_argument("--config", help="YAML with an expert section (dt, torque limit metadata)")


@verb("export-policy", _policy_args)
def _export_policy(args: argparse.Namespace) -> None:
    """The whole policy (normalisation included) as ONNX and/or TorchScript."""
    from quadpipe.config import ExpertConfig, from_mapping
    from quadpipe.learn.export import export_checkpoint

    expert = from_mapping(ExpertConfig, load_config(args.config).get("expert"), "expert")
    for kind, path in export_checkpoint(args.checkpoint, args.onnx, args.torchscript,
                                        expert).items():
        print(f"{path}: {kind}")
