"""The SLURM profile against a real SLURM: a one-node cluster on localhost (tests/slurm_cluster.py) runs the tiny
config end to end, every cluster job through `sbatch`, GPU rules asking for a GPU."""

from __future__ import annotations

import re
import shutil

import pytest

import slurm_cluster
from conftest import REPO, build_tiny_workflow, snakemake
from test_workflow import write_config


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_cluster.start()
    if reason:
        pytest.skip(f"no SLURM cluster: {reason}")
    yield
    slurm_cluster.stop()


@pytest.mark.slow
def test_tiny_config_end_to_end_through_sbatch(cluster, tmp_path):
    wd, cfg = build_tiny_workflow(tmp_path / "wf")
    cfg["select"]["ipc"] = [2]
    cfg["evaluate"]["methods"] = ["d3hr"]
    cfg["figures"]["timestep_ablation"]["enabled"] = False
    write_config(wd, cfg)
    shutil.rmtree(wd / "profiles")  # the profile under test is the repository's
    p = snakemake(wd, "--workflow-profile", str(REPO / "profiles" / "slurm"), "--slurm-no-account",
                  "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
                  # the profile's memory is sized for ImageNet; this node has less
                  "--default-resources", "mem_mb=2000", "runtime=30",
                  "--set-resources", "evaluate:mem_mb=2000", "invert:mem_mb=2000")
    out = p.stdout + p.stderr
    for f in ("tables/accuracy.md", "figures/normality.png", "figures/group_sampling.png", "images/d3hr/ipc2/cat"):
        assert (wd / "results" / "tiny" / f).exists(), f
    matches = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+) \(log: ([^)]*)\)", out)
    submitted = {log: jobid for jobid, log in matches}
    logs = "\n".join(submitted)
    # every cluster rule went through sbatch; aggregations stayed local
    for rule in ("encode", "invert", "fit_gaussian", "select", "decode", "evaluate"):
        assert f"rule_{rule}" in logs, (rule, logs)
    assert "rule_fig_" not in logs and "rule_tables" not in logs
    # a GPU rule asked SLURM for one GPU
    encode_job = next(j for log, j in submitted.items() if "rule_encode" in log)
    info = slurm_cluster.job_info(encode_job)
    assert re.search(r"gpu[:=]1", info) and "JobState=COMPLETED" in info, info
