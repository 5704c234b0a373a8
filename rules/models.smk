# Models of datasets configured with `model: train` / `teacher: train` (the embedded default; docs/method.md §0).


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
        args=stage_args("train-ldm"),
        code=code_version("train-ldm", images=images_fingerprint("train")),
    shell:
        stage_cmd("train-ldm")


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
        args=stage_args("train-teacher"),
        code=code_version("train-teacher", images=images_fingerprint("train", "val")),
    shell:
        stage_cmd("train-teacher")


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
        args=stage_args("quality"),
        code=code_version("quality", images=images_fingerprint("val")),
    shell:
        stage_cmd("quality")
