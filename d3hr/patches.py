"""Every place where d3hr reaches into another library's private internals: one function per patch, all used by the
job server (d3hr/jobserver.py), which forks a job's process from a server that has already imported torch & co.

A fork inherits what the server's imports left behind and what a new process would not have: a CUDA query that bars
the fork from the GPU, a device type cached while that query was held off, the server's exit handlers. Each function
below names the internal it touches, why public API does not do, and the versions it was checked against;
tests/test_patches.py fails when a library no longer behaves as relied on here (run it after changing a pin in
constraints.txt). Nothing here imports torch or diffusers at import time.

Checked against: CPython 3.11.7, torch 2.14.1, diffusers 0.42.1 (the pins of constraints.txt).
"""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def cuda_query_held_off():
    """Within the block, torch answers "0 CUDA devices" without asking the driver.

    Touches `torch._C._cuda_getDeviceCount`, the binding that `torch.cuda.is_available()` calls (unless
    PYTORCH_NVML_BASED_CUDA_CHECK=1) and so also `torch.accelerator.is_available()`; diffusers calls the latter on
    import (`diffusers.utils.torch_utils`, see `redetect_diffusers_device`). Why: the real query initialises the CUDA
    driver, and torch then marks every later fork of the process as unable to use CUDA (`cuda_fork_poisoned`); the
    server imports diffusers before it forks its jobs, each of which picks its own GPU. Replaced for the block only,
    restored after it. A CPU-only build of torch has no such binding and nothing to hold off.
    Checked against torch 2.14.1 (torch/cuda/__init__.py: `_is_compiled`, `is_available`)."""
    import torch

    query = getattr(torch._C, "_cuda_getDeviceCount", None)
    if query is None:
        yield
        return
    torch._C._cuda_getDeviceCount = lambda: 0
    try:
        yield
    finally:
        torch._C._cuda_getDeviceCount = query


def cuda_fork_poisoned() -> bool:
    """Whether this process may not initialise CUDA because its parent had (torch's "bad fork").

    Reads `torch.cuda._is_in_bad_fork` (bound to `torch._C._cuda_isInBadFork` in a CUDA build, `lambda: False`
    otherwise). Why: no public API tells a forked child that a later `torch.cuda` call would fail; the server checks
    after its imports whether a fork of it could still use CUDA, and refuses to serve jobs if not.
    Checked against torch 2.14.1 (torch/cuda/__init__.py)."""
    import torch

    return bool(torch.cuda._is_in_bad_fork())


def redetect_diffusers_device():
    """In a forked job: make diffusers detect the device type afresh, as it would in a new process.

    Touches `diffusers.utils.torch_utils`: clears the `functools.lru_cache` of
    `TorchDeviceBackend._detect_device_type` (what `get_device()` returns) and recomputes the module's `torch_device`,
    set from it on import. Why: the server imported diffusers while the CUDA query was held off
    (`cuda_query_held_off`), so the cached answer is "cpu" even on a GPU machine. Nothing to do if diffusers was not
    imported or no longer has this cache. (`diffusers.pipelines.pipeline_utils.SUPPORTED_DEVICE_MAP`, also computed on
    import, only checks a pipeline's `device_map`, which d3hr never passes: left as it is.)
    Checked against diffusers 0.42.1 (diffusers/utils/torch_utils.py)."""
    tu = sys.modules.get("diffusers.utils.torch_utils")
    detect = getattr(getattr(tu, "TorchDeviceBackend", None), "_detect_device_type", None)
    if detect is not None and hasattr(detect, "cache_clear"):
        detect.cache_clear()
        if hasattr(tu, "torch_device"):
            tu.torch_device = tu.get_device()


def forget_exit_handlers():
    """In a forked job: drop the exit handlers inherited from the server, as a new process has none.

    Touches `atexit._clear()` (CPython's module, undocumented) and `weakref.finalize._registered_with_atexit`, the
    class flag that says `weakref.finalize._exitfunc` is registered with atexit; reset to False, so that the job's first
    finalizer registers it again. Why: atexit has no public way to remove handlers one did not register oneself (the
    server's imports registered them); they would otherwise run at the end of every job (`run_exit_handlers`).
    Checked against CPython 3.11.7 (Modules/atexitmodule.c, Lib/weakref.py)."""
    import atexit
    import weakref

    atexit._clear()
    weakref.finalize._registered_with_atexit = False


def run_exit_handlers():
    """In a forked job, at its end: run its exit handlers as the interpreter does at the end of a process.

    Calls `atexit._run_exitfuncs()` (CPython's module, undocumented). Why: the job's process leaves with `os._exit`
    (no interpreter shutdown in a fork), which runs no handler; the job's own (`atexit.register`, weakref finalizers)
    must run, last registered first.
    Checked against CPython 3.11.7 (Modules/atexitmodule.c)."""
    import atexit

    atexit._run_exitfuncs()


def serve_pretrained(models: dict):
    """In a forked job: diffusers' `ModelMixin.from_pretrained(dir, subfolder=...)` of a model the server holds
    (`models`: (absolute dir, subfolder) -> the float32 model on the CPU, d3hr/jobserver.py `cache_models`) returns
    that model, cast to the asked `torch_dtype`, instead of reading its files again; each held model is handed out
    once (a second call reads the files), and any other call goes to diffusers unchanged.

    Replaces the classmethod `diffusers.models.modeling_utils.ModelMixin.from_pretrained` in the job's process. Why:
    a forked job re-imports d3hr, whose `load_ldm` calls from_pretrained; the job's code stays the same whether it
    runs in a process of its own or in the server, and no stage's code version changes. The cast is the one
    from_pretrained does: `Tensor.to(dtype)` of the float32 parameters and persistent buffers, while non-persistent
    buffers keep the dtype the model's constructor gave them (DiT's `pos_embed.pos_embed` stays float32 under
    `from_pretrained(torch_dtype=bfloat16)`; a plain `.to(bfloat16)` rounded it, and served bf16 jobs decoded other
    bytes than jobs of their own: tests/test_patches.py). So the job gets the same model either way. Checked against
    diffusers 0.42.1 (diffusers/models/modeling_utils.py)."""
    import os

    import torch
    from diffusers.models.modeling_utils import ModelMixin

    if not models:
        return
    original = ModelMixin.from_pretrained.__func__
    models = dict(models)

    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        key = (os.path.normpath(os.path.abspath(str(pretrained_model_name_or_path))), kwargs.get("subfolder"))
        held = models.get(key)
        if held is None or args or type(held) is not cls or set(kwargs) - {"subfolder", "local_files_only", "torch_dtype"}:
            return original(cls, pretrained_model_name_or_path, *args, **kwargs)
        del models[key]
        print(f"[d3hr] {key[0]}/{key[1]} from the job server's memory", file=sys.stderr, flush=True)
        return cast_like_from_pretrained(held, kwargs.get("torch_dtype") or torch.float32)

    ModelMixin.from_pretrained = classmethod(from_pretrained)


def cast_like_from_pretrained(model, dtype):
    """`model.to(dtype)` as diffusers' from_pretrained(torch_dtype=dtype) leaves it: parameters and persistent buffers
    cast, non-persistent buffers (computed by the constructor, not loaded) as they were. In place; returns model."""
    keep = [(mod, name, mod._buffers[name]) for mod in model.modules() for name in mod._non_persistent_buffers_set
            if mod._buffers.get(name) is not None]
    model.to(dtype)
    for mod, name, buf in keep:
        mod._buffers[name] = buf
    return model
