"""Stage 4: group sampling (docs/method.md §4).

Draw m candidate groups G of n = IPC latents z ~ N(mu, diag sigma^2) and keep the group minimising
    L(G) = l_mu ||mean(G) - mu||_2 + l_sigma ||std(G) - sigma||_2 + l_skew ||skew(G)||_2.

Each group is drawn as z = mu + sigma * e with e ~ N(0, I), so that mean(G) - mu = sigma * mean(e),
std(G) = sigma * std(e) and skew(G) = skew(e): the score is computed on e alone, and only the winner is mapped
back to latent space. Groups are drawn in chunks (one seed per chunk, derived from the seed, class, IPC and chunk
index) and each chunk in sub-chunks of bounded size, so memory does not grow with m.

Two paths, one score. The numpy path (the CPU reference: PCG64 generators, Box-Muller normals, float32, chunks on a
thread pool, the result independent of the number of threads) imports no torch. The torch path (`select_group(...,
device=...)`, `group_scores_torch`) draws each chunk with a torch.Generator on the device, seeded with the same
per-chunk seed, `draw_groups` groups per torch call (torch's normals depend on the size of the call, so that size
is fixed and the result does not depend on the sub-chunk size), scores sub-chunks of up to 1 GiB of draws on CUDA
(8 MiB on the CPU) and keeps the best group on the device (one host sync, at the end). The two paths draw different
candidates (different generators) but score a given group identically (up to float32 rounding). `select_class`
(its `where`: the config's `device`) runs the numpy path for cpu, and for auto without a GPU, and the torch path on a
leased GPU for cuda, or for auto when there is one; the selected file records which (`sampler`: "numpy" or
"torch:cuda").

Definitions: std is the unbiased (n - 1) standard deviation, as in the Gaussian fit. skew_mode 'paper': per
dimension, mean over the n members of ((z - mean) / std)^3, norm over the d dimensions. skew_mode 'code' (the
authors' code): per member, mean over the d dimensions of the same standardised cubes, norm over the n members.
IPC = 1: std and skew are undefined, the score is the mean term alone. A group with a zero std in some dimension
(IPC 2: both members 0, a zero Box-Muller radius) scores NaN, and never wins.

Options beside the paper's setting (the off-class study, docs/results.md; each a config key of `select`):
- a Gaussian with structure (`cov_rank` > 0): the draws are z = mu + sigma * x with standardised
  x = C e' + r * e, C = F / sigma (d x k, the first k columns of the covariance factor F that the inversion stored:
  Cov ~ F F^T + diag(sigma^2 - rowsum F^2)) and r = sqrt(max(1 - rowsum C^2, 0)), e' ~ N(0, I_k): every marginal stays
  N(mu, sigma^2), the dimensions are correlated as the inverted latents are; k >= d is the full covariance. The score
  is the same moments' score, on x.
- `criterion: mmd`: the group minimising the (biased) squared MMD between its members and the class's stored
  inverted latents (an RBF kernel, bandwidth the median squared distance between the reference latents) instead of
  the moments' score.
"""

from __future__ import annotations

import math
import os
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


def rbf_bandwidth(reference: np.ndarray) -> float:
    """The RBF kernel's bandwidth h^2 = s^2, s the median distance between distinct reference latents (N x d): the
    median heuristic, as d3hr.metrics measures sets."""
    from .metrics import median_distance

    s = median_distance(np.asarray(reference).reshape(len(reference), -1))
    if not s > 0:
        raise D3HRError("the MMD reference latents are identical or fewer than two: no kernel bandwidth")
    return s * s


def mmd_reference_term(reference: np.ndarray, h2: float) -> float:
    """mean k(R, R) of the squared MMD: the same for every group, computed once per selection."""
    r = np.asarray(reference, dtype=np.float32)
    sq_r = (r * r).sum(1)
    return float(np.exp(-np.maximum(sq_r[:, None] + sq_r[None, :] - 2 * r @ r.T, 0) / h2).mean())


