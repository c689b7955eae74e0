"""Numbers on the command line: `snakemake --config eval='{"speed": 0.2}'` plans the jobs the same
override in a config file would, and a value that is no number fails in one line naming its key.
Also: the conda environment of `--sdm conda` installs every extra the rules' code imports.

The dry runs plan the small test config (tests/config/config.yaml) from an empty directory; one
slow test runs its data stage for real to see that a --config override reruns what it should.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_config
from snakemake.utils import update_config
from test_workflow import TEST_CONFIG, parse_dry_run, snakemake

from quadpipe.errors import ConfigError
from quadpipe.overrides import apply_overrides, check, coerce, key_path, load_schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
DATA = ["generate_shard", "merge"]


def overridden(*entries: str) -> dict:
    """config.yaml with `--config` `entries` applied as the workflow applies them."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    overrides = parse_config(list(entries))  # what Snakemake hands over
    update_config(config, overrides)  # Snakemake merges the strings first
    apply_overrides(config, overrides, SCHEMA)
    return config


def test_snakemake_hands_nested_values_over_as_strings():
    """The cause: YAML's BaseLoader, strings inside dicts and inside lists."""
    assert parse_config(['eval={"speed": 0.2}', 'train={"hidden": [64, 64]}']) == {
        "eval": {"speed": "0.2"}, "train": {"hidden": ["64", "64"]}}


def test_numbers_integers_booleans_and_lists_take_the_schemas_types():
    config = overridden('eval={"speed": 0.2, "fps": 24, "video": false}',
                        'train={"epochs": 5, "hidden": [64, 64], "lr": 1e-4, "gait_clock": off}',
                        'generate={"threads": 1, "compression": null}')
    assert config["eval"]["speed"] == 0.2 and type(config["eval"]["speed"]) is float
    assert config["eval"]["fps"] == 24 and type(config["eval"]["fps"]) is int
    assert config["eval"]["video"] is False and config["train"]["gait_clock"] is False
    assert config["train"]["epochs"] == 5 and type(config["train"]["epochs"]) is int
    assert config["train"]["hidden"] == [64, 64] and {type(h) for h in config["train"]["hidden"]} \
        == {int}
    assert config["train"]["lr"] == 1e-4
    assert config["generate"]["threads"] == 1 and config["generate"]["compression"] is None
    # the keys not overridden keep config.yaml's values; the result passes the schema
    assert config["eval"]["duration"] == 30.0 and config["train"]["batch_size"] == 256
    check(config, SCHEMA)


def test_nested_objects_are_typed_key_by_key():
    config = overridden('suite={"pushes": {"velocity": [0.2, 0.4]}, "episodes": 4}',
                        'randomize={"dagger": true, "physics": {"slope_deg": [0, 2.5]}}')
    assert config["suite"]["pushes"]["velocity"] == [0.2, 0.4]
    assert config["suite"]["pushes"]["interval_s"] == [2.0, 4.0]  # the sibling key stays
    assert config["suite"]["episodes"] == 4 and config["randomize"]["dagger"] is True
    assert config["randomize"]["physics"]["slope_deg"] == [0.0, 2.5]
    check(config, SCHEMA)


def test_a_number_a_number_type_holds_is_a_float_as_in_config_yaml():
    """eval.duration=30 is 30.0, the value config.yaml writes: the same job parameters."""
    assert overridden('eval={"duration": 30}')["eval"]["duration"] == 30.0
    assert type(overridden('eval={"duration": 30}')["eval"]["duration"]) is float
    assert overridden('train={"epochs": 5.0}')["train"]["epochs"] == 5  # integral: an integer


def test_strings_stay_strings():
    config = overridden('train={"logger": tensorboard, "device": "0"}',
                        'generate={"compression": lzf}', 'eval={"paths": [circle, straight]}')
    assert config["train"]["logger"] == "tensorboard" and config["train"]["device"] == "0"
    assert config["generate"]["compression"] == "lzf"
    assert config["eval"]["paths"] == ["circle", "straight"]


