"""d3hr/patches.py: what the job server takes of other libraries' private internals. Each test fails when the library
no longer behaves as the patch relies on (a new pin in constraints.txt: run these first). CPU only, a few seconds."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from d3hr import patches


def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def _cuda_build():
    if torch.version.cuda is None:
        pytest.skip("a CPU-only build of torch: it has no CUDA query, and the patches leave it alone")


def test_the_module_imports_neither_torch_nor_diffusers():
    p = _python("import sys, d3hr.patches; print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))")
    assert p.returncode == 0 and p.stdout.split() == ["[]"], p.stderr[-2000:]


def test_torch_asks_for_cuda_devices_through_the_query_held_off(monkeypatch):
    """`torch.cuda.is_available()`, and `torch.accelerator.is_available()` (what diffusers calls on import), consult
    `torch._C._cuda_getDeviceCount` at each call; within `cuda_query_held_off` they do not reach it and answer no
    CUDA; after it, the binding is the one before."""
    _cuda_build()
    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)
    asked = []

    def four_gpus():
        asked.append(1)
        return 4

    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", four_gpus)
    assert torch.cuda.is_available() and torch.accelerator.is_available() and len(asked) == 2
    with patches.cuda_query_held_off():
        assert not torch.cuda.is_available() and not torch.accelerator.is_available()
    assert len(asked) == 2 and torch._C._cuda_getDeviceCount is four_gpus


def test_torch_marks_a_fork_after_a_cuda_query_as_bad():
    """What the query held off would do, and what `cuda_fork_poisoned` reads (torch.cuda._is_in_bad_fork): a child
    forked after the real query may not use CUDA, the process itself may."""
    _cuda_build()
    assert torch.cuda._is_in_bad_fork is torch._C._cuda_isInBadFork
    torch._C._cuda_getDeviceCount()  # the real query (0 on a machine without a GPU): this process's forks are bad
    assert patches.cuda_fork_poisoned() is False
    pid = os.fork()
    if pid == 0:
        os._exit(3 if patches.cuda_fork_poisoned() else 4)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3


@pytest.fixture
def torch_utils():
    """diffusers.utils.torch_utils; afterwards its device type as it was (detected afresh when next asked)."""
    tu = importlib.import_module("diffusers.utils.torch_utils")
    before = getattr(tu, "torch_device", None)
    yield tu
    tu.TorchDeviceBackend._detect_device_type.cache_clear()
    tu.torch_device = before


def test_diffusers_caches_its_device_type_where_the_patch_forgets_it(torch_utils, monkeypatch):
    """diffusers detects the device type once (through `torch.accelerator`), caches it in
    `TorchDeviceBackend._detect_device_type` and copies it into `torch_device` on import; a GPU that torch shows
    only later (in the server's fork) is seen after `redetect_diffusers_device`, and only then."""
    tu = torch_utils
    detect = tu.TorchDeviceBackend._detect_device_type
    assert hasattr(detect, "cache_clear") and hasattr(tu, "torch_device")
    asked = []
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: asked.append(1) or False)
    detect.cache_clear()
    assert tu.get_device() == "cpu" and tu.get_device() == "cpu" and len(asked) == 1  # cached after one question
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)  # a GPU appears (the query no longer held off)
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *a, **k: torch.device("cuda"))
    assert tu.get_device() == "cpu"  # the stale answer the patch is for
    patches.redetect_diffusers_device()
    assert tu.get_device() == "cuda" and tu.torch_device == "cuda"
    assert tu.TorchDeviceBackend().device == torch.device("cuda")


def test_a_fork_forgets_the_servers_exit_handlers_and_runs_its_own():
    """`atexit._clear` drops the handlers registered so far; `weakref.finalize._registered_with_atexit` is the flag
    that makes a finalizer register weakref's exit function (set by the first one, reset by the patch, so that a
    job's finalizers run); `atexit._run_exitfuncs` runs the handlers, last registered first. In a process of its own:
    the patch clears this interpreter's handlers."""
    p = _python("""
import atexit, os, sys, weakref
from d3hr import patches

class Obj:
    pass

a, b = Obj(), Obj()
atexit.register(print, "server handler")
weakref.finalize(a, print, "server finalizer").detach()
assert weakref.finalize._registered_with_atexit is True
patches.forget_exit_handlers()
atexit.register(print, "job handler")
weakref.finalize(b, print, "job finalizer")
patches.run_exit_handlers()
sys.stdout.flush()
os._exit(0)
""")
    assert p.returncode == 0 and p.stdout.splitlines() == ["job finalizer", "job handler"], p.stdout + p.stderr[-2000:]
