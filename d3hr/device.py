"""One GPU per job (docs/scaling.md). Snakemake's `--resources gpu=N` only counts jobs; it never says which device is whose.

A job takes a lease on one device: an exclusive `flock` on `.snakemake/gpu-locks/gpu{id}.lock`, held until the
process exits (the kernel releases it even on SIGKILL). Devices are those in CUDA_VISIBLE_DEVICES (or all), so
N concurrent jobs on N devices never share one; more jobs than devices wait for a free one. Under SLURM (a job
with CUDA_VISIBLE_DEVICES set by the scheduler) the allocation is already exclusive: no lock is taken. Without
CUDA the job runs on the CPU and says so in its log.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Literal

_HELD = []  # open lock files, kept for the life of the process


def _log(msg):
    print(f"[d3hr] {msg}", file=sys.stderr, flush=True)


def lease(device_ids, lock_dir=".snakemake/gpu-locks", poll=1.0, timeout=None) -> int:
    """Take an exclusive lease on one of `device_ids`; returns its index in the list. Blocks until one is free."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    waited = False
    while True:
        for i, dev in enumerate(device_ids):
            fh = open(lock_dir / f"gpu{dev}.lock", "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            _HELD.append(fh)
            return i
        if timeout is not None and time.time() - t0 > timeout:
            raise TimeoutError(f"no free device among {list(device_ids)} after {timeout} s")
        if not waited:
            _log(f"all {len(device_ids)} devices are leased by other jobs: waiting for one")
            waited = True
        time.sleep(poll)


def release_all():
    while _HELD:
        fh = _HELD.pop()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def visible_device_ids(count: int) -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [s.strip() for s in env.split(",") if s.strip()] if env else [str(i) for i in range(count)]
    return ids[:count]


def pick_device(prefer: str = "auto", lock_dir=".snakemake/gpu-locks"):
    """The torch device of this job: a leased GPU, or the CPU (with a log line)."""
    import torch

    if prefer == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if prefer == "cuda":
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
        _log("no CUDA device: running on the CPU")
        return torch.device("cpu")
    n = torch.cuda.device_count()
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("CUDA_VISIBLE_DEVICES"):
        _log(f"SLURM allocation: using cuda:0 of CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}")
        return torch.device("cuda:0")
    ids = visible_device_ids(n)
    i = lease(ids, lock_dir)
    _log(f"leased GPU {ids[i]} (cuda:{i} of {n})")
    return torch.device(f"cuda:{i}")


PRECISIONS = ("auto", "fp32", "bf16")
Precision = Literal["auto", "fp32", "bf16"]


def native_bf16(device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def use_bf16(device, precision: str) -> bool:
    """The one rule for every precision setting: "bf16" always, "auto" where `device` computes bf16 natively (GPUs; on
    the reference CPU a DiT forward takes half the time, with the same inversion round-trip error and teacher top-1
    on samples, docs/benchmarks.md), "fp32" never."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


def model_dtype(device, precision: str):
    """The dtype of the VAE's and the DiT's weights (the DDIM arithmetic stays in float32) under `model_precision`."""
    import torch

    return torch.bfloat16 if use_bf16(torch.device(device), precision) else torch.float32
