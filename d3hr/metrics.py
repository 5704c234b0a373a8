"""Representativeness and diversity of a distilled set against its class's real images (docs/method.md §7).

In a feature space (the teacher's penultimate layer, or the VAE latent space where encoding puts the images and
inversion starts), with X the real
training images of a class (n of them) and Y the distilled images of that class (m):

- MMD with a Gaussian kernel k(a, b) = exp(-|a - b|^2 / (2 s^2)), s = the median distance between distinct real
  images (the median heuristic, from X alone so that every method of a class is measured with the same kernel);
  the biased (V-statistic) estimate MMD^2 = mean k(X, X) + mean k(Y, Y) - 2 mean k(X, Y) (Gretton et al. 2012,
  eq. 5), so that MMD(X, X) = 0; its square root is reported. Lower: more representative.
- coverage (Naeem et al. 2020, eq. 4): the share of real images whose nearest distilled image lies within their
  own k-th nearest real neighbour's distance. Higher: more of the class is represented.
- diversity: the mean distance between distinct distilled images (undefined for one image per class).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from .device import Precision


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances |a_i - b_j| (float64), from |a|^2 + |b|^2 - 2 a.b, clipped at 0."""
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2, 0))


def median_distance(x: np.ndarray) -> float:
    """The median distance between distinct points of x (0 for fewer than two)."""
    d = pairwise_distances(x, x)[np.triu_indices(len(x), 1)]
    return float(np.median(d)) if len(d) else 0.0


def median_bandwidth(x: np.ndarray) -> float:
    """The median distance between distinct points of x (the median heuristic); 1 if it is 0."""
    s = median_distance(x)
    return s if s > 0 else 1.0


def mmd(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """sqrt of the biased MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y), Gaussian kernel (Gretton eq. 5)."""
    k = lambda a, b: np.exp(-pairwise_distances(a, b) ** 2 / (2 * bandwidth**2))
    m2 = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    return float(np.sqrt(max(m2, 0.0)))


def coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> float:
    """Share of real points whose nearest fake point is within their k-NN radius among the real points (Naeem eq. 4)."""
    d_rr = pairwise_distances(real, real)
    np.fill_diagonal(d_rr, np.inf)  # a point is not its own neighbour
    k = min(k, len(real) - 1)
    radius = np.partition(d_rr, k - 1, axis=1)[:, k - 1]
    nearest_fake = pairwise_distances(real, fake).min(1)
    return float((nearest_fake <= radius).mean())


def diversity(y: np.ndarray) -> float:
    """Mean distance between distinct points of y (NaN for fewer than 2)."""
    if len(y) < 2:
        return float("nan")
    return float(pairwise_distances(y, y)[np.triu_indices(len(y), 1)].mean())


def set_scores(real: np.ndarray, fake: np.ndarray, k: int = 5, bandwidth: float | None = None) -> dict:
    """MMD, coverage and diversity of `fake` against `real` (rows are points), with the real set's own diversity."""
    s = median_bandwidth(real) if bandwidth is None else bandwidth
    return {"mmd": mmd(real, fake, s), "coverage": coverage(real, fake, k), "diversity": diversity(fake),
            "diversity_real": diversity(real), "bandwidth": s, "k": k, "n_real": len(real), "n_set": len(fake)}


# ------------------------------------------------------------------------------------------ features (torch)


def teacher_features(model, x_uint8: np.ndarray, batch: int = 500) -> np.ndarray:
    """The classifier's penultimate features (the input of its last linear layer) of uint8 NHWC images."""
    import torch
    from torch import nn

    from .data import to_model_range

    norm, net = (model[0], model[1]) if isinstance(model, nn.Sequential) else (nn.Identity(), model)
    net.eval()
    dev = next(net.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(x_uint8), batch):
            h = norm(to_model_range(x_uint8[i : i + batch]).to(dev))
            if hasattr(net, "forward_head"):  # timm models
                h = net.forward_head(net.forward_features(h), pre_logits=True)
            else:  # d3hr's ConvNet
                h = net.features(h)
            out.append(h.flatten(1).float().cpu().numpy())
    return np.concatenate(out)


def vae_features(vae, scaling_factor: float, x_uint8: np.ndarray, batch: int = 64) -> np.ndarray:
    """s * the VAE posterior mean of uint8 NHWC images, flattened (the space of the encoded latents)."""
    import torch

    from .data import to_model_range

    out = []
    with torch.no_grad():
        for i in range(0, len(x_uint8), batch):
            x = to_model_range(x_uint8[i : i + batch]).to(vae.device, vae.dtype)
            out.append((vae.encode(x).latent_dist.mean * scaling_factor).flatten(1).float().cpu().numpy())
    return np.concatenate(out)


def load_images(class_dir, resolution: int, channels: int, max_images: int = 0, seed: int = 0) -> np.ndarray:
    """The images of a folder as uint8 NHWC; with max_images > 0, a seeded subsample of that many."""
    from .data import list_images, load_image

    files = list_images(class_dir)
    if max_images and len(files) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(len(files), max_images, replace=False))
        files = [files[i] for i in keep]
    return np.stack([load_image(f, resolution, channels) for f in files])


