"""Many `snakemake -n -p` runs in one workflow folder, one per config text, at the cost of one interpreter start.

Reads a JSON list of {"config": YAML text, "out": log path, "args": [...]} on stdin; for each, writes the text beside
"out" and forks (snakemake and the workflow's own imports are already loaded, so a child only parses the Snakefile and
builds the DAG) to run `snakemake -n -p --nolock [args] --configfile <text>` with its output in "out", at most
`--jobs` children at a time. The text is a whole config, so it replaces every value of config/config.yaml. Prints the
list back with each run's exit code ("rc"). Used by tests/test_schema_walk.py.
"""

from __future__ import annotations

import json
import os
import sys


def start(workdir: str, args: list[str], out: str) -> int:
    """Fork a child that runs the dry run; returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: Snakemake's own main(), output to `out`
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(workdir)
            from snakemake.cli import main

            main(["-n", "-p", "--nolock", *args])
        except SystemExit as e:
            os._exit(e.code if isinstance(e.code, int) else 1)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(3)
        os._exit(0)
    return pid


def main():
    workdir, jobs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2
    import snakemake.cli  # loaded once, before the forks
    import snakemake.scheduling.job_scheduler  # noqa: F401
    import snakemake.workflow  # noqa: F401

    snakemake.cli.get_argument_parser()  # collects the executor, storage, ... plugins (they import pandas & co.)

    import d3hr.config  # noqa: F401  (what rules/common.smk imports)

    runs = json.load(sys.stdin)
    pending, running = list(runs), {}
    while pending or running:
        while pending and len(running) < jobs:
            r = pending.pop(0)
            cfg = os.path.abspath(r["out"] + ".config.yaml")
            with open(cfg, "w") as f:
                f.write(r["config"])
            # --configfile takes several files: it goes last, after the targets
            running[start(workdir, [*r.get("args", []), "--configfile", cfg], r["out"])] = r
        pid, status = os.wait()
        running.pop(pid)["rc"] = os.waitstatus_to_exitcode(status)
    json.dump(runs, sys.stdout)


if __name__ == "__main__":
    main()
