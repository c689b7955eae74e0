"""High-level command codes and the original random command-sequence sampler."""

from __future__ import annotations

import numpy as np

from quadpipe.errors import QuadpipeError

FORWARD, BACKWARD, TURN_RIGHT, TURN_LEFT, STAND = 1, 2, 3, 4, 5
NAMES = {FORWARD: "forward", BACKWARD: "backward", TURN_RIGHT: "turn right", TURN_LEFT: "turn left",
         STAND: "stand"}
MOVES = (FORWARD, BACKWARD, TURN_RIGHT, TURN_LEFT)


def attempt_rng(seed: int, shard: int, attempt: int) -> np.random.Generator:
    """The random stream of one generation attempt.

    Derived from (seed, shard, attempt) alone, so any attempt can be recomputed without replaying
    the ones before it: this is what makes a resumed shard identical to an uninterrupted one.
    """
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(shard, attempt)))


def sample_sequence(rng: np.random.Generator, min_moves: int = 5,
                    max_moves: int = 15) -> np.ndarray:
    """The original sampler: m ~ U[min, max] moves from {1,2,3,4}, stands (5) between.

    Returns an int32 array of 2m-1 command codes.
    """
    m = int(rng.integers(min_moves, max_moves + 1))
    moves = rng.integers(1, 5, size=m)
    seq = np.full(2 * m - 1, STAND, dtype=np.int32)
    seq[0::2] = moves
    return seq


def check_commands(commands: np.ndarray) -> np.ndarray:
    """Return `commands` as int32, refusing codes outside 1..5 with a clear message."""
    arr = np.asarray(commands)
    if arr.ndim != 1 or arr.size == 0:
        raise QuadpipeError("a command sequence must be a non-empty list of codes 1..5")
    bad = arr[(arr < 1) | (arr > 5) | (arr != np.round(arr))]
    if bad.size:
        raise QuadpipeError(
            f"unknown command code {bad[0].item()!r}; use 1 forward, 2 backward, 3 turn right, "
            "4 turn left, 5 stand"
        )
    return arr.astype(np.int32)
