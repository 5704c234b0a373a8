"""ImageNet-1K at scale, without ImageNet: the whole DAG of config/imagenet.yaml over a fake 1,000-class tree."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import copy_workflow, imagenet_config, make_fake_imagenet, snakemake


def job_stats(text: str) -> dict:
    block = text[text.index("Job stats:"):]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", block.split("\n\n")[0], re.M)}


@pytest.mark.slow
def test_imagenet_dag_has_every_job_of_1000_classes(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    root = make_fake_imagenet(tmp_path / "imagenet", 1000)
    (tmp_path / "DiT-XL-2-256").mkdir()
    (tmp_path / "resnet18.pt").touch()
    cfg = imagenet_config(root, tmp_path / "DiT-XL-2-256", tmp_path / "resnet18.pt")
    (tmp_path / "imagenet.yaml").write_text(yaml.safe_dump(cfg))
    p = snakemake(wd, "-n", "--quiet", "rules", "--configfile", str(tmp_path / "imagenet.yaml"))
    stats = job_stats(p.stdout + p.stderr)
    n, ipcs = 1000, cfg["select"]["ipc"]
    e = cfg["evaluate"]
    assert stats["encode"] == stats["invert"] == stats["fit_gaussian"] == stats["ablation_timestep"] == n
    assert stats["select"] == stats["decode"] == stats["random_real"] == n * len(ipcs)
    assert stats["evaluate"] == len(e["methods"]) * len(ipcs) * len(e["students"]) * len(e["seeds"])
    assert stats["selection_summary"] == stats["collect_eval"] == len(ipcs)
    for rule in ("fig_normality", "fig_group_sampling", "fig_timestep", "fig_samples", "fig_storage", "fig_accuracy",
                 "cost_table", "teacher_table", "tables"):
        assert stats[rule] == 1, rule
    # only the ImageNet dataset: --configfile replaces the embedded default instead of adding to it
    assert "export_embedded" not in stats and "train_ldm" not in stats
    assert stats["total"] == sum(v for k, v in stats.items() if k != "total")
