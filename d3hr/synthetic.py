"""Synthetic data and models for tests and benchmarks (nothing downloaded).

- `glyphs`: a dataset of another kind than the embedded default: grey images of one small shape per class (circle,
  square, triangle, ...) at a random size, position, rotation and contrast over a noisy background.
  `root/{train,val}/{class}/*.png`, seeded.
- `imagenet_like`: JPEG folders of ImageNet's typical size (500 x 375) with wnid-style class names.
- `save_dit_xl_pipeline`: a DiTPipeline of DiT-XL/2-256's and the SD VAE's published shapes, random weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# each class: polygons in unit coordinates around (0, 0) (radius about 1); "ring" and "disc" are ellipses
GLYPHS = {
    "disc": None,
    "ring": None,
    "square": [[(-1, -1), (1, -1), (1, 1), (-1, 1)]],
    "triangle": [[(0, -1), (1, 0.8), (-1, 0.8)]],
    "diamond": [[(0, -1), (1, 0), (0, 1), (-1, 0)]],
    "plus": [[(-0.3, -1), (0.3, -1), (0.3, 1), (-0.3, 1)], [(-1, -0.3), (1, -0.3), (1, 0.3), (-1, 0.3)]],
    "bar": [[(-1, -0.3), (1, -0.3), (1, 0.3), (-1, 0.3)]],
    "ell": [[(-1, -1), (-0.4, -1), (-0.4, 0.4), (1, 0.4), (1, 1), (-1, 1)]],
    "tee": [[(-1, -1), (1, -1), (1, -0.4), (0.3, -0.4), (0.3, 1), (-0.3, 1), (-0.3, -0.4), (-1, -0.4)]],
    "arrow": [[(-1, -0.25), (0.2, -0.25), (0.2, -0.7), (1, 0), (0.2, 0.7), (0.2, 0.25), (-1, 0.25)]],
}


def glyph(name: str, size: int, rng: np.random.Generator, scale=(0.15, 0.3)) -> np.ndarray:
    """One size x size uint8 grey image of glyph `name`: radius a random share `scale` of the side, centre within
    the middle half, random rotation and contrast, Gaussian background noise."""
    from PIL import Image, ImageDraw

    bg, fg = rng.uniform(40, 110), rng.uniform(150, 240)
    img = Image.new("L", (size, size), int(bg))
    draw = ImageDraw.Draw(img)
    r = rng.uniform(*scale) * size
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    a = rng.uniform(-math.pi / 6, math.pi / 6)
    if GLYPHS[name] is None:
        box = [cx - r, cy - r, cx + r, cy + r]
        draw.ellipse(box, fill=int(fg)) if name == "disc" else draw.ellipse(box, outline=int(fg), width=max(1, int(r / 3)))
    for poly in GLYPHS[name] or ():
        pts = [(cx + r * (x * math.cos(a) - y * math.sin(a)), cy + r * (x * math.sin(a) + y * math.cos(a))) for x, y in poly]
        draw.polygon(pts, fill=int(fg))
    x = np.asarray(img, dtype=np.float32) + rng.normal(0, 12, (size, size))
    return np.clip(x, 0, 255).astype(np.uint8)


def make_glyphs(root, n_train: int, n_val: int, size: int, classes=None, seed: int = 0, scale=(0.15, 0.3)) -> Path:
    """An image-folder dataset of glyphs: `n_train` and `n_val` PNGs per class at `size` px (grey)."""
    from PIL import Image

    classes = list(classes or GLYPHS)
    for k, c in enumerate(classes):
        rng = np.random.default_rng([seed, k])
        for split, n in (("train", n_train), ("val", n_val)):
            d = Path(root) / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(glyph(c, size, rng, scale)).save(d / f"{c}_{i:04d}.png")
    return Path(root)


# facebook/DiT-XL-2-256: transformer/config.json and vae/config.json (sd-vae-ft-ema), as published
DIT_XL_2_256 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                    sample_size=32, patch_size=2, num_embeds_ada_norm=1000, norm_type="ada_norm_zero",
                    activation_fn="gelu-approximate", attention_bias=True, norm_elementwise_affine=False,
                    norm_num_groups=32, dropout=0.0, upcast_attention=False)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              norm_num_groups=32, sample_size=256, act_fn="silu", scaling_factor=0.18215)


def wnid(k: int) -> str:
    """ImageNet-style class name of label k (sorted order = label order)."""
    return f"n{k:08d}"


def save_dit_xl_pipeline(out, num_layers: int = 28, seed: int = 0, dtype=None):
    """A diffusers DiTPipeline directory with DiT-XL/2-256's shape (`num_layers` of its 28 blocks) and the SD VAE's,
    random weights, 1,000 classes named wnid(k)."""
    import torch
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    from .models import build_scheduler, save_pipeline

    torch.manual_seed(seed)
    dit = DiTTransformer2DModel(**{**DIT_XL_2_256, "num_layers": num_layers})
    vae = AutoencoderKL(**SD_VAE)
    save_pipeline(out, dit.to(dtype or torch.float16), vae, build_scheduler(), [wnid(k) for k in range(1000)])
    return Path(out)


def imagenet_like(root, classes: int, n_train: int, n_val: int, seed: int = 0, size=(500, 375)) -> Path:
    """JPEG folders root/{train,val}/{wnid}/*.JPEG of ImageNet's typical size: smooth random content (upsampled
    noise and grain, quality 90) with a class-dependent tint."""
    from PIL import Image

    for k in range(classes):
        rng = np.random.default_rng([seed, k])
        tint = rng.integers(-40, 40, 3)
        for split, n in (("train", n_train), ("val", n_val)):
            d = Path(root) / split / wnid(k)
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
                img = np.asarray(Image.fromarray(small).resize(size, Image.BICUBIC), dtype=np.int16)
                img = np.clip(img + tint + rng.integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{wnid(k)}_{i:05d}.JPEG", quality=90)
    return Path(root)
