"""Generate one shard: sample command sequences, roll out the expert, keep the stable ones.

Attempt i of shard k draws its commands from (seed, k, i) alone. Attempts run in C threads, and
their outcomes are consumed strictly in attempt order, so the shard is "the first N stable attempts"
whatever the thread count, batching or interruptions. Each outcome goes to the resume journal
(quadpipe.data.journal) as it is consumed; a restarted shard replays the journal and continues. The
shard file is built beside its final name from the accepted side files, in order, as they are
consumed, and renamed into place when complete, so a resumed shard equals an uninterrupted one in
every dataset and attribute and a reader never sees half a shard.

With `randomize.data` each attempt also draws its physics and pushes from its own stream
(quadpipe.sim.randomize), simulates on the model of that draw, and a kept trajectory stores the
draw; the shard gets the attempts table (every attempt used, its outcome and its draw). Without it
nothing of this is drawn, stored or recorded in the settings: the shard is what it always was.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import mujoco
import numpy as np

from quadpipe.config import ExpertConfig, GenerateConfig, StabilityConfig, to_json
from quadpipe.data import dataset
from quadpipe.data.journal import Journal
from quadpipe.errors import QuadpipeError
from quadpipe.sim import randomize
from quadpipe.sim.commands import attempt_rng, sample_sequence
from quadpipe.sim.expert import references, standing_pose
from quadpipe.sim.model import build_model, full_state, standing_qpos
from quadpipe.sim.physics import PhysicsDraw, apply
from quadpipe.sim.randomize import RandomizeConfig
from quadpipe.sim.rollout import Rollout, ThreadData, resolve_threads, simulate_one
from quadpipe.sim.stability import REASONS, STABLE, check_stability
from quadpipe.sim.state import STATE_DIM, states_from

log = logging.getLogger(__name__)
SIDE_GROUP = "trajectory"  # the one group in each side file


@dataclasses.dataclass
class Attempt:
    index: int
    commands: np.ndarray
    reason: str = ""


def partial_dir(out: Path) -> Path:
    """The resume journal's folder for shard file `out`."""
    return out.with_name(out.name + ".partial")


def generate_shard(out: str | Path, num: int, seed: int, shard: int = 0,
                   expert: ExpertConfig = ExpertConfig(),
                   stability: StabilityConfig = StabilityConfig(),
                   gen: GenerateConfig = GenerateConfig(),
                   progress: bool | None = None,
                   rand: RandomizeConfig = RandomizeConfig()) -> dict[str, Any]:
    """Write `num` stable trajectories of shard `shard` to HDF5 file `out`; return its summary.

    Resumes from `<out>.partial/` if a previous run was interrupted. `progress=None` shows a bar
    only when stderr is a terminal.
    """
    out = Path(out)
    _check_args(out, num, seed, shard, gen)
    header = journal_header(seed, shard, expert, stability, gen, rand)
    if out.exists():
        return _existing(out, num, header)
    for stale in dataset.stale_temporaries(out):  # a final write killed before its rename
        stale.unlink()
    journal = Journal.open(partial_dir(out), header)
    if journal.outcomes:
        log.info("resuming %s from its journal: %d attempts, %d accepted", out,
                 len(journal.outcomes), journal.outcomes.count(STABLE))

    model = build_model(expert)
    initial_qpos = standing_qpos(model, *standing_pose())
    initial = full_state(model, initial_qpos)
    bar = _progress_bar(num, progress)
    try:
        # The shard is assembled while the attempts run: each accepted side file is copied in
        # as soon as it is consumed, so the copy overlaps the other threads' simulation.
        with dataset.atomic_path(out) as tmp, h5py.File(tmp, "w", track_order=True) as dst:
            shard_file = _ShardFile(dst, journal)
            accepted = _run_attempts(journal, model, initial, num, seed, shard, expert,
                                     stability, gen, bar, shard_file.add, rand)
            used = journal.outcomes[: accepted[-1] + 1]
            summary = _summary(used, num, seed, shard, expert, header, gen.layout)
            dataset.write_root_attrs(dst, summary)
            if rand.data:
                dataset.write_attempts(dst, _attempt_rows(used, seed, shard, expert, gen, rand))
    finally:
        if bar is not None:
            bar.close()
    journal.remove()
    log.info("wrote %s: %d trajectories from %d attempts", out, num, summary["total_attempts"])
    return summary


