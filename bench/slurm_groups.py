"""What the SLURM profile's groups save (`per_class_cpu`: fit_gaussian, select, kmeans, random_real, dit_noise;
`decode`): a tiny config run end to end through a one-node SLURM cluster on localhost (tests/slurm_cluster.py, root
and Debian's slurm-wlm + munge needed), once with the profile as it is and once with its groups removed, in the same
process; wall time, sbatch jobs, and the resources the group jobs asked for.

    python bench/slurm_groups.py [n_classes]
"""

import os
import re
import shutil
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
rows = []
try:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for mode in ("grouped", "one sbatch per job"):
            wd, cfg = build_tiny_workflow(d / mode.split()[0] / "wf", classes=tuple(names), model_classes=tuple(names))
            cfg["select"]["ipc"] = [1, 2]
            cfg["evaluate"]["methods"] = ["d3hr", "random_real", "dit_noise"]
            cfg["figures"] = {"enabled": False}
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
            rows.append((mode, jobs, sbatch, wall))
            for g in re.findall(r"^sbatch call: .*--comment rule_((?:per_class_cpu|decode)_\S+)\s+(.*?) -D ", out, re.M):
                if g[0].startswith("per_class_cpu_") or g[0] == "decode_decode":  # group jobs, not single decodes
                    print(f"{mode}: group job {g[0]} asked for {g[1]}")
finally:
    slurm_cluster.stop()
print(f"tiny config, {n_classes} classes, IPC 1 and 2, through a one-node SLURM cluster on localhost")
print("| mode | Snakemake jobs | sbatch jobs | wall s |")
print("|---|---|---|---|")
for mode, jobs, sbatch, wall in rows:
    print(f"| {mode} | {jobs} | {sbatch} | {wall:.0f} |")
print(f"grouping: {rows[1][2] - rows[0][2]} fewer sbatch jobs, wall time ratio (ungrouped / grouped) "
      f"{rows[1][3] / rows[0][3]:.2f}")
