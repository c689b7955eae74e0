"""The workflow on a real SLURM cluster (tests/slurm/cluster.sh) through profiles/slurm.

Each test copies the workflow (Snakefile, config.yaml, workflow/, profiles/, tests/config/) into a
temporary directory and runs `snakemake --profile profiles/slurm` there, as a user would on a
cluster. What the tests rely on, and check:

- every job the profile submits is in the accounting (`sacct`) on the partition the profile gave
  its rule (train on `gpu`, everything else on `cpu`), and the merged dataset equals, dataset for
  dataset and attribute for attribute, the one a local run (`--cores 2`) makes;
- a shard job cancelled mid-run (`scancel`) is resubmitted by the profile's `retries` and resumes
  from its journal: same dataset;
- a training stage cancelled mid-epoch is resubmitted and resumes from its last epoch's
  checkpoint (its log says from which epoch), ending with the weights of a local run;
- a job cancelled on every attempt stops the workflow with an error naming its rule, and the next
  run continues the shard from the journal the cancelled attempts left.

Rule names of the jobs come from the accounting's submit line (`--target-jobs 'rule:...'`, which
the plugin writes next to `--comment rule_<rule>_wildcards_<values>`): the test cluster does not
store comments in the accounting (no `AccountingStoreFlags=job_comment`), so `sacct -o Comment`
is empty there.

Times on 2 cores (the plugin's status polling, +10 s per idle round, makes them vary by ~30 s):
cluster start ~5 s, local reference runs ~8 s and ~10 s, the whole DAG ~2 min, the fault tests
~50 s and ~2:15; the module ~5.5 min.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch
import yaml
from helpers import file_contents

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
TEST_CONFIG = "tests/config/config.yaml"
DATASET = "results/dataset/dataset.h5"
SHARD_LOG = "results/logs/generate_shard/0.log"
JOURNAL = "results/shards/shard_0.h5.partial/journal.jsonl"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# The venv's `python` for the jobs' shell commands, even when pytest runs without an activated venv
# (sbatch --export=ALL passes this PATH on to the jobs).
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

# One shard long enough to cancel mid-run: 20 trajectories of 2-4 moves of 0.8 s, ~10 s of
# simulation written to the journal one attempt at a time (~0.5 s each).
FAULT_CONFIG = {
    # the original's 1-ms physics: its jobs must run long enough to be cancelled mid-way (on the
    # fast profile a shard finished before the second cancellation)
    "sim": {"profile": "original"},
    "dataset": {"shards": 1, "trajectories_per_shard": 20},
    "expert": {"cmd_duration": 0.8},
    "generate": {"min_moves": 2, "max_moves": 4},
}
# The whole DAG on SLURM without the evaluation videos: rendering them in software takes ~27 s per
# path, which would double the run (the replay jobs still render videos on the cluster).
DAG_CONFIG = {"eval": {"video": False}}
SHARD_0 = "rule_generate_shard_wildcards_0"  # the plugin's --comment for shard 0's job
RESUMED = re.compile(r"resuming \S+ from its journal: (\d+) attempts")
# One behaviour-cloning stage long enough to cancel mid-run (~1 s per epoch on one core), on the
# FAULT_CONFIG dataset; its state file is the target.
STAGE_CONFIG = {**FAULT_CONFIG, "train": {"seeds": [0], "epochs": 10, "batch_size": 32,
                                          "sample_stride": 2, "hidden": [64, 64, 64]}}
STAGE = "results/train/seed_0/stages/round_0.pt"
STAGE_RESUME = STAGE + ".partial/resume.pt"
STAGE_LOG = "results/logs/train/seed_0/round_0.log"
STAGE_RESUMED = re.compile(r"resuming round 0 after epoch (\d+)")


# --------------------------------------------------------------------------------------------
# The cluster


def _cluster(command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), command], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "QUADPIPE_SLURM_WAIT_SCHED": "1"})


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """The local test cluster: started here if it is not running (and then stopped at the end)."""
    started = _cluster("status", 60).returncode != 0
    if started:
        proc = _cluster("start", 900)  # may apt-get install the packages first (~30 s)
        if proc.returncode != 0:
            if "apt-get is missing" in proc.stderr:
                pytest.skip(f"no SLURM and no apt-get to install it: {proc.stderr.strip()}")
            pytest.fail(f"tests/slurm/cluster.sh start failed (exit {proc.returncode}):\n"
                        f"{proc.stdout}{proc.stderr}\n(deselect these tests with -m 'not slurm')")
    yield
    if started:
        _cluster("stop", 120)  # also cancels any job left


def cancel_all() -> None:
    """After a failure: cancel every job of this user (root on the test cluster) and wait
    (bounded) until none is left."""
    user = pwd.getpwuid(os.getuid()).pw_name
    subprocess.run(["scancel", "-u", user], capture_output=True, timeout=30)
    end = time.monotonic() + 30
    while time.monotonic() < end and squeue("-u", user):
        time.sleep(0.5)


def squeue(*args: str) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%k|%Z", *args], capture_output=True,
                         text=True, timeout=30).stdout
    return [line.split("|", 3) for line in out.splitlines() if line.strip()]


@dataclass
class Job:
    """One SLURM job as the accounting has it."""

    jobid: str
    partition: str
    state: str
    rule: str  # from the submit line: --target-jobs 'rule:wildcards'
    attempt: int  # from the submit line: --attempt N


def sacct_jobs(run_id: str, since: datetime, expected: set[str], timeout: float = 60) -> list[Job]:
    """The jobs of SLURM run `run_id` (the plugin's job name) in `sacct`, once `expected` ids
    all have a final state there (the accounting lags the controller by a moment)."""
    end = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "--name", run_id, "-S", since.strftime("%Y-%m-%dT%H:%M:%S"),
             "-o", "JobID,JobName,Partition,State,Comment,SubmitLine"],
            capture_output=True, text=True, timeout=30, check=True).stdout
        jobs = []
        for line in out.splitlines():
            jobid, name, partition, state, comment, submit = line.split("|", 5)
            target = re.search(r"--target-jobs '(\w+):", submit)
            attempt = re.search(r"--attempt (\d+)", submit)
            assert name == run_id and target and attempt, line
            # empty unless the cluster stores comments (AccountingStoreFlags=job_comment)
            assert comment in ("", f"rule_{target.group(1)}") or comment.startswith(
                f"rule_{target.group(1)}_wildcards_"), line
            jobs.append(Job(jobid, partition, state.split()[0], target.group(1),
                            int(attempt.group(1))))
        final = {j.jobid for j in jobs if j.state not in ("PENDING", "RUNNING", "COMPLETING")}
        if expected <= final or time.monotonic() > end:
            return jobs
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------
# Workflow copies and runs


def copy_workflow(dest: Path, extra: dict | None = None) -> Path:
    """The workflow as a user checks it out, in `dest`; `extra` settings go to extra.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake")
    for name in ("workflow", "profiles", "tests/config"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    if extra:
        (dest / "extra.yaml").write_text(yaml.safe_dump(extra))
    return dest


def configfiles(workdir: Path) -> list[str]:
    """The test config, and the copy's extra.yaml on top of it if there is one."""
    return ["--configfile", TEST_CONFIG, *(["extra.yaml"] if (workdir / "extra.yaml").exists()
                                           else [])]


class Run:
    """A snakemake running in the background in `workdir`, its output in `log`."""

    def __init__(self, workdir: Path, args: list[str], log: Path):
        self.workdir, self.log, self.started = workdir, log, datetime.now()
        self.command = [*SNAKEMAKE, *args]
        with open(log, "w") as out:
            # Own session (the whole tree can be killed); SIGINT back to default, as a snakemake
            # started from a non-interactive shell in the background would ignore it.
            self.proc = subprocess.Popen(
                self.command, cwd=workdir, env=ENV, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, n: int = 4000) -> str:
        return f"{' '.join(self.command)} (in {self.workdir}):\n...{self.text()[-n:]}"

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"snakemake still running after {timeout:.0f} s, stopped: "
                                 f"{self.tail()}") from None

    def stop(self) -> None:
        """Interrupt snakemake (it cancels its SLURM jobs), then kill what is left."""
        if self.running():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        cancel_all()

    def run_id(self) -> str:
        m = re.search(r"^SLURM run ID: (\S+)$", self.text(), flags=re.M)
        assert m, f"no SLURM run ID in the output of {self.tail()}"
        return m.group(1)

    def submitted(self) -> dict[str, str]:
        """SLURM job id -> rule, as snakemake reported its submissions."""
        pattern = r"submitted with SLURM jobid (\d+) \(log: \S+/slurm_logs/rule_(\w+)/"
        return dict(re.findall(pattern, self.text()))

    def jobs(self) -> list[Job]:
        return sacct_jobs(self.run_id(), self.started - timedelta(minutes=1),
                          set(self.submitted()))


@contextmanager
def snakemake(workdir: Path, *args: str, log: str = "run.log") -> Iterator[Run]:
    """Start snakemake; on leaving, however that happens, no snakemake and no job of it runs."""
    run = Run(workdir, list(args), workdir.parent / f"{workdir.name}-{log}")
    try:
        yield run
    except BaseException:
        run.stop()
        raise
    finally:
        if run.running():
            run.stop()


def slurm(workdir: Path, *targets: str, log: str = "run.log"):
    """`snakemake --profile profiles/slurm` on the test config (targets first, see the profile)."""
    return snakemake(workdir, *targets, "--profile", "profiles/slurm", *configfiles(workdir),
                     log=log)


def local_dataset(workdir: Path, extra: dict | None = None) -> dict:
    """The merged dataset of a local run (`--cores 2`) of the same config, read in full."""
    copy_workflow(workdir, extra)
    with snakemake(workdir, DATASET, "--cores", "2", *configfiles(workdir)) as run:
        assert run.wait(300) == 0, run.tail()
    return file_contents(workdir / DATASET)


@pytest.fixture(scope="module")
def local_small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return local_dataset(tmp_path_factory.mktemp("local-small") / "wf")


@pytest.fixture(scope="module")
def local_fault(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return local_dataset(tmp_path_factory.mktemp("local-fault") / "wf", FAULT_CONFIG)


def journal_attempts(workdir: Path) -> int:
    """Attempts recorded in shard 0's journal (complete lines after the header)."""
    try:
        return max((workdir / JOURNAL).read_bytes().count(b"\n") - 1, 0)
    except FileNotFoundError:
        return 0


def cancel_shard_mid_run(run: Run, times: int, timeout: float = 180) -> list[int]:
    """`scancel` shard 0's job `times` times, each time once its attempt has added at least two
    outcomes to the journal; return the journal's attempt count at each cancellation."""
    counts: list[int] = []
    done: set[str] = set()
    end = time.monotonic() + timeout
    while len(counts) < times:
        jobid = None
        while jobid is None:  # the (next) job of shard 0, running
            assert run.running(), f"snakemake ended before cancellation {len(counts) + 1}: " \
                                  f"{run.tail()}"
            assert time.monotonic() < end, f"no running shard job to cancel: {run.tail()}"
            jobid = next((j for j, state, comment, wd in squeue("-t", "R")
                          if comment == SHARD_0 and Path(wd) == run.workdir and j not in done),
                         None)
            time.sleep(0.2)
        before = journal_attempts(run.workdir)  # its generator has not started yet (~5 s)
        while journal_attempts(run.workdir) < before + 2:
            assert time.monotonic() < end, f"shard job {jobid} made no progress: {run.tail()}"
            assert not (run.workdir / "results/shards/shard_0.h5").exists(), \
                "the shard finished before it could be cancelled: make FAULT_CONFIG longer"
            time.sleep(0.1)
        subprocess.run(["scancel", jobid], check=True, timeout=30)
        done.add(jobid)
        counts.append(journal_attempts(run.workdir))
    return counts


def resumed_from(workdir: Path) -> int:
    """The journal length the last attempt of shard 0 resumed from, per its log."""
    log = (workdir / SHARD_LOG).read_text()
    m = RESUMED.search(log)
    assert m, f"{SHARD_LOG} does not say it resumed from its journal:\n{log[-2000:]}"
    return int(m.group(1))


# --------------------------------------------------------------------------------------------
# Tests


def test_the_profile_sets_resources_of_rules_that_exist(tmp_path):
    # A misspelt rule in set-resources is silently ignored: its jobs get the default partition.
    workdir = copy_workflow(tmp_path / "wf")
    proc = subprocess.run([*SNAKEMAKE, "--list-rules", *configfiles(workdir)], cwd=workdir,
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = set(proc.stdout.split())
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert set(profile["set-resources"]) - rules == set(), f"rules: {sorted(rules)}"


def test_the_whole_dag_runs_on_the_partitions_of_the_profile(slurm_cluster, local_small,
                                                             tmp_path):
    workdir = copy_workflow(tmp_path / "wf", DAG_CONFIG)
    with slurm(workdir) as run:  # the default target `all`: train, eval, report included
        assert run.wait(480) == 0, run.tail()
    text = run.text()

    # Every job snakemake planned as a cluster job ("rule x:", not "localrule x:") was submitted.
    planned = Counter(re.findall(r"^rule (\w+):$", text, flags=re.M))
    submitted = run.submitted()
    assert Counter(submitted.values()) == planned, run.tail()
    assert {"generate_shard", "merge", "train_stage", "dagger_collect", "evaluate"} <= set(planned)

    # ... and is in the accounting, finished, under the same rule, on the profile's partition.
    jobs = run.jobs()
    assert {j.jobid: j.rule for j in jobs} == submitted
    for job in jobs:
        assert job.state == "COMPLETED", job
        assert job.partition == ("gpu" if job.rule in ("train_stage", "finetune") else "cpu"), job
        assert job.attempt == 1, job

    assert (workdir / "report.html").stat().st_size > 0
    assert file_contents(workdir / DATASET) == local_small


def test_a_cancelled_shard_job_is_resubmitted_and_resumes(slurm_cluster, local_fault, tmp_path):
    workdir = copy_workflow(tmp_path / "wf", FAULT_CONFIG)
    with slurm(workdir, DATASET) as run:
        [cancelled_at] = cancel_shard_mid_run(run, times=1)
        assert run.wait(300) == 0, run.tail()

    shard_jobs = [j for j in run.jobs() if j.rule == "generate_shard"]
    assert [(j.attempt, j.state) for j in shard_jobs] == [(1, "CANCELLED"), (2, "COMPLETED")]
    assert all(j.partition == "cpu" for j in shard_jobs)
    # the second attempt went on from the first one's journal, not from scratch
    assert resumed_from(workdir) >= cancelled_at >= 2
    assert not (workdir / JOURNAL).parent.exists()  # removed once the shard is written
    assert file_contents(workdir / DATASET) == local_fault


def stage_epochs_done(workdir: Path) -> int:
    """Epochs of the stage's resume checkpoint, per the stage's log (0 before the first)."""
    try:
        return len(re.findall(r"^.* epoch \d+ \(round 0\)", (workdir / STAGE_LOG).read_text(),
                              flags=re.M))
    except FileNotFoundError:
        return 0


def test_a_cancelled_training_stage_is_resubmitted_and_resumes(slurm_cluster, tmp_path):
    from quadpipe.learn.imitation.stages import load_state

    local = copy_workflow(tmp_path / "local", STAGE_CONFIG)
    with snakemake(local, STAGE, "--cores", "2", *configfiles(local)) as run:
        assert run.wait(300) == 0, run.tail()

    workdir = copy_workflow(tmp_path / "wf", STAGE_CONFIG)
    with slurm(workdir, STAGE) as run:
        end = time.monotonic() + 240
        jobid = None
        while jobid is None:  # the stage's job, running
            assert run.running() and time.monotonic() < end, run.tail()
            jobid = next((j for j, state, comment, wd in squeue("-t", "R")
                          if comment.startswith("rule_train_stage_") and Path(wd) == workdir),
                         None)
            time.sleep(0.2)
        while not (workdir / STAGE_RESUME).exists() or stage_epochs_done(workdir) < 2:
            assert time.monotonic() < end, f"stage job {jobid} made no progress: {run.tail()}"
            assert not (workdir / STAGE).exists(), \
                "the stage finished before it could be cancelled: make STAGE_CONFIG longer"
            time.sleep(0.1)
        subprocess.run(["scancel", jobid], check=True, timeout=30)
        cancelled_at = stage_epochs_done(workdir)
        assert run.wait(300) == 0, run.tail()

    stage_jobs = [j for j in run.jobs() if j.rule == "train_stage"]
    assert [(j.attempt, j.state) for j in stage_jobs] == [(1, "CANCELLED"), (2, "COMPLETED")]
    assert all(j.partition == "gpu" for j in stage_jobs)
    m = STAGE_RESUMED.search((workdir / STAGE_LOG).read_text())
    assert m, (workdir / STAGE_LOG).read_text()[-2000:]
    assert int(m.group(1)) >= cancelled_at >= 2  # went on from its checkpoint, not from epoch 1
    assert not (workdir / STAGE_RESUME).parent.exists()
    ours, reference = load_state(workdir / STAGE), load_state(local / STAGE)
    assert ours["epoch"] == reference["epoch"] == 10
    for name, value in reference["model"].items():
        assert torch.equal(ours["model"][name], value), name


def test_a_job_failing_every_attempt_stops_the_run_and_the_next_run_resumes(
        slurm_cluster, local_fault, tmp_path):
    workdir = copy_workflow(tmp_path / "wf", FAULT_CONFIG)

    # 1. shard 0's job is cancelled on each of its 3 attempts (retries: 2): the run fails.
    with slurm(workdir, DATASET, log="first.log") as first:
        counts = cancel_shard_mid_run(first, times=3)
        status = first.wait(300)
    assert status != 0, first.tail()
    text = first.text()
    assert "Error in rule generate_shard" in text, first.tail()
    assert "Exiting because a job execution failed" in text, first.tail()
    jobs = first.jobs()
    assert [(j.rule, j.attempt, j.state) for j in jobs] == [
        ("generate_shard", n, "CANCELLED") for n in (1, 2, 3)]
    assert not (workdir / DATASET).exists()
    left = journal_attempts(workdir)  # the journal the cancelled attempts left behind
    assert left >= counts[-1] >= 6, (counts, left)

    # 2. Run again, undisturbed: one job continues the shard from that journal, then merge.
    with slurm(workdir, DATASET, log="second.log") as second:
        assert second.wait(300) == 0, second.tail()
    jobs = second.jobs()
    assert sorted((j.rule, j.attempt, j.state) for j in jobs) == [
        ("generate_shard", 1, "COMPLETED"), ("merge", 1, "COMPLETED")]
    assert resumed_from(workdir) == left
    assert file_contents(workdir / DATASET) == local_fault
