"""Every leaf key of the schema, changed one at a time in the config of a finished tiny run: `snakemake -n` must
rerun exactly the rules that use the key, and the new value must reach their jobs.

For each key: the jobs whose own definition changed (reason "Params have changed" or "Set of input files has
changed") belong to exactly the rules listed for the key below; each of those jobs' shell command differs from the
finished run's (the value reaches the `d3hr` command, whose stage records it in its outputs' provenance); every
other scheduled job only follows updated inputs. Keys that add jobs (a class, an IPC, a seed, a method ...) add them
and rerun nothing else but the listed collectors. A key the tiny run cannot exercise is listed with the reason, and
the test fails for a schema key that is in neither list. The `train` keys are walked on a second tiny run that
trains its own VAE, DiT and teacher.
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
from d3hr.config import SCHEMA, _schema_leaves

DS = "tiny"  # the tiny run's dataset name: `datasets.<name>.x` is walked as `datasets.tiny.x`

EVAL = {"evaluate", "evaluate_hard"}
PER_CLASS_DATA = {"encode", "random_real", "prepare_val", "real_features", "set_scores", "teacher_table"}

# key: (new value, rules whose jobs use it, whether the change adds jobs)
CASES = {
    "seed": (1, {"encode", "select", "random_real", "dit_noise", "kmeans", "ablation_timestep", "ablation_variant",
                 "real_features"}, False),
    "device": ("auto", {"encode", "invert", "decode", "ablation_timestep", "ablation_variant", "real_features",
                        "set_scores"} | EVAL, False),
    "datasets.<name>.classes": (["cat"], {"fig_normality", "fig_group_sampling", "fig_samples", "fig_storage",
                                         "teacher_table", "prepare_val", "collect_eval", "selection_summary",
                                         "cost_table", "representativeness", "ablation_table", "fig_timestep"}
                                | EVAL, False),
    "datasets.<name>.resolution": (24, {"encode", "random_real", "prepare_val", "teacher_table", "real_features",
                                        "set_scores"} | EVAL, False),
    "datasets.<name>.decode_resize": (24, {"decode", "prepare_val", "teacher_table", "real_features", "set_scores"}
                                      | EVAL, False),
    "encode.batch_size": (5, {"encode"}, False),
    "encode.sample_posterior": (False, {"encode"}, False),
    "encode.on_bad_image": ("skip", {"encode"}, False),
    "invert.num_inference_steps": (20, {"invert", "decode", "dit_noise", "kmeans", "ablation_timestep"}, False),
    "invert.guidance_scale": (3.0, {"invert"}, False),
    "invert.keep_timesteps": ([300, 500, 700], {"invert", "ablation_timestep"}, False),
    "invert.batch_size": (9, {"invert"}, False),
    "select.timestep": (300, {"select", "kmeans", "ablation_variant", "fig_normality", "fig_timestep"}, False),
    "select.ipc": ([1, 2, 4], {"fig_group_sampling", "fig_storage", "teacher_table", "selection_summary",
                               "cost_table", "representativeness"}, True),
    "select.m": (301, {"select"}, False),
    "select.chunk_groups": (150, {"select", "ablation_timestep", "ablation_variant"}, False),
    "select.weights.mu": (0.9, {"select", "ablation_timestep", "ablation_variant"}, False),
    "select.weights.sigma": (0.9, {"select", "ablation_timestep", "ablation_variant"}, False),
    "select.weights.skew": (0.4, {"select", "ablation_timestep", "ablation_variant"}, False),
    "select.skew_mode": ("code", {"select", "ablation_timestep", "ablation_variant"}, False),
    "decode.guidance_scale": (3.0, {"decode", "dit_noise", "kmeans", "ablation_timestep", "ablation_variant"}, False),
    "decode.batch_size": (9, {"decode", "ablation_timestep", "ablation_variant"}, False),
    "decode.start": ("above", {"decode"}, False),
    "evaluate.methods": (["d3hr", "random_real", "dit_noise", "d3hr_nogroup", "kmeans", "full", "kmeans_vae"],
                         {"teacher_table", "fig_samples", "cost_table"}, True),
    "evaluate.students": (["convnet_tiny", "convnet_tiny_in"], {"cost_table"}, True),
    "evaluate.seeds": ([0, 1], {"cost_table"}, True),
    "evaluate.epochs": (2, EVAL, False),
    "evaluate.full_epochs": (2, EVAL, False),
    "evaluate.steps": (4, EVAL, False),
    "evaluate.full_steps": (4, EVAL, False),
    "evaluate.batch_size": (6, EVAL, False),
    "evaluate.protocol": ("authors", {"prepare_val"} | EVAL, False),
    "evaluate.lr": (2e-3, EVAL, False),
    "evaluate.weight_decay": (0.02, EVAL, False),
    "evaluate.mix": ("mixup", EVAL, False),
    "evaluate.temperature": (10.0, EVAL, False),
    "evaluate.labels": (["soft"], {"cost_table"}, False),
    "evaluate.lrs_weight": (0.4, {"label_robust_table"}, False),
    "evaluate.val_crop": (0.875, {"prepare_val"}, False),
    "figures.enabled": (False, {"cost_table"}, False),
    "figures.qq_class": ("dog", {"fig_normality"}, False),
    "figures.qq_dims": (2, {"fig_normality"}, False),
    "figures.grid_ipc": (1, {"fig_samples"}, False),
    "figures.grid_classes": (1, {"fig_samples"}, False),
    "figures.grid_per_class": (4, {"fig_samples"}, False),
    "figures.timestep_ablation.enabled": (False, {"cost_table"}, False),
    "figures.timestep_ablation.ipc": (2, {"ablation_timestep"}, False),
    "figures.timestep_ablation.m": (60, {"ablation_timestep"}, False),
    "figures.timestep_ablation.timesteps": ([500], {"ablation_timestep"}, False),
    "metrics.enabled": (False, {"cost_table"}, False),
    "metrics.k": (1, {"set_scores"}, False),
    "metrics.max_real": (4, {"real_features"}, False),
    "ablation.enabled": (False, {"cost_table"}, False),
    "ablation.ipc": (1, {"cost_table"}, True),
    "ablation.variants.<name>.decode_start": ("inverted", {"ablation_variant", "ablation_table"}, False),
    "ablation.variants.<name>.skew_mode": ("code", {"ablation_variant", "ablation_table"}, False),
    "ablation.variants.<name>.skew": (0.1, {"ablation_variant", "ablation_table"}, False),
    "ablation.variants.<name>.m": (100, {"ablation_variant", "ablation_table"}, False),
    "ablation.variants.<name>.invert_guidance": (1.0, {"ablation_variant", "ablation_table"}, False),
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
        "arch": "convnet_tiny", "epochs": 2, "batch_size": 3, "lr": 3e-3, "weight_decay": 0.02}.items()},
    "train.quality.samples_per_class": (2, {"model_quality"}),
    "datasets.<name>.channels": (1, {"train_ldm", "train_teacher", "model_quality"}),
}

NOT_WALKED = {
    "datasets.<name>.embedded": "the embedded export (its own dataset kind): tests/test_data.py",
    "datasets.<name>.val_per_class": "the embedded export's split: tests/test_data.py",
    "datasets.<name>.root": "a path: moving the data is a change of every input, not of a value",
    "datasets.<name>.model": "a path: another pipeline is a change of input",
    "datasets.<name>.teacher": "a path: another teacher is a change of input",
}

_REASONS = {"params": "Params have changed", "inputs": "Set of input files has changed",
            "missing": "Missing output files", "updated": "Input files updated by another job"}


def _set(cfg: dict, key: str, value):
    *path, leaf = key.replace("datasets.<name>", f"datasets.{DS}").split(".")
    node = cfg
    for p in path:
        if p == "<name>":  # ablation.variants.<name>: the tiny config's (only) variant
            p = next(iter(node))
        node = node.setdefault(p, {})
    node[leaf] = value


def parse_dry_run(text: str) -> list[dict]:
    """Jobs of `snakemake -n -p` output: rule, wildcards, reasons (keys of _REASONS) and shell command."""
    jobs = []
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"^(?:local)?rule (\w+):$", s)
        if m:
            jobs.append({"rule": m.group(1), "wildcards": "", "reasons": set(), "cmd": ""})
        elif jobs and s.startswith("reason:"):
            jobs[-1]["reasons"] = {k for k, v in _REASONS.items() if v in s}
        elif jobs and s.startswith("wildcards:"):
            jobs[-1]["wildcards"] = s[len("wildcards:"):].strip()
        elif jobs and line.startswith("Shell command:"):
            jobs[-1]["cmd"] = line[len("Shell command:"):].strip()
    return jobs


def dry_runs(wd: Path, configs: list[tuple[str, dict]], args=()) -> dict[str, list[dict]]:
    """{name: parsed jobs} of one `snakemake -n -p` per (name, config), run by tests/dry_run_driver.py."""
    logs = wd / ".walk"
    logs.mkdir(exist_ok=True)
    runs = [{"name": n, "config": yaml.safe_dump(c, sort_keys=False), "out": str(logs / f"{i}.log"), "args": list(args)}
            for i, (n, c) in enumerate(configs)]
    p = subprocess.run([sys.executable, str(REPO / "tests" / "dry_run_driver.py"), str(wd)], input=json.dumps(runs),
                       capture_output=True, text=True, cwd=wd)
    assert p.returncode == 0, p.stderr[-3000:]
    out = {}
    for r in json.loads(p.stdout):
        text = Path(r["out"]).read_text()
        assert r["rc"] == 0, f"{r['name']}: snakemake -n failed:\n{text[-3000:]}"
        out[r["name"]] = parse_dry_run(text)
    return out


def check_walk(cases: dict, results: dict, baseline: dict) -> list[str]:
    """The problems of each key's dry run against its case (empty: every key as expected)."""
    problems = []
    for key, case in cases.items():
        expected, adds = case[1], (case[2] if len(case) > 2 else False)
        jobs = results[key]
        direct = [j for j in jobs if j["reasons"] & {"params", "inputs"}]
        new = [j for j in jobs if j["reasons"] == {"missing"}]
        other = [j for j in jobs if j not in direct and j not in new]
        got = {j["rule"] for j in direct}
        if got != expected:
            problems.append(f"{key}: rules rerun for a changed definition {sorted(got)}, expected {sorted(expected)}")
        for j in direct:
            before = baseline.get((j["rule"], j["wildcards"]))
            if j["cmd"] and before is not None and j["cmd"] == before:
                problems.append(f"{key}: {j['rule']} ({j['wildcards']}) reruns with an unchanged command: the value "
                                "does not reach the job")
        if adds and not new:
            problems.append(f"{key}: the change should add jobs, and adds none")
        if not adds and new:
            problems.append(f"{key}: unexpected new jobs {sorted({j['rule'] for j in new})}")
        stray = sorted({j["rule"] for j in other if j["reasons"] != {"updated"}})
        if stray:
            problems.append(f"{key}: jobs that neither use the key nor follow an updated input: {stray}")
    return problems


