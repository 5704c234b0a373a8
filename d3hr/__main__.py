"""`python -m d3hr <stage> ...`: the same command line as the `d3hr` script."""

from .cli import main

raise SystemExit(main())
