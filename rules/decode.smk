rule decode:
    input:
        selected="results/{dataset}/selected/ipc{ipc}/{cls}.h5",
        pipeline=pipeline_dir,
    output:
        directory("results/{dataset}/images/ipc{ipc}/{cls}"),
    params:
        guidance=config["decode"]["guidance_scale"],
        steps=config["invert"]["num_inference_steps"],
        resize=lambda wc: ds(wc).get("decode_resize", 0),
        batch_size=config["decode"]["batch_size"],
        device=config["device"],
        code=code_version("decode"),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/{dataset}/decode/ipc{ipc}/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/decode/ipc{ipc}/{cls}.tsv"
    conda:
        "../envs/d3hr.yaml"
    shell:
        "d3hr decode --threads {threads} --device {params.device} --pipeline {input.pipeline:q}"
        " --selected {input.selected:q} --guidance {params.guidance} --num-steps {params.steps}"
        " --resize {params.resize} --batch-size {params.batch_size} --out {output:q} > {log:q} 2>&1"
