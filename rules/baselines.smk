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
        args=stage_args("baseline-real"),
        code=code_version("baseline-real", images=images_fingerprint("train")),
    shell:
        stage_cmd("baseline-real")


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
        args=stage_args("baseline-noise"),
        code=code_version("baseline-noise"),
    shell:
        stage_cmd("baseline-noise")


rule kmeans:
    input:
        latents=class_h5("latents"),
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
        args=stage_args("baseline-kmeans"),
        code=code_version("baseline-kmeans"),
    shell:
        stage_cmd("baseline-kmeans")
