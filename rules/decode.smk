# Decoding into images (docs/method.md §5): the selected latents of D3HR and the latent baselines (one folder per
# method, IPC, class).

DECODE_FLAGS = flags(
    latents_name=lambda wc: "random_latents" if wc.method == "d3hr_nogroup" else "latents",
    guidance=config["decode"]["guidance_scale"],
    num_steps=config["invert"]["num_inference_steps"],
    resize=ds_key("decode_resize"),
    batch_size=config["decode"]["batch_size"],
    start=config["decode"]["start"],
    device=config["device"],
    model_precision=config["model_precision"],
)


rule decode:
    input:
        unpack(with_models("pipeline", latents=decode_input)),
    output:
        directory("results/{dataset}/images/{method,d3hr|d3hr_nogroup|dit_noise|kmeans|kmeans_vae}/ipc{ipc}/{cls}"),
    log:
        "logs/{dataset}/decode/{method}/ipc{ipc}/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/decode/{method}/ipc{ipc}/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=DECODE_FLAGS,
        code=code_version("decode"),
    shell:
        "python -m d3hr decode --threads {threads} {params.args} --pipeline {input.pipeline:q}"
        " --selected {input.latents:q} --out {output:q} > {log:q} 2>&1"
