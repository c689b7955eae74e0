"""The policy network and its self-contained checkpoint.

The original's architecture: an MLP (hidden [256, 256, 128]), each hidden layer Linear -> ReLU ->
LayerNorm, a linear output. Input and output normalisation (mean/std of the training split) are
buffers inside the module, so `policy(obs)` maps raw observations to torques in N m and a checkpoint
holds everything needed to run it: weights, architecture, normalisation, observation settings and
the training config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quadpipe.config import ExpertConfig, sim_config
from quadpipe.errors import QuadpipeError
from quadpipe.learn.samples import ObsConfig
from quadpipe.learn.tagged_files import load_tagged

CHECKPOINT_FORMAT = "quadpipe-policy-1"
MIN_STD = 1e-6  # a constant input column (e.g. x, y in the heading frame) is left unscaled


class CheckpointError(QuadpipeError):
    """A checkpoint file is missing, unreadable or not a quadpipe policy."""


class Policy(nn.Module):
    """obs (B, in_dim) raw -> torques (B, out_dim) N m, normalisation included."""

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.LayerNorm(h)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, tuple(hidden)
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(out_dim))
        self.register_buffer("out_std", torch.ones(out_dim))

    @property
    def architecture(self) -> dict[str, Any]:
        """What rebuilds this network (`from_architecture`): stored in checkpoints and stages."""
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "hidden": list(self.hidden)}

    @classmethod
    def from_architecture(cls, arch: dict[str, Any]) -> Policy:
        return cls(arch["in_dim"], arch["out_dim"], tuple(arch["hidden"]))

    def set_normalisation(self, in_mean, in_std, out_mean, out_std, in_floor: float = 0.0
                          ) -> None:
        """Set the (dim,) means and stds of the training split; tiny stds become 1, the other
        input stds at least `in_floor` (train.input_std_floor: a column narrower than that, as
        the nearest waypoint's lateral offset at ~1 cm, measures how narrow the data were rather
        than how much the input matters, and off the path it reaches tens of its stds)."""
        for name, value in (("in_mean", in_mean), ("in_std", in_std), ("out_mean", out_mean),
                            ("out_std", out_std)):
            t = torch.as_tensor(value, dtype=torch.float32)
            if name.endswith("std"):
                floor = in_floor if name == "in_std" else 0.0
                t = torch.where(t < MIN_STD, torch.ones_like(t), torch.clamp(t, min=floor))
            getattr(self, name).copy_(t)

    def normalise_input(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.in_mean) / self.in_std

    def normalise_output(self, torque: torch.Tensor) -> torch.Tensor:
        return (torque - self.out_mean) / self.out_std

    def denormalise_output(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.out_std + self.out_mean

    def forward_normalised(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalised prediction (what the training loss compares) from raw observations."""
        return self.net(self.normalise_input(obs))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.denormalise_output(self.forward_normalised(obs))


def save_checkpoint(path: str | Path, policy: Policy, obs: ObsConfig, train_config: Any,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write one self-contained checkpoint (atomic: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "architecture": policy.architecture,
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "obs": dataclasses.asdict(obs),
        "train_config": dataclasses.asdict(train_config)
        if dataclasses.is_dataclass(train_config) else train_config,
        **(extra or {}),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> tuple[Policy, ObsConfig, dict[str, Any]]:
    """(policy in eval mode on the CPU, its ObsConfig, the whole checkpoint dict)."""
    ckpt = load_tagged(path, CHECKPOINT_FORMAT, CheckpointError, "checkpoint",
                       "run `quadpipe train` first", "retrain it",
                       full_name="quadpipe policy checkpoint")
    policy = Policy.from_architecture(ckpt["architecture"])
    policy.load_state_dict(ckpt["state_dict"])
    policy.eval()
    return policy, ObsConfig(**ckpt["obs"]), ckpt


def load_for(path: str | Path, expert: ExpertConfig
             ) -> tuple[Policy, ObsConfig, dict[str, Any]]:
    """`load_checkpoint`, refusing a policy trained on other physics than `expert.sim`'s."""
    policy, obs, ckpt = load_checkpoint(path)
    check_profile(ckpt, expert, path)
    return policy, obs, ckpt


def trained_profile(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The physics profile (SimConfig as a dict) the checkpoint's policy learned on; checkpoints
    from before profiles learned on the original's 1-ms physics."""
    if ckpt.get("sim"):
        return dict(ckpt["sim"])
    return dataclasses.asdict(sim_config({"profile": "original",
                                          "timestep": ckpt.get("obs", {}).get("dt", 0.001)}))


def check_profile(ckpt: dict[str, Any], expert: ExpertConfig, path: str | Path) -> None:
    """Refuse to run a policy on physics other than its own: every figure would silently
    measure a policy off its training physics. The suite's fidelity condition does it on
    purpose, and says so in its result (evaluation.suite)."""
    trained, here = trained_profile(ckpt), dataclasses.asdict(expert.sim)
    if trained != here:
        diff = ", ".join(f"{k} {trained.get(k)!r} vs {v!r}" for k, v in here.items()
                         if trained.get(k) != v)
        raise CheckpointError(
            f"{path}: trained on the {trained.get('profile')!r} physics profile, this run "
            f"simulates {here['profile']!r} ({diff}); use the sim settings it was trained with, "
            "or retrain it (only the suite's fidelity condition crosses profiles)")
