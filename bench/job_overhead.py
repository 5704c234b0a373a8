"""Benchmark: the fixed cost of every rule's job, from process start to the end of a job that has almost nothing to do.

Most of a run's jobs are small per-class jobs, and each is a new Python process: what it imports and loads before it
does any work is paid once per job (and again per cluster job). This bench builds the tests' tiny workflow (2 classes,
16x16 images, a 2-layer DiT) in a temporary folder, runs it once, then re-runs the real shell command of one job of
every rule (as `snakemake -n -p --forceall` prints it) 5 times and reports the median wall time. On inputs this small
the work is negligible, so the wall time is the job's fixed cost: interpreter start, imports, model loading, I/O.

Each command is timed twice: as a process of its own (a job of a cluster run, or of a run with `job_server: false`) and
through the job server of a local run (d3hr/jobserver.py: the command runs in a child forked from a process that has
imported torch & co. once). The reference, measured in the same run, is a bare `python -c pass`; the table prints both
costs, their ratio, the job server's cost against the target (<= 1 s for jobs that load no model, <= 3 s for jobs
that do), and the three heaviest top-level imports of the job as a process of its own (`python -X importtime`).

Through the job server it also prints the time from a job's launch to the first line of its stage (`d3hr.cli.main`
reports it when $D3HR_LAUNCHED_AT is set): the fixed cost as the speed issue defines it, "from process start to the
first useful work", without the stage's own work. That work is what remains of a served job that loads no model (the
figure jobs draw and save a whole figure even from tiny inputs); for a model job it includes loading the model.

    python bench/job_overhead.py             # all rules, 5 runs each
    python bench/job_overhead.py --runs 3 --rules select decode
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

# rules whose job builds a network or loads a model checkpoint (target 3 s); every other rule: 1 s
MODEL_RULES = {"train_ldm", "train_teacher", "model_quality", "encode", "invert", "decode", "dit_noise", "kmeans",
               "ablation_timestep", "invert_variant", "decode_variant", "evaluate", "evaluate_hard", "teacher_table",
               "real_features", "sanity_table", "set_scores"}


def shell_commands(wd: Path, snakemake) -> dict[str, str]:
    """The shell command of the first job of every rule, as `snakemake -n -p --forceall` prints it."""
    out = snakemake(wd, "-n", "-p", "--forceall", "--cores", "1")
    cmds, rule = {}, None
    for line in (out.stdout + out.stderr).splitlines():
        s = line.strip()
        m = re.match(r"(local)?rule (\w+):$", s)
        if m:
            rule = m.group(2)
        elif s.startswith("Shell command: ") and rule and rule not in cmds and s != "Shell command: None":
            cmds[rule] = s[len("Shell command: "):]  # (rules without a shell command, such as `all`, print None)
    return cmds


def _outputs(cmd: str) -> list[str]:
    """The paths after --out* flags: removed before each run so that a directory output is made afresh."""
    args = shlex.split(cmd.split(" > ")[0])
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--out")]


STARTS = re.compile(r"^\[d3hr\] \S+ starts ([\d.]+) s after its launch$", re.M)


def time_command(cmd: str, wd: Path, env: dict, to_stage: list | None = None) -> float:
    """The wall time of `cmd`; with `to_stage`, also appends the time from its launch to the first line of its stage
    (`d3hr.cli.main` prints it when $D3HR_LAUNCHED_AT is set; read from the job's log)."""
    for out in _outputs(cmd):
        p = wd / out
        if p.is_dir():
            shutil.rmtree(p)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, shell=True, cwd=wd, env=dict(env, D3HR_LAUNCHED_AT=repr(time.time())))
    dt = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"command failed ({p.returncode}): {cmd}")
    if to_stage is not None:
        log = shlex.split(cmd.split(" > ", 1)[1])[0] if " > " in cmd else None
        m = STARTS.search((wd / log).read_text()) if log and (wd / log).is_file() else None
        to_stage.append(float(m.group(1)) if m else float("nan"))
    return dt


