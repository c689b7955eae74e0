# Closed-loop evaluation of the policy, one job per path type, and the report's eval pages.


rule evaluate:
    input:
        CHECKPOINT,
    output:
        **eval_output_files(),
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
        # the path list is not a parameter: adding a path type must not rerun the others
        settings=settings("expert", "eval", drop=("paths",)),
        video=video_option,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS={threads} python -m quadpipe evaluate --checkpoint {input} --path {wildcards.path} "
        "--out {output.result} --plot {output.plot} {params.video} --config {log.settings} "
        "> {log.out} 2>&1"


rule eval_table:
    input:
        eval_results,
    output:
        html=report(
            "results/eval/index.html",
            caption="../report/eval_table.rst",
            category="Evaluation",
            subcategory="Table",
            labels={"table": "policy vs expert vs standing"},
        ),
        csv="results/eval/table.csv",
    log:
        "results/logs/eval_table.log",
    conda:
        CONDA_ENV
    shell:
        "python -m quadpipe eval-table {input} --html {output.html} --csv {output.csv} > {log} 2>&1"


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
        "--title 'Policy following each path type' > {log} 2>&1"