def _summary(used: list[str], num: int, seed: int, shard: int, expert: ExpertConfig,
             header: dict[str, Any], layout: str) -> dict[str, Any]:
    """The shard's root attributes, from the outcomes of the attempts it used."""
    counts = Counter(used)
    return {
        "num_trajectories": num,
        "stable_count": num,
        "rejected_count": len(used) - num,
        "total_attempts": len(used),
        "acceptance_rate": num / len(used),
        "random_seed": seed,
        "shard": shard,
        "dt": expert.dt,
        "cmd_duration": expert.cmd_duration,
        # the physics profile (sim.profile, the whole profile in config_json's expert.sim)
        "sim_profile": expert.sim.profile,
        "sim_json": json.dumps(dataclasses.asdict(expert.sim), sort_keys=True),
        # Always 0: a resumed shard is identical to an uninterrupted one, so where a run resumed
        # is not part of the data (the log says it). Kept for readers of the original format.
        "resumed_from": 0,
        **{f"rejected_{r}": counts.get(r, 0) for r in REASONS},
        "config_json": header["settings"],
        # only when not the default, like config_json: default shards stay as they were
        **({dataset.STORAGE_LAYOUT_ATTR: layout} if layout != "full" else {}),
    }


def journal_header(seed: int, shard: int, expert: ExpertConfig, stability: StabilityConfig,
                   gen: GenerateConfig, rand: RandomizeConfig = RandomizeConfig()
                   ) -> dict[str, Any]:
    """Everything that determines a shard's content; a journal resumes only under the same.

    The randomisation ranges are part of it only when randomisation is on, so that a shard
    without it has the config_json it always had."""
    extra = {"randomize": rand.ranges()} if rand.data else {}
    return {"seed": seed, "shard": shard,
            "settings": to_json(expert=expert, stability=stability, sampler=_sampler(gen),
                                storage=_storage_settings(gen), **extra),
            "format_version": dataset.FORMAT_VERSION}


def _attempt_draw(index: int, commands: np.ndarray, seed: int, shard: int, expert: ExpertConfig,
                  rand: RandomizeConfig) -> tuple[PhysicsDraw, randomize.Pushes]:
    return randomize.attempt_physics(seed, shard, index, rand, len(commands) * expert.cmd_duration,
                                     expert.dt)


def _attempt_rows(used: list[str], seed: int, shard: int, expert: ExpertConfig,
                  gen: GenerateConfig, rand: RandomizeConfig) -> list[dict[str, Any]]:
    """The attempts table: each used attempt's outcome and draw, recomputed from its streams
    (the journal keeps only outcomes), so a resumed shard writes the same table."""
    rows = []
    for i, reason in enumerate(used):
        cmds = sample_sequence(attempt_rng(seed, shard, i), gen.min_moves, gen.max_moves)
        physics, pushes = _attempt_draw(i, cmds, seed, shard, expert, rand)
        rows.append({"shard": shard, "attempt": i, "reason": reason,
                     "duration_s": round(len(cmds) * expert.cmd_duration, 9),
                     **randomize.summary(physics, pushes)})
    return rows


