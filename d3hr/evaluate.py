"""Stage 6: train a student from scratch on a distilled image set with the teacher's soft labels, and report
top-1/top-5 on the real validation split (the RDED protocol the D3HR authors reuse; docs/method.md §6).

Per step: a batch of distilled images -> RandomResizedCrop(scale 0.08-1) + horizontal flip -> CutMix (or MixUp);
the teacher's temperature-softened outputs on that same batch are the targets; loss KL(teacher || student) at
temperature T (20 with CutMix, 4 with MixUp), batch mean, no T^2 factor (the authors' setting); AdamW without weight
decay on biases and norm parameters; learning-rate factor 0.5 (1 + cos(pi e / 2E)) (the authors'). Hard-label mode:
cross-entropy on the CutMix-mixed labels, no teacher. Without augmentation (`augment=False`, for DD-Ranking's
augmentation-robust score, docs/method.md §7): no crop, flip, CutMix or MixUp; the teacher's outputs on the
un-augmented batch are the targets, everything else as above.

The same code runs on the CPU and on a GPU. On a GPU the distilled set stays uint8 on the device (when it fits),
is augmented there in batches, and student and teacher run in bf16 autocast with channels_last. The validation
split is read from the HDF5 file that `prepare_val` writes once per dataset, one batch at a time; the distilled set is
held once, as uint8, and above `host_limit_bytes()` read from a uint8 HDF5 file one batch at a time: a job's peak host
memory does not grow with the validation split or (beyond that limit) with the distilled set.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import D3HRError
from .augment import cutmix, mixup, random_resized_crop_flip
from .compiling import Compile, compile_mode, compiled
from .device import Precision, use_bf16
from .nets import frozen_for_inference
from .valset import VAL_BATCH, labelled_files, val_batches


# channels_last on the CPU too: measured 1.5x faster training steps of the ConvNet student and 1.1x faster frozen
# teacher forwards at 32 px, batch 100, one thread (and the layout cuDNN prefers for bf16 on GPUs)
MEMORY_FORMAT = torch.channels_last


SCHEDULES = ("authors", "cosine")


def autocast_dtype(device, precision: str = "auto"):
    """The autocast dtype of the students' and the teacher's forward passes (weights and optimiser stay float32):
    "fp32" none; "bf16" bfloat16; "auto" bfloat16 where the hardware computes it natively (a CUDA GPU with bf16, a
    CPU with AVX512-BF16 or AMX: 1.7x the float32 student step on the reference CPU, docs/benchmarks.md), else none.
    The choice is recorded in each evaluation's JSON ("autocast")."""
    return torch.bfloat16 if use_bf16(torch.device(device), precision) else None


