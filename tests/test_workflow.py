"""The Snakemake workflow: the small DAG runs, reruns only what changed, and its report opens.

One real run of the test config (tests/config/config.yaml) per session, in a temporary working
directory (`--directory`) with the repository's own Snakefile; the dry runs then ask Snakemake
which jobs a config change would plan, and compare the exact set.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
TEST_CONFIG = ROOT / "tests" / "config" / "config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# Jobs downstream of the merged dataset, of the checkpoints and of the eval settings (report and
# `all` close every run).
AFTER_REPORT = {"eval_report", "report", "all"}
AFTER_EVAL = {"evaluate", "eval_video", "eval_videos"} | AFTER_REPORT
SUITE = {"suite_part", "suite"}  # per condition, each seed's and the expert's parts, combined
# the test config fine-tunes, as the default run does: a new imitated policy is fine-tuned again
AFTER_TRAIN = {"finetune", "finetuned_policy", "default_policy"} | SUITE | AFTER_EVAL
# the test config has one DAgger round
TRAINING = {"train_stage", "dagger_collect", "select_checkpoint", "policy"}
AFTER_MERGE = {"stats", "replay", "replay_videos", "prepare"} | TRAINING | AFTER_TRAIN


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="session")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory in which the small DAG has run to the end (report included)."""
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, "--configfile", str(TEST_CONFIG), "--cores", "all")
    return workdir


def planned(workdir: Path, change: dict | None = None) -> dict[str, list[str]]:
    """rule -> outputs of the jobs a dry run plans with the test config plus `change`."""
    configs = [str(TEST_CONFIG)]
    if change:
        extra = workdir / "change.yaml"
        extra.write_text(yaml.safe_dump(change))
        configs.append(str(extra))
    out = snakemake(workdir, "--dry-run", "--configfile", *configs).stdout
    return parse_dry_run(out)


def parse_dry_run(text: str) -> dict[str, list[str]]:
    """The job blocks of `snakemake --dry-run` output: rule -> first output of each job."""
    jobs: dict[str, list[str]] = {}
    rule = None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            rule = m.group(1)
            jobs.setdefault(rule, []).append("")
        elif rule and line.strip().startswith("output:"):
            jobs[rule][-1] = line.split(":", 1)[1].strip().split(", ")[0]
        elif not line.startswith(" "):
            rule = None
    return jobs


@pytest.mark.slow
def test_small_dag_produces_every_result(finished):
    for rel in ("results/dataset/dataset.h5", "results/dataset/summary.h5",
                "results/stats/trajectories.csv", "results/stats/summary.csv",
                "results/replay/trajectory_00001.json", "results/replay/trajectory_00001.mp4",
                "results/train/best.pt", "results/train/seed_1/loss.png",
                "results/eval/circle.json", "results/eval/corner.png", "results/eval/corner.mp4",
                "results/eval/index.html", "results/eval/suite/nominal.json",
                "results/eval/suite/pushes.json", "results/eval/suite/index.html", "report.html"):
        assert (finished / rel).stat().st_size > 0, rel
    # the default policy is the first seed's fine-tuned one, and the seeds' policies differ
    assert (finished / "results/train/best.pt").read_bytes() == (
        finished / "results/train/seed_0/finetuned.pt").read_bytes()
    assert (finished / "results/train/seed_1/best.pt").read_bytes() != (
        finished / "results/train/seed_0/best.pt").read_bytes()
    # the imitated policies are evaluated beside the fine-tuned ones, on the same path
    circle = json.loads((finished / "results/eval/circle.json").read_text())
    assert [s["checkpoint"] for s in circle["seeds"]] == [
        f"results/train/seed_{s}/finetuned.pt" for s in (0, 1)]
    assert [s["checkpoint"] for s in circle["baseline"]["seeds"]] == [
        f"results/train/seed_{s}/best.pt" for s in (0, 1)]
    # the push curve: one point per kick size, the imitated policies beside
    curve = json.loads((finished / "results/eval/suite/push_curve.json").read_text())
    assert [p["kick_m_s"] for p in curve["curve"]] == [0.6, 1.5]
    assert all(p["expert"]["n"] == 2 and "baseline" in p for p in curve["curve"])
    headline = (finished / "results/eval/headline.md").read_text()
    assert "| 1.5 |" in headline and "imitated / expert" in headline
    corner = json.loads((finished / "results/eval/corner.json").read_text())
    assert corner["spec"]["waypoints"] == [[0.0, 0.0], [0.3, 0.0], [0.3, 0.3]]
    assert [s["seed"] for s in corner["seeds"]] == [0, 1]
    suite = json.loads((finished / "results/eval/suite/randomized.json").read_text())
    assert len(suite["episodes"]) == 3 and suite["policy"]["pooled"]["n"] == 6
    replayed = json.loads((finished / "results/replay/trajectory_00004.json").read_text())
    assert replayed["reproduced"]
    assert sorted(p.name for p in (finished / "results/shards").glob("*.h5")) == [
        "shard_0.h5", "shard_1.h5"]


