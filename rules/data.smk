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
        name=lambda wc: ds(wc)["embedded"],
        val_per_class=lambda wc: ds(wc)["val_per_class"],
        resolution=lambda wc: ds(wc)["resolution"],
        seed=config["seed"],
        code=code_version("export"),
    shell:
        "python -m d3hr export-embedded --name {params.name} --classes {wildcards.cls:q} --out data/{wildcards.dataset}"
        " --val-per-class {params.val_per_class} --seed {params.seed} --resolution {params.resolution} > {log:q} 2>&1"
