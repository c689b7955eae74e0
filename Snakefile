# quadpipe: expert shards -> merged dataset -> statistics, replay -> trained policy -> evaluation
# -> report.html. `snakemake --cores all` runs all of it; see README.md.


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"


report: landing_page()


include: "workflow/rules/dataset.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/replay.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"


rule all:
    default_target: True
    input:
        all_results(),
        REPORT,
