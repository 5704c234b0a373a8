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
        args=stage_args("prepare-val"),
        code=code_version("prepare-val", images=images_fingerprint("val")),
    shell:
        stage_cmd("prepare-val")


# only the student's settings (and the method, IPC, student and seed) rerun an evaluation job
rule evaluate:
    input:
        unpack(with_models("teacher", train=eval_class_dirs, val="results/{dataset}/val.h5")),
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
        args=stage_args("evaluate"),
        code=code_version("evaluate", images=eval_images_fingerprint),
    shell:
        stage_cmd("evaluate")


# The same student trained on the class labels alone (no teacher): for the label-robust scores (evaluate.labels).
use rule evaluate as evaluate_hard with:
    output:
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}-hard-seed{seed}.json",
    log:
        "logs/{dataset}/eval/{method}/ipc{ipc}/{student}-hard-seed{seed}.log",
    benchmark:
        "benchmarks/{dataset}/eval/{method}/ipc{ipc}/{student}-hard-seed{seed}.tsv"
    params:
        args=stage_args("evaluate", hard_label=True),
        code=code_version("evaluate", images=eval_images_fingerprint),


# The same student with the teacher's soft labels but without the evaluation's augmentation (no crop, flip, CutMix or
# MixUp): for the augmentation-robust scores (evaluate.augment; docs/method.md §7).
use rule evaluate as evaluate_noaug with:
    output:
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}-noaug-seed{seed}.json",
    log:
        "logs/{dataset}/eval/{method}/ipc{ipc}/{student}-noaug-seed{seed}.log",
    benchmark:
        "benchmarks/{dataset}/eval/{method}/ipc{ipc}/{student}-noaug-seed{seed}.tsv"
    params:
        args=stage_args("evaluate", augment=False),
        code=code_version("evaluate", images=eval_images_fingerprint),


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
        args=stage_args("collect-eval"),
        code=code_version("collect-eval"),
    shell:
        stage_cmd("collect-eval")


rule tables:
    input:
        eval_tables,
    output:
        csv="results/{dataset}/tables/accuracy.csv",
        md=table("accuracy.md"),
        tex="results/{dataset}/tables/accuracy.tex",
    log:
        "logs/{dataset}/tables.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("tables"),
        code=code_version("tables"),
    shell:
        stage_cmd("tables")
