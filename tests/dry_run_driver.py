"""Many `snakemake -n -p` runs in one workflow folder, one per config text, at the cost of one interpreter start.

Reads a JSON list of {"config": YAML text, "out": log path, "args": [...]} on stdin; for each, writes the text to
config/config.yaml, forks (snakemake and the workflow's own imports are already loaded, so a child only parses the
Snakefile and builds the DAG) and runs `snakemake -n -p --nolock [args]` in the child with its output in "out".
Prints the list back with each run's exit code ("rc"). Used by tests/test_schema_walk.py.
"""

from __future__ import annotations

import json
import os
import sys


def dry_run(workdir: str, args: list[str], out: str) -> int:
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
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main():
    workdir = sys.argv[1]
    sys.path.insert(0, workdir)
    import snakemake.cli  # noqa: F401  (loaded once, before the forks)
    import snakemake.workflow  # noqa: F401

    import d3hr.config  # noqa: F401  (what rules/common.smk imports)

    runs = json.load(sys.stdin)
    for r in runs:
        with open(os.path.join(workdir, "config", "config.yaml"), "w") as f:
            f.write(r["config"])
        r["rc"] = dry_run(workdir, r.get("args", []), r["out"])
    json.dump(runs, sys.stdout)


if __name__ == "__main__":
    main()
