"""Stage 4: group sampling (docs/method.md §4).

Draw m candidate groups G of n = IPC latents z ~ N(mu, diag sigma^2) and keep the group minimising
    L(G) = l_mu ||mean(G) - mu||_2 + l_sigma ||std(G) - sigma||_2 + l_skew ||skew(G)||_2.

Each group is drawn as z = mu + sigma * e with e ~ N(0, I), so that mean(G) - mu = sigma * mean(e),
std(G) = sigma * std(e) and skew(G) = skew(e): the score is computed on e alone, and only the winner is mapped
back to latent space. Groups are drawn in chunks (one seed per chunk, derived from the seed, class, IPC and chunk
index) and each chunk in sub-chunks of bounded size, so memory does not grow with m; chunks run on a thread pool
and the result does not depend on the number of threads. Plain numpy (PCG64 generators, Box-Muller normals, float32):
the job imports no torch.

Definitions: std is the unbiased (n - 1) standard deviation, as in the Gaussian fit. skew_mode 'paper': per
dimension, mean over the n members of ((z - mean) / std)^3, norm over the d dimensions. skew_mode 'code' (the
authors' code): per member, mean over the d dimensions of the same standardised cubes, norm over the n members.
IPC = 1: std and skew are undefined, the score is the mean term alone.
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from . import D3HRError
from .h5io import atomic_output, open_h5, provenance, read_attrs, write_h5
from .seeds import derive_seed


@dataclass(frozen=True)
class Weights:
    mu: float = 1.0
    sigma: float = 1.0
    skew: float = 0.5  # paper; the authors' code uses 0.1


def group_scores(e: np.ndarray, sigma: np.ndarray, w: Weights, skew_mode: str = "paper") -> np.ndarray:
    """Scores L(G) of g groups of standardised draws e (g x n x d), for a Gaussian with per-dimension std sigma (d).

    Central sums over the n members, dev = e - mean: std = sqrt(sum dev^2 / (n - 1)), paper skew = mean(dev^3) / std^3
    (the cubes in place of the squares, without a standardised copy of e)."""
    g, n, d = e.shape
    if skew_mode not in ("paper", "code"):
        raise ValueError(f"skew_mode must be 'paper' or 'code', got {skew_mode!r}")
    mean = e.mean(1)
    score = w.mu * np.linalg.norm(mean * sigma, axis=1)  # ||mean(G) - mu||_2  (eq. 4.1, first term)
    if n == 1:
        return score
    dev = e - mean[:, None, :]
    pw = dev * dev
    std = np.sqrt(pw.sum(1) * np.float32(1.0 / (n - 1)))
    score += w.sigma * np.linalg.norm((std - 1.0) * sigma, axis=1)  # ||std(G) - sigma||_2  (eq. 4.1, second term)
    if w.skew:
        if skew_mode == "paper":  # per dimension, over the n members
            np.multiply(pw, dev, out=pw)
            skew = pw.sum(1) * np.float32(1.0 / n) / (std * std * std)
        else:  # per member, over the d dimensions (the authors' code)
            cubes = dev * (1.0 / std)[:, None, :]
            skew = (cubes * cubes * cubes).mean(2)  # products: numpy's float ** 3 is ten times slower
        score += w.skew * np.linalg.norm(skew, axis=1)  # ||skew(G)||_2  (eq. 4.1, third term)
    return score


_TWO_PI = np.float32(2 * np.pi)


def standard_normal(gen: np.random.Generator, groups: int, n: int, d: int) -> np.ndarray:
    """groups x n x d float32 N(0, 1) draws: the Box-Muller transform of float32 uniforms, within each group (its
    first half of uniforms gives radii, its second half angles), so the stream does not depend on how many groups a
    call draws. 1.4-2.6x numpy's float32 ziggurat at IPC 10 and 50 on the reference CPU (docs/benchmarks.md); |e| <= 5.77
    (24-bit uniforms)."""
    k = n * d
    h = (k + 1) // 2
    u = gen.random((groups, 2 * h), dtype=np.float32)
    r = np.log1p(-u[:, :h])  # log(1 - u), 1 - u in (0, 1]
    r *= -2.0
    np.sqrt(r, out=r)  # r = sqrt(-2 log u1)
    a = u[:, h:]
    a *= _TWO_PI
    z = np.empty((groups, 2 * h), dtype=np.float32)
    np.cos(a, out=z[:, :h])
    np.sin(a, out=z[:, h:])
    z[:, :h] *= r
    z[:, h:] *= r
    return (z if 2 * h == k else z[:, :k]).reshape(groups, n, d)


@dataclass
class Selection:
    latents: np.ndarray  # n x d, the winning group in latent space
    score: float
    chunk: int
    index: int  # index of the winner within its chunk
    chunk_best: np.ndarray  # best score per chunk
    scores_head: np.ndarray  # scores of the first groups, in draw order
    random_latents: np.ndarray  # the first group drawn (a single random draw, the no-group-sampling baseline)
    random_score: float


def select_group(mu, var, ipc: int, m: int, seed: int, key=(), weights: Weights = Weights(), skew_mode="paper",
                 chunk_groups=10_000, max_sub_bytes=8 << 20, threads=2, head=100_000, progress=None) -> Selection:
    """Group sampling over m candidate groups; deterministic for a given (seed, key, ipc, chunk_groups)."""
    if ipc < 1 or m < 1 or chunk_groups < 1:
        raise D3HRError(f"group sampling needs ipc >= 1, m >= 1 and chunk_groups >= 1 (got {ipc}, {m}, {chunk_groups})")
    mu = np.asarray(mu, dtype=np.float32).ravel()
    var = np.asarray(var, dtype=np.float64).ravel()
    if (var < 0).any() or not np.isfinite(var).all() or not np.isfinite(mu).all():
        raise D3HRError("the Gaussian holds negative, NaN or Inf variances/means: refit it")
    d = mu.size
    sigma = np.sqrt(var).astype(np.float32)
    n_chunks = math.ceil(m / chunk_groups)
    sub = max(1, min(chunk_groups, max_sub_bytes // (ipc * d * 4)))

    def run_chunk(c):
        gen = np.random.Generator(np.random.PCG64(derive_seed(seed, "select", *key, ipc, c)))
        size = min(chunk_groups, m - c * chunk_groups)
        keep_head = max(0, min(size, head - c * chunk_groups))
        head_scores = np.empty(keep_head, dtype=np.float32)
        best = (math.inf, -1, None)
        first = None
        for s0 in range(0, size, sub):
            e = standard_normal(gen, min(sub, size - s0), ipc, d)
            sc = group_scores(e, sigma, weights, skew_mode)
            if c == 0 and s0 == 0:
                first = (e[0].copy(), float(sc[0]))
            if s0 < keep_head:
                head_scores[s0 : min(keep_head, s0 + len(sc))] = sc[: keep_head - s0]
            j = int(np.argmin(sc))
            if float(sc[j]) < best[0]:
                best = (float(sc[j]), s0 + j, e[j].copy())
            if progress is not None:
                progress.update(len(sc))
        return best, head_scores, first

    if threads > 1 and n_chunks > 1:  # numpy releases the GIL in its array loops
        with ThreadPoolExecutor(threads) as ex:
            results = list(ex.map(run_chunk, range(n_chunks)))
    else:
        results = [run_chunk(c) for c in range(n_chunks)]
    chunk_best = np.array([r[0][0] for r in results], dtype=np.float32)
    c = int(np.argmin(chunk_best))  # first minimum: ties go to the earlier chunk
    score, idx, e_best = results[c][0]
    e_first, first_score = results[0][2]
    to_latent = lambda e: (mu + sigma * e).astype(np.float32)  # z = mu + sigma * e
    return Selection(
        latents=to_latent(e_best), score=score, chunk=c, index=idx, chunk_best=chunk_best,
        scores_head=np.concatenate([r[1] for r in results]), random_latents=to_latent(e_first), random_score=first_score,
    )


def select_class(gaussian: str, out: str, ipc: int, m: int, timestep: int, seed: int, l_mu: float, l_sigma: float,
                 l_skew: float, skew_mode: Literal["paper", "code"], chunk_groups: int, threads: int = 1):
    """Group sampling for one class at `timestep` of its Gaussian file: the best of m groups of IPC latents."""
    from tqdm import tqdm

    weights = Weights(mu=l_mu, sigma=l_sigma, skew=l_skew)  # eq. 4.1's lambdas
    gaussian_h5 = gaussian
    with open_h5(gaussian_h5, "Gaussian") as f:
        attrs = read_attrs(f)
        if f"t{timestep}" not in f:
            raise D3HRError(f"{gaussian_h5}: no Gaussian for timestep {timestep}; kept timesteps: {f['timesteps'][:].tolist()} "
                            "(add it to invert.keep_timesteps)")
        mu, var = f[f"t{timestep}/mean"][:], f[f"t{timestep}/var"][:]
    shape = tuple(attrs["latent_shape"])
    cls = attrs["cls"]
    bar = tqdm(total=m, desc=f"select {cls} ipc{ipc}", mininterval=10, file=sys.stderr, unit="group")
    sel = select_group(mu, var, ipc, m, seed, key=(cls,), weights=weights, skew_mode=skew_mode,
                       chunk_groups=chunk_groups, threads=threads, progress=bar)
    bar.close()
    write_h5(out, {
        "latents": sel.latents.reshape(ipc, *shape),
        "random_latents": sel.random_latents.reshape(ipc, *shape),
        "chunk_best": sel.chunk_best,
        "scores_head": sel.scores_head,
    }, provenance(stage="select", cls=cls, label=attrs.get("label"), model=attrs.get("model"),
                  guidance=attrs.get("guidance"), num_inference_steps=attrs.get("num_inference_steps"),
                  null_label=attrs.get("null_label"), timestep=timestep, ipc=ipc, m=m, chunk_groups=chunk_groups,
                  seed=seed, weights=asdict(weights), skew_mode=skew_mode, score=sel.score, best_chunk=sel.chunk,
                  best_index=sel.index, random_score=sel.random_score, latent_shape=list(shape)))
    print(f"[d3hr] best score {sel.score:.4f} (random group {sel.random_score:.4f}) -> {out}", file=sys.stderr)
    return sel


def summarize(paths) -> "pandas.DataFrame":
    """One row per selected file: class, IPC, timestep, m, winning score and the score of one random group."""
    import pandas as pd

    rows = []
    for p in paths:
        with open_h5(p, "selected latents") as f:
            a = read_attrs(f)
        rows.append({k: a.get(k) for k in ("cls", "ipc", "timestep", "m", "skew_mode", "score", "random_score", "best_chunk", "best_index")})
    return pd.DataFrame(rows)


def write_summary(selected: list[str], out: str):
    """summarize(selected) as a CSV file."""
    with atomic_output(out) as tmp:
        summarize(selected).to_csv(tmp, index=False)
