# The paper's figures and tables (docs/method.md, "Figures and tables"). Every figure rule reads the per-class (and
# per-IPC) files, so changing one class or one IPC re-plots what shows it; each writes PNG + PDF and a CSV of the
# plotted numbers.

ABLATION_TIMESTEP_FLAGS = flags(
    ipc=lambda wc: ablation_cfg()["ipc"],
    m=lambda wc: ablation_cfg()["m"],
    timesteps=lambda wc: ablation_cfg()["timesteps"] or config["invert"]["keep_timesteps"],
    chunk_groups=config["select"]["chunk_groups"],
    l_mu=config["select"]["weights"]["mu"],
    l_sigma=config["select"]["weights"]["sigma"],
    l_skew=config["select"]["weights"]["skew"],
    skew_mode=config["select"]["skew_mode"],
    guidance=config["decode"]["guidance_scale"],
    num_steps=config["invert"]["num_inference_steps"],
    batch_size=config["decode"]["batch_size"],
    seed=config["seed"],
    device=config["device"],
    model_precision=config["model_precision"],
)
TEACHER_TABLE_FLAGS = flags(
    methods=lambda wc: image_methods(),
    ipcs=config["select"]["ipc"],
    classes=classes_of,
    labels=labels_of,
    resolution=eval_resolution,
    channels=ds_key("channels"),
)


rule ablation_timestep:
    input:
        unpack(with_models("pipeline", "teacher", gaussian=class_h5("gaussian"))),
    output:
        "results/{dataset}/ablation/timestep/{cls}.h5",
    log:
        "logs/{dataset}/ablation_timestep/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/ablation_timestep/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=ABLATION_TIMESTEP_FLAGS,
        code=code_version("ablation"),
    shell:
        "python -m d3hr ablation-timestep --threads {threads} {params.args} --pipeline {input.pipeline:q}"
        " --gaussian {input.gaussian:q} --teacher {input.teacher:q} --out {output:q} > {log:q} 2>&1"


rule fig_normality:
    input:
        unpack(normality_inputs),
    output:
        png=figure("normality"),
        pdf="results/{dataset}/figures/normality.pdf",
        qq="results/{dataset}/figures/normality_qq.csv",
        table=table("normality.csv", caption="normality_table"),
    log:
        "logs/{dataset}/figures/normality.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=flags(timestep=config["select"]["timestep"], qq_dims=lambda wc: figures_cfg()["qq_dims"]),
        code=code_version("figures"),
    shell:
        "python -m d3hr fig-normality {params.args} --gaussian {input.gaussian:q} --qq-latents {input.qq_latents:q}"
        " --qq-inverted {input.qq_inverted:q} --png {output.png:q} --pdf {output.pdf:q} --table {output.table:q}"
        " --qq-csv {output.qq:q} > {log:q} 2>&1"


rule fig_accuracy:
    input:
        "results/{dataset}/tables/accuracy.csv",
    output:
        png=figure("accuracy_vs_ipc"),
        pdf="results/{dataset}/figures/accuracy_vs_ipc.pdf",
        data="results/{dataset}/figures/accuracy_vs_ipc.csv",
    log:
        "logs/{dataset}/figures/accuracy_vs_ipc.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        code=code_version("figures"),
    shell:
        "python -m d3hr fig-accuracy --accuracy {input:q} --png {output.png:q} --pdf {output.pdf:q} --data {output.data:q}"
        " > {log:q} 2>&1"


rule fig_timestep:
    input:
        every_class(class_h5("ablation/timestep")),
    output:
        png=figure("timestep"),
        pdf="results/{dataset}/figures/timestep.pdf",
        data="results/{dataset}/figures/timestep.csv",
    log:
        "logs/{dataset}/figures/timestep.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        timestep=config["select"]["timestep"],
        code=code_version("figures"),
    shell:
        "python -m d3hr fig-timestep --ablation {input:q} --timestep {params.timestep} --png {output.png:q}"
        " --pdf {output.pdf:q} --data {output.data:q} > {log:q} 2>&1"


