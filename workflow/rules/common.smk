# Config validation, helpers shared by the rules, wildcard constraints.
# Parse-time imports stay light (no torch, no mujoco): every cluster job re-parses this file.
import json
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from quadpipe.control.paths import parse_paths
from quadpipe.config import sim_config
from quadpipe.errors import ConfigError
from quadpipe.overrides import apply_overrides, check, check_relations, load_schema

SCHEMA_FILE = os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
try:
    # --config hands nested values over as strings: type them by the schema first, then
    # refuse a bad key in one line naming it (Snakemake's validate prints a dozen)
    schema = load_schema(SCHEMA_FILE)
    apply_overrides(config, workflow.config_settings.config, schema)
    check(config, schema)
    check_relations(config)  # values valid alone but not together
except ConfigError as exc:
    raise WorkflowError(f"config: {exc}") from None
validate(config, schema="../schemas/config.schema.yaml")  # fills in the defaults
try:  # the physics profile: its name and settings resolved now, a bad one named in one line
    SIM = sim_config(config["sim"])
except ConfigError as exc:
    raise WorkflowError(f"config: {exc}") from None

try:  # path entries are data: check them now, with one message naming the entry
    PATHS = {
        spec.name: spec
        for spec in parse_paths(config["eval"]["paths"], config["eval"]["radius"])
    }
except ConfigError as exc:
    raise WorkflowError(f"config: {exc}") from None
SEEDS = config["train"]["seeds"]
CONDITIONS = config["suite"]["conditions"]


wildcard_constraints:
    shard=r"\d+",
    traj=r"\d{5}",
    path="|".join(PATHS),
    seed=r"\d+",
    round=r"\d+",
    part=r"\d+",
    parts=r"\d+",
    condition="|".join(CONDITIONS),
    group=r"expert|seed_\d+",


# Job priorities (higher first): a seed's chain is the data, then imitation, then fine-tuning,
# one job after another; with 3 seeds on 2 cores the run ends when the last chain does. So every
# seed's imitation first (the chains then fine-tune side by side instead of one left to run
# alone at the end), fine-tuning next, and the suite's parts (each seed's when its policy is
# ready, the expert's whenever) fill the cores the chains leave free; the rest (stats, replays,
# videos, the named paths) after them.
PRIORITY = {"imitation": 3, "finetune": 2, "suite": 1}

REPORT = "report.html"
DATASET = "results/dataset/dataset.h5"
SUMMARY = "results/dataset/summary.h5"
PLOTS = ["paths", "commands", "durations", "torques", "acceptance"]
CHECKPOINT = "results/train/best.pt"
# the default policy for other runtimes (rule export_policy), next to best.pt
POLICY_ONNX = "results/train/best.onnx"
POLICY_TORCHSCRIPT = "results/train/best.torchscript.pt"
SAMPLES = "results/train/samples/meta.json"
# the train keys that shape the prepared samples (quadpipe.learn.imitation.prepare.prepare)
SAMPLE_KEYS = {"horizon", "waypoint_every", "sample_stride", "gait_clock", "path_frame"}
HEADLINE = "results/report/headline.rst"
LANDING = "results/report/landing.rst"
# the report's description; eval_report appends the headline to it (an input: editing it reruns)
INTRO = os.path.join(workflow.basedir, "workflow", "report", "workflow.rst")
CONDA_ENV = "../envs/quadpipe.yaml"


def settings(*sections, drop=()):
    """JSON of config `sections` for a rule's params: the job's own settings, nothing more.

    Snakemake reruns a job when its params change, so each rule sees only the sections that
    change its output. The job writes this JSON to its settings log and passes it to --config.
    A job that reads the expert simulates, so it gets the physics profile (`sim`) with it.
    """
    if "expert" in sections and "sim" not in sections:
        sections = ("sim", *sections)
    return json.dumps(
        {s: {k: v for k, v in config[s].items() if k not in drop} for s in sections},
        sort_keys=True,
    )


def with_randomize(text, use):
    """Settings JSON `text`, with the randomize section as job `use` ("data" or "dagger") reads
    it when that switch is on: the switch and the ranges, not the other switch (flipping that one
    must not rerun this job). Off, `text` unchanged: the job is what it was before the section.
    """
    r = config["randomize"]
    if not r[use]:
        return text
    out = json.loads(text)
    out["randomize"] = {use: True, "physics": r["physics"], "pushes": r["pushes"]}
    return json.dumps(out, sort_keys=True)


