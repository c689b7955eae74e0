# The report as the last job of the DAG, so `snakemake --cores all` ends with report.html.
# It runs `snakemake --report` on the target `results` (every product but the report) with the
# run's own resolved config, so the report shows exactly this run, its rule graph and runtimes.


localrules:
    results,
    report,
    default_policy,


rule results:
    input:
        all_results(),


rule report:
    input:
        all_results(),
    output:
        REPORT,
    log:
        out="results/logs/report.log",
        config="results/logs/report.json",
    conda:
        CONDA_ENV
    params:
        # the whole resolved config: the nested snakemake must see this run's settings
        config=json.dumps(config, sort_keys=True),
        snakefile=workflow.main_snakefile,
    shell:
        "echo {params.config:q} > {log.config} && "
        "python -m snakemake --snakefile {params.snakefile:q} --configfile {log.config} "
        "--nolock --report {output} results > {log.out} 2>&1"
