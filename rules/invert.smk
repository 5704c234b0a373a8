# docs/method.md §2: DDIM inversion, one job per class.


rule invert:
    input:
        latents="results/{dataset}/latents/{cls}.h5",
        pipeline=pipeline_dir,
    output:
        "results/{dataset}/inverted/{cls}.h5",
    log:
        "logs/{dataset}/invert/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/invert/{cls}.tsv"
    priority: 3  # the chain every D3HR job waits for
    conda:
        "../envs/d3hr.yaml"
    threads: 1  # per-class jobs: one thread each, so two run at once on 2 cores (--set-threads to change)
    resources:
        gpu=1,
    params:
        label=model_label_of,
        timesteps=config["invert"]["keep_timesteps"],
        steps=config["invert"]["num_inference_steps"],
        guidance=config["invert"]["guidance_scale"],
        batch_size=config["invert"]["batch_size"],
        device=config["device"],
        code=code_version("invert"),
    shell:
        "python -m d3hr invert --threads {threads} --device {params.device} --pipeline {input.pipeline:q}"
        " --latents {input.latents:q} --cls {wildcards.cls:q} --label {params.label}"
        " --timesteps {params.timesteps} --num-steps {params.steps} --guidance {params.guidance}"
        " --batch-size {params.batch_size} --out {output:q} > {log:q} 2>&1"
