"""Benchmark: group sampling's numpy path (the CPU reference) against its torch path on the best device here (CUDA if
present, else torch on the CPU), in one process, on an ImageNet-size class (d = 4,096: 4 x 32 x 32 latents).

Both select the best of m groups of IPC latents with d3hr.group_sampling.select_group and its defaults (chunks of
10,000 groups; numpy: 8 MiB sub-chunks on --threads threads; torch: 1 GiB sub-chunks on CUDA, 8 MiB on the CPU). The
two paths draw different candidates (different generators), so their winners differ; their scores are of the same
size (printed). Prints seconds, groups/s and the ratio numpy / torch per IPC, and appends the rates as JSON lines to
--rates-out (stage, device, sampler, ipc, d, m, seconds, groups_per_s).

    python bench/group_sampling_device.py                                 # m = 100,000, IPC 10 and 50
    python bench/group_sampling_device.py --m 2000 --rates-out rates.jsonl  # a quick check on a CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from d3hr.group_sampling import Weights, sampler_name, select_group  # noqa: E402


def device_name(device) -> str:
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # Linux: the CPU's model name
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "cpu"


def timed(fn, device, repeats, warm_up=None):
    """Best of `repeats` wall times of fn(), after warm_up() (untimed: CUDA context, kernels, allocator), and its
    result."""
    if warm_up is not None:
        warm_up()
    best, out = float("inf"), None
    for _ in range(repeats):
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()  # select_group returns host arrays: the device's work is done when it returns
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--ipc", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--threads", type=int, default=2, help="numpy path's threads, and torch's CPU threads")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="the torch path's device")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per path (best of)")
    ap.add_argument("--rates-out", default=None, help="append the measured rates to this file as JSON lines")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu")
    rng = np.random.default_rng(0)
    mu = rng.normal(size=a.d).astype(np.float32)
    var = rng.uniform(0.5, 1.5, size=a.d).astype(np.float32)
    w = Weights()
    print(f"group sampling: m={a.m:,}, d={a.d}, numpy on {a.threads} threads ({device_name(None)}) vs "
          f"torch {torch.__version__} on {dev} ({device_name(dev)})")
    print(f"{'IPC':>4} {'numpy s':>9} {'groups/s':>10} {'torch s':>9} {'groups/s':>10} {'numpy/torch':>11} "
          f"{'numpy score':>11} {'torch score':>11}")
    rows = []
    for ipc in a.ipc:
        run = lambda device, m: select_group(mu, var, ipc, m, 0, key=("bench",), weights=w, threads=a.threads,
                                             device=device)
        t_np, s_np = timed(lambda: run(None, a.m), None, a.repeats)
        t_pt, s_pt = timed(lambda: run(dev, a.m), dev, a.repeats, warm_up=lambda: run(dev, min(a.m, 20_000)))
        print(f"{ipc:>4} {t_np:>9.2f} {a.m / t_np:>10,.0f} {t_pt:>9.3f} {a.m / t_pt:>10,.0f} {t_np / t_pt:>10.2f}x "
              f"{s_np.score:>11.3f} {s_pt.score:>11.3f}")
        for device, t in ((None, t_np), (dev, t_pt)):
            rows.append({"stage": "select", "device": device_name(device), "sampler": sampler_name(device),
                         "threads": a.threads, "ipc": ipc, "d": a.d, "m": a.m, "seconds": round(t, 4),
                         "groups_per_s": round(a.m / t, 1)})
    if a.rates_out:
        from rates import append_rate

        for r in rows:
            append_rate(a.rates_out, "select", r["groups_per_s"], "groups/s", r["device"],
                        "python bench/group_sampling_device.py " + " ".join(sys.argv[1:]),
                        **{k: v for k, v in r.items() if k not in ("stage", "device", "groups_per_s")})
        print(f"rates -> {a.rates_out}")


if __name__ == "__main__":
    main()
