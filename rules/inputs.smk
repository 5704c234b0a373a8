# The input functions of the rules, and the other functions their parameters' sources name (fn:... in
# d3hr/stages.py), one section per rule file. rules/common.smk holds the configuration and the command lines.

# ---------------------------------------------------------------- datasets, classes, models, targets


def ds(wc):
    return config["datasets"][wc.dataset]


def dataset_root_of(wc):
    return dataset_root(wc.dataset, ds(wc))


def classes_of(wc):
    return CLASSES[wc.dataset]


def n_classes(wc):
    return len(CLASSES[wc.dataset])


def model_label_of(wc):
    return LABELS[wc.dataset][wc.cls]


def labels_of(wc):
    return [LABELS[wc.dataset][c] for c in CLASSES[wc.dataset]]


def class_dir(wc):
    return f"{dataset_root_of(wc)}/train/{wc.cls}"


IMAGE_SUFFIXES = tuple(IMAGE_EXTENSIONS)


@functools.cache  # one listing per class folder and run (every job of the class asks)
def class_listing(dataset, split, cls):
    """The image files of a user's class folder as sorted (name, size, mtime_ns) rows, from one directory scan."""
    folder = Path(dataset_root(dataset, config["datasets"][dataset])) / split / cls
    try:
        with os.scandir(folder) as entries:
            rows = sorted(
                (e.name, (st := e.stat()).st_size, st.st_mtime_ns)
                for e in entries
                if e.name.lower().endswith(IMAGE_SUFFIXES) and e.name[0] != "." and e.is_file()
            )
    except (FileNotFoundError, NotADirectoryError):
        raise WorkflowError(f"{folder}: class folder not found") from None
    if not rows:
        raise WorkflowError(f"{folder}: empty class folder (no image files); add its images or remove the class")
    return tuple(rows)


def class_input(dataset, split, cls):
    """A class's folder, the input of the jobs that read its images: for the embedded dataset the folder that
    `export_embedded` makes; for a user's dataset the folder itself, checked, whose files the jobs' `code` param
    fingerprints (images_fingerprint). One path a class, not one a file: Snakemake checks each input
    file of each job, which took 270 s for ImageNet's 1.3 M files (docs/scaling.md, "DAG at ImageNet's size")."""
    if not config["datasets"][dataset].get("embedded"):
        class_listing(dataset, split, cls)
    return f"{dataset_root(dataset, config['datasets'][dataset])}/{split}/{cls}"


def n_class_images(dataset, split, cls):
    return len(class_listing(dataset, split, cls))


def class_images(wc):
    return class_input(wc.dataset, "train", wc.cls)


def split_images(*splits):
    """The class folders of every class in `splits`."""
    return lambda wc: [class_input(wc.dataset, split, c) for split in splits for c in CLASSES[wc.dataset]]


def _fingerprint(rows):
    return hashlib.blake2b(repr(rows).encode(), digest_size=12).hexdigest()


@functools.cache  # one per class folder and run (every IPC's job asks)
def class_fingerprint(dataset, split, cls, subset):
    rows = class_listing(dataset, split, cls)
    if subset:
        rows = image_subset(rows, config["invert"]["max_images_per_class"], config["seed"], cls)
    return _fingerprint(rows)


def images_fingerprint(*splits, subset=False):
    """For `code_version(stage, images=...)`: a function of a job's wildcards that hashes the names, sizes and
    modification times of the image files the job reads, from `splits` of the job's class ({cls}) or, without one,
    of every class. Where it changes (an image added, removed or rewritten), Snakemake's params trigger reruns the
    job, and only that job's class's chain; an encode job (subset=True) sees only its invert.max_images_per_class
    files. The embedded dataset's folders are outputs of `export_embedded`, which Snakemake tracks itself: ''."""

    def fn(wc):
        if ds(wc).get("embedded"):
            return ""
        classes = [wc.cls] if hasattr(wc, "cls") else CLASSES[wc.dataset]
        rows = [(split, c, class_fingerprint(wc.dataset, split, c, subset)) for split in splits for c in classes]
        return _fingerprint(rows) if len(rows) > 1 else rows[0][2]

    return fn


def pipeline_dir(wc):
    m = ds(wc)["model"]
    return f"results/{wc.dataset}/models/pipeline" if m == "train" else m


def teacher_path(wc):
    t = ds(wc)["teacher"]
    return f"results/{wc.dataset}/models/teacher.pt" if t == "train" else t


