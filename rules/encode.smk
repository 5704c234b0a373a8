# docs/method.md §1: encode, one job per class.


# Per-class jobs take one thread each (encode: encode.threads), so two run at once on 2 cores (--set-threads to change).
rule encode:
    input:
        unpack(with_models("pipeline", images=class_images)),
    output:
        "results/{dataset}/latents/{cls}.h5",
    log:
        "logs/{dataset}/encode/{cls}.log",
    benchmark:
        "benchmarks/{dataset}/encode/{cls}.tsv"
    priority: 3  # the chain every D3HR job waits for
    conda:
        "../envs/d3hr.yaml"
    threads: config["encode"]["threads"]  # on a GPU: JPEG decoding in parallel
    resources:
        gpu=1,
    params:
        args=stage_args("encode"),
        code=code_version("encode", images=images_fingerprint("train", subset=True)),
    shell:
        stage_cmd("encode")
