# docs/method.md §1: encode, one job per class.


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
    threads: 1  # per-class jobs: one thread each, so two run at once on 2 cores (--set-threads to change)
    resources:
        gpu=1,
    params:
        class_dir=lambda wc: f"{dataset_root_of(wc)}/train/{wc.cls}",
        resolution=lambda wc: ds(wc)["resolution"],
        channels=lambda wc: ds(wc)["channels"],
        batch_size=config["encode"]["batch_size"],
        posterior=("" if config["encode"]["sample_posterior"] else "--posterior-mean"),
        on_bad_image=config["encode"]["on_bad_image"],
        seed=config["seed"],
        device=config["device"],
        code=code_version("encode"),
    shell:
        "python -m d3hr encode --threads {threads} --device {params.device} --pipeline {input.pipeline:q}"
        " --class-dir {params.class_dir:q} --resolution {params.resolution} --channels {params.channels}"
        " --batch-size {params.batch_size} {params.posterior} --on-bad-image {params.on_bad_image} --seed {params.seed} --out {output:q} > {log:q} 2>&1"
