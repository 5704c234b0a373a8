"""The SLURM profile against a real SLURM: a one-node cluster on localhost (tests/slurm_cluster.py) runs the tiny
config end to end, every cluster job through `sbatch`, GPU rules asking for a GPU, the small per-class jobs grouped."""

from __future__ import annotations

import re
import shutil
import sys

import pytest

import slurm_cluster
from conftest import REPO, build_tiny_workflow, snakemake
from test_workflow import write_config


# Snakemake with the SLURM executor polling every 2 s. The plugin adds 10 s to its wait after every status check that
# finds no job finished (up to 180 s), whatever --seconds-between-status-checks says: right for a real queue, but
# here each job takes seconds, and the backoff was 60 of the test's 170 s. Everything else is the real plugin.
SNAKEMAKE_POLLING_2S = [sys.executable, "-c", """import sys
import snakemake_executor_plugin_slurm as slurm
slurm.Executor.next_seconds_between_status_checks = property(lambda self: 2, lambda self, value: None)
from snakemake.cli import main
sys.argv[0] = "snakemake"
main()
"""]


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_cluster.start()
    if reason:
        slurm_cluster.stop()
        pytest.skip(f"no SLURM cluster: {reason}")
    yield
    slurm_cluster.stop()


@pytest.mark.slow
def test_tiny_config_end_to_end_through_sbatch(cluster, tmp_path):
    # 2 classes x 1 IPC, D3HR only, soft labels. Without the profile's caps (cores, mem_mb, gpu) this run fails
    # (checked with 3 classes): Snakemake sums the resources of group members that could run side by side, and the
    # decode group cannot be submitted
    wd, cfg = build_tiny_workflow(tmp_path / "wf", classes=("cat", "dog"))
    cfg["select"]["ipc"] = [1]  # each sbatch level costs about 30 s (Snakemake starts inside the job): one IPC
    cfg["evaluate"].update(methods=["d3hr"], labels=["soft"])
    cfg["figures"]["enabled"] = False  # figures are localrules: tests/test_figures.py covers them
    cfg["metrics"]["enabled"] = cfg["ablation"]["enabled"] = False  # more of the same kinds of job: test_workflow.py
    cfg["diagnostics"]["enabled"] = False
    write_config(wd, cfg)
    shutil.rmtree(wd / "profiles")  # the profile under test is the repository's
    p = snakemake(wd, "--workflow-profile", str(REPO / "profiles" / "slurm"), "--slurm-no-account",
                  "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
                  # the profile's memory is sized for ImageNet; this node has less
                  "--default-resources", "mem_mb=2000", "runtime=30",
                  "--set-resources", "evaluate:mem_mb=2000", "invert:mem_mb=2000", command=SNAKEMAKE_POLLING_2S)
    out = p.stdout + p.stderr
    for f in ("tables/accuracy.md", "images/d3hr/ipc1/dog", "images/d3hr/ipc1/cat"):
        assert (wd / "results" / "tiny" / f).exists(), f
    matches = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+) \(log: ([^)]*)\)", out)
    submitted = {log: jobid for jobid, log in matches}
    logs = "\n".join(submitted)
    # every cluster rule went through sbatch, the grouped ones in group jobs; aggregations stayed local
    assert "rule_evaluate/" in logs, logs
    groups = {g: [j for log, j in submitted.items() if f"/group_{g}_" in log]
              for g in ("distill", "per_class_cpu", "decode")}
    # 2 encodes with their 2 inversions: one sbatch; 2 fit_gaussian: one sbatch; 2 selects with their 2 decodes
    # (select samples on the group's GPU): one sbatch
    assert [len(groups[g]) for g in ("distill", "per_class_cpu", "decode")] == [1, 1, 1], logs
    for rule in ("encode", "invert", "fit_gaussian", "select", "decode"):
        assert f"rule_{rule}/" not in logs, (rule, logs)
    assert "rule_tables" not in logs and "rule_collect_eval" not in logs
    # every member ran and logged
    for rule, n in (("encode", 2), ("invert", 2), ("fit_gaussian", 2), ("select", 2), ("decode", 2)):
        member_logs = [f for f in (wd / "logs" / "tiny" / rule).rglob("*.log")
                       if f.stat().st_size and f.stem != "summary"]
        assert len(member_logs) == n, (rule, member_logs)
        # the members of a group job of GPU rules ran in that job's own job server: imports and model load paid once
        # a group (rules/common.smk); a group of CPU jobs that import no torch starts none
        assert all(("[d3hr] ran in the job server" in f.read_text()) == (rule != "fit_gaussian") for f in member_logs), rule
    # a GPU rule asked SLURM for one GPU, so did the GPU groups (their members share it, one after another); the
    # CPU group asked for no GPU and for no more CPUs than the profile's `cores`
    eval_job = next(j for log, j in submitted.items() if "rule_evaluate" in log)
    for job, gpu in ((eval_job, True), (groups["distill"][0], True), (groups["decode"][0], True),
                     (groups["per_class_cpu"][0], False)):
        info = slurm_cluster.job_info(job)
        assert "JobState=COMPLETED" in info and bool(re.search(r"gpu[:=]1", info)) == gpu, info
        assert int(re.search(r"NumCPUs=(\d+)", info).group(1)) <= 2, info
