# Fine-tuning past the expert (finetune.iterations > 0): per seed a chain of PPO jobs of
# finetune.iterations_per_job iterations each, from the imitated policy (best.pt); each resumes
# after a kill from its last iteration. finetuned.pt is then the seed's evaluated policy, with
# the imitated one beside it on the same episodes.


rule finetune:
    input:
        start=finetune_start,
    output:
        "results/train/seed_{seed}/finetune/job_{job}.pt",
    log:
        out="results/logs/finetune/seed_{seed}/job_{job}.log",
        settings="results/logs/finetune/seed_{seed}/job_{job}.json",
    benchmark:
        "results/benchmarks/finetune/seed_{seed}/job_{job}.tsv"
    priority: PRIORITY["finetune"]
    conda:
        CONDA_ENV
    threads: config["finetune"]["threads"]
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        settings=finetune_job_settings,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "OMP_NUM_THREADS=1 python -m quadpipe finetune --start {input.start} "
        "--job {wildcards.job} --threads {threads} --out {output} --config {log.settings} "
        "> {log.out} 2>&1"


rule finetuned_policy:
    input:
        finetune_last,
    output:
        policy="results/train/seed_{seed}/finetuned.pt",
        history=report(
            "results/train/seed_{seed}/finetune.csv",
            caption="../report/finetune.rst",
            category="Training curves",
            labels={"seed": "{seed}", "file": "finetune.csv"},
        ),
        plot=report(
            "results/train/seed_{seed}/finetune.png",
            caption="../report/finetune.rst",
            category="Training curves",
            labels={"seed": "{seed}", "file": "finetune.png"},
        ),
    log:
        out="results/logs/finetune/seed_{seed}.log",
        settings="results/logs/finetune/seed_{seed}.json",
    priority: PRIORITY["finetune"]
    conda:
        CONDA_ENV
    params:
        settings=finetune_settings,
        dir=output_dir,
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "python -m quadpipe finish-finetune --state {input} --out-dir {params.dir} "
        "--config {log.settings} > {log.out} 2>&1"
