# Closed-loop evaluation: every seed's policy vs the expert on each named path (one job per
# path) and on the suite's random held-out episodes (per condition, suite.jobs jobs for each
# seed's policies and for the expert, combined into one JSON per condition); the report's pages.


rule evaluate:
    input:
        checkpoints=seed_checkpoints,
        baseline=baseline_inputs,
        waypoints=path_inputs,
    output:
        result="results/eval/{path}.json",
        plot=report(
            "results/eval/{path}.png",
            caption="../report/eval_plot.rst",
            category="Evaluation",
            subcategory="Plots",
            labels={"path": "{path}"},
        ),
    log:
        out="results/logs/evaluate/{path}.log",
        settings="results/logs/evaluate/{path}.json",
    benchmark:
        "results/benchmarks/evaluate/{path}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        # only this path's entry: adding or editing another path must not rerun this one
        settings=settings(
            "expert", "eval", drop=("paths", "video", "video_seconds", "fps")
        ),
        path=path_entry,
        seeds=" ".join(str(s) for s in SEEDS),
        baseline=baseline_arg,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS={threads} python -m quadpipe evaluate --checkpoint {input.checkpoints} "
        "--seeds {params.seeds} {params.baseline} --path {params.path:q} --out {output.result} "
        "--plot {output.plot} --config {log.settings} > {log.out} 2>&1"


rule eval_video:
    input:
        checkpoint=CHECKPOINT,
        waypoints=path_inputs,
    output:
        "results/eval/{path}.mp4",
    log:
        out="results/logs/eval_video/{path}.log",
        settings="results/logs/eval_video/{path}.json",
    benchmark:
        "results/benchmarks/eval_video/{path}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        settings=settings("expert", "eval", drop=("paths",)),
        path=path_entry,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS=1 python -m quadpipe render-path --checkpoint {input.checkpoint} "
        "--path {params.path:q} --out {output} --config {log.settings} > {log.out} 2>&1"


rule suite_part:
    input:
        checkpoints=group_checkpoints,
        baseline=group_baseline,
    output:
        "results/eval/suite/{condition}/{group}/part_{part}_of_{parts}.json",
    log:
        out="results/logs/suite/{condition}/{group}/part_{part}_of_{parts}.log",
        settings="results/logs/suite/{condition}/{group}/part_{part}_of_{parts}.json",
    benchmark:
        "results/benchmarks/suite/{condition}/{group}/part_{part}_of_{parts}.tsv"
    priority: PRIORITY["suite"]
    conda:
        CONDA_ENV
    threads: config["suite"]["threads"]
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        settings=suite_settings,
        controllers=group_args,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS=1 python -m quadpipe suite {params.controllers} "
        "--condition {wildcards.condition} --part {wildcards.part} --parts {wildcards.parts} "
        "--threads {threads} --out {output} --config {log.settings} > {log.out} 2>&1"


rule suite:
    input:
        suite_parts,
    output:
        "results/eval/suite/{condition}.json",
    log:
        "results/logs/suite/{condition}.log",
    conda:
        CONDA_ENV
    shell:
        "python -m quadpipe suite-combine --parts {input} --out {output} > {log} 2>&1"


rule eval_report:
    input:
        paths=eval_results,
        suite=suite_results,
        intro=INTRO,
    output:
        html=report(
            "results/eval/index.html",
            caption="../report/eval_table.rst",
            category="Evaluation",
            subcategory="Named paths",
            labels={"table": "policy vs expert vs standing, per path"},
        ),
        csv="results/eval/table.csv",
        suite_html=report(
            "results/eval/suite/index.html",
            caption="../report/suite.rst",
            category="Evaluation",
            subcategory="Suite",
            labels={"table": "success and error ratio per condition"},
        ),
        suite_csv="results/eval/suite/table.csv",
        headline=HEADLINE,
        headline_md="results/eval/headline.md",
        landing=LANDING,
    log:
        "results/logs/eval_report.log",
    conda:
        CONDA_ENV
    shell:
        "python -m quadpipe eval-report --paths {input.paths} --suite {input.suite} "
        "--table-html {output.html} --table-csv {output.csv} --suite-html {output.suite_html} "
        "--suite-csv {output.suite_csv} --headline {output.headline} "
        "--headline-md {output.headline_md} > {log} 2>&1 && "
        "cat {input.intro:q} {output.headline} > {output.landing}"


rule eval_videos:
    input:
        eval_videos,
    output:
        report(
            "results/report/eval_videos.html",
            caption="../report/eval_videos.rst",
            category="Videos",
            labels={"video": "policy evaluation"},
        ),
    log:
        "results/logs/eval_videos.log",
    conda:
        CONDA_ENV
    shell:
        "python -m quadpipe video-page {input} --out {output} "
        "--title 'Policy (first seed) following each path' > {log} 2>&1"
