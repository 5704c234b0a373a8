# docs/method.md §4: group sampling, one job per class and IPC.


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
    threads: 1  # per-class jobs: one thread each, so two run at once on 2 cores (--set-threads to change)
    resources:
        mem_mb=1000,
    params:
        m=config["select"]["m"],
        timestep=config["select"]["timestep"],
        chunk_groups=config["select"]["chunk_groups"],
        w=config["select"]["weights"],
        skew_mode=config["select"]["skew_mode"],
        seed=config["seed"],
        code=code_version("select"),
    shell:
        "python -m d3hr select --threads {threads} --gaussian {input:q} --ipc {wildcards.ipc} --m {params.m}"
        " --timestep {params.timestep} --chunk-groups {params.chunk_groups} --seed {params.seed}"
        " --l-mu {params.w[mu]} --l-sigma {params.w[sigma]} --l-skew {params.w[skew]} --skew-mode {params.skew_mode}"
        " --out {output:q} > {log:q} 2>&1"


rule selection_summary:
    input:
        lambda wc: expand("results/{{dataset}}/selected/ipc{{ipc}}/{cls}.h5", cls=CLASSES[wc.dataset]),
    output:
        "results/{dataset}/selected/ipc{ipc}/summary.csv",
    log:
        "logs/{dataset}/select/ipc{ipc}/summary.log",
    conda:
        "../envs/d3hr.yaml"
    shell:
        "python -m d3hr summarize-selection --out {output:q} {input:q} > {log:q} 2>&1"
