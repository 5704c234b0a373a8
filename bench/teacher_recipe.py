"""Benchmark: the teacher's recipe (budget floor and crop range) on datasets of other shapes than the embedded default,
measured on held-out TRAINING images (never the validation split).

Two glyph datasets (d3hr.synthetic: one small grey shape per class, 10 classes), made here:
  many-small: 150 images a class at 32 px (the issue's own-dataset case: 1,500 images),
  few-large:   40 images a class at 48 px.
The last `--holdout` share of each class is held out. Each recipe trains the configured teacher architecture as
`d3hr train-teacher` does (d3hr.train.train_classifier, the config's batch size, rate and weight decay) and reports
  holdout: top-1 on the held-out images (whole images),
  holdout_crops: top-1 on RandomResizedCrops of scale 0.08-1 of them (the crops the students query the teacher on).
Recipes: `old` (12 epochs, no floor, crops 0.08-1) and the floor `--min-steps` with each crop range of `--crops`.

    python bench/teacher_recipe.py --out bench/teacher_recipe.jsonl              # every shape and recipe
    python bench/teacher_recipe.py --out bench/teacher_recipe.jsonl --report     # the table

Each finished run appends one JSON line to --out; a run already there is skipped, so an interrupted bench resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHAPES = {"many-small": (150, 32), "few-large": (40, 48)}


def runs(a):
    for shape in a.shapes:
        yield shape, "old", 0, 0.08
        for lo in a.crops:
            yield shape, f"floor{a.min_steps}-crop{lo}", a.min_steps, lo


def run(shape, min_steps, lo, a, seed=0):
    import numpy as np
    import torch

    from d3hr.augment import random_resized_crop_flip
    from d3hr.data import load_split, to_model_range
    from d3hr.nets import create_classifier
    from d3hr.synthetic import GLYPHS, make_glyphs
    from d3hr.train import accuracy, budget, train_classifier

    n, size = SHAPES[shape]
    with tempfile.TemporaryDirectory() as tmp:
        make_glyphs(tmp, n, 0, size, seed=seed)
        x, y = load_split(tmp, "train", classes=list(GLYPHS), resolution=size, channels=1)
    y = np.asarray(y)
    held = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        held[idx[-max(1, round(len(idx) * a.holdout)):]] = True
    steps = budget(int((~held).sum()), a.batch_size, a.epochs, min_steps)
    model = create_classifier(a.arch, len(GLYPHS), 1, small_input=True, resolution=size, seed=seed)
    t0 = time.time()
    train_classifier(model, x[~held], y[~held], steps=steps, batch_size=a.batch_size, lr=a.lr,
                     weight_decay=a.weight_decay, seed=seed, precision="auto", crop_scale=(lo, 1.0))
    seconds = time.time() - t0
    gen = torch.Generator().manual_seed(1)
    xh = to_model_range(x[held])
    crops = torch.cat([random_resized_crop_flip(xh, gen) for _ in range(4)])
    with torch.no_grad():
        crop_acc = float((model(crops).argmax(1).numpy() == np.tile(y[held], 4)).mean())
    return {"holdout": accuracy(model, x[held], y[held]), "holdout_crops": crop_acc, "steps": steps,
            "n_fit": int((~held).sum()), "n_holdout": int(held.sum()), "seconds": round(seconds, 1)}


def report(path):
    import pandas as pd

    df = pd.DataFrame([json.loads(line) for line in Path(path).read_text().splitlines()])
    print(df[["shape", "recipe", "n_fit", "steps", "holdout", "holdout_crops", "seconds"]].to_markdown(index=False,
                                                                                                   floatfmt=".3f"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/teacher_recipe.jsonl")
    p.add_argument("--report", action="store_true")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--crops", nargs="+", type=float, default=[0.08, 0.35])
    p.add_argument("--min-steps", type=int, default=850)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--arch", default="resnet_tiny")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--holdout", type=float, default=0.2)
    a = p.parse_args(argv)
    if a.report:
        return report(a.out)
    out = Path(a.out)
    done = {(r["shape"], r["recipe"]) for r in map(json.loads, out.read_text().splitlines())} if out.exists() else set()
    for shape, recipe, min_steps, lo in runs(a):
        if (shape, recipe) in done:
            continue
        res = {"shape": shape, "recipe": recipe, "min_steps": min_steps, "crop_lo": lo, "arch": a.arch,
               **run(shape, min_steps, lo, a)}
        print(json.dumps(res), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
