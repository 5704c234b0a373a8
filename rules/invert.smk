# docs/method.md §2: DDIM inversion, one job per class.

INVERT_FLAGS = flags(
    cls=wildcard("cls"),
    label=model_label_of,
    timesteps=config["invert"]["keep_timesteps"],
    num_steps=config["invert"]["num_inference_steps"],
    guidance=config["invert"]["guidance_scale"],
    batch_size=config["invert"]["batch_size"],
    device=config["device"],
    model_precision=config["model_precision"],
)


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
        args=INVERT_FLAGS,
        code=code_version("invert"),
    shell:
        "python -m d3hr invert --threads {threads} {params.args} --pipeline {input.pipeline:q}"
        " --latents {input.latents:q} --out {output:q} > {log:q} 2>&1"
