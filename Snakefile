# d3hr-workflow: D3HR dataset distillation (Zhao et al., ICML 2025) per class, as a Snakemake workflow.
# Run: `make run` (embedded default), or with the venv active: snakemake --cores 8 --resources gpu=4

from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless config files are given (`--configfile config/imagenet.yaml` then replaces it rather
# than adding its datasets to the default's).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/inputs.smk"


# Aggregations that take seconds: run them where Snakemake runs, never as cluster jobs.
localrules:
    all,
    selection_summary,
    collect_eval,
    tables,
    fig_normality,
    fig_accuracy,
    fig_timestep,
    fig_group_sampling,
    fig_samples,
    fig_storage,
    cost_table,
    ablation_table,
    representativeness,
    fig_representativeness,
    label_robust_table,
    aug_robust_table,
    diagnostics_table,


include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/encode.smk"
include: "rules/invert.smk"
include: "rules/gaussian.smk"
include: "rules/select.smk"
include: "rules/decode.smk"
include: "rules/baselines.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"
include: "rules/variants.smk"
include: "rules/metrics.smk"
include: "rules/diagnostics.smk"


# A cluster job's own job server, once its rules are known (rules/common.smk).
start_cluster_job_server()


rule all:
    default_target: True
    input:
        all_targets(),
