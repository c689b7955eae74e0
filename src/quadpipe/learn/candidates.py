"""The checkpoints a seed's training stages offer to the closed-loop selection.

Every stage file keeps the weights of each of its epochs (learn.train). The candidates are every
epoch of the last stage and the last epoch of each earlier DAgger round: the last round's epochs
are the policies that trained on the most of their own states, the earlier rounds' ends are there
for a seed whose last round made it worse. Behaviour cloning (round 0) is a candidate only when
it is the last stage: it never saw its own states, and in the 5-seed study it fell in a third of
the validation episodes where every DAgger round fell in at most two of 30 (docs/training.md),
so rolling it out only cost time.
evaluation.selection rolls them out; learn.train.finish writes the chosen one as best.pt.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from quadpipe.learn.stages import StageError


@dataclasses.dataclass
class Candidate:
    round: int
    epoch: int  # the global epoch (history.csv's)
    valid_loss: float
    model: dict[str, Any]  # state dict


def candidates(stages: Sequence[dict[str, Any]]) -> list[Candidate]:
    """The candidates of a seed's stage states (rounds 0 .. R, in order), in that order."""
    out = []
    for k, st in enumerate(stages):
        if st["round"] != k:
            raise StageError(f"stage {k} holds round {st['round']}; give the stage files of "
                             "rounds 0..R in order")
        if k == 0 and len(stages) > 1:
            continue
        if k < len(stages) - 1:
            out.append(Candidate(k, int(st["epoch"]), _valid_loss(st, st["epoch"]),
                                 st["model"]))
            continue
        epochs = st.get("epoch_models")
        if not epochs:
            raise StageError(f"round {k}'s stage file keeps no per-epoch weights (written by an "
                             "older quadpipe); run that training stage again")
        out += [Candidate(k, int(e["epoch"]), _valid_loss(st, e["epoch"]), e["model"])
                for e in epochs]
    return out


def _valid_loss(stage: dict[str, Any], epoch: int) -> float:
    return next((float(h["valid_loss"]) for h in stage["history"] if h["epoch"] == epoch),
                math.nan)
