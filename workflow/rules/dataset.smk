# Expert data: one generate_shard job per shard, then one merged dataset with a fixed split.


rule generate_shard:
    output:
        "results/shards/shard_{shard}.h5",
    log:
        out="results/logs/generate_shard/{shard}.log",
        settings="results/logs/generate_shard/{shard}.json",
    benchmark:
        "results/benchmarks/generate_shard/{shard}.tsv"
    priority: PRIORITY["imitation"]
    conda:
        CONDA_ENV
    threads: generate_threads()
    resources:
        mem_mb=1000,
        runtime=shard_runtime,
    params:
        num=config["dataset"]["trajectories_per_shard"],
        seed=config["dataset"]["seed"],
        # threads do not change the data (quadpipe.data.generate), so they are not a parameter
        settings=with_randomize(
            settings("expert", "stability", "generate", drop=("threads",)), "data"
        ),
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "python -m quadpipe generate --num {params.num} --seed {params.seed} --shard {wildcards.shard} "
        "--threads {threads} --config {log.settings} --out {output} > {log.out} 2>&1"


rule merge:
    input:
        shard_files,
    output:
        dataset=DATASET,
        summary=SUMMARY,
    log:
        "results/logs/merge.log",
    benchmark:
        "results/benchmarks/merge.tsv"
    priority: PRIORITY["imitation"]
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        valid_fraction=config["dataset"]["valid_fraction"],
        seed=config["dataset"]["seed"],
        layout=config["dataset"]["merge_layout"],
    shell:
        "python -m quadpipe merge {input} --out {output.dataset} --summary {output.summary} "
        "--valid-fraction {params.valid_fraction} --seed {params.seed} --layout {params.layout} "
        "> {log} 2>&1"
