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
