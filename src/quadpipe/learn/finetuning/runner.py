"""Fine-tuning past the expert: PPO on the reward, from the imitated policy, as resumable jobs.

DAgger converges to the expert; the original's last step, "fine-tune with online learning",
goes past it by optimising what is wanted (learn.finetuning.env's reward) with PPO
(learn.finetuning.ppo), starting from the DAgger policy. The actor is that policy (its std and the
critic are new); the critic learns alone for `critic_warmup` iterations first, so the actor's first
updates follow a meaningful advantage rather than a random critic's.

Jobs. A seed's `iterations` run in jobs of `iterations_per_job` each: job 0 starts from the
policy checkpoint (best.pt), job j from job j - 1's state file, and each writes its own state:
actor, std, critic, optimiser (with the adapted learning rate), the iterations done and the
history. Iteration i's episodes, exploration noise and mini-batch order come from (seed, i)
alone (learn.finetuning.env, learn.finetuning.ppo), so nothing else needs saving: after each
iteration the same state goes to the job's resume checkpoint (OUT.partial/resume.pt, atomically),
and a job run again after a kill goes on from its last iteration with the weights an uninterrupted
run has, bit for bit on CPU (torch runs on one thread here: the update is small, and one thread
makes the sums' order fixed). `finish` writes the fine-tuned policy as a plain checkpoint (the same
inputs and outputs: export and evaluation take it as any other), finetune.csv and finetune.png.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quadpipe.config import ExpertConfig, check_ranges, from_mapping_nested, shares_fit, steps_in
from quadpipe.control.paths import PIECES
from quadpipe.errors import ConfigError, QuadpipeError
from quadpipe.learn import optimizers, tracking
from quadpipe.learn.finetuning.actor_critic import ActorCritic, extend_horizon
from quadpipe.learn.finetuning.env import FINETUNE_STREAM, TERMS, RewardConfig, draw_episodes
from quadpipe.learn.finetuning.ppo import PPOConfig, make_optimizer, update
from quadpipe.learn.finetuning.rollout import Rollout, collect
from quadpipe.learn.history import write_history
from quadpipe.learn.policy import (
    Policy,
    check_profile,
    load_checkpoint,
    save_checkpoint,
    trained_profile,
)
from quadpipe.learn.progress import log_to_bar, progress_bar
from quadpipe.learn.samples import ObsConfig
from quadpipe.learn.tagged_files import load_tagged, resume_path, save_state
from quadpipe.sim.physics import PushRanges
from quadpipe.sim.randomize import RandomizeConfig

log = logging.getLogger(__name__)

STATE_FORMAT = "quadpipe-finetune-1"
_NOT_RESULT = {"threads", "iterations"}  # a job's result does not depend on these


class FinetuneError(QuadpipeError):
    """A fine-tuning state file that is missing, unreadable, or of another seed or job."""


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """The `finetune` section of config.yaml (descriptions and sources: the schema)."""

    iterations: int = 240  # per seed; 0: no fine-tuning (the imitated policy is the result)
    iterations_per_job: int = 48
    episodes: int = 16  # per iteration
    seconds: float = 4.0  # per episode, from standing
    speed: tuple[float, float] = (0.15, 0.3)
    randomize: float = 0.0  # share of episodes with physics and pushes from `randomize` ranges
    kicked: float = 0.0  # share of episodes kicked (nominal physics) from `kicks`
    kicked_from: int = 0  # first iteration with kicked episodes
    kicks: PushRanges = PushRanges(interval_s=(1.0, 2.0), velocity=(0.5, 1.0))
    pieces: tuple[float, float, float] = PIECES  # paths' odds of straights, arcs, corners
    init_std: float = 0.2  # exploration std, in units of each joint's torque std
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_warmup: int = 4  # iterations in which only the critic learns
    bc_weight: float = 0.0  # weight of the expert-label loss (the DAgger loss); 0 = off
    bc_decay: float = 1.0  # its factor per iteration
    widen_inputs: bool = False  # input scale widened to the first iteration's spread (actor_critic)
    horizon: int = 0  # ms of future path observed; 0: the imitated policy's (actor_critic)
    horizon_gain: float = 10.0  # the new waypoints' input scale (actor_critic.fit_input_scale)
    threads: int = 1  # physics threads
    ppo: PPOConfig = PPOConfig()
    reward: RewardConfig = RewardConfig()

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.iterations_per_job < 1:
            raise ConfigError("finetune.iterations must be >= 0 and iterations_per_job >= 1")
        if self.episodes < 1 or self.seconds <= 0:
            raise ConfigError("finetune.episodes must be >= 1 and finetune.seconds > 0")
        object.__setattr__(self, "randomize", float(self.randomize))  # true/false: 1/0
        if not 0.0 <= self.randomize <= 1.0:
            raise ConfigError(f"finetune.randomize must be a share in [0, 1] (false = 0, "
                              f"true = 1), got {self.randomize!r}")
        if self.kicked < 0.0 or not shares_fit(self.kicked, self.randomize):
            raise ConfigError(f"finetune.kicked must be a share in [0, 1 - finetune.randomize] "
                              f"(kicked and randomised episodes are different ones), got "
                              f"{self.kicked!r} with randomize {self.randomize!r}")
        if self.kicked_from < 0:
            raise ConfigError(f"finetune.kicked_from must be >= 0, got {self.kicked_from}")
        check_ranges("finetune.kicks", self.kicks)
        if len(self.pieces) != 3 or min(self.pieces) < 0 or sum(self.pieces) <= 0:
            raise ConfigError(f"finetune.pieces must be three odds >= 0 (straight, arc, corner) "
                              f"with a positive sum, got {list(self.pieces)}")
        if not 0 < self.speed[0] <= self.speed[1]:
            raise ConfigError(f"finetune.speed must be [low, high] with 0 < low <= high, got "
                              f"{list(self.speed)}")
        if self.horizon_gain <= 0:
            raise ConfigError(f"finetune.horizon_gain must be > 0, got {self.horizon_gain}")
        if self.ppo.kl_of not in ("mean", "median"):
            raise ConfigError(f"finetune.ppo.kl_of must be mean or median, got {self.ppo.kl_of!r}")
        if self.ppo.block < 1 or self.ppo.minibatches < 1 or self.ppo.epochs < 1:
            raise ConfigError("finetune.ppo: block, epochs and minibatches must be >= 1")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> FinetuneConfig:
        return from_mapping_nested(cls, data, "finetune",
                                   {"ppo": PPOConfig, "reward": RewardConfig, "kicks": PushRanges})

    @property
    def randomized(self) -> int:
        """Episodes per iteration with randomised physics and pushes (the first ones)."""
        return int(round(self.randomize * self.episodes))

    def kicked_at(self, iteration: int) -> int:
        """Episodes of iteration `iteration` (from 0) kicked on nominal physics (those after the
        randomised ones)."""
        if iteration < self.kicked_from:
            return 0
        return min(int(round(self.kicked * self.episodes)), self.episodes - self.randomized)

    @property
    def jobs(self) -> int:
        return -(-self.iterations // self.iterations_per_job)


def _weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fingerprint(cfg: FinetuneConfig, seed: int, job: int, start: str, expert: ExpertConfig,
                rand: RandomizeConfig) -> str:
    """What a job's result depends on: settings, seed, job, what it starts from, physics."""
    key = {"cfg": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_RESULT},
           "seed": seed, "job": job, "start": start, "expert": dataclasses.asdict(expert),
           "randomize": rand.ranges() if cfg.randomized else None}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def iteration_streams(seed: int, iteration: int) -> tuple[torch.Generator, np.random.Generator]:
    """(exploration noise, mini-batch order) of one iteration, from (seed, iteration) alone."""
    ss = np.random.SeedSequence((FINETUNE_STREAM, seed), spawn_key=(iteration, 1 << 30))
    noise_seed, batch_seed = ss.generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(noise_seed)), np.random.default_rng(int(batch_seed))


