# docs/method.md §4: group sampling, one job per class and IPC (and per ablation variant that changes the selection).


rule select:
    input:
        gaussian=class_h5("gaussian"),
    output:
        "results/{dataset}/selected/ipc{ipc}/{cls}.h5",
    log:
        "logs/{dataset}/select/ipc{ipc}/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/select/ipc{ipc}/{cls}.tsv"
    priority: 1  # the chain every D3HR job waits for
    conda:
        "../envs/d3hr.yaml"
    resources:
        mem_mb=1000,
        gpu=1,
    params:
        args=stage_args("select"),
        code=code_version("select"),
    shell:
        stage_cmd("select")


use rule select as select_variant with:
    input:
        gaussian=lambda wc: variant_file(wc, "gaussian"),
    output:
        "results/{dataset}/variants/{variant}/selected/ipc{ipc}/{cls}.h5",
    log:
        "logs/{dataset}/variants/{variant}/select/ipc{ipc}/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/variants/{variant}/select/ipc{ipc}/{cls}.tsv"
    priority: 0


rule selection_summary:
    input:
        every_class("results/{dataset}/selected/ipc{ipc}/{cls}.h5"),
    output:
        "results/{dataset}/selected/ipc{ipc}/summary.csv",
    log:
        "logs/{dataset}/select/ipc{ipc}/summary.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("summarize-selection"),
        code=code_version("summarize-selection"),
    shell:
        stage_cmd("summarize-selection")
