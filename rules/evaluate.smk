# Evaluation (docs/method.md §6): a student per (method, IPC, student, seed), then per-IPC collectors and the tables.


rule evaluate:
    input:
        train=eval_train_input,
        val=split_images("val"),
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
        val_dirs=lambda wc: [f"{dataset_root_of(wc)}/val/{c}" for c in CLASSES[wc.dataset]],
        labels=labels_of,
        resolution=lambda wc: ds(wc).get("decode_resize") or ds(wc)["resolution"],
        channels=lambda wc: ds(wc)["channels"],
        epochs=lambda wc: EVAL["full_epochs"] if wc.method == "full" else EVAL["epochs"],
        steps=lambda wc: EVAL["full_steps"] if wc.method == "full" else EVAL["steps"],
        batch_size=lambda wc: EVAL["batch_size"],
        lr=lambda wc: EVAL["lr"],
        weight_decay=lambda wc: EVAL["weight_decay"],
        mix=lambda wc: EVAL["mix"],
        temperature=lambda wc: EVAL["temperature"],
        cosine_to=lambda wc: EVAL["cosine_to"],
        hard="",
        code=code_version("evaluate"),
    shell:
        "python -m d3hr evaluate --threads {threads} --class-dirs {params.class_dirs:q} --val-dirs {params.val_dirs:q}"
        " --labels {params.labels} --teacher {input.teacher:q} --student {wildcards.student}"
        " --method {wildcards.method} --ipc {wildcards.ipc} --seed {wildcards.seed}"
        " --resolution {params.resolution} --channels {params.channels} --epochs {params.epochs}"
        " --steps {params.steps} --batch-size {params.batch_size} --lr {params.lr}"
        " --weight-decay {params.weight_decay} --mix {params.mix} --temperature {params.temperature}"
        " --cosine-to {params.cosine_to} {params.hard} --out {output:q} > {log:q} 2>&1"


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
