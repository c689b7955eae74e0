"""A training run's history as files: history.csv (one row per epoch) and loss.png."""

from __future__ import annotations

import csv
from pathlib import Path


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """One row per epoch, columns in the order the rows' keys first appear.

    Rows may differ in their keys: a resumed run keeps the rows an older version wrote, and a
    column that version did not log stays empty there rather than failing the whole file.
    """
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
        w.writeheader()
        w.writerows(history)


def plot_history(history: list[dict[str, float]], out: Path) -> Path:
    """Training and validation loss (normalised MSE, log scale) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(ep, [h["train_loss"] for h in history], label="train")
    ax.plot(ep, [h["valid_loss"] for h in history], label="valid")
    starts = [h["epoch"] for i, h in enumerate(history)
              if h.get("round", 0) and (i == 0 or history[i - 1].get("round") != h["round"])]
    for k, epoch in enumerate(starts):
        ax.axvline(epoch - 0.5, color="0.6", linestyle=":",
                   label="DAgger round starts" if k == 0 else None)
    ax.set(xlabel="epoch", ylabel="MSE (normalised torques)", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
