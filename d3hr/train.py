"""Training of the embedded default's models on the CPU in minutes: a tiny VAE, a tiny DiT, a teacher (docs/method.md §0).

Real datasets (ImageNet with DiT-XL/2) use pretrained models from a local directory instead.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import D3HRError
from .data import load_split, to_model_range
from .device import Precision
from .models import build_dit, build_scheduler, build_vae, load_ldm, save_pipeline


def _log(msg):
    print(f"[d3hr] {msg}", file=sys.stderr, flush=True)


def _batches(n, batch_size, steps, gen):
    """Indices of `steps` random batches (epochs of random permutations)."""
    perm, pos = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        yield perm[pos : pos + batch_size]
        pos += batch_size


def _warmup_cosine(opt, steps, warmup_frac=0.05):
    """Linear warm-up then cosine decay to 0, as a LambdaLR (well defined for any number of steps)."""
    warm = max(1, int(steps * warmup_frac))
    f = lambda i: (i + 1) / warm if i < warm else 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, steps - warm)))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def _flip(x, gen):
    m = torch.rand(x.shape[0], generator=gen) < 0.5
    x = x.clone()
    x[m] = x[m].flip(-1)
    return x


def train_vae(root, classes, resolution, channels, steps, batch_size, lr, kl_weight, seed, block_out_channels, latent_channels=4):
    """A small AutoencoderKL: MSE reconstruction + kl_weight * KL. Returns the VAE with its scaling factor set."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all, _ = load_split(root, "train", classes, resolution, channels)
    x_all = to_model_range(x_all)
    vae = build_vae(channels, latent_channels, block_out_channels, sample_size=resolution)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = _warmup_cosine(opt, steps, 0.05)
    vae.train()
    bar = tqdm(_batches(len(x_all), batch_size, steps, gen), total=steps, desc="train VAE", mininterval=10, file=sys.stderr)
    for idx in bar:
        x = _flip(x_all[idx], gen)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=None)).sample
        mse = F.mse_loss(rec, x)
        kl = post.kl().mean() / post.mean[0].numel()
        loss = mse + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(mse=f"{mse.item():.4f}", kl=f"{kl.item():.3f}", refresh=False)
    vae.eval()
    with torch.no_grad():  # scaling factor: unit variance latents (as 0.18215 does for the SD VAE)
        z = torch.cat([vae.encode(x_all[i : i + 256]).latent_dist.mean for i in range(0, min(len(x_all), 2048), 256)])
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    return vae


@torch.no_grad()
def _encode_all(vae, x_all, batch=256):
    means, stds = [], []
    for i in range(0, len(x_all), batch):
        d = vae.encode(x_all[i : i + batch]).latent_dist
        means.append(d.mean)
        stds.append(d.std)
    return torch.cat(means), torch.cat(stds)


def disable_label_dropout(dit) -> int:
    """Set the `dropout_prob` of every `LabelEmbedding` of a diffusers DiT to 0; returns how many there were.

    `DiTTransformer2DModel` gives each block's `AdaLayerNormZero` its own `LabelEmbedding(dropout_prob=0.1)` (and the
    final layer calls block 0's again); in train mode each drops labels independently, so the all-null condition that
    classifier-free guidance uses would be trained on ~1 sample in 10^5. We drop once per sample instead
    (`drop_labels`). The embedding tables keep their null row (index num_classes)."""
    from diffusers.models.embeddings import LabelEmbedding

    n = 0
    for mod in dit.modules():
        if isinstance(mod, LabelEmbedding):
            mod.dropout_prob = 0.0
            n += 1
    return n


def drop_labels(labels: torch.Tensor, null_label: int, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Classifier-free guidance training: each sample's label becomes the null label with probability `prob`, once
    for the whole network (every block sees the same condition)."""
    drop = torch.rand(labels.shape[0], generator=gen) < prob
    return torch.where(drop, torch.full_like(labels, null_label), labels)


def train_dit(root, classes, resolution, channels, vae, steps, batch_size, lr, ema_decay, seed, dit_kwargs,
              label_dropout=0.1, warmup_steps=200):
    """Class-conditional DiT, eps-prediction MSE; each sample's label is replaced by the null label with probability
    `label_dropout` (one draw per sample for every block, see `disable_label_dropout`). Returns the EMA weights."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = load_split(root, "train", classes, resolution, channels)
    mean, std = _encode_all(vae, to_model_range(x_all))
    s = vae.config.scaling_factor
    y_all = torch.from_numpy(y_all)
    scheduler = build_scheduler()
    abar = scheduler.alphas_cumprod.float()
    dit = build_dit(len(classes), mean.shape[-1], mean.shape[1], **dit_kwargs)
    disable_label_dropout(dit)
    ema = copy.deepcopy(dit).eval().requires_grad_(False)
    opt = torch.optim.AdamW(dit.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup_steps))
    dit.train()
    bar = tqdm(_batches(len(mean), batch_size, steps, gen), total=steps, desc="train DiT", mininterval=10, file=sys.stderr)
    c = mean.shape[1]
    for step, idx in enumerate(bar):
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * s
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(idx),), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        y = drop_labels(y_all[idx], len(classes), label_dropout, gen)
        out = dit(zt, timestep=t, class_labels=y).sample
        loss = F.mse_loss(out[:, :c], noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():  # EMA with warm-up: early averages do not keep the random initialisation
            decay = min(ema_decay, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), dit.parameters()):
                pe.lerp_(p, 1.0 - decay)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    return ema, scheduler