def mmd_scores(z: np.ndarray, reference: np.ndarray, h2: float, k_rr: float | None = None) -> np.ndarray:
    """Squared MMD (biased V-statistic) between each group of z (g x n x d, latent space) and the reference latents
    (N x d): mean k(G, G) - 2 mean k(G, R) + mean k(R, R), k(a, b) = exp(-||a - b||^2 / h2); `k_rr`: the last term,
    when the caller holds it (mmd_reference_term)."""
    g, n, d = z.shape
    r = np.asarray(reference, dtype=np.float32)
    sq_z = np.einsum("gnd,gnd->gn", z, z)
    sq_r = (r * r).sum(1)
    k_gr = z.reshape(g * n, d) @ r.T  # cross terms, one matmul
    k_gr = np.exp(-np.maximum(sq_z.reshape(-1, 1) + sq_r[None, :] - 2 * k_gr, 0) / h2).reshape(g, n, -1)
    k_gg = np.matmul(z, z.transpose(0, 2, 1))
    k_gg = np.exp(-np.maximum(sq_z[:, :, None] + sq_z[:, None, :] - 2 * k_gg, 0) / h2)
    k_rr = mmd_reference_term(r, h2) if k_rr is None else k_rr
    return (k_gg.mean((1, 2)) - 2 * k_gr.mean((1, 2)) + k_rr).astype(np.float32)


def mmd_scores_torch(z, reference, h2: float, k_rr: float | None = None):
    """mmd_scores on torch tensors (z: g x n x d, reference: N x d) on any device."""
    import torch

    g, n, d = z.shape
    r = torch.as_tensor(reference, dtype=z.dtype, device=z.device)
    sq_z = (z * z).sum(2)
    sq_r = (r * r).sum(1)
    k_gr = (sq_z.reshape(-1, 1) + sq_r[None, :] - 2 * (z.reshape(g * n, d) @ r.T)).clamp_(min=0)
    k_gr = k_gr.div_(-h2).exp_().reshape(g, n, -1)
    k_gg = (sq_z[:, :, None] + sq_z[:, None, :] - 2 * torch.bmm(z, z.transpose(1, 2))).clamp_(min=0).div_(-h2).exp_()
    if k_rr is None:
        k_rr = (sq_r[:, None] + sq_r[None, :] - 2 * r @ r.T).clamp_(min=0).div_(-h2).exp_().mean()
    return k_gg.mean((1, 2)) - 2 * k_gr.mean((1, 2)) + k_rr


@dataclass(frozen=True)
class Structure:
    """A Gaussian with structure, in standardised units: x = corr e' + resid * e (module docstring)."""
    corr: np.ndarray  # d x k, F / sigma
    resid: np.ndarray  # d, sqrt(max(1 - rowsum corr^2, 0))

    @staticmethod
    def from_factor(factor: np.ndarray, sigma: np.ndarray) -> "Structure":
        corr = (np.asarray(factor, dtype=np.float64) / np.asarray(sigma, dtype=np.float64)[:, None])
        resid = np.sqrt(np.clip(1.0 - (corr * corr).sum(1), 0.0, None))
        return Structure(corr.astype(np.float32), resid.astype(np.float32))

    @property
    def rank(self) -> int:
        return self.corr.shape[1]


def structured(e: np.ndarray, structure: "Structure | None") -> np.ndarray:
    """Standardised draws x (g x n x d) from standard normals e (g x n x (d + k)): x = corr e[..., d:] + resid e[..., :d];
    without structure, e itself."""
    if structure is None:
        return e
    d = structure.resid.size
    g, n, _ = e.shape
    x = e[:, :, :d] * structure.resid
    x += (e[:, :, d:].reshape(g * n, -1) @ structure.corr.T).reshape(g, n, d)
    return x


def structured_torch(e, corr, resid):
    """`structured` on torch tensors: x = corr e[..., d:] + resid e[..., :d] (e: g x n x (d + k))."""
    import torch

    g, n, _ = e.shape
    d, k = corr.shape
    return torch.addmm(e[:, :, :d].reshape(g * n, d) * resid, e[:, :, d:].reshape(g * n, k), corr.T).reshape(g, n, d)


