# Ablations of D3HR's settings (docs/method.md §2, §4, §5; `ablation:` in the config): per variant and class, the
# main run's pipeline with one setting changed, decoded into `images/variant_{name}/`; the `evaluate` rule trains
# students on those like on any method, and `ablation_table` sets them beside D3HR and its baselines.

ABLATION_VARIANT_FLAGS = flags(
    ipc=wildcard("ipc"),
    seed=config["seed"],
    timestep=config["select"]["timestep"],
    m=variant_setting("m"),
    chunk_groups=config["select"]["chunk_groups"],
    l_mu=config["select"]["weights"]["mu"],
    l_sigma=config["select"]["weights"]["sigma"],
    l_skew=variant_setting("skew"),
    skew_mode=variant_setting("skew_mode"),
    guidance=config["decode"]["guidance_scale"],
    start=variant_setting("decode_start"),
    invert_guidance=variant_setting("invert_guidance"),
    batch_size=config["decode"]["batch_size"],
    device=config["device"],
    model_precision=config["model_precision"],
)


rule ablation_variant:
    input:
        unpack(with_models("pipeline", latents=class_h5("latents"), gaussian=class_h5("gaussian"))),
    output:
        directory("results/{dataset}/images/variant_{variant}/ipc{ipc}/{cls}"),
    log:
        "logs/{dataset}/ablation_variant/{variant}/ipc{ipc}/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/ablation_variant/{variant}/ipc{ipc}/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=ABLATION_VARIANT_FLAGS,
        code=code_version("variants"),
    shell:
        "python -m d3hr ablation-variant --threads {threads} {params.args} --pipeline {input.pipeline:q}"
        " --latents {input.latents:q} --gaussian {input.gaussian:q} --out {output:q} > {log:q} 2>&1"


rule ablation_table:
    input:
        ablation_eval_files,
    output:
        csv="results/{dataset}/tables/ablation.csv",
        md=table("ablation.md"),
        png=figure("ablation"),
        pdf="results/{dataset}/figures/ablation.pdf",
    log:
        "logs/{dataset}/ablation_table.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        variants=lambda wc: json.dumps(ablation_variants()),
        code=code_version("ablation_table"),
    shell:
        "python -m d3hr ablation-table --variants {params.variants:q} --csv {output.csv:q} --md {output.md:q}"
        " --png {output.png:q} --pdf {output.pdf:q} {input:q} > {log:q} 2>&1"
