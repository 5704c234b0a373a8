# Configuration, validation, the stages' command lines and the input functions shared by all rules (config/README.md;
# docs/method.md per step). Each rule file holds the input functions of its own stages.

import functools
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

from d3hr import D3HRError
from d3hr.config import (
    ablation_ipcs,
    apply_protocol,
    check_semantics,
    dataset_classes,
    dataset_root,
    grid_ipc,
    model_labels,
    structure_stored,
    variant_overrides,
)
from d3hr.data import EMBEDDED_IMAGES_PER_CLASS, IMAGE_EXTENSIONS, image_subset
from d3hr.jobserver import start_server, stop_server
from d3hr.stages import STAGES
from d3hr.stages import code_version as _code_version
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
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


# Every job runs `python -m d3hr` from this workflow's own folder, whatever the software deployment (the `.venv` of
# `make run`, `--sdm conda`, a cluster node, where the job re-reads this file): the environment provides the
# dependencies, this checkout provides the code. Jobs inherit PYTHONPATH from Snakemake.
if workflow.basedir not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p))


# One job server per local run, and per cluster job of GPU jobs (d3hr/jobserver.py): jobs fork from a process that
# imported torch & co. once and holds the pipeline's models.
JOB_SERVER = []


def cluster_job_rules():
    """The rules of the jobs this process runs as a cluster job: `--target-jobs rule:wildcards ...` on the command
    line of the Snakemake that the cluster job starts (one job, or a group job's members)."""
    argv = sys.argv
    if "--target-jobs" not in argv:
        return []
    rules = []
    for arg in argv[argv.index("--target-jobs") + 1 :]:
        if arg.startswith("-"):
            break
        rules.append(arg.split(":", 1)[0])
    return rules


def start_cluster_job_server():
    """In a cluster job (its Snakemake reads this workflow, as every Snakemake does, but runs no onstart hook): a job
    server for its members when two or more of them are GPU rules, which import torch and load models, so that a SLURM
    group job pays the imports and the model load once. A lone job, or a group of CPU jobs that import no torch
    (fit_gaussian, random_real), would only wait for the server's imports."""
    if not (workflow.remote_exec and config.get("job_server", True)):
        return
    if sum(1 for r in cluster_job_rules() if "gpu" in workflow.get_rule(r).resources) >= 2:
        log_dir = f".snakemake/d3hr-jobserver/{os.environ.get('SLURM_JOB_ID', os.getpid())}"
        JOB_SERVER.append(start_server(log_dir=log_dir))


onstart:
    JOB_SERVER.append(start_server(config.get("job_server", True) and workflow.local_exec))


onsuccess:
    stop_server(JOB_SERVER[0] if JOB_SERVER else None)
    warn_failed_sanity_checks()


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


# ---------------------------------------------------------------- the stages' command lines (d3hr/stages.py)


def code_version(stage, images=None):
    """The code version of `d3hr <stage>` (its module and every module it imports: d3hr/versions.py), a param of its
    rules so that editing that code reruns their jobs; cached by the modules' bytes in .snakemake/d3hr/code/. With
    `images` (an `images_fingerprint`), also the hash of the image files the job reads from a user's class folders,
    so that changing them reruns it (the folder is the job's input, not each file: rules/inputs.smk)."""
    version = _code_version(stage, cache_dir=".snakemake/d3hr")
    if images is None:
        return version
    return lambda wc: f"{version} images {fp}" if (fp := images(wc)) else version


def config_value(wc, key):
    """config[key] for a dotted key, or the value of the job's ablation variant (the `variant` wildcard) for it."""
    variant = getattr(wc, "variant", None)
    over = variant_overrides(config["ablation"]["variants"][variant]) if variant else {}
    if key in over:
        return over[key]
    node = config
    for k in key.split("."):
        node = node[k]
    return node