def group_scores_torch(e, sigma, w: Weights, skew_mode: str = "paper"):
    """group_scores on a torch tensor e (g x n x d, float32) on any device: the same score and definitions. e is left
    as it is; one g x n x d temporary, the deviations (their cubes replace them in place). The sums of squares run
    member by member (torch's reductions over the middle axis are several times slower on the CPU)."""
    import torch

    g, n, d = e.shape
    if skew_mode not in ("paper", "code"):
        raise ValueError(f"skew_mode must be 'paper' or 'code', got {skew_mode!r}")
    sigma = torch.as_tensor(sigma, dtype=e.dtype, device=e.device)
    norm = torch.linalg.vector_norm
    mean = e.mean(1)
    dev = e - mean[:, None, :] if n > 1 else None
    score = norm(mean.mul_(sigma), dim=1).mul_(w.mu)  # ||mean(G) - mu||_2  (eq. 4.1, first term)
    if n == 1:
        return score
    std = torch.zeros_like(mean)
    for i in range(n):  # sum of dev^2 over the members, no g x n x d squares
        std.addcmul_(dev[:, i], dev[:, i])
    std.mul_(1.0 / (n - 1)).sqrt_()  # unbiased std
    score += norm((std - 1.0).mul_(sigma), dim=1).mul_(w.sigma)  # ||std(G) - sigma||_2  (eq. 4.1, second term)
    if w.skew:
        if skew_mode == "paper":  # per dimension, over the n members
            skew = dev.pow_(3).sum(1).mul_(1.0 / n).div_(std * std * std)
        else:  # per member, over the d dimensions (the authors' code)
            skew = dev.div_(std[:, None, :]).pow_(3).mean(2)
        score += norm(skew, dim=1).mul_(w.skew)  # ||skew(G)||_2  (eq. 4.1, third term)
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


SUB_BYTES = {"cpu": 8 << 20, "cuda": 1 << 30}  # draws scored at once: within the CPU's caches, a share of a GPU
DRAW_BYTES = {"cpu": 8 << 20, "cuda": 64 << 20}  # the torch path's draws per torch call (they depend on it)