def _existing(out: Path, num: int, header: dict[str, Any]) -> dict[str, Any]:
    """A finished shard is not regenerated: return its summary if it is this very shard.

    This also completes a run killed between the shard's rename and the journal's removal.
    """
    attrs = dataset.validate(out)
    same = (attrs.get("random_seed") == header["seed"] and attrs.get("shard") == header["shard"]
            and attrs.get("num_trajectories") == num
            and attrs.get("config_json") == header["settings"])
    if not same:
        raise QuadpipeError(f"{out} already exists with other settings; delete it or choose "
                            "another --out")
    Journal(partial_dir(out), header).remove()
    log.info("%s is already complete", out)
    return attrs


def _sampler(gen: GenerateConfig) -> dict[str, int]:
    return {"min_moves": gen.min_moves, "max_moves": gen.max_moves}


def _storage(gen: GenerateConfig) -> dataset.Storage:
    return dataset.Storage(dtype=gen.dtype, compression=gen.compression,
                           compression_level=gen.compression_level,
                           gzip_encoder=gen.gzip_encoder, chunk_steps=gen.chunk_steps,
                           layout=gen.layout)


def _storage_settings(gen: GenerateConfig) -> dict[str, Any]:
    """The storage part of config_json. The layout appears only when it is not the default,
    so that the default's files stay byte for byte what they were before layouts existed."""
    settings = dataclasses.asdict(_storage(gen))
    if settings["layout"] == "full":
        del settings["layout"]
    return settings


