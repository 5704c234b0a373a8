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
    threads: 2
    resources:
        gpu=1,
    params:
        root=dataset_root_of,
        classes=classes_of,
        resolution=lambda wc: ds(wc)["resolution"],
        channels=lambda wc: ds(wc)["channels"],
        vae=lambda wc: json.dumps(config["train"]["vae"]),
        dit=lambda wc: json.dumps(dit_settings()),
        seed=config["seed"],
        code=code_version("train_ldm"),
    shell:
        "python -m d3hr train-ldm --threads {threads} --root {params.root:q} --classes {params.classes:q}"
        " --resolution {params.resolution} --channels {params.channels} --seed {params.seed}"
        " --vae {params.vae:q} --dit {params.dit:q} --out {output:q} > {log:q} 2>&1"


rule train_teacher:
    input:
        split_images("train"),
        split_images("val"),
    output:
        "results/{dataset}/models/teacher.pt",
    log:
        "logs/{dataset}/train_teacher.log",
    benchmark:
        "benchmarks/{dataset}/train_teacher.tsv"
    priority: 5
    conda:
        "../envs/d3hr.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        root=dataset_root_of,
        classes=classes_of,
        resolution=lambda wc: ds(wc)["resolution"],
        channels=lambda wc: ds(wc)["channels"],
        t=lambda wc: config["train"]["teacher"],
        seed=config["seed"],
        code=code_version("train_teacher"),
    shell:
        "python -m d3hr train-teacher --threads {threads} --root {params.root:q} --classes {params.classes:q}"
        " --resolution {params.resolution} --channels {params.channels} --seed {params.seed}"
        " --arch {params.t[arch]} --epochs {params.t[epochs]} --batch-size {params.t[batch_size]}"
        " --lr {params.t[lr]} --weight-decay {params.t[weight_decay]} --out {output:q} > {log:q} 2>&1"


rule model_quality:
    input:
        split_images("val"),
        pipeline=pipeline_dir,
        teacher=teacher_path,
    output:
        json="results/{dataset}/models/quality.json",
        samples=report(
            "results/{dataset}/models/dit_samples.png",
            caption="../report/dit_samples.rst",
            category="Models",
        ),
    log:
        "logs/{dataset}/model_quality.log",
    benchmark:
        "benchmarks/{dataset}/model_quality.tsv"
    conda:
        "../envs/d3hr.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        root=dataset_root_of,
        classes=classes_of,
        resolution=lambda wc: ds(wc)["resolution"],
        channels=lambda wc: ds(wc)["channels"],
        n=lambda wc: config["train"]["quality"]["samples_per_class"],
        guidance=config["decode"]["guidance_scale"],
        steps=config["invert"]["num_inference_steps"],
        seed=config["seed"],
        code=code_version("quality"),
    shell:
        "python -m d3hr quality --threads {threads} --root {params.root:q} --classes {params.classes:q}"
        " --resolution {params.resolution} --channels {params.channels} --seed {params.seed}"
        " --pipeline {input.pipeline:q} --teacher {input.teacher:q} --samples-per-class {params.n}"
        " --guidance {params.guidance} --num-steps {params.steps} --out {output.json:q} --samples {output.samples:q}"
        " > {log:q} 2>&1"