def shard_files(wildcards=None):
    return expand(
        "results/shards/shard_{shard}.h5", shard=range(config["dataset"]["shards"])
    )


def all_cores():
    """Every core given to snakemake (--cores); 1 when none were (--report, --lint).

    On a cluster, size jobs in the profile (set-threads), not here.
    """
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def generate_threads():
    """generate.threads, with 0 meaning every core given to snakemake."""
    return config["generate"]["threads"] or all_cores()


def shard_runtime(wildcards, attempt):
    """Minutes for one shard: ~15k simulated steps/s on one core, 3x margin, per attempt."""
    d, e, g = config["dataset"], config["expert"], config["generate"]
    steps = (
        d["trajectories_per_shard"]
        * (2 * g["max_moves"] - 1)
        * e["cmd_duration"]
        / SIM.timestep
    )
    return int(10 + attempt * 3 * steps / 15000 / 60)


def replay_ids():
    return [f"{t:05d}" for t in config["replay"]["trajectories"]]


def replay_outputs():
    return expand("results/replay/trajectory_{traj}.json", traj=replay_ids())


def replay_videos(wildcards=None):
    return expand("results/replay/trajectory_{traj}.mp4", traj=replay_ids())


def seed_dir(seed):
    return f"results/train/seed_{seed}"


def finetuning():
    """Whether the policies are fine-tuned (finetune.iterations > 0)."""
    return config["finetune"]["iterations"] > 0


def imitation_checkpoint(seed):
    return f"{seed_dir(seed)}/best.pt"


def evaluated_checkpoint(seed):
    """A seed's evaluated policy: the fine-tuned one when fine-tuning is on, else the imitated."""
    return (
        f"{seed_dir(seed)}/finetuned.pt" if finetuning() else imitation_checkpoint(seed)
    )


def imitation_checkpoints(wildcards=None):
    """Every seed's imitated policy (best.pt), the first seed's first."""
    return [imitation_checkpoint(s) for s in SEEDS]


def seed_checkpoints(wildcards=None):
    """Every seed's evaluated policy, the first seed's first (its policy is the default one)."""
    return [evaluated_checkpoint(s) for s in SEEDS]


def baseline_arg(wildcards, input):
    """`--baseline FILES`: with fine-tuning on, the imitated policies are evaluated beside the
    fine-tuned ones on the same episodes; nothing otherwise."""
    return f"--baseline {' '.join(input.baseline)}" if finetuning() else ""


def baseline_inputs(wildcards=None):
    return imitation_checkpoints() if finetuning() else []