def load_state(path: str | Path) -> dict[str, Any]:
    """A fine-tuning state file, or one clear FinetuneError."""
    return load_tagged(path, STATE_FORMAT, FinetuneError, "fine-tuning state",
                       "run `quadpipe finetune` first", "run that job again")


def _start(start_file: Path, job: int, seed: int, cfg: FinetuneConfig, expert: ExpertConfig
           ) -> tuple[ActorCritic, dict[str, Any], dict[str, Any], str]:
    """(actor-critic, checkpoint info, state so far, start digest) of job `job`."""
    if job == 0:
        policy, obs, ckpt = load_checkpoint(start_file)
        check_profile(ckpt, expert, start_file)
        digest = _weights_digest(policy.state_dict())
        horizon = steps_in(cfg.horizon, obs.dt) if cfg.horizon else obs.horizon
        policy, obs, fresh = extend_horizon(policy, obs, horizon)
        torch.manual_seed(int(np.random.SeedSequence((FINETUNE_STREAM, seed)).generate_state(1)[0]))
        ac = ActorCritic(policy, cfg.critic_hidden, cfg.init_std)
        info = {"obs": dataclasses.asdict(obs), "train_config": ckpt.get("train_config"),
                "architecture": policy.architecture, "imitation": str(start_file),
                "fresh_inputs": fresh.tolist(), "sim": trained_profile(ckpt)}
        return ac, info, {"iteration": 0, "history": [], "optimizer": None}, digest
    prev = load_state(start_file)
    if prev["seed"] != seed or prev["job"] != job - 1:
        raise FinetuneError(f"{start_file}: holds job {prev['job']} of seed {prev['seed']}; job "
                            f"{job} of seed {seed} starts from job {job - 1} of the same seed")
    ac = ActorCritic(Policy.from_architecture(prev["info"]["architecture"]), cfg.critic_hidden,
                     cfg.init_std)
    ac.load_state_dict(prev["model"])
    return ac, prev["info"], {"iteration": prev["iteration"], "history": list(prev["history"]),
                              "optimizer": prev["optimizer"]}, prev["fingerprint"]


