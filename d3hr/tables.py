"""Accuracy tables: tidy CSV (one row per run) and the paper's layout (rows: method; columns: IPC x student;
cells: mean +- std over seeds) as Markdown and LaTeX."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .h5io import atomic_output
from .methods import ordered

COLUMNS = ["method", "ipc", "student", "seed", "top1", "top5", "top1_best_last10pct", "best_step", "steps",
           "n_train_images", "train_seconds"]


def collect(files) -> pd.DataFrame:
    rows = []
    for f in files:
        r = json.loads(Path(f).read_text())
        rows.append({k: r.get(k) for k in COLUMNS})
    return pd.DataFrame(rows, columns=COLUMNS)


def _ipc_key(v):
    return (1, 0) if str(v) == "all" else (0, int(v))


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof=1) of top-1 in % over seeds, per method x IPC x student."""
    g = df.assign(top1=df.top1 * 100).groupby(["method", "ipc", "student"]).top1
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    return out


def _wide(s: pd.DataFrame, fmt) -> pd.DataFrame:
    s = s.assign(cell=[fmt(m, sd, n) for m, sd, n in zip(s["mean"], s["std"], s["n"])])
    w = s.pivot(index="method", columns=["ipc", "student"], values="cell")
    w = w[sorted(w.columns, key=lambda c: (_ipc_key(c[0]), c[1]))]
    order = ordered(w.index)
    return w.loc[order].fillna("")


def write_tables(csvs, out_dir):
    df = pd.concat([pd.read_csv(c, dtype={"ipc": str}) for c in csvs], ignore_index=True)
    df = df.sort_values(["method", "ipc", "student", "seed"], key=lambda c: c.map(_ipc_key) if c.name == "ipc" else c)
    out_dir = Path(out_dir)
    s = summary(df)
    md_cell = lambda m, sd, n: f"{m:.1f} ± {sd:.1f}" if n > 1 else f"{m:.1f}"
    tex_cell = lambda m, sd, n: f"${m:.1f}_{{\\pm {sd:.1f}}}$" if n > 1 else f"${m:.1f}$"
    wm, wt = _wide(s, md_cell), _wide(s, tex_cell)
    header = [f"IPC {i} / {st}" for i, st in wm.columns]
    md = ["| method | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    md += [f"| {m} | " + " | ".join(row) + " |" for m, row in zip(wm.index, wm.values)]
    n_seeds = int(s["n"].max()) if len(s) else 0
    md.append("")
    md.append(f"Top-1 (%) on the real validation split, mean ± std over up to {n_seeds} seeds.")
    tex = ["\\begin{tabular}{l" + "c" * len(header) + "}", "\\toprule",
           "Method & " + " & ".join(h.replace("_", "\\_") for h in header) + " \\\\", "\\midrule"]
    tex += [m.replace("_", "\\_") + " & " + " & ".join(row) + " \\\\" for m, row in zip(wt.index, wt.values)]
    tex += ["\\bottomrule", "\\end{tabular}"]
    for name, text in (("accuracy.md", "\n".join(md) + "\n"), ("accuracy.tex", "\n".join(tex) + "\n")):
        with atomic_output(out_dir / name) as tmp:
            tmp.write_text(text)
    with atomic_output(out_dir / "accuracy.csv") as tmp:
        df.to_csv(tmp, index=False)
    return df, s