def eval_resolution(wc):
    return ds(wc).get("decode_resize") or ds(wc)["resolution"]


def train_threads(wc):
    """Threads of each training job: half the cores (at most 8), so that `train_ldm` and `train_teacher` run side by
    side; on 2 cores one each (0.7x the core time of two threads each, one after the other: docs/benchmarks.md)."""
    cores = workflow.resource_settings.cores  # --cores (all: the machine's)
    cores = cores if isinstance(cores, int) and cores < 1 << 16 else 16  # a run without a core count
    return max(1, min(8, cores // 2))


def all_targets():
    out = []
    for name, d in config["datasets"].items():
        if d["model"] == "train":
            out.append(f"results/{name}/models/quality.json")
        for ipc in config["select"]["ipc"]:
            out.append(f"results/{name}/selected/ipc{ipc}/summary.csv")
            out += expand("results/{dataset}/images/d3hr/ipc{ipc}/{cls}", dataset=name, ipc=ipc, cls=CLASSES[name])
        if eval_methods():  # the sanity checks too, with figures on or off
            out += [f"results/{name}/tables/accuracy.md", f"results/{name}/tables/sanity.md"]
        if "hard" in EVAL.get("labels", ()) and eval_methods():
            out.append(f"results/{name}/tables/label_robust.md")
        if no_augmentation() and eval_methods():
            out.append(f"results/{name}/tables/aug_robust.md")
        if metrics_on():
            out.append(f"results/{name}/tables/representativeness.md")
        if diagnostics_on():
            out.append(f"results/{name}/tables/diagnostics.md")
        out += figure_targets(name)
    return out


# ---------------------------------------------------------------- models trained by the workflow (rules/models.smk)

# train.dit keys of the training loop; the others build the DiT
DIT_TRAIN_KEYS = ("steps", "batch_size", "lr", "ema_decay", "label_dropout")


def dit_settings(wc):
    dit = config["train"]["dit"]
    return {k: v for k, v in dit.items() if k in DIT_TRAIN_KEYS} | {
        "dit_kwargs": {k: v for k, v in dit.items() if k not in DIT_TRAIN_KEYS}
    }


# ---------------------------------------------------------------- inversion (rules/invert.smk)


def keep_timesteps(wc):
    """The timesteps an inversion keeps: the configured ones; a variant's, only the selection timestep."""
    return [config["select"]["timestep"]] if getattr(wc, "variant", None) else config["invert"]["keep_timesteps"]


# ---------------------------------------------------------------- decoding (rules/decode.smk)


def decode_input(wc):
    if wc.method in ("d3hr", "d3hr_nogroup"):
        return f"results/{wc.dataset}/selected/ipc{wc.ipc}/{wc.cls}.h5"
    return f"results/{wc.dataset}/baselines/{wc.method}/ipc{wc.ipc}/{wc.cls}.h5"


def latents_name(wc):
    """The dataset of the selected file to decode: one random draw of the Gaussian for d3hr_nogroup."""
    return "random_latents" if getattr(wc, "method", None) == "d3hr_nogroup" else "latents"


# ---------------------------------------------------------------- baselines (rules/baselines.smk)


def kmeans_timestep(wc):
    """kmeans (D4M): centroids noised to the selection timestep, then denoised like D3HR's latents; kmeans_vae:
    centroids decoded by the VAE alone (-1)."""
    return config["select"]["timestep"] if wc.method == "kmeans" else -1


# ---------------------------------------------------------------- evaluation (rules/evaluate.smk)


def eval_methods():
    return EVAL.get("methods") or []


def image_methods():
    """Methods whose distilled images exist for every IPC: D3HR, and the baselines that are evaluated."""
    return ["d3hr"] + [m for m in eval_methods() if m not in ("d3hr", "full")]


def image_methods_of(wc):
    return image_methods()


def val_dirs(wc):
    return [f"{dataset_root_of(wc)}/val/{c}" for c in CLASSES[wc.dataset]]


def eval_class_dirs(wc):
    if wc.method == "full":
        return [f"{dataset_root_of(wc)}/train/{c}" for c in CLASSES[wc.dataset]]
    return image_dirs(wc.dataset, [wc.method], [wc.ipc], CLASSES[wc.dataset])


def eval_images_fingerprint(wc):
    """An evaluation job's images hash: only `full` reads the training split's folders (eval_class_dirs)."""
    return images_fingerprint("train")(wc) if wc.method == "full" else ""


def eval_epochs(wc):
    return EVAL["full_epochs"] if wc.method == "full" else EVAL["epochs"]


def eval_steps(wc):
    return EVAL["full_steps"] if wc.method == "full" else EVAL["steps"]


def eval_min_steps(wc):
    return EVAL["full_min_steps"] if wc.method == "full" else 0


def eval_ipcs():
    return [str(i) for i in config["select"]["ipc"]] + (["all"] if "full" in eval_methods() else [])


def eval_tables(wc):
    return [f"results/{wc.dataset}/eval/ipc{i}.csv" for i in eval_ipcs()]


def tables_dir(wc):
    return f"results/{wc.dataset}/tables"


def label_modes():
    """`-hard` in a result's name marks a hard-label student; soft-label results keep the plain name."""
    return [""] + (["-hard"] if "hard" in EVAL.get("labels", ()) else [])


def no_augmentation():
    """Whether students are also trained without augmentation (evaluate.augment: [true, false]), for the
    augmentation-robust scores: `-noaug` in a result's name; not for `full` (no random real set to compare with)."""
    return False in EVAL.get("augment", [True])


def eval_modes(ipc):
    """The name suffixes of a (method, IPC)'s students: label_modes(), and `-noaug` for the distilled sets."""
    return label_modes() + (["-noaug"] if no_augmentation() and str(ipc) != "all" else [])


def eval_files_of_ipc(wc):
    methods = ["full"] if wc.ipc == "all" else [m for m in EVAL["methods"] if m != "full"]
    return expand(
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}{labels}-seed{seed}.json",
        dataset=wc.dataset,
        method=methods,
        ipc=wc.ipc,
        student=EVAL["students"],
        labels=eval_modes(wc.ipc),
        seed=EVAL["seeds"],
    )


# ---------------------------------------------------------------- representativeness (rules/metrics.smk)


def metrics_on():
    return config["metrics"]["enabled"] and bool(eval_methods())


def metric_sets(wc):
    """(method, IPC, image folder) of every distilled set of one class: the image methods at every IPC, the ablation
    variants at theirs."""
    sets = [(m, i) for m in image_methods() for i in config["select"]["ipc"]]
    sets += [
        (f"variant_{v}", i) for v in ablation_variants() for i in ablation_ipcs(config)
    ]  # none when ablations are off
    return [(m, str(i), f"results/{wc.dataset}/images/{m}/ipc{i}/{wc.cls}") for m, i in sets]


def metric_set_specs(wc):
    return [f"{m}:{i}:{d}" for m, i, d in metric_sets(wc)]


def metric_dirs(wc):
    return [d for _, _, d in metric_sets(wc)]


# ---------------------------------------------------------------- figures and tables (rules/figures.smk)


def figures_on():
    return config["figures"]["enabled"]  # the schema's defaults fill the section and its keys


def ablation_on():
    return figures_on() and config["figures"]["timestep_ablation"]["enabled"]


def ablation_timesteps(wc):
    return config["figures"]["timestep_ablation"]["timesteps"] or config["invert"]["keep_timesteps"]


def qq_class_of(dataset):
    c = config["figures"]["qq_class"] or CLASSES[dataset][0]
    if c not in CLASSES[dataset]:
        raise WorkflowError(f"config: figures.qq_class {c!r} is not a class of dataset {dataset}")
    return c


def qq_class(wc):
    return qq_class_of(wc.dataset)


@functools.cache  # asked by every invert job
def stored_classes(dataset):
    """The classes whose inverted latents are stored, in class order: the first invert.store_classes and the Q-Q
    plot's; the timestep ablation runs on them."""
    n = config["invert"]["store_classes"]
    first = CLASSES[dataset] if n is None else CLASSES[dataset][:n]
    first, qq = set(first), qq_class_of(dataset)
    return [c for c in CLASSES[dataset] if c in first or c == qq]


def stores_inverted(wc):
    return "variant" not in dict(wc.items()) and wc.cls in stored_classes(wc.dataset)


def ablation_files(wc):
    """The timestep ablation of every class whose inverted latents are stored."""
    return expand(class_h5("ablation/timestep"), dataset=wc.dataset, cls=stored_classes(wc.dataset))


def normality_inputs(wc):
    """fig_normality's inputs: every class's Gaussian; latents and inverted latents of the Q-Q plot's class."""
    qq = {f"qq_{s}": class_h5(s).format(dataset=wc.dataset, cls=qq_class(wc)) for s in ("latents", "inverted")}
    return {"gaussian": every_class(class_h5("gaussian"))(wc)} | qq


def grid_classes(wc):
    return CLASSES[wc.dataset][: config["figures"]["grid_classes"]]


def image_dirs(dataset, methods, ipcs, classes):
    return [f"results/{dataset}/images/{m}/ipc{i}/{c}" for m in methods for i in ipcs for c in classes]


def group_sampling_accuracy(wc):
    """The accuracy table, when it compares D3HR with one random draw from the same Gaussian (else None)."""
    if {"d3hr", "d3hr_nogroup"} <= set(eval_methods()):
        return f"results/{wc.dataset}/tables/accuracy.csv"
    return None


def quality_json(wc):
    """The models' quality check, where the workflow trains them (it holds the teacher's val top-1); else None."""
    return f"results/{wc.dataset}/models/quality.json" if ds(wc)["model"] == "train" else None


def sanity_inputs(wc):
    """The sanity table's inputs: the accuracy and teacher-check tables, the teacher, the quality check if any."""
    tables = {k: f"results/{wc.dataset}/tables/{k}.csv" for k in ("accuracy", "teacher_check")}
    return tables | {"teacher": teacher_path(wc), "quality": quality_json(wc) or []}


def benchmark_root(wc):
    return f"benchmarks/{wc.dataset}"


def benchmark_files(wc):
    """The benchmark file of every job of the dataset's main run (not of the figure rules themselves)."""
    b, classes, ipcs = f"benchmarks/{wc.dataset}", CLASSES[wc.dataset], config["select"]["ipc"]
    out = [f"{b}/train_ldm.tsv", f"{b}/model_quality.tsv"] if ds(wc)["model"] == "train" else []
    out += [f"{b}/train_teacher.tsv"] if ds(wc)["teacher"] == "train" else []
    per_class = ["encode", "invert", "fit_gaussian"] + ["features", "metrics"] * metrics_on()
    per_class += ["diagnostics"] * diagnostics_on()
    per_ipc = ["select", "decode/d3hr"] + [f"decode/{m}" for m in image_methods() if m not in ("d3hr", "random_real")]
    per_ipc += [m for m in ("kmeans", "kmeans_vae") if m in eval_methods()]
    out += [f"{b}/{s}/{c}.tsv" for c in classes for s in per_class]
    out += [f"{b}/ablation_timestep/{c}.tsv" for c in stored_classes(wc.dataset)] * ablation_on()
    out += [f"{b}/{s}/ipc{i}/{c}.tsv" for c in classes for i in ipcs for s in per_ipc]
    runs = [(m, i) for m in eval_methods() for i in (["all"] if m == "full" else ipcs)]
    for v in ablation_variants():
        for i in ablation_ipcs(config):
            runs.append((f"variant_{v}", i))
        for s in variant_stages(v):
            for i in ablation_ipcs(config) if s not in ("invert", "fit_gaussian") else [None]:
                out += [f"{b}/variants/{v}/{s}/{'' if i is None else f'ipc{i}/'}{c}.tsv" for c in classes]
    for m, i in runs:
        labels = eval_modes(i) if not m.startswith("variant_") else [""]
        out += expand(
            f"{b}/eval/{m}/ipc{i}/{{s}}{{l}}-seed{{seed}}.tsv", s=EVAL["students"], l=labels, seed=EVAL["seeds"]
        )
    return out + ([f"{b}/prepare_val.tsv"] if eval_methods() else [])


def figure_targets(name):
    if not figures_on():
        return []
    r = f"results/{name}"
    out = [f"{r}/figures/{f}.png" for f in ("normality", "group_sampling", "storage", f"samples_ipc{grid_ipc(config)}")]
    out += [f"{r}/tables/costs.md", f"{r}/tables/teacher_check.csv"]
    out += [f"{r}/figures/timestep.png"] * ablation_on() + [f"{r}/figures/representativeness.png"] * metrics_on()
    if eval_methods():
        out += [f"{r}/figures/accuracy_vs_ipc.png"]
        out += [f"{r}/tables/ablation.md"] * bool(ablation_variants())
    return out


# ---------------------------------------------------------------- off-class diagnostics (rules/diagnostics.smk)


STRUCTURE_STORED = structure_stored(config)  # the config is validated in common.smk, before this file


def structure_timestep(wc):
    """The selection timestep, where the inversion stores the covariance factor and reference latents, when a job
    reads them (d3hr.config.structure_stored), else -1; the two below likewise."""
    return config["select"]["timestep"] if STRUCTURE_STORED else -1


def structure_cov_rank(wc):
    return config["invert"]["cov_rank"] if STRUCTURE_STORED else 0


def structure_reference_images(wc):
    return config["invert"]["reference_images"] if STRUCTURE_STORED else 0


def diagnostics_on():
    return config["diagnostics"]["enabled"]


def diagnostic_ipcs():
    """The IPCs whose sets the diagnostics score: the ablation's when variants run, else the sample grids' (when it
    is one of select.ipc: with figures off it need not be), else the largest."""
    if ablation_variants():
        return ablation_ipcs(config)
    ipcs = config["select"]["ipc"]
    return [grid_ipc(config)] if grid_ipc(config) in ipcs else [max(ipcs)]


def diagnostic_sets(wc):
    """(name, folder) of the class's generative sets (D3HR and the latent baselines) and ablation variants."""
    methods = [m for m in image_methods() if m != "random_real"] + [f"variant_{v}" for v in ablation_variants()]
    return [
        (f"{m}@ipc{i}", f"results/{wc.dataset}/images/{m}/ipc{i}/{wc.cls}") for i in diagnostic_ipcs() for m in methods
    ]


def diagnostic_dirs(wc):
    return [d for _, d in diagnostic_sets(wc)]


def diagnostic_set_specs(wc):
    return [f"{n}:{d}" for n, d in diagnostic_sets(wc)]


# ---------------------------------------------------------------- ablation variants (rules/variants.smk)

VARIANT_STAGES = ("invert", "select", "decode")  # the stages whose config keys (invert.*, ...) a variant may change


def ablation_variants():
    """The ablation variants, when ablations are on (they are compared by student accuracy: evaluate must be too)."""
    a = config["ablation"]
    return a["variants"] if a["enabled"] and eval_methods() else {}


def ablation_variants_of(wc):
    return ablation_variants()


def variant_start(variant):
    """The first stage (of VARIANT_STAGES) whose config keys the variant changes."""
    keys = variant_overrides(config["ablation"]["variants"][variant])
    return min(VARIANT_STAGES.index(k.split(".")[0]) for k in keys)


def variant_stages(variant):
    """The rules a variant runs: fit_gaussian with invert, and every stage after its first."""
    stages = list(VARIANT_STAGES[variant_start(variant) :])
    return stages[:1] + ["fit_gaussian"] + stages[1:] if stages[0] == "invert" else stages


def variant_file(wc, stage):
    """The variant's own file of `stage` (gaussian, selected) if it runs that stage, else the main run's."""
    own = {"gaussian": "invert", "selected": "select"}[stage] in variant_stages(wc.variant)
    root = f"results/{wc.dataset}/variants/{wc.variant}" if own else f"results/{wc.dataset}"
    return f"{root}/{stage}/{wc.cls}.h5" if stage == "gaussian" else f"{root}/selected/ipc{wc.ipc}/{wc.cls}.h5"


def ablation_eval_files(wc):
    """Every student of each variant, and of D3HR and the generative baselines at the same IPC."""
    base = [m for m in ("d3hr", "d3hr_nogroup", "dit_noise", "random_real") if m in eval_methods()]
    return expand(
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}-seed{seed}.json",
        dataset=wc.dataset,
        method=base + [f"variant_{v}" for v in ablation_variants()],
        ipc=ablation_ipcs(config),
        student=EVAL["students"],
        seed=EVAL["seeds"],
    )


def check_ipc_fits():
    """Before any job runs: an IPC above a class's number of training images, where a method draws IPC of them (where
    Snakemake plans the run; a cluster job, which parses the workflow again, does not list every class folder again)."""
    needs = [m for m in ("random_real", "kmeans", "kmeans_vae") if m in eval_methods() and not workflow.remote_exec]
    ipc, sub = max(config["select"]["ipc"]), config["invert"]["max_images_per_class"]
    if sub and sub < ipc:
        raise WorkflowError(f"config: invert.max_images_per_class {sub} is below the largest select.ipc {ipc}")
    for name, d in config["datasets"].items():
        for c in CLASSES[name] if needs else []:
            n = (
                EMBEDDED_IMAGES_PER_CLASS[d["embedded"]] - d["val_per_class"]
                if d.get("embedded")
                else n_class_images(name, "train", c)
            )
            if ipc > n:
                raise WorkflowError(
                    f"config: select.ipc {ipc} exceeds the {n} training images of class {c!r} of dataset {name} "
                    f"({', '.join(needs)} draw IPC of them): lower select.ipc, or add images to the class"
                )


check_ipc_fits()
