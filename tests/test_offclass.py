"""The off-class study's options (issue: why D3HR's images are off-class): the structured Gaussian (covariance factor,
structured draws), the rescaled Gaussian, MMD selection, and the per-class diagnostics' arithmetic."""

import json

import numpy as np
import pytest

from d3hr import D3HRError
from d3hr.diagnostics import diagnostics_frame, diagnostics_table, moment_stats
from d3hr.gaussian import cov_factor
from d3hr.group_sampling import (
    Structure,
    mmd_scores,
    rbf_bandwidth,
    rescaled,
    select_class,
    select_group,
    standard_normal,
    structured,
)
from d3hr.h5io import open_h5, read_attrs, write_h5


def _correlated(n=2000, d=12, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ a.T * rng.uniform(0.5, 2.0, size=d) + rng.normal(size=d)


def test_cov_factor_is_the_sample_covariance_at_full_rank_and_its_best_approximation_below():
    x = _correlated()
    cov = np.cov(x, rowvar=False)
    f = cov_factor(x, 100)  # rank capped at d
    assert f.shape == (12, 12)
    np.testing.assert_allclose(f @ f.T, cov, atol=1e-5)
    f3 = cov_factor(x, 3)
    w = np.linalg.eigvalsh(cov)[::-1]
    np.testing.assert_allclose(np.linalg.norm(cov - f3 @ f3.T, 2), w[3], rtol=1e-4)  # Eckart-Young: the 4th eigenvalue
    assert cov_factor(x[:3], 10).shape == (12, 2)  # N - 1 at most
    with pytest.raises(D3HRError):
        cov_factor(x[:1], 4)


def test_structured_draws_have_the_factor_s_covariance_and_unit_marginals():
    x = _correlated(seed=1)
    sigma = x.std(0, ddof=1)
    for rank in (12, 4):
        st = Structure.from_factor(cov_factor(x, rank), sigma)
        gen = np.random.Generator(np.random.PCG64(0))
        e = standard_normal(gen, 20_000, 1, 12 + st.rank)
        xs = structured(e, st)[:, 0]
        want = st.corr.astype(np.float64) @ st.corr.T + np.diag(st.resid.astype(np.float64) ** 2)
        np.testing.assert_allclose(np.diag(want), 1.0, atol=1e-5)  # every marginal: N(0, 1) in standardised units
        np.testing.assert_allclose(np.cov(xs, rowvar=False), want, atol=0.04)
        if rank == 12:  # the full covariance: the sample correlation of the latents
            np.testing.assert_allclose(want, np.corrcoef(x, rowvar=False), atol=1e-4)
    assert structured(e, None) is e


def test_mmd_scores_against_a_direct_computation_and_torch():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(30, 6)).astype(np.float32)
    z = rng.normal(size=(5, 4, 6)).astype(np.float32)
    z[0] = ref[:4]
    z[1] = ref[:4] + 3.0  # far from the reference
    h2 = rbf_bandwidth(ref)
    d2 = ((ref[:, None] - ref[None]) ** 2).sum(-1)
    # the median heuristic: the squared median distance (with an even number of pairs not the median squared distance)
    assert h2 == pytest.approx(np.median(np.sqrt(d2[np.triu_indices(30, 1)])) ** 2, rel=1e-6)
    assert rbf_bandwidth(ref[:4]) == pytest.approx(np.median(np.sqrt(d2[:4, :4][np.triu_indices(4, 1)])) ** 2, rel=1e-6)
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / h2)
    want = [k(g, g).mean() - 2 * k(g, ref).mean() + k(ref, ref).mean() for g in z.astype(np.float64)]
    got = mmd_scores(z, ref, h2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert got[1] > got[0] and (got > -1e-6).all()
    torch = pytest.importorskip("torch")
    from d3hr.group_sampling import mmd_scores_torch, structured_torch

    np.testing.assert_allclose(mmd_scores_torch(torch.from_numpy(z), torch.from_numpy(ref), h2).numpy(), got,
                               rtol=1e-4, atol=1e-6)
    st = Structure.from_factor(cov_factor(_correlated(d=6), 3), np.ones(6))
    e = rng.normal(size=(7, 2, 9)).astype(np.float32)
    np.testing.assert_allclose(structured_torch(torch.from_numpy(e), torch.from_numpy(st.corr),
                                                torch.from_numpy(st.resid)).numpy(), structured(e, st), rtol=1e-5,
                               atol=1e-6)


def test_rescaled_gaussians_have_the_forward_process_s_moments():
    rng = np.random.default_rng(0)
    mu, var = rng.normal(size=50), rng.uniform(0.5, 2.0, size=50)
    mu0, var0 = rng.normal(size=50), rng.uniform(0.1, 1.0, size=50)
    a = 0.3
    m, v = rescaled(mu, var, mu0, var0, a, "forward")
    np.testing.assert_allclose(m, np.sqrt(a) * mu0)
    np.testing.assert_allclose(v, a * var0 + 1 - a)
    m2, v2 = rescaled(mu, var, mu0, var0, a, "second_moment")
    np.testing.assert_allclose(m2 * m2 + v2, a * (mu0 * mu0 + var0) + 1 - a)  # the forward second moment
    np.testing.assert_allclose(m2 / np.sqrt(v2), mu / np.sqrt(var))  # the shape of each marginal kept
    assert rescaled(mu, var, mu0, var0, a, "none")[0] is not None
    with pytest.raises(D3HRError):
        rescaled(mu, var, mu0, var0, a, "other")


def _gaussian_file(path, x, timestep=500, rank=None, n_ref=None):
    d = x.shape[1]
    g = {f"t{timestep}/mean": x.mean(0).astype(np.float32), f"t{timestep}/var": x.var(0, ddof=1).astype(np.float32),
         "latent/mean": np.zeros(d, np.float32), "latent/var": np.ones(d, np.float32) * 0.5,
         "timesteps": np.array([timestep]), "alpha_bar": np.array([0.4])}
    if rank:
        g[f"t{timestep}/cov_factor"] = cov_factor(x, rank)
    if n_ref:
        g[f"t{timestep}/reference"] = x[:n_ref].astype(np.float16)
    write_h5(path, g, {"cls": "cat", "label": 0, "latent_shape": [1, d], "guidance": 2.0, "num_inference_steps": 10})
    return path


KW = dict(m=300, timestep=500, seed=0, l_mu=1.0, l_sigma=1.0, l_skew=0.5, skew_mode="paper", chunk_groups=100,
          where="cpu")


def test_select_class_with_structure_rescale_and_mmd(tmp_path):
    x = _correlated(n=200, d=12).astype(np.float32)
    g = _gaussian_file(tmp_path / "g.h5", x, rank=12, n_ref=50)
    base = select_class(str(g), str(tmp_path / "a.h5"), ipc=4, cov_rank=0, rescale="none", criterion="moments", **KW)
    full = select_class(str(g), str(tmp_path / "b.h5"), ipc=4, cov_rank=12, rescale="none", criterion="moments", **KW)
    assert not np.allclose(base.latents, full.latents)
    with open_h5(tmp_path / "b.h5") as f:
        a = read_attrs(f)
        assert (a["cov_rank"], a["rescale"], a["criterion"], a["n_reference"]) == (12, "none", "moments", 0)
    # MMD: the winner is closer to the reference than one random group, and than the moments' winner
    mmd = select_class(str(g), str(tmp_path / "c.h5"), ipc=4, cov_rank=12, rescale="none", criterion="mmd", **KW)
    ref = x[:50].astype(np.float16).astype(np.float32)
    h2 = rbf_bandwidth(ref)
    score = lambda z: float(mmd_scores(z[None].astype(np.float32), ref, h2)[0])
    assert mmd.score == pytest.approx(score(mmd.latents), rel=1e-4)
    assert score(mmd.latents) < score(mmd.random_latents) and score(mmd.latents) <= score(full.latents)
    # rescale forward: the same standardised draws, mapped to the forward process's Gaussian (the first group drawn;
    # the winner may differ: the score weighs each dimension by its std)
    fwd = select_class(str(g), str(tmp_path / "d.h5"), ipc=4, cov_rank=0, rescale="forward", criterion="moments", **KW)
    mu, sigma = x.mean(0), x.std(0, ddof=1)
    mu_f, sd_f = np.zeros(12), np.sqrt(0.4 * 0.5 + 0.6)
    np.testing.assert_allclose((fwd.random_latents - mu_f) / sd_f, (base.random_latents - mu) / sigma, rtol=1e-3,
                               atol=1e-3)
    # the same call, the same bytes
    again = select_class(str(g), str(tmp_path / "e.h5"), ipc=4, cov_rank=12, rescale="none", criterion="mmd", **KW)
    assert again.latents.tobytes() == mmd.latents.tobytes()


def test_select_class_names_what_is_missing(tmp_path):
    x = _correlated(n=40, d=8).astype(np.float32)
    g = _gaussian_file(tmp_path / "g.h5", x, rank=3)
    with pytest.raises(D3HRError, match="cov_rank 5 exceeds the stored covariance factor's rank 3"):
        select_class(str(g), str(tmp_path / "s.h5"), ipc=2, cov_rank=5, rescale="none", criterion="moments", **KW)
    with pytest.raises(D3HRError, match="no reference"):
        select_class(str(g), str(tmp_path / "s.h5"), ipc=2, cov_rank=0, rescale="none", criterion="mmd", **KW)
    g2 = _gaussian_file(tmp_path / "g2.h5", x)
    with pytest.raises(D3HRError, match="no cov_factor"):
        select_class(str(g2), str(tmp_path / "s.h5"), ipc=2, cov_rank=2, rescale="none", criterion="moments", **KW)
    assert not (tmp_path / "s.h5").exists()


def test_torch_path_takes_the_structure_and_the_reference():
    torch = pytest.importorskip("torch")
    x = _correlated(n=100, d=10).astype(np.float32)
    mu, var = x.mean(0), x.var(0, ddof=1)
    st = Structure.from_factor(cov_factor(x, 4), np.sqrt(var))
    kw = dict(ipc=3, m=500, seed=1, key=("c",), chunk_groups=200, structure=st, device=torch.device("cpu"))
    a = select_group(mu, var, **kw)
    b = select_group(mu, var, max_sub_bytes=3 * 14 * 4 * 16, draw_groups=16, **(kw | {"seed": 1}))
    assert a.latents.shape == (3, 10) and np.isfinite(a.latents).all()
    assert b.score == pytest.approx(float(np.nanmin(b.scores_head)))
    c = select_group(mu, var, reference=x[:20], **kw)
    h2 = rbf_bandwidth(x[:20])
    assert c.score == pytest.approx(float(mmd_scores(c.latents[None], x[:20], h2)[0]), rel=1e-4)


def test_moment_stats_and_the_table(tmp_path):
    s = moment_stats(mu=[1.0, 1.0], var=[2.0, 2.0], mu0=[2.0, 0.0], var0=[0.5, 0.5], alpha_bar=0.25)
    assert s["inv_var_mean"] == 2.0 and s["fwd_var_mean"] == pytest.approx(0.25 * 0.5 + 0.75)
    assert s["inv_mu_norm"] == pytest.approx(np.sqrt(2)) and s["fwd_mu_norm"] == pytest.approx(0.5 * 2.0)
    assert s["inv_rms"] == pytest.approx(np.sqrt(3.0)) and s["fwd_rms"] == pytest.approx(np.sqrt((1.0 + 0.875 * 2) / 2))
    files = []
    for i, c in enumerate(("a", "b")):
        p = tmp_path / f"{c}.json"
        p.write_text(json.dumps({"cls": c, "timestep": 600, **s, "roundtrip_images": 4, "roundtrip_top1": 0.5 * i,
                                 "fwd_mean_correct": bool(i), "fwd_mean_prob": 0.9, "top1:d3hr@ipc10": 0.8 + 0.1 * i}))
        files.append(str(p))
    df = diagnostics_frame(files)
    last = df.iloc[-1]
    assert last.cls == "all classes" and last.roundtrip_top1 == 0.25 and last.fwd_mean_correct == 0.5
    assert last["top1:d3hr@ipc10"] == pytest.approx(0.85)
    diagnostics_table(files, str(tmp_path / "t.csv"), str(tmp_path / "t.md"))
    md = (tmp_path / "t.md").read_text()
    assert "| all classes |" in md and "d3hr@ipc10" in md and "85%" in md
    with pytest.raises(D3HRError):
        diagnostics_frame([])


def test_the_structure_is_stored_only_where_a_job_reads_it():
    """d3hr.config.structure_stored: the paper's setting stores no covariance factor or reference latents (so a change
    of select.timestep does not re-invert); a structured or MMD selection, a variant that runs with one, or the
    diagnostics' round trip does."""
    import copy

    from d3hr.config import structure_stored

    base = {"select": {"cov_rank": 0, "criterion": "moments"}, "diagnostics": {"enabled": False, "roundtrip_images": 20},
            "ablation": {"enabled": True, "variants": {"a": {"m": 10}}}, "evaluate": {"methods": ["d3hr"]}}
    assert not structure_stored(base)
    for path, value in ((("select", "cov_rank"), 4), (("select", "criterion"), "mmd"),
                        (("diagnostics", "enabled"), True)):
        cfg = copy.deepcopy(base)
        cfg[path[0]][path[1]] = value
        assert structure_stored(cfg), path
    cfg = copy.deepcopy(base) | {"diagnostics": {"enabled": True, "roundtrip_images": 0}}
    assert not structure_stored(cfg)
    cfg = copy.deepcopy(base)
    cfg["ablation"]["variants"]["b"] = {"criterion": "mmd"}
    assert structure_stored(cfg)
    cfg["ablation"]["enabled"] = False  # variants that do not run read nothing
    assert not structure_stored(cfg)
    cfg["ablation"]["enabled"], cfg["evaluate"]["methods"] = True, []  # nor without students
    assert not structure_stored(cfg)