def finetune_jobs():
    f = config["finetune"]
    return -(-f["iterations"] // f["iterations_per_job"])


def finetune_file(seed, job):
    return f"{seed_dir(seed)}/finetune/job_{job}.pt"


def finetune_start(wildcards):
    """Job 0 starts from the imitated policy, job j from job j - 1's state."""
    job = int(wildcards.job)
    return (
        f"{seed_dir(wildcards.seed)}/best.pt"
        if job == 0
        else finetune_file(wildcards.seed, job - 1)
    )


def finetune_last(wildcards):
    return finetune_file(wildcards.seed, finetune_jobs() - 1)


def finetune_settings(wildcards, job=None):
    """A fine-tuning job's settings: the finetune section with `iterations` cut to where this
    job ends (so adding iterations reruns only the jobs that change), the expert, the randomize
    ranges it draws from (if finetune.randomize), the seed and the tracker."""
    f = {k: v for k, v in config["finetune"].items() if k != "threads"}
    if job is not None:
        f["iterations"] = min((job + 1) * f["iterations_per_job"], f["iterations"])
    t = config["train"]
    out = {
        "finetune": f,
        "expert": config["expert"],
        "sim": config["sim"],
        "train": {
            "seed": int(wildcards.seed),
            **{k: t[k] for k in ("logger", "wandb_mode", "wandb_project")},
        },
    }
    if f["randomize"]:
        r = config["randomize"]
        out["randomize"] = {"physics": r["physics"], "pushes": r["pushes"]}
    return json.dumps(out, sort_keys=True)


def finetune_job_settings(wildcards):
    return finetune_settings(wildcards, int(wildcards.job))


def output_dir(wildcards, output):
    """The folder of a rule's first output (for verbs that take a folder)."""
    return os.path.dirname(output[0])


def samples_dir(wildcards, input):
    """The folder of the prepared samples, from train's input."""
    return os.path.dirname(input.samples)


def train_settings(wildcards, drop=()):
    """The train section for one seed's job: `seeds` replaced by that seed; without the
    workflow's `dagger_jobs` (how collection is split does not change any result)."""
    skip = {"seeds", "dagger_jobs", *drop}
    train = {k: v for k, v in config["train"].items() if k not in skip}
    return json.dumps({"train": {**train, "seed": int(wildcards.seed)}}, sort_keys=True)


# train keys a stage of round r does not read (quadpipe.learn.imitation.stages.stage_keys): behaviour
# cloning no DAgger key, no stage `dagger_rounds`, so adding a round reruns only the new round
DAGGER_KEYS = {
    "dagger_rounds",
    "dagger_episodes",
    "dagger_seconds",
    "dagger_stride",
    "dagger_epochs",
    "dagger_expert_share",
    "dagger_arc_deg",
    "dagger_full_lr_epochs",
}


def stage_settings(wildcards):
    """The train settings of one stage or collection job of round `wildcards.round` (with the
    DAgger episodes' physics, learn.imitation.dagger, from round 1 on)."""
    rnd = int(wildcards.round)
    text = train_settings(wildcards, DAGGER_KEYS if rnd == 0 else {"dagger_rounds"})
    return with_randomize(text, "dagger") if rnd > 0 else text


def stage_file(seed, rnd):
    return f"{seed_dir(seed)}/stages/round_{rnd}.pt"


def dagger_parts(seed, rnd):
    """The part files of DAgger round `rnd` of `seed`: train.dagger_jobs of them."""
    n = config["train"]["dagger_jobs"]
    return [
        f"{seed_dir(seed)}/dagger/round_{rnd}/part_{p}_of_{n}.npz" for p in range(n)
    ]


def stage_inputs(wildcards):
    """A training stage's inputs: the dataset and samples, and for round r >= 1 the state of
    round r - 1 and the DAgger parts of rounds 1..r."""
    rnd = int(wildcards.round)
    out = {"dataset": DATASET, "samples": SAMPLES, "dagger": []}
    if rnd > 0:
        out["previous"] = stage_file(wildcards.seed, rnd - 1)
        out["dagger"] = [
            f for r in range(1, rnd + 1) for f in dagger_parts(wildcards.seed, r)
        ]
    return out


def previous_arg(wildcards, input):
    """`--previous FILE` for a DAgger round's stage, nothing for behaviour cloning."""
    return f"--previous {input.previous}" if "previous" in input.keys() else ""


def previous_stage(wildcards):
    """The stage whose policy collects DAgger round `wildcards.round`."""
    return stage_file(wildcards.seed, int(wildcards.round) - 1)


def seed_stages(wildcards):
    """A seed's stage files, rounds 0..train.dagger_rounds in order (the last is its policy's)."""
    return [
        stage_file(wildcards.seed, r)
        for r in range(config["train"]["dagger_rounds"] + 1)
    ]


def select_parts(wildcards):
    """The seed's closed-loop selection parts: select.jobs of them; none when it is off."""
    n = config["select"]["jobs"]
    if not config["select"]["episodes"]:
        return []
    return [f"{seed_dir(wildcards.seed)}/select/part_{p}_of_{n}.json" for p in range(n)]


def select_settings(wildcards):
    """A selection job's settings: the observation keys and the seed (what the candidates see),
    the select section (not how it is split or threaded) and the randomize ranges its episodes
    draw from (not the switches: the selection always randomises a third of its episodes).
    """
    obs = {
        k: v for k, v in config["train"].items() if k in SAMPLE_KEYS - {"sample_stride"}
    }
    sel = {k: v for k, v in config["select"].items() if k not in ("jobs", "threads")}
    r = config["randomize"]
    return json.dumps(
        {
            "train": {**obs, "seed": int(wildcards.seed)},
            "select": sel,
            "randomize": {"physics": r["physics"], "pushes": r["pushes"]},
        },
        sort_keys=True,
    )


def path_entry(wildcards):
    """The path's own entry as JSON: editing one path reruns only its jobs."""
    return json.dumps(PATHS[wildcards.path].as_dict(), sort_keys=True)


def path_inputs(wildcards):
    """The waypoint file of a path given by file, so that editing the file reruns it."""
    for entry in config["eval"]["paths"]:
        if isinstance(entry, dict) and entry.get("name") == wildcards.path:
            if isinstance(entry.get("waypoints"), str):
                return [entry["waypoints"]]
    return []


def suite_settings(wildcards):
    """The suite section for one condition: only that condition's ranges, no thread count."""
    c = wildcards.condition
    kicked = {"pushes", "push_curve"}
    drop = {"threads", "conditions"} | ({"randomized"} - {c})
    if c not in kicked:
        drop.add("pushes")
    if c != "fidelity":
        drop |= {"fidelity_episodes", "fidelity_profile"}
    if c != "push_curve":
        drop |= {"push_sizes", "push_episodes"}
    suite = {k: v for k, v in config["suite"].items() if k not in drop}
    if c == "push_curve":  # its kicks' times only: their sizes are push_sizes
        suite["pushes"] = {"interval_s": suite["pushes"]["interval_s"]}
    return json.dumps(
        {"suite": suite, "expert": config["expert"], "sim": config["sim"]},
        sort_keys=True,
    )


def eval_results(wildcards=None):
    return expand("results/eval/{path}.json", path=PATHS)


def eval_plots():
    return expand("results/eval/{path}.png", path=PATHS)


def eval_videos(wildcards=None):
    return expand("results/eval/{path}.mp4", path=PATHS)


def suite_groups():
    """The suite's controller groups, each run by jobs of its own: every seed's policies (the
    fine-tuned and the imitated one, with fine-tuning on) and the expert."""
    return [f"seed_{s}" for s in SEEDS] + ["expert"]


def group_seed(wildcards):
    return None if wildcards.group == "expert" else int(wildcards.group.split("_")[1])


def group_checkpoints(wildcards):
    seed = group_seed(wildcards)
    return [] if seed is None else [evaluated_checkpoint(seed)]


def group_baseline(wildcards):
    seed = group_seed(wildcards)
    return [imitation_checkpoint(seed)] if finetuning() and seed is not None else []


def group_args(wildcards, input):
    """The suite job's controllers: one seed's policies without the expert, or the expert."""
    seed = group_seed(wildcards)
    if seed is None:
        return ""
    base = f" --baseline {' '.join(input.baseline)}" if input.baseline else ""
    return (
        f"--checkpoint {' '.join(input.checkpoints)} --seeds {seed} --no-expert{base}"
    )


def suite_parts(wildcards):
    """A condition's part files: suite.jobs of them for each controller group, at most one per
    episode (the figures do not depend on the split), seeds in config order, the expert last.
    """
    s = config["suite"]
    episodes = s["episodes"]
    if wildcards.condition == "push_curve":
        episodes = s["push_episodes"] * len(s["push_sizes"])
    if wildcards.condition == "fidelity":
        episodes = min(s["fidelity_episodes"], episodes)
    n = min(s["jobs"], episodes)
    return [
        f"results/eval/suite/{wildcards.condition}/{group}/part_{k}_of_{n}.json"
        for group in suite_groups()
        for k in range(n)
    ]


def suite_results(wildcards=None):
    return expand("results/eval/suite/{condition}.json", condition=CONDITIONS)


def finetune_curves():
    if not finetuning():
        return []
    return [
        f"{seed_dir(s)}/{f}" for s in SEEDS for f in ("finetune.csv", "finetune.png")
    ]


def training_curves():
    return [f"{seed_dir(s)}/{f}" for s in SEEDS for f in ("history.csv", "loss.png")]


def landing_page():
    """The report's front page: the run's description and, once evaluated, the headline table
    (written by eval_report), so the figures are readable without a click."""
    if os.path.exists(LANDING):
        return os.path.abspath(LANDING)
    return "workflow/report/workflow.rst"


def all_results():
    """Every product of the workflow except the report itself (the report rule's inputs)."""
    out = [
        DATASET,
        SUMMARY,
        "results/stats/summary.html",
        "results/stats/trajectories.html",
        "results/stats/acceptance.html",
        expand("results/stats/plots/{plot}.png", plot=PLOTS),
        replay_outputs(),
        "results/report/replay_videos.html",
        CHECKPOINT,
        training_curves(),
        finetune_curves(),
        eval_results(),
        eval_plots(),
        suite_results(),
        "results/eval/index.html",
        "results/eval/suite/index.html",
        LANDING,
    ]
    if config["eval"]["video"]:
        out.append("results/report/eval_videos.html")
    return out


def export_every():
    """export.every (ms between frames) in whole steps of the dataset's physics."""
    return SIM.steps(config["export"]["every"])
