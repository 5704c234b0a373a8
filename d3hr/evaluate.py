"""Stage 6: train a student from scratch on a distilled image set with the teacher's soft labels, and report
top-1/top-5 on the real validation split (the RDED protocol the D3HR authors reuse; docs/method.md §6).

Per step: a batch of distilled images -> RandomResizedCrop(scale 0.08-1) + horizontal flip -> CutMix (or MixUp);
the teacher's temperature-softened outputs on that same batch are the targets; loss KL(teacher || student) at
temperature T (20 with CutMix, 4 with MixUp), batch mean, no T^2 factor (the authors' setting); AdamW; cosine
schedule that decays to `cosine_to` x the base rate (the authors: 0.5). Hard-label mode: cross-entropy on the
CutMix-mixed labels, no teacher.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import to_model_range
from .nets import frozen_for_inference, logits


def kd_loss(student_logits, teacher_logits, temperature: float):
    """KL(softmax(t / T) || softmax(s / T)), mean over the batch, without the T^2 factor."""
    return F.kl_div(F.log_softmax(student_logits / temperature, 1), F.softmax(teacher_logits / temperature, 1),
                    reduction="batchmean")


def random_resized_crop_flip(x, gen, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Per-image RandomResizedCrop + horizontal flip of a batch (N x C x H x W), as one bilinear grid_sample."""
    n = x.shape[0]
    area = torch.empty(n).uniform_(*scale, generator=gen)
    logr = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    r = logr.exp()
    w = (area * r).sqrt().clamp(max=1.0)  # crop width / image width
    h = (area / r).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w)  # crop centre in [-1, 1] coordinates
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def cutmix(x, gen, rng, alpha=1.0):
    """CutMix: paste a random box of a permuted batch; returns (mixed x, permutation, effective lambda)."""
    n, _, hh, ww = x.shape
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(n, generator=gen)
    cut = math.sqrt(1 - lam)
    bh, bw = int(hh * cut), int(ww * cut)
    cy, cx = int(torch.randint(0, hh, (1,), generator=gen)), int(torch.randint(0, ww, (1,), generator=gen))
    y0, y1, x0, x1 = max(cy - bh // 2, 0), min(cy + bh // 2, hh), max(cx - bw // 2, 0), min(cx + bw // 2, ww)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return x, perm, 1 - (y1 - y0) * (x1 - x0) / (hh * ww)


def mixup(x, gen, rng, alpha=0.8):
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=gen)
    return lam * x + (1 - lam) * x[perm], perm, lam


def authors_batch_size(ipc, num_classes: int, n_images: int) -> int:
    """The authors' batch size (validation/argument.py): IPC >= 50 -> 100, >= 10 -> 50, >= 1 -> 15, the full training
    set -> 100; doubled for 100 classes (CIFAR-100; their doubling for 1,000 classes is commented out); at most the
    number of distilled images."""
    full = ipc in ("all", None, -1)
    bs = 100 if full or int(ipc) >= 50 else 50 if int(ipc) >= 10 else 15
    if num_classes == 100:
        bs *= 2
    return max(1, min(bs, n_images))


def budget_steps(n_images: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps of `epochs` passes over `n_images` images (the last batch of an epoch may be partial)."""
    return epochs * -(-n_images // batch_size)


@torch.no_grad()
def topk_accuracy(model, x_uint8, y, ks=(1, 5), batch=500):
    out = logits(model, x_uint8, batch)
    top = out.topk(min(max(ks), out.shape[1]), 1).indices  # top-k with k >= classes: always a hit
    yy = torch.as_tensor(y).view(-1, 1)
    return {k: int((top[:, :k] == yy).any(1).sum()) / len(x_uint8) for k in ks}


def train_student(student, teacher, x_train, y_train, x_val, y_val, steps, batch_size, lr, weight_decay, seed,
                  mix="cutmix", temperature=None, hard_label=False, cosine_to=0.5, n_evals=5):
    """Train `student` for `steps` steps; evaluate on val at the last `n_evals` points of the last 10% of training."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    T = temperature or (20.0 if mix == "cutmix" else 4.0)
    x_all = to_model_range(x_train)
    y_all = torch.as_tensor(y_train)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
    # cosine from 1 to `cosine_to` x the base rate (0.5: the authors' half-period cosine)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: cosine_to + (1 - cosine_to) * 0.5 * (1 + math.cos(math.pi * i / steps)))
    eval_at = sorted({steps - 1 - round(j * 0.1 * steps / max(1, n_evals - 1)) for j in range(n_evals)})
    evals, losses = [], []
    n_batch = min(batch_size, max(len(x_all), 2))
    if teacher is not None:
        teacher = frozen_for_inference(teacher, x_all[:1].expand(n_batch, -1, -1, -1).contiguous())
    t0 = time.time()
    for step in tqdm(range(steps), desc="train student", mininterval=10, file=sys.stderr):
        student.train()
        idx = torch.randint(0, len(x_all), (n_batch,), generator=gen)
        x = random_resized_crop_flip(x_all[idx], gen)
        x, perm, lam = (cutmix if mix == "cutmix" else mixup)(x, gen, rng)
        out = student(x)
        if hard_label:
            y = y_all[idx]
            loss = lam * F.cross_entropy(out, y) + (1 - lam) * F.cross_entropy(out, y[perm])
        else:
            with torch.no_grad():
                target = teacher(x)  # soft labels on the same augmented batch
            loss = kd_loss(out, target, T)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step in eval_at:
            acc = topk_accuracy(student, x_val, y_val)
            evals.append({"step": step + 1, "top1": acc[1], "top5": acc[5]})
    best = max(evals, key=lambda e: e["top1"])
    return {
        "top1": evals[-1]["top1"], "top5": evals[-1]["top5"],
        "top1_best_last10pct": best["top1"], "best_step": best["step"], "evals": evals,
        "loss_first": float(np.mean(losses[: max(1, steps // 20)])), "loss_last": float(np.mean(losses[-max(1, steps // 20):])),
        "train_seconds": time.time() - t0, "temperature": T,
    }