@pytest.mark.slow
def test_the_default_run_simulates_on_the_fast_profile_and_checks_on_the_original(finished):
    import h5py

    from quadpipe.learn.policy import load_checkpoint

    with h5py.File(finished / "results/dataset/dataset.h5") as f:
        assert f.attrs["sim_profile"] == "fast" and f.attrs["dt"] == 0.004
    _, obs, ckpt = load_checkpoint(finished / "results/train/best.pt")
    assert obs.dt == 0.004 and ckpt["sim"]["profile"] == "fast"
    fidelity = json.loads((finished / "results/eval/suite/fidelity.json").read_text())
    assert fidelity["physics"]["cross_profile"] and len(fidelity["episodes"]) == 3
    assert fidelity["physics"]["episodes"]["timestep"] == 0.001
    headline = (finished / "results/eval/headline.md").read_text()
    assert "fidelity: the first 3 nominal episodes on `original` (1-ms steps" in headline


@pytest.mark.slow
def test_the_original_profile_runs_the_small_dag_end_to_end(tmp_path):
    """`sim.profile: original`, the original's 1-kHz physics, end to end: the data, the
    policies and every evaluation on it (its fidelity condition on the same physics)."""
    change = tmp_path / "original.yaml"
    change.write_text(yaml.safe_dump({"sim": {"profile": "original"}}))
    snakemake(tmp_path, "--configfile", str(TEST_CONFIG), str(change), "--cores", "all")
    import h5py

    from quadpipe.learn.policy import load_checkpoint

    with h5py.File(tmp_path / "results/dataset/dataset.h5") as f:
        assert f.attrs["sim_profile"] == "original" and f.attrs["dt"] == 0.001
        n = f["trajectory_00001"].attrs["num_timesteps"]
        assert n == len(f["trajectory_00001/command_sequence"]) * 400  # 0.4-s commands
    _, obs, ckpt = load_checkpoint(tmp_path / "results/train/seed_1/best.pt")
    assert obs.dt == 0.001 and obs.horizon == 1000 and obs.waypoint_every == 200
    assert ckpt["sim"]["profile"] == "original"
    fidelity = json.loads((tmp_path / "results/eval/suite/fidelity.json").read_text())
    assert not fidelity["physics"]["cross_profile"]
    assert (tmp_path / "report.html").stat().st_size > 0
    if importlib.util.find_spec("onnxruntime"):  # the export extra: its metadata's rate
        snakemake(tmp_path, "--configfile", str(TEST_CONFIG), str(change), "--cores", "1",
                  "export_policy")
        import onnx

        meta = {p.key: p.value for p in
                onnx.load(str(tmp_path / "results/train/best.onnx")).metadata_props}
        info = json.loads(meta["quadpipe"])
        assert info["rate_hz"] == 1000.0 and info["sim"]["profile"] == "original"


@pytest.mark.slow
def test_nothing_to_do_after_a_finished_run(finished):
    assert planned(finished) == {}


@pytest.mark.slow
def test_a_training_parameter_reruns_train_eval_and_report_only(finished):
    jobs = planned(finished, {"train": {"epochs": 3}})
    assert set(jobs) == TRAINING | AFTER_TRAIN
    assert len(jobs["policy"]) == 2 and len(jobs["evaluate"]) == 2 and len(jobs["suite"]) == 5
    # one job per condition for each seed's policies (suite.jobs: 1); the expert's jobs do not
    # depend on the policies, so they stay
    assert sorted(jobs["suite_part"]) == sorted(
        f"results/eval/suite/{c}/seed_{s}/part_0_of_1.json"
        for c in ("nominal", "randomized", "pushes", "fidelity", "push_curve") for s in (0, 1))
    # both seeds' stages (behaviour cloning, DAgger round 1) and collections (2 jobs each)
    assert len(jobs["train_stage"]) == 4 and len(jobs["dagger_collect"]) == 4


