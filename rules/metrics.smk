# Representativeness and diversity of every distilled set per class (docs/method.md §7), and the label- and
# augmentation-robust scores.


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
        args=stage_args("features"),
        code=code_version("features", images=images_fingerprint("train")),
    shell:
        stage_cmd("features")


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
        args=stage_args("set-scores"),
        code=code_version("set-scores"),
    shell:
        stage_cmd("set-scores")


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
        args=stage_args("representativeness"),
        code=code_version("representativeness"),
    shell:
        stage_cmd("representativeness")


rule fig_representativeness:
    input:
        csv="results/{dataset}/tables/representativeness.csv",
    output:
        png=figure("representativeness"),
        pdf="results/{dataset}/figures/representativeness.pdf",
    log:
        "logs/{dataset}/figures/representativeness.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("fig-representativeness"),
        code=code_version("fig-representativeness"),
    shell:
        stage_cmd("fig-representativeness")


rule label_robust_table:
    input:
        eval_tables,
    output:
        csv="results/{dataset}/tables/label_robust.csv",
        md=table("label_robust.md"),
    log:
        "logs/{dataset}/label_robust.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("label-robust"),
        code=code_version("label-robust"),
    shell:
        stage_cmd("label-robust")


rule aug_robust_table:
    input:
        eval_tables,
    output:
        csv="results/{dataset}/tables/aug_robust.csv",
        md=table("aug_robust.md"),
    log:
        "logs/{dataset}/aug_robust.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("aug-robust"),
        code=code_version("aug-robust"),
    shell:
        stage_cmd("aug-robust")
