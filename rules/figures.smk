# The paper's figures and tables (docs/method.md, "Figures and tables"). Every figure rule reads the per-class (and
# per-IPC) files, so changing one class or one IPC re-plots what shows it; each writes PNG + PDF and a CSV of the
# plotted numbers.


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
        args=stage_args("ablation-timestep"),
        code=code_version("ablation-timestep"),
    shell:
        stage_cmd("ablation-timestep")


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
        args=stage_args("fig-normality"),
        code=code_version("fig-normality"),
    shell:
        stage_cmd("fig-normality")


rule fig_accuracy:
    input:
        accuracy="results/{dataset}/tables/accuracy.csv",
    output:
        png=figure("accuracy_vs_ipc"),
        pdf="results/{dataset}/figures/accuracy_vs_ipc.pdf",
        data="results/{dataset}/figures/accuracy_vs_ipc.csv",
    log:
        "logs/{dataset}/figures/accuracy_vs_ipc.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("fig-accuracy"),
        code=code_version("fig-accuracy"),
    shell:
        stage_cmd("fig-accuracy")


rule fig_timestep:
    input:
        ablation_files,
    output:
        png=figure("timestep"),
        pdf="results/{dataset}/figures/timestep.pdf",
        data="results/{dataset}/figures/timestep.csv",
    log:
        "logs/{dataset}/figures/timestep.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("fig-timestep"),
        code=code_version("fig-timestep"),
    shell:
        stage_cmd("fig-timestep")


rule fig_group_sampling:
    input:
        selected=every_class("results/{dataset}/selected/ipc{ipc}/{cls}.h5", ipc=config["select"]["ipc"]),
        accuracy=lambda wc: group_sampling_accuracy(wc) or [],
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
        args=stage_args("fig-group-sampling"),
        code=code_version("fig-group-sampling"),
    shell:
        stage_cmd("fig-group-sampling")


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
        args=stage_args("fig-samples"),
        code=code_version("fig-samples"),
    shell:
        stage_cmd("fig-samples")


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
        args=stage_args("fig-storage"),
        code=code_version("fig-storage"),
    shell:
        stage_cmd("fig-storage")


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
        args=stage_args("cost-table"),
        code=code_version("cost-table"),
    shell:
        stage_cmd("cost-table")


rule sanity_table:
    input:
        unpack(sanity_inputs),
    output:
        csv="results/{dataset}/tables/sanity.csv",
        md=table("sanity.md"),
    log:
        "logs/{dataset}/tables/sanity.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=stage_args("sanity"),
        code=code_version("sanity"),
    shell:
        stage_cmd("sanity")


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
        args=stage_args("teacher-table"),
        code=code_version("teacher-table"),
    shell:
        stage_cmd("teacher-table")
