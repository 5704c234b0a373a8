"""What the SLURM profile's groups and the cluster jobs' job servers save (groups `distill`: encode, invert;
`per_class_cpu`: fit_gaussian, kmeans, random_real, dit_noise; `decode`: select, decode): a tiny config run end to end
through a one-node SLURM cluster on localhost (tests/slurm_cluster.py, root and Debian's slurm-wlm + munge needed),
in the same process: with the profile as it is (each cluster job's members served by that job's job server), with
`job_server: false` (each member its own process), and with the groups removed; wall time, sbatch jobs, each grouped
rule's mean seconds per job (its benchmark file: the member's own start-up included), and the resources the group
jobs asked for.

    python bench/slurm_groups.py [n_classes]
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import slurm_cluster  # noqa: E402
from conftest import BIN, REPO, build_tiny_workflow  # noqa: E402
from test_workflow import write_config  # noqa: E402

n_classes = int(sys.argv[1]) if len(sys.argv) > 1 else 3
names = ["cat", "dog", "eel", "fox", "gnu", "hen", "owl", "yak"][:n_classes]
reason = slurm_cluster.start()
if reason:
    slurm_cluster.stop()
    sys.exit(f"no SLURM cluster: {reason}")
MODES = ("grouped, served", "grouped, own process", "one sbatch per job")
RULES = ("encode", "invert", "fit_gaussian", "select", "decode")  # the grouped rules with a benchmark file
rows = []
try:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for k, mode in enumerate(MODES):
            wd, cfg = build_tiny_workflow(d / f"m{k}" / "wf", classes=tuple(names), model_classes=tuple(names))
            cfg["select"]["ipc"] = [1, 2]
            cfg["evaluate"]["methods"] = ["d3hr", "random_real", "dit_noise"]
            cfg["figures"] = {"enabled": False}
            cfg["job_server"] = mode != "grouped, own process"
            write_config(wd, cfg)
            prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
            if not mode.startswith("grouped"):  # the reference: the same profile without its groups
                del prof["groups"], prof["group-components"]
            shutil.rmtree(wd / "profiles")
            (wd / "prof").mkdir()
            (wd / "prof" / "config.yaml").write_text(yaml.safe_dump(prof))
            t0 = time.perf_counter()
            p = subprocess.run([str(BIN / "snakemake"), "--workflow-profile", "prof", "--slurm-no-account",
                                "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
                                "--default-resources", "mem_mb=2000", "runtime=30",
                                "--set-resources", "evaluate:mem_mb=2000", "invert:mem_mb=2000", "--verbose"],
                               cwd=wd, capture_output=True, text=True,
                               env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"))
            wall = time.perf_counter() - t0
            if p.returncode:
                logs = "\n".join(f"--- {f}\n{f.read_text()[-1500:]}" for f in (wd / "logs").rglob("*.log"))
                sys.exit(p.stdout[-3000:] + p.stderr[-3000:] + logs)
            out = p.stdout + p.stderr
            sbatch = len(re.findall(r"has been submitted with SLURM jobid", out))
            jobs = int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
            per_job = {r: statistics.mean(float(f.read_text().splitlines()[1].split()[0])
                                          for f in (wd / "benchmarks" / "tiny" / r).rglob("*.tsv"))
                       for r in RULES}
            rows.append((mode, jobs, sbatch, wall, per_job))
            for g in re.findall(r"^sbatch call: .*--comment rule_((?:distill|per_class_cpu|decode)_\S+)\s+(.*?) -D ",
                                out, re.M):
                if not g[0].startswith("decode_") or g[0] == "decode_decode":  # group jobs, not single decodes
                    print(f"{mode}: group job {g[0]} asked for {g[1]}")
finally:
    slurm_cluster.stop()
print(f"tiny config, {n_classes} classes, IPC 1 and 2, through a one-node SLURM cluster on localhost")
print("| mode | Snakemake jobs | sbatch jobs | wall s | " + " | ".join(f"{r} s/job" for r in RULES) + " |")
print("|---|---|---|---|" + "---|" * len(RULES))
for mode, jobs, sbatch, wall, per_job in rows:
    print(f"| {mode} | {jobs} | {sbatch} | {wall:.0f} | " + " | ".join(f"{per_job[r]:.1f}" for r in RULES) + " |")
(_, _, s0, w0, j0), (_, _, _, w1, j1), (_, _, s2, w2, _) = rows
print(f"job servers in group jobs: wall time ratio (own process / served) {w1 / w0:.2f}; seconds a grouped job "
      "saves: " + ", ".join(f"{r} {j1[r] - j0[r]:.1f}" for r in RULES))
print(f"grouping: {s2 - s0} fewer sbatch jobs, wall time ratio (ungrouped / grouped) {w2 / w0:.2f}")
