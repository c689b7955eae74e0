"""The `train` section of config.yaml as a validated dataclass (TrainConfig).

Its own module because every part of training reads it (sample preparation aside): the epochs,
the joint noise, the stage files and the orchestration in learn.imitation.train, which sits above
them all.
"""

from __future__ import annotations

import dataclasses

from quadpipe.config import steps_in
from quadpipe.errors import ConfigError
from quadpipe.learn import tracking
from quadpipe.learn.imitation.mirror import observation_map
from quadpipe.learn.samples import ObsConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The `train` section of config.yaml. Defaults fit the 20-minute pipeline on 2 CPU cores."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max global gradient norm
    input_std_floor: float = 0.0  # least std an input is normalised by (epochs.build_policy)
    lr_decay_epoch: int = 15  # 1-based epoch from which lr is x0.1; 0 = never
    hidden: tuple[int, ...] = (256, 256, 128)
    # durations in ms, whole physics steps of the dataset's profile at training (obs_at)
    horizon: int = 1000  # ms to the last waypoint (the original: 50 steps of 1 ms)
    waypoint_every: int = 200  # ms between waypoints (the original: 10)
    sample_stride: int = 40  # ms between a trajectory's samples
    gait_clock: bool = True  # add sin/cos of the CPG phase (issue: off; measured: needed)
    noise_q: float = 0.1  # rad, std of joint-angle noise with expert-relabelled torques; 0 = off
    noise_qd: float = 1.0  # rad/s, std of joint-velocity noise (relabelled likewise)
    noise_base: float = 0.5  # std of base-state noise (z, orientation, velocities), in units of
    # each column's std; labels unchanged (the expert ignores the base state); 0 = off
    mirror: bool = False  # mirror half of each batch left-right (imitation.mirror; heading frame)
    # DAgger on random paths after behaviour cloning (quadpipe.learn.imitation.dagger; why:
    # docs/training.md)
    dagger_rounds: int = 3  # 0 = plain behaviour cloning (why 3: training-findings.md, Finding 6)
    dagger_episodes: int = 128  # episodes per round, each on its own random path
    dagger_seconds: float = 8.0  # s per episode (from standing)
    dagger_stride: int = 8  # ms between an episode's recorded samples
    dagger_epochs: int = 5  # epochs on the aggregated samples after each round
    dagger_expert_share: float = 0.5  # share of round 1's episodes the expert drives; halved
    # each further round (the rest run the policy)
    dagger_full_lr_epochs: int = 3  # a round's first epochs at lr, the rest at lr x0.1; 0: every
    # round at the rate behaviour cloning ended with (before; docs/training-findings.md, Finding 11)
    dagger_arc_deg: tuple[float, float] = (30.0, 180.0)  # turn of an arc of a DAgger path (deg)
    threads: int = 1  # torch CPU threads and DAgger simulation threads
    path_frame: str = "heading"  # "heading" (robot-centred) or "world" (the original's inputs)
    seed: int = 0
    device: str = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
    logger: str = "csv"  # csv (history.csv only), tensorboard or wandb (learn.tracking)
    wandb_mode: str = "offline"  # offline (no network), online or disabled
    wandb_project: str = "quadpipe"

    def __post_init__(self) -> None:
        if min(self.noise_q, self.noise_qd, self.noise_base) < 0:
            raise ConfigError("train.noise_q, noise_qd and noise_base must be >= 0")
        if self.dagger_rounds < 0 or not 0.0 <= self.dagger_expert_share <= 1.0:
            raise ConfigError("train.dagger_rounds must be >= 0 and train.dagger_expert_share "
                              "in [0, 1]")
        if self.dagger_rounds and self.dagger_seconds <= 0:
            raise ConfigError(f"train.dagger_seconds must be > 0, got {self.dagger_seconds}")
        if self.dagger_full_lr_epochs < 0:
            raise ConfigError(f"train.dagger_full_lr_epochs must be >= 0, got "
                              f"{self.dagger_full_lr_epochs}")
        for key in ("epochs", "batch_size", "sample_stride", "dagger_episodes", "dagger_stride",
                    "dagger_epochs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        lo, hi = (float(v) for v in self.dagger_arc_deg)
        if not 0.0 < lo <= hi:
            raise ConfigError(f"train.dagger_arc_deg must be [low, high] with 0 < low <= high, got "
                              f"{list(self.dagger_arc_deg)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        tracking.check(self.logger, self.wandb_mode)
        if self.mirror:
            observation_map(self.obs_at(0.001))  # a ConfigError unless it can be mirrored

    def obs_at(self, dt: float) -> ObsConfig:
        """What the policy observes at physics steps of `dt` s (the durations in whole steps)."""
        return ObsConfig(steps_in(self.horizon, dt), steps_in(self.waypoint_every, dt),
                         self.gait_clock, self.path_frame, dt)