def train_ldm(root: str, classes: list[str], resolution: int, channels: int, seed: int, out: str, vae: dict,
              dit: dict):
    """Train VAE then DiT and save them as one DiTPipeline directory with classes.json and train_log.json.
    `vae`: train_vae's settings; `dit`: train_dit's (steps, batch_size, lr, ema_decay, label_dropout, dit_kwargs)."""
    t0 = time.time()
    vae_model = train_vae(root, classes, resolution, channels, seed=seed, **vae)
    t1 = time.time()
    _log(f"VAE trained in {t1 - t0:.0f} s, scaling factor {vae_model.config.scaling_factor:.4f}")
    dit_model, scheduler = train_dit(root, classes, resolution, channels, vae_model, seed=seed + 1, **dit)
    t2 = time.time()
    _log(f"DiT trained in {t2 - t1:.0f} s")
    save_pipeline(out, dit_model, vae_model, scheduler, classes)
    (Path(out) / "train_log.json").write_text(json.dumps({"vae_seconds": t1 - t0, "dit_seconds": t2 - t1}, indent=1))


def budget(n_images: int, batch_size: int, epochs: int, min_steps: int) -> int:
    """Optimiser steps of a budget that holds across dataset sizes: `epochs` passes over `n_images`, at least
    `min_steps` (a floor in steps: on a small dataset the epochs alone give too few; docs/method.md §0)."""
    return max(epochs * math.ceil(n_images / batch_size), min_steps)


def train_teacher(root: str, classes: list[str], resolution: int, channels: int, seed: int, out: str, arch: str,
                  epochs: int, min_steps: int, batch_size: int, lr: float, weight_decay: float,
                  crop_scale: list[float], precision: Precision):
    """The teacher: `arch` trained on the training split (train_classifier) for budget(n, batch_size, epochs,
    min_steps) steps on RandomResizedCrops of `crop_scale`, its val top-1 saved with it."""
    from .nets import create_classifier, save_classifier

    x, y = load_split(root, "train", classes=classes, resolution=resolution, channels=channels)
    model = create_classifier(arch, num_classes=len(classes), in_chans=channels, small_input=True,
                              resolution=resolution, seed=seed)
    t0 = time.time()
    steps = budget(len(x), batch_size, epochs, min_steps)
    _log(f"teacher {arch}: {steps} steps ({epochs} epochs of {len(x)} images at batch {batch_size}: "
         f"{epochs * math.ceil(len(x) / batch_size)}; floor {min_steps}), crops of scale {crop_scale}")
    train_classifier(model, x, y, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                     precision=precision, crop_scale=crop_scale)
    xv, yv = load_split(root, "val", classes=classes, resolution=resolution, channels=channels)
    acc = accuracy(model, xv, yv)
    _log(f"teacher {arch}: val top-1 {acc:.4f} ({time.time() - t0:.0f} s)")
    save_classifier(out, model, {"arch": arch, "num_classes": len(classes), "in_chans": channels, "small_input": True,
                                 "resolution": resolution, "classes": classes, "val_top1": acc,
                                 "train_seconds": time.time() - t0, "steps": steps, "batch_size": batch_size,
                                 "crop_scale": list(crop_scale)})


