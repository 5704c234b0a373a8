"""Student and teacher names (docs/method.md §6), checked without importing torch or timm (the Snakefile checks the config's students while it is
parsed, which every cluster job repeats): our own names, and timm's registry read once per timm version from a cache.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import D3HRError

# Our own names (d3hr/nets.py builds them and imports this set); anything else must be a timm model name.
LOCAL_ARCHS = frozenset({"resnet_tiny", "convnet", "convnet_tiny", "convnet_in", "convnet_tiny_in"})

# The authors' AdamW learning rate per student (validation/argument.py), by timm name and by their torchvision names;
# `evaluate.lr: 0` uses it (d3hr/evaluate.py), and the config check refuses a student without one.
AUTHORS_LR = {
    "resnet18": 1e-3, "resnet50": 1e-3, "resnet101": 1e-3, "efficientnet_b0": 2e-3, "mobilenetv2_100": 2.5e-3,
    "mobilenet_v2": 2.5e-3, "vgg11": 5e-4, "vit_base_patch16_224": 1e-4, "vit_b_16": 1e-4,
    "swin_tiny_patch4_window7_224": 1e-4, "swinv2_tiny_window8_256": 1e-4, "swin_v2_t": 1e-4, "alexnet": 1e-4,
}


def student_lr(arch: str, lr: float = 0.0) -> float:
    """`lr` if > 0, else the authors' rate for `arch` (ConvNets and ResNets 1e-3)."""
    if lr > 0:
        return lr
    if arch in AUTHORS_LR:
        return AUTHORS_LR[arch]
    if arch.startswith(("convnet", "resnet")):
        return 1e-3
    raise D3HRError(f"the authors give no learning rate for student {arch!r}: set evaluate.lr to a number > 0")


def timm_model_names(cache_dir: str | Path = ".snakemake/d3hr") -> frozenset:
    """timm's model names (without pretrained tags), from `{cache_dir}/timm-{version}-models.txt`; on a miss, import
    timm once and write the file (atomically: a parallel parse may write it too)."""
    try:
        ver = version("timm")
    except PackageNotFoundError as e:
        raise D3HRError("timm is not installed: only the students " + ", ".join(sorted(LOCAL_ARCHS)) + " exist") from e
    cache = Path(cache_dir) / f"timm-{ver}-models.txt"
    if cache.is_file():
        return frozenset(cache.read_text().split())
    import timm

    names = set(timm.list_models())
    try:  # deprecated names (e.g. tv_resnet50) are still accepted by timm.create_model
        from timm.models._registry import _deprecated_models

        names |= set(_deprecated_models)  # {deprecated name: its current name}
    except ImportError:
        pass
    names = sorted(names)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(names) + "\n")
    os.replace(tmp, cache)
    return frozenset(names)


def check_arch_name(arch: str, cache_dir: str | Path = ".snakemake/d3hr") -> str:
    """`arch` if it is one of ours or a timm model name (a pretrained tag such as `resnet18.a1_in1k` is allowed)."""
    if arch in LOCAL_ARCHS or arch.split(".")[0] in timm_model_names(cache_dir):
        return arch
    raise D3HRError(f"unknown classifier architecture {arch!r}: use {sorted(LOCAL_ARCHS)} or a timm model name")
