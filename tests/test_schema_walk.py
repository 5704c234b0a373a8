"""Every leaf key of the schema, changed one at a time in the config of a finished tiny run: `snakemake -n` must
schedule exactly the jobs that depend on it, and the new value must reach the jobs that use it.

For each key, two dry runs. With `--forceall -p`, every job's shell command: the jobs whose command differs from the
finished run's (or that are new) are the key's users, and their rules must be exactly the rules listed for the key
below (the value reaches the `d3hr` command, whose stage records it in its outputs' provenance). Without
`--forceall`, the jobs Snakemake schedules must be exactly those users and everything downstream of them (from the
inputs and outputs the first dry run prints). A key whose value stops at a rule's params (a rerun with an unchanged
command) fails the first check; a change that reruns unrelated jobs, or misses some, fails the second. Keys the tiny
run cannot exercise are listed with the reason, and a schema key in neither list fails the test. The `train` keys are
walked on a second tiny run that trains its own VAE, DiT and teacher.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO, copy_run, snakemake
from d3hr.config import PROTOCOLS, SCHEMA, _schema_leaves

DS = "tiny"  # the tiny run's dataset name: `datasets.<name>.x` is walked as `datasets.tiny.x`

EVAL = {"evaluate", "evaluate_hard"}
PER_CLASS = {"encode", "invert", "fit_gaussian", "select", "decode", "random_real", "dit_noise", "kmeans",
             "ablation_timestep", "decode_variant", "real_features", "set_scores"}

# key: (new value, the rules whose jobs use it: their commands change, or they are new jobs[, rules that lose jobs])
CASES = {
    "seed": (1, {"encode", "select", "random_real", "dit_noise", "kmeans", "ablation_timestep", "real_features",
                 "select_variant"}),
    "device": ("auto", {"encode", "invert", "select", "decode", "ablation_timestep", "decode_variant", "real_features",
                        "set_scores", "diagnose", "select_variant"} | EVAL),
    "compile": ("never", {"invert", "decode", "ablation_timestep", "decode_variant"} | EVAL),
    "model_precision": ("fp32", {"encode", "invert", "decode", "ablation_timestep", "decode_variant",
                                 "real_features", "set_scores", "diagnose"}),
    "job_server": (False, set()),  # how jobs start, not what they compute: no command changes, nothing reruns
    "datasets.<name>.classes": (["cat"], {"fig_normality", "fig_group_sampling", "fig_samples", "fig_storage",
                                         "teacher_table", "prepare_val", "selection_summary", "cost_table",
                                         "representativeness", "diagnostics_table"} | EVAL,
                                PER_CLASS - {"ablation_timestep"} | {"diagnose", "select_variant"}),  # dog had none (invert.store_classes: 1)
    "datasets.<name>.resolution": (24, {"encode", "random_real", "prepare_val", "teacher_table", "real_features",
                                        "set_scores", "diagnose"} | EVAL),
    "datasets.<name>.decode_resize": (24, {"decode", "decode_variant", "prepare_val", "teacher_table", "real_features", "set_scores",
                                                       "diagnose"} | EVAL),
    "encode.batch_size": (5, {"encode"}),
    "encode.sample_posterior": (False, {"encode"}),
    "encode.on_bad_image": ("skip", {"encode"}),
    "invert.num_inference_steps": (20, {"invert", "decode", "decode_variant", "dit_noise", "kmeans",
                                        "ablation_timestep", "diagnose"}),
    "invert.guidance_scale": (3.0, {"invert"}),
    "invert.keep_timesteps": ([300, 500, 700], {"invert", "ablation_timestep"}),
    "invert.batch_size": (9, {"invert"}),
    # invert: the covariance factor and the reference latents are stored at the selection timestep (the tiny run reads
    # them: its structured variant and the diagnostics)
    "select.timestep": (300, {"select", "kmeans", "fig_normality", "fig_timestep", "invert", "select_variant",
                              "diagnose"}),
    "select.ipc": ([1, 2, 4], {"select", "decode", "random_real", "dit_noise", "kmeans", "selection_summary",
                               "collect_eval", "tables", "label_robust_table", "set_scores", "fig_group_sampling",
                               "fig_storage", "teacher_table", "cost_table"} | EVAL),
    # select_variant: the structured variant takes the main run's other select keys
    "select.m": (301, {"select", "select_variant"}),
    "select.chunk_groups": (150, {"select", "ablation_timestep", "select_variant"}),
    "select.weights.mu": (0.9, {"select", "ablation_timestep", "select_variant"}),
    "select.weights.sigma": (0.9, {"select", "ablation_timestep", "select_variant"}),
    "select.weights.skew": (0.4, {"select", "ablation_timestep", "select_variant"}),
    "select.skew_mode": ("code", {"select", "ablation_timestep", "select_variant"}),
    "select.cov_rank": (2, {"select"}),  # the variant sets its own
    "select.rescale": ("forward", {"select"}),
    "select.criterion": ("mmd", {"select"}),
    "invert.cov_rank": (3, {"invert"}),
    "invert.reference_images": (3, {"invert"}),
    "diagnostics.enabled": (False, {"cost_table"}, {"diagnose", "diagnostics_table"}),  # the variant still needs the reference
    "diagnostics.roundtrip_images": (1, {"diagnose"}),
    "decode.guidance_scale": (3.0, {"decode", "dit_noise", "kmeans", "ablation_timestep", "decode_variant",
                                    "diagnose"}),
    "decode.batch_size": (9, {"decode", "ablation_timestep", "decode_variant"}),
    "decode.start": ("above", {"decode", "decode_variant"}),  # the structured variant decodes from its own selection
    "evaluate.methods": (["d3hr", "random_real", "dit_noise", "d3hr_nogroup", "kmeans", "full", "kmeans_vae"],
                         {"kmeans", "decode", "collect_eval", "set_scores", "teacher_table", "fig_samples", "cost_table",
                          "diagnose"} | EVAL),
    "evaluate.students": (["convnet_tiny", "convnet_tiny_in"], {"collect_eval", "ablation_table", "cost_table"} | EVAL),
    "evaluate.seeds": ([0, 1], {"collect_eval", "ablation_table", "cost_table"} | EVAL),
    "evaluate.epochs": (2, EVAL),
    "evaluate.full_epochs": (2, EVAL),
    "evaluate.steps": (4, EVAL),
    "evaluate.full_steps": (4, EVAL),
    "evaluate.full_min_steps": (7, EVAL),
    "evaluate.batch_size": (6, EVAL),
    "evaluate.protocol": ("authors", {"prepare_val"} | EVAL),
    "evaluate.lr": (2e-3, EVAL),
    "evaluate.weight_decay": (0.02, EVAL),
    "evaluate.schedule": ("cosine", EVAL),
    "evaluate.precision": ("fp32", EVAL),
    "evaluate.mix": ("mixup", EVAL),
    "evaluate.temperature": (10.0, EVAL),
    "evaluate.labels": (["soft"], {"collect_eval", "cost_table"}, {"evaluate_hard", "label_robust_table"}),
    "evaluate.lrs_weight": (0.4, {"label_robust_table"}),
    # the tiny run trains no student without augmentation (evaluate.augment: [true]): the new jobs and their table
    "evaluate.augment": ([True, False], {"evaluate_noaug", "aug_robust_table", "collect_eval", "cost_table"}),
    "evaluate.val_crop": (0.875, {"prepare_val"}),
    "evaluate.builder": ("torchvision", EVAL),
    "invert.store_classes": (None, {"invert", "fig_timestep", "ablation_timestep", "cost_table"}),  # dog's ablation
    "invert.max_images_per_class": (4, {"encode"}),  # 6 images a class: a subset of 4 feeds encode (and what follows)
    "figures.enabled": (False, set(), {"fig_normality", "fig_group_sampling", "fig_samples", "fig_storage", "fig_timestep",
                                       "fig_accuracy", "cost_table", "ablation_timestep",
                                       "ablation_table", "evaluate", "fig_representativeness"}),
    # (evaluate: the variants' students)
    "figures.qq_class": ("dog", {"fig_normality", "invert", "fig_timestep", "ablation_timestep", "cost_table"}),
    # (dog's inverted latents stored, and its timestep ablation)
    "figures.qq_dims": (2, {"fig_normality"}),
    "figures.grid_ipc": (1, {"fig_samples"}, {"fig_samples"}),  # samples_ipc{grid_ipc}.png: another file
    "figures.grid_classes": (1, {"fig_samples"}),
    "figures.grid_per_class": (4, {"fig_samples"}),
    "figures.timestep_ablation.enabled": (False, {"cost_table"}, {"ablation_timestep", "fig_timestep"}),
    "figures.timestep_ablation.ipc": (2, {"ablation_timestep"}),
    "figures.timestep_ablation.m": (60, {"ablation_timestep"}),
    "figures.timestep_ablation.timesteps": ([500], {"ablation_timestep"}),
    "sanity.teacher_min_top1": (0.5, {"sanity_table"}),
    "sanity.recognition_min": (0.5, {"sanity_table"}),
    "metrics.enabled": (False, {"cost_table"}, {"real_features", "set_scores", "representativeness",
                                             "fig_representativeness"}),
    "metrics.k": (1, {"set_scores"}),
    "metrics.max_real": (4, {"real_features"}),
    "ablation.enabled": (False, {"set_scores", "cost_table", "diagnose"},
                         {"decode_variant", "ablation_table", "evaluate", "select_variant"}),
    "ablation.ipc": (1, {"decode_variant", "ablation_table", "evaluate", "set_scores", "cost_table", "diagnose",
                         "select_variant"}, {"decode_variant", "evaluate", "select_variant"}),
    # a variant runs the main rules from the first stage whose keys it changes (rules/variants.smk)
    "ablation.variants.<name>.decode_start": ("inverted", {"decode_variant", "ablation_table"}),
    **{f"ablation.variants.<name>.{k}": (v, {"select_variant", "decode_variant", "ablation_table", "cost_table"})
       for k, v in {"skew_mode": "code", "skew": 0.1, "m": 100}.items()},
    **{f"ablation.variants.<name>.{k}": (v, {"select_variant", "decode_variant", "ablation_table", "cost_table"})
       for k, v in {"cov_rank": 2, "rescale": "forward", "criterion": "mmd"}.items()},
    "ablation.variants.<name>.decode_guidance": (3.0, {"decode_variant", "ablation_table"}),
    "ablation.variants.<name>.invert_guidance": (1.0, {"invert_variant", "fit_gaussian_variant", "select_variant",
                                                       "decode_variant", "ablation_table", "cost_table"}),
}

# the train keys, on the tiny run that trains its own models (its target: the models' quality check)
TRAIN_CASES = {
    **{f"train.vae.{k}": (v, {"train_ldm"}) for k, v in {
        "steps": 3, "batch_size": 3, "lr": 2e-3, "kl_weight": 2e-5, "block_out_channels": [16, 32],
        "latent_channels": 3}.items()},
    **{f"train.dit.{k}": (v, {"train_ldm"}) for k, v in {
        "steps": 3, "batch_size": 3, "lr": 2e-3, "ema_decay": 0.9, "hidden_size": 48, "num_heads": 4,
        "num_layers": 1, "patch_size": 4, "learn_sigma": True, "label_dropout": 0.2}.items()},
    **{f"train.teacher.{k}": (v, {"train_teacher"}) for k, v in {
        "arch": "convnet_tiny", "epochs": 2, "batch_size": 3, "lr": 3e-3, "weight_decay": 0.02,
        "precision": "fp32", "min_steps": 5, "crop_scale": [0.3, 1.0]}.items()},
    "model_precision": ("fp32", {"model_quality"}),  # the other model jobs: CASES
    "train.quality.samples_per_class": (2, {"model_quality"}),
    "datasets.<name>.channels": (1, {"train_ldm", "train_teacher", "model_quality"}),
}

NOT_WALKED = {
    "encode.threads": "a job's threads change no result (the same batches: tests/test_data.py)",
    "datasets.<name>.embedded": "the embedded export (its own dataset kind): tests/test_data.py",
    "datasets.<name>.val_per_class": "the embedded export's split: tests/test_data.py",
    "datasets.<name>.root": "a path: moving the data is a change of every input, not of a value",
    "datasets.<name>.model": "a path: another pipeline is a change of input",
    "datasets.<name>.teacher": "a path: another teacher is a change of input",
    "evaluate.ars_weight": "reaches aug_robust_table alone, which the tiny run has no job of (evaluate.augment: "
                           "[true]): its command in tests/test_workflow.py (the aug_robust overlay), its formula in "
                           "tests/test_metrics.py",
}


def _set(cfg: dict, key: str, value):
    *path, leaf = key.replace("datasets.<name>", f"datasets.{DS}").split(".")
    node = cfg
    for p in path:
        if p == "<name>":  # ablation.variants.<name>: the tiny config's (only) variant
            p = next(iter(node))
        node = node.setdefault(p, {})
    node[leaf] = value


def parse_dry_run(text: str) -> list[dict]:
    """Jobs of `snakemake -n -p` output: rule, wildcards, inputs, outputs (benchmark files included), shell command."""
    jobs = []
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"^(?:local)?rule (\w+):$", s)
        if m:
            jobs.append({"rule": m.group(1), "wildcards": "", "cmd": "", "input": [], "output": []})
        elif jobs and s.startswith(("input:", "output:", "benchmark:")):
            name, _, files = s.partition(":")  # a benchmark file is an output too: cost_table reads them
            jobs[-1]["input" if name == "input" else "output"] += [f.strip() for f in files.split(",") if f.strip()]
        elif jobs and s.startswith("wildcards:"):
            jobs[-1]["wildcards"] = s[len("wildcards:"):].strip()
        elif jobs and line.startswith("Shell command:"):
            jobs[-1]["cmd"] = line[len("Shell command:"):].strip()
    return jobs


def dry_runs(wd: Path, configs: list[tuple], args=()) -> dict[str, list[dict]]:
    """{name: parsed jobs} of one `snakemake -n -p [args] [extra args]` per (name, config[, extra args]), all run by
    one tests/dry_run_driver.py process."""
    logs = wd / ".walk"
    logs.mkdir(exist_ok=True)
    runs = [{"name": n, "config": yaml.safe_dump(c, sort_keys=False), "out": str(logs / f"{i}.log"),
             "args": [*args, *extra]} for i, (n, c, *extra) in enumerate(configs)]
    p = subprocess.run([sys.executable, str(REPO / "tests" / "dry_run_driver.py"), str(wd)], input=json.dumps(runs),
                       capture_output=True, text=True, cwd=wd)
    assert p.returncode == 0, p.stderr[-3000:]
    out = {}
    for r in json.loads(p.stdout):
        text = Path(r["out"]).read_text()
        assert r["rc"] == 0, f"{r['name']}: snakemake -n failed:\n{text[-3000:]}"
        out[r["name"]] = parse_dry_run(text)
    return out


def _id(job) -> tuple[str, str]:
    return job["rule"], job["wildcards"]


def downstream(jobs: list[dict], start: set) -> set:
    """`start` and every job that consumes, directly or not, an output of a job in it (ids)."""
    producer = {f: _id(j) for j in jobs for f in j["output"]}
    consumers = {}
    for j in jobs:
        for f in j["input"]:
            if f in producer:
                consumers.setdefault(producer[f], set()).add(_id(j))
    seen, todo = set(start), list(start)
    while todo:
        for c in consumers.get(todo.pop(), ()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def check_walk(cases: dict, results: dict, baseline: dict) -> list[str]:
    """The problems of each key's two dry runs (results[key] = (--forceall jobs, scheduled jobs)) against its case."""
    problems = []
    for key, case in cases.items():
        expected, expected_gone = case[1], (case[2] if len(case) > 2 else set())
        forced, scheduled = results[key]
        users = {_id(j) for j in forced if baseline.get(_id(j)) != j["cmd"]}
        got = {rule for rule, _ in users}
        if got != expected:
            problems.append(f"{key}: rules whose commands change {sorted(got)}, expected {sorted(expected)}")
        gone = {rule for rule, wc in set(baseline) - {_id(j) for j in forced}}
        if gone != expected_gone:
            problems.append(f"{key}: rules with jobs that no longer exist {sorted(gone)}, expected {sorted(expected_gone)}")
        want, ran = downstream(forced, users), {_id(j) for j in scheduled}
        if ran != want:
            extra = sorted({r for r, _ in ran - want})
            missed = sorted({r for r, _ in want - ran})
            problems.append(f"{key}: scheduled jobs differ from the users and their downstream jobs: rules of jobs "
                            f"scheduled with an unchanged command {extra}, of jobs not scheduled {missed}")
    return problems


