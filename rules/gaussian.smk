# docs/method.md §3: the Gaussian fit, one job per class (and per ablation variant that changes the inversion).


rule fit_gaussian:
    input:
        inverted=class_h5("inverted"),
        latents=class_h5("latents"),
    output:
        "results/{dataset}/gaussian/{cls}.h5",
    log:
        "logs/{dataset}/fit_gaussian/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/fit_gaussian/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    resources:
        mem_mb=2000,
    params:
        args=stage_args("fit-gaussian"),
        code=code_version("fit-gaussian"),
    shell:
        stage_cmd("fit-gaussian")


use rule fit_gaussian as fit_gaussian_variant with:
    input:
        inverted="results/{dataset}/variants/{variant}/inverted/{cls}.h5",
        latents=class_h5("latents"),
    output:
        "results/{dataset}/variants/{variant}/gaussian/{cls}.h5",
    log:
        "logs/{dataset}/variants/{variant}/fit_gaussian/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/variants/{variant}/fit_gaussian/{cls}.tsv"
