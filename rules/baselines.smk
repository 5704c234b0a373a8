# Baselines of the paper's tables (docs/method.md, "Baselines"), each a per-class chain writing the same image layout.

BASELINE_FLAGS = dict(cls=wildcard("cls"), label=model_label_of, ipc=wildcard("ipc"), seed=config["seed"])
GUIDED_FLAGS = dict(num_steps=config["invert"]["num_inference_steps"], guidance=config["decode"]["guidance_scale"])
REAL_FLAGS = flags(
    class_dir=class_dir,
    ipc=wildcard("ipc"),
    seed=config["seed"],
    resolution=ds_key("resolution"),
    channels=ds_key("channels"),
)
KMEANS_FLAGS = flags(
    **BASELINE_FLAGS,
    **GUIDED_FLAGS,
    # kmeans (D4M): centroids noised to the selection timestep, then denoised like D3HR's latents;
    # kmeans_vae: centroids decoded by the VAE alone
    timestep=lambda wc: config["select"]["timestep"] if wc.method == "kmeans" else -1,
)


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
        args=REAL_FLAGS,
        code=code_version("baselines"),
    shell:
        "python -m d3hr baseline-real {params.args} --out {output:q} > {log:q} 2>&1"


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
        args=flags(**BASELINE_FLAGS, **GUIDED_FLAGS),
        code=code_version("baselines"),
    shell:
        "python -m d3hr baseline-noise {params.args} --pipeline {input.pipeline:q} --out {output:q} > {log:q} 2>&1"


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
        args=KMEANS_FLAGS,
        code=code_version("baselines"),
    shell:
        "python -m d3hr baseline-kmeans {params.args} --latents {input.latents:q} --pipeline {input.pipeline:q}"
        " --out {output:q} > {log:q} 2>&1"
