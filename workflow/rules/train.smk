# Behaviour cloning of the path-following policy.


rule train:
    input:
        DATASET,
    output:
        best=CHECKPOINT,
        last="results/train/last.pt",
        history=report(
            "results/train/history.csv",
            caption="../report/history.rst",
            category="Training curves",
            labels={"file": "history.csv"},
        ),
        loss=report(
            "results/train/loss.png",
            caption="../report/loss.rst",
            category="Training curves",
            labels={"file": "loss.png"},
        ),
    log:
        out="results/logs/train.log",
        settings="results/logs/train.json",
    benchmark:
        "results/benchmarks/train.tsv"
    conda:
        CONDA_ENV
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        settings=settings("train"),
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS={threads} python -m quadpipe train --dataset {input} --out-dir results/train "
        "--config {log.settings} > {log.out} 2>&1"
