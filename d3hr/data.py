"""Image folders (`{root}/{split}/{class}/*.png|jpg|JPEG`) and the embedded animal-mnist dataset."""

from __future__ import annotations

import sys

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import D3HRError
from .seeds import derive_seed

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}

EMBEDDED_IMAGES_PER_CLASS = {"animal_mnist": 1000}  # before the split into train and val (val_per_class)
# animal-mnist 0.4: label k is EMBEDDED["animal_mnist"][k] (checked against the pictures).
EMBEDDED = {
    "animal_mnist": ["Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra"],
}


def check_class_name(name: str) -> str:
    """Class names become path components: reject anything that could leave the results folder."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\0" in name:
        raise D3HRError(f"class name {name!r} is not a valid folder name (no '/', '..' or empty names)")
    return name


def list_classes(split_dir) -> list[str]:
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise D3HRError(f"{split_dir}: dataset split folder not found; check `root` in the config")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise D3HRError(f"{split_dir}: no class folders found")
    return classes


def list_images(class_dir) -> list[Path]:
    """The image files of one class folder, sorted by name; an error if the folder is missing or empty."""
    class_dir = Path(class_dir)
    if not class_dir.is_dir():
        raise D3HRError(f"{class_dir}: class folder not found (is the class name in the config spelled as on disk?)")
    files = sorted(
        p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise D3HRError(
            f"{class_dir}: empty class folder (no {', '.join(sorted(IMAGE_EXTENSIONS))} files); "
            "add its images or remove the class from the config"
        )
    return files


def load_image(path, resolution: int, channels: int = 3) -> np.ndarray:
    """Read one image as uint8 HxWxC: convert the mode, resize the short side, centre-crop (docs/method.md §1)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                hi = 65535.0 if arr.max() > 255 else 255.0
                im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
            elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, rgba)
            im = im.convert("RGB" if channels == 3 else "L")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise D3HRError(f"{path}: cannot read image ({e}); remove or replace the file") from e
    w, h = im.size
    if (w, h) != (resolution, resolution):
        scale = resolution / min(w, h)
        nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def to_model_range(batch_uint8: np.ndarray):
    """uint8 NHWC -> float32 NCHW tensor in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch_uint8)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def _load_or_error(f, resolution, channels):
    try:
        return load_image(f, resolution, channels), None
    except D3HRError as e:
        return None, e


def image_subset(files, max_images: int, seed: int, cls: str) -> list:
    """At most `max_images` of a class's files (0: all), a seeded choice kept in file order: the same files where the
    rules list a job's inputs and where the job reads them (invert.max_images_per_class)."""
    files = list(files)
    if not max_images or len(files) <= max_images:
        return files
    rng = np.random.default_rng(derive_seed(seed, "image_subset", cls))
    return [files[i] for i in np.sort(rng.choice(len(files), max_images, replace=False))]


