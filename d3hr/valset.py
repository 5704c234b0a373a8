"""The real validation split, prepared once per dataset for every evaluation job (docs/method.md §6): uint8 HDF5,
resized and centre-cropped like the authors' ImageNet validation, read back one batch at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

VAL_BATCH = {"cpu": 100, "cuda": 500}  # validation images per forward (CPU: bounds the activations)


def labelled_files(dirs, labels):
    """The image files of one folder per class, and their int64 labels (one per file)."""
    from .data import list_images

    files, ys = [], []
    for d, lab in zip(dirs, labels):
        got = list_images(d)
        files += got
        ys += [lab] * len(got)
    return files, np.asarray(ys, np.int64)


def prepare_val(val_dirs: list[str], labels: list[int], resolution: int, channels: int, crop: float, out: str,
                classes: list[str] | None = None, batch: int = 256):
    """Write the validation split once as uint8 HDF5 (`images` N x H x W x C, `labels`), streaming one batch at a
    time. crop < 1: resize the short side to resolution / crop, then centre-crop `resolution` (the authors' ImageNet
    validation: 256, then 224)."""
    import h5py

    from .data import iter_image_batches
    from .h5io import atomic_output, provenance, set_attrs

    from . import D3HRError

    if len(val_dirs) != len(labels):
        raise D3HRError("--val-dirs and --labels must have one entry per class")
    files, ys = labelled_files(val_dirs, labels)
    resize = round(resolution / crop)
    off = (resize - resolution) // 2
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as f:
        n = len(files)
        img = f.create_dataset("images", (n, resolution, resolution, channels), np.uint8,
                               chunks=(min(256, n), resolution, resolution, channels), track_times=False)
        f.create_dataset("labels", data=ys, track_times=False)
        i = 0
        bar = tqdm(total=n, desc="prepare val", mininterval=10, file=sys.stderr)
        for _, b in iter_image_batches(files, resize, channels, batch):
            img[i : i + len(b)] = b[:, off : off + resolution, off : off + resolution]
            i += len(b)
            bar.update(len(b))
        bar.close()
        set_attrs(f, provenance(resolution=resolution, resize=resize, crop=crop, channels=channels, n_images=n,
                                classes=list(classes or []), labels=list(map(int, labels))))


def val_batches(val, size: int = VAL_BATCH["cpu"]):
    """(uint8 NHWC, labels) batches of the validation split: `val` is the HDF5 file of `prepare_val` or (x, y)."""
    if isinstance(val, (str, Path)):
        from .h5io import open_h5

        with open_h5(val, "validation") as f:
            y = f["labels"][:]
            for i in range(0, len(y), size):
                yield f["images"][i : i + size], y[i : i + size]
    else:
        x, y = val
        for i in range(0, len(y), size):
            yield x[i : i + size], np.asarray(y[i : i + size])
