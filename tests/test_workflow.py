"""Workflow tests: Snakemake on a tiny config in a temporary directory (a user-style image-folder dataset with a
tiny random-weight DiT pipeline), checking outputs, the DAG, and which jobs a change reruns."""

from __future__ import annotations

import os
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from d3hr.h5io import read_attrs

from conftest import (copy_run, copy_workflow, dry_run_jobs, make_dataset, make_pipeline, make_teacher, snakemake,
                      tiny_config, write_config)


@pytest.fixture()
def tiny_workflow(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    root = make_dataset(tmp_path / "data", classes=("cat", "dog"))
    pipe = make_pipeline(tmp_path / "models" / "pipeline", ["cat", "dog", "eel"])
    teacher = make_teacher(tmp_path / "models" / "teacher.pt", ["cat", "dog", "eel"])
    cfg = tiny_config(root, pipe, teacher)
    write_config(wd, cfg)
    return wd, cfg, root


def test_every_job_command_is_accepted_by_the_cli(tiny_workflow):
    """Every job's `python -m d3hr ...` command (from `snakemake -n -p`) parses with the CLI: no rule passes a flag
    the CLI lacks or leaves out one it requires (the CLI has no defaults of its own for what the workflow sets)."""
    import re
    import shlex

    from d3hr.cli import build_parser

    wd, _, _ = tiny_workflow
    p = snakemake(wd, "-n", "-p")
    cmds = re.findall(r"python -m d3hr (.*?) > \S+ 2>&1", p.stdout + p.stderr)
    parser = build_parser()
    stages = set()
    for cmd in cmds:
        args = shlex.split(cmd)
        parser.parse_args(args)  # SystemExit names the missing or unknown flag
        stages.add(args[0])
    assert {"encode", "invert", "select", "decode", "prepare-val", "evaluate", "ablation-timestep"} <= stages, stages
    assert len(stages) >= 25, stages


def test_every_command_of_the_embedded_default_is_accepted_by_the_cli(tmp_path):
    """The same for the embedded default with hard-label students (`make run` and config/label_robust.yaml): the
    commands the tiny config never builds (export, model training, quality check) parse too."""
    import re
    import shlex

    from conftest import copy_workflow
    from d3hr.cli import build_parser

    wd = copy_workflow(tmp_path / "wf")
    p = snakemake(wd, "-n", "-p", "--forceall", "--configfile", "config/config.yaml", "config/label_robust.yaml")
    cmds = re.findall(r"python -m d3hr (.*?) > \S+ 2>&1", p.stdout + p.stderr)
    parser = build_parser()
    stages = set()
    for cmd in cmds:
        args = shlex.split(cmd)
        parser.parse_args(args)
        stages.add(args[0])
    assert {"export-embedded", "train-ldm", "train-teacher", "quality", "evaluate"} <= stages, stages
    assert len(cmds) > 400


def test_the_aug_robust_overlay_adds_the_students_without_augmentation_and_their_table(tmp_path):
    """config/aug_robust.yaml on the embedded default: one `--no-augment` student per distilled set, IPC, student and
    seed (none for `full`), their table with evaluate.ars_weight on its command line, and no other job changes; the
    default alone trains none of them."""
    import re
    import shlex

    from conftest import REPO
    from d3hr.cli import build_parser
    from test_schema_walk import parse_dry_run

    wd = copy_workflow(tmp_path / "wf")
    (wd / "w.yaml").write_text("evaluate: {ars_weight: 0.3}\n")
    runs = {}
    for name, extra in (("default", []), ("overlay", ["config/aug_robust.yaml", "w.yaml"])):
        p = snakemake(wd, "-n", "-p", "--forceall", "--configfile", "config/config.yaml", *extra)
        runs[name] = parse_dry_run(p.stdout + p.stderr)
    full_cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg, ipcs = full_cfg["evaluate"], full_cfg["select"]["ipc"]
    default = {(j["rule"], j["wildcards"]): j["cmd"] for j in runs["default"]}
    overlay = {(j["rule"], j["wildcards"]): j for j in runs["overlay"]}
    assert not any(r in ("evaluate_noaug", "aug_robust_table") for r, _ in default)
    noaug = [j for (r, _), j in overlay.items() if r == "evaluate_noaug"]
    sets = [m for m in cfg["methods"] if m != "full"]
    assert len(noaug) == len(sets) * len(ipcs) * len(cfg["students"]) * len(cfg["seeds"])
    assert all("--no-augment" in j["cmd"] and "-noaug-seed" in j["output"][0] for j in noaug)
    assert not any("method=full" in j["wildcards"] for j in noaug)
    (table,) = [j for (r, _), j in overlay.items() if r == "aug_robust_table"]
    assert "--w 0.3" in table["cmd"] and table["output"][0].endswith("tables/aug_robust.csv")
    changed = {k[0] for k, j in overlay.items() if k in default and j["cmd"] != default[k]}
    assert changed <= {"collect_eval", "cost_table"}, changed  # their inputs: the new students and benchmarks
    assert set(default) <= set(overlay)
    assert {r for r, _ in set(overlay) - set(default)} == {"evaluate_noaug", "aug_robust_table"}
    collect = [j for (r, _), j in overlay.items() if r == "collect_eval" and "ipc=1" in j["wildcards"].split(", ")]
    assert collect and any("-noaug-seed" in f for f in collect[0]["input"])
    parser = build_parser()  # the CLI takes both commands
    args = [parser.parse_args(shlex.split(re.search(r"python -m d3hr (.*?) > \S+ 2>&1", j["cmd"]).group(1)))
            for j in (noaug[0], table)]
    assert args[0].augment is False and args[1].w == 0.3


def test_the_two_trainings_take_half_the_cores_each(tmp_path):
    """`train_threads`: on 2 cores `train_ldm` and `train_teacher` get one thread each (so they run side by side),
    on 8 cores four each, and never more than 8."""
    import re

    from conftest import copy_workflow

    wd = copy_workflow(tmp_path / "wf")
    targets = ("results/animal_mnist/models/pipeline", "results/animal_mnist/models/teacher.pt")
    for cores, want in ((2, 1), (8, 4), (32, 8)):
        p = snakemake(wd, "-n", "-p", "--forceall", "--cores", str(cores), *targets)
        threads = dict(re.findall(r"python -m d3hr (train-ldm|train-teacher) --threads (\d+)", p.stdout + p.stderr))
        assert threads == {"train-ldm": str(want), "train-teacher": str(want)}, (cores, threads)


def test_dry_run_has_one_job_per_class(tiny_workflow):
    wd, cfg, _ = tiny_workflow
    jobs = dry_run_jobs(wd)
    count = lambda rule: sorted(w.get("cls", "") + w.get("ipc", "") for r, w in jobs if r == rule)
    assert count("encode") == ["cat", "dog"]
    assert count("invert") == ["cat", "dog"]
    assert count("fit_gaussian") == ["cat", "dog"]
    assert count("select") == ["cat1", "cat2", "dog1", "dog2"]
    assert count("decode") == sorted(4 * ["cat1", "cat2", "dog1", "dog2"])  # d3hr, d3hr_nogroup, dit_noise, kmeans
    assert sorted(w["method"] + w["ipc"] for r, w in jobs if r == "evaluate") == sorted(
        [m + i for m in ("d3hr", "random_real", "dit_noise", "d3hr_nogroup", "kmeans") for i in "12"] + ["fullall"]
        + ["variant_decode_above2", "variant_structured2"])
    assert count("decode_variant") == ["cat2", "cat2", "dog2", "dog2"]  # per class and variant, at the ablation's IPC
    assert count("select_variant") == ["cat2", "dog2"]  # the structured variant selects again; decode_above does not
    assert count("diagnose") == ["cat", "dog"]
    assert count("kmeans") == ["cat1", "cat2", "dog1", "dog2"]


@pytest.mark.slow
def test_encode_stage(tiny_workflow):
    wd, cfg, root = tiny_workflow
    snakemake(wd, "results/tiny/latents/cat.h5", "results/tiny/latents/dog.h5")
    with h5py.File(wd / "results/tiny/latents/cat.h5") as f:
        assert f["latents"].shape == (6, 4, 8, 8)
        assert np.isfinite(f["latents"][:]).all()
        assert [s.decode() for s in f["ids"][:]] == [f"cat_{i:03d}.png" for i in range(6)]
        a = dict(f.attrs)
        assert a["cls"] == "cat" and a["resolution"] == 16 and a["sample_posterior"] and a["seed"] == 0
        assert a["d3hr_version"] and a["model"].endswith("pipeline")
    assert (wd / "logs/tiny/encode/cat.log").read_text().count("encoded 6 images") == 1
    assert (wd / "benchmarks/tiny/encode/cat.tsv").is_file()


def _other(jobs, cls):
    return [(r, w) for r, w in jobs if w.get("cls") not in (None, cls)]


def _rules(jobs):
    return sorted({r for r, _ in jobs})


FIGURE_RULES = ["cost_table", "fig_accuracy", "fig_group_sampling", "fig_normality", "fig_samples", "fig_storage",
                "fig_timestep", "teacher_table", "sanity_table"]
# per-class set scores and their tables; hard-label students and the label-robust table
SCORE_RULES = ["set_scores", "representativeness", "fig_representativeness", "evaluate_hard", "label_robust_table"]
# the off-class diagnostics (of the sets at the ablation's IPC) and the structured variant's own selection
DIAG_RULES = ["diagnose", "diagnostics_table", "select_variant"]


@pytest.mark.slow
def test_full_run_and_incremental_reruns(tiny_run, tmp_path):
    wd = copy_run(tiny_run[0], tmp_path / "wf")
    cfg, root = tiny_run[1], wd / "inputs" / "data"
    for ipc in (1, 2):
        for c in ("cat", "dog"):
            for method in ("d3hr", "d3hr_nogroup", "dit_noise", "kmeans", "random_real"):
                pngs = sorted((wd / f"results/tiny/images/{method}/ipc{ipc}/{c}").glob("*.png"))
                assert len(pngs) == ipc and np.asarray(Image.open(pngs[0])).shape == (16, 16, 3), (method, ipc, c)
            with h5py.File(wd / f"results/tiny/selected/ipc{ipc}/{c}.h5") as f:
                assert f["latents"].shape == (ipc, 4, 8, 8) and f.attrs["timestep"] == 500 and f.attrs["ipc"] == ipc
        assert (wd / f"results/tiny/selected/ipc{ipc}/summary.csv").read_text().count("\n") == 3
    with h5py.File(wd / "results/tiny/inverted/cat.h5") as f:  # invert.store_classes: 1, the first class stored
        assert sorted(f) == ["alpha_bar", "ids", "stats", "t300", "t500", "timesteps"] and f.attrs["guidance"] == 2.0
        assert [s.decode() for s in f["ids"][:]] == [f"cat_{i:03d}.png" for i in range(6)]  # encode's, as they were
        assert f["t500"].dtype == np.float16 and sorted(f["stats/t300"]) == ["kurtosis", "mean", "normal_p", "skew", "var"]
        # at the selection timestep: the covariance factor (invert.cov_rank 4) and 4 reference latents
        assert sorted(f["stats/t500"]) == ["cov_factor", "kurtosis", "mean", "normal_p", "reference", "skew", "var"]
        assert f["stats/t500/cov_factor"].shape == (256, 4) and f["stats/t500/reference"].shape == (4, 256)
    with h5py.File(wd / "results/tiny/inverted/dog.h5") as f:  # the statistics alone
        assert sorted(f) == ["alpha_bar", "ids", "stats", "timesteps"] and read_attrs(f)["stored_timesteps"] == []
    with h5py.File(wd / "results/tiny/variants/structured/selected/ipc2/cat.h5") as f:  # the off-class variant
        a = read_attrs(f)
        assert (a["cov_rank"], a["rescale"], a["criterion"], a["n_reference"]) == (3, "second_moment", "mmd", 4)
    diag = pd.read_csv(wd / "results/tiny/tables/diagnostics.csv")
    assert list(diag.cls) == ["cat", "dog", "all classes"] and (diag.roundtrip_images[:2] == 2).all()
    assert {"top1:d3hr@ipc2", "top1:variant_structured@ipc2", "top1:dit_noise@ipc2"} <= set(diag.columns)
    assert diag.fwd_var_mean.between(0, 2).all() and (diag.inv_var_mean > 0).all()
    assert sorted(p.name for p in (wd / "results/tiny/ablation/timestep").glob("*.h5")) == ["cat.h5"]
    acc = pd.read_csv(wd / "results/tiny/tables/accuracy.csv", dtype={"ipc": str})
    assert len(acc) == 11 and set(acc.method) == {"d3hr", "random_real", "dit_noise", "d3hr_nogroup", "kmeans", "full"}
    assert acc.top1.between(0, 1).all() and (acc[acc.method == "full"].n_train_images == 12).all()
    assert "| d3hr |" in (wd / "results/tiny/tables/accuracy.md").read_text()
    hard = list((wd / "results/tiny/eval").rglob("*-hard-seed0.json"))
    assert len(hard) == 11 and all('"hard_label": true' in f.read_text() for f in hard)
    lr = pd.read_csv(wd / "results/tiny/tables/label_robust.csv", dtype={"ipc": str})
    assert set(lr.method) == {"d3hr", "random_real", "dit_noise", "d3hr_nogroup", "kmeans"} and lr.lrs.between(0, 1).all()
    with h5py.File(wd / "results/tiny/features/cat.h5") as f:
        assert f["teacher"].shape[0] == f["vae"].shape[0] == 6 and f["vae"].shape[1] == 4 * 8 * 8
    scores = pd.read_csv(wd / "results/tiny/metrics/cat.csv", dtype={"ipc": str})
    assert len(scores) == 2 * (5 * 2 + 2) and set(scores.space) == {"teacher", "vae"}  # 5 methods x 2 IPCs + variants
    assert scores.coverage.between(0, 1).all() and (scores.mmd >= 0).all()
    assert scores[scores.ipc == "1"].diversity.isna().all() and scores[scores.ipc == "2"].diversity.notna().all()
    rep = pd.read_csv(wd / "results/tiny/tables/representativeness.csv", dtype={"ipc": str})
    assert (rep.n_classes == 2).all() and (wd / "results/tiny/figures/representativeness.png").stat().st_size > 10_000

    # 1. after a full run nothing is pending
    assert dry_run_jobs(wd) == []

    # 2. changing one class's raw images reruns that class's chain and the aggregates only
    time.sleep(1.1)
    img = root / "train" / "cat" / "cat_000.png"
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(img)
    jobs = dry_run_jobs(wd)
    assert _other(jobs, "cat") == []
    assert _rules(jobs) == sorted(["ablation_timestep", "decode_variant", "ablation_table", "all", "collect_eval",
                                   "decode", "encode", "evaluate", "fit_gaussian", "invert", "kmeans", "random_real",
                                   "select", "selection_summary", "tables", "real_features"] + FIGURE_RULES + SCORE_RULES
                                  + DIAG_RULES)
    assert not [w for r, w in jobs if r == "decode" and w["method"] == "dit_noise"]  # noise does not see the images
    for rule in ("evaluate", "evaluate_hard"):  # `full` trains on the changed split, with soft and hard labels
        assert [w for r, w in jobs if r == rule and w["method"] == "full"], rule

    # (the following on a fresh copy of the finished run: running step 2's jobs would only repeat what tiny_run did)
    wd = copy_run(tiny_run[0], tmp_path / "wf2")
    root = wd / "inputs" / "data"

    # 3. adding an IPC value schedules only select/decode for that IPC (and its summary)
    write_config(wd, {**cfg, "select": {**cfg["select"], "ipc": [1, 2, 3]}})
    jobs = dry_run_jobs(wd)
    assert _rules(jobs) == sorted(["all", "collect_eval", "decode", "dit_noise", "evaluate", "kmeans", "random_real",
                                   "select", "selection_summary", "tables", "cost_table", "fig_accuracy",
                                   "fig_group_sampling", "fig_storage", "teacher_table", "sanity_table"] + SCORE_RULES)
    assert {w["ipc"] for r, w in jobs if "ipc" in w} == {"3"}

    # 4. changing a group-sampling parameter schedules no encode or invert job
    write_config(wd, {**cfg, "select": {**cfg["select"], "m": 400}})
    jobs = dry_run_jobs(wd)
    assert _rules(jobs) == sorted(["all", "collect_eval", "decode", "evaluate", "select", "selection_summary", "tables",
                                   "cost_table", "fig_accuracy", "fig_group_sampling", "fig_samples", "fig_storage",
                                   "teacher_table", "sanity_table", "decode_variant", "ablation_table"]
                                  + SCORE_RULES + DIAG_RULES)  # a variant decodes D3HR's selection, one selects with m
    assert {w["method"] for r, w in jobs if r == "decode"} == {"d3hr", "d3hr_nogroup"}
    assert {w["method"] for r, w in jobs if r == "evaluate"} == {"d3hr", "d3hr_nogroup", "variant_decode_above",
                                                                 "variant_structured"}
    assert {w["method"] for r, w in jobs if r == "evaluate_hard"} == {"d3hr", "d3hr_nogroup"}

    # 5. adding a class schedules only that class's chain and the aggregates
    write_config(wd, cfg)
    assert dry_run_jobs(wd) == []
    make_dataset(tmp_path / "more", classes=("cat", "dog", "eel"), seed=1)
    os.rename(tmp_path / "more" / "train" / "eel", root / "train" / "eel")
    os.rename(tmp_path / "more" / "val" / "eel", root / "val" / "eel")
    jobs = dry_run_jobs(wd)
    assert _other(jobs, "eel") == []
    # eel, past invert.store_classes (1), stores no inverted latents: no timestep ablation, no new timestep figure
    assert _rules(jobs) == sorted(["decode_variant", "ablation_table", "all", "collect_eval",
                                   "decode", "dit_noise", "encode", "evaluate", "fit_gaussian", "invert", "kmeans",
                                   "random_real", "select", "selection_summary", "tables", "real_features",
                                   "prepare_val"]  # the validation split gains the class's images
                                  + [r for r in FIGURE_RULES if r != "fig_timestep"] + SCORE_RULES + DIAG_RULES)


def test_bad_config_is_rejected_with_the_value(tiny_workflow):
    wd, cfg, _ = tiny_workflow
    write_config(wd, {**cfg, "select": {**cfg["select"], "ipc": [0]}})
    p = snakemake(wd, "-n", check=False)
    assert p.returncode != 0 and "ipc" in p.stdout + p.stderr
    write_config(wd, {**cfg, "invert": {**cfg["invert"], "keep_timesteps": [310, 500]}})
    p = snakemake(wd, "-n", check=False)
    assert p.returncode != 0 and "not on the 10-step DDIM grid" in p.stdout + p.stderr
    write_config(wd, {**cfg, "datasets": {"tiny": {**cfg["datasets"]["tiny"], "classes": ["cat", "unicorn"]}}})
    p = snakemake(wd, "-n", check=False)
    assert p.returncode != 0 and "unicorn" in p.stdout + p.stderr and "not found under" in p.stdout + p.stderr


def _imported_at_parse(wd) -> set:
    """Top-level packages that `snakemake -n` imports while it parses the workflow (python -X importtime)."""
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    p = subprocess.run([sys.executable, "-X", "importtime", str(Path(sys.executable).parent / "snakemake"), "-n"],
                       cwd=wd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in p.stderr.splitlines() if line.startswith("import time:")}


def test_parsing_the_workflow_imports_no_torch(tiny_workflow):
    """Every job of a cluster run parses the Snakefile again: no torch, timm, diffusers or plotting there. A timm
    student's name is checked against timm's registry once per timm version (a cache in .snakemake/)."""
    wd, cfg, _ = tiny_workflow
    heavy = {"torch", "timm", "diffusers", "matplotlib", "seaborn", "scipy"}
    assert heavy & _imported_at_parse(wd) == set()
    write_config(wd, {**cfg, "evaluate": {**cfg["evaluate"], "students": ["convnet_tiny", "resnet18"]}})
    _imported_at_parse(wd)  # first parse with a timm student: reads timm's registry into the cache
    assert list((wd / ".snakemake" / "d3hr").glob("timm-*-models.txt"))
    assert heavy & _imported_at_parse(wd) == set()


def test_lint_is_clean(tiny_workflow):
    wd, _, _ = tiny_workflow
    p = snakemake(wd, "--lint", check=False)
    assert p.returncode == 0 and "good condition" in p.stdout + p.stderr, p.stdout + p.stderr


def test_unusual_class_names_and_empty_folders(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    names = ("great white shark", "café.v2")
    root = make_dataset(tmp_path / "data", classes=names, n_train=3, n_val=1)
    pipe = make_pipeline(tmp_path / "models" / "pipeline", list(names))
    teacher = make_teacher(tmp_path / "models" / "teacher.pt", list(names))
    cfg = tiny_config(root, pipe, teacher)
    write_config(wd, cfg)
    snakemake(wd, *[f"results/tiny/latents/{n}.h5" for n in names])
    for n in names:
        with h5py.File(wd / f"results/tiny/latents/{n}.h5") as f:
            assert f.attrs["cls"] == n and f["latents"].shape[0] == 3
    (root / "train" / "empty").mkdir()
    p = snakemake(wd, "-n", check=False)
    assert p.returncode != 0 and "empty class folder" in p.stdout + p.stderr


def test_the_test_config_runs_by_hand_from_the_repository_root(tmp_path):
    """`snakemake --configfile .test/config.yaml` plans the whole tiny run on the committed inputs (.test/inputs/), with
    every kind of job the tests run."""
    import shutil

    from conftest import REPO

    wd = copy_workflow(tmp_path / "wf")
    shutil.copytree(REPO / ".test", wd / ".test", ignore=shutil.ignore_patterns("__pycache__"))
    rules = {r for r, _ in dry_run_jobs(wd, "--configfile", ".test/config.yaml")}
    assert {"encode", "invert", "select", "decode", "decode_variant", "evaluate", "evaluate_hard", "ablation_table",
            "fig_samples", "set_scores"} <= rules, rules


def test_an_ipc_above_a_class_size_fails_before_any_job_runs(tiny_workflow):
    """Random real images and K-means draw IPC training images of a class: an IPC above the class's count is refused
    when the workflow is parsed, naming the class and both numbers (not when the job runs)."""
    wd, cfg, _ = tiny_workflow
    write_config(wd, {**cfg, "select": {**cfg["select"], "ipc": [1, 2, 7]}})  # 6 training images per class
    p = snakemake(wd, "-n", check=False)
    assert p.returncode != 0
    assert "select.ipc 7 exceeds the 6 training images of class 'cat' of dataset tiny" in p.stdout + p.stderr
    methods = ["d3hr", "dit_noise", "d3hr_nogroup"]  # generative sets only: any IPC
    write_config(wd, {**cfg, "select": {**cfg["select"], "ipc": [1, 2, 7]}, "evaluate": {**cfg["evaluate"], "methods": methods}})
    snakemake(wd, "-n")
    # a subset of the images below the largest IPC (invert.max_images_per_class) is refused the same way
    write_config(wd, {**cfg, "invert": {**cfg["invert"], "max_images_per_class": 1}})
    p = snakemake(wd, "-n", check=False)
    assert p.returncode != 0 and "invert.max_images_per_class 1 is below the largest select.ipc 2" in p.stdout + p.stderr
