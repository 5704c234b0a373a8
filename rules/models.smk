# Models of datasets configured with `model: train` / `teacher: train` (the embedded default; docs/method.md §0).

DATA_FLAGS = dict(
    root=dataset_root_of, classes=classes_of, resolution=ds_key("resolution"), channels=ds_key("channels")
)
TRAIN_LDM_FLAGS = flags(
    **DATA_FLAGS,
    seed=config["seed"],
    vae=lambda wc: config["train"]["vae"],
    dit=lambda wc: dit_settings(),
)
TRAIN_TEACHER_FLAGS = flags(
    **DATA_FLAGS,
    seed=config["seed"],
    **{
        k: (lambda wc, k=k: config["train"]["teacher"][k])
        for k in ("arch", "epochs", "batch_size", "lr", "weight_decay", "precision")
    },
)
QUALITY_FLAGS = flags(
    **DATA_FLAGS,
    seed=config["seed"],
    samples_per_class=lambda wc: config["train"]["quality"]["samples_per_class"],
    guidance=config["decode"]["guidance_scale"],
    num_steps=config["invert"]["num_inference_steps"],
    model_precision=config["model_precision"],
)


rule train_ldm:
    input:
        split_images("train"),
    output:
        directory("results/{dataset}/models/pipeline"),
    log:
        "logs/{dataset}/train_ldm.log",
    benchmark:
        "benchmarks/{dataset}/train_ldm.tsv"
    priority: 10  # the longest job and the root of every D3HR chain: start it first
    conda:
        "../envs/d3hr.yaml"
    threads: train_threads  # beside train_teacher: half the cores each
    resources:
        gpu=1,
    params:
        args=TRAIN_LDM_FLAGS,
        code=code_version("train_ldm"),
    shell:
        "python -m d3hr train-ldm --threads {threads} {params.args} --out {output:q} > {log:q} 2>&1"


rule train_teacher:
    input:
        split_images("train", "val"),
    output:
        "results/{dataset}/models/teacher.pt",
    log:
        "logs/{dataset}/train_teacher.log",
    benchmark:
        "benchmarks/{dataset}/train_teacher.tsv"
    priority: 5
    conda:
        "../envs/d3hr.yaml"
    threads: train_threads  # beside train_ldm; students of real images follow it on the same cores
    resources:
        gpu=1,
    params:
        args=TRAIN_TEACHER_FLAGS,
        code=code_version("train_teacher"),
    shell:
        "python -m d3hr train-teacher --threads {threads} {params.args} --out {output:q} > {log:q} 2>&1"


rule model_quality:
    input:
        unpack(with_models("pipeline", "teacher", val=split_images("val"))),
    output:
        json="results/{dataset}/models/quality.json",
        samples=figure("dit_samples", folder="models", category="Models"),
    log:
        "logs/{dataset}/model_quality.log",
    benchmark:
        "benchmarks/{dataset}/model_quality.tsv"
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=QUALITY_FLAGS,
        code=code_version("quality"),
    shell:
        "python -m d3hr quality --threads {threads} {params.args} --pipeline {input.pipeline:q} --teacher {input.teacher:q}"
        " --out {output.json:q} --samples {output.samples:q} > {log:q} 2>&1"