def _baseline(wd, cfg, args=()) -> dict:
    jobs = dry_runs(wd, [("baseline", cfg)], ("--forceall", *args))["baseline"]
    return {(j["rule"], j["wildcards"]): j["cmd"] for j in jobs}


def test_every_schema_key_is_walked_or_listed_with_a_reason():
    schema = yaml.safe_load(SCHEMA.read_text())
    leaves = {k for k, _ in _schema_leaves(schema, "", schema["definitions"])}
    listed = set(CASES) | set(TRAIN_CASES) | set(NOT_WALKED)
    assert leaves - listed == set(), f"schema keys the walk does not cover: {sorted(leaves - listed)}"
    assert listed - leaves == set(), f"walked keys the schema lacks: {sorted(listed - leaves)}"


def test_each_key_reruns_exactly_its_rules_and_reaches_their_commands(tiny_run, tmp_path):
    src, cfg = tiny_run
    wd = copy_run(src, tmp_path / "wf")
    assert dry_runs(wd, [("unchanged", cfg)])["unchanged"] == []  # the finished run has nothing to do
    baseline = _baseline(wd, cfg)
    configs = []
    for key, (value, *_) in CASES.items():
        c = copy.deepcopy(cfg)
        _set(c, key, value)
        configs.append((key, c))
    results = dry_runs(wd, configs)
    problems = check_walk(CASES, results, baseline)
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_silent_key(tiny_run, tmp_path):
    """The walk's own check fails for a key whose value stops at the rule's params (the timestep-ablation timesteps
    once did): the job reruns, with the same command."""
    src, cfg = tiny_run
    wd = copy_run(src, tmp_path / "wf")
    smk = wd / "rules" / "figures.smk"
    smk.write_text(smk.read_text().replace(" --timesteps {params.timesteps}", ""))
    baseline = _baseline(wd, cfg)
    c = copy.deepcopy(cfg)
    _set(c, "figures.timestep_ablation.timesteps", [500])
    problems = check_walk({"figures.timestep_ablation.timesteps": CASES["figures.timestep_ablation.timesteps"]},
                          dry_runs(wd, [("t", c)]), baseline)
    assert problems and all("unchanged command" in p for p in problems), problems


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


def test_each_train_key_reruns_its_model_and_reaches_its_command(tiny_run, tmp_path):
    src, cfg = tiny_run
    wd = copy_run(src, tmp_path / "wf")
    mcfg = models_config(cfg)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(mcfg, sort_keys=False))
    target = f"results/{DS}/models/quality.json"
    snakemake(wd, "--cores", "2", target)  # trains the tiny VAE + DiT and teacher, checks them
    args = (target,)
    assert dry_runs(wd, [("unchanged", mcfg)], args)["unchanged"] == []
    baseline = _baseline(wd, mcfg, args)
    configs = []
    for key, (value, _) in TRAIN_CASES.items():
        c = copy.deepcopy(mcfg)
        _set(c, key, value)
        configs.append((key, c))
    problems = check_walk(TRAIN_CASES, dry_runs(wd, configs, args), baseline)
    assert not problems, "\n".join(problems)