def _baseline(wd, cfg, args=()) -> dict:
    jobs = dry_runs(wd, [("baseline", cfg)], ("--forceall", *args))["baseline"]
    return {_id(j): j["cmd"] for j in jobs}


def walk(wd, cfg, cases: dict, args=()) -> dict:
    """{key: (--forceall jobs, scheduled jobs)} with each key of `cases` set to its value in a copy of `cfg`."""
    configs = {}
    for key, (value, *_) in cases.items():
        c = copy.deepcopy(cfg)
        _set(c, key, value)
        if key == "evaluate.protocol":  # a named protocol fixes its keys: the tiny config's own values go
            for k in PROTOCOLS[value]:
                c["evaluate"].pop(k, None)
        configs[key] = c
    runs = dry_runs(wd, [run for key, c in configs.items() for run in ((f"{key} forced", c, "--forceall"), (key, c))],
                    args)
    return {key: (runs[f"{key} forced"], runs[key]) for key in cases}


def test_every_schema_key_is_walked_or_listed_with_a_reason():
    schema = yaml.safe_load(SCHEMA.read_text())
    leaves = {k for k, _ in _schema_leaves(schema, "", schema["definitions"])}
    listed = set(CASES) | set(TRAIN_CASES) | set(NOT_WALKED)
    assert leaves - listed == set(), f"schema keys the walk does not cover: {sorted(leaves - listed)}"
    assert listed - leaves == set(), f"walked keys the schema lacks: {sorted(listed - leaves)}"


