"""`torch.compile` of the DiT and of the students (the config's `compile`; docs/benchmarks.md, "GPU stages near the
hardware's limit")."""

from __future__ import annotations

import os
import sys
from typing import Literal


COMPILES = ("auto", "never", "default", "reduce-overhead", "max-autotune-no-cudagraphs")
Compile = Literal["auto", "never", "default", "reduce-overhead", "max-autotune-no-cudagraphs"]


# `auto`'s break-even on a GPU, in images through the model (images x forwards: a DDIM step with guidance is two):
# a job with less work runs eagerly, because its compilation (paid once a job and batch shape) would cost more than
# it saves. ESTIMATES, not measurements (no GPU has measured them yet): the DiT-XL/2 forward eagerly 0.67 ms an image
# on an H200 (measured), compiled at the 55 % of peak that issue 33 aims for (0.44 ms), against about 10 s of Dynamo
# and a warm inductor cache per job: 10 s / 0.23 ms = about 45,000; the ResNet-18 student step 7,650 img/s eagerly and
# 8,721 compiled (measured), about 30 s to compile its training step and the teacher: about 2 M. An ImageNet invert
# job (1,281 images x 39 steps x 2 = 100,000) and its students (3 M and 15 M images) compile; a decode job (one class:
# 10 or 50 images x 31 steps x 2 = 620-3,100) and a timestep-ablation job do not. `bench/gpu_stages.py` prints the
# measured break-even of the DiT in this unit, `bench/eval_throughput.py` a student's compilation time; `compile:
# default` compiles whatever the work.
AUTO_MIN_WORK = {"dit": 45_000, "student": 2_000_000}


def dit_work(images: int, steps: int, guidance: float) -> int:
    """Images through the DiT in a job: each DDIM step is one forward, two with classifier-free guidance."""
    return int(images) * int(steps) * (1 if float(guidance) == 1.0 else 2)


def compile_mode(device, setting: str, work: int | None = None, kind: str = "dit") -> str | None:
    """The `torch.compile` mode of the DiT and the students under the config's `compile` (None: eager). "auto": the
    default mode (inductor's fused kernels) on a CUDA GPU when the job's `work` (images x forwards of this `kind` of
    model; None: unknown, compile) reaches AUTO_MIN_WORK, else eager, and eager on the CPU, where a job's compilation
    costs more than it saves (docs/benchmarks.md); "never": eager; else that mode on any device whatever the work
    ("reduce-overhead" adds CUDA graphs)."""
    if setting not in COMPILES:
        raise ValueError(f"unknown compile setting {setting!r}: one of {', '.join(COMPILES)}")
    if setting == "auto":
        if device.type != "cuda":
            return None
        return "default" if work is None or work >= AUTO_MIN_WORK[kind] else None
    return None if setting == "never" else setting


def compiled(model, device, setting: str, work: int | None = None, kind: str = "dit"):
    """`model` compiled under `compile_mode` (static shapes: each batch shape it is called with gets its own graph; the
    inversion calls it with its full batches only), or `model` itself. A graph that fails to compile runs eagerly, with torch's warning in the log
    (Dynamo's `suppress_errors`): compilation makes a job faster, never makes it fail. D3HR_COMPILE_STRICT=1 in the
    environment raises instead (the tests)."""
    import torch

    mode = compile_mode(torch.device(device), setting, work, kind)
    if mode is None and setting == "auto" and torch.device(device).type == "cuda":
        print(f"[d3hr] compile auto: {type(model).__name__} runs eagerly ({work:,} images through it, below the "
              f"{AUTO_MIN_WORK[kind]:,} where compiling would pay)", file=sys.stderr, flush=True)
    if mode is None or isinstance(model, torch.jit.ScriptModule):  # a frozen TorchScript teacher (CPU) stays as it is
        return model
    import torch._dynamo

    torch._dynamo.config.suppress_errors = os.environ.get("D3HR_COMPILE_STRICT") != "1"
    print(f"[d3hr] torch.compile ({mode}) of {type(model).__name__}: the first batch of each shape compiles",
          file=sys.stderr, flush=True)
    return torch.compile(model, mode=mode, dynamic=False)