@pytest.mark.slow
def test_an_observation_parameter_also_reprepares_the_samples(finished):
    assert set(planned(finished, {"train": {"horizon": 400}})) == {"prepare"} | TRAINING | \
        AFTER_TRAIN


@pytest.mark.slow
def test_an_eval_parameter_reruns_the_named_paths_and_report_only(finished):
    assert set(planned(finished, {"eval": {"speed": 0.3}})) == AFTER_EVAL


@pytest.mark.slow
def test_a_suite_range_reruns_only_its_condition(finished):
    jobs = planned(finished, {"suite": {"pushes": {"velocity": [0.2, 0.4]}}})
    assert jobs.get("suite") == ["results/eval/suite/pushes.json"]
    assert sorted(jobs["suite_part"]) == [f"results/eval/suite/pushes/{g}/part_0_of_1.json"
                                          for g in ("expert", "seed_0", "seed_1")]
    assert set(jobs) == SUITE | AFTER_REPORT


@pytest.mark.slow
def test_a_new_path_evaluates_only_itself(finished):
    paths = [*yaml.safe_load(TEST_CONFIG.read_text())["eval"]["paths"],
             {"name": "wide", "shape": "circle", "radius": 2.0}]
    jobs = planned(finished, {"eval": {"paths": paths}})
    assert jobs["evaluate"] == ["results/eval/wide.json"]
    assert jobs["eval_video"] == ["results/eval/wide.mp4"]
    assert set(jobs) == AFTER_EVAL


@pytest.mark.slow
def test_a_new_seed_trains_only_itself(finished):
    jobs = planned(finished, {"train": {"seeds": [0, 1, 2]}})
    assert jobs["policy"] == ["results/train/seed_2/best.pt"]
    fine = {"finetune", "finetuned_policy"}
    assert all("seed_2/" in out for rule in TRAINING | fine | {"suite_part"} for out in jobs[rule])
    assert set(jobs) == TRAINING | fine | {"evaluate"} | SUITE | AFTER_REPORT


@pytest.mark.slow
def test_the_dagger_rounds_and_their_collection_jobs_are_planned(finished):
    """Two rounds in three collection jobs each: round 1 is collected again (its parts are new
    files) and retrained, round 2 is new; behaviour cloning (round 0) does not rerun."""
    jobs = planned(finished, {"train": {"dagger_rounds": 2, "dagger_jobs": 3}})
    assert sorted(jobs["dagger_collect"]) == sorted(
        f"results/train/seed_{s}/dagger/round_{r}/part_{p}_of_3.npz"
        for s in (0, 1) for r in (1, 2) for p in range(3))
    assert sorted(jobs["train_stage"]) == sorted(
        f"results/train/seed_{s}/stages/round_{r}.pt" for s in (0, 1) for r in (1, 2))
    assert set(jobs) == TRAINING | AFTER_TRAIN


@pytest.mark.slow
def test_one_more_dagger_round_trains_only_that_round(finished):
    jobs = planned(finished, {"train": {"dagger_rounds": 2}})
    assert sorted(jobs["train_stage"]) == [f"results/train/seed_{s}/stages/round_2.pt"
                                           for s in (0, 1)]
    assert all("/round_2/" in out for out in jobs["dagger_collect"])


@pytest.mark.slow
def test_the_number_of_collection_jobs_reruns_no_behaviour_cloning(finished):
    """dagger_jobs changes how round 1 is collected, not its samples: the collection and round 1's
    stage rerun (and what follows, by file times), behaviour cloning and the samples do not."""
    jobs = planned(finished, {"train": {"dagger_jobs": 1}})
    assert sorted(jobs["dagger_collect"]) == [
        f"results/train/seed_{s}/dagger/round_1/part_0_of_1.npz" for s in (0, 1)]
    assert sorted(jobs["train_stage"]) == [f"results/train/seed_{s}/stages/round_1.pt"
                                           for s in (0, 1)]
    assert "prepare" not in jobs


@pytest.mark.slow
def test_an_eval_or_suite_key_reruns_no_training_job(finished):
    for change in ({"eval": {"duration": 3.0}}, {"suite": {"episodes": 4}}):
        assert not TRAINING & set(planned(finished, change)), change


def test_a_bad_path_entry_fails_at_parse_time_naming_it(tmp_path):
    bad = {"eval": {"paths": ["circle", {"name": "mine", "shape": "spiral"}]}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = snakemake(tmp_path, "--dry-run", "--configfile", str(TEST_CONFIG),
                     str(tmp_path / "bad.yaml"), check=False)
    assert proc.returncode != 0
    assert "eval.paths[1] (mine).shape: unknown shape 'spiral'" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_more_shards_generate_only_the_new_one_and_remerge(finished):
    jobs = planned(finished, {"dataset": {"shards": 3}})
    assert jobs["generate_shard"] == ["results/shards/shard_2.h5"]
    assert set(jobs) == {"generate_shard", "merge"} | AFTER_MERGE


@pytest.mark.slow
@pytest.mark.parametrize("change", [{"generate": {"max_moves": 3}},
                                    {"expert": {"kp": [90, 80, 60]}},
                                    {"stability": {"min_up_z": 0.6}},
                                    {"sim": {"profile": "original"}},
                                    {"sim": {"timestep": 0.002}}])
def test_a_generation_parameter_regenerates_every_shard(finished, change):
    """... and so does the physics profile: everything simulates on it, from the data on."""
    jobs = planned(finished, change)
    assert sorted(jobs["generate_shard"]) == ["results/shards/shard_0.h5",
                                              "results/shards/shard_1.h5"]
    assert set(jobs) == {"generate_shard", "merge"} | AFTER_MERGE


@pytest.mark.slow
def test_randomisation_reruns_only_the_stages_it_randomises(finished):
    """randomize.dagger: the collection and what follows it, not the data nor behaviour cloning;
    randomize.data: every shard; ranges while both are off: nothing but the report."""
    jobs = planned(finished, {"randomize": {"dagger": True}})
    assert sorted(jobs["dagger_collect"]) == [
        f"results/train/seed_{s}/dagger/round_1/part_{p}_of_2.npz" for s in (0, 1)
        for p in (0, 1)]
    assert sorted(jobs["train_stage"]) == [f"results/train/seed_{s}/stages/round_1.pt"
                                           for s in (0, 1)]
    assert not {"generate_shard", "merge", "prepare"} & set(jobs)
    jobs = planned(finished, {"randomize": {"data": True}})
    assert sorted(jobs["generate_shard"]) == ["results/shards/shard_0.h5",
                                              "results/shards/shard_1.h5"]
    assert set(jobs) == {"generate_shard", "merge"} | AFTER_MERGE
    ranges = {"randomize": {"physics": {"friction": [0.5, 1.0]},
                            "pushes": {"velocity": [0.1, 0.2]}}}
    # the checkpoint selection always draws a third of its episodes' physics and pushes from them
    assert set(planned(finished, ranges)) == {"select_checkpoint", "policy"} | AFTER_TRAIN


@pytest.mark.slow
def test_a_select_key_reruns_the_selection_not_the_training(finished):
    jobs = planned(finished, {"select": {"episodes": 4}})
    assert sorted(jobs["select_checkpoint"]) == [
        f"results/train/seed_{s}/select/part_{p}_of_2.json" for s in (0, 1) for p in (0, 1)]
    assert set(jobs) == {"select_checkpoint", "policy"} | AFTER_TRAIN
    assert set(planned(finished, {"select": {"threads": 2}})) == {"report", "all"}
    off = planned(finished, {"select": {"episodes": 0}})  # best.pt by the validation loss
    assert "select_checkpoint" not in off and "policy" in off


TINY_FINETUNE = {"iterations": 2, "iterations_per_job": 1, "episodes": 2, "seconds": 0.3,
                 "critic_warmup": 1, "critic_hidden": [8]}


@pytest.mark.slow
def test_no_fine_tuning_gives_the_imitation_only_run_and_retrains_nothing(finished):
    """finetune.iterations: 0 evaluates the imitated policies (best.pt) without fine-tuning them
    and without training anything again."""
    jobs = planned(finished, {"finetune": {**TINY_FINETUNE, "iterations": 0}})
    assert "finetune" not in jobs and "finetuned_policy" not in jobs
    assert set(jobs) == {"default_policy"} | SUITE | AFTER_EVAL


@pytest.mark.slow
def test_more_iterations_rerun_only_the_jobs_they_change(finished):
    """Fine-tune seed 0 for real, then ask for one iteration more: only a third job runs."""
    change = finished / "finetune.yaml"
    change.write_text(yaml.safe_dump({"finetune": TINY_FINETUNE}))
    snakemake(finished, "--configfile", str(TEST_CONFIG), str(change), "--cores", "2",
              "results/train/seed_0/finetuned.pt")
    assert (finished / "results/train/seed_0/finetune.csv").read_text().count("\n") == 3
    jobs = planned(finished, {"finetune": {**TINY_FINETUNE, "iterations": 3}})
    assert [j for j in jobs["finetune"] if "seed_0" in j] == [
        "results/train/seed_0/finetune/job_2.pt"]
    assert "finetune" not in planned(finished, {"finetune": {**TINY_FINETUNE, "threads": 2}})


@pytest.mark.slow
def test_thread_count_regenerates_nothing(finished):
    jobs = planned(finished, {"generate": {"threads": 1}})
    assert not ({"generate_shard", "merge"} | TRAINING) & set(jobs)


@pytest.mark.slow
def test_the_split_reruns_merge_and_what_reads_the_dataset(finished):
    jobs = planned(finished, {"dataset": {"valid_fraction": 0.5}})
    assert set(jobs) == {"merge"} | AFTER_MERGE


def test_a_misspelt_key_fails_at_parse_time_naming_it(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"train": {"epoch": 3}}))
    proc = snakemake(tmp_path, "--dry-run", "--configfile", str(TEST_CONFIG),
                     str(tmp_path / "bad.yaml"), check=False)
    assert proc.returncode != 0
    assert "epoch" in proc.stdout + proc.stderr
    assert "Additional properties are not allowed" in proc.stdout + proc.stderr


def test_a_wrong_type_fails_at_parse_time_naming_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"dataset": {"shards": "four"}}))
    proc = snakemake(tmp_path, "--dry-run", "--configfile", str(TEST_CONFIG),
                     str(tmp_path / "bad.yaml"), check=False)
    assert proc.returncode != 0
    assert "'four' is not of type 'integer'" in proc.stdout + proc.stderr
    assert "shards" in proc.stdout + proc.stderr


@pytest.mark.parametrize("sim, message", [
    ({"profile": "cheap"}, "sim.profile: 'cheap' is not one of ['fast', 'original']"),
    ({"timestep": "4ms"}, "sim.timestep: '4ms' is not of type 'number'"),
    ({"cone": "round"}, "sim.cone: 'round' is not one of ['pyramidal', 'elliptic']"),
    ({"substeps": 2}, "'substeps' was unexpected")])
def test_a_bad_physics_profile_fails_at_parse_time_naming_the_key(tmp_path, sim, message):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"sim": sim}))
    proc = snakemake(tmp_path, "--dry-run", "--configfile", str(TEST_CONFIG),
                     str(tmp_path / "bad.yaml"), check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_the_old_expert_dt_key_is_refused_naming_it(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"expert": {"dt": 0.002}}))
    proc = snakemake(tmp_path, "--dry-run", "--configfile", str(TEST_CONFIG),
                     str(tmp_path / "bad.yaml"), check=False)
    assert proc.returncode != 0 and "'dt' was unexpected" in proc.stdout + proc.stderr


def test_shares_valid_alone_but_not_together_fail_at_parse_time(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(
        {"finetune": {"iterations": 24, "kicked": 0.5, "randomize": 0.75}}))
    proc = snakemake(tmp_path, "--dry-run", "--configfile", str(TEST_CONFIG),
                     str(tmp_path / "bad.yaml"), check=False)
    assert proc.returncode != 0
    assert "finetune.kicked (0.5) + finetune.randomize (0.75) is over 1" in \
        proc.stdout + proc.stderr


def test_the_schema_defaults_every_key_of_config_yaml():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert schema["additionalProperties"] is False
    for section, values in config.items():
        spec = schema["properties"][section]
        assert spec["additionalProperties"] is False and "description" in spec
        if section == "sim":  # a named profile; its other keys override it, default-free
            assert set(values) == {"profile"} and spec["properties"]["profile"]["default"] == \
                values["profile"]
            continue
        for key, value in values.items():
            prop = spec["properties"][key]
            assert {"type", "description", "default"} <= set(prop), f"{section}.{key}"
            if prop["type"] == "object":  # a nested section: each of its keys
                assert {k: p["default"] for k, p in prop["properties"].items()} == value, key
            else:
                assert prop["default"] == value, f"config.yaml {section}.{key} is not the default"
        assert set(spec["properties"]) == set(values), f"config.yaml lacks keys of {section}"


def test_the_schema_defaults_are_the_library_defaults():
    """config.yaml, the schema and the dataclasses the CLI builds must agree on every default."""
    import dataclasses

    from quadpipe.config import ExpertConfig, GenerateConfig, StabilityConfig
    from quadpipe.control.paths import ORIGINALS, parse_paths
    from quadpipe.evaluation.named import EvalConfig
    from quadpipe.evaluation.selection import SelectConfig
    from quadpipe.evaluation.suite import SuiteConfig
    from quadpipe.learn.finetuning.runner import FinetuneConfig
    from quadpipe.learn.imitation.train_config import TrainConfig
    from quadpipe.sim.randomize import RandomizeConfig

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, tuple | list) else v

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    # keys of the workflow, not of one job: the path list, the seed list (each job gets one seed)
    workflow_only = {("eval", "paths"), ("train", "seeds"), ("train", "dagger_jobs")}
    job_only = {("train", "seed"), ("expert", "sim")}  # the expert's physics: the sim section
    for section, cls in [("expert", ExpertConfig), ("stability", StabilityConfig),
                         ("generate", GenerateConfig), ("train", TrainConfig),
                         ("eval", EvalConfig), ("suite", SuiteConfig),
                         ("randomize", RandomizeConfig), ("select", SelectConfig),
                         ("finetune", FinetuneConfig)]:
        props = schema["properties"][section]["properties"]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert {(section, p) for p in props} - workflow_only == {
            (section, f) for f in fields} - job_only, section
        for name, value in dataclasses.asdict(cls()).items():
            if (section, name) in job_only:
                continue
            prop = props[name]
            if prop.get("type") == "object":  # a nested section: every key's default
                assert {k: p["default"] for k, p in prop["properties"].items()} == plain(value)
            else:
                assert prop["default"] == plain(value), f"{section}.{name}"
    paths = schema["properties"]["eval"]["properties"]["paths"]["default"]
    assert parse_paths(paths) == parse_paths(list(ORIGINALS))
    # the sim section: the profile names and default, and every setting a profile has
    from quadpipe.config import DEFAULT_PROFILE, PROFILES, SimConfig

    sim = schema["properties"]["sim"]["properties"]
    assert sim["profile"]["enum"] == sorted(PROFILES) and sim["profile"]["default"] == \
        DEFAULT_PROFILE == SimConfig().profile
    assert set(sim) == {f.name for f in dataclasses.fields(SimConfig)}
    assert all("default" not in p for k, p in sim.items() if k != "profile")
    assert ExpertConfig().sim == PROFILES[DEFAULT_PROFILE]


