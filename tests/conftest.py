"""Shared fixtures: tiny but real data, made once per test session with the real simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from quadpipe.config import ExpertConfig, GenerateConfig

# Short sequences (1-2 moves of 0.4 s) keep a real shard to a few seconds of simulation.
TINY_EXPERT = ExpertConfig(cmd_duration=0.4)
TINY_GEN = GenerateConfig(min_moves=1, max_moves=2, threads=2)


@pytest.fixture(scope="session")
def tiny_shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real shard of 6 short stable trajectories (seed 7, shard 0). Read-only: copy to modify."""
    from quadpipe.data.generate import generate_shard

    out = tmp_path_factory.mktemp("tiny") / "shard_0.h5"
    generate_shard(out, num=6, seed=7, shard=0, expert=TINY_EXPERT, gen=TINY_GEN, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_policies(tiny_shard: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny real policies (training seeds 0 and 1, one epoch, no DAgger) on the tiny shard."""
    from quadpipe.learn.imitation.train import train
    from quadpipe.learn.imitation.train_config import TrainConfig

    out = []
    for seed in (0, 1):
        d = tmp_path_factory.mktemp(f"policy{seed}")
        train(tiny_shard, d, TrainConfig(epochs=1, sample_stride=10, hidden=(32, 32, 16),
                                         horizon=200, waypoint_every=40, dagger_rounds=0,
                                         seed=seed), progress=False)
        out.append(d / "best.pt")
    return out
