"""Experiment tracking: where a training run's config, losses, DAgger rounds and evaluation go.

`train.logger` picks the back end. history.csv is always written by learn.history (the "csv"
logger is just that file), so every run keeps a plain-text record whatever the choice;
"tensorboard" adds event files under `<run dir>/tensorboard/`, "wandb" a Weights & Biases run
under `<run dir>/wandb/` (the original's choice; `train.wandb_mode: offline`, the default, needs
no network and no account: `wandb sync <run dir>/wandb/offline-run-*` uploads it later).

What each back end receives (TensorBoard tags = wandb keys), and at which step:

- `config`: the resolved config (train section, dataset, observation size); TensorBoard text,
  wandb run config.
- `train/loss`, `valid/loss`, `train/lr`, `train/samples_per_s`, `train/round`: every epoch.
- `dagger/samples`, `dagger/fall_fraction`, `dagger/torque_rmse_nm`: each DAgger round, at the
  first epoch trained on its samples.
- `eval/<path>/<metric>`, `suite/<condition>/<metric>`: closed-loop evaluation (the evaluate and
  suite verbs), at the last epoch.

Evaluation runs in later jobs: `log_evaluation` reopens the run of a checkpoint (same run
directory, and for wandb the same run id, derived from that directory) so its metrics land beside
the training curves. The optional packages are imported only when chosen, and a missing one is one
clear ConfigError naming the extra to install.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from quadpipe.errors import ConfigError

LOGGERS = ("csv", "tensorboard", "wandb")
WANDB_MODES = ("offline", "online", "disabled")
TB_DIR = "tensorboard"
WANDB_DIR = "wandb"


def check(logger: str, wandb_mode: str) -> None:
    """Refuse an unknown logger or wandb mode (called by TrainConfig, before any training)."""
    if logger not in LOGGERS:
        raise ConfigError(f"train.logger must be one of {', '.join(LOGGERS)}, got {logger!r}")
    if wandb_mode not in WANDB_MODES:
        raise ConfigError(f"train.wandb_mode must be one of {', '.join(WANDB_MODES)}, "
                          f"got {wandb_mode!r}")


def _finite(row: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite entries: NaN (no validation split, no DAgger yet) is left out."""
    out = {}
    for k, v in row.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


def run_id(run_dir: str | Path) -> str:
    """A stable wandb run id for a run directory, so evaluation jobs append to the training run."""
    return "qp-" + hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]


class Tracker:
    """One training run's sink; the csv logger does nothing (learn.history writes history.csv)."""

    def __init__(self, logger: str, run_dir: str | Path, config: dict[str, Any] | None = None,
                 wandb_mode: str = "offline", wandb_project: str = "quadpipe",
                 job: str = "train") -> None:
        check(logger, wandb_mode)
        self.logger, self.run_dir = logger, Path(run_dir)
        self._tb = self._wandb = None
        if logger == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ConfigError("train.logger is tensorboard but the tensorboard package is "
                                  "missing; pip install 'quadpipe[tensorboard]'") from exc
            # A fresh event file per job (each training stage, each evaluation): TensorBoard merges
            # every file of the directory into one run.
            self._tb = SummaryWriter(log_dir=str(self.run_dir / TB_DIR), flush_secs=30,
                                     filename_suffix=f".{job}")
            if config is not None:
                text = json.dumps(config, indent=2, sort_keys=True, default=str)
                self._tb.add_text("config", "```\n" + text + "\n```", 0)
        elif logger == "wandb":
            try:
                import wandb
            except ImportError as exc:
                raise ConfigError("train.logger is wandb but the wandb package is missing; "
                                  "pip install 'quadpipe[wandb]'") from exc
            (self.run_dir / WANDB_DIR).mkdir(parents=True, exist_ok=True)
            self._wandb = wandb.init(
                project=wandb_project, dir=str(self.run_dir), mode=wandb_mode,
                id=run_id(self.run_dir), name=self.run_dir.name, resume="allow",
                job_type=job, config=config, reinit="create_new",
                settings=wandb.Settings(console="off", silent=True))

    def log(self, values: dict[str, Any], step: int) -> None:
        """Scalars at one step (an epoch); non-finite ones are skipped."""
        values = _finite(values)
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()  # a crashed run keeps every finished epoch
        if self._wandb is not None and values:
            self._wandb.log(values, step=step)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """One history.csv row: the epoch's losses, learning rate and speed."""
        self.log({"train/loss": row["train_loss"], "valid/loss": row["valid_loss"],
                  "train/lr": row["lr"], "train/samples_per_s": row["samples_per_s"],
                  "train/round": row["round"]}, int(row["epoch"]))

    def log_round(self, rnd: int, epoch: int, dag: dict[str, Any]) -> None:
        """A DAgger round's figures, at the first epoch trained on its samples."""
        self.log({"dagger/round": rnd, "dagger/samples": dag.get("dagger_samples"),
                  "dagger/fall_fraction": dag.get("dagger_fall_fraction"),
                  "dagger/torque_rmse_nm": dag.get("dagger_torque_rmse")}, epoch)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            import wandb

            self._wandb.finish()
            # finish() returns before wandb's service has written the run's records to disk
            # (seen: a 7-byte .wandb file for ~1 s under load); shutting the service down waits
            # for it, so the run is complete when training returns or the job exits.
            wandb.teardown()
        self._tb = self._wandb = None


def for_training(cfg: Any, run_dir: str | Path, config: dict[str, Any]) -> Tracker:
    """The tracker of a training run from its TrainConfig (logger, wandb_mode, wandb_project)."""
    return Tracker(cfg.logger, run_dir, config, cfg.wandb_mode, cfg.wandb_project)


def total_epochs(train_config: dict[str, Any]) -> int:
    """Epochs of behaviour cloning plus DAgger: the step evaluation metrics are logged at."""
    return int(train_config.get("epochs", 0)) + \
        int(train_config.get("dagger_rounds", 0)) * int(train_config.get("dagger_epochs", 0))


def log_evaluation(checkpoint: str | Path, metrics: dict[str, Any], prefix: str) -> bool:
    """Add evaluation metrics to the run that trained `checkpoint`; False for the csv logger.

    The back end and step come from the checkpoint's stored train config, so the evaluation jobs
    need no logger settings of their own.
    """
    from quadpipe.learn.policy import load_checkpoint

    tc = load_checkpoint(checkpoint)[2].get("train_config") or {}
    logger = tc.get("logger", "csv")
    if logger == "csv":
        return False
    tracker = Tracker(logger, Path(checkpoint).parent, None, tc.get("wandb_mode", "offline"),
                      tc.get("wandb_project", "quadpipe"), job="eval")
    tracker.log({f"{prefix}/{k}": v for k, v in metrics.items()}, total_epochs(tc))
    tracker.close()
    return True
