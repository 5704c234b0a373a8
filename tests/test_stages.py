"""The single declaration of every stage (d3hr/stages.py) against the stage functions, the CLI, the rules and the
config schema: each parameter is declared once (the function's signature) with one source in a workflow run, and every
schema key reaches the function that uses it."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys

import yaml

from conftest import REPO
from d3hr.cli import build_parser, stage_function
from d3hr.config import SCHEMA, VARIANT_KEYS, _schema_leaves
from d3hr.stages import STAGES

KINDS = ("cfg", "ds", "wc", "fn", "in", "out")
PROCESS = {"threads", "device"}  # d3hr.cli.main's: a stage names them to receive them

# schema keys that configure the workflow (which jobs exist, how they start), or reach a stage function through an
# input function of the rules (fn:...) rather than as a cfg: source
WORKFLOW_KEYS = {
    "job_server": "how jobs start (rules/common.smk: start_server)",
    "encode.threads": "the encode rule's threads (`--threads`; on a GPU its JPEG decoding workers)",
    "evaluate.full_min_steps": "the floor of `full`'s steps: min_steps of its jobs (fn:eval_min_steps; 0 for the sets)",
    "invert.store_classes": "which classes store their inverted latents (fn:stores_inverted) and run the timestep "
                            "ablation (stored_classes)",
    "datasets.<name>.root": "the dataset's folders: inputs of the rules (fn:dataset_root_of, fn:class_dir, ...)",
    "datasets.<name>.classes": "the class list: one job per class (CLASSES in rules/common.smk)",
    "datasets.<name>.model": "the pipeline: an input of the model rules (pipeline_dir)",
    "datasets.<name>.teacher": "the teacher: an input of the rules that load it (teacher_path)",
    "select.ipc": "one job per IPC (the `ipc` wildcard)",
    "evaluate.methods": "one job per method (the `method` wildcard)",
    "evaluate.students": "one job per student (the `student` wildcard)",
    "evaluate.seeds": "one job per seed (the `seed` wildcard)",
    "evaluate.protocol": "a preset of the evaluate keys (d3hr.config.apply_protocol)",
    "evaluate.labels": "hard-label students: the rule evaluate_hard (hard_label=True)",
    "evaluate.augment": "students without augmentation: the rule evaluate_noaug (augment=False)",
    "figures.enabled": "which figure rules run (rules/figures.smk: figure_targets)",
    "figures.qq_class": "the input files of fig_normality (qq_class)",
    "figures.grid_ipc": "the `ipc` of fig_samples' target (d3hr.config.grid_ipc)",
    "figures.grid_classes": "the classes of fig_samples (fn:grid_classes)",
    "figures.timestep_ablation.enabled": "whether ablation_timestep runs",
    "figures.timestep_ablation.timesteps": "fn:ablation_timesteps",
    "metrics.enabled": "whether the metric rules run",
    "diagnostics.enabled": "whether diagnose and diagnostics_table run (rules/diagnostics.smk)",
    "invert.cov_rank": "the inversion's cov_rank where a job reads the factor (fn:structure_cov_rank), else 0",
    "invert.reference_images": "the inversion's reference_images where a job reads them "
                               "(fn:structure_reference_images), else 0",
    "ablation.enabled": "whether the variants run",
    "ablation.ipc": "the `ipc` of the variants' jobs",
    "train.dit": "fn:dit_settings (the training loop's keys and the DiT's)",
    "evaluate.epochs": "fn:eval_epochs", "evaluate.full_epochs": "fn:eval_epochs",
    "evaluate.steps": "fn:eval_steps", "evaluate.full_steps": "fn:eval_steps",
    "invert.keep_timesteps": "fn:keep_timesteps (a variant keeps only the selection timestep)",
}


def _leaves():
    schema = yaml.safe_load(SCHEMA.read_text())
    return {k for k, _ in _schema_leaves(schema, "", schema["definitions"])}


def _rule_text():
    return "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))


def test_every_parameter_of_every_stage_has_one_source():
    """A stage's sources name parameters of its function, and a stage the workflow runs gives every parameter without
    a default a source (the CLI's required flags are exactly those)."""
    problems = []
    for name, s in STAGES.items():
        params = inspect.signature(stage_function(name)).parameters
        problems += [f"{name}: source of no parameter: {p}" for p in set(s.sources) - set(params)]
        problems += [f"{name}: {p}: unknown source {v!r}" for p, v in s.sources.items() if v.split(":")[0] not in KINDS]
        if s.sources:
            problems += [f"{name}: parameter without a source: {p}" for p, v in params.items()
                         if v.default is inspect.Parameter.empty and p not in s.sources and p not in PROCESS]
        # a value the config sets has its default in the schema alone (None, "absent", is not a second default)
        problems += [f"{name}: {p} has a default of its own ({params[p].default!r}) besides the schema's"
                     for p, src in s.sources.items() if src.startswith(("cfg:", "ds:"))
                     and params[p].default not in (inspect.Parameter.empty, None)]
    assert not problems, "\n".join(problems)
    assert len(STAGES) > 30


def test_the_cli_takes_exactly_the_function_parameters():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "stage")
    for name in STAGES:
        dests = {a.dest for a in sub.choices[name]._actions} - {"help", "threads"}
        assert dests == set(inspect.signature(stage_function(name)).parameters) - {"threads"}, name


