"""Inversion-timestep ablation (the paper's "too few steps leave a mixture, too many lose structure"), per class.

For every kept timestep t of a class's Gaussian file: group sampling at t (docs/method.md §4), DDIM decoding from exactly
t (docs/method.md §5), and the teacher's predictions on the decoded images. Teacher top-1 on the decoded images is the
cheap proxy for student accuracy that the figure plots against t; no validation data is used.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from . import D3HRError
from .ddim import timestep_grid
from .decode import decode_latents
from .compiling import Compile, compiled, dit_work
from .device import Precision, model_dtype
from .group_sampling import Weights, sampler_name, select_group
from .h5io import open_h5, provenance, read_attrs, write_h5
from .models import load_ldm
from .nets import load_classifier, predict


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 NHWC images resized to size x size (Lanczos, as decoded images are written), unchanged if they fit."""
    if images.shape[1:3] == (size, size):
        return images
    from PIL import Image

    out = []
    for im in images:
        pil = Image.fromarray(im if im.shape[-1] == 3 else im[..., 0]).resize((size, size), Image.LANCZOS)
        a = np.asarray(pil, dtype=np.uint8)
        out.append(a if a.ndim == 3 else a[..., None])
    return np.stack(out)


def timestep_ablation_class(gaussian: str, pipeline: str, teacher: str, out: str, timesteps: list[int], ipc: int, m: int,
                            seed: int, l_mu: float, l_sigma: float, l_skew: float,
                            skew_mode: Literal["paper", "code"], chunk_groups: int, guidance: float, num_steps: int,
                            batch_size: int, device: Any, model_precision: Precision, compile: Compile, threads: int = 1):
    """Select (m groups) and decode IPC latents at each kept timestep; store the images and the teacher's predictions."""
    gaussian_h5, pipeline_dir, teacher_path = gaussian, pipeline, teacher
    weights = Weights(mu=l_mu, sigma=l_sigma, skew=l_skew)  # eq. 4.1's lambdas
    with open_h5(gaussian_h5, "Gaussian") as f:
        a = read_attrs(f)
        kept = [int(t) for t in f["timesteps"][:]]
        gauss = {t: (f[f"t{t}/mean"][:], f[f"t{t}/var"][:]) for t in (timesteps or kept) if f"t{t}" in f}
    missing = sorted(set(timesteps or kept) - set(gauss))
    if missing:
        raise D3HRError(f"{gaussian_h5}: no Gaussian for timesteps {missing}; kept timesteps: {kept}")
    cls, label, shape = a["cls"], a.get("label"), tuple(a["latent_shape"])
    if label is None:
        raise D3HRError(f"{gaussian_h5}: no class label in its attributes")
    guidance = float(a["guidance"] if guidance is None else guidance)
    num_steps = int(num_steps or a["num_inference_steps"])
    ldm = load_ldm(pipeline_dir, device=device, dtype=model_dtype(device, model_precision))
    ldm.check_label(cls, int(label))
    teacher, ck = load_classifier(teacher_path)
    if int(label) >= ck["num_classes"]:
        raise D3HRError(f"{teacher_path}: the teacher has {ck['num_classes']} classes, but label {label} is used")
    grid = timestep_grid(ldm.num_train_timesteps, num_steps)
    dit = compiled(ldm.transformer, device, compile, sum(dit_work(ipc, (grid <= t).sum(), guidance) for t in gauss))
    sampling_on = device if str(device).startswith("cuda") else None  # the job's GPU, else numpy (as select)
    data, rows = {}, []
    for t in tqdm(sorted(gauss), desc=f"timestep ablation {cls}", file=sys.stderr, mininterval=10):
        mu, var = gauss[t]
        sel = select_group(mu, var, ipc, m, seed, key=(cls, "ablation", t), weights=weights, skew_mode=skew_mode,
                           chunk_groups=chunk_groups, threads=threads, head=0, device=sampling_on)
        images = decode_latents(ldm, sel.latents.reshape(ipc, *shape), t, int(label), grid, guidance, batch_size,
                                dit=dit)
        pred = predict(teacher, resize_images(images, int(ck.get("resolution", images.shape[1]))), batch=256)
        data[f"t{t}/images"] = images
        data[f"t{t}/teacher_pred"] = pred
        rows.append((t, sel.score, float((pred == int(label)).mean())))
    data["timesteps"] = np.asarray([r[0] for r in rows], dtype=np.int64)
    data["score"] = np.asarray([r[1] for r in rows], dtype=np.float32)
    data["teacher_top1"] = np.asarray([r[2] for r in rows], dtype=np.float32)
    write_h5(out, data, provenance(stage="ablation_timestep", cls=cls, label=int(label), model=str(pipeline_dir),
                                   teacher=str(teacher_path), ipc=ipc, m=m, chunk_groups=chunk_groups, seed=seed,
                                   weights=asdict(weights), skew_mode=skew_mode, guidance=guidance,
                                   num_inference_steps=num_steps, timesteps=[r[0] for r in rows],
                                   sampler=sampler_name(sampling_on)))
    for t, score, top1 in rows:
        print(f"[d3hr] t={t}: best score {score:.4f}, teacher top-1 {top1:.3f}", file=sys.stderr)
    return rows
