"""The checkpoints a seed's training stages offer to the closed-loop selection.

Every stage file keeps the weights of each of its epochs (learn.imitation.train). The candidates are
the epochs of the last stage: the policies that trained on the most of their own states. Earlier
rounds' last epochs were candidates at first; in the 5-seed study three seeds of five then chose
round 1's end by one validation episode of 30, and those policies tracked the circle 1.55-1.64x the
expert where the last round's epochs stayed within 1.45x (docs/training-findings.md, Finding 7): on
30 episodes a one-episode lead is noise, and the earlier rounds' worse tracking is not.
evaluation.selection rolls the candidates out; learn.imitation.train.finish writes the chosen one as
best.pt.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from quadpipe.learn.imitation.stages import StageError


@dataclasses.dataclass
class Candidate:
    round: int
    epoch: int  # the global epoch (history.csv's)
    valid_loss: float
    model: dict[str, Any]  # state dict


def candidates(stages: Sequence[dict[str, Any]]) -> list[Candidate]:
    """The candidates of a seed's stage states (rounds 0 .. R, in order): every epoch of the
    last."""
    for k, st in enumerate(stages):
        if st["round"] != k:
            raise StageError(f"stage {k} holds round {st['round']}; give the stage files of "
                             "rounds 0..R in order")
    last = stages[-1]
    epochs = last.get("epoch_models")
    if not epochs:
        raise StageError(f"round {last['round']}'s stage file keeps no per-epoch weights (written "
                         "by an older quadpipe); run that training stage again")
    return [Candidate(last["round"], int(e["epoch"]), _valid_loss(last, e["epoch"]), e["model"])
            for e in epochs]


def _valid_loss(stage: dict[str, Any], epoch: int) -> float:
    return next((float(h["valid_loss"]) for h in stage["history"] if h["epoch"] == epoch),
                math.nan)
