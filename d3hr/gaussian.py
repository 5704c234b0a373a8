"""Stage 3: per-dimension Gaussian of one class's inverted latents, plus normality statistics (docs/method.md §3).

For each kept timestep t: mu_t = mean_i z_t^(i), sigma_t^2 = unbiased variance, over the N_c images, per dimension
of the flattened latent. Normality per dimension (skewness, excess kurtosis, D'Agostino-Pearson p-value) is
recorded for the VAE latents and for every inverted timestep: the paper's "low normality -> high normality".
"""

from __future__ import annotations

import numpy as np

from . import D3HRError
from .h5io import check_finite, open_h5, provenance, read_attrs, write_h5


def fit(x: np.ndarray):
    """(mean, unbiased variance) per dimension of x (N x d), accumulated in float64."""
    if x.shape[0] < 2:
        raise D3HRError(f"a Gaussian fit needs at least 2 samples, got {x.shape[0]}")
    x = x.astype(np.float64, copy=False)
    return x.mean(0), x.var(0, ddof=1)


def normality(x: np.ndarray) -> dict:
    """Per-dimension skewness, excess kurtosis and normality-test p-value (NaN when N < 20)."""
    from scipy import stats  # only here: `fit` (used by the ablation variants) needs no scipy

    x = x.astype(np.float64, copy=False)
    out = {"skew": stats.skew(x, axis=0), "kurtosis": stats.kurtosis(x, axis=0)}
    if x.shape[0] >= 20:
        out["normal_p"] = stats.normaltest(x, axis=0).pvalue
    else:
        out["normal_p"] = np.full(x.shape[1], np.nan)
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def cov_factor(x: np.ndarray, rank: int) -> np.ndarray:
    """F (d x k, k = min(rank, N - 1, d)) with F F^T the best rank-k approximation of the unbiased covariance of x (N x d):
    the top-k right singular vectors of the centred x, scaled by s / sqrt(N - 1) (the principal axes). The structured
    Gaussian's factor (d3hr.group_sampling.Structure); k = d with N > d is the full covariance."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    k = min(int(rank), n - 1, d)
    if k < 1:
        raise D3HRError(f"a covariance factor needs rank >= 1 and at least 2 samples (rank {rank}, {n} samples)")
    _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    return (vt[:k].T * (s[:k] / np.sqrt(n - 1))).astype(np.float32)


def timestep_stats(x: np.ndarray) -> dict:
    """The Gaussian (3.1) and the normality statistics of one timestep's inverted latents (N x d), float32."""
    mu, var = fit(x)
    return {k: np.asarray(v, dtype=np.float32) for k, v in {"mean": mu, "var": var, **normality(x)}.items()}


def fit_class(inverted: str, latents: str, out: str):
    """Write mu/var and normality stats per timestep (group `t{t}`: those the inversion accumulated, d3hr/invert.py)
    and for the VAE latents (group `latent`)."""
    inverted_h5, latents_h5 = inverted, latents
    with open_h5(inverted_h5, "inverted latents") as f:
        attrs = read_attrs(f)
        timesteps = [int(t) for t in f["timesteps"][:]]
        alpha_bar = f["alpha_bar"][:] if "alpha_bar" in f else None
        shape = tuple(attrs["latent_shape"])
        data = {}
        for t in timesteps:
            stats = {k: f[f"stats/t{t}/{k}"][:] for k in ("mean", "var", "skew", "kurtosis", "normal_p")}
            # the selection timestep's covariance factor and reference latents (d3hr/invert.py), when stored
            stats |= {k: f[f"stats/t{t}/{k}"][:] for k in ("cov_factor", "reference") if f"stats/t{t}/{k}" in f}
            check_finite(np.stack([stats["mean"], stats["var"]]), inverted_h5, f"stats/t{t}")
            zero = int((stats["var"] <= 0).sum())
            if zero:
                raise D3HRError(
                    f"{inverted_h5}: {zero} of {stats['var'].size} dimensions have zero variance at t={t} over "
                    f"{attrs.get('n_images')} images: the class's images are (nearly) identical or the inversion "
                    "collapsed; check the class folder and the model")
            data |= {f"t{t}/{k}": v for k, v in stats.items()}
    with open_h5(latents_h5, "latents") as f:
        x = f["latents"][:].reshape(f["latents"].shape[0], -1)
    check_finite(x, latents_h5, "latents")
    mu, var = fit(x)
    data["latent/mean"], data["latent/var"] = mu.astype(np.float32), var.astype(np.float32)
    for k, v in normality(x).items():
        data[f"latent/{k}"] = v
    data["timesteps"] = np.asarray(timesteps, dtype=np.int64)
    if alpha_bar is not None:
        data["alpha_bar"] = alpha_bar
    keep = {k: attrs.get(k) for k in ("cls", "label", "model", "guidance", "num_inference_steps", "null_label", "seed",
                                      "scaling_factor", "structure_timestep", "cov_rank", "n_reference")}
    write_h5(out, data, provenance(stage="fit_gaussian", n_images=int(x.shape[0]), latent_shape=list(shape),
                                   timesteps=timesteps,
                                   gaussian_bytes_per_timestep=int(2 * np.prod(shape) * 4), **keep))
