"""Stage 1: encode the training images of one class with the VAE (docs/method.md §1).

z0 = s * sample(E(x)) (or the posterior mean), streamed in batches into a resizable HDF5 dataset so that memory
does not grow with the number of images.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from tqdm import tqdm

from . import D3HRError
from .data import image_subset, iter_image_batches, list_images, to_model_range
from .h5io import atomic_output, check_finite, create_dataset, provenance, set_attrs
from .device import Precision, model_dtype
from .models import load_ldm
from .seeds import derive_seed


def encode_class(class_dir: str, pipeline: str, out: str, resolution: int, channels: int, batch_size: int,
                 sample_posterior: bool, on_bad_image: Literal["error", "skip"], seed: int, max_images: int,
                 device: Any, model_precision: Precision, threads: int = 1) -> int:
    """Encode every image of `class_dir` (at most `max_images` of them, a seeded subset; 0: all) (z0 = s * sample(E(x)),
    eq. 1, or the posterior mean) into `out`; on a GPU the images are decoded on the job's `threads`, a batch ahead."""
    class_dir, pipeline_dir = Path(class_dir), pipeline
    cls = class_dir.name
    all_files = list_images(class_dir)
    files = image_subset(all_files, max_images, seed, cls)
    ldm = load_ldm(pipeline_dir, device=device, dtype=model_dtype(device, model_precision), components=("vae",))
    vae, s = ldm.vae, ldm.scaling_factor
    gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "encode", cls))
    shape = (ldm.latent_channels, ldm.latent_size, ldm.latent_size)
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as f:
        lat = create_dataset(f, "latents", shape=(0, *shape), dtype=np.float32, maxshape=(None, *shape))
        ids, skipped = [], []
        workers = threads if torch.device(device).type == "cuda" else 1  # on the CPU the VAE has the threads
        batches = iter_image_batches(files, resolution, channels, batch_size, on_bad_image, skipped, threads=workers)
        for names, batch in tqdm(batches, total=-(-len(files) // batch_size),
                                 desc=f"encode {cls}", mininterval=10, file=sys.stderr):
            x = to_model_range(batch).to(device, vae.dtype)
            if x.shape[1] != vae.config.in_channels:
                raise ValueError(f"{class_dir}: images have {x.shape[1]} channels, the VAE expects {vae.config.in_channels}")
            with torch.no_grad():
                post = vae.encode(x).latent_dist
                z = (post.sample(generator=gen) if sample_posterior else post.mean) * s  # z0 = s * sample(E(x))
            z = z.float().cpu().numpy()
            if z.shape[1:] != shape:
                raise ValueError(f"{pipeline_dir}: VAE latents have shape {z.shape[1:]}, the DiT expects {shape}: "
                                 f"is `resolution` ({resolution}) the model's resolution?")
            check_finite(z, out, "latents")
            n = lat.shape[0]
            lat.resize(n + len(z), axis=0)
            lat[n:] = z
            ids += names
        if not ids:
            raise D3HRError(f"{class_dir}: none of its {len(files)} images could be read")
        create_dataset(f, "ids", data=np.asarray(ids, dtype=object))
        set_attrs(f, provenance(stage="encode", cls=cls, model=str(pipeline_dir), resolution=resolution,
                                scaling_factor=s, sample_posterior=sample_posterior, seed=seed,
                                model_precision=model_precision, model_dtype=str(vae.dtype).removeprefix("torch."),
                                n_images=len(ids), n_skipped=len(skipped), skipped=[Path(p).name for p in skipped],
                                max_images=max_images, n_class_images=len(all_files)))
    print(f"[d3hr] encoded {len(ids)} images -> {out}", file=sys.stderr)
    return len(ids)
