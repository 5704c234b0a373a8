"""`torch.compile` of the DiT and of the students (the config's `compile`; docs/benchmarks.md, "GPU stages near the
hardware's limit")."""

from __future__ import annotations

import os
import sys
from typing import Literal


COMPILES = ("auto", "never", "default", "reduce-overhead", "max-autotune-no-cudagraphs")
Compile = Literal["auto", "never", "default", "reduce-overhead", "max-autotune-no-cudagraphs"]


def compile_mode(device, setting: str) -> str | None:
    """The `torch.compile` mode of the DiT and the students under the config's `compile` (None: eager). "auto": the
    default mode (inductor's fused kernels) on a CUDA GPU, eager on the CPU, where a job's compilation costs more than
    it saves (docs/benchmarks.md); "never": eager; else that mode on any device ("reduce-overhead" adds CUDA graphs)."""
    if setting not in COMPILES:
        raise ValueError(f"unknown compile setting {setting!r}: one of {', '.join(COMPILES)}")
    if setting == "auto":
        return "default" if device.type == "cuda" else None
    return None if setting == "never" else setting


def compiled(model, device, setting: str):
    """`model` compiled under `compile_mode` (static shapes: a job's full batches and its one partial batch each get
    their own graph), or `model` itself. A graph that fails to compile runs eagerly, with torch's warning in the log
    (Dynamo's `suppress_errors`): compilation makes a job faster, never makes it fail. D3HR_COMPILE_STRICT=1 in the
    environment raises instead (the tests)."""
    import torch

    mode = compile_mode(torch.device(device), setting)
    if mode is None or isinstance(model, torch.jit.ScriptModule):  # a frozen TorchScript teacher (CPU) stays as it is
        return model
    import torch._dynamo

    torch._dynamo.config.suppress_errors = os.environ.get("D3HR_COMPILE_STRICT") != "1"
    print(f"[d3hr] torch.compile ({mode}) of {type(model).__name__}: the first batch of each shape compiles",
          file=sys.stderr, flush=True)
    return torch.compile(model, mode=mode, dynamic=False)
