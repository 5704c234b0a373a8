# docs/method.md §1: encode, one job per class.

ENCODE_FLAGS = flags(
    class_dir=class_dir,
    resolution=ds_key("resolution"),
    channels=ds_key("channels"),
    batch_size=config["encode"]["batch_size"],
    posterior_mean=not config["encode"]["sample_posterior"],
    on_bad_image=config["encode"]["on_bad_image"],
    seed=config["seed"],
    device=config["device"],
    model_precision=config["model_precision"],
)


# Per-class jobs take one thread each (the default), so two run at once on 2 cores (--set-threads to change).
rule encode:
    input:
        images=class_images,
        pipeline=pipeline_dir,
    output:
        "results/{dataset}/latents/{cls}.h5",
    log:
        "logs/{dataset}/encode/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/encode/{cls}.tsv"
    priority: 3  # the chain every D3HR job waits for
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=ENCODE_FLAGS,
        code=code_version("encode"),
    shell:
        "python -m d3hr encode --threads {threads} {params.args} --pipeline {input.pipeline:q} --out {output:q} > {log:q} 2>&1"
