"""A dataset of the user's own, of another kind than the embedded default (grey glyphs made here, d3hr.synthetic), run
through the workflow with `model: train` and `teacher: train` and the embedded default's student budgets: the budget
rule gives `full` more optimiser steps than any distilled set, and the sanity table flags a deliberately weak teacher
(one optimiser step) with a warning in the run's output."""

from __future__ import annotations

import json

import yaml

from conftest import REPO, copy_workflow, snakemake, write_config


def test_own_dataset_budgets_and_a_weak_teacher_flagged(tmp_path):
    from d3hr.synthetic import make_glyphs

    root = make_glyphs(tmp_path / "glyphs", n_train=20, n_val=6, size=16, classes=["disc", "square", "triangle"])
    wd = copy_workflow(tmp_path / "wf")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())  # the embedded default's budgets
    cfg["datasets"] = {"glyphs": {"root": str(root), "classes": "all", "resolution": 16, "channels": 1,
                                  "model": "train", "teacher": "train"}}
    cfg["train"]["vae"].update(steps=2, batch_size=4, block_out_channels=[16, 16])
    cfg["train"]["dit"].update(steps=2, batch_size=4, hidden_size=32, num_heads=2, num_layers=1)
    cfg["train"]["teacher"].update(arch="convnet_tiny", epochs=1, min_steps=0)  # one step: a weak teacher
    cfg["train"]["quality"] = {"samples_per_class": 2}
    cfg["select"]["ipc"] = [1, 4]
    cfg["evaluate"].update(methods=["random_real", "dit_noise", "full"], students=["convnet_tiny"], seeds=[0])
    cfg["figures"]["enabled"] = cfg["metrics"]["enabled"] = cfg["ablation"]["enabled"] = False
    write_config(wd, cfg)
    p = snakemake(wd, "--cores", "2", "results/glyphs/tables/sanity.md")  # the tables, not D3HR's own images

    ev = {str(f): json.loads(f.read_text()) for f in (wd / "results" / "glyphs" / "eval").rglob("*.json")}
    full = [r for r in ev.values() if r["method"] == "full"]
    sets = [r for r in ev.values() if r["method"] != "full"]
    assert len(full) == 1 and len(sets) == 4, sorted(ev)
    # 60 images at batch 100: 12 epochs are 12 steps; the floor (the schema's default) raises them
    assert full[0]["steps"] >= full[0]["min_steps"] > 12 and full[0]["n_train_images"] == 60
    assert full[0]["steps"] > max(r["steps"] for r in sets), [(r["method"], r["ipc"], r["steps"]) for r in ev.values()]
    sanity = (wd / "results" / "glyphs" / "tables" / "sanity.md").read_text()
    teacher_row = next(line for line in sanity.splitlines() if "teacher top-1 on val" in line)
    assert "**FAILED**" in teacher_row, sanity
    assert "sanity check failed (results/glyphs/tables/sanity.md" in p.stderr and "teacher top-1 on val" in p.stderr
