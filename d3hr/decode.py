"""Stage 5: DDIM sampling with CFG from the selected latents at exactly their timestep, VAE decode, PNGs
(docs/method.md §5)."""

from __future__ import annotations

import sys
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from . import D3HRError
from .ddim import sample, timestep_grid
from .h5io import check_finite, open_h5, read_attrs
from .images import save_pngs, to_uint8
from .compiling import Compile, compiled, dit_work
from .device import Precision, model_dtype
from .models import load_ldm


@torch.no_grad()
def decode_latents(ldm, z_t, t_start, label, grid, guidance, batch_size=256, progress=None, dit=None) -> np.ndarray:
    """z_t (n x C x h x w) at timestep t_start -> uint8 images n x H x W x 3 (x = D(z0 / s), clamped); `dit`: the
    DiT to run (default `ldm.transformer`; a compiled one: d3hr.compiling.compiled)."""
    dit = ldm.transformer if dit is None else dit
    device = next(dit.parameters()).device
    out = []
    for i in range(0, len(z_t), batch_size):
        z = torch.from_numpy(z_t[i : i + batch_size]).to(device)
        labels = torch.full((len(z),), label, device=device, dtype=torch.long)
        z0 = sample(dit, z, t_start, labels, ldm.alphas_cumprod, grid, ldm.null_label, guidance, progress)
        out.append(to_uint8(ldm.vae.decode((z0 / ldm.scaling_factor).to(ldm.vae.dtype)).sample))
    return np.concatenate(out)


def start_timestep(t: int, grid, start: str = "inverted") -> int:
    """The grid timestep decoding starts from, for a latent inverted (or noised) to t: 'inverted' starts at exactly t
    (the paper); 'above' one grid step higher (the authors' code decodes a latent inverted to 600 from 620). A latent
    at the last grid step (pure noise) starts there either way."""
    if start == "inverted":
        return int(t)
    if start != "above":
        raise D3HRError(f"decode start must be 'inverted' or 'above', not {start!r}")
    higher = grid[grid > t]
    return int(higher[0]) if len(higher) else int(t)


def decode_class(selected: str, pipeline: str, out: str, guidance: float, num_steps: int, batch_size: int,
                 latents_name: str, start: Literal["inverted", "above"], device: Any, model_precision: Precision,
                 compile: Compile, resize: int | None = None):
    """DDIM from the latents `latents_name` of `selected` at their timestep (or VAE decode alone for clean latents,
    timestep -1) and VAE decode (eq. 5) into PNGs in `out`, resized to `resize` if given."""
    selected_h5, pipeline_dir, out_dir, dataset = selected, pipeline, out, latents_name
    resize = resize or None
    with open_h5(selected_h5, "selected latents") as f:
        z = f[dataset][:]
        attrs = read_attrs(f)
    check_finite(z, selected_h5, dataset)
    ldm = load_ldm(pipeline_dir, device=device, dtype=model_dtype(device, model_precision))
    t = int(attrs["timestep"])
    if t < 0:  # clean latents (K-means centroids): VAE decode only
        with torch.no_grad():
            images = to_uint8(ldm.vae.decode(torch.from_numpy(z).to(ldm.vae.dtype) / ldm.scaling_factor).sample)
        save_pngs(images, out_dir, prefix=str(attrs["cls"]).replace(" ", "_"), resize=resize)
        return images
    num_steps = int(num_steps or attrs["num_inference_steps"])
    guidance = float(attrs["guidance"] if guidance is None else guidance)
    grid = timestep_grid(ldm.num_train_timesteps, num_steps)
    t = start_timestep(t, grid, start)
    label = attrs.get("label")
    if label is None:
        raise D3HRError(f"{selected_h5}: no class label in its attributes")
    n_steps = int((grid <= t).sum())
    bar = tqdm(total=n_steps * -(-len(z) // batch_size), desc=f"decode {attrs['cls']}", mininterval=10, file=sys.stderr)
    dit = compiled(ldm.transformer, device, compile, dit_work(len(z), n_steps, guidance))
    images = decode_latents(ldm, z, t, int(label), grid, guidance, batch_size, bar, dit)
    bar.close()
    save_pngs(images, out_dir, prefix=str(attrs["cls"]).replace(" ", "_"), resize=resize)
    return images
