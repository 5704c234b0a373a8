# Evaluation (docs/method.md §6): a student per (method, IPC, student, seed), then per-IPC collectors and the tables.


PREPARE_VAL_FLAGS = flags(
    val_dirs=lambda wc: [f"{dataset_root_of(wc)}/val/{c}" for c in CLASSES[wc.dataset]],
    classes=classes_of,
    labels=labels_of,
    resolution=eval_resolution,
    channels=ds_key("channels"),
    crop=lambda wc: EVAL["val_crop"],
)
# the student's settings: only these (and the method, IPC, student and seed) rerun an evaluation job
STUDENT_FLAGS = dict(
    class_dirs=eval_class_dirs,
    labels=labels_of,
    resolution=eval_resolution,
    channels=ds_key("channels"),
    method=wildcard("method"),
    ipc=wildcard("ipc"),
    student=wildcard("student"),
    seed=wildcard("seed"),
    epochs=lambda wc: EVAL["full_epochs"] if wc.method == "full" else EVAL["epochs"],
    steps=lambda wc: EVAL["full_steps"] if wc.method == "full" else EVAL["steps"],
    **{
        k: (lambda wc, k=k: EVAL[k])
        for k in ("batch_size", "lr", "weight_decay", "schedule", "mix", "temperature", "precision")
    },
    device=config["device"],
)


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
        args=PREPARE_VAL_FLAGS,
        code=code_version("prepare_val"),
    shell:
        "python -m d3hr prepare-val {params.args} --out {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(with_models("teacher", train=eval_train_input, val="results/{dataset}/val.h5")),
    output:
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}-seed{seed}.json",
    log:
        "logs/{dataset}/eval/{method}/ipc{ipc}/{student}-seed{seed}.log",
    benchmark:
        "benchmarks/{dataset}/eval/{method}/ipc{ipc}/{student}-seed{seed}.tsv"
    conda:
        "../envs/d3hr.yaml"
    resources:
        gpu=1,
    params:
        args=flags(**STUDENT_FLAGS),
        code=code_version("evaluate"),
    shell:
        "python -m d3hr evaluate --threads {threads} {params.args} --val {input.val:q} --teacher {input.teacher:q}"
        " --out {output:q} > {log:q} 2>&1"


# The same student trained on the class labels alone (no teacher): for the label-robust scores (evaluate.labels).
use rule evaluate as evaluate_hard with:
    output:
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}-hard-seed{seed}.json",
    log:
        "logs/{dataset}/eval/{method}/ipc{ipc}/{student}-hard-seed{seed}.log",
    benchmark:
        "benchmarks/{dataset}/eval/{method}/ipc{ipc}/{student}-hard-seed{seed}.tsv"
    params:
        args=flags(**STUDENT_FLAGS, hard_label=True),
        code=code_version("evaluate"),


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
        md=table("accuracy.md"),
        tex="results/{dataset}/tables/accuracy.tex",
    log:
        "logs/{dataset}/tables.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        code=code_version("tables"),
    shell:
        "python -m d3hr tables --out-dir results/{wildcards.dataset}/tables {input:q} > {log:q} 2>&1"
