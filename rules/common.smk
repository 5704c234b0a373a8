# Configuration, validation and input functions shared by all rules (config/README.md; docs/method.md per step).

import json
import os
import shlex
from pathlib import Path

from d3hr import D3HRError
from d3hr import code_version as _code_version
from d3hr.config import apply_protocol, check_semantics, dataset_classes, dataset_root, grid_ipc, model_labels
from d3hr.data import IMAGE_EXTENSIONS
from d3hr.jobserver import start_server, stop_server
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

try:
    apply_protocol(config)  # evaluate.protocol: a named preset fills its keys before the schema's defaults
except D3HRError as e:
    raise WorkflowError(f"config: {e}")
validate(config, schema="../config/schema.yaml")
try:
    check_semantics(config)
    CLASSES = {name: dataset_classes(name, ds) for name, ds in config["datasets"].items()}
    # the model's label of every class, known before any job runs (a per-class param: adding a class reruns nothing)
    LABELS = {name: model_labels(name, ds, CLASSES[name]) for name, ds in config["datasets"].items()}
except D3HRError as e:
    raise WorkflowError(f"config: {e}")


EVAL = config.get("evaluate") or {}


def code_version(stage):
    """The stage's code version, a param of its rules (so editing the stage's modules reruns its jobs), kept by the
    hash of the modules' bytes in .snakemake/d3hr/code/ so that a Snakefile parse does not parse d3hr's modules again.
    """
    return _code_version(stage, cache_dir=".snakemake/d3hr")


# Every job runs `python -m d3hr` from this workflow's own folder, whatever the software deployment (the `.venv` of
# `make run`, `--sdm conda`, a cluster node, where the job re-reads this file): the environment provides the
# dependencies, this checkout provides the code. Jobs inherit PYTHONPATH from Snakemake.
if workflow.basedir not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p))


# One job server per local run (d3hr/jobserver.py): jobs fork from a process that imported torch & co. once.
JOB_SERVER = []


onstart:
    JOB_SERVER.append(start_server(config.get("job_server", True) and workflow.local_exec))


onsuccess:
    stop_server(JOB_SERVER[0] if JOB_SERVER else None)


onerror:
    stop_server(JOB_SERVER[0] if JOB_SERVER else None)


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    cls="[^/]+",
    ipc=r"\d+|all",
    method="[a-z_0-9]+",
    student="[A-Za-z0-9_.]+",
    seed=r"\d+",
    split="train|val",
    variant="[a-z0-9_]+",


def ds(wc):
    return config["datasets"][wc.dataset]


def flags(**spec):
    """A stage's command-line flags as one params function (each rule file defines its stages' flags beside the rule).

    `name=value` gives `--name value`, underscores becoming dashes. A value is a constant or a function of the
    wildcards; a list gives several values, a dict its JSON, True a bare flag, False or None nothing. Values are
    quoted for the shell."""

    def fn(wc):
        out = []
        for name, v in spec.items():
            v = v(wc) if callable(v) else v
            if v is None or v is False:
                continue
            flag = f"--{name.replace('_', '-')}"
            out.append(flag)
            if v is not True:
                vals = v if isinstance(v, (list, tuple)) else [json.dumps(v) if isinstance(v, dict) else v]
                if not vals:
                    raise WorkflowError(f"config: {flag} of {wc} is an empty list")
                out += [shlex.quote(str(x)) for x in vals]
        return " ".join(out)

    return fn


def figure(name, caption=None, folder="figures", category="Figures"):
    """A figure's PNG, shown in the report under `category` with the caption report/{caption or name}.rst."""
    path = f"results/{{dataset}}/{folder}/{name}.png"
    return report(path, caption=f"../report/{caption or name}.rst", category=category)


def table(name, caption=None):
    """A table (name with its extension), shown in the report under Tables with the caption report/{caption}.rst."""
    stem = name.rsplit(".", 1)[0]
    return report(f"results/{{dataset}}/tables/{name}", caption=f"../report/{caption or stem}.rst", category="Tables")


def wildcard(name):
    return lambda wc: getattr(wc, name)


def ds_key(key):
    """A key of the job's dataset section."""
    return lambda wc: ds(wc)[key]