def iter_image_batches(files, resolution: int, channels: int, batch_size: int, on_bad_image: str = "error", skipped=None,
                       threads: int = 1):
    """Yield (ids, uint8 NHWC batch) in file order, holding at most two batches of images.

    threads > 1: the images are decoded on that many threads (PIL releases the GIL while it decodes and resizes), the
    next batch while the caller works on this one (an encode job's GPU does not wait for JPEG decoding); the batches
    are the same as with one thread. on_bad_image='skip' leaves out unreadable files with a warning and appends them
    to `skipped`."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    files = list(files)
    starts = range(0, len(files), batch_size)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def submit(i):  # the batch at i: futures on the pool, or a lazy map without one
        job = lambda f: _load_or_error(f, resolution, channels)
        return [pool.submit(job, f) for f in files[i : i + batch_size]] if pool else map(job, files[i : i + batch_size])

    try:
        pending = submit(0) if files else None
        for k, i in enumerate(starts):
            batch = pending
            pending = submit(starts[k + 1]) if k + 1 < len(starts) else None  # decoded while this batch is used
            ids, imgs = [], []
            for f, res in zip(files[i : i + batch_size], batch):
                img, err = res.result() if pool else res
                if err is None:
                    imgs.append(img)
                    ids.append(Path(f).name)
                    continue
                if on_bad_image != "skip":
                    raise err
                print(f"[d3hr] warning: skipped {err}", file=sys.stderr)
                if skipped is not None:
                    skipped.append(str(f))
            if imgs:
                yield ids, np.stack(imgs)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)


def load_split(root, split: str, classes: list[str], resolution: int, channels: int):
    """All images of the given classes of one split, as (uint8 NHWC array, int64 labels)."""
    xs, ys = [], []
    for k, c in enumerate(classes):
        files = list_images(Path(root) / split / c)
        xs.append(np.stack([load_image(f, resolution, channels) for f in files]))
        ys.append(np.full(len(files), k, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------- embedded animal-mnist


def _animal_mnist_arrays():
    """Read the two gzip pickles shipped in the animal-mnist wheel (its loader imports tensorflow: not used)."""
    from importlib.resources import files

    try:
        base = files("animal_mnist") / "data" / "Animal_MNIST"
    except ModuleNotFoundError as e:
        raise D3HRError("the embedded dataset needs the `animal-mnist` package: pip install --no-deps animal-mnist") from e
    with gzip.open(base / "animal_data_version_3.gz", "rb") as fh:
        x = np.asarray(pickle.load(fh), dtype=np.uint8)
    with gzip.open(base / "animal_label_version_3.gz", "rb") as fh:
        y = np.asarray(pickle.load(fh), dtype=np.int64)
    if x.shape != (10000, 28, 28) or y.shape != (10000,):
        raise D3HRError(f"animal-mnist: unexpected array shapes {x.shape}, {y.shape} (expected version 0.4)")
    return x, y


def export_embedded_class(name: str, cls: str, out_root, val_per_class: int, seed: int, resolution: int):
    """Export one class of an embedded dataset to `{out_root}/{train,val}/{cls}/*.png`.

    The split is seeded per class; images are zero-padded (centred) from 28x28 to `resolution`.
    Each class folder is written under a temporary name and renamed, so it is complete or absent.
    """
    from .h5io import atomic_output

    if name != "animal_mnist":
        raise D3HRError(f"unknown embedded dataset {name!r}; known: {sorted(EMBEDDED)}")
    names = EMBEDDED[name]
    if cls not in names:
        raise D3HRError(f"class {cls!r} is not in embedded dataset {name} (classes: {', '.join(names)})")
    x, y = _animal_mnist_arrays()
    idx = np.flatnonzero(y == names.index(cls))
    rng = np.random.default_rng(derive_seed(seed, "split", name, cls))
    idx = rng.permutation(idx)
    if not 0 < val_per_class < len(idx):
        raise D3HRError(f"val_per_class={val_per_class} must be in 1..{len(idx) - 1} for {name}")
    pad = max(0, resolution - 28)
    splits = {"val": np.sort(idx[:val_per_class]), "train": np.sort(idx[val_per_class:])}
    for split, ids in splits.items():
        with atomic_output(Path(out_root) / split / cls, directory=True) as tmp:
            for i in ids:
                img = np.pad(x[i], ((pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
                Image.fromarray(img, mode="L").save(tmp / f"{cls}_{i:05d}.png", optimize=False)
    return {k: len(v) for k, v in splits.items()}


def export_embedded(name: str, classes: list[str], out: str, val_per_class: int, seed: int, resolution: int):
    """export_embedded_class for each of `classes` into the dataset root `out` ({out}/{train,val}/{class}/)."""
    for cls in classes:
        counts = export_embedded_class(name=name, cls=cls, out_root=out, val_per_class=val_per_class, seed=seed,
                                       resolution=resolution)
        print(f"[d3hr] exported {name}/{cls}: {counts}", file=sys.stderr)
