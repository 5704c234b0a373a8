"""Image outputs shared by the stages that write images (docs/method.md §0, §5 and "Baselines"): decoded VAE outputs
to uint8, and a folder of PNGs written atomically (`h5io.atomic_output`: a temporary folder renamed into place, so a
crash never leaves a half-written folder)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .h5io import atomic_output


def to_uint8(x) -> np.ndarray:
    """A decoded batch in [-1, 1], N x C x H x W (a torch tensor) -> uint8 N x H x W x C numpy (x = D(z0 / s), clamped)."""
    import torch

    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_pngs(images: np.ndarray, out_dir, prefix: str, resize: int | None = None):
    """Write uint8 N x H x W x C images as {prefix}_{i:03d}.png into out_dir, atomically."""
    with atomic_output(out_dir, directory=True) as tmp:
        for i, img in enumerate(images):
            im = Image.fromarray(img if img.shape[-1] == 3 else img[..., 0])
            if resize and im.size != (resize, resize):
                im = im.resize((resize, resize), Image.LANCZOS)
            im.save(tmp / f"{prefix}_{i:03d}.png")
