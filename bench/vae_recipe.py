"""The embedded default's VAE recipe: reconstruction PSNR and time per step of a few recipes, each trained like
`d3hr.train.train_vae` (AdamW, warm-up + cosine, flips, sampled posterior) on the training split minus 1,000 held-out
training images, and scored on those (not on the validation split, which the quality check reports).

    python bench/vae_recipe.py                 # the reference (the former default) and the current default
    python bench/vae_recipe.py '{"steps": 1000, "batch_size": 32}'   # more recipes, as JSON overrides

Run it alone (it uses 2 threads); the first recipe is the reference of the ratios.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from d3hr.data import load_split, to_model_range  # noqa: E402
from d3hr.models import build_vae  # noqa: E402
from d3hr.train import _batches, _flip, _warmup_cosine  # noqa: E402

REFERENCE = {"steps": 600, "batch_size": 64, "lr": 3e-3, "kl_weight": 1e-5, "block_out_channels": [16, 32, 32]}
CURRENT = {"steps": 1600, "batch_size": 16}


def run(recipe: dict, x_train, x_held) -> dict:
    r = REFERENCE | recipe
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    vae = build_vae(3, 4, r["block_out_channels"], sample_size=x_train.shape[-1])
    opt = torch.optim.AdamW(vae.parameters(), lr=r["lr"], weight_decay=0.0)
    sched = _warmup_cosine(opt, r["steps"], 0.05)
    vae.train()
    t0 = time.perf_counter()
    for idx in _batches(len(x_train), r["batch_size"], r["steps"], gen):
        x = _flip(x_train[idx], gen)
        post = vae.encode(x).latent_dist
        loss = F.mse_loss(vae.decode(post.sample()).sample, x) + r["kl_weight"] * post.kl().mean() / post.mean[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    vae.eval()
    with torch.no_grad():
        rec = torch.cat([vae.decode(vae.encode(x_held[i : i + 250]).latent_dist.mean).sample.clamp(-1, 1)
                         for i in range(0, len(x_held), 250)])
    mse = ((rec - x_held) / 2).pow(2).flatten(1).mean(1)
    return {"recipe": r, "seconds": seconds, "psnr_db": float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())}


def main():
    torch.set_num_threads(2)
    root = REPO / "data" / "animal_mnist"
    if not (root / "train").is_dir():
        sys.exit(f"{root}/train not found: run the workflow's export first (snakemake --cores 2 data/animal_mnist/train/Bear)")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    x, _ = load_split(root, "train", classes, 32, 3)
    x = to_model_range(x)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(123))
    x_held, x_train = x[perm[:1000]], x[perm[1000:]]
    recipes = [{}, CURRENT] + [json.loads(a) for a in sys.argv[1:]]
    rows = [run(r, x_train, x_held) for r in recipes]
    ref = rows[0]
    print("| recipe | steps x batch | s | s vs ref | held-out PSNR dB | vs ref dB |")
    print("|---|---|---|---|---|---|")
    for name, row in zip(["reference"] + [json.dumps(r) for r in recipes[1:]], rows):
        r = row["recipe"]
        print(f"| {name} | {r['steps']} x {r['batch_size']} | {row['seconds']:.0f} | {row['seconds'] / ref['seconds']:.2f}x "
              f"| {row['psnr_db']:.2f} | {row['psnr_db'] - ref['psnr_db']:+.2f} |")


if __name__ == "__main__":
    main()
