"""`python -m d3hr <stage> ...`: the same command line as the `d3hr` script (docs/configuration.md)."""

from .cli import main

raise SystemExit(main())
