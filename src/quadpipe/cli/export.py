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
    from quadpipe.config import expert_config
    from quadpipe.learn.export import export_checkpoint

    expert = expert_config(load_config(args.config))
    for kind, path in export_checkpoint(args.checkpoint, args.onnx, args.torchscript,
                                        expert).items():
        print(f"{path}: {kind}")


def _dataset_args(p: argparse.ArgumentParser) -> None:
    from quadpipe.data.export_frames import DEFAULT_EVERY, FRAME_MS

    p.add_argument("dataset", help="merged dataset (or a shard) HDF5 file")
    p.add_argument("--format", required=True, choices=("robomimic", "lerobot"),
                   help="robomimic: one HDF5 file; lerobot: a LeRobot v3.0 dataset folder")
    p.add_argument("--out", required=True, help="file (robomimic) or folder (lerobot) to write")
    p.add_argument("--every", type=int, default=DEFAULT_EVERY,
                   help="keep every k-th physics step of the file (default: a frame every "
                        f"{FRAME_MS:g} ms, 50 Hz)")


@verb("export-dataset", _dataset_args)
def _export_dataset(args: argparse.Namespace) -> None:
    """The dataset in robomimic's HDF5 layout or LeRobot's v3.0 layout, at a chosen rate."""
    if args.format == "robomimic":
        from quadpipe.data.export_robomimic import export
    else:
        from quadpipe.data.export_lerobot import export
    counts = export(args.dataset, args.out, args.every)
    print(f"{args.out}: {args.format}, " + ", ".join(f"{v} {k}" for k, v in counts.items()))
