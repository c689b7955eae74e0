# Dataset statistics: tables (CSV for pandas, HTML for the report) and plots.


rule stats:
    input:
        DATASET,
    output:
        summary=report(
            "results/stats/summary.html",
            caption="../report/summary.rst",
            category="Dataset summary",
            labels={"table": "summary"},
        ),
        summary_csv="results/stats/summary.csv",
        trajectories=report(
            "results/stats/trajectories.html",
            caption="../report/trajectories.rst",
            category="Trajectory statistics",
            labels={"table": "trajectories"},
        ),
        trajectories_csv="results/stats/trajectories.csv",
        paths=report(
            "results/stats/plots/paths.png",
            caption="../report/plots.rst",
            category="Plots",
            labels={"plot": "top-view paths"},
        ),
        commands=report(
            "results/stats/plots/commands.png",
            caption="../report/plots.rst",
            category="Plots",
            labels={"plot": "command mix"},
        ),
        durations=report(
            "results/stats/plots/durations.png",
            caption="../report/plots.rst",
            category="Plots",
            labels={"plot": "durations"},
        ),
        torques=report(
            "results/stats/plots/torques.png",
            caption="../report/plots.rst",
            category="Plots",
            labels={"plot": "torque distributions"},
        ),
        acceptance=report(
            "results/stats/plots/acceptance.png",
            caption="../report/acceptance.rst",
            category="Plots",
            labels={"plot": "stability filter"},
        ),
        acceptance_table=report(
            "results/stats/acceptance.html",
            caption="../report/acceptance.rst",
            category="Dataset summary",
            labels={"table": "acceptance"},
        ),
        acceptance_csv="results/stats/acceptance.csv",
    log:
        "results/logs/stats.log",
    benchmark:
        "results/benchmarks/stats.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m quadpipe stats {input} --out-dir results/stats > {log} 2>&1"