def _feature_models(teacher_path, pipeline_dir, device, model_precision: str):
    """The teacher and the pipeline's VAE, loaded once per job, on `device`."""
    from .device import model_dtype
    from .models import load_ldm
    from .nets import load_classifier

    teacher = load_classifier(teacher_path)[0].to(device)
    ldm = load_ldm(pipeline_dir, device=device, dtype=model_dtype(device, model_precision), components=("vae",))
    return teacher, ldm


def _features(teacher, ldm, x_uint8) -> dict:
    """The images in both feature spaces: {"teacher": ..., "vae": ...}."""
    return {"teacher": teacher_features(teacher, x_uint8), "vae": vae_features(ldm.vae, ldm.scaling_factor, x_uint8)}


def real_features(class_dir: str, teacher: str, pipeline: str, out: str, resolution: int, channels: int,
                  max_images: int, seed: int, device: Any, model_precision: Precision):
    """Teacher and VAE features of a class's real training images, cached in HDF5 for every method's scores."""
    from .h5io import check_finite, provenance, write_h5
    from .seeds import derive_seed

    cls = Path(class_dir).name
    x = load_images(class_dir, resolution, channels, max_images, derive_seed(seed, "features", cls))
    teacher_path, pipeline_dir = teacher, pipeline
    feats = _features(*_feature_models(teacher_path, pipeline_dir, device, model_precision), x)
    for name, f in feats.items():
        check_finite(f, out, name)
    write_h5(out, feats, provenance(stage="features", cls=cls, teacher=str(teacher_path), model=str(pipeline_dir),
                                    resolution=resolution, n_images=len(x), max_images=max_images, seed=seed))
    print(f"[d3hr] features of {class_dir}: { {k: v.shape for k, v in feats.items()} }", file=sys.stderr)
    return {k: v.shape for k, v in feats.items()}


def class_scores(features_h5, sets: list[tuple[str, str, str]], teacher_path, pipeline_dir, resolution: int,
                 channels: int, k: int, device, model_precision: str) -> list[dict]:
    """Scores of every (method, ipc, image folder) of one class in both spaces, against the cached real features."""
    import h5py

    with h5py.File(features_h5, "r") as f:
        real = {"teacher": f["teacher"][:], "vae": f["vae"][:]}
    bandwidth = {space: median_bandwidth(r) for space, r in real.items()}
    models = _feature_models(teacher_path, pipeline_dir, device, model_precision)
    rows = []
    for method, ipc, folder in sets:
        for space, y in _features(*models, load_images(folder, resolution, channels)).items():
            rows.append({"method": method, "ipc": str(ipc), "space": space,
                         **set_scores(real[space], y, k, bandwidth[space])})
    return rows


def set_scores_class(features: str, sets: list[str], teacher: str, pipeline: str, cls: str, resolution: int,
                     channels: int, k: int, out: str, device: Any, model_precision: Precision):
    """class_scores of one class's distilled sets, each given as METHOD:IPC:FOLDER (the folder may hold colons), as
    a CSV file."""
    import pandas as pd

    from .h5io import atomic_output

    rows = class_scores(features, [tuple(spec.split(":", 2)) for spec in sets], teacher, pipeline, resolution=resolution,
                        channels=channels, k=k, device=device, model_precision=model_precision)
    with atomic_output(out) as tmp:
        pd.DataFrame(rows).assign(cls=cls).to_csv(tmp, index=False)
