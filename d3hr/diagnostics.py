"""Diagnostics that use no validation data: how recognisable each distilled set is to the teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import list_images, load_image
from .nets import load_classifier
from .train import accuracy


def teacher_top1_on_images(teacher_path, images_root, classes, labels, resolution, channels=3) -> dict:
    """Teacher top-1 on `{images_root}/{cls}/*.png` for every class: {'top1': ..., 'n': ...}."""
    teacher, _ = load_classifier(teacher_path)
    xs, ys = [], []
    for c, lab in zip(classes, labels):
        files = list_images(Path(images_root) / c)
        xs += [load_image(f, resolution, channels) for f in files]
        ys += [lab] * len(files)
    return {"top1": accuracy(teacher, np.stack(xs), np.asarray(ys)), "n": len(xs)}
