"""Classifiers (teacher and students): timm architectures by name, with a 32x32 stem variant, and the ConvNet
(docs/method.md §0 and §6)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from . import D3HRError
from .archs import LOCAL_ARCHS  # the names built below, listed where the torch-free config check reads them

# Our own names; anything else must be a timm model name.


class ConvNet(nn.Module):
    """The ConvNet of dataset-distillation papers: depth x [conv3x3(width), norm, ReLU, avg-pool 2]; norm 'batch' (the
    D3HR authors' validation code) or 'instance' (the ConvNet of DC/DM)."""

    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 128, depth: int = 3, resolution: int = 32,
                 norm: str = "batch"):
        super().__init__()
        layers, c = [], in_chans
        for _ in range(depth):
            nl = nn.BatchNorm2d(width) if norm == "batch" else nn.GroupNorm(width, width, affine=True)
            layers += [nn.Conv2d(c, width, 3, padding=1), nl, nn.ReLU(), nn.AvgPool2d(2)]
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


# The ResNets torchvision builds, as the D3HR authors' validation code takes them (validation/models/__init__.py):
# torchvision keeps each block's last BatchNorm weight at 1, where timm's create_model zero-initialises it
# (zero_init_last); the parameter names are the same.
TORCHVISION_RESNETS = frozenset({"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"})
Builder = Literal["timm", "torchvision"]


def create_classifier(arch: str, num_classes: int, in_chans: int = 3, small_input: bool = True, resolution: int = 32,
                      seed: int | None = None, builder: Builder = "timm"):
    """A classifier with fresh weights; with `seed`, the same weights in every process (torch seeds its global
    generator differently in each process, so an unseeded initialisation differs from run to run). `builder`
    "torchvision": the ResNets of TORCHVISION_RESNETS built by torchvision.models (the authors' students); every other
    name as with "timm"."""
    if builder not in ("timm", "torchvision"):
        raise D3HRError(f"unknown classifier builder {builder!r}: timm or torchvision")
    if seed is None:
        return _create_classifier(arch, num_classes, in_chans, small_input, resolution, builder)
    with torch.random.fork_rng(devices=[]):  # leaves the caller's global generator as it was
        torch.manual_seed(seed)
        return _create_classifier(arch, num_classes, in_chans, small_input, resolution, builder)


def _create_classifier(arch, num_classes, in_chans, small_input, resolution, builder="timm"):
    import timm
    from timm.models.resnet import BasicBlock, ResNet

    check_arch(arch)
    if builder == "torchvision" and arch in TORCHVISION_RESNETS:
        import torchvision

        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        if in_chans != 3:
            model.conv1 = nn.Conv2d(in_chans, model.conv1.out_channels, 7, 2, 3, bias=False)
        return _small_stem(model, in_chans) if small_input else model
    if arch.startswith("convnet"):  # convnet_tiny: the same ConvNet at width 32, the embedded default's CPU budget
        return ConvNet(num_classes, in_chans, width=32 if "tiny" in arch else 128, depth=3, resolution=resolution,
                       norm="instance" if arch.endswith("_in") else "batch")
    if arch == "resnet_tiny":
        # a ResNet-10 with channels (16, 32, 64, 128): a teacher that trains on 2 CPU cores in about a minute
        model = ResNet(BasicBlock, (1, 1, 1, 1), num_classes=num_classes, in_chans=in_chans, stem_width=16, channels=(16, 32, 64, 128))
    else:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    return _small_stem(model, in_chans) if small_input else model