def train_threads(wc):
    """Threads of each training job: half the cores (at most 8), so that `train_ldm` and `train_teacher` run side by
    side; on 2 cores one each (0.7x the core time of two threads each, one after the other: docs/benchmarks.md)."""
    cores = workflow.resource_settings.cores  # --cores (all: the machine's)
    cores = cores if isinstance(cores, int) and cores < 1 << 16 else 16  # a run without a core count
    return max(1, min(8, cores // 2))


def class_dir(wc):
    return f"{dataset_root_of(wc)}/train/{wc.cls}"


def class_input(dataset, split, cls):
    """An embedded class is a folder made by `export_embedded`; a user's class is its list of image files, so that
    changing, adding or removing one image reruns that class's jobs (and only those)."""
    d = config["datasets"][dataset]
    folder = Path(dataset_root(dataset, d)) / split / cls
    if d.get("embedded"):
        return str(folder)
    if not folder.is_dir():
        raise WorkflowError(f"{folder}: class folder not found")
    files = sorted(
        str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise WorkflowError(f"{folder}: empty class folder (no image files); add its images or remove the class")
    return files


def class_images(wc):
    return class_input(wc.dataset, "train", wc.cls)


def split_images(*splits):
    """The image files (or the export's folders) of every class in `splits`."""

    def fn(wc):
        out = []
        for split in splits:
            for c in CLASSES[wc.dataset]:
                got = class_input(wc.dataset, split, c)
                out += [got] if isinstance(got, str) else got
        return out

    return fn


def dataset_root_of(wc):
    return dataset_root(wc.dataset, ds(wc))


def pipeline_dir(wc):
    m = ds(wc)["model"]
    return f"results/{wc.dataset}/models/pipeline" if m == "train" else m


def teacher_path(wc):
    t = ds(wc)["teacher"]
    return f"results/{wc.dataset}/models/teacher.pt" if t == "train" else t


def class_h5(stage):
    """The per-class HDF5 file of a stage: results/{dataset}/{stage}/{cls}.h5."""
    return f"results/{{dataset}}/{stage}/{{cls}}.h5"


def every_class(pattern, **values):
    """Input function: `pattern` for every class of the job's dataset (varying fastest), its other wildcards from the
    job or `values`."""
    return lambda wc: expand(pattern, **(dict(wc.items()) | values | {"cls": CLASSES[wc.dataset]}))


def with_models(*models, **inputs):
    """Named inputs for `unpack()`: the dataset's models (`pipeline`, `teacher`) that the job loads, plus `inputs`,
    each a path pattern over the job's wildcards or an input function."""

    def fn(wc):
        named = {k: v(wc) if callable(v) else v.format(**dict(wc.items())) for k, v in inputs.items()}
        return named | {m: {"pipeline": pipeline_dir, "teacher": teacher_path}[m](wc) for m in models}

    return fn


def model_label_of(wc):
    return LABELS[wc.dataset][wc.cls]


def labels_of(wc):
    return [LABELS[wc.dataset][c] for c in CLASSES[wc.dataset]]


def classes_of(wc):
    return CLASSES[wc.dataset]


def decode_input(wc):
    if wc.method in ("d3hr", "d3hr_nogroup"):
        return f"results/{wc.dataset}/selected/ipc{wc.ipc}/{wc.cls}.h5"
    return f"results/{wc.dataset}/baselines/{wc.method}/ipc{wc.ipc}/{wc.cls}.h5"


def eval_class_dirs(wc):
    if wc.method == "full":
        return [f"{dataset_root_of(wc)}/train/{c}" for c in CLASSES[wc.dataset]]
    return [f"results/{wc.dataset}/images/{wc.method}/ipc{wc.ipc}/{c}" for c in CLASSES[wc.dataset]]


def eval_resolution(wc):
    return ds(wc).get("decode_resize") or ds(wc)["resolution"]


def eval_train_input(wc):
    return split_images("train")(wc) if wc.method == "full" else eval_class_dirs(wc)


def eval_ipcs():
    return [str(i) for i in config["select"]["ipc"]] + (["all"] if "full" in eval_methods() else [])


def label_modes():
    """`-hard` in a result's name marks a hard-label student; soft-label results keep the plain name."""
    return [""] + (["-hard"] if "hard" in EVAL.get("labels", ()) else [])


def eval_files_of_ipc(wc):
    e = EVAL
    methods = ["full"] if wc.ipc == "all" else [m for m in e["methods"] if m != "full"]
    return expand(
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}{labels}-seed{seed}.json",
        dataset=wc.dataset,
        method=methods,
        ipc=wc.ipc,
        student=e["students"],
        labels=label_modes(),
        seed=e["seeds"],
    )


def all_targets():
    out = []
    for name, d in config["datasets"].items():
        if d["model"] == "train":
            out.append(f"results/{name}/models/quality.json")
        for ipc in config["select"]["ipc"]:
            out.append(f"results/{name}/selected/ipc{ipc}/summary.csv")
            out += expand("results/{dataset}/images/d3hr/ipc{ipc}/{cls}", dataset=name, ipc=ipc, cls=CLASSES[name])
        if eval_methods():
            out.append(f"results/{name}/tables/accuracy.md")
        if "hard" in EVAL.get("labels", ()) and eval_methods():
            out.append(f"results/{name}/tables/label_robust.md")
        if metrics_on():
            out.append(f"results/{name}/tables/representativeness.md")
        out += figure_targets(name)
    return out


# ---------------------------------------------------------------- figures and tables (rules/figures.smk)


def figures_cfg():
    return config["figures"]  # the schema's defaults fill the section and its keys


def figures_on():
    return figures_cfg()["enabled"]


def ablation_cfg():
    return figures_cfg()["timestep_ablation"]


def ablation_on():
    return figures_on() and ablation_cfg()["enabled"]


def eval_methods():
    return EVAL.get("methods") or []


def image_methods():
    """Methods whose distilled images exist for every IPC: D3HR, and the baselines that are evaluated."""
    return ["d3hr"] + [m for m in eval_methods() if m not in ("d3hr", "full")]


def qq_class(wc):
    c = figures_cfg()["qq_class"] or CLASSES[wc.dataset][0]
    if c not in CLASSES[wc.dataset]:
        raise WorkflowError(f"config: figures.qq_class {c!r} is not a class of dataset {wc.dataset}")
    return c


def normality_inputs(wc):
    """fig_normality's inputs: every class's Gaussian; latents and inverted latents of the Q-Q plot's class."""
    qq = {f"qq_{s}": class_h5(s).format(dataset=wc.dataset, cls=qq_class(wc)) for s in ("latents", "inverted")}
    return {"gaussian": every_class(class_h5("gaussian"))(wc)} | qq


def grid_classes(wc):
    return CLASSES[wc.dataset][: figures_cfg()["grid_classes"]]


def image_dirs(dataset, methods, ipcs, classes):
    return [f"results/{dataset}/images/{m}/ipc{i}/{c}" for m in methods for i in ipcs for c in classes]


def group_sampling_accuracy(wc):
    """The accuracy table, when it compares D3HR with one random draw from the same Gaussian."""
    if {"d3hr", "d3hr_nogroup"} <= set(eval_methods()):
        return f"results/{wc.dataset}/tables/accuracy.csv"
    return []


def benchmark_files(wc):
    """The benchmark file of every job of the dataset's main run (not of the figure rules themselves)."""
    d, b, classes = ds(wc), f"benchmarks/{wc.dataset}", CLASSES[wc.dataset]
    ipcs = config["select"]["ipc"]
    out = []
    if d["model"] == "train":
        out += [f"{b}/train_ldm.tsv", f"{b}/model_quality.tsv"]
    if d["teacher"] == "train":
        out.append(f"{b}/train_teacher.tsv")
    for c in classes:
        out += [f"{b}/encode/{c}.tsv", f"{b}/invert/{c}.tsv", f"{b}/fit_gaussian/{c}.tsv"]
        if ablation_on():
            out.append(f"{b}/ablation_timestep/{c}.tsv")
        for i in ipcs:
            out += [f"{b}/select/ipc{i}/{c}.tsv", f"{b}/decode/d3hr/ipc{i}/{c}.tsv"]
            for m in ("d3hr_nogroup", "dit_noise", "kmeans", "kmeans_vae"):
                if m in eval_methods():
                    out.append(f"{b}/decode/{m}/ipc{i}/{c}.tsv")
            for m in ("kmeans", "kmeans_vae"):
                if m in eval_methods():
                    out.append(f"{b}/{m}/ipc{i}/{c}.tsv")
    e = EVAL
    for m in eval_methods():
        for i in ["all"] if m == "full" else ipcs:
            out += expand(
                f"{b}/eval/{m}/ipc{i}/{{student}}{{labels}}-seed{{seed}}.tsv",
                student=e["students"],
                labels=label_modes(),
                seed=e["seeds"],
            )
    if eval_methods():
        out.append(f"{b}/prepare_val.tsv")
    if metrics_on():
        out += [f"{b}/{r}/{c}.tsv" for r in ("features", "metrics") for c in classes]
    for v in ablation_variants():
        i = config["ablation"]["ipc"]
        out += [f"{b}/ablation_variant/{v}/ipc{i}/{c}.tsv" for c in classes]
        out += expand(
            f"{b}/eval/variant_{v}/ipc{i}/{{student}}-seed{{seed}}.tsv", student=e["students"], seed=e["seeds"]
        )
    return out


def ablation_variants():
    """The ablation variants, when ablations are on (they are compared by student accuracy: evaluate must be too)."""
    a = config["ablation"]
    return a["variants"] if a["enabled"] and eval_methods() else {}


def variant_setting(key):
    defaults = {
        "decode_start": lambda: config["decode"]["start"],
        "skew_mode": lambda: config["select"]["skew_mode"],
        "skew": lambda: config["select"]["weights"]["skew"],
        "m": lambda: config["select"]["m"],
        "invert_guidance": lambda: config["invert"]["guidance_scale"],
    }

    def fn(wc):
        v = ablation_variants()[wc.variant]
        return v[key] if key in v else defaults[key]()

    return fn


def ablation_eval_files(wc):
    """Every student of each variant, and of D3HR and the generative baselines at the same IPC."""
    ipc = config["ablation"]["ipc"]
    base = [m for m in ("d3hr", "d3hr_nogroup", "dit_noise", "random_real") if m in eval_methods()]
    return expand(
        "results/{dataset}/eval/{method}/ipc{ipc}/{student}-seed{seed}.json",
        dataset=wc.dataset,
        method=base + [f"variant_{v}" for v in ablation_variants()],
        ipc=ipc,
        student=EVAL["students"],
        seed=EVAL["seeds"],
    )


def figure_targets(name):
    if not figures_on():
        return []
    r = f"results/{name}"
    out = [
        f"{r}/figures/normality.png",
        f"{r}/figures/group_sampling.png",
        f"{r}/figures/storage.png",
        f"{r}/figures/samples_ipc{grid_ipc(config)}.png",
        f"{r}/tables/costs.md",
        f"{r}/tables/teacher_check.csv",
    ]
    if ablation_on():
        out.append(f"{r}/figures/timestep.png")
    if metrics_on():
        out.append(f"{r}/figures/representativeness.png")
    if eval_methods():
        out.append(f"{r}/figures/accuracy_vs_ipc.png")
        if ablation_variants():
            out.append(f"{r}/tables/ablation.md")
    return out


# ---------------------------------------------------------------- representativeness (rules/metrics.smk)


def metrics_cfg():
    return config["metrics"]


def metrics_on():
    return metrics_cfg()["enabled"] and bool(eval_methods())


def metric_sets(wc):
    """(method, IPC, image folder) of every distilled set of one class: the image methods at every IPC, the ablation
    variants at theirs."""
    sets = [(m, i) for m in image_methods() for i in config["select"]["ipc"]]
    sets += [(f"variant_{v}", config["ablation"]["ipc"]) for v in ablation_variants()]  # none when ablations are off
    return [(m, str(i), f"results/{wc.dataset}/images/{m}/ipc{i}/{wc.cls}") for m, i in sets]


def metric_dirs(wc):
    return [d for _, _, d in metric_sets(wc)]


# ---------------------------------------------------------------- models trained by the workflow (rules/models.smk)

# train.dit keys of the training loop; the others build the DiT
DIT_TRAIN_KEYS = ("steps", "batch_size", "lr", "ema_decay", "label_dropout")


def dit_settings():
    dit = config["train"]["dit"]
    return {k: v for k, v in dit.items() if k in DIT_TRAIN_KEYS} | {
        "dit_kwargs": {k: v for k, v in dit.items() if k not in DIT_TRAIN_KEYS}
    }