def source_value(source, wc):
    """The value of a stage parameter's source (d3hr/stages.py) for a job."""
    kind, _, name = source.partition(":")
    if kind == "cfg":
        return config_value(wc, name)
    if kind == "ds":
        return ds(wc).get(name)
    if kind == "wc":
        return getattr(wc, name)
    if kind == "fn":
        return globals()[name](wc)
    raise WorkflowError(f"unknown parameter source {source!r}")


def shell_flag(name, value):
    """`--name value...`, quoted for the shell: a list gives several values, a dict its JSON, a bool --name or
    --no-name, None nothing."""
    name = name.replace("_", "-")
    if value is None:
        return []
    if isinstance(value, bool):
        return [f"--{name}" if value else f"--no-{name}"]
    flag = f"--{name}"
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise WorkflowError(f"config: {flag} is an empty list")
    return [flag] + [shlex.quote(json.dumps(v) if isinstance(v, dict) else str(v)) for v in values]


def stage_args(stage, **fixed):
    """Params function: the flags of `d3hr <stage>` that do not name the rule's files, from their sources (d3hr/stages.py)
    or `fixed`. Only these values (and the code version) rerun a job when they change."""
    sources = {p: s for p, s in STAGES[stage].sources.items() if not s.startswith(("in:", "out"))}

    def fn(wc):
        values = {p: source_value(s, wc) for p, s in sources.items()} | fixed
        return " ".join(x for p, v in values.items() for x in shell_flag(p, v))

    return fn


def stage_cmd(stage):
    """The shell command that runs `d3hr <stage>` for a job: params.args, and the files of the job's inputs and outputs."""
    files = []
    for p, s in STAGES[stage].sources.items():
        flag = f"--{p.replace('_', '-')}"
        if s == "in:*":
            files.append("{input:q}")
        elif s.startswith("in:"):
            files.append(f"{flag} {{input.{s[3:]}:q}}")
        elif s.startswith("out"):
            files.append(f"{flag} {{output{s[3:].replace(':', '.')}:q}}")
    return " ".join(["python -m d3hr", stage, "--threads {threads} {params.args}", *files, "> {log:q} 2>&1"])


# ---------------------------------------------------------------- path helpers of the rules


def with_models(*models, **inputs):
    """Named inputs for `unpack()`: the dataset's models (`pipeline`, `teacher`) that the job loads, plus `inputs`,
    each a path pattern over the job's wildcards or an input function."""

    def fn(wc):
        named = {k: v(wc) if callable(v) else v.format(**dict(wc.items())) for k, v in inputs.items()}
        return named | {m: {"pipeline": pipeline_dir, "teacher": teacher_path}[m](wc) for m in models}

    return fn


def class_h5(stage):
    """The per-class HDF5 file of a stage: results/{dataset}/{stage}/{cls}.h5."""
    return f"results/{{dataset}}/{stage}/{{cls}}.h5"


def every_class(pattern, **values):
    """Input function: `pattern` for every class of the job's dataset (varying fastest), its other wildcards from the
    job or `values`."""
    return lambda wc: expand(pattern, **(dict(wc.items()) | values | {"cls": CLASSES[wc.dataset]}))


def figure(name, caption=None, folder="figures", category="Figures"):
    """A figure's PNG, shown in the report under `category` with the caption report/{caption or name}.rst."""
    path = f"results/{{dataset}}/{folder}/{name}.png"
    return report(path, caption=f"../report/{caption or name}.rst", category=category)


def table(name, caption=None):
    """A table (name with its extension), shown in the report under Tables with the caption report/{caption}.rst."""
    stem = name.rsplit(".", 1)[0]
    return report(f"results/{{dataset}}/tables/{name}", caption=f"../report/{caption or stem}.rst", category="Tables")


def warn_failed_sanity_checks():
    """At the end of a run: a warning for every failed check of each dataset's tables/sanity.csv."""
    from d3hr.sanity import failed_checks

    for name in config["datasets"]:
        for line in failed_checks(f"results/{name}/tables/sanity.csv"):
            logger.warning(f"sanity check failed (results/{name}/tables/sanity.md; README, sanity checks): {line}")
