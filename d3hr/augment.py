"""Batched training augmentation on the tensors' own device (docs/method.md §6): RandomResizedCrop + flip as one
bilinear grid_sample, CutMix and MixUp. Crops and permutations are drawn by `gen` on its own device: a generator on
the GPU keeps a training step free of host-to-device copies and synchronisation (the draws then differ from a CPU
generator's for the same seed). CutMix's box is drawn by `host_gen` (default `gen`), a CPU generator on a GPU: its
corners are host integers that index the batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_resized_crop_flip(x, gen, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Per-image RandomResizedCrop + horizontal flip of a batch (N x C x H x W), as one bilinear grid_sample."""
    n, dev = x.shape[0], gen.device
    area = torch.empty(n, device=dev).uniform_(*scale, generator=gen)
    logr = torch.empty(n, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    r = logr.exp()
    w = (area * r).sqrt().clamp(max=1.0)  # crop width / image width
    h = (area / r).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=gen, device=dev) * 2 - 1) * (1 - w)  # crop centre in [-1, 1] coordinates
    cy = (torch.rand(n, generator=gen, device=dev) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=gen, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def cutmix(x, gen, rng, alpha=1.0, host_gen=None):
    """CutMix: paste a random box of a permuted batch; returns (mixed x, permutation, effective lambda). The
    permutation is drawn by `gen`, the box by `host_gen` (a CPU generator; default `gen`)."""
    n, _, hh, ww = x.shape
    host_gen = gen if host_gen is None else host_gen
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(n, generator=gen, device=gen.device)
    cut = math.sqrt(1 - lam)
    bh, bw = int(hh * cut), int(ww * cut)
    cy, cx = int(torch.randint(0, hh, (1,), generator=host_gen)), int(torch.randint(0, ww, (1,), generator=host_gen))
    y0, y1, x0, x1 = max(cy - bh // 2, 0), min(cy + bh // 2, hh), max(cx - bw // 2, 0), min(cx + bw // 2, ww)
    perm = perm.to(x.device)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return x, perm, 1 - (y1 - y0) * (x1 - x0) / (hh * ww)


def mixup(x, gen, rng, alpha=0.8):
    """MixUp: a convex mix with a permuted batch; returns (mixed x, permutation, lambda)."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=gen, device=gen.device).to(x.device)
    return lam * x + (1 - lam) * x[perm], perm, lam
