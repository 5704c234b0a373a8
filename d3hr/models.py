"""The latent diffusion model: a diffusers `DiTPipeline` directory (VAE + class-conditional DiT + DDIM scheduler;
docs/method.md, "Notation" and §0).

`DiTPipeline` is used only as the save/load container: its `__call__` hard-codes the null label 1000, so the
sampling and inversion loops are ours (`d3hr.ddim`). Class names live in `classes.json` beside the pipeline,
because `save_pretrained` does not keep `id2label`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from . import D3HRError


def build_scheduler():
    """DiT's DDIM schedule: T = 1000, linear betas 1e-4..0.02, no sample clipping (clipping breaks inversion)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
        clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon",
    )


def build_vae(in_channels=3, latent_channels=4, block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16, sample_size=32):
    from diffusers import AutoencoderKL

    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=in_channels, out_channels=in_channels, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        norm_num_groups=norm_num_groups, sample_size=sample_size,
    )


def build_dit(num_classes, latent_size, latent_channels=4, learn_sigma=False, hidden_size=128, num_heads=4, num_layers=4, patch_size=2):
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(
        num_attention_heads=num_heads, attention_head_dim=hidden_size // num_heads, in_channels=latent_channels,
        out_channels=latent_channels * (2 if learn_sigma else 1),  # learned sigma: first half of the output is eps
        num_layers=num_layers, sample_size=latent_size, patch_size=patch_size, num_embeds_ada_norm=num_classes,
        norm_type="ada_norm_zero",
    )


def save_pipeline(out_dir, transformer, vae, scheduler, class_names):
    """Save as a DiTPipeline directory + classes.json, atomically (temporary directory + rename)."""
    from diffusers import DiTPipeline

    from .h5io import atomic_output

    with atomic_output(out_dir, directory=True) as tmp:
        DiTPipeline(transformer=transformer, vae=vae, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
        (tmp / "classes.json").write_text(json.dumps(list(class_names), indent=1))


@dataclass
class LDM:
    """What the stages need from a pipeline directory."""

    path: Path
    vae: torch.nn.Module | None
    transformer: torch.nn.Module | None
    alphas_cumprod: torch.Tensor
    num_train_timesteps: int
    scaling_factor: float
    latent_channels: int
    latent_size: int
    num_classes: int
    class_names: list[str] | None
    learned_sigma: bool

    @property
    def null_label(self) -> int:
        # DiTTransformer2DModel: the CFG (null) embedding is row `num_embeds_ada_norm` (= number of classes)
        return self.num_classes

    def check_label(self, cls: str, label: int):
        if not 0 <= label < self.num_classes:
            raise D3HRError(f"{self.path}: label {label} of class {cls!r} is outside the model's {self.num_classes} classes")
        if self.class_names is not None and self.class_names[label] != cls:
            raise D3HRError(f"{self.path}: label {label} is {self.class_names[label]!r} in classes.json, not {cls!r}")
        return label


def load_ldm(path, device="cpu", dtype=torch.float32, components=("vae", "transformer")) -> LDM:
    """Load a DiTPipeline directory from disk only (never from a hub)."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTTransformer2DModel

    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise D3HRError(f"{path}: not a diffusers pipeline directory (no model_index.json); see README, 'Models'")
    index = json.loads((path / "model_index.json").read_text())
    if index.get("_class_name") != "DiTPipeline":
        raise D3HRError(f"{path}: model_index.json names {index.get('_class_name')!r}, expected 'DiTPipeline'")
    sched = DDIMScheduler.from_pretrained(path, subfolder="scheduler", local_files_only=True)
    vae = tr = None
    vae_cfg = AutoencoderKL.load_config(path / "vae", local_files_only=True)
    tr_cfg = DiTTransformer2DModel.load_config(path / "transformer", local_files_only=True)
    if "vae" in components:
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True, torch_dtype=dtype).to(device).eval()
    if "transformer" in components:
        tr = DiTTransformer2DModel.from_pretrained(path, subfolder="transformer", local_files_only=True, torch_dtype=dtype).to(device).eval()
    names = None
    if (path / "classes.json").is_file():
        names = json.loads((path / "classes.json").read_text())
    lc = tr_cfg["in_channels"]
    if vae_cfg["latent_channels"] != lc:
        raise D3HRError(f"{path}: VAE latent channels {vae_cfg['latent_channels']} != DiT in_channels {lc}")
    out_c = tr_cfg.get("out_channels") or lc
    return LDM(
        path=path, vae=vae, transformer=tr,
        alphas_cumprod=sched.alphas_cumprod.to(torch.float64),
        num_train_timesteps=sched.config.num_train_timesteps,
        scaling_factor=float(vae_cfg.get("scaling_factor") or 0.18215),
        latent_channels=lc, latent_size=tr_cfg["sample_size"], num_classes=tr_cfg["num_embeds_ada_norm"],
        class_names=names, learned_sigma=(out_c == 2 * lc),
    )
