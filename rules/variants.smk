# Ablations of D3HR's settings (docs/method.md §2, §4, §5; `ablation:` in the config): each variant is D3HR's own rules
# (invert, fit_gaussian, select, decode: rules/invert.smk ...) with the variant's config keys changed (config_value),
# from the first stage whose keys it changes; earlier stages' files are the main run's. Its images go to
# `images/variant_{name}/`, the `evaluate` rule trains students on them like on any method, and `ablation_table` sets
# them beside D3HR and its baselines.


rule ablation_table:
    input:
        ablation_eval_files,
    output:
        csv="results/{dataset}/tables/ablation.csv",
        md=table("ablation.md"),
        png=figure("ablation"),
        pdf="results/{dataset}/figures/ablation.pdf",
    log:
        "logs/{dataset}/ablation_table.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("ablation-table"),
        code=code_version("ablation-table"),
    shell:
        stage_cmd("ablation-table")
