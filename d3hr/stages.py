"""Every stage of the CLI and of the workflow, declared once (torch-free: the Snakefile and the parser import it).

A stage is a function of a stage module; its signature is the declaration of its parameters: names, types
(annotations) and, for the few that have one, defaults. `d3hr <stage> --flag ...` is built from the signature
(`d3hr.cli`), and a rule's command line from the `sources` below (`rules/common.smk`: `stage_cmd`), which say where
each value comes from in a workflow run:

    cfg:a.b       config["a"]["b"] (with the variant's value under an ablation variant: rules/common.smk)
    ds:key        the job's dataset section
    wc:name       a wildcard of the job
    fn:name       an input function of rules/common.smk, called with the job's wildcards
    in:name       the rule's named input `name` ("in:*": all of its inputs, as positional arguments)
    out / out:n   the rule's output (or its named output `n`)

The parameters `threads` and `device` are the process's: `d3hr.cli.main` sets torch's threads and leases the device
once, and passes them to stages whose signature has them. tests/test_stages.py checks that every parameter of every
stage has a source (or a default), and that every key of the config schema reaches a stage or a rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stage:
    target: str  # "module:function" of the d3hr package
    help: str
    sources: dict = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.target.split(":")[0]

    @property
    def function(self) -> str:
        return self.target.split(":")[1]


DATA = dict(root="fn:dataset_root_of", classes="fn:classes_of", resolution="ds:resolution", channels="ds:channels",
            seed="cfg:seed")
MODEL = dict(pipeline="in:pipeline", device="cfg:device", model_precision="cfg:model_precision")
GROUPS = dict(m="cfg:select.m", chunk_groups="cfg:select.chunk_groups", l_mu="cfg:select.weights.mu",
              l_sigma="cfg:select.weights.sigma", l_skew="cfg:select.weights.skew", skew_mode="cfg:select.skew_mode",
              seed="cfg:seed")
FIG = dict(png="out:png", pdf="out:pdf")

STAGES: dict[str, Stage] = {
    "export-embedded": Stage(
        "data:export_embedded", "export classes of an embedded dataset to image folders",
        dict(name="ds:embedded", classes="wc:cls", out="fn:dataset_root_of", val_per_class="ds:val_per_class",
             seed="cfg:seed", resolution="ds:resolution")),
    "train-ldm": Stage(
        "train:train_ldm", "train a small VAE + DiT and save a DiTPipeline directory",
        DATA | dict(out="out", vae="cfg:train.vae", dit="fn:dit_settings")),
    "train-teacher": Stage(
        "train:train_teacher", "train the teacher classifier on the training split",
        DATA | dict(out="out", **{k: f"cfg:train.teacher.{k}"
                                  for k in ("arch", "epochs", "min_steps", "batch_size", "lr", "weight_decay",
                                            "crop_scale", "precision")})),
    "import-classifier": Stage(
        "nets:import_weights",
        "a teacher checkpoint from torchvision/timm weights (e.g. ImageNet ResNet-18), with its input norm"),
    "quality": Stage(
        "train:model_quality", "VAE PSNR, teacher top-1, teacher top-1 on DiT samples -> JSON",
        DATA | dict(pipeline="in:pipeline", model_precision="cfg:model_precision", teacher="in:teacher",
                    out="out:json", samples="out:samples", samples_per_class="cfg:train.quality.samples_per_class",
                    guidance="cfg:decode.guidance_scale", num_steps="cfg:invert.num_inference_steps")),
    "encode": Stage(
        "encode:encode_class", "VAE latents of one class folder -> HDF5",
        MODEL | dict(class_dir="fn:class_dir", out="out", resolution="ds:resolution", channels="ds:channels",
                     batch_size="cfg:encode.batch_size", sample_posterior="cfg:encode.sample_posterior",
                     on_bad_image="cfg:encode.on_bad_image", seed="cfg:seed",
                     max_images="cfg:invert.max_images_per_class")),
    "invert": Stage(
        "invert:invert_class", "DDIM inversion with CFG of one class's latents -> HDF5",
        MODEL | dict(latents="in:latents", out="out", cls="wc:cls", label="fn:model_label_of",
                     timesteps="fn:keep_timesteps", num_steps="cfg:invert.num_inference_steps",
                     guidance="cfg:invert.guidance_scale", batch_size="cfg:invert.batch_size",
                     store="fn:stores_inverted", structure_timestep="fn:structure_timestep",
                     cov_rank="fn:structure_cov_rank", reference_images="fn:structure_reference_images",
                     compile="cfg:compile")),
    "fit-gaussian": Stage(
        "gaussian:fit_class", "per-dimension Gaussian + normality stats -> HDF5",
        dict(inverted="in:inverted", latents="in:latents", out="out")),
    "select": Stage(
        "group_sampling:select_class", "group sampling -> HDF5",
        GROUPS | dict(gaussian="in:gaussian", out="out", ipc="wc:ipc", timestep="cfg:select.timestep",
                      where="cfg:device", cov_rank="cfg:select.cov_rank", rescale="cfg:select.rescale",
                      criterion="cfg:select.criterion")),
    "summarize-selection": Stage(
        "group_sampling:write_summary", "one CSV row per selected file", dict(selected="in:*", out="out")),
    "decode": Stage(
        "decode:decode_class", "DDIM from the selected latents + VAE decode -> PNGs",
        MODEL | dict(selected="in:latents", out="out", guidance="cfg:decode.guidance_scale",
                     num_steps="cfg:invert.num_inference_steps", resize="ds:decode_resize",
                     batch_size="cfg:decode.batch_size", latents_name="fn:latents_name", start="cfg:decode.start",
                     compile="cfg:compile")),
    "baseline-real": Stage(
        "baselines:random_real_class", "IPC random real images of one class -> PNGs",
        dict(class_dir="fn:class_dir", ipc="wc:ipc", seed="cfg:seed", resolution="ds:resolution",
             channels="ds:channels", out="out")),
    "baseline-noise": Stage(
        "baselines:noise_class", "pure-noise latents for plain DiT sampling -> HDF5",
        dict(pipeline="in:pipeline", cls="wc:cls", label="fn:model_label_of", ipc="wc:ipc", seed="cfg:seed",
             num_steps="cfg:invert.num_inference_steps", guidance="cfg:decode.guidance_scale", out="out")),
    "baseline-kmeans": Stage(
        "baselines:kmeans_class", "K-means centroids of VAE latents -> HDF5",
        dict(latents="in:latents", pipeline="in:pipeline", cls="wc:cls", label="fn:model_label_of", ipc="wc:ipc",
             seed="cfg:seed", timestep="fn:kmeans_timestep", num_steps="cfg:invert.num_inference_steps",
             guidance="cfg:decode.guidance_scale", out="out")),
    "prepare-val": Stage(
        "valset:prepare_val", "the validation split, once, as uint8 HDF5 (resized, centre-cropped)",
        dict(val_dirs="fn:val_dirs", labels="fn:labels_of", classes="fn:classes_of", resolution="fn:eval_resolution",
             channels="ds:channels", crop="cfg:evaluate.val_crop", out="out")),
    "evaluate": Stage(
        "evaluate:evaluate_set", "train a student on a distilled set with teacher soft labels -> JSON",
        dict(class_dirs="fn:eval_class_dirs", val="in:val", labels="fn:labels_of", teacher="in:teacher",
             student="wc:student", method="wc:method", ipc="wc:ipc", seed="wc:seed", resolution="fn:eval_resolution",
             channels="ds:channels", epochs="fn:eval_epochs", steps="fn:eval_steps", min_steps="fn:eval_min_steps",
             device="cfg:device", out="out", compile="cfg:compile",
             **{k: f"cfg:evaluate.{k}" for k in ("batch_size", "lr", "weight_decay", "schedule", "mix", "temperature",
                                                 "precision", "builder")})),
    "collect-eval": Stage("tables:write_collected", "evaluation JSON files -> one tidy CSV",
                          dict(files="in:*", out="out")),
    "tables": Stage("tables:write_tables", "tidy CSVs -> accuracy.csv, accuracy.md, accuracy.tex",
                    dict(csvs="in:*", out_dir="fn:tables_dir")),
    "features": Stage(
        "metrics:real_features", "teacher and VAE features of one class's real images -> HDF5",
        MODEL | dict(teacher="in:teacher", class_dir="fn:class_dir", resolution="fn:eval_resolution",
                     channels="ds:channels", max_images="cfg:metrics.max_real", seed="cfg:seed", out="out")),
    "set-scores": Stage(
        "metrics:set_scores_class", "MMD, coverage, diversity of one class's distilled sets -> CSV",
        MODEL | dict(teacher="in:teacher", features="in:features", sets="fn:metric_set_specs", cls="wc:cls",
                     resolution="fn:eval_resolution", channels="ds:channels", k="cfg:metrics.k", out="out")),
    "representativeness": Stage(
        "tables:write_representativeness",
        "per-class set scores + accuracy -> representativeness and metric-correlation tables",
        dict(score_csvs="in:scores", accuracy_csv="in:accuracy", out_csv="out:csv", out_md="out:md",
             corr_csv="out:corr_csv", corr_md="out:corr_md")),
    "fig-representativeness": Stage(
        "figures:plot_representativeness", "representativeness table -> the MMD x diversity figure",
        FIG | dict(rep_csv="in:csv")),
    "label-robust": Stage(
        "tables:write_label_robust", "soft- and hard-label runs -> HLR, IOR, LRS table",
        dict(csvs="in:*", w="cfg:evaluate.lrs_weight", csv="out:csv", md="out:md")),
    "aug-robust": Stage(
        "tables:write_aug_robust", "runs with and without augmentation -> augmentation-robust score (ARS) table",
        dict(csvs="in:*", w="cfg:evaluate.ars_weight", csv="out:csv", md="out:md")),
    "ablation-table": Stage(
        "tables:ablation_table", "table + figure: student top-1 of the ablation variants",
        FIG | dict(eval_files="in:*", variants="fn:ablation_variants_of", out_csv="out:csv", out_md="out:md")),
    "sanity": Stage(
        "sanity:write_sanity", "checks of the tables: teacher, full vs random real, random real vs IPC, recognition",
        dict(accuracy_csv="in:accuracy", teacher_check_csv="in:teacher_check", quality_json="fn:quality_json",
             teacher="in:teacher", teacher_min_top1="cfg:sanity.teacher_min_top1",
             recognition_min="cfg:sanity.recognition_min", csv="out:csv", md="out:md")),
    "ablation-timestep": Stage(
        "timestep_ablation:timestep_ablation_class",
        "inversion-timestep ablation of one class: select + decode at every kept timestep, teacher top-1 -> HDF5",
        MODEL | GROUPS | dict(gaussian="in:gaussian", teacher="in:teacher", out="out",
                              timesteps="fn:ablation_timesteps", ipc="cfg:figures.timestep_ablation.ipc",
                              m="cfg:figures.timestep_ablation.m", guidance="cfg:decode.guidance_scale",
                              num_steps="cfg:invert.num_inference_steps", batch_size="cfg:decode.batch_size",
                              compile="cfg:compile")),
    "fig-normality": Stage(
        "figures:plot_normality", "figure: normality of VAE latents vs inverted latents",
        FIG | dict(gaussian_files="in:gaussian", latents_h5="in:qq_latents", inverted_h5="in:qq_inverted",
                   timestep="cfg:select.timestep", n_dims="cfg:figures.qq_dims", table_csv="out:table",
                   qq_csv="out:qq")),
    "fig-accuracy": Stage("figures:plot_accuracy_vs_ipc", "figure: student top-1 vs IPC per method and student",
                          FIG | dict(accuracy_csv="in:accuracy", data_csv="out:data")),
    "fig-timestep": Stage(
        "figures:plot_timestep", "figure: teacher top-1 on decoded images vs inversion timestep",
        FIG | dict(ablation_files="in:*", main_timestep="cfg:select.timestep", data_csv="out:data")),
    "fig-group-sampling": Stage(
        "figures:plot_group_sampling", "figure: best score vs m, score distribution, group vs random",
        FIG | dict(selected_files="in:selected", accuracy_csv="fn:group_sampling_accuracy", curve_csv="out:curve",
                   summary_csv="out:summary")),
    "fig-samples": Stage(
        "figures:sample_grid", "figure: distilled images per class and method",
        FIG | dict(images="in:*", methods="fn:image_methods_of", classes="fn:grid_classes", ipc="wc:ipc",
                   per_class="cfg:figures.grid_per_class", data_csv="out:data")),
    "fig-storage": Stage(
        "figures:storage_figure", "figure + table: Gaussian parameters vs distilled images, bytes per class",
        FIG | dict(gaussian_files="in:gaussian", images="in:images", ipcs="cfg:select.ipc", classes="fn:classes_of",
                   table_csv="out:table")),
    "cost-table": Stage(
        "tables:write_cost_table", "per-stage wall time and peak memory from benchmark files",
        dict(benchmark_files="in:*", root="fn:benchmark_root", n_classes="fn:n_classes", csv="out:csv",
             md="out:md")),
    "diagnose": Stage(
        "diagnostics:diagnose_class",
        "off-class diagnostics of one class: Gaussian vs forward process, round trip, forward mean, teacher top-1 -> JSON",
        MODEL | dict(gaussian="in:gaussian", teacher="in:teacher", out="out", cls="wc:cls", label="fn:model_label_of",
                     timestep="cfg:select.timestep", guidance="cfg:decode.guidance_scale",
                     num_steps="cfg:invert.num_inference_steps", roundtrip_images="cfg:diagnostics.roundtrip_images",
                     image_sets="fn:diagnostic_set_specs", resolution="fn:eval_resolution", channels="ds:channels")),
    "diagnostics-table": Stage(
        "diagnostics:diagnostics_table", "every class's off-class diagnostics -> one table",
        dict(files="in:*", out_csv="out:csv", out_md="out:md")),
    "teacher-table": Stage(
        "tables:write_teacher_check", "teacher top-1 on every distilled set -> CSV",
        dict(teacher="in:teacher", images="in:images", methods="fn:image_methods_of", ipcs="cfg:select.ipc",
             classes="fn:classes_of", labels="fn:labels_of", resolution="fn:eval_resolution", channels="ds:channels",
             out="out")),
}


def code_version(stage: str, cache_dir=None) -> str:
    """The code version of `d3hr <stage>`: a hash of its module's code and of every module that it imports
    (d3hr/versions.py)."""
    from .versions import module_version

    return module_version(STAGES[stage].module, cache_dir)
