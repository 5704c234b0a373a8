# Ablations of D3HR's settings (docs/method.md §2, §4, §5; `ablation:` in the config): per variant and class, the
# main run's pipeline with one setting changed, decoded into `images/variant_{name}/`; the `evaluate` rule trains
# students on those like on any method, and `ablation_table` sets them beside D3HR and its baselines.


rule ablation_variant:
    input:
        latents="results/{dataset}/latents/{cls}.h5",
        gaussian="results/{dataset}/gaussian/{cls}.h5",
        pipeline=pipeline_dir,
    output:
        directory("results/{dataset}/images/variant_{variant}/ipc{ipc}/{cls}"),
    log:
        "logs/{dataset}/ablation_variant/{variant}/ipc{ipc}/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/ablation_variant/{variant}/ipc{ipc}/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    threads: 1  # per-class jobs: one thread each, so two run at once on 2 cores (--set-threads to change)
    resources:
        gpu=1,
    params:
        timestep=config["select"]["timestep"],
        m=variant_setting("m"),
        chunk_groups=config["select"]["chunk_groups"],
        w=config["select"]["weights"],
        skew=variant_setting("skew"),
        skew_mode=variant_setting("skew_mode"),
        start=variant_setting("decode_start"),
        invert_guidance=variant_setting("invert_guidance"),
        guidance=config["decode"]["guidance_scale"],
        batch_size=config["decode"]["batch_size"],
        seed=config["seed"],
        device=config["device"],
        code=code_version("variants"),
    shell:
        "python -m d3hr ablation-variant --threads {threads} --device {params.device} --pipeline {input.pipeline:q}"
        " --latents {input.latents:q} --gaussian {input.gaussian:q} --ipc {wildcards.ipc} --seed {params.seed}"
        " --timestep {params.timestep} --m {params.m} --chunk-groups {params.chunk_groups} --l-mu {params.w[mu]}"
        " --l-sigma {params.w[sigma]} --l-skew {params.skew} --skew-mode {params.skew_mode}"
        " --guidance {params.guidance} --start {params.start} --invert-guidance {params.invert_guidance}"
        " --batch-size {params.batch_size} --out {output:q} > {log:q} 2>&1"


rule ablation_table:
    input:
        ablation_eval_files,
    output:
        csv="results/{dataset}/tables/ablation.csv",
        md=report("results/{dataset}/tables/ablation.md", caption="../report/ablation.rst", category="Tables"),
        png=report("results/{dataset}/figures/ablation.png", caption="../report/ablation.rst", category="Figures"),
        pdf="results/{dataset}/figures/ablation.pdf",
    log:
        "logs/{dataset}/ablation_table.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        variants=lambda wc: json.dumps(ablation_variants()),
    shell:
        "python -m d3hr ablation-table --variants {params.variants:q} --csv {output.csv:q} --md {output.md:q}"
        " --png {output.png:q} --pdf {output.pdf:q} {input:q} > {log:q} 2>&1"