def run_job(start_file: str | Path, out_file: str | Path, cfg: FinetuneConfig, seed: int,
            job: int, expert: ExpertConfig = ExpertConfig(),
            rand: RandomizeConfig = RandomizeConfig(), logger: str = "csv",
            progress: bool | None = None, stop_after: int | None = None,
            wandb_mode: str = "offline", wandb_project: str = "quadpipe") -> dict[str, Any]:
    """Run fine-tuning job `job` of seed `seed`; write its state to `out_file` and return it.

    logger, wandb_mode, wandb_project: the seed's tracker (train.logger ...; learn.tracking),
    which gets every iteration's row under `finetune/`. stop_after: return after that many
    iterations of this run without writing `out_file` (what a kill leaves behind: the resume
    checkpoint; for tests).
    """
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_job(Path(start_file), Path(out_file), cfg, seed, job, expert, rand,
                        logger, progress, stop_after, wandb_mode, wandb_project)
    finally:
        torch.set_num_threads(threads_before)


def _run_job(start_file: Path, out_file: Path, cfg: FinetuneConfig, seed: int, job: int,
             expert: ExpertConfig, rand: RandomizeConfig, logger: str, progress: bool | None,
             stop_after: int | None, wandb_mode: str, wandb_project: str) -> dict[str, Any]:
    first = job * cfg.iterations_per_job
    last = min(first + cfg.iterations_per_job, cfg.iterations)
    if not 0 <= first < last:
        raise FinetuneError(f"job {job} is beyond finetune.iterations = {cfg.iterations} "
                            f"({cfg.jobs} jobs of {cfg.iterations_per_job})")
    ac, info, state, start = _start(start_file, job, seed, cfg, expert)
    fp = fingerprint(cfg, seed, job, start, expert, rand)
    opt = make_optimizer(ac, cfg.ppo)
    if state["optimizer"] is not None:
        optimizers.load(opt, state["optimizer"])
    resume = resume_path(out_file)
    if resume.exists():
        try:
            saved = load_state(resume)
            ok = saved["fingerprint"] == fp
        except FinetuneError as exc:
            log.warning("not resuming: %s", exc)
            ok = False
        if ok:
            ac.load_state_dict(saved["model"])
            optimizers.load(opt, saved["optimizer"])
            state = {"iteration": saved["iteration"], "history": list(saved["history"])}
            log.info("%s: resuming after iteration %d", resume, state["iteration"])
        else:
            log.warning("%s: not resuming: written with other settings or inputs", resume)
            resume.unlink(missing_ok=True)
    obs = _obs(info)
    rand_used = rand if cfg.randomized else None
    # the seed's run directory (…/seed_<k>/finetune/job_<j>.pt), where training logged
    tracker = tracking.Tracker(logger, out_file.parent.parent, None, wandb_mode, wandb_project,
                               job="finetune") if logger != "csv" else None
    history = state["history"]
    iters = progress_bar(range(state["iteration"], last), progress, f"fine-tune job {job}",
                         unit="iter", initial=state["iteration"] - first, total=last - first,
                         leave=True)
    done_here = 0
    with log_to_bar(iters):
        for it in iters:
            t0 = time.perf_counter()
            gen, batch_rng = iteration_streams(seed, it)
            eps = draw_episodes(seed, it, cfg.episodes, cfg.seconds, cfg.speed, obs.offsets,
                                expert, rand_used, randomized=cfg.randomized, pieces=cfg.pieces,
                                kicked=cfg.kicked_at(it), kicks=cfg.kicks)
            bc = cfg.bc_weight * cfg.bc_decay ** it
            r = collect(ac, obs, eps, expert, cfg.reward, cfg.ppo, gen, cfg.threads,
                        labels=bc > 0)
            if it == 0:
                seen = torch.from_numpy(r.obs[r.valid])
                fresh = torch.tensor(info["fresh_inputs"])
                factor = ac.fit_input_scale(seen, fresh, cfg.widen_inputs, cfg.horizon_gain)
                log.info("inputs: %d new, scale widened on %d of %d (up to %.0fx)",
                         int(fresh.sum()), int((factor > 1).sum()), len(factor),
                         float(factor.max()))
            t1 = time.perf_counter()
            stats = update(ac, opt, r, cfg.ppo, batch_rng, it >= cfg.critic_warmup, bc)
            row = _row(it, r, stats, bc, cfg, expert.dt, t1 - t0, time.perf_counter() - t1)
            history.append(row)
            save_state(resume, _snapshot(fp, seed, job, it + 1, ac, opt, history, info))
            log.info("iteration %d: return %.3f, tracking %.3f m, success %.2f, falls %.2f, "
                     "kl %.4f, lr %.2e", it + 1, row["return"], row["tracking_error_m"],
                     row["success"], row["fall_fraction"], row["kl"], row["lr"])
            if tracker is not None:
                tracker.log({f"finetune/{k}": v for k, v in row.items()}, it + 1)
            done_here += 1
            if stop_after is not None and done_here >= stop_after:
                if tracker is not None:
                    tracker.close()
                return load_state(resume)
    if tracker is not None:
        tracker.close()
    final = _snapshot(fp, seed, job, last, ac, opt, history, info)
    save_state(out_file, final)
    shutil.rmtree(resume.parent, ignore_errors=True)
    return final


