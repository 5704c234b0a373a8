# docs/method.md §2: DDIM inversion, one job per class (and per ablation variant that changes the inversion).


rule invert:
    input:
        unpack(with_models("pipeline", latents=class_h5("latents"))),
    output:
        "results/{dataset}/inverted/{cls}.h5",
    log:
        "logs/{dataset}/invert/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/invert/{cls}.tsv"
    priority: 3  # the chain every D3HR job waits for
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=stage_args("invert"),
        code=code_version("invert"),
    shell:
        stage_cmd("invert")


use rule invert as invert_variant with:
    output:
        "results/{dataset}/variants/{variant}/inverted/{cls}.h5",
    log:
        "logs/{dataset}/variants/{variant}/invert/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/variants/{variant}/invert/{cls}.tsv"
    priority: 0
