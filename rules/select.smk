# docs/method.md §4: group sampling, one job per class and IPC.

SELECT_FLAGS = flags(
    ipc=wildcard("ipc"),
    m=config["select"]["m"],
    timestep=config["select"]["timestep"],
    chunk_groups=config["select"]["chunk_groups"],
    l_mu=config["select"]["weights"]["mu"],
    l_sigma=config["select"]["weights"]["sigma"],
    l_skew=config["select"]["weights"]["skew"],
    skew_mode=config["select"]["skew_mode"],
    seed=config["seed"],
)


rule select:
    input:
        "results/{dataset}/gaussian/{cls}.h5",
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
    params:
        args=SELECT_FLAGS,
        code=code_version("select"),
    shell:
        "python -m d3hr select --threads {threads} {params.args} --gaussian {input:q} --out {output:q} > {log:q} 2>&1"


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
        code=code_version("select"),
    shell:
        "python -m d3hr summarize-selection --out {output:q} {input:q} > {log:q} 2>&1"
