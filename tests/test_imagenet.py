"""ImageNet-1K at scale, without ImageNet: the whole DAG of config/imagenet.yaml over a fake 1,000-class tree."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO, copy_workflow, imagenet_config, make_fake_imagenet, snakemake


def job_stats(text: str) -> dict:
    block = text[text.index("Job stats:"):]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", block.split("\n\n")[0], re.M)}


@pytest.mark.slow
def test_imagenet_dag_has_every_job_of_1000_classes_and_the_slurm_profile_groups_them(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    root = make_fake_imagenet(tmp_path / "imagenet", 1000, n_train=50)  # IPC 50 of random real images
    (tmp_path / "DiT-XL-2-256").mkdir()
    (tmp_path / "resnet18.pt").touch()
    cfg = imagenet_config(root, tmp_path / "DiT-XL-2-256", tmp_path / "resnet18.pt")
    (tmp_path / "imagenet.yaml").write_text(yaml.safe_dump(cfg))
    # the SLURM profile's dry run (no cluster needed) prints every job and every group job
    p = snakemake(wd, "-n", "--workflow-profile", str(REPO / "profiles" / "slurm"), "--slurm-no-account",
                  "--configfile", str(tmp_path / "imagenet.yaml"))
    out = p.stdout + p.stderr
    stats = job_stats(out)
    n, ipcs = 1000, cfg["select"]["ipc"]
    e = cfg["evaluate"]
    assert stats["encode"] == stats["invert"] == stats["fit_gaussian"] == n
    stored = cfg["invert"]["store_classes"]  # the timestep ablation runs on the classes that store inverted latents
    assert stats["ablation_timestep"] == stored == 10
    assert stats["select"] == stats["decode"] == stats["random_real"] == n * len(ipcs)
    assert stats["evaluate"] == len(e["methods"]) * len(ipcs) * len(e["students"]) * len(e["seeds"])
    assert stats["selection_summary"] == stats["collect_eval"] == len(ipcs)
    for rule in ("fig_normality", "fig_group_sampling", "fig_timestep", "fig_samples", "fig_storage", "fig_accuracy",
                 "cost_table", "teacher_table", "tables"):
        assert stats[rule] == 1, rule
    # only the ImageNet dataset: --configfile replaces the embedded default instead of adding to it
    assert "export_embedded" not in stats and "train_ldm" not in stats
    assert stats["total"] == sum(v for k, v in stats.items() if k != "total")

    # groups (profiles/slurm): 10 components per sbatch. per_class_cpu: each class's fit_gaussian (1,000 components)
    # and each random_real job (2,000); decode: each select with its decode (2,000); distill, 5 components per
    # sbatch: each class's encode with its invert (1,000)
    groups = {g: len(re.findall(rf"Group job {g} ", out)) for g in ("per_class_cpu", "decode", "distill")}
    assert groups == {"per_class_cpu": (n + n * len(ipcs)) // 10, "decode": n * len(ipcs) // 10, "distill": n // 5}
    grouped_rules = {g.split("=")[0] for g in yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())["groups"]}
    localrules = {"all", "selection_summary", "collect_eval", "tables", "cost_table"} | {
        r for r in stats if r.startswith("fig_")}
    n_local = sum(stats[r] for r in localrules)
    ungrouped = stats["total"] - n_local - sum(stats[r] for r in grouped_rules if r in stats)
    # ablation_timestep per stored class; evaluate; prepare_val, teacher_table and sanity_table once (they load the
    # teacher and images: jobs, not work for the submit host)
    assert ungrouped == stored + stats["evaluate"] + 3 and stats["prepare_val"] == stats["sanity_table"] == 1
    # what goes through sbatch: 749 jobs with the groups, 9,049 without
    assert (ungrouped + sum(groups.values()), stats["total"] - n_local) == (749, 9049)