def train_classifier(model, x_train, y_train, steps, batch_size, lr, weight_decay, seed, desc="train teacher",
                     precision="auto", crop_scale=(0.08, 1.0)):
    """Hard-label training for `steps` steps with RandomResizedCrop(`crop_scale`; ImageNet teachers: 0.08-1) + flip,
    AdamW, cosine schedule. The crops matter: students query the teacher on exactly such crops, and a teacher trained
    on whole images only is brittle there (and on the slightly blurred images a VAE decodes). On the CPU, channels-last
    and `precision` ("auto": bf16 autocast where the CPU computes it natively; weights, AdamW and loss in float32):
    2.9x the float32 step of resnet_tiny on the reference CPU (docs/benchmarks.md)."""
    from .augment import random_resized_crop_flip
    from .device import use_bf16

    bf16 = use_bf16(torch.device("cpu"), precision)
    fmt = torch.channels_last
    model = model.to(memory_format=fmt)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train = to_model_range(x_train)
    y_train = torch.as_tensor(y_train)
    lo, hi = crop_scale
    if not 0 < lo <= hi <= 1:
        raise D3HRError(f"crop_scale must be two numbers 0 < lo <= hi <= 1, got {list(crop_scale)}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = _warmup_cosine(opt, steps, 0.1)
    model.train()
    for idx in tqdm(_batches(len(x_train), batch_size, steps, gen), total=steps, desc=desc, mininterval=10, file=sys.stderr):
        x = random_resized_crop_flip(x_train[idx], gen, scale=(lo, hi)).contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, x_uint8, y, batch=512) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x_uint8), batch):
        pred = model(to_model_range(x_uint8[i : i + batch])).argmax(1)
        correct += int((pred == torch.as_tensor(y[i : i + batch])).sum())
    return correct / len(x_uint8)


def model_quality(root: str, classes: list[str], resolution: int, channels: int, seed: int, pipeline: str,
                  teacher: str, out: str, samples: str | None, samples_per_class: int, guidance: float, num_steps: int,
                  model_precision: Precision) -> dict:
    """quality.json (`quality`) with the models' training times, and a PNG grid of the DiT samples (a row per class)."""
    import numpy as np
    from PIL import Image

    from .h5io import atomic_output

    q, imgs, _ = quality(pipeline, teacher, root, classes, resolution, channels, samples_per_class, guidance,
                         num_steps, seed, model_precision)
    p = Path(pipeline) / "train_log.json"
    if p.is_file():
        q.update(json.loads(p.read_text()))
    ckpt = torch.load(teacher, map_location="cpu", weights_only=False)
    q["teacher_arch"] = ckpt["arch"]
    q["teacher_train_seconds"] = round(ckpt.get("train_seconds", float("nan")), 1)
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(q, indent=1))
    if samples:
        k = samples_per_class
        grid = np.concatenate([np.concatenate(list(imgs[i * k:(i + 1) * k]), axis=1) for i in range(len(classes))])
        with atomic_output(samples) as tmp:
            Image.fromarray(grid if grid.shape[-1] == 3 else grid[..., 0]).save(tmp, format="PNG")
    _log(json.dumps(q, indent=1))
    return q


@torch.no_grad()
def quality(pipeline_dir, teacher_path, root, classes, resolution, channels, samples_per_class, guidance, num_steps,
            seed, model_precision="auto"):
    """VAE reconstruction PSNR on val, teacher top-1 on val, teacher top-1 on DiT samples from pure noise."""
    from .ddim import sample, timestep_grid
    from .device import model_dtype
    from .images import to_uint8
    from .nets import load_classifier

    ldm = load_ldm(pipeline_dir, dtype=model_dtype("cpu", model_precision))  # as the stages load it
    teacher, _ = load_classifier(teacher_path, num_classes=len(classes))
    x_val, y_val = load_split(root, "val", classes, resolution, channels)
    xv = to_model_range(x_val)
    mse = []
    for i in range(0, len(xv), 256):
        x = xv[i : i + 256].to(ldm.vae.dtype)
        rec = ldm.vae.decode(ldm.vae.encode(x).latent_dist.mean).sample.float().clamp(-1, 1)
        mse.append(((rec - xv[i : i + 256]) / 2).pow(2).flatten(1).mean(1))
    mse = torch.cat(mse)
    psnr = float((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean())
    gen = torch.Generator().manual_seed(seed)
    grid = timestep_grid(ldm.num_train_timesteps, num_steps)
    labels = torch.arange(len(classes)).repeat_interleave(samples_per_class)
    z = torch.randn((len(labels), ldm.latent_channels, ldm.latent_size, ldm.latent_size), generator=gen)
    bar = tqdm(total=len(grid), desc="sample DiT", mininterval=10, file=sys.stderr)
    z0 = sample(ldm.transformer, z, int(grid[-1]), labels, ldm.alphas_cumprod, grid, ldm.null_label, guidance, bar)
    imgs = to_uint8(ldm.vae.decode((z0 / ldm.scaling_factor).to(ldm.vae.dtype)).sample)
    return {
        "vae_val_psnr_db": round(psnr, 2),
        "teacher_val_top1": round(accuracy(teacher, x_val, y_val), 4),
        "teacher_top1_on_dit_samples": round(accuracy(teacher, imgs, labels.numpy()), 4),
        "dit_samples_per_class": samples_per_class,
        "dit_sampling": {"guidance": guidance, "num_steps": num_steps},
    }, imgs, labels.numpy()
