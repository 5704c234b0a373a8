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
        args=stage_args("export-embedded"),
        code=code_version("export-embedded"),
    shell:
        stage_cmd("export-embedded")
