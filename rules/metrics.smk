# Representativeness and diversity of every distilled set per class (docs/method.md §7), and the label-robust scores.

FEATURES_FLAGS = flags(
    class_dir=class_dir,
    resolution=eval_resolution,
    channels=ds_key("channels"),
    max_images=lambda wc: metrics_cfg()["max_real"],
    seed=config["seed"],
    device=config["device"],
    model_precision=config["model_precision"],
)
SET_SCORES_FLAGS = flags(
    sets=lambda wc: [f"{m}:{i}:{d}" for m, i, d in metric_sets(wc)],
    cls=wildcard("cls"),
    resolution=eval_resolution,
    channels=ds_key("channels"),
    k=lambda wc: metrics_cfg()["k"],
    device=config["device"],
    model_precision=config["model_precision"],
)


rule real_features:
    input:
        unpack(with_models("teacher", "pipeline", images=class_images)),
    output:
        "results/{dataset}/features/{cls}.h5",
    log:
        "logs/{dataset}/features/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/features/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=FEATURES_FLAGS,
        code=code_version("metrics"),
    shell:
        "python -m d3hr features --threads {threads} {params.args} --teacher {input.teacher:q}"
        " --pipeline {input.pipeline:q} --out {output:q} > {log:q} 2>&1"


rule set_scores:
    input:
        unpack(with_models("teacher", "pipeline", features=class_h5("features"), sets=metric_dirs)),
    output:
        "results/{dataset}/metrics/{cls}.csv",
    log:
        "logs/{dataset}/metrics/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/metrics/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=SET_SCORES_FLAGS,
        code=code_version("metrics"),
    shell:
        "python -m d3hr set-scores --threads {threads} {params.args} --features {input.features:q}"
        " --teacher {input.teacher:q} --pipeline {input.pipeline:q} --out {output:q} > {log:q} 2>&1"


rule representativeness:
    input:
        scores=every_class("results/{dataset}/metrics/{cls}.csv"),
        accuracy="results/{dataset}/tables/accuracy.csv",
    output:
        csv="results/{dataset}/tables/representativeness.csv",
        md=table("representativeness.md"),
        corr_csv="results/{dataset}/tables/metric_correlation.csv",
        corr_md=table("metric_correlation.md", caption="representativeness"),
    log:
        "logs/{dataset}/representativeness.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        code=code_version("metric_tables"),
    shell:
        "python -m d3hr representativeness {input.scores:q} --accuracy {input.accuracy:q} --csv {output.csv:q}"
        " --md {output.md:q} --corr-csv {output.corr_csv:q} --corr-md {output.corr_md:q} > {log:q} 2>&1"


rule fig_representativeness:
    input:
        "results/{dataset}/tables/representativeness.csv",
    output:
        png=figure("representativeness"),
        pdf="results/{dataset}/figures/representativeness.pdf",
    log:
        "logs/{dataset}/figures/representativeness.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        code=code_version("metric_tables"),
    shell:
        "python -m d3hr fig-representativeness --csv {input:q} --png {output.png:q} --pdf {output.pdf:q} > {log:q} 2>&1"


rule label_robust_table:
    input:
        lambda wc: [f"results/{wc.dataset}/eval/ipc{i}.csv" for i in eval_ipcs()],
    output:
        csv="results/{dataset}/tables/label_robust.csv",
        md=table("label_robust.md"),
    log:
        "logs/{dataset}/label_robust.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        weight=lambda wc: EVAL["lrs_weight"],
        code=code_version("metric_tables"),
    shell:
        "python -m d3hr label-robust {input:q} --weight {params.weight} --csv {output.csv:q} --md {output.md:q}"
        " > {log:q} 2>&1"
