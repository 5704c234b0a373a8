"""Benchmark: group sampling (d3hr.group_sampling) against a straightforward implementation, in one process.

The reference materialises each chunk of 10,000 groups as one float32 tensor z = mu + sigma * randn(10000, n, d)
and computes mean, std and skew over it with plain tensor ops, as the authors' code does. Both draw their numbers
from the same per-chunk generators, so both must choose the same group (checked). Prints time and peak memory
(resident set size above the baseline, sampled every 2 ms) and the ratios reference / ours.

    python bench/group_sampling.py                # m = 100,000, d = 4096, IPC 10 and 50
    python bench/group_sampling.py --m 20000 --ipc 10
    python bench/group_sampling.py --draws --d 256 --ipc 1 10 50   # normals and scores per sub-chunk
"""

from __future__ import annotations

import argparse
import gc
import math
import threading
import time

import numpy as np
import psutil
import torch

from d3hr.seeds import derive_seed
from d3hr.group_sampling import Weights, group_scores, select_group, standard_normal


class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread."""

    def __enter__(self):
        self.proc = psutil.Process()
        gc.collect()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = False
        self.t = threading.Thread(target=self._poll, daemon=True)
        self.t.start()
        return self

    def _poll(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()
        self.mb = (self.peak - self.base) / 2**20


def reference(mu, var, ipc, m, seed, key, w: Weights, chunk_groups=10_000, batch=10_000):
    """The straightforward version: a float32 tensor of `batch` whole groups at a time."""
    mu_t = torch.from_numpy(mu)
    sigma = torch.from_numpy(np.sqrt(var).astype(np.float32))
    best = (math.inf, None)
    for c in range(math.ceil(m / chunk_groups)):
        g = np.random.Generator(np.random.PCG64(derive_seed(seed, "select", *key, ipc, c)))
        size = min(chunk_groups, m - c * chunk_groups)
        for s0 in range(0, size, batch):
            e = torch.from_numpy(standard_normal(g, min(batch, size - s0), ipc, mu.size))  # the same draws as ours
            z = e * sigma + mu_t
            mean = z.mean(1)
            std = z.std(1)
            skew = (((z - mean[:, None]) / std[:, None]) ** 3).mean(1)
            score = w.mu * (mean - mu_t).norm(dim=1) + w.sigma * (std - sigma).norm(dim=1) + w.skew * skew.norm(dim=1)
            j = int(score.argmin())
            if float(score[j]) < best[0]:
                best = (float(score[j]), z[j].clone())
            del z, mean, std, skew, score
    return best


def draws_and_scores(d, ipcs, reps=10):
    """Per sub-chunk of 8 MB: numpy's float32 ziggurat against ours (Box-Muller), and the scores of a standardised
    copy of the deviations cubed (the code before session 13) against ours (cubes in place of the squares)."""
    w = Weights()
    sigma = np.ones(d, np.float32)

    def centred(e):
        n = e.shape[1]
        mean = e.mean(1)
        dev = e - mean[:, None, :]
        std = np.sqrt(np.square(dev).sum(1) / (n - 1))
        cubes = dev * (1.0 / std)[:, None, :]
        return (w.mu * np.linalg.norm(mean * sigma, axis=1) + w.sigma * np.linalg.norm((std - 1.0) * sigma, axis=1)
                + w.skew * np.linalg.norm((cubes * cubes * cubes).mean(1), axis=1))

    def per_call(f):
        f()
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        return (time.perf_counter() - t0) / reps * 1e3

    print(f"per sub-chunk of 8 MB, d={d}, one thread: draws and scores (ms)")
    print(f"{'IPC':>4} {'groups':>7} {'ziggurat':>9} {'ours':>7} {'ratio':>6} {'cubed':>8} {'ours':>7} {'ratio':>6} {'max |diff|':>10}")
    for ipc in ipcs:
        g = max(1, (8 << 20) // (ipc * d * 4))
        gen = np.random.Generator(np.random.PCG64(0))
        e = standard_normal(gen, g, ipc, d)
        tz = per_call(lambda: gen.standard_normal((g, ipc, d), dtype=np.float32))
        tb = per_call(lambda: standard_normal(gen, g, ipc, d))
        tc = per_call(lambda: centred(e)) if ipc > 1 else float("nan")
        to = per_call(lambda: group_scores(e, sigma, w))
        diff = float(np.abs(centred(e) - group_scores(e, sigma, w)).max()) if ipc > 1 else 0.0
        print(f"{ipc:>4} {g:>7} {tz:>9.1f} {tb:>7.1f} {tz / tb:>5.2f}x {tc:>8.1f} {to:>7.1f} {tc / to:>5.2f}x {diff:>10.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--ipc", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ours-only", action="store_true", help="time only d3hr's select (no reference run)")
    ap.add_argument("--draws", action="store_true", help="only the per-sub-chunk timing of draws and scores")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.draws:
        return draws_and_scores(a.d, a.ipc)
    rng = np.random.default_rng(0)
    mu = rng.normal(size=a.d).astype(np.float32)
    var = rng.uniform(0.5, 1.5, size=a.d).astype(np.float32)
    w = Weights()
    avail = psutil.virtual_memory().available
    print(f"group sampling: m={a.m:,}, d={a.d}, {a.threads} threads, torch {torch.__version__}, {psutil.cpu_count()} CPUs")
    print(f"{'IPC':>4} {'ref s':>8} {'ours s':>8} {'speed-up':>9} {'ref MB':>8} {'ours MB':>8} {'mem ratio':>9}  same group  ref batch")
    for ipc in a.ipc:
        batch = 10_000
        while 4 * batch * ipc * a.d * 4 > 0.7 * avail and batch > 100:  # z and three temporaries must fit
            batch //= 2
        with PeakRSS() as mo:
            t0 = time.perf_counter()
            sel = select_group(mu, var, ipc, a.m, 0, key=("bench",), weights=w, threads=a.threads)
            t_ours = time.perf_counter() - t0
        if a.ours_only:
            print(f"{ipc:>4} {'-':>8} {t_ours:>8.1f} {'-':>9} {'-':>8} {mo.mb:>8.0f}")
            continue
        with PeakRSS() as mr:
            t0 = time.perf_counter()
            ref_score, ref_z = reference(mu, var, ipc, a.m, 0, ("bench",), w, batch=batch)
            t_ref = time.perf_counter() - t0
        same = np.allclose(sel.latents, ref_z.numpy(), atol=1e-5) and abs(sel.score - ref_score) < 1e-3 * ref_score
        print(f"{ipc:>4} {t_ref:>8.1f} {t_ours:>8.1f} {t_ref / t_ours:>8.2f}x {mr.mb:>8.0f} {mo.mb:>8.0f} {mr.mb / max(mo.mb, 1):>8.1f}x"
              f"  {'yes' if same else 'NO'}  {batch:,}{'' if batch == 10_000 else ' (10,000 does not fit in memory)'}")


if __name__ == "__main__":
    main()
