"""Deterministic DDIM with classifier-free guidance, forwards (sampling) and backwards (inversion). docs/method.md §2.

States are indexed by the 50-step grid t_k = k * T/S (0, 20, ..., 980 for T = 1000, S = 50); the clean latent
has abar = 1. Inversion into t_k evaluates eps at the previous state with timestep t_k (as diffusers'
`DDIMInverseScheduler` does); sampling out of t_k evaluates eps at that state with timestep t_k.
"""

from __future__ import annotations

import numpy as np
import torch


def timestep_grid(num_train_timesteps: int = 1000, num_steps: int = 50) -> np.ndarray:
    """The DDIM grid in increasing order ('leading' spacing, offset 0): 0, 20, ..., 980."""
    if num_train_timesteps % num_steps:
        raise ValueError(f"num_steps={num_steps} must divide num_train_timesteps={num_train_timesteps}")
    return np.arange(num_steps, dtype=np.int64) * (num_train_timesteps // num_steps)


def abar_at(alphas_cumprod: torch.Tensor, t: int) -> float:
    """abar_t, with abar = 1 for the clean state (t < 0)."""
    return 1.0 if t < 0 else float(alphas_cumprod[t])


def ddim_step(z: torch.Tensor, eps: torch.Tensor, abar_from: float, abar_to: float) -> torch.Tensor:
    """One deterministic DDIM move between noise levels, either direction (docs/method.md, eq. 2.1):
    z' = sqrt(abar') * (z - sqrt(1 - abar) eps) / sqrt(abar) + sqrt(1 - abar') eps."""
    x0 = (z - (1.0 - abar_from) ** 0.5 * eps) / abar_from**0.5
    return abar_to**0.5 * x0 + (1.0 - abar_to) ** 0.5 * eps


@torch.no_grad()
def guided_eps(model, z: torch.Tensor, t: int, labels: torch.Tensor, null_label: int, guidance: float) -> torch.Tensor:
    """eps = eps_u + w (eps_c - eps_u) (classifier-free guidance); w = 1 runs the conditional model only."""
    c = z.shape[1]
    dtype = next(model.parameters()).dtype
    if guidance == 1.0:
        tt = torch.full((z.shape[0],), t, device=z.device, dtype=torch.long)
        out = model(z.to(dtype), timestep=tt, class_labels=labels).sample
        return out[:, :c].float()  # learned sigma: the first half of the channels is eps
    zz = torch.cat([z, z]).to(dtype)
    tt = torch.full((zz.shape[0],), t, device=z.device, dtype=torch.long)
    yy = torch.cat([labels, torch.full_like(labels, null_label)])
    eps_c, eps_u = model(zz, timestep=tt, class_labels=yy).sample[:, :c].float().chunk(2)
    return eps_u + guidance * (eps_c - eps_u)


@torch.no_grad()
def invert(model, z0, labels, alphas_cumprod, grid, keep, null_label, guidance, progress=None):
    """DDIM inversion from the clean latents z0 up to max(keep); returns {t: z_t} for each t in `keep`."""
    keep = sorted(int(t) for t in keep)
    bad = [t for t in keep if t not in set(grid.tolist())]
    if bad:
        raise ValueError(f"timesteps {bad} are not on the DDIM grid {grid[:3].tolist()}...{grid[-1]}")
    out, z, prev = {}, z0.float(), -1
    for t in grid[grid <= keep[-1]]:
        t = int(t)
        eps = guided_eps(model, z, t, labels, null_label, guidance)
        z = ddim_step(z, eps, abar_at(alphas_cumprod, prev), abar_at(alphas_cumprod, t))
        prev = t
        if t in keep:
            out[t] = z.clone()
        if progress is not None:
            progress.update(1)
    return out


@torch.no_grad()
def sample(model, z_t, t_start, labels, alphas_cumprod, grid, null_label, guidance, progress=None):
    """DDIM sampling from z at exactly t_start (a grid timestep) down to the clean latent."""
    if int(t_start) not in set(grid.tolist()):
        raise ValueError(f"t_start={t_start} is not on the DDIM grid")
    steps = grid[grid <= t_start][::-1]
    z = z_t.float()
    for i, t in enumerate(steps):
        t = int(t)
        t_prev = int(steps[i + 1]) if i + 1 < len(steps) else -1
        eps = guided_eps(model, z, t, labels, null_label, guidance)
        z = ddim_step(z, eps, abar_at(alphas_cumprod, t), abar_at(alphas_cumprod, t_prev))
        if progress is not None:
            progress.update(1)
    return z