@pytest.mark.slow
def test_each_key_reruns_exactly_its_rules_and_reaches_their_commands(tiny_run, tmp_path):
    src, cfg = tiny_run
    wd = copy_run(src, tmp_path / "wf")
    assert dry_runs(wd, [("unchanged", cfg)])["unchanged"] == []  # the finished run has nothing to do
    problems = check_walk(CASES, walk(wd, cfg, CASES), _baseline(wd, cfg))
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_silent_key(tiny_run, tmp_path):
    """The walk's own check fails for a key whose value stops at the rule's params (the timestep-ablation timesteps
    once did): the job reruns, with the same command."""
    src, cfg = tiny_run
    wd = copy_run(src, tmp_path / "wf")
    smk = wd / "rules" / "figures.smk"
    text = smk.read_text()
    spec = '        args=stage_args("ablation-timestep"),\n'
    assert spec in text
    # the command's timesteps fixed, the config's value moved into a param of its own that the command does not use
    smk.write_text(text.replace(spec, '        args=stage_args("ablation-timestep", timesteps=[500]),\n'
                                      "        timesteps=ablation_timesteps,\n"))
    case = {"figures.timestep_ablation.timesteps": CASES["figures.timestep_ablation.timesteps"]}
    problems = check_walk(case, walk(wd, cfg, case), _baseline(wd, cfg))
    assert len(problems) == 2 and "rules whose commands change []" in problems[0], problems
    assert "scheduled with an unchanged command ['ablation_timestep', " in problems[1], problems