def lr_factor(progress: float, schedule: str = "authors") -> float:
    """The learning-rate factor at progress e / E. "authors": 0.5 (1 + cos(pi e / 2E)), from 1 down to 0.5 (their
    code); "cosine": 0.5 (1 + cos(pi e / E)), from 1 down to 0 (the common cosine decay)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}: one of {', '.join(SCHEDULES)}")
    return 0.5 * (1 + math.cos(math.pi * progress / (2 if schedule == "authors" else 1)))


def kd_loss(student_logits, teacher_logits, temperature: float):
    """KL(softmax(t / T) || softmax(s / T)), mean over the batch, without the T^2 factor."""
    return F.kl_div(F.log_softmax(student_logits / temperature, 1), F.softmax(teacher_logits / temperature, 1),
                    reduction="batchmean")


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


def optimizer(model, lr: float, weight_decay: float, fused: bool = False):
    """AdamW with weight decay on the weights only, not on biases and norm parameters (the authors' rule; timm's
    grouping of parameters with ndim <= 1)."""
    from timm.optim import param_groups_weight_decay

    return torch.optim.AdamW(param_groups_weight_decay(model, weight_decay), lr=lr, fused=fused or None)


# ---------------------------------------------------------------- data: the distilled set and the validation split


def host_limit_bytes() -> int:
    """Largest distilled set held in host memory; above it the set is read from a uint8 HDF5 file one batch at a time
    (environment D3HR_EVAL_HOST_MB, default 1024)."""
    return int(float(os.environ.get("D3HR_EVAL_HOST_MB", "1024")) * 2**20)


def _fits_on(device, nbytes: int) -> bool:
    """A uint8 set of `nbytes` is held on `device` (a GPU) when it takes less than 30% of its free memory."""
    return device is not None and device.type == "cuda" and nbytes < 0.3 * torch.cuda.mem_get_info(device)[0]


def _on_device(x_uint8, device):
    """`x_uint8` (numpy, HDF5 or tensor) copied into a uint8 tensor on `device` (a GPU) in slices, with no second host
    copy, when it fits there (`_fits_on`); else None."""
    if not _fits_on(device, int(np.prod(x_uint8.shape))):
        return None
    x = torch.empty(tuple(x_uint8.shape), dtype=torch.uint8, device=device)
    for i in range(0, len(x_uint8), 1024):
        x[i : i + 1024] = torch.as_tensor(np.asarray(x_uint8[i : i + 1024])).to(device)
    return x


def load_image_set(dirs, labels, resolution: int, channels: int, spill=None, device=None):
    """The images of one folder per class as uint8 NHWC, and int64 labels, read one batch of files at a time into
    one of: a uint8 tensor on `device` (a GPU, when the set fits there), a preallocated numpy array (when it fits
    `host_limit_bytes()` or no `spill` file is given), else the uint8 HDF5 file `spill`, returned as its open h5py
    dataset."""
    from .data import iter_image_batches

    files, ys = labelled_files(dirs, labels)
    shape = (len(files), resolution, resolution, channels)
    nbytes = int(np.prod(shape))
    if _fits_on(device, nbytes):
        x = torch.empty(shape, dtype=torch.uint8, device=device)
    elif nbytes <= host_limit_bytes() or spill is None:
        x = np.empty(shape, np.uint8)
    else:
        import h5py

        x = h5py.File(spill, "w").create_dataset("images", shape, np.uint8, chunks=(1, *shape[1:]))
    i = 0
    for _, batch in iter_image_batches(files, resolution, channels, 256):
        x[i : i + len(batch)] = torch.from_numpy(batch).to(device) if isinstance(x, torch.Tensor) else batch
        i += len(batch)
    return x, ys


# ---------------------------------------------------------------- training


def _model_input(x_uint8, device, memory_format):
    """uint8 NHWC tensor -> float NCHW in d3hr's [-1, 1] range (data.to_model_range) on `device`."""
    x = x_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x.contiguous(memory_format=memory_format)


class _Batches:
    """The distilled set, held once as uint8: on the GPU when it fits, else where it is (a numpy array, or an HDF5
    dataset read one batch at a time); sorted indices -> model-input batches."""

    def __init__(self, x_uint8, device, memory_format):
        self.device, self.memory_format = device, memory_format
        if isinstance(x_uint8, torch.Tensor):
            self.x = x_uint8
        else:
            self.x = _on_device(x_uint8, device)
            if self.x is None:
                self.x = torch.from_numpy(x_uint8) if isinstance(x_uint8, np.ndarray) else x_uint8
        self.where = ("device memory" if self.x.device.type == "cuda" else "host memory") \
            if isinstance(self.x, torch.Tensor) else "HDF5, one batch at a time"

    def __call__(self, idx):
        if isinstance(self.x, torch.Tensor):
            xb = self.x[idx.to(self.x.device)]
        else:  # HDF5: rows in increasing order
            xb = torch.from_numpy(self.x[idx.numpy()])
        return _model_input(xb, self.device, self.memory_format)


