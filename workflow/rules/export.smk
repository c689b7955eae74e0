# Hand-offs to other tools, built only when asked for (not part of `all`): the default policy as
# ONNX and TorchScript next to best.pt, and the dataset in robomimic's or LeRobot's layout.
#   snakemake --cores 1 export_policy     snakemake --cores 1 export_dataset


rule export_policy_files:
    input:
        CHECKPOINT,
    output:
        onnx=POLICY_ONNX,
        torchscript=POLICY_TORCHSCRIPT,
    log:
        out="results/logs/export_policy.log",
        settings="results/logs/export_policy.json",
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=settings("expert"),
    shell:
        "echo {params.settings:q} > {log.settings} && "
        "python -m quadpipe export-policy {input} --onnx {output.onnx} "
        "--torchscript {output.torchscript} --config {log.settings} > {log.out} 2>&1"


rule export_policy:
    input:
        POLICY_ONNX,
        POLICY_TORCHSCRIPT,


rule export_dataset_files:
    input:
        DATASET,
    output:
        robomimic="results/export/robomimic.hdf5",
        lerobot=directory("results/export/lerobot"),
    log:
        "results/logs/export_dataset.log",
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        every=export_every(),
    shell:
        "(python -m quadpipe export-dataset {input} --format robomimic --every {params.every} "
        "--out {output.robomimic} && "
        "python -m quadpipe export-dataset {input} --format lerobot --every {params.every} "
        "--out {output.lerobot}) > {log} 2>&1"


rule export_dataset:
    input:
        rules.export_dataset_files.output,
