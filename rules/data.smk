# The embedded default dataset: exported once per class to the image-folder layout users' datasets have
# (docs/method.md, "Notation").


rule export_embedded:
    output:
        train=directory("data/{dataset}/train/{cls}"),
        val=directory("data/{dataset}/val/{cls}"),
    log:
        "logs/{dataset}/export/{cls}.log",
    conda:
        "../envs/d3hr.yaml"
    params:
        args=flags(
            name=ds_key("embedded"),
            val_per_class=ds_key("val_per_class"),
            resolution=ds_key("resolution"),
            seed=config["seed"],
        ),
        code=code_version("export"),
    shell:
        "python -m d3hr export-embedded {params.args} --classes {wildcards.cls:q} --out data/{wildcards.dataset} > {log:q} 2>&1"