def models_config(cfg: dict) -> dict:
    """The tiny config with models trained by the workflow, at the smallest sizes that train."""
    c = copy.deepcopy(cfg)
    c["datasets"][DS].update(model="train", teacher="train")
    c["train"] = {
        "vae": {"steps": 2, "batch_size": 4, "lr": 1e-3, "kl_weight": 1e-5, "block_out_channels": [16, 16],
                "latent_channels": 4},
        "dit": {"steps": 2, "batch_size": 4, "lr": 1e-3, "ema_decay": 0.5, "hidden_size": 32, "num_heads": 2,
                "num_layers": 2, "patch_size": 2, "learn_sigma": False, "label_dropout": 0.1},
        "teacher": {"arch": "resnet_tiny", "epochs": 1, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.01},
        "quality": {"samples_per_class": 1},
    }
    return c


@pytest.mark.slow
def test_each_train_key_reruns_its_model_and_reaches_its_command(tiny_run, tmp_path):
    src, cfg = tiny_run
    wd = copy_run(src, tmp_path / "wf")
    mcfg = models_config(cfg)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(mcfg, sort_keys=False))
    target = f"results/{DS}/models/quality.json"
    snakemake(wd, "--cores", "2", target)  # trains the tiny VAE + DiT and teacher, checks them
    args = (target,)
    assert dry_runs(wd, [("unchanged", mcfg)], args)["unchanged"] == []
    problems = check_walk(TRAIN_CASES, walk(wd, mcfg, TRAIN_CASES, args), _baseline(wd, mcfg, args))
    assert not problems, "\n".join(problems)
