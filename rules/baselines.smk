# Baselines of the paper's tables (docs/method.md, "Baselines"), each a per-class chain writing the same image layout.


rule random_real:
    input:
        class_images,
    output:
        directory("results/{dataset}/images/random_real/ipc{ipc}/{cls}"),
    log:
        "logs/{dataset}/random_real/ipc{ipc}/{cls}.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        class_dir=lambda wc: f"{dataset_root_of(wc)}/train/{wc.cls}",
        resolution=lambda wc: ds(wc)["resolution"],
        channels=lambda wc: ds(wc)["channels"],
        seed=config["seed"],
        code=code_version("baselines"),
    shell:
        "python -m d3hr baseline-real --class-dir {params.class_dir:q} --ipc {wildcards.ipc} --seed {params.seed}"
        " --resolution {params.resolution} --channels {params.channels} --out {output:q} > {log:q} 2>&1"


rule dit_noise:
    input:
        pipeline=pipeline_dir,
    output:
        "results/{dataset}/baselines/dit_noise/ipc{ipc}/{cls}.h5",
    log:
        "logs/{dataset}/dit_noise/ipc{ipc}/{cls}.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        label=model_label_of,
        steps=config["invert"]["num_inference_steps"],
        guidance=config["decode"]["guidance_scale"],
        seed=config["seed"],
        code=code_version("baselines"),
    shell:
        "python -m d3hr baseline-noise --pipeline {input.pipeline:q} --cls {wildcards.cls:q} --label {params.label}"
        " --ipc {wildcards.ipc} --seed {params.seed} --num-steps {params.steps} --guidance {params.guidance}"
        " --out {output:q} > {log:q} 2>&1"


rule kmeans:
    input:
        latents="results/{dataset}/latents/{cls}.h5",
        pipeline=pipeline_dir,
    output:
        "results/{dataset}/baselines/{method}/ipc{ipc}/{cls}.h5",
    log:
        "logs/{dataset}/{method}/ipc{ipc}/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/ipc{ipc}/{cls}.tsv"
    wildcard_constraints:
        method="kmeans|kmeans_vae",
    conda:
        "../envs/d3hr.yaml"
    params:
        # kmeans (D4M): centroids noised to the selection timestep, then denoised like D3HR's latents;
        # kmeans_vae: centroids decoded by the VAE alone
        timestep=lambda wc: config["select"]["timestep"] if wc.method == "kmeans" else -1,
        label=model_label_of,
        steps=config["invert"]["num_inference_steps"],
        guidance=config["decode"]["guidance_scale"],
        seed=config["seed"],
        code=code_version("baselines"),
    shell:
        "python -m d3hr baseline-kmeans --latents {input.latents:q} --ipc {wildcards.ipc} --seed {params.seed}"
        " --timestep {params.timestep} --pipeline {input.pipeline:q} --cls {wildcards.cls:q} --label {params.label}"
        " --num-steps {params.steps} --guidance {params.guidance} --out {output:q} > {log:q} 2>&1"