def select_group(mu, var, ipc: int, m: int, seed: int, key=(), weights: Weights = Weights(), skew_mode="paper",
                 chunk_groups=10_000, max_sub_bytes=None, threads=2, head=100_000, progress=None, device=None,
                 draw_groups=None, structure: Structure | None = None, reference=None) -> Selection:
    """Group sampling over m candidate groups; deterministic for a given (seed, key, ipc, chunk_groups).

    device None: the numpy path (chunks on `threads` threads); a torch device (or its name): the torch path on it
    (torch's own threads; `draw_groups` groups per torch call, default DRAW_BYTES of draws: 8 MiB, 64 MiB on CUDA).
    max_sub_bytes bounds the draws scored at once (default SUB_BYTES: 8 MiB, 1 GiB on CUDA); the result does not
    depend on it. The torch path's draws on CUDA depend on the GPU model too (the launch grid).
    structure: draws with that covariance structure (Structure; each group's normals are d + k per member);
    reference: score by the squared MMD to these latents (N x d) instead of the moments (module docstring)."""
    if ipc < 1 or m < 1 or chunk_groups < 1:
        raise D3HRError(f"group sampling needs ipc >= 1, m >= 1 and chunk_groups >= 1 (got {ipc}, {m}, {chunk_groups})")
    mu = np.asarray(mu, dtype=np.float32).ravel()
    var = np.asarray(var, dtype=np.float64).ravel()
    if (var < 0).any() or not np.isfinite(var).all() or not np.isfinite(mu).all():
        raise D3HRError("the Gaussian holds negative, NaN or Inf variances/means: refit it")
    d = mu.size
    sigma = np.sqrt(var).astype(np.float32)
    n_chunks = math.ceil(m / chunk_groups)
    k = structure.rank if structure is not None else 0
    if structure is not None and structure.resid.size != d:
        raise D3HRError(f"the covariance factor has {structure.resid.size} dimensions, the Gaussian {d}")
    h2 = k_rr = None
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float32).reshape(len(reference), -1)
        if reference.shape[1] != d or len(reference) < 2:
            raise D3HRError(f"MMD reference of shape {reference.shape}: needs at least 2 latents of {d} dimensions")
        h2 = rbf_bandwidth(reference)
        k_rr = mmd_reference_term(reference, h2)
    if device is not None:
        return _select_torch(mu, sigma, ipc, m, seed, key, weights, skew_mode, chunk_groups, max_sub_bytes, head,
                             progress, device, draw_groups, structure, reference, h2, k_rr)
    group_bytes = ipc * (d + k) * 4 + (ipc * (len(reference) + ipc) * 4 if reference is not None else 0)
    sub = max(1, min(chunk_groups, (max_sub_bytes or SUB_BYTES["cpu"]) // group_bytes))

    def run_chunk(c):
        gen = np.random.Generator(np.random.PCG64(derive_seed(seed, "select", *key, ipc, c)))
        size = min(chunk_groups, m - c * chunk_groups)
        keep_head = max(0, min(size, head - c * chunk_groups))
        head_scores = np.empty(keep_head, dtype=np.float32)
        best = (math.inf, -1, None)
        first = None
        for s0 in range(0, size, sub):
            e = structured(standard_normal(gen, min(sub, size - s0), ipc, d + k), structure)
            if reference is None:
                sc = group_scores(e, sigma, weights, skew_mode)
            else:  # (the off-class study) squared MMD to the class's inverted latents, in latent space
                sc = mmd_scores(mu + sigma * e, reference, h2, k_rr)
            if c == 0 and s0 == 0:
                first = (e[0].copy(), float(sc[0]))
            if s0 < keep_head:
                head_scores[s0 : min(keep_head, s0 + len(sc))] = sc[: keep_head - s0]
            j = int(np.argmin(np.where(np.isnan(sc), np.inf, sc)))  # NaN (a zero std at IPC 2) never wins
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
    return _selection(mu, sigma, e_best, score, c, idx, chunk_best, np.concatenate([r[1] for r in results]), e_first,
                      first_score)


def _selection(mu, sigma, e_best, score, chunk, index, chunk_best, scores_head, e_first, first_score) -> Selection:
    to_latent = lambda e: (mu + sigma * e).astype(np.float32)  # z = mu + sigma * e
    return Selection(latents=to_latent(e_best), score=float(score), chunk=int(chunk), index=int(index),
                     chunk_best=chunk_best, scores_head=scores_head, random_latents=to_latent(e_first),
                     random_score=float(first_score))


def _select_torch(mu, sigma, ipc, m, seed, key, weights, skew_mode, chunk_groups, max_sub_bytes, head, progress,
                  device, draw_groups, structure=None, reference=None, h2=None, k_rr=None) -> Selection:
    """select_group's torch path. torch's normals are not one stream: a call's values depend on its size (CPU: blocks
    of 16 values, CUDA: the launch grid), so a chunk is drawn `block` groups per call, always in the same calls, and
    a sub-chunk is a whole number of calls. The best score, its index and its group stay on the device (no host sync
    per sub-chunk); the per-chunk results come to the host once, at the end."""
    import torch

    device = torch.device(device)
    d = sigma.size
    k = structure.rank if structure is not None else 0
    group_bytes = ipc * (d + k) * 4
    kind = "cuda" if device.type == "cuda" else "cpu"
    block = min(chunk_groups, draw_groups or max(1, DRAW_BYTES[kind] // group_bytes))
    sub_bytes = max_sub_bytes or SUB_BYTES[kind]
    work_bytes = group_bytes + (ipc * (len(reference) + ipc) * 4 if reference is not None else 0)  # the kernels
    sub = min(max(1, sub_bytes // (work_bytes * block)), math.ceil(chunk_groups / block)) * block
    sig = torch.from_numpy(sigma).to(device)
    mu_t = torch.from_numpy(mu).to(device)
    if structure is not None:
        corr_t, resid_t = (torch.from_numpy(a).to(device) for a in (structure.corr, structure.resid))
    ref_t = torch.from_numpy(reference).to(device) if reference is not None else None
    gen = torch.Generator(device=device)
    buf = torch.empty((min(sub, m), ipc, d + k), dtype=torch.float32, device=device)  # the draws, reused
    per_chunk = []
    with torch.inference_mode():
        for c in range(math.ceil(m / chunk_groups)):
            gen.manual_seed(derive_seed(seed, "select", *key, ipc, c))
            size = min(chunk_groups, m - c * chunk_groups)
            keep_head = max(0, min(size, head - c * chunk_groups))
            head_scores = torch.empty(keep_head, dtype=torch.float32, device=device)
            best = (torch.full((1,), math.inf, device=device), torch.zeros(1, dtype=torch.long, device=device),
                    torch.zeros((ipc, d), device=device))  # score, index, group: device tensors
            for s0 in range(0, size, sub):
                e = buf[: min(sub, size - s0)]
                for b0 in range(0, len(e), block):  # s0 is a multiple of block: the chunk's calls, whatever sub is
                    e[b0 : b0 + block].normal_(generator=gen)
                if structure is not None:
                    e = structured_torch(e, corr_t, resid_t)
                if ref_t is None:
                    sc = group_scores_torch(e, sig, weights, skew_mode)
                else:
                    sc = mmd_scores_torch(mu_t + sig * e, ref_t, h2, k_rr)
                if c == 0 and s0 == 0:
                    first = (e[0].clone(), sc[:1].clone())
                if s0 < keep_head:
                    head_scores[s0 : min(keep_head, s0 + len(sc))] = sc[: keep_head - s0]
                j = sc.nan_to_num(nan=math.inf).argmin().reshape(1)  # the first minimum; NaN never wins
                cand = (sc.index_select(0, j), j + s0, e.index_select(0, j)[0])
                better = cand[0] < best[0]  # strictly: ties go to the earlier sub-chunk, as in the numpy path
                best = tuple(torch.where(better, a, b) for a, b in zip(cand, best))
                if progress is not None:
                    progress.update(len(sc))
            per_chunk.append((*best, head_scores))
        chunk_best = torch.cat([r[0] for r in per_chunk]).cpu().numpy()  # the host sync
        c = int(np.argmin(chunk_best))  # first minimum: ties go to the earlier chunk
        _, idx, e_best, _ = per_chunk[c]
        return _selection(mu, sigma, e_best.cpu().numpy(), chunk_best[c], c, idx.item(), chunk_best,
                          torch.cat([r[3] for r in per_chunk]).cpu().numpy(), first[0].cpu().numpy(),
                          first[1].item())


def sampler_name(device) -> str:
    """What selected the group, for the provenance: "numpy", or "torch:<device type>"."""
    return "numpy" if device is None else f"torch:{getattr(device, 'type', str(device).split(':')[0])}"


def _no_gpu_here() -> bool:
    """True when this process surely sees no GPU, decided without importing torch: CUDA_VISIBLE_DEVICES empty or -1, a
    SLURM job that was given no GPU, or a Linux machine without a GPU device node (NVIDIA, ROCm, WSL)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip() in ("", "-1"):
        return True
    if os.environ.get("SLURM_JOB_ID") and env is None:
        return True
    nodes = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")
    return sys.platform.startswith("linux") and not any(os.path.exists(p) for p in nodes)


def sampling_device(where: str):
    """Where select_class samples: None (the numpy path) or a leased torch device. "cpu": numpy, and no torch import;
    "auto": a GPU when there is one (leased: d3hr.device.pick_device), else numpy; "cuda": a GPU, or an error."""
    if where not in ("auto", "cpu", "cuda"):
        raise D3HRError(f"where must be auto, cpu or cuda, got {where!r}")
    if where == "cpu" or (where == "auto" and _no_gpu_here()):
        return None
    import torch

    from .device import pick_device

    if where == "auto" and not torch.cuda.is_available():
        return None
    try:
        return pick_device(where)
    except RuntimeError as e:
        raise D3HRError(f"group sampling on 'cuda': {e}") from e


RESCALES = ("none", "second_moment", "forward")


def rescaled(mu, var, latent_mean, latent_var, alpha_bar: float, rescale: str):
    """The Gaussian (mu, var) that group sampling draws from, after `rescale` (the off-class study, docs/method.md §4):
    none; second_moment: per dimension mu and sigma times sqrt(E_fwd[z_t^2] / E_inv[z_t^2]), where the forward process
    x_t = sqrt(a) z_0 + sqrt(1 - a) eps of the same images has E[x_t^2] = a (mu_0^2 + var_0) + 1 - a; forward: the
    forward process's mean sqrt(a) mu_0 and variance a var_0 + 1 - a (the draws keep the inverted latents' correlations,
    in standardised units)."""
    mu, var = np.asarray(mu, dtype=np.float64), np.asarray(var, dtype=np.float64)
    if rescale == "none":
        return mu, var
    a = float(alpha_bar)
    mu0, var0 = np.asarray(latent_mean, dtype=np.float64), np.asarray(latent_var, dtype=np.float64)
    if rescale == "forward":
        return np.sqrt(a) * mu0, a * var0 + (1 - a)
    if rescale == "second_moment":
        k2 = (a * (mu0 * mu0 + var0) + (1 - a)) / (mu * mu + var)
        return mu * np.sqrt(k2), var * k2
    raise D3HRError(f"rescale must be one of {', '.join(RESCALES)}, got {rescale!r}")


def select_class(gaussian: str, out: str, ipc: int, m: int, timestep: int, seed: int, l_mu: float, l_sigma: float,
                 l_skew: float, skew_mode: Literal["paper", "code"], chunk_groups: int,
                 where: Literal["auto", "cpu", "cuda"], cov_rank: int, rescale: Literal["none", "second_moment", "forward"],
                 criterion: Literal["moments", "mmd"], threads: int = 1):
    """Group sampling for one class at `timestep` of its Gaussian file: the best of m groups of IPC latents, on the
    CPU with numpy (`where` cpu, or auto without a GPU; no torch import) or on a leased GPU with torch. cov_rank > 0:
    draws with the first cov_rank columns of the stored covariance factor; rescale: the Gaussian moved to the forward
    process's moments (`rescaled`); criterion mmd: the group closest in MMD to the stored inverted latents."""
    from tqdm import tqdm

    weights = Weights(mu=l_mu, sigma=l_sigma, skew=l_skew)  # eq. 4.1's lambdas
    gaussian_h5 = gaussian
    with open_h5(gaussian_h5, "Gaussian") as f:
        attrs = read_attrs(f)
        if f"t{timestep}" not in f:
            raise D3HRError(f"{gaussian_h5}: no Gaussian for timestep {timestep}; kept timesteps: {f['timesteps'][:].tolist()} "
                            "(add it to invert.keep_timesteps)")
        g = f[f"t{timestep}"]
        mu_inv, var_inv = g["mean"][:], g["var"][:]
        factor = reference = None
        for need, name, what in ((cov_rank > 0, "cov_factor", "select.cov_rank > 0"),
                                 (criterion == "mmd", "reference", "select.criterion mmd")):
            if need and name not in g:
                raise D3HRError(f"{gaussian_h5}: no {name} at t={timestep}, which {what} needs (invert.cov_rank / "
                                "invert.reference_images must be > 0, and t the selection timestep)")
        if cov_rank > 0:
            factor = g["cov_factor"][:]
            if factor.shape[1] < cov_rank:
                raise D3HRError(f"{gaussian_h5}: select.cov_rank {cov_rank} exceeds the stored covariance factor's rank "
                                f"{factor.shape[1]} (raise invert.cov_rank, or lower select.cov_rank)")
            factor = factor[:, :cov_rank]
        if criterion == "mmd":
            reference = g["reference"][:].astype(np.float32)
        if rescale != "none":
            ts = f["timesteps"][:].tolist()
            alpha_bar = float(f["alpha_bar"][ts.index(timestep)])
            mu, var = rescaled(mu_inv, var_inv, f["latent/mean"][:], f["latent/var"][:], alpha_bar, rescale)
        else:
            mu, var = mu_inv, var_inv
    shape = tuple(attrs["latent_shape"])
    cls = attrs["cls"]
    sigma_inv = np.sqrt(np.asarray(var_inv, dtype=np.float64))
    structure = Structure.from_factor(factor, sigma_inv) if factor is not None else None
    if reference is not None:  # the reference latents, moved with the Gaussian (z - mu) / sigma -> mu' + sigma' x
        reference = reference.reshape(len(reference), -1)
        reference = (mu + np.sqrt(var) * (reference - mu_inv) / sigma_inv).astype(np.float32)
    device = sampling_device(where)
    sampler = sampler_name(device)
    print(f"[d3hr] group sampling with {sampler}" + (f" on {device}" if device is not None else " on the CPU"),
          file=sys.stderr, flush=True)
    bar = tqdm(total=m, desc=f"select {cls} ipc{ipc}", mininterval=10, file=sys.stderr, unit="group")
    sel = select_group(mu, var, ipc, m, seed, key=(cls,), weights=weights, skew_mode=skew_mode,
                       chunk_groups=chunk_groups, threads=threads, progress=bar, device=device, structure=structure,
                       reference=reference)
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
                  best_index=sel.index, random_score=sel.random_score, latent_shape=list(shape), sampler=sampler,
                  cov_rank=cov_rank, rescale=rescale, criterion=criterion,
                  n_reference=0 if reference is None else len(reference)))
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
