"""Benchmark: bf16 against float32 for every model of the embedded default on the CPU, in one process, one thread.

Inference (model_precision): the DiT's guided eps and a DDIM inversion of one class's latents with the weights in
bf16 against float32, how far the inverted latents move, the round trip (invert to 600 and sample back), and the
teacher's top-1 on samples from noise with each. Training (train.teacher.precision; the VAE and the DiT stay float32):
one optimiser step of each model, float32 against bf16 autocast, with and without channels-last. Needs a finished
`make run` (its pipeline, teacher and latents).

    python bench/cpu_precision.py
    python bench/cpu_precision.py --results results/animal_mnist --cls Bear --label 0
"""

from __future__ import annotations

import argparse
import copy
import time

import h5py
import torch
import torch.nn.functional as F

from d3hr.augment import random_resized_crop_flip
from d3hr.ddim import guided_eps, invert, sample, timestep_grid
from d3hr.device import native_bf16
from d3hr.images import to_uint8
from d3hr.models import build_dit, build_vae, load_ldm
from d3hr.nets import create_classifier, load_classifier
from d3hr.train import accuracy


def per_call(f, reps=10, warm=3):
    for _ in range(warm):
        f()
    t0 = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t0) / reps


def inference(res, cls, label, n_latents, n_samples):
    pipe = f"{res}/models/pipeline"
    l32, l16 = load_ldm(pipe), load_ldm(pipe, dtype=torch.bfloat16)
    grid = timestep_grid(l32.num_train_timesteps, 50)
    z = torch.randn(256, l32.latent_channels, l32.latent_size, l32.latent_size, generator=torch.Generator().manual_seed(0))
    y = torch.full((256,), label)
    with torch.no_grad():
        t32 = per_call(lambda: guided_eps(l32.transformer, z, 600, y, l32.null_label, 4.0))
        t16 = per_call(lambda: guided_eps(l16.transformer, z, 600, y, l16.null_label, 4.0))
    print(f"guided eps of 256 latents (512 DiT forwards): fp32 {t32 * 1e3:.0f} ms, bf16 weights {t16 * 1e3:.0f} ms, "
          f"{t32 / t16:.2f}x")
    with h5py.File(f"{res}/latents/{cls}.h5") as f:
        z0 = torch.from_numpy(f["latents"][:n_latents])
    y = torch.full((len(z0),), label)
    keep = [480, 600, 760]
    out = {}
    for name, ldm in (("fp32", l32), ("bf16", l16)):
        t0 = time.perf_counter()
        zs = invert(ldm.transformer, z0, y, ldm.alphas_cumprod, grid, keep, ldm.null_label, 4.0)
        t_inv = time.perf_counter() - t0
        back = sample(ldm.transformer, zs[600], 600, y, ldm.alphas_cumprod, grid, ldm.null_label, 4.0)
        out[name] = zs
        rt = float((back - z0).pow(2).mean().sqrt() / z0.pow(2).mean().sqrt())
        print(f"{name}: inversion of {len(z0)} latents of {cls} to t=760 {t_inv:.1f} s; round trip 0 -> 600 -> 0 "
              f"(CFG 4) relative rms error {rt:.4f}")
    for t in keep:
        a, b = out["fp32"][t], out["bf16"][t]
        print(f"  t={t}: bf16 - fp32 rms {float((a - b).pow(2).mean().sqrt()):.4f} (rms of z_t "
              f"{float(a.pow(2).mean().sqrt()):.3f}); per-dimension means within {float((a.mean(0) - b.mean(0)).abs().max()):.4f}, "
              f"stds within {float((a.std(0) / b.std(0) - 1).abs().max()) * 100:.1f}%")
    teacher, _ = load_classifier(f"{res}/models/teacher.pt", num_classes=l32.num_classes)
    labels = torch.arange(l32.num_classes).repeat_interleave(n_samples)
    zn = torch.randn(len(labels), l32.latent_channels, l32.latent_size, l32.latent_size, generator=torch.Generator().manual_seed(0))
    for name, ldm in (("fp32", l32), ("bf16", l16)):
        t0 = time.perf_counter()
        with torch.no_grad():
            z0s = sample(ldm.transformer, zn, int(grid[-1]), labels, ldm.alphas_cumprod, grid, ldm.null_label, 4.0)
            imgs = to_uint8(ldm.vae.decode((z0s / ldm.scaling_factor).to(ldm.vae.dtype)).sample)
        print(f"{name}: {len(labels)} samples from noise (50 steps, CFG 4) {time.perf_counter() - t0:.1f} s, "
              f"teacher top-1 {accuracy(teacher, imgs, labels.numpy()) * 100:.1f}%")


def training():
    gen = torch.Generator().manual_seed(0)

    def step_fn(model, loss_of, bf16, cl):
        model = copy.deepcopy(model).train()
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_of(model, cl)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    x = torch.rand(128, 3, 32, 32) * 2 - 1
    y = torch.randint(0, 10, (128,))

    def teacher_loss(m, cl):
        xb = random_resized_crop_flip(x, gen)
        return F.cross_entropy(m(xb.contiguous(memory_format=torch.channels_last) if cl else xb).float(), y)

    xv = x[:16]

    def vae_loss(m, cl):
        post = m.encode(xv.contiguous(memory_format=torch.channels_last) if cl else xv).latent_dist
        return F.mse_loss(m.decode(post.sample()).sample.float(), xv) + 1e-5 * post.kl().mean()

    z = torch.randn(128, 4, 8, 8)
    t = torch.randint(0, 1000, (128,))

    def dit_loss(m, cl):
        return F.mse_loss(m(z, timestep=t, class_labels=y).sample.float(), z)

    models = {
        "teacher resnet_tiny, batch 128": (create_classifier("resnet_tiny", 10, 3, resolution=32, seed=0), teacher_loss, True),
        "VAE, batch 16": (build_vae(3, 4, (16, 32, 32), sample_size=32), vae_loss, True),
        "DiT, batch 128": (build_dit(10, 8, 4, hidden_size=128, num_heads=4, num_layers=4, patch_size=2), dit_loss, False),
    }
    print("training step (ms): fp32 | bf16 autocast | fp32 channels-last | bf16 channels-last")
    for name, (model, loss_of, convs) in models.items():
        modes = [(False, False), (True, False)] + ([(False, True), (True, True)] if convs else [])
        ms = [per_call(step_fn(model, loss_of, bf, cl), reps=10) * 1e3 for bf, cl in modes]
        print(f"  {name}: " + " | ".join(f"{v:.0f}" for v in ms) + f"  (fp32 / best: {ms[0] / min(ms):.2f}x)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/animal_mnist")
    ap.add_argument("--cls", default="Bear")
    ap.add_argument("--label", type=int, default=0)
    ap.add_argument("--latents", type=int, default=256, help="latents of the class to invert")
    ap.add_argument("--samples", type=int, default=30, help="samples per class from noise")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, one thread; native bf16 on this CPU: {native_bf16(cpu)}")
    inference(a.results, a.cls, a.label, a.latents, a.samples)
    training()


if __name__ == "__main__":
    main()
