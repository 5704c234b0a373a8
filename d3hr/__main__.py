"""`python -m d3hr <stage> ...`: the same command line as the `d3hr` script (docs/configuration.md). In a run with a
job server ($D3HR_JOB_SERVER, d3hr/jobserver.py) the command runs there, in a child forked from a process that has
already imported torch and the other libraries; without one, here."""

import sys

from .jobserver import run_via_server

rc = run_via_server(sys.argv[1:])
if rc is None:
    from .cli import main

    rc = main()
raise SystemExit(rc)