def frozen_for_inference(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """An eval-mode copy of `model` traced and frozen by TorchScript (batch norm folded into the convolutions): the
    same outputs (to float rounding) about twice as fast on the CPU, for a teacher queried at every training step."""
    import copy
    import warnings

    model = copy.deepcopy(model).eval()
    if example.device.type != "cpu":
        return model
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.freeze(torch.jit.trace(model, example))


@torch.no_grad()
def logits(model: nn.Module, x_uint8, batch: int = 500) -> torch.Tensor:
    """The model's logits on uint8 NHWC images (fed in d3hr's [-1, 1] range), in eval mode, `batch` at a time."""
    from .data import to_model_range

    model.eval()
    return torch.cat([model(to_model_range(x_uint8[i : i + batch])).float() for i in range(0, len(x_uint8), batch)])


def predict(model: nn.Module, x_uint8, batch: int = 500):
    """Arg-max class of each uint8 NHWC image (int64 numpy)."""
    return logits(model, x_uint8, batch).argmax(1).numpy().astype("int64")


def save_classifier(path, model: nn.Module, meta: dict):
    from .h5io import atomic_output

    with atomic_output(path) as tmp:
        torch.save({**meta, "state_dict": model.state_dict()}, tmp)


# torchvision's and timm's ImageNet weights expect (x01 - mean) / std with these per-channel values
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class InputNorm(nn.Module):
    """d3hr feeds classifiers images in [-1, 1]; a network pretrained on (x01 - mean) / std gets exactly that."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return ((x + 1) / 2 - self.mean) / self.std


def import_classifier(weights, out, arch: str, num_classes: int, resolution: int, classes=None,
                      input_norm: str = "imagenet", small_input: bool = False):
    """A d3hr checkpoint from a plain state dict (torchvision or timm, e.g. torchvision's resnet18 weights): the keys
    must match timm's `arch` exactly; `input_norm` 'imagenet' records ImageNet's mean/std, 'none' feeds [-1, 1]."""
    weights = Path(weights)
    if not weights.is_file():
        raise D3HRError(f"{weights}: weights file not found")
    try:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling/format error is reported with the file
        raise D3HRError(f"{weights}: cannot read a state dict ({e})") from None
    sd = sd.get("state_dict", sd.get("model", sd)) if isinstance(sd, dict) else sd
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise D3HRError(f"{weights}: not a state dict of tensors")
    model = create_classifier(arch, num_classes, 3, small_input=small_input, resolution=resolution)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or unexpected:
        raise D3HRError(f"{weights}: does not fit timm's {arch} with {num_classes} classes "
                        f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    for k, v in own.items():
        if sd[k].shape != v.shape:
            raise D3HRError(f"{weights}: {k} has shape {tuple(sd[k].shape)}, {arch} expects {tuple(v.shape)}")
    model.load_state_dict(sd)
    if input_norm not in ("imagenet", "none"):
        raise D3HRError(f"input_norm must be 'imagenet' or 'none', not {input_norm!r}")
    meta = {"arch": arch, "num_classes": num_classes, "in_chans": 3, "small_input": small_input,
            "resolution": resolution, "classes": list(classes) if classes else None, "imported_from": str(weights)}
    if input_norm == "imagenet":
        meta.update(input_mean=list(IMAGENET_MEAN), input_std=list(IMAGENET_STD))
    save_classifier(out, model, meta)
    return model


def import_weights(weights: str, out: str, arch: str = "resnet18", num_classes: int = 1000, resolution: int = 224,
                   input_norm: Literal["imagenet", "none"] = "imagenet", classes_from: str | None = None):
    """`d3hr import-classifier`: import_classifier, with the class names of a train/ folder (`classes_from`: its sorted
    class folders, which must number `num_classes`)."""
    from .data import list_classes

    classes = None
    if classes_from:
        classes = list_classes(classes_from)
        if len(classes) != num_classes:
            raise D3HRError(f"{classes_from}: {len(classes)} class folders, but --num-classes is {num_classes}")
    import_classifier(weights, out, arch=arch, num_classes=num_classes, resolution=resolution, classes=classes,
                      input_norm=input_norm)
    print(f"[d3hr] {weights} -> {out} ({arch}, {num_classes} classes, input norm {input_norm})", file=sys.stderr)


def load_classifier(path, num_classes: int | None = None, map_location="cpu"):
    """Load a classifier saved by `save_classifier` or `import_classifier` (then with its input normalisation in
    front); checks the class count against the dataset."""
    path = Path(path)
    if not path.is_file():
        raise D3HRError(f"{path}: classifier checkpoint not found")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if num_classes is not None and ckpt["num_classes"] != num_classes:
        raise D3HRError(f"{path}: teacher has {ckpt['num_classes']} classes but the dataset has {num_classes}")
    model = create_classifier(ckpt["arch"], ckpt["num_classes"], ckpt.get("in_chans", 3), ckpt.get("small_input", True), ckpt.get("resolution", 32))
    model.load_state_dict(ckpt["state_dict"])
    if ckpt.get("input_mean") is not None:
        model = nn.Sequential(InputNorm(ckpt["input_mean"], ckpt["input_std"]), model)
    return model.eval(), ckpt
