# Decoding into images (docs/method.md §5): the selected latents of D3HR, of the latent baselines and of the ablation
# variants (one folder per method, IPC, class).


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
        args=stage_args("decode"),
        code=code_version("decode"),
    shell:
        stage_cmd("decode")


use rule decode as decode_variant with:
    input:
        unpack(with_models("pipeline", latents=lambda wc: variant_file(wc, "selected"))),
    output:
        directory("results/{dataset}/images/variant_{variant}/ipc{ipc}/{cls}"),
    log:
        "logs/{dataset}/variants/{variant}/decode/ipc{ipc}/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/variants/{variant}/decode/ipc{ipc}/{cls}.tsv"
