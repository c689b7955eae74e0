# The policy: training samples prepared once; per seed a chain of training stages (behaviour
# cloning = round 0, then each DAgger round: its collection split over train.dagger_jobs jobs, then
# its epochs on all samples so far), the closed-loop selection of the checkpoint (select.jobs jobs
# rolling out the candidate epochs), the policy files, and the first seed's policy as the default
# results/train/best.pt. A stage killed mid-run resumes from its last epoch.


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
    priority: PRIORITY["imitation"]
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


rule train_stage:
    input:
        unpack(stage_inputs),
    output:
        "results/train/seed_{seed}/stages/round_{round}.pt",
    log:
        out="results/logs/train/seed_{seed}/round_{round}.log",
        settings="results/logs/train/seed_{seed}/round_{round}.json",
    benchmark:
        "results/benchmarks/train/seed_{seed}/round_{round}.tsv"
    priority: PRIORITY["imitation"]
    conda:
        CONDA_ENV
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        settings=stage_settings,
        samples=samples_dir,
        previous=previous_arg,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS={threads} python -m quadpipe train-stage --dataset {input.dataset} "
        "--samples {params.samples} --round {wildcards.round} {params.previous} "
        "--dagger {input.dagger} --out {output} --config {log.settings} > {log.out} 2>&1"


rule dagger_collect:
    input:
        dataset=DATASET,
        policy=previous_stage,
    output:
        "results/train/seed_{seed}/dagger/round_{round}/part_{part}_of_{parts}.npz",
    log:
        out="results/logs/train/seed_{seed}/dagger_{round}_{part}_of_{parts}.log",
        settings="results/logs/train/seed_{seed}/dagger_{round}_{part}_of_{parts}.json",
    benchmark:
        "results/benchmarks/train/seed_{seed}/dagger_{round}_{part}_of_{parts}.tsv"
    priority: PRIORITY["imitation"]
    conda:
        CONDA_ENV
    threads: config["train"]["threads"]
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        settings=stage_settings,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS={threads} python -m quadpipe collect --dataset {input.dataset} "
        "--policy {input.policy} --round {wildcards.round} --part {wildcards.part} "
        "--parts {wildcards.parts} --out {output} --config {log.settings} > {log.out} 2>&1"


rule select_checkpoint:
    input:
        dataset=DATASET,
        stages=seed_stages,
    output:
        "results/train/seed_{seed}/select/part_{part}_of_{parts}.json",
    log:
        out="results/logs/train/seed_{seed}/select_{part}_of_{parts}.log",
        settings="results/logs/train/seed_{seed}/select_{part}_of_{parts}.json",
    benchmark:
        "results/benchmarks/train/seed_{seed}/select_{part}_of_{parts}.tsv"
    priority: PRIORITY["imitation"]
    conda:
        CONDA_ENV
    threads: config["select"]["threads"]
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        settings=select_settings,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS=1 python -m quadpipe select --stage {input.stages} "
        "--dataset {input.dataset} --part {wildcards.part} --parts {wildcards.parts} "
        "--out {output} --config {log.settings} > {log.out} 2>&1"


rule policy:
    input:
        stages=seed_stages,
        select=select_parts,
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
    priority: PRIORITY["imitation"]
    conda:
        CONDA_ENV
    params:
        settings=train_settings,
        dir=output_dir,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "python -m quadpipe finish-training --stage {input.stages} "
        "--selection {input.select} --out-dir {params.dir} "
        "--config {log.settings} > {log.out} 2>&1"


rule default_policy:
    input:
        seed_checkpoints()[0],
    output:
        CHECKPOINT,
    log:
        "results/logs/default_policy.log",
    conda:
        CONDA_ENV
    shell:
        "cp {input} {output} 2> {log}"
