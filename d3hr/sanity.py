"""Sanity checks of a run's tables (tables/sanity.md): whether its accuracy tables can mean anything.

Each check has a number, a threshold and a verdict:
    teacher          the teacher's top-1 on val >= sanity.teacher_min_top1: a weak teacher caps every student (the
                     soft labels) and every teacher-check figure
    full             `full` (the whole training split) >= the best random-real set: below it, the students' budget
                     for the whole split is too small (docs/method.md, "Budgets")
    random real      random real images rise from each IPC to the next by more than twice the larger seed std: if not,
                     the students cannot tell sets apart at this budget
    recognition      the teacher recognises each generative set's images as their class >= sanity.recognition_min
A check without its numbers (a method not evaluated, an imported teacher without a val score) is reported as such.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from .h5io import atomic_output

GENERATIVE = ("d3hr", "d3hr_nogroup", "dit_noise", "kmeans", "kmeans_vae")


def teacher_val_top1(quality_json: str | None, teacher: str) -> float | None:
    """The teacher's val top-1: from the models' quality check, else from the checkpoint (a teacher the workflow
    trained records it); None for an imported teacher."""
    if quality_json and Path(quality_json).is_file():
        return float(json.loads(Path(quality_json).read_text())["teacher_val_top1"])
    import torch

    return torch.load(teacher, map_location="cpu", weights_only=False).get("val_top1")


def sanity_checks(accuracy_csv: str, teacher_check_csv: str, teacher_top1: float | None, teacher_min_top1: float,
                  recognition_min: float) -> pd.DataFrame:
    """One row per check: check, subject, value, threshold, ok (None: not measured)."""
    acc = pd.read_csv(accuracy_csv, dtype={"ipc": str})
    acc = acc[~acc.hard_label.astype(bool)] if "hard_label" in acc else acc
    acc = acc[acc.augment.astype("object").fillna(True).astype(bool)] if "augment" in acc else acc  # no-aug runs
    g = acc.assign(top1=acc.top1 * 100).groupby(["method", "ipc", "student"]).top1.agg(["mean", "std"]).reset_index()
    rows = [dict(check="teacher", subject="teacher top-1 on val (%)", threshold=100 * teacher_min_top1,
                 value=None if teacher_top1 is None else 100 * teacher_top1,
                 ok=None if teacher_top1 is None else teacher_top1 >= teacher_min_top1)]
    for student, s in g.groupby("student"):
        real = s[s.method == "random_real"].assign(i=lambda d: d.ipc.astype(int)).sort_values("i")
        full = s[s.method == "full"]
        best = real.loc[real["mean"].idxmax()] if len(real) else None
        which = f"IPC {best.ipc}" if best is not None else "not evaluated"
        rows.append(dict(check="full", subject=f"{student}: full - best random real ({which})",
                         threshold=0.0, value=None if best is None or full.empty else full["mean"].iloc[0] - best["mean"],
                         ok=None if best is None or full.empty else bool(full["mean"].iloc[0] >= best["mean"])))
        for a, b in zip(real.itertuples(), real.iloc[1:].itertuples()):
            spread = 2 * max(a.std if a.std == a.std else 0.0, b.std if b.std == b.std else 0.0)
            rows.append(dict(check="random real", subject=f"{student}: random real IPC {a.ipc} -> {b.ipc} (step - 2 std)",
                             threshold=0.0, value=(b.mean - a.mean) - spread, ok=bool(b.mean - a.mean > spread)))
    tc = pd.read_csv(teacher_check_csv, dtype={"ipc": str})
    for r in tc[tc.method.isin(GENERATIVE)].itertuples():
        rows.append(dict(check="recognition", subject=f"teacher on {r.method} IPC {r.ipc} (%)",
                         threshold=100 * recognition_min, value=100 * r.teacher_top1,
                         ok=bool(r.teacher_top1 >= recognition_min)))
    return pd.DataFrame(rows, columns=["check", "subject", "value", "threshold", "ok"])


def write_sanity(accuracy_csv: str, teacher_check_csv: str, teacher: str, teacher_min_top1: float,
                 recognition_min: float, csv: str, md: str, quality_json: str | None = None) -> pd.DataFrame:
    """tables/sanity.{csv,md}; a warning on stderr for every failed check."""
    t = sanity_checks(accuracy_csv, teacher_check_csv, teacher_val_top1(quality_json, teacher), teacher_min_top1,
                      recognition_min)
    with atomic_output(csv) as tmp:
        t.to_csv(tmp, index=False, float_format="%.2f")
    verdict = {True: "ok", False: "**FAILED**", None: "not measured"}
    lines = ["| check | what | value | threshold | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {r.check} | {r.subject} | {'-' if pd.isna(r.value) else f'{r.value:.1f}'} | {r.threshold:.1f} | "
              f"{verdict[None if pd.isna(r.ok) else bool(r.ok)]} |" for r in t.itertuples()]
    with atomic_output(md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    for r in t[t.ok.eq(False)].itertuples():
        print(f"[d3hr] sanity check failed: {r.subject} = {r.value:.1f} (threshold {r.threshold:.1f})", file=sys.stderr)
    return t


def failed_checks(csv) -> list[str]:
    """The failed checks of a written sanity table, one line each (for the run's closing message)."""
    if not Path(csv).is_file():
        return []
    t = pd.read_csv(csv, dtype={"ok": str})
    return [f"{r.check}: {r.subject} = {r.value:.1f} (threshold {r.threshold:.1f})"
            for r in t[t.ok == "False"].itertuples()]