def test_lint_is_clean():
    proc = subprocess.run([*SNAKEMAKE, "--lint", "--snakefile", str(SNAKEFILE)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    files = [str(SNAKEFILE), *map(str, sorted((ROOT / "workflow/rules").glob("*.smk")))]
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


class _Report(HTMLParser):
    """The script blocks of a Snakemake report, by id."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: dict[str, str] = {}
        self._id: str | None = None

    def handle_starttag(self, tag, attrs):
        self._id = dict(attrs).get("id") if tag == "script" else None

    def handle_data(self, data):
        if self._id:
            self.scripts[self._id] = self.scripts.get(self._id, "") + data

    def handle_endtag(self, tag):
        self._id = None


def report_results(report: Path) -> dict[str, dict]:
    parser = _Report()
    parser.feed(report.read_text())
    text = parser.scripts["results"].strip()
    return json.loads(text[text.index("{"): text.rindex("}") + 1])


def decode(data_uri: str) -> bytes:
    return base64.b64decode(data_uri.split(",", 1)[1])


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables = 0
        self.cells: list[str] = []
        self._cell = False

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        self._cell = tag in ("td", "th")

    def handle_data(self, data):
        if self._cell and data.strip():
            self.cells.append(data.strip())


@pytest.mark.slow
def test_report_holds_the_eval_table_images_and_videos(finished):
    results = report_results(finished / "report.html")
    by_name = {r["name"]: r for r in results.values()}
    table = _Tables()
    table.feed(decode(results["results/eval/index.html"]["data_uri"]).decode())
    assert table.tables == 1
    assert {"circle", "corner", "policy (seed 0)", "policy (seed 1)", "expert", "standing"} <= set(
        table.cells)
    suite = _Tables()
    suite.feed(decode(results["results/eval/suite/index.html"]["data_uri"]).decode())
    assert {"nominal", "randomized", "pushes"} <= set(suite.cells)
    # per condition, the push curve per kick size, per seed; plus the three figures
    assert suite.tables == 3 and {"0.6", "1.5"} <= set(suite.cells)
    assert decode(results["results/eval/suite/index.html"]["data_uri"]).count(
        b"data:image/png;base64") == 3
    pngs = [r for r in results.values() if r["mime_type"] == "image/png"]
    assert len(pngs) >= 4 and all(decode(r["data_uri"])[:4] == b"\x89PNG" for r in pngs)
    # the front page shows the headline table (policy vs expert per path and per condition)
    front = (finished / "report.html").read_text()
    assert "Headline: policy vs expert (2 training seeds)" in front
    # the conditions' table and the push curve's, each once
    assert front.count("expert success") == 2 and front.count("<td>corner</td>") == 1
    assert "kick (m/s)" in front  # the push curve
    assert "imitated ratio" in front and "fine-tuned - imitated" in front  # fine-tuning's start
    videos = decode(by_name["eval_videos.html"]["data_uri"]).decode()
    assert videos.count("<video") == 2
    assert {r["caption"] != "" for r in results.values()} == {True}


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="needs Debian chromium (apt-get install chromium)")
def test_report_opens_in_a_headless_browser(finished, tmp_path):
    def dom(page: Path) -> str:
        proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                               "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return re.sub(r"<script.*?</script>", "", proc.stdout, flags=re.S)

    # the report's own app renders its menu of categories (JavaScript ran, data decoded)
    rendered = dom(finished / "report.html")
    for category in ("Evaluation", "Videos", "Training curves", "Plots"):
        assert f"<span>{category}</span>" in rendered
    # the headline table is on the front page, readable without a click
    headline = rendered[rendered.index("Headline: policy vs expert"):]
    for cell in ("expert success", "policy success", "nominal", "pushes", "circle", "corner"):
        assert f">{cell}</" in headline, cell
    # the eval table and a plot, as the report shows them (their embedded data URIs)
    results = report_results(finished / "report.html")
    by_name = {r["name"]: r for r in results.values()}
    page = tmp_path / "eval.html"
    page.write_bytes(decode(results["results/eval/index.html"]["data_uri"]))
    assert "<td>" in dom(page) or "<td " in dom(page)
    shown = tmp_path / "img.html"
    shown.write_text("<body><img onload=\"document.body.dataset.width = this.naturalWidth\" "
                     f"src='{by_name['loss.png']['data_uri']}'></body>")
    width = re.search(r'<body data-width="(\d+)"', dom(shown))
    assert width and int(width.group(1)) > 100


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^Tests:\n\n```bash\n(.+?)\n```", readme, flags=re.M | re.S)
    assert block, "README.md has no test command block after 'Tests:'"
    command = block.group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert ci_lines[-1] == command


@pytest.mark.slow
def test_export_targets_write_next_to_best_pt_and_rerun_nothing_else(finished):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    pytest.importorskip("pyarrow", reason="the export extra is not installed")
    snakemake(finished, "--configfile", str(TEST_CONFIG), "--cores", "1", "export_policy",
              "export_dataset")
    for rel in ("results/train/best.onnx", "results/train/best.torchscript.pt",
                "results/export/robomimic.hdf5", "results/export/lerobot/meta/info.json"):
        assert (finished / rel).stat().st_size > 0, rel
    info = json.loads((finished / "results/export/lerobot/meta/info.json").read_text())
    assert info["fps"] == 50 and info["total_episodes"] == 6  # export.every: 20 -> 50 Hz
    assert planned(finished) == {}  # the exports are not part of `all`


def test_the_workflow_leaves_out_exactly_the_keys_a_stage_does_not_read():
    """common.smk keeps a copy of learn.imitation.stages.DAGGER_KEYS (the Snakefile imports no
    torch)."""
    from quadpipe.learn.imitation.stages import DAGGER_KEYS
    from quadpipe.learn.imitation.train_config import TrainConfig

    text = (ROOT / "workflow/rules/common.smk").read_text()
    block = re.search(r"^DAGGER_KEYS = \{(.*?)\}", text, flags=re.S | re.M).group(1)
    assert set(re.findall(r'"(\w+)"', block)) == DAGGER_KEYS
    assert {f.name for f in dataclasses.fields(TrainConfig)} >= DAGGER_KEYS
