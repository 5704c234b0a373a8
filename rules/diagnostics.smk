# Why D3HR's images are off-class (docs/results.md, "Off-class images"; d3hr/diagnostics.py): per class, the selection
# timestep's Gaussian against the forward process of the same images, the round trip of real inverted latents, the
# class's forward-noised mean decoded, and the teacher's top-1 on every generative set and ablation variant.


rule diagnose:
    input:
        unpack(with_models("pipeline", "teacher", gaussian=class_h5("gaussian"), images=diagnostic_dirs)),
    output:
        "results/{dataset}/diagnostics/{cls}.json",
    log:
        "logs/{dataset}/diagnostics/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/diagnostics/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=stage_args("diagnose"),
        code=code_version("diagnose"),
    shell:
        stage_cmd("diagnose")


rule diagnostics_table:
    input:
        every_class("results/{dataset}/diagnostics/{cls}.json"),
    output:
        csv="results/{dataset}/tables/diagnostics.csv",
        md=table("diagnostics.md"),
    log:
        "logs/{dataset}/tables/diagnostics.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("diagnostics-table"),
        code=code_version("diagnostics-table"),
    shell:
        stage_cmd("diagnostics-table")
