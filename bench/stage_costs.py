"""Per-stage cost of a finished run, from the rules' `benchmark:` files: jobs and summed wall seconds per stage.

    python bench/stage_costs.py [benchmarks/animal_mnist]
"""

import collections
import sys
from pathlib import Path

import pandas as pd

root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/animal_mnist")
rows = collections.defaultdict(lambda: [0, 0.0, 0.0])
for f in sorted(root.rglob("*.tsv")):
    parts = f.relative_to(root).with_suffix("").parts
    stage = "/".join(parts[:2]) if parts[0] == "decode" else parts[0]
    b = pd.read_csv(f, sep="\t")
    r = rows[stage]
    r[0] += 1
    r[1] += float(b["s"].iloc[0])
    r[2] = max(r[2], float(b["max_rss"].iloc[0]))
df = pd.DataFrame([(k, *v) for k, v in rows.items()], columns=["stage", "jobs", "seconds", "peak_rss_mb"])
df = df.sort_values("seconds", ascending=False)
print(df.to_markdown(index=False, floatfmt=".0f") if hasattr(df, "to_markdown") else df.to_string(index=False))
print(f"\nsum of job wall times: {df.seconds.sum():.0f} s")
