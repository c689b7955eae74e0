# The policy: training samples prepared once, then one training job per seed (behaviour cloning
# then DAgger), and the first seed's policy as the default results/train/best.pt.


rule prepare:
    input:
        DATASET,
    output:
        SAMPLES,
    log:
        out="results/logs/prepare.log",
        settings="results/logs/prepare.json",
    benchmark:
        "results/benchmarks/prepare.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        # only what shapes the samples: the observation and the stride
        settings=settings("train", drop=set(config["train"]) - SAMPLE_KEYS),
        dir=output_dir,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "python -m quadpipe prepare --dataset {input} --out {params.dir} --config {log.settings} "
        "> {log.out} 2>&1"


rule train:
    input:
        dataset=DATASET,
        samples=SAMPLES,
    output:
        best="results/train/seed_{seed}/best.pt",
        last="results/train/seed_{seed}/last.pt",
        history=report(
            "results/train/seed_{seed}/history.csv",
            caption="../report/history.rst",
            category="Training curves",
            labels={"seed": "{seed}", "file": "history.csv"},
        ),
        loss=report(
            "results/train/seed_{seed}/loss.png",
            caption="../report/loss.rst",
            category="Training curves",
            labels={"seed": "{seed}", "file": "loss.png"},
        ),
    log:
        out="results/logs/train/seed_{seed}.log",
        settings="results/logs/train/seed_{seed}.json",
    benchmark:
        "results/benchmarks/train/seed_{seed}.tsv"
    conda:
        CONDA_ENV
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        settings=train_settings,
        samples=samples_dir,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS={threads} python -m quadpipe train --dataset {input.dataset} "
        "--samples {params.samples} --out-dir results/train/seed_{wildcards.seed} "
        "--config {log.settings} > {log.out} 2>&1"


rule default_policy:
    input:
        f"results/train/seed_{SEEDS[0]}/best.pt",
    output:
        CHECKPOINT,
    log:
        "results/logs/default_policy.log",
    conda:
        CONDA_ENV
    shell:
        "cp {input} {output} 2> {log}"