def _obs(info: dict[str, Any]) -> ObsConfig:
    return ObsConfig(**info["obs"])


def _row(it: int, r: Rollout, stats: dict[str, float], bc: float, cfg: FinetuneConfig,
         dt: float, collect_s: float, update_s: float) -> dict[str, float]:
    """One finetune.csv row: the rollout's figures, the reward terms, the update's."""
    n = len(r.fell)
    alive = np.sum(r.valid, axis=0) * steps_in(cfg.ppo.block, dt) * dt
    return {"iteration": it + 1, "return": float(np.sum(r.reward) / n),
            **{f"reward_{t}": float(np.mean(r.terms[t])) for t in TERMS},
            "fall_fraction": float(np.mean(r.fell)),
            "success": float(np.mean(r.success)),
            "episode_length_s": float(np.mean(np.minimum(alive, cfg.seconds))),
            "tracking_error_m": float(np.mean(r.tracking_error)),
            "kl": stats["kl"], "lr": stats["lr"], "std": stats["std"],
            "surrogate": stats["surrogate"], "value_loss": stats["value_loss"],
            "bc_loss": stats["bc_loss"], "bc_weight": bc, "samples": stats["samples"],
            "actor_trained": int(it >= cfg.critic_warmup), "collect_s": collect_s,
            "update_s": update_s, "steps_per_s": r.steps_per_s}


def _snapshot(fp: str, seed: int, job: int, iteration: int, ac: ActorCritic,
              opt: optimizers.Optimizer, history: list[dict[str, float]],
              info: dict[str, Any]) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "fingerprint": fp, "seed": seed, "job": job,
            "iteration": iteration,
            "model": {k: v.detach().cpu().clone() for k, v in ac.state_dict().items()},
            "optimizer": opt.state_dict(), "history": [dict(h) for h in history], "info": info}


def finish(state_file: str | Path, out_dir: str | Path, cfg: FinetuneConfig, seed: int
           ) -> Path:
    """finetuned.pt, finetune.csv and finetune.png in `out_dir` from the seed's last job."""
    state = load_state(state_file)
    if state["seed"] != seed or state["iteration"] != cfg.iterations:
        raise FinetuneError(f"{state_file}: holds {state['iteration']} iterations of seed "
                            f"{state['seed']}; seed {seed} needs all {cfg.iterations}")
    info = state["info"]
    ac = ActorCritic(Policy.from_architecture(info["architecture"]), cfg.critic_hidden,
                     cfg.init_std)
    ac.load_state_dict(state["model"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    history = state["history"]
    tail = history[-min(5, len(history)):]
    extra = {"finetune": {"iterations": state["iteration"], "imitation": info["imitation"],
                          "config": dataclasses.asdict(cfg),
                          "tracking_error_m_last5": float(np.mean(
                              [h["tracking_error_m"] for h in tail])),
                          "fall_fraction_last5": float(np.mean(
                              [h["fall_fraction"] for h in tail]))}, "sim": info["sim"]}
    path = save_checkpoint(out / "finetuned.pt", ac.actor, _obs(info),
                           info["train_config"] or {}, extra)
    write_history(out / "finetune.csv", history)
    plot(history, out / "finetune.png")
    return path


def plot(history: list[dict[str, float]], out: Path) -> Path:
    """Return, tracking error and falls per iteration; the critic's warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [h["iteration"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key, label in zip(axes, ("return", "tracking_error_m", "fall_fraction"),
                              ("return per episode", "tracking error, m", "falls"),
                              strict=True):
        ax.plot(it, [h[key] for h in history])
        warm = [h["iteration"] for h in history if not h["actor_trained"]]
        if warm:
            ax.axvspan(0.5, max(warm) + 0.5, color="0.9", label="critic warm-up")
        ax.set(xlabel="iteration", ylabel=label)
    if any(not h["actor_trained"] for h in history):
        axes[0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
