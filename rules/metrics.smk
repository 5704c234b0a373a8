# Representativeness and diversity of every distilled set per class (docs/method.md §7), and the label-robust scores.


rule real_features:
    input:
        images=class_images,
        teacher=teacher_path,
        pipeline=pipeline_dir,
    output:
        "results/{dataset}/features/{cls}.h5",
    log:
        "logs/{dataset}/features/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/features/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        class_dir=lambda wc: f"{dataset_root_of(wc)}/train/{wc.cls}",
        resolution=lambda wc: eval_resolution(wc),
        channels=lambda wc: ds(wc)["channels"],
        max_images=lambda wc: metrics_cfg()["max_real"],
        seed=config["seed"],
        device=config["device"],
        code=code_version("metrics"),
    shell:
        "python -m d3hr features --threads {threads} --device {params.device} --class-dir {params.class_dir:q}"
        " --teacher {input.teacher:q} --pipeline {input.pipeline:q} --resolution {params.resolution}"
        " --channels {params.channels} --max-images {params.max_images} --seed {params.seed} --out {output:q}"
        " > {log:q} 2>&1"


rule set_scores:
    input:
        features="results/{dataset}/features/{cls}.h5",
        sets=lambda wc: [d for _, _, d in metric_sets(wc)],
        teacher=teacher_path,
        pipeline=pipeline_dir,
    output:
        "results/{dataset}/metrics/{cls}.csv",
    log:
        "logs/{dataset}/metrics/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/metrics/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        sets=lambda wc: [f"{m}:{i}:{d}" for m, i, d in metric_sets(wc)],
        resolution=lambda wc: eval_resolution(wc),
        channels=lambda wc: ds(wc)["channels"],
        k=lambda wc: metrics_cfg()["k"],
        device=config["device"],
        code=code_version("metrics"),
    shell:
        "python -m d3hr set-scores --threads {threads} --device {params.device} --features {input.features:q}"
        " --sets {params.sets:q} --cls {wildcards.cls:q} --teacher {input.teacher:q} --pipeline {input.pipeline:q}"
        " --resolution {params.resolution} --channels {params.channels} --k {params.k} --out {output:q} > {log:q} 2>&1"


rule representativeness:
    input:
        scores=lambda wc: expand("results/{{dataset}}/metrics/{cls}.csv", cls=CLASSES[wc.dataset]),
        accuracy="results/{dataset}/tables/accuracy.csv",
    output:
        csv="results/{dataset}/tables/representativeness.csv",
        md=report(
            "results/{dataset}/tables/representativeness.md",
            caption="../report/representativeness.rst",
            category="Tables",
        ),
        corr_csv="results/{dataset}/tables/metric_correlation.csv",
        corr_md=report(
            "results/{dataset}/tables/metric_correlation.md",
            caption="../report/representativeness.rst",
            category="Tables",
        ),
        png=report(
            "results/{dataset}/figures/representativeness.png",
            caption="../report/representativeness.rst",
            category="Figures",
        ),
        pdf="results/{dataset}/figures/representativeness.pdf",
    log:
        "logs/{dataset}/representativeness.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        code=code_version("metric_tables"),
    shell:
        "python -m d3hr representativeness {input.scores:q} --accuracy {input.accuracy:q} --csv {output.csv:q}"
        " --md {output.md:q} --corr-csv {output.corr_csv:q} --corr-md {output.corr_md:q} --png {output.png:q}"
        " --pdf {output.pdf:q} > {log:q} 2>&1"


rule label_robust_table:
    input:
        lambda wc: [f"results/{wc.dataset}/eval/ipc{i}.csv" for i in eval_ipcs()],
    output:
        csv="results/{dataset}/tables/label_robust.csv",
        md=report("results/{dataset}/tables/label_robust.md", caption="../report/label_robust.rst", category="Tables"),
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
