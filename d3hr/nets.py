"""Classifiers (teacher and students): timm architectures by name, with a 32x32 stem variant, and the ConvNet."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import D3HRError

# Our own names; anything else must be a timm model name.
LOCAL_ARCHS = {"resnet_tiny", "convnet", "convnet_tiny"}


class ConvNet(nn.Module):
    """The ConvNet of dataset-distillation papers: depth x [conv3x3(width), instance norm, ReLU, avg-pool 2]."""

    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 128, depth: int = 3, resolution: int = 32):
        super().__init__()
        layers, c = [], in_chans
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(), nn.AvgPool2d(2)]
            c = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * (resolution // 2**depth) ** 2, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _small_stem(model: nn.Module, in_chans: int) -> nn.Module:
    """CIFAR-style stem for ResNets: 3x3 stride-1 first conv, no max-pool (the 'modified' ResNet)."""
    if hasattr(model, "conv1") and hasattr(model, "maxpool") and isinstance(model.conv1, nn.Conv2d):
        out = model.conv1.out_channels
        model.conv1 = nn.Conv2d(in_chans, out, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    return model


def check_arch(arch: str) -> str:
    import timm

    if arch not in LOCAL_ARCHS and not timm.is_model(arch):
        raise D3HRError(f"unknown classifier architecture {arch!r}: use {sorted(LOCAL_ARCHS)} or a timm model name")
    return arch


def create_classifier(arch: str, num_classes: int, in_chans: int = 3, small_input: bool = True, resolution: int = 32):
    import timm
    from timm.models.resnet import BasicBlock, ResNet

    check_arch(arch)
    if arch == "convnet":
        return ConvNet(num_classes, in_chans, width=128, depth=3, resolution=resolution)
    if arch == "convnet_tiny":  # the same ConvNet at width 32: the embedded default's CPU budget
        return ConvNet(num_classes, in_chans, width=32, depth=3, resolution=resolution)
    if arch == "resnet_tiny":
        # a ResNet-10 with channels (16, 32, 64, 128): a teacher that trains on 2 CPU cores in about a minute
        model = ResNet(BasicBlock, (1, 1, 1, 1), num_classes=num_classes, in_chans=in_chans, stem_width=16, channels=(16, 32, 64, 128))
    else:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    return _small_stem(model, in_chans) if small_input else model


def save_classifier(path, model: nn.Module, meta: dict):
    from .h5io import atomic_output

    with atomic_output(path) as tmp:
        torch.save({**meta, "state_dict": model.state_dict()}, tmp)


def load_classifier(path, num_classes: int | None = None, map_location="cpu"):
    """Load a classifier saved by `save_classifier`; checks the class count against the dataset."""
    path = Path(path)
    if not path.is_file():
        raise D3HRError(f"{path}: classifier checkpoint not found")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if num_classes is not None and ckpt["num_classes"] != num_classes:
        raise D3HRError(f"{path}: teacher has {ckpt['num_classes']} classes but the dataset has {num_classes}")
    model = create_classifier(ckpt["arch"], ckpt["num_classes"], ckpt.get("in_chans", 3), ckpt.get("small_input", True), ckpt.get("resolution", 32))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt
