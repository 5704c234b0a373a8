"""Benchmark: the students' training budget and learning-rate schedule, measured on held-out TRAINING images.

The evaluation protocol's budget (optimiser steps per distilled set, steps for `full`, the learning-rate schedule)
must not be chosen on the validation split that the tables report. This bench holds out the last `--holdout` images
of every class of the training split (sorted file names), draws random real sets of IPC 1 / 10 / 50 per class from
the rest (and uses the whole rest as `full`), trains the configured student with the teacher's soft labels exactly as
`d3hr evaluate` does (`d3hr.evaluate.train_student`), and reports its top-1 on the held-out images at the last step.
The teacher has seen the held-out images in its own training; the students never do.

    python bench/student_budget.py --out bench/student_budget.jsonl --shard 0/2 &   # one process per core
    python bench/student_budget.py --out bench/student_budget.jsonl --shard 1/2
    python bench/student_budget.py --out bench/student_budget.jsonl --report        # the table

Session 12's runs (bf16 on the reference CPU; --root and --teacher of a finished `make run`), each as two shards:

    python bench/student_budget.py --out bench/student_budget.jsonl --schedules authors cosine --steps 300 600 \
        --lrs 0.004 --full-steps 1080 --full-seeds 0 --shard 0/2        # and --shard 1/2
    python bench/student_budget.py --out bench/student_budget.jsonl --schedules authors --epochs 120 150 \
        --lrs 0.004 --full-steps --shard 0/2                             # and --shard 1/2

Each finished run appends one JSON line to --out; a run already there is skipped, so an interrupted bench resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def grid(a):
    """(schedule, ipc, budget, seed, lr) of every run: distilled sets at IPC 1 / 10 / 50, `full` with its own steps. A
    budget is a step count, or "e<E>": E epochs over the set at the authors' batch size (the paper's form)."""
    budgets = [f"e{e}" for e in a.epochs] if a.epochs else a.steps
    runs = [(s, ipc, st, seed, lr) for seed in a.seeds for lr in a.lrs for s in a.schedules for ipc in a.ipcs
            for st in budgets]
    runs += [(s, "all", st, seed, lr) for seed in a.full_seeds for lr in a.lrs for s in a.schedules
             for st in a.full_steps]
    return runs


def load_split(root: Path, classes, holdout: int, resolution: int, channels: int):
    """(pool images, pool labels, held-out images, held-out labels) as uint8 NHWC / int64."""
    from d3hr.data import iter_image_batches, list_images

    pool, held = ([], []), ([], [])
    for lab, c in enumerate(classes):
        files = sorted(list_images(root / c))
        for part, fs in ((pool, files[:-holdout]), (held, files[-holdout:])):
            for _, b in iter_image_batches(fs, resolution, channels, 256):
                part[0].append(b)
                part[1].append(np.full(len(b), lab, np.int64))
    return [np.concatenate(v) for v in (*pool, *held)]


def run_one(key, a, data, teacher):
    from d3hr.archs import student_lr
    from d3hr.evaluate import authors_batch_size, budget_steps, train_student
    from d3hr.nets import create_classifier

    schedule, ipc, budget, seed, lr = key
    xp, yp, xh, yh = data
    if ipc == "all":
        x, y = xp, yp
    else:  # IPC random images per class from the pool, drawn with the seed (as the random_real baseline)
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.flatnonzero(yp == c), ipc, replace=False) for c in np.unique(yp)])
        x, y = xp[idx], yp[idx]
    n_cls = len(np.unique(yp))
    student = create_classifier(a.student, num_classes=n_cls, in_chans=x.shape[-1], small_input=True,
                                resolution=x.shape[1], seed=seed)
    bs = authors_batch_size(ipc, n_cls, len(x))
    epochs = int(budget[1:]) if isinstance(budget, str) else None
    steps = budget_steps(len(x), bs, epochs) if epochs else budget
    t0 = time.time()
    res = train_student(student, teacher, x, y, (xh, yh), steps=steps, batch_size=bs, lr=lr or student_lr(a.student, 0),
                        weight_decay=0.01, seed=seed, schedule=schedule, precision=a.precision, epochs=epochs)
    return {"schedule": schedule, "ipc": ipc, "steps": steps, "budget": budget, "epochs": epochs, "seed": seed, "lr": lr,
            "precision": a.precision,
            "autocast": res["autocast"], "top1": res["top1"],
            "top1_best_last": res["top1_best_last"], "seconds": time.time() - t0}


def report(path: Path):
    import pandas as pd

    df = pd.read_json(path, lines=True)
    df["ipc"] = df["ipc"].astype(str)
    df["lr"] = df["lr"].fillna(0) if "lr" in df else 0
    # the lines of sessions 10-11 predate evaluate.precision: they ran in float32
    df["arith"] = df["autocast"].fillna("none").map({"none": "fp32", "bf16": "bf16"}) if "autocast" in df else "fp32"
    df["budget"] = df["budget"].fillna(df["steps"]).astype(str) if "budget" in df else df["steps"].astype(str)
    g = df.groupby(["arith", "schedule", "lr", "ipc", "budget", "steps"])
    t = g["top1"].agg(["mean", "std", "count"]).join(g["seconds"].mean())
    t[["mean", "std"]] *= 100
    print(t.round(2).to_string())
    print("\n| arithmetic | schedule | lr | IPC | budget | steps | top-1 % (mean ± std) | seeds | s per run |\n"
          "|---|---|---|---|---|---:|---|---:|---:|")
    for (arith, sch, lr, ipc, budget, steps), r in t.iterrows():
        std = "" if r["count"] < 2 else f" ± {r['std']:.1f}"
        budget = f"{budget[1:]} epochs" if budget.startswith("e") else "steps"
        print(f"| {arith} | {sch} | {lr or 1e-3:g} | {ipc} | {budget} | {steps} | {r['mean']:.1f}{std} "
              f"| {int(r['count'])} | {r['seconds']:.0f} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=REPO / "data/animal_mnist/train")
    p.add_argument("--teacher", type=Path, default=REPO / "results/animal_mnist/models/teacher.pt")
    p.add_argument("--student", default="convnet_tiny")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="as evaluate.precision")
    p.add_argument("--holdout", type=int, default=100, help="held-out training images per class")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--schedules", nargs="+", default=["authors", "cosine"])
    p.add_argument("--steps", nargs="+", type=int, default=[150, 300, 600])
    p.add_argument("--epochs", nargs="+", type=int, help="epoch budgets instead of --steps for the distilled sets")
    p.add_argument("--full-steps", nargs="*", type=int, default=[540, 1080])
    p.add_argument("--lrs", nargs="+", type=float, default=[0.0], help="0: the authors' rate for the student")
    p.add_argument("--ipcs", nargs="+", type=int, default=[1, 10, 50])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--full-seeds", nargs="*", type=int, default=[0, 1])
    p.add_argument("--shard", default="0/1", help="i/n: this process runs every n-th run from the i-th")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--report", action="store_true")
    a = p.parse_args(argv)
    if a.report:
        return report(a.out)
    import torch

    from d3hr.nets import load_classifier

    torch.set_num_threads(1)
    i, n = map(int, a.shard.split("/"))
    done = set()
    if a.out.exists():
        for line in a.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["schedule"], r["ipc"], r.get("budget", r["steps"]), r["seed"], r.get("lr", 0.0),
                      r.get("precision", "fp32")))
    todo = [k for k in grid(a)[i::n] if (*k, a.precision) not in done]
    classes = sorted(d.name for d in a.root.iterdir() if d.is_dir())
    data = load_split(a.root, classes, a.holdout, a.resolution, a.channels)
    teacher, _ = load_classifier(a.teacher)
    for key in todo:
        r = run_one(key, a, data, teacher)
        print(json.dumps(r), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
