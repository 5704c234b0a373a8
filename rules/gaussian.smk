# docs/method.md §3: the Gaussian fit, one job per class.


rule fit_gaussian:
    input:
        inverted="results/{dataset}/inverted/{cls}.h5",
        latents="results/{dataset}/latents/{cls}.h5",
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
        code=code_version("fit_gaussian"),
    shell:
        "python -m d3hr fit-gaussian --inverted {input.inverted:q} --latents {input.latents:q} --out {output:q} > {log:q} 2>&1"