def test_every_source_exists():
    """cfg: sources are schema keys (or sections), ds: sources dataset keys, fn: sources functions of the rules, and
    every stage with sources is run by a rule."""
    leaves, text = _leaves(), _rule_text()
    defined = set(re.findall(r"^def (\w+)\(", text, re.M))
    for name, s in STAGES.items():
        for p, src in s.sources.items():
            kind, _, key = src.partition(":")
            if kind == "cfg":
                assert any(leaf == key or leaf.startswith(key + ".") for leaf in leaves), (name, p, src)
            elif kind == "ds":
                assert f"datasets.<name>.{key}" in leaves, (name, p, src)
            elif kind == "fn":
                assert key in defined, (name, p, src)
        if s.sources:
            assert f'stage_cmd("{name}")' in text, f"no rule runs {name}"


def test_every_schema_key_reaches_the_function_that_uses_it():
    """Each schema key is the source of a stage function's parameter (so its value is an argument of that function:
    the test above), an ablation variant's override of such a key, or a workflow setting listed with what it does."""
    sources = {src.split(":", 1)[1] for s in STAGES.values() for src in s.sources.values() if src.startswith("cfg:")}
    ds_keys = {src.split(":", 1)[1] for s in STAGES.values() for src in s.sources.values() if src.startswith("ds:")}

    def reached(key):
        if key.startswith("datasets.<name>."):
            return key.split(".")[-1] in ds_keys
        if key.startswith("ablation.variants.<name>."):
            return reached(VARIANT_KEYS[key.split(".")[-1]])
        return any(key == s or key.startswith(s + ".") for s in sources)

    unreached = [k for k in sorted(_leaves()) if not reached(k) and not any(
        k == w or k.startswith(w + ".") for w in WORKFLOW_KEYS)]
    assert not unreached, f"schema keys that reach no stage: {unreached}"
    stale = [w for w in WORKFLOW_KEYS if not any(k == w or k.startswith(w + ".") for k in _leaves())]
    assert not stale, stale


def test_the_jobs_that_load_no_model_import_no_torch():
    """select, fit_gaussian, random_real, the summaries and the tables import only these modules (and the CLI): none
    may pull in torch, which costs seconds per job."""
    code = ("import sys, d3hr.cli, d3hr.group_sampling, d3hr.baselines, d3hr.gaussian, d3hr.images, d3hr.h5io, "
            "d3hr.tables, d3hr.versions; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _rules():
    """(file, rule name, body) of every rule in rules/*.smk."""
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in re.finditer(r"^(?:rule|use rule \w+ as) (\w+)", text, re.M)]
        for k, (start, name) in enumerate(starts):
            end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
            yield smk.name, name, text[start:end]


def test_every_rule_reads_in_at_most_20_lines():
    """A rule is read in one screen: its header and directives fit in 20 non-blank lines (input functions and report
    helpers live above the rule or in rules/common.smk)."""
    rules, long = list(_rules()), {}
    for fname, rule, body in rules:
        header, *rest = body.splitlines()
        lines = [header]
        for line in rest:  # the rule ends at the first line that is not indented (a function above the next)
            if line.strip() and not line.startswith(" "):
                break
            lines += [line] if line.strip() else []
        if len(lines) > 20:
            long[f"{fname}: {rule}"] = len(lines)
    assert len(rules) > 30 and not long, f"rules over 20 lines: {long}"


def test_figure_rules_are_local():
    """A figure takes seconds and reads many files: every fig_* rule is in the Snakefile's localrules, so that it runs
    where Snakemake runs and never as a cluster job."""
    m = re.search(r"^localrules:\n((?:    \w+,\n)+)", (REPO / "Snakefile").read_text(), re.M)
    local = set(re.findall(r"(\w+),", m.group(1)))
    figures = {rule for _, rule, _ in _rules() if rule.startswith("fig_")}
    assert len(figures) > 6 and figures <= local, f"figure rules not in localrules: {sorted(figures - local)}"


def test_kmeans_vae_jobs_import_no_torch(tmp_path):
    """`d3hr baseline-kmeans --timestep -1` (kmeans_vae: centroids decoded by the VAE alone) needs no noise schedule,
    so it loads no model and imports no torch."""
    import numpy as np

    from d3hr.h5io import write_h5

    lat = tmp_path / "cat.h5"
    write_h5(lat, {"latents": np.random.default_rng(0).normal(size=(6, 4, 2, 2)).astype(np.float32)}, {"cls": "cat"})
    code = ("import sys; from d3hr.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, 'torch' in sys.modules)")
    args = ["baseline-kmeans", "--latents", str(lat), "--pipeline", str(tmp_path / "none"), "--cls", "cat", "--ipc",
            "2", "--seed", "0", "--timestep", "-1", "--label", "-1", "--num-steps", "50", "--guidance", "1", "--out",
            str(tmp_path / "k.h5")]
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split()[-2:] == ["0", "False"], out.stdout + out.stderr


def test_threads_reach_a_stage_that_imports_torch_late(tmp_path):
    """`--threads` of a stage whose module imports no torch at import time (metrics, baselines: torch only inside
    their functions) is set where torch reads it when it is imported later: the process's OMP/MKL variables."""
    code = ("import os, sys; from d3hr.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, os.environ.get('OMP_NUM_THREADS'), os.environ.get('MKL_NUM_THREADS'), 'torch' in sys.modules)")
    missing = str(tmp_path / "missing.h5")
    args = ["fit-gaussian", "--threads", "3", "--inverted", missing, "--latents", missing, "--out", str(tmp_path / "g.h5")]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.stdout.split()[-4:] == ["2", "3", "3", "False"], out.stdout + out.stderr
