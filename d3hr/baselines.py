"""The baselines of the paper's tables, each writing the same layout as D3HR (docs/method.md, "Baselines"):

- random_real: IPC real training images per class, seeded;
- dit_noise: DiT sampling from pure noise with the same model and CFG (no inversion, no group sampling);
- d3hr_nogroup: one random draw from the fitted Gaussian (stored by `select` as `random_latents`);
- kmeans: K-means centroids (k = IPC) of the class's VAE latents, noised to the selection timestep and denoised by the
  DiT with CFG (as D4M does with its prototypes); kmeans_vae: the same centroids decoded by the VAE alone.
"""

from __future__ import annotations

import numpy as np

from . import D3HRError
from .data import list_images, load_image
from .h5io import check_finite, open_h5, provenance, read_attrs, write_h5
from .seeds import derive_seed


def _normal(seed: int, shape) -> np.ndarray:
    """Seeded standard normal float32 draws (numpy's PCG64: these jobs import no torch)."""
    return np.random.Generator(np.random.PCG64(seed)).standard_normal(tuple(shape), dtype=np.float32)


def random_real(class_dir, ipc: int, seed: int, resolution: int, channels: int = 3) -> np.ndarray:
    files = list_images(class_dir)
    if ipc > len(files):
        raise D3HRError(f"{class_dir}: IPC {ipc} exceeds the {len(files)} images of the class")
    rng = np.random.default_rng(derive_seed(seed, "random_real", class_dir.name if hasattr(class_dir, "name") else str(class_dir), ipc))
    pick = sorted(rng.choice(len(files), size=ipc, replace=False))
    return np.stack([load_image(files[i], resolution, channels) for i in pick])


def random_real_class(class_dir: str, ipc: int, seed: int, resolution: int, channels: int, out: str):
    """`random_real` of one class, saved as PNGs in `out`."""
    from pathlib import Path

    from .images import save_pngs

    imgs = random_real(Path(class_dir), ipc=ipc, seed=seed, resolution=resolution, channels=channels)
    save_pngs(imgs, out, prefix=Path(class_dir).name.replace(" ", "_"))


def noise_class(pipeline: str, cls: str, label: int, ipc: int, seed: int, num_steps: int, guidance: float, out: str):
    """`noise_latents` of one class in the shape of the pipeline's latents."""
    from .models import load_ldm

    ldm = load_ldm(pipeline, components=())
    ldm.check_label(cls, label)
    noise_latents(out, cls=cls, label=label, ipc=ipc, seed=seed, num_steps=num_steps, guidance=guidance,
                  latent_shape=(ldm.latent_channels, ldm.latent_size, ldm.latent_size))


def kmeans_class(latents: str, pipeline: str, cls: str, label: int, ipc: int, seed: int, timestep: int,
                 num_steps: int, guidance: float, out: str):
    """`kmeans_latents` of one class; timestep -1 (kmeans_vae) loads no model and imports no torch."""
    abar = None
    if timestep >= 0:  # D4M: noised to the timestep, denoised by the DiT in `decode`
        from .models import load_ldm

        ldm = load_ldm(pipeline, components=())
        abar, label = ldm.alphas_cumprod, ldm.check_label(cls, label)
    else:
        label = -1
    kmeans_latents(latents, out, ipc=ipc, seed=seed, timestep=timestep, alphas_cumprod=abar, label=label,
                   num_steps=num_steps, guidance=guidance)


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 100) -> np.ndarray:
    """Lloyd's K-means with k-means++ initialisation, in float64; returns the k centroids."""
    x = x.reshape(len(x), -1).astype(np.float64)
    if k > len(x):
        raise D3HRError(f"K-means with k={k} needs at least {k} samples, got {len(x)}")
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):  # k-means++
        d2 = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    c = np.asarray(centres)
    for _ in range(iters):
        assign = (((x[:, None, :] - c[None]) ** 2).sum(-1)).argmin(1)
        new = np.stack([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


def kmeans_latents(latents_h5, out, ipc: int, seed: int, timestep: int = -1, alphas_cumprod=None, label: int = -1,
                   num_steps: int = 0, guidance: float = 1.0):
    """K-means centroids (k = IPC) of the class's VAE latents -> an HDF5 file for `decode`.

    timestep >= 0 (D4M, the `kmeans` method): each centroid c is noised to `timestep` by the forward process,
    z_t = sqrt(abar_t) c + sqrt(1 - abar_t) eps with seeded eps, and `decode` denoises it with the DiT and CFG exactly
    like D3HR's latents. timestep -1 (`kmeans_vae`): the centroids are decoded by the VAE alone (blurred means)."""
    with open_h5(latents_h5, "latents") as f:
        z = f["latents"][:]
        a = read_attrs(f)
    check_finite(z, latents_h5, "latents")
    c = kmeans(z, ipc, derive_seed(seed, "kmeans", a["cls"], ipc)).astype(np.float32).reshape(ipc, *z.shape[1:])
    if timestep >= 0:
        if alphas_cumprod is None or label < 0:
            raise D3HRError(f"{latents_h5}: noising K-means centroids to t={timestep} needs the schedule and the label")
        abar = float(alphas_cumprod[timestep])
        eps = _normal(derive_seed(seed, "kmeans_noise", a["cls"], ipc), c.shape)
        c = (abar**0.5 * c + (1.0 - abar) ** 0.5 * eps).astype(np.float32)  # q(z_t | z_0), DDPM forward process
    write_h5(out, {"latents": c}, provenance(stage="kmeans", cls=a["cls"], ipc=ipc, seed=seed, timestep=timestep,
                                             label=label, model=a.get("model"), num_inference_steps=num_steps,
                                             guidance=guidance))


def noise_latents(out, cls: str, label: int, ipc: int, seed: int, latent_shape, num_steps: int, guidance: float):
    """Pure Gaussian noise at the last grid timestep: decoding it is plain DiT sampling with CFG."""
    from .ddim import timestep_grid  # here, so that random_real jobs import no torch

    z = _normal(derive_seed(seed, "dit_noise", cls, ipc), (ipc, *latent_shape))
    t = int(timestep_grid(1000, num_steps)[-1])
    write_h5(out, {"latents": z}, provenance(stage="dit_noise", cls=cls, label=label, ipc=ipc, seed=seed, timestep=t,
                                             num_inference_steps=num_steps, guidance=guidance))
