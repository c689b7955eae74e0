# Config validation, helpers shared by the rules, wildcard constraints.
# Parse-time imports stay light (no torch, no mujoco): every cluster job re-parses this file.
import json

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")


wildcard_constraints:
    shard=r"\d+",
    traj=r"\d{5}",
    path="|".join(config["eval"]["paths"]),


REPORT = "report.html"
DATASET = "results/dataset/dataset.h5"
SUMMARY = "results/dataset/summary.h5"
PLOTS = ["paths", "commands", "durations", "torques"]
CHECKPOINT = "results/train/best.pt"
CONDA_ENV = "../envs/quadpipe.yaml"


def settings(*sections, drop=()):
    """JSON of config `sections` for a rule's params: the job's own settings, nothing more.

    Snakemake reruns a job when its params change, so each rule sees only the sections that
    change its output. The job writes this JSON to its settings log and passes it to --config.
    """
    return json.dumps(
        {s: {k: v for k, v in config[s].items() if k not in drop} for s in sections},
        sort_keys=True,
    )


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
        / e["dt"]
    )
    return int(10 + attempt * 3 * steps / 15000 / 60)


def replay_ids():
    return [f"{t:05d}" for t in config["replay"]["trajectories"]]


def replay_outputs():
    return expand("results/replay/trajectory_{traj}.json", traj=replay_ids())


def replay_videos(wildcards=None):
    return expand("results/replay/trajectory_{traj}.mp4", traj=replay_ids())


def eval_results(wildcards=None):
    return expand("results/eval/{path}.json", path=config["eval"]["paths"])


def eval_plots():
    return expand("results/eval/{path}.png", path=config["eval"]["paths"])


def eval_videos(wildcards=None):
    return expand("results/eval/{path}.mp4", path=config["eval"]["paths"])


def eval_output_files():
    """evaluate's outputs: the video only when eval.video is on."""
    out = {
        "result": "results/eval/{path}.json",
        "plot": report(
            "results/eval/{path}.png",
            caption="../report/eval_plot.rst",
            category="Evaluation",
            subcategory="Plots",
            labels={"path": "{path}"},
        ),
    }
    if config["eval"]["video"]:
        out["video"] = "results/eval/{path}.mp4"
    return out


def video_option(wildcards, output):
    return f"--video {output.video}" if config["eval"]["video"] else ""


def all_results():
    """Every product of the workflow except the report itself (the report rule's inputs)."""
    out = [
        DATASET,
        SUMMARY,
        "results/stats/summary.html",
        "results/stats/trajectories.html",
        expand("results/stats/plots/{plot}.png", plot=PLOTS),
        replay_outputs(),
        "results/report/replay_videos.html",
        "results/train/history.csv",
        "results/train/loss.png",
        eval_results(),
        eval_plots(),
        "results/eval/index.html",
    ]
    if config["eval"]["video"]:
        out.append("results/report/eval_videos.html")
    return out
