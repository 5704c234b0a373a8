"""Stage 2: DDIM-invert one class's latents with the class-conditional DiT and keep the configured timesteps
(docs/method.md §2).

What later stages read is stored, nothing more: the Gaussian's statistics (mean, unbiased variance, normality) of every
kept timestep, accumulated here while the inverted latents are in memory (group `stats/t{t}`), and the inverted
latents themselves (datasets `t{t}`, float16: their statistics are computed in float32 before, and only the Q-Q figure
reads them) only for the classes that `store` names (`invert.store_classes`). At ImageNet's size the latents of every
kept timestep would be 15 x 21 GB."""

from __future__ import annotations

import sys
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from . import D3HRError
from .ddim import invert, timestep_grid
from .h5io import atomic_output, check_finite, create_dataset, open_h5, provenance, read_attrs, set_attrs
from .compiling import Compile, compile_mode, compiled, dit_work
from .device import Precision, model_dtype
from .models import load_ldm


STORED_DTYPE = np.float16  # of the stored inverted latents (rms about 1.3: 11-bit mantissa, 5e-4 relative)


def invert_class(latents: str, pipeline: str, out: str, cls: str, label: int, timesteps: list[int], num_steps: int,
                 guidance: float, batch_size: int, store: bool, structure_timestep: int, cov_rank: int,
                 reference_images: int, device: Any, model_precision: Precision, compile: Compile):
    """DDIM-invert the class's latents with CFG (eq. 2) to each of `timesteps`: their Gaussian statistics, and with
    `store` the inverted latents too. `compile`: the DiT under `torch.compile` (d3hr.compiling.compile_mode).
    At `structure_timestep` (the selection timestep; -1: none), when kept: the covariance factor of rank `cov_rank`
    (0: none) and a seeded subset of `reference_images` inverted latents (float16; 0: none), for the structured
    Gaussian, the MMD selection and the round trip of the off-class study (d3hr.group_sampling, d3hr.diagnostics)."""
    from .gaussian import cov_factor, timestep_stats
    from .seeds import derive_seed

    latents_h5, pipeline_dir, keep_timesteps = latents, pipeline, timesteps
    with open_h5(latents_h5, "latents") as f:
        z0 = f["latents"][:]
        ids = f["ids"][:]
        src = read_attrs(f)
    check_finite(z0, latents_h5, "latents")
    ldm = load_ldm(pipeline_dir, device=device, dtype=model_dtype(device, model_precision), components=("transformer",))
    if z0.shape[1:] != (ldm.latent_channels, ldm.latent_size, ldm.latent_size):
        raise D3HRError(f"{latents_h5}: latents of shape {z0.shape[1:]} do not fit the DiT at {pipeline_dir}")
    label = ldm.check_label(cls, int(label))
    grid = timestep_grid(ldm.num_train_timesteps, num_steps)
    keep = sorted(int(t) for t in keep_timesteps)
    n_steps = int((grid <= keep[-1]).sum())
    work = dit_work((len(z0) // batch_size) * batch_size or len(z0), n_steps, guidance)  # the compiled batches' images
    dit = compiled(ldm.transformer, device, compile, work)
    zt_all = {t: np.empty((len(z0), int(np.prod(z0.shape[1:]))), dtype=np.float32) for t in keep}
    bar = tqdm(total=n_steps * -(-len(z0) // batch_size), desc=f"invert {cls}", mininterval=10, file=sys.stderr)
    for i in range(0, len(z0), batch_size):
        z = torch.from_numpy(z0[i : i + batch_size]).to(device)
        labels = torch.full((len(z),), label, device=device, dtype=torch.long)
        # a class's partial last batch runs eagerly: its size differs from class to class, so a compiled graph of it
        # would be a fresh compilation (no cache hit) in nearly every job; the full batches' graph is cached
        model = dit if len(z) == batch_size or len(z0) < batch_size else ldm.transformer
        zs = invert(model, z, labels, ldm.alphas_cumprod, grid, keep, ldm.null_label, guidance, bar)
        for t, zt in zs.items():
            zt_all[t][i : i + len(zt)] = zt.reshape(len(zt), -1).cpu().numpy()
    bar.close()
    n_factor = n_reference = 0  # what is written, for the provenance
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as f:
        for t, x in zt_all.items():
            check_finite(x, out, f"t{t}")
            for k, v in timestep_stats(x).items():  # (3.1): mu_t, sigma_t^2 per dimension, and normality
                create_dataset(f, f"stats/t{t}/{k}", data=v)
            if t == structure_timestep and cov_rank > 0:  # Cov ~ F F^T (the structured Gaussian)
                factor = cov_factor(x, cov_rank)
                create_dataset(f, f"stats/t{t}/cov_factor", data=factor)
                n_factor = factor.shape[1]
            if t == structure_timestep and reference_images > 0:  # the MMD selection's reference latents
                rng = np.random.default_rng(derive_seed(int(src.get("seed") or 0), "reference", cls))
                pick = np.sort(rng.permutation(len(x))[: min(reference_images, len(x))])
                create_dataset(f, f"stats/t{t}/reference", data=x[pick].astype(STORED_DTYPE))
                n_reference = len(pick)
            if store:
                create_dataset(f, f"t{t}", data=x.reshape(z0.shape).astype(STORED_DTYPE))
        create_dataset(f, "ids", data=ids)
        create_dataset(f, "timesteps", data=np.asarray(keep, dtype=np.int64))
        create_dataset(f, "alpha_bar", data=np.asarray([float(ldm.alphas_cumprod[t]) for t in keep], dtype=np.float64))
        set_attrs(f, provenance(stage="invert", cls=cls, label=label, model=str(pipeline_dir), guidance=guidance,
                                num_inference_steps=num_steps, timesteps=keep,
                                model_precision=model_precision, compile=compile_mode(torch.device(device), compile, work) or "eager",
                                model_dtype=str(ldm.transformer.dtype).removeprefix("torch."), null_label=ldm.null_label,
                                scaling_factor=src.get("scaling_factor"), sample_posterior=src.get("sample_posterior"),
                                seed=src.get("seed"), n_images=len(z0), latent_shape=list(z0.shape[1:]),
                                stored_timesteps=keep if store else [], stored_dtype=np.dtype(STORED_DTYPE).name,
                                structure_timestep=structure_timestep, cov_rank=cov_rank,
                                n_reference=n_reference, n_factor=n_factor))
