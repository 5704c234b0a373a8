# Evaluation (docs/method.md §6): a student per (method, IPC, student, seed), then per-IPC collectors and the tables.


rule prepare_val:
    input:
        split_images("val"),
    output:
        "results/{dataset}/val.h5",
    log:
        "logs/{dataset}/prepare_val.log",
    benchmark:
        "benchmarks/{dataset}/prepare_val.tsv"
    conda:
        "../envs/d3hr.yaml"
    params:
        val_dirs=lambda wc: [f"{dataset_root_of(wc)}/val/{c}" for c in CLASSES[wc.dataset]],
        classes=lambda wc: CLASSES[wc.dataset],
        labels=labels_of,
        resolution=eval_resolution,
        channels=lambda wc: ds(wc)["channels"],
        crop=lambda wc: EVAL["val_crop"],
        code=code_version("prepare_val"),
    shell:
        "python -m d3hr prepare-val --val-dirs {params.val_dirs:q} --labels {params.labels}"
        " --classes {params.classes:q} --resolution {params.resolution} --channels {params.channels}"
        " --crop {params.crop} --out {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        train=eval_train_input,
        val="results/{dataset}/val.h5",
        teacher=teacher_path,
    output:
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}-seed{seed}.json",
    log:
        "logs/{dataset}/eval/{method}/ipc{ipc}/{student}-seed{seed}.log",
    benchmark:
        "benchmarks/{dataset}/eval/{method}/ipc{ipc}/{student}-seed{seed}.tsv"
    conda:
        "../envs/d3hr.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        class_dirs=eval_class_dirs,
        labels=labels_of,
        resolution=eval_resolution,
        channels=lambda wc: ds(wc)["channels"],
        epochs=lambda wc: EVAL["full_epochs"] if wc.method == "full" else EVAL["epochs"],
        steps=lambda wc: EVAL["full_steps"] if wc.method == "full" else EVAL["steps"],
        ev=student_settings,
        device=config["device"],
        hard="",
        code=code_version("evaluate"),
    shell:
        "python -m d3hr evaluate --threads {threads} --device {params.device} --class-dirs {params.class_dirs:q}"
        " --val {input.val:q} --labels {params.labels} --teacher {input.teacher:q} --student {wildcards.student}"
        " --method {wildcards.method} --ipc {wildcards.ipc} --seed {wildcards.seed}"
        " --resolution {params.resolution} --channels {params.channels} --epochs {params.epochs}"
        " --steps {params.steps} --batch-size {params.ev[batch_size]} --lr {params.ev[lr]}"
        " --weight-decay {params.ev[weight_decay]} --mix {params.ev[mix]} --temperature {params.ev[temperature]}"
        " {params.hard} --out {output:q} > {log:q} 2>&1"


# The same student trained on the class labels alone (no teacher): for the label-robust scores (evaluate.labels).
use rule evaluate as evaluate_hard with:
    output:
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}-hard-seed{seed}.json",
    log:
        "logs/{dataset}/eval/{method}/ipc{ipc}/{student}-hard-seed{seed}.log",
    benchmark:
        "benchmarks/{dataset}/eval/{method}/ipc{ipc}/{student}-hard-seed{seed}.tsv"
    params:
        hard="--hard-label",


rule collect_eval:
    input:
        eval_files_of_ipc,
    output:
        "results/{dataset}/eval/ipc{ipc}.csv",
    log:
        "logs/{dataset}/eval/collect-ipc{ipc}.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        code=code_version("tables"),
    shell:
        "python -m d3hr collect-eval --out {output:q} {input:q} > {log:q} 2>&1"


rule tables:
    input:
        lambda wc: [f"results/{wc.dataset}/eval/ipc{i}.csv" for i in eval_ipcs()],
    output:
        csv="results/{dataset}/tables/accuracy.csv",
        md=report("results/{dataset}/tables/accuracy.md", caption="../report/accuracy.rst", category="Tables"),
        tex="results/{dataset}/tables/accuracy.tex",
    log:
        "logs/{dataset}/tables.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        code=code_version("tables"),
    shell:
        "python -m d3hr tables --out-dir results/{wildcards.dataset}/tables {input:q} > {log:q} 2>&1"