def _check_args(out: Path, num: int, seed: int, shard: int, gen: GenerateConfig) -> None:
    if num <= 0:
        raise QuadpipeError(f"--num must be a positive number of trajectories, got {num}")
    if seed < 0 or shard < 0:
        raise QuadpipeError(f"--seed and --shard must be >= 0, got seed {seed}, shard {shard}")
    if not 1 <= gen.min_moves <= gen.max_moves:
        raise QuadpipeError(f"generate.min_moves ({gen.min_moves}) must be >= 1 and <= "
                            f"generate.max_moves ({gen.max_moves})")
    if gen.dtype not in ("float32", "float64"):
        raise QuadpipeError(f"generate.dtype must be float32 or float64, got {gen.dtype!r}")
    if gen.layout not in dataset.LAYOUTS:
        raise QuadpipeError(f"generate.layout must be one of {', '.join(dataset.LAYOUTS)}, got "
                            f"{gen.layout!r}")
    if gen.gzip_encoder not in dataset.GZIP_ENCODERS:
        raise QuadpipeError(f"generate.gzip_encoder must be one of "
                            f"{', '.join(dataset.GZIP_ENCODERS)}, got {gen.gzip_encoder!r}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.with_name(f".{out.name}.probe")
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise QuadpipeError(f"cannot write to folder {out.parent} ({exc.strerror}); choose a "
                            "writable --out") from exc


def _run_attempts(journal: Journal, model: mujoco.MjModel, initial: np.ndarray, num: int,
                  seed: int, shard: int, expert: ExpertConfig, stability: StabilityConfig,
                  gen: GenerateConfig, bar: Any, on_accept: Callable[[int], None],
                  rand: RandomizeConfig = RandomizeConfig()) -> list[int]:
    """Consume attempts in order until `num` are stable; return the accepted attempt indices.

    `on_accept(attempt)` is called for each accepted attempt in order, after its journal line.
    """
    accepted = [i for i, r in enumerate(journal.outcomes) if r == STABLE][:num]
    for attempt in accepted:
        on_accept(attempt)
    if bar is not None:
        bar.update(len(accepted))
    if len(accepted) == num:
        return accepted
    max_attempts = num * gen.max_attempts_factor
    storage = _storage(gen)
    nthreads = resolve_threads(gen.threads)
    datas = ThreadData(model)

    def run(attempt: Attempt) -> Attempt:
        """Simulate and check one attempt; write a stable one's side file (compressed, final
        format) here in the worker, so compression overlaps other threads' simulation."""
        ctrl = references(attempt.commands, expert)
        if rand.data:
            physics, pushes = _attempt_draw(attempt.index, attempt.commands, seed, shard, expert,
                                            rand)
            r = simulate_one(apply(model, physics), datas.get(), initial, ctrl, pushes)
            # the motors apply strength x the command; the data hold the command (sim.physics)
            r.torque = r.torque / np.asarray(physics.motor_strength)
            extra = {randomize.PHYSICS_ATTR: randomize.as_json(physics, pushes)}
        else:
            r = simulate_one(model, datas.get(), initial, ctrl)
            extra = {}
        attempt.reason = check_stability(r.qpos, r.qvel, r.time, expert.dt, stability)
        if attempt.reason == STABLE:
            traj = _trajectory(attempt, r, expert, seed, shard)
            traj.attrs.update(extra)
            with h5py.File(journal.tmp_path(attempt.index), "w") as f:
                dataset.write_trajectory(f, SIDE_GROUP, traj, storage)
        return attempt

    next_index = len(journal.outcomes)
    window: deque[Future[Attempt]] = deque()
    with ThreadPoolExecutor(max_workers=nthreads) as pool:
        try:
            while len(accepted) < num:
                # Keep the threads busy, but never run more attempts than could still be
                # needed: a speculative attempt past the last one kept is wasted time.
                while len(window) < min(2 * nthreads, num - len(accepted)):
                    if next_index >= max_attempts:
                        break
                    cmds = sample_sequence(attempt_rng(seed, shard, next_index), gen.min_moves,
                                           gen.max_moves)
                    window.append(pool.submit(run, Attempt(next_index, cmds)))
                    next_index += 1
                if not window:
                    raise QuadpipeError(
                        f"only {len(accepted)} of {num} trajectories were stable after "
                        f"{max_attempts} attempts; check the expert and stability settings")
                attempt = window.popleft().result()
                journal.record(attempt.index, attempt.reason)
                if attempt.reason == STABLE:
                    accepted.append(attempt.index)
                    on_accept(attempt.index)
                if bar is not None:
                    if attempt.reason == STABLE:
                        bar.update(1)
                    bar.set_postfix(acceptance=f"{len(accepted) / (attempt.index + 1):.0%}")
        finally:
            for fut in window:
                fut.cancel()
    return accepted


def _trajectory(attempt: Attempt, r: Rollout, expert: ExpertConfig, seed: int, shard: int
                ) -> dataset.Trajectory:
    """The stored form of a stable rollout: T observed states (before each step), T torques."""
    qpos, qvel = r.qpos[:-1], r.qvel[:-1]
    states = states_from(qpos, qvel)
    return dataset.Trajectory(
        command_sequence=attempt.commands, states=states, actions=r.torque,
        qpos=qpos, qvel=qvel, initial_state=states[0], initial_qpos=qpos[0],
        initial_qvel=qvel[0],
        attrs={"is_stable": True, "stability_reason": STABLE, "dt": expert.dt,
               "cmd_duration": expert.cmd_duration, "num_timesteps": len(qpos),
               "state_dim": STATE_DIM, "attempt": attempt.index, "shard": shard,
               "random_seed": seed})


class _ShardFile:
    """The shard being written: accepted side files' groups copied in as they are.

    HDF5's object copy moves the compressed chunks without decoding them, so adding a trajectory
    costs little more than the disk copy; ids are the order of acceptance, 1-based.
    """

    def __init__(self, dst: h5py.File, journal: Journal) -> None:
        self.dst, self.journal, self.count = dst, journal, 0

    def add(self, attempt: int) -> None:
        self.count += 1
        name = dataset.group_name(self.count)
        try:
            with h5py.File(self.journal.data_path(attempt), "r") as src:
                src.copy(src[SIDE_GROUP], self.dst, name=name)
        except (OSError, KeyError) as exc:
            raise self.journal.corrupt(attempt, str(exc)) from exc
        self.dst[name].attrs["trajectory_id"] = self.count


def _progress_bar(num: int, progress: bool | None) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=num, unit="traj", desc="generate", file=sys.stderr)