def heaviest_imports(cmd: str, wd: Path, env: dict, n: int = 3) -> str:
    """The `n` top-level packages with the largest cumulative import time in one run of `cmd`."""
    log = wd / "importtime.log"
    head = cmd.split(" > ")[0].replace("python -m d3hr", f"{shlex.quote(sys.executable)} -X importtime -m d3hr", 1)
    for out in _outputs(cmd):
        if (wd / out).is_dir():
            shutil.rmtree(wd / out)
    subprocess.run(f"{head} > /dev/null 2> {shlex.quote(str(log))}", shell=True, cwd=wd, env=env)
    top = {}
    for line in log.read_text().splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and len(m.group(2)) <= 1:  # top-level imports of the job (indent 0 or 1)
            name = m.group(3).split(".")[0]
            top[name] = max(top.get(name, 0), int(m.group(1)))
    return ", ".join(f"{k} {v / 1e6:.1f}s" for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:n])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--alone-runs", type=int, default=None, help="runs as a process of its own (default: --runs)")
    ap.add_argument("--no-imports", action="store_true", help="skip the -X importtime run of each command")
    ap.add_argument("--rules", nargs="*", help="only these rules")
    ap.add_argument("--keep", action="store_true", help="keep the temporary workflow folder")
    args = ap.parse_args(argv)

    from conftest import build_tiny_workflow, snakemake

    from d3hr.jobserver import ENV, start_server, stop_server

    tmp = Path(tempfile.mkdtemp(prefix="d3hr-job-overhead-"))
    try:
        wd, _ = build_tiny_workflow(tmp / "wf")
        print(f"tiny workflow in {wd}: running it once ...", file=sys.stderr, flush=True)
        snakemake(wd, "--cores", "2")
        cmds = shell_commands(wd, snakemake)
        if args.rules:
            cmds = {r: c for r, c in cmds.items() if r in args.rules}
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        env.pop(ENV, None)
        ref = statistics.median(time_command(f"{shlex.quote(sys.executable)} -c pass", wd, env)
                                for _ in range(args.runs))
        server = start_server(log_dir=str(tmp))  # the job server of a local run (d3hr/jobserver.py)
        if server is None:
            raise SystemExit(f"the job server did not start: {tmp}/d3hr-jobserver.log")
        served = dict(env, **{ENV: os.environ[ENV]})
        time_command(f"{shlex.quote(sys.executable)} -m d3hr --version", wd, served)  # waits for its imports
        rows = []
        try:
            for rule, cmd in sorted(cmds.items()):
                alone = statistics.median(time_command(cmd, wd, env) for _ in range(args.alone_runs or args.runs))
                starts = []
                med = statistics.median(time_command(cmd, wd, served, starts) for _ in range(args.runs))
                start = statistics.median(starts)
                target = 3.0 if rule in MODEL_RULES else 1.0
                rows.append((rule, "model" if rule in MODEL_RULES else "-", alone, med, alone / med, target,
                             med / target, "" if args.no_imports else heaviest_imports(cmd, wd, env), start))
                print(f"{rule}: {alone:.2f} s alone, {med:.2f} s in the job server ({start:.2f} s to its stage)",
                      file=sys.stderr, flush=True)
        finally:
            stop_server(server)
        print(f"\nfixed cost per job: median of {args.alone_runs or args.runs} / {args.runs} runs of one job of each "
              f"rule on the tiny workflow, as a process of its own / in the job server (reference: `python -c pass` = "
              f"{ref:.3f} s)\n")
        print("| rule | loads a model | own process (s) | job server (s) | speed-up | target (s) | job server / target "
              "| job server, launch to stage (s) | heaviest imports of its own process |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for r in rows:
            flag = "" if r[6] <= 1 else " **over**"
            print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.1f}x | {r[5]:.0f} | {r[6]:.2f}{flag} | {r[8]:.2f} "
                  f"| {r[7]} |")
        over = [r[0] for r in rows if r[6] > 1]
        print(f"\n{len(rows) - len(over)} of {len(rows)} rules within target in the job server"
              + (f"; over: {', '.join(over)}" if over else ""))
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