rule fig_group_sampling:
    input:
        selected=every_class("results/{dataset}/selected/ipc{ipc}/{cls}.h5", ipc=config["select"]["ipc"]),
        accuracy=group_sampling_accuracy,
    output:
        png=figure("group_sampling"),
        pdf="results/{dataset}/figures/group_sampling.pdf",
        curve="results/{dataset}/figures/group_sampling_best_vs_m.csv",
        summary="results/{dataset}/figures/group_sampling_summary.csv",
    log:
        "logs/{dataset}/figures/group_sampling.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        accuracy=lambda wc, input: f"--accuracy {input.accuracy}" if input.accuracy else "",
        code=code_version("figures"),
    shell:
        "python -m d3hr fig-group-sampling --selected {input.selected:q} {params.accuracy} --png {output.png:q}"
        " --pdf {output.pdf:q} --curve {output.curve:q} --summary {output.summary:q} > {log:q} 2>&1"


SAMPLES_FLAGS = flags(
    methods=lambda wc: image_methods(),
    classes=grid_classes,
    per_class=lambda wc: figures_cfg()["grid_per_class"],
)


rule fig_samples:
    input:
        lambda wc: image_dirs(wc.dataset, image_methods(), [wc.ipc], grid_classes(wc)),
    output:
        png=figure("samples_ipc{ipc}", caption="samples"),
        pdf="results/{dataset}/figures/samples_ipc{ipc}.pdf",
        data="results/{dataset}/figures/samples_ipc{ipc}.csv",
    log:
        "logs/{dataset}/figures/samples_ipc{ipc}.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=SAMPLES_FLAGS,
        code=code_version("figures"),
    shell:
        "python -m d3hr fig-samples {params.args} --images-root results/{wildcards.dataset}/images --ipc {wildcards.ipc}"
        " --png {output.png:q} --pdf {output.pdf:q} --data {output.data:q} > {log:q} 2>&1"


rule fig_storage:
    input:
        gaussian=every_class(class_h5("gaussian")),
        images=lambda wc: image_dirs(wc.dataset, ["d3hr"], config["select"]["ipc"], CLASSES[wc.dataset]),
    output:
        png=figure("storage"),
        pdf="results/{dataset}/figures/storage.pdf",
        table=table("storage.csv", caption="storage_table"),
    log:
        "logs/{dataset}/figures/storage.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=flags(ipcs=config["select"]["ipc"], classes=classes_of),
        code=code_version("figures"),
    shell:
        "python -m d3hr fig-storage {params.args} --gaussian {input.gaussian:q}"
        " --images-root results/{wildcards.dataset}/images/d3hr --png {output.png:q} --pdf {output.pdf:q}"
        " --table {output.table:q} > {log:q} 2>&1"


rule cost_table:
    input:
        benchmark_files,
    output:
        csv="results/{dataset}/tables/costs.csv",
        md=table("costs.md"),
    log:
        "logs/{dataset}/tables/costs.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        n_classes=lambda wc: len(CLASSES[wc.dataset]),
        code=code_version("figures"),
    shell:
        "python -m d3hr cost-table --root benchmarks/{wildcards.dataset} --n-classes {params.n_classes} --csv {output.csv:q}"
        " --md {output.md:q} {input:q} > {log:q} 2>&1"


rule teacher_table:
    input:
        images=lambda wc: image_dirs(wc.dataset, image_methods(), config["select"]["ipc"], CLASSES[wc.dataset]),
        teacher=teacher_path,
    output:
        table("teacher_check.csv"),
    log:
        "logs/{dataset}/tables/teacher_check.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=TEACHER_TABLE_FLAGS,
        code=code_version("figures"),
    shell:
        "python -m d3hr teacher-table {params.args} --teacher {input.teacher:q}"
        " --images-root results/{wildcards.dataset}/images --out {output:q} > {log:q} 2>&1"