def test_path_entries_read_their_numbers_as_config_yaml_would():
    """The schema does not type a path entry's keys; its numeric strings are numbers."""
    entries = overridden('eval={"paths": [{"name": "big", "shape": "circle", "radius": 2}, '
                         '{"name": "w", "waypoints": [[0, 0], [0.5, 0]]}]}')["eval"]["paths"]
    assert entries == [{"name": "big", "shape": "circle", "radius": 2},
                       {"name": "w", "waypoints": [[0, 0], [0.5, 0]]}]


def test_every_default_survives_the_trip_through_the_command_line():
    """config.yaml passed entirely as --config strings comes back exactly as config.yaml."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    strings = yaml.load(yaml.safe_dump(config), Loader=yaml.BaseLoader)
    assert strings["eval"]["speed"] == "0.25"  # every scalar a string, as --config hands it
    assert coerce(strings, SCHEMA) == config


@pytest.mark.parametrize(("entry", "message"), [
    ('eval={"speed": "fast"}', "eval.speed: 'fast' is not of type 'number'"),
    ('train={"epochs": 5.5}', "train.epochs: '5.5' is not of type 'integer'"),
    ('train={"hidden": [64, x]}', "train.hidden[1]: 'x' is not of type 'integer'"),
    ('eval={"video": maybe}', "eval.video: 'maybe' is not of type 'boolean'"),
    ('eval={"speed": nan}', "eval.speed: 'nan' is not of type 'number'"),
    ('suite={"pushes": {"velocity": [0.2, -1]}}',
     "suite.pushes.velocity[1]: -1.0 is less than the minimum of 0"),
    ('train={"epoch": 5}', "train: Additional properties are not allowed ('epoch' was unexpected)"),
])
def test_a_value_that_does_not_fit_is_refused_in_one_line_naming_its_key(entry, message):
    with pytest.raises(ConfigError) as exc:
        check(overridden(entry), SCHEMA)
    assert str(exc.value) == message


def test_values_from_config_files_are_not_touched():
    config = {"eval": {"speed": "0.2"}, "train": {"epochs": "5"}}
    apply_overrides(config, {"train": {"epochs": "5"}}, SCHEMA)
    assert config == {"eval": {"speed": "0.2"}, "train": {"epochs": 5}}


def test_key_path():
    assert key_path(["suite", "randomized", "friction", 0]) == "suite.randomized.friction[0]"
    assert key_path([]) == ""


# --- the workflow: dry runs with --config --------------------------------------------------

def dry_run(workdir: Path, *entries: str, target: tuple[str, ...] = ()) -> str:
    """The output of a dry run (with shell commands) of the test config plus `--config entries`.

    The targets come first: --configfile takes every word after it.
    """
    args = [*target, "--dry-run", "--printshellcmds", "--configfile", str(TEST_CONFIG)]
    if entries:
        args += ["--config", *entries]
    return snakemake(workdir, *args).stdout


def jobs_of(text: str) -> dict[str, list[str]]:
    """rule -> sorted outputs of its planned jobs (a dry run lists them in no fixed order)."""
    return {rule: sorted(outputs) for rule, outputs in parse_dry_run(text).items()}


def settings(text: str, rule: str) -> list[dict]:
    """The settings JSON each planned job of `rule` writes to its log (its shell command's echo)."""
    out, current = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            current = m.group(1)
        elif current == rule and line.startswith("Shell command: echo '"):
            out.append(json.loads(line.split("'")[1]))
    return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The dry run of the test config without overrides, from an empty directory."""
    return dry_run(tmp_path_factory.mktemp("plain"))


def test_an_eval_speed_on_the_command_line_reaches_every_evaluation(tmp_path, plain):
    text = dry_run(tmp_path, 'eval={"speed": 0.2}')
    assert jobs_of(text) == jobs_of(plain)  # the same jobs, nothing refused
    evals = settings(text, "evaluate")
    assert len(evals) == 2 and {json.dumps(s["eval"]["speed"]) for s in evals} == {"0.2"}


def test_training_overrides_plan_the_training_stages_with_them(tmp_path, plain):
    text = dry_run(tmp_path, 'train={"epochs": 5, "hidden": [64, 64]}')
    jobs = jobs_of(text)
    assert jobs == jobs_of(plain)
    assert len(jobs["train_stage"]) == 4 and len(jobs["policy"]) == 2  # 2 seeds x 2 rounds
    stages = settings(text, "train_stage")
    assert len(stages) == 4
    assert all(s["train"]["epochs"] == 5 and s["train"]["hidden"] == [64, 64] for s in stages)
    assert {json.dumps(s["train"]["hidden"]) for s in stages} == {"[64, 64]"}  # numbers


def test_a_thread_count_on_the_command_line_sizes_the_shards_only(tmp_path, plain):
    text = dry_run(tmp_path, 'generate={"threads": 1}')
    assert jobs_of(text) == jobs_of(plain)
    commands = [line for line in text.splitlines() if "quadpipe generate" in line]
    assert len(commands) == 2 and all("--threads 1 " in c for c in commands)
    # not a parameter of the data: the shards' settings are those of the plain run
    assert sorted(map(json.dumps, settings(text, "generate_shard"))) == sorted(
        map(json.dumps, settings(plain, "generate_shard")))


def test_a_word_for_a_number_fails_in_one_line_naming_the_key(tmp_path):
    proc = snakemake(tmp_path, "--dry-run", "--configfile", str(TEST_CONFIG),
                     "--config", 'eval={"speed": "fast"}', check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config: eval.speed: 'fast' is not of type 'number'" in out.splitlines()
    assert "Failed validating" not in out  # not the schema dump of snakemake's validate


@pytest.mark.slow
def test_command_line_overrides_rerun_the_data_only_when_it_changes(tmp_path):
    """A real data stage, then dry runs: the thread count and a value equal to the current one
    rerun nothing (their parameters are those recorded), another max_moves both shards."""
    snakemake(tmp_path, "results/dataset/dataset.h5", "--cores", "2", "--configfile",
              str(TEST_CONFIG))
    target = ("results/dataset/dataset.h5",)
    assert parse_dry_run(dry_run(tmp_path, 'generate={"threads": 1}', target=target)) == {}
    assert parse_dry_run(dry_run(tmp_path, 'generate={"max_moves": 2}', target=target)) == {}
    jobs = parse_dry_run(dry_run(tmp_path, 'generate={"max_moves": 3}', target=target))
    assert sorted(jobs) == sorted(DATA) and len(jobs["generate_shard"]) == 2


# --- the conda environment of --sdm conda -----------------------------------------------------

# imports that need an extra's package although their top-level module is a base dependency
NEEDS = {"torch.utils.tensorboard": "tensorboard"}


def env_extras() -> set[str]:
    """The extras workflow/envs/quadpipe.yaml installs quadpipe with."""
    env = yaml.safe_load((ROOT / "workflow/envs/quadpipe.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    (line,) = [p for p in pip if p.startswith("-e ../..")]
    m = re.fullmatch(r"-e \.\./\.\.(?:\[([\w,-]+)\])?", line)
    assert m, line
    return set(m.group(1).split(",")) if m.group(1) else set()


def imported_distributions() -> set[str]:
    """Distributions (normalised names) that src/quadpipe imports anywhere, lazily or not: the
    code `python -m quadpipe` runs in the rules."""
    names = set()
    for path in (ROOT / "src/quadpipe").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    dists = importlib.metadata.packages_distributions()
    out = set()
    for name in names:
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == "quadpipe":
            continue
        out |= {NEEDS[n] for n in NEEDS if name.startswith(n)}
        out |= set(dists.get(top, [top]))
    return {_norm(d) for d in out}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_conda_env_installs_every_extra_the_rules_import():
    """`snakemake --sdm conda` needs conda itself even for a dry run (`conda info`), so this
    reads the env file: every extra of pyproject.toml whose packages quadpipe imports
    (tensorboard, wandb, export) is installed, and the test-only ones (dev, readers) are not."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    needed = {name for name, reqs in extras.items()
              if {_norm(re.split(r"[<>=!~\[; ]", r)[0]) for r in reqs} & imported_distributions()}
    assert {"tensorboard", "wandb", "export"} <= needed
    assert env_extras() == needed
    assert not {"dev", "readers"} & env_extras()
