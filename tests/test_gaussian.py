"""Gaussian fit and normality statistics (docs/method.md §3)."""

import h5py
import numpy as np
import pytest
from scipy import stats

from d3hr.gaussian import fit, fit_class, normality, timestep_stats
from d3hr.h5io import write_h5


def test_fit_equals_numpy():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(200, 40)).astype(np.float32)
    mu, var = fit(x)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(var, x.astype(np.float64).var(0, ddof=1), rtol=1e-12)


def test_normality_separates_a_mixture_from_a_gaussian():
    rng = np.random.default_rng(0)
    gauss = rng.normal(size=(500, 8))
    mixture = np.concatenate([rng.normal(-3, 0.3, size=(250, 8)), rng.normal(3, 0.3, size=(250, 8))])
    ng, nm = normality(gauss), normality(mixture)
    assert np.median(ng["normal_p"]) > 0.05 > np.max(nm["normal_p"])
    assert np.all(nm["kurtosis"] < -1.5)  # bimodal: strongly platykurtic
    np.testing.assert_allclose(ng["skew"], stats.skew(gauss, axis=0), rtol=1e-5)


def test_fit_class_files(tmp_path):
    rng = np.random.default_rng(0)
    lat = rng.normal(size=(30, 4, 2, 2)).astype(np.float32)
    inv = {f"t{t}": rng.normal(t / 100, 1.0, size=(30, 4, 2, 2)).astype(np.float32) for t in (480, 600)}
    stats = {f"stats/{k}/{s}": v for k, x in inv.items() for s, v in timestep_stats(x.reshape(30, -1)).items()}
    write_h5(tmp_path / "lat.h5", {"latents": lat}, {"cls": "a"})
    write_h5(tmp_path / "inv.h5", {**stats, "timesteps": np.array([480, 600])},
             {"cls": "a", "label": 0, "guidance": 4.0, "latent_shape": [4, 2, 2], "n_images": 30})
    fit_class(tmp_path / "inv.h5", tmp_path / "lat.h5", tmp_path / "g.h5")
    with h5py.File(tmp_path / "g.h5") as f:
        np.testing.assert_allclose(f["t600/mean"][:], inv["t600"].reshape(30, -1).mean(0), rtol=1e-5)
        np.testing.assert_allclose(f["t480/var"][:], inv["t480"].reshape(30, -1).var(0, ddof=1), rtol=1e-5)
        np.testing.assert_allclose(f["latent/mean"][:], lat.reshape(30, -1).mean(0), rtol=1e-5, atol=1e-7)
        assert f["t600/normal_p"].shape == (16,)
        assert f.attrs["cls"] == "a" and f.attrs["gaussian_bytes_per_timestep"] == 2 * 16 * 4


def test_fit_needs_two_samples():
    from d3hr import D3HRError

    with pytest.raises(D3HRError):
        fit(np.zeros((1, 3)))
