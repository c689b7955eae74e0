# Replay: re-simulate stored trajectories from their commands, check them, render them.


rule replay:
    input:
        DATASET,
    output:
        check="results/replay/trajectory_{traj}.json",
        video="results/replay/trajectory_{traj}.mp4",
    log:
        "results/logs/replay/{traj}.log",
    benchmark:
        "results/benchmarks/replay/{traj}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=15,
    params:
        video_seconds=config["replay"]["video_seconds"],
    shell:
        "python -m quadpipe replay {input} --trajectory {wildcards.traj} --out {output.check} "
        "--video {output.video} --video-seconds {params.video_seconds} > {log} 2>&1"


rule replay_videos:
    input:
        replay_videos,
    output:
        report(
            "results/report/replay_videos.html",
            caption="../report/replay.rst",
            category="Videos",
            labels={"video": "dataset replay"},
        ),
    log:
        "results/logs/replay_videos.log",
    conda:
        CONDA_ENV
    shell:
        "python -m quadpipe video-page {input} --out {output} "
        "--title 'Replayed dataset trajectories' > {log} 2>&1"