def _autocast(device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def val_on_device(val, device):
    """The validation split as (uint8 NHWC, int64 labels) tensors on `device` (a GPU) when it fits there (`_fits_on`),
    read once for all of a job's evaluations; else `val` itself (read one batch at a time by each evaluation)."""
    if device.type != "cuda" or (isinstance(val, tuple) and isinstance(val[0], torch.Tensor)):
        return val
    if isinstance(val, (str, Path)):
        from .h5io import open_h5

        with open_h5(val, "validation") as f:
            x = _on_device(f["images"], device)
            return val if x is None else (x, torch.as_tensor(f["labels"][:]).to(device))
    x = _on_device(val[0], device)
    return val if x is None else (x, torch.as_tensor(np.asarray(val[1])).to(device))


@torch.no_grad()
def topk_accuracy(model, val, ks=(1, 5), device="cpu", dtype=None):
    """Top-k accuracy of `model` on the validation split, one batch in memory at a time (autocast to `dtype`); the
    hits are counted where the model runs and read back once (no host synchronisation per batch)."""
    device = torch.device(device)
    model.eval()
    hits, n = dict.fromkeys(ks, 0), 0
    size = VAL_BATCH.get(device.type, 100)
    if isinstance(val, tuple) and isinstance(val[0], torch.Tensor):  # held on the device: val_on_device
        batches = ((val[0][i : i + size], val[1][i : i + size]) for i in range(0, len(val[1]), size))
    else:
        batches = ((torch.from_numpy(np.ascontiguousarray(xb)), torch.as_tensor(yb))
                   for xb, yb in val_batches(val, size))
    for xb, yb in batches:
        with _autocast(device, dtype):
            out = model(_model_input(xb, device, MEMORY_FORMAT)).float()
        top = out.topk(min(max(ks), out.shape[1]), 1).indices  # top-k with k >= classes: always a hit
        yy = yb.to(top.device, non_blocking=True).view(-1, 1)
        for k in ks:
            hits[k] += (top[:, :k] == yy).any(1).sum()
        n += len(yb)
    return {k: int(hits[k]) / n for k in ks}


def student_step(student, teacher, x, y, opt, gen, rng, mix, temperature, device, dtype=None, host_gen=None,
                 augment=True):
    """One optimiser step on the model-input batch `x`: RandomResizedCrop + flip, CutMix / MixUp, then KL to the
    teacher's outputs on the same batch (eq. 6.1) or, without a teacher, cross-entropy on the mixed labels `y`; the
    forward passes autocast to `dtype` (None: float32), the loss in float32. `gen` draws the crops and permutations on
    its device, `host_gen` (default `gen`) CutMix's box. `augment=False`: `x` as it is (no crop, flip or mix, nothing
    drawn), the teacher's outputs on it or cross-entropy on `y`."""
    student.train()
    if not augment:
        perm, lam = None, 1.0
    else:
        x = random_resized_crop_flip(x, gen)
        if mix == "cutmix":
            x, perm, lam = cutmix(x, gen, rng, host_gen=host_gen)
        else:
            x, perm, lam = mixup(x, gen, rng)
    with _autocast(device, dtype):
        out = student(x).float()
    if teacher is None:
        loss = F.cross_entropy(out, y) if perm is None else \
            lam * F.cross_entropy(out, y) + (1 - lam) * F.cross_entropy(out, y[perm])
    else:
        with torch.no_grad(), _autocast(device, dtype):
            target = teacher(x).float()  # soft labels on the same augmented batch
        loss = kd_loss(out, target, temperature)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train_student(student, teacher, x_train, y_train, val, steps, batch_size, lr, weight_decay, seed,
                  mix="cutmix", temperature=None, hard_label=False, epochs=None, n_evals=5, device="cpu",
                  schedule="authors", precision="auto", compile: Compile = "auto", augment=True):
    """Train `student` for `steps` steps over epochs of shuffled batches of the uint8 NHWC set `x_train`.

    With `epochs` (the authors' budget: steps = epochs x batches per epoch) the learning-rate factor changes once per
    epoch and the student is evaluated after each of the last min(9, epochs) epochs (the authors' count); without, the factor changes every
    step and the student is evaluated at `n_evals` points of the last 10% of the steps. Returns the final and the best
    of those evaluations. `precision`: the forward passes' autocast (`autocast_dtype`); `compile`: student and teacher
    under `torch.compile` (d3hr.compiling.compile_mode); `augment=False`: no crop, flip or mix (`student_step`).

    A step does not wait for the device: on a GPU the shuffles, crops and permutations are drawn by a generator on the
    GPU (CutMix's box by a CPU one), the set and the validation split are held there when they fit, and the losses and
    hits are read back once. On the CPU one generator draws everything, in the order of the earlier code."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    dtype = autocast_dtype(device, precision)
    fmt = MEMORY_FORMAT
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    torch.manual_seed(seed)
    host_gen = torch.Generator().manual_seed(seed)
    gen = host_gen if not cuda else torch.Generator(device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    T = temperature or (20.0 if mix == "cutmix" else 4.0)
    n = len(x_train)
    bs = max(1, min(batch_size, n))
    per_epoch = -(-n // bs)
    batches = _Batches(x_train, device, fmt)
    # the shuffles where the set is held: on the GPU, or on the host (and HDF5 rows read in increasing order)
    order_gen = gen if isinstance(batches.x, torch.Tensor) and batches.x.device == gen.device else host_gen
    y_all = torch.as_tensor(y_train).to(device)
    val = val_on_device(val, device)
    student = student.to(device, memory_format=fmt)
    opt = optimizer(student, lr, weight_decay, fused=cuda)
    work = steps * bs  # images through the student (and the teacher): what `auto` weighs compiling against
    net = compiled(student, device, compile, work, "student")  # the same parameters: `opt` steps them
    if epochs:  # after each epoch of index > epochs - 10: the authors' `epoch > 290` of 300, 9 evaluations
        eval_at = sorted({min(steps, per_epoch * (epochs - j)) - 1 for j in range(min(9, epochs))})
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor((i // per_epoch) / epochs, schedule))
    else:
        eval_at = sorted({steps - 1 - round(j * 0.1 * steps / max(1, n_evals - 1)) for j in range(n_evals)})
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i / steps, schedule))
    if hard_label:
        teacher = None
    elif teacher is not None:
        teacher = compiled(frozen_for_inference(teacher.to(device, memory_format=fmt), batches(torch.arange(bs))),
                           device, compile, work, "student")
    evals, losses = [], []
    t0 = time.time()
    for step in tqdm(range(steps), desc="train student", mininterval=10, file=sys.stderr):
        if step % per_epoch == 0:
            # a shuffled pass over the set, the last batch partial
            order = torch.randperm(n, generator=order_gen, device=order_gen.device)
        idx = order[(step % per_epoch) * bs : (step % per_epoch + 1) * bs].sort().values
        y = None if teacher is not None else y_all[idx.to(device)]
        loss = student_step(net, teacher, batches(idx), y, opt, gen, rng, mix, T, device, dtype, host_gen, augment)
        sched.step()
        losses.append(loss)
        if step in eval_at:
            acc = topk_accuracy(net, val, device=device, dtype=dtype)
            evals.append({"step": step + 1, "epoch": step // per_epoch + 1, "top1": acc[1], "top5": acc[5]})
    losses = torch.stack(losses).float().cpu().numpy()
    best = max(evals, key=lambda e: e["top1"])
    return {
        "top1": evals[-1]["top1"], "top5": evals[-1]["top5"],
        "top1_best_last": best["top1"], "best_step": best["step"], "evals": evals,
        "loss_first": float(np.mean(losses[: max(1, steps // 20)])), "loss_last": float(np.mean(losses[-max(1, steps // 20):])),
        "train_seconds": time.time() - t0, "temperature": T, "device": str(device),
        "autocast": "bf16" if dtype == torch.bfloat16 else "none", "precision": precision, "train_set": batches.where,
        "lr_base": lr, "batches_per_epoch": per_epoch, "schedule": schedule,
        "compile": compile_mode(device, compile, work, "student") or "eager", "augment": augment,
    }


def evaluate_set(class_dirs: list[str], val: str, labels: list[int], teacher: str, student: str, method: str, ipc: str,
                 seed: int, resolution: int, channels: int, epochs: int, steps: int, min_steps: int, batch_size: int,
                 lr: float,
                 weight_decay: float, schedule: Literal["authors", "cosine"], mix: Literal["cutmix", "mixup"],
                 temperature: float, precision: Precision, compile: Compile, builder: Literal["timm", "torchvision"],
                 device: Any, out: str, hard_label: bool = False, augment: bool = True) -> dict:
    """One evaluation (docs/method.md §6): a student trained on the images of `class_dirs` with the teacher's soft
    labels (or the class labels, `hard_label`), with the evaluation's augmentation (or without any, `augment` False:
    for the augmentation-robust score, docs/method.md §7), its top-1 on `val` -> JSON. `steps` > 0 replaces the
    `epochs` budget; `min_steps` is its floor (the epochs raised until the budget reaches it: `full` on a small
    dataset); `batch_size` 0 and `lr` 0 take the authors' rules; `temperature` 0 the mix's default."""
    import json
    import tempfile

    from .archs import student_lr
    from .h5io import atomic_output, open_h5, read_attrs, stage_code_version
    from .nets import create_classifier, load_classifier

    if len(class_dirs) != len(labels):
        raise D3HRError("--class-dirs and --labels must have one entry per class")
    lr = student_lr(student, lr)  # before any image is read: an unknown rate fails at once
    teacher_model, ck = load_classifier(teacher)
    if max(labels) >= ck["num_classes"]:
        raise D3HRError(f"{teacher}: the teacher has {ck['num_classes']} classes, but label {max(labels)} is used")
    with open_h5(val, "validation") as f:
        val_attrs = read_attrs(f)
    for key, want in (("resolution", resolution), ("channels", channels), ("labels", list(labels))):
        got = val_attrs.get(key)
        if (list(map(int, got)) if key == "labels" and got is not None else got) != want:
            raise D3HRError(f"{val}: the validation file has {key} {got}, this job {want}; rerun prepare-val")
    with tempfile.TemporaryDirectory(prefix="d3hr-eval-") as spill:  # a large set is streamed through a uint8 HDF5
        x, y = load_image_set(class_dirs, labels, resolution=resolution, channels=channels,
                              spill=Path(spill) / "train.h5", device=device)
        if len(x) == 0:
            raise D3HRError(f"no training images in {class_dirs[0]} and the other --class-dirs")
        # the 3x3-stem ("modified") variant for small images (CIFAR-style), the standard stem from 64 px up (ImageNet)
        model = create_classifier(student, num_classes=ck["num_classes"], in_chans=channels,
                                  small_input=resolution <= 64, resolution=resolution, seed=seed, builder=builder)
        n_train = len(x)
        batch_size = batch_size or authors_batch_size(ipc, len(labels), n_train)
        if not steps and budget_steps(n_train, batch_size, epochs) < min_steps:  # epochs scaled to the floor
            epochs = -(-min_steps // budget_steps(n_train, batch_size, 1))
        total = max(steps, min_steps) if steps else budget_steps(n_train, batch_size, epochs)
        try:
            res = train_student(model, None if hard_label else teacher_model, x, y, val, steps=total,
                                batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed, mix=mix,
                                temperature=temperature or None, hard_label=hard_label,
                                epochs=None if steps else epochs, device=device, schedule=schedule,
                                precision=precision, compile=compile, augment=augment)
        finally:
            if not isinstance(x, np.ndarray) and hasattr(x, "file"):
                x.file.close()
    res.update(method=method, ipc=ipc, student=student, seed=seed, n_train_images=n_train,
               n_val_images=int(val_attrs.get("n_images", 0)), steps=total, epochs=None if steps else epochs,
               min_steps=min_steps,
               batch_size=batch_size, lr=lr, weight_decay=weight_decay, mix=mix, hard_label=hard_label, augment=augment,
               builder=builder,
               teacher=str(teacher), teacher_arch=ck["arch"], val_crop=val_attrs.get("crop"),
               code_version=stage_code_version(__name__))
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(res, indent=1))
    print(f"[d3hr] {method} ipc {ipc} {student}{'' if augment else ' (no augmentation)'} seed {seed}: "
          f"top-1 {res['top1']:.4f} "
          f"(best of the last evaluations {res['top1_best_last']:.4f}) on {res['device']}", file=sys.stderr)
    return res
