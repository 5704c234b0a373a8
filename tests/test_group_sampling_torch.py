"""Group sampling's torch path (d3hr/group_sampling.py): the same scores as the numpy reference on the same groups, a
selection that is deterministic and independent of the sub-chunk size, and `select` jobs on the CPU without torch."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from d3hr import D3HRError
from d3hr.group_sampling import Weights, group_scores, group_scores_torch, select_class, select_group
from d3hr.h5io import open_h5, read_attrs, write_h5
from d3hr.seeds import derive_seed

torch = pytest.importorskip("torch")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["paper", "code"])
@pytest.mark.parametrize("n", [1, 2, 10])
def test_torch_scores_equal_numpy_scores(device, mode, n):
    rng = np.random.default_rng(n)
    g, d = 64, 256
    e = rng.standard_normal((g, n, d), dtype=np.float32)
    sigma = rng.uniform(0.2, 2.0, size=d).astype(np.float32)
    w = Weights(1.0, 0.7, 0.3)
    ref = group_scores(e, sigma, w, mode)
    et = torch.from_numpy(e).to(device)
    ours = group_scores_torch(et, torch.from_numpy(sigma).to(device), w, mode)
    assert ours.dtype == torch.float32 and ours.shape == (g,)
    np.testing.assert_allclose(ours.cpu().numpy(), ref, rtol=1e-5)
    assert int(ours.argmin()) == int(np.argmin(ref))
    assert np.array_equal(et.cpu().numpy(), e)  # the draws are left as they are (the winner is read from them)
    with pytest.raises(ValueError):
        group_scores_torch(et, torch.from_numpy(sigma).to(device), w, "other")


def _gaussian(d=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=d).astype(np.float32), rng.uniform(0.1, 3.0, size=d).astype(np.float32)


def _chunk_draws(seed, key, ipc, c, size, d, block):
    """A chunk's standard normals as the torch path draws them on the CPU: its own seed, `block` groups per call."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "select", *key, ipc, c))
    e = torch.empty((size, ipc, d))
    for b0 in range(0, size, block):
        e[b0 : b0 + block].normal_(generator=gen)
    return e.numpy()


@pytest.mark.parametrize("ipc", [1, 4])
def test_torch_path_is_deterministic_and_independent_of_the_sub_chunk_size(ipc):
    """torch's normals are no stream (a call of k values does not continue where the previous one stopped unless k is a
    multiple of 16 on the CPU; on CUDA never): with d = 45 and 5 groups per call, drawing a sub-chunk in one call
    would make the result depend on the sub-chunk size. Chunks of 998 groups end with a partial call."""
    mu, var = _gaussian(d=45)
    d, w, block, cg = mu.size, Weights(1.0, 0.8, 0.4), 5, 998
    kw = dict(ipc=ipc, m=2_500, seed=7, key=("x",), weights=w, chunk_groups=cg, draw_groups=block,
              device=torch.device("cpu"))
    runs = [select_group(mu, var, max_sub_bytes=ipc * d * 4 * k, **kw) for k in (1, 16, 48, 10**6)]
    runs.append(select_group(mu, var, **kw))  # the default sub-chunk (8 MiB: the whole chunk here)
    a = runs[0]
    for b in runs[1:]:
        assert a.latents.tobytes() == b.latents.tobytes() and a.random_latents.tobytes() == b.random_latents.tobytes()
        assert a.scores_head.tobytes() == b.scores_head.tobytes() and a.chunk_best.tobytes() == b.chunk_best.tobytes()
        assert (a.score, a.chunk, a.index, a.random_score) == (b.score, b.chunk, b.index, b.random_score)
    assert a.scores_head.shape == (2_500,) and a.chunk_best.shape == (3,)
    assert a.score == float(np.nanmin(a.scores_head)) == float(a.chunk_best.min())
    assert a.score == float(a.scores_head[a.chunk * cg + a.index])
    assert a.random_score == float(a.scores_head[0]) and a.score < np.median(a.scores_head)
    c = select_group(mu, var, **(kw | dict(seed=8)))
    k = select_group(mu, var, **(kw | dict(key=("y",))))
    assert not np.array_equal(a.latents, c.latents) and not np.array_equal(a.latents, k.latents)
    # the candidates: each chunk from its derived seed; numpy scores them as the torch path did, and picks the same one
    sigma = np.sqrt(var.astype(np.float64)).astype(np.float32)
    sizes = (cg, cg, 2_500 - 2 * cg)
    draws = np.concatenate([_chunk_draws(7, ("x",), ipc, c, size, d, block) for c, size in enumerate(sizes)])
    ref = group_scores(draws, sigma, w)
    np.testing.assert_allclose(a.scores_head, ref, rtol=1e-5)
    assert int(np.argmin(ref)) == a.chunk * cg + a.index
    winner = draws[a.chunk * cg + a.index]
    assert float(group_scores(winner[None], sigma, w)[0]) == pytest.approx(a.score, rel=1e-5)
    np.testing.assert_allclose(a.latents, mu + sigma * winner, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.random_latents, mu + sigma * draws[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_a_nan_score_never_wins(device, monkeypatch):
    """IPC 2: a dimension where both members are equal (two zero draws) has std 0 and a NaN skewness. Such a group
    must not win, nor hide the best group of its sub-chunk (numpy's and torch's argmin return a NaN)."""
    import d3hr.group_sampling as gs

    name = "group_scores" if device is None else "group_scores_torch"
    real = getattr(gs, name)

    def with_nan(e, *a, **k):
        sc = real(e, *a, **k)
        sc[0] = float("nan")
        return sc

    monkeypatch.setattr(gs, name, with_nan)
    mu, var = _gaussian()
    sel = select_group(mu, var, ipc=2, m=300, seed=0, chunk_groups=300, threads=1, device=device)
    assert np.isnan(sel.scores_head[0]) and sel.score == float(np.nanmin(sel.scores_head))


def _gaussian_file(path, t=500, shape=(2, 2, 3)):
    rng = np.random.default_rng(0)
    d = int(np.prod(shape))
    write_h5(path, {f"t{t}/mean": rng.normal(size=d).astype(np.float32),
                    f"t{t}/var": rng.uniform(0.5, 1.5, size=d).astype(np.float32), "timesteps": np.array([t])},
             {"cls": "cat", "label": 0, "latent_shape": list(shape)})
    return path


SELECT_ARGS = ["--ipc", "2", "--m", "60", "--timestep", "500", "--seed", "0", "--l-mu", "1", "--l-sigma", "1",
               "--l-skew", "0.5", "--skew-mode", "paper", "--chunk-groups", "25", "--cov-rank", "0", "--rescale", "none",
               "--criterion", "moments"]


@pytest.mark.parametrize("where, env", [("cpu", {}), ("auto", {"CUDA_VISIBLE_DEVICES": ""})])
def test_select_on_the_cpu_imports_no_torch(tmp_path, where, env):
    """`d3hr select --where cpu` (and `auto` where no GPU is visible) runs the numpy path without importing torch,
    and its file says so."""
    import os

    g, out = _gaussian_file(tmp_path / "g.h5"), tmp_path / "s.h5"
    code = "import sys; from d3hr.cli import main; rc = main(sys.argv[1:]); print(rc, 'torch' in sys.modules)"
    args = ["select", "--gaussian", str(g), "--out", str(out), "--where", where, *SELECT_ARGS]
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                       env=os.environ | env)
    assert p.returncode == 0 and p.stdout.split()[-2:] == ["0", "False"], p.stdout + p.stderr
    assert "group sampling with numpy" in p.stderr
    with open_h5(out) as f:
        a = read_attrs(f)
        assert a["sampler"] == "numpy" and f["latents"].shape == (2, 2, 2, 3)
    ref = select_group(*_mean_var(g), 2, 60, 0, key=("cat",), chunk_groups=25)  # the numpy path's winner
    with open_h5(out) as f:
        assert f["latents"][:].tobytes() == ref.latents.reshape(2, 2, 2, 3).tobytes()


def _mean_var(path, t=500):
    with open_h5(path) as f:
        return f[f"t{t}/mean"][:], f[f"t{t}/var"][:]


def test_select_class_auto_uses_the_torch_path_on_a_leased_device(tmp_path, monkeypatch):
    """`where: auto` with a GPU: the device d3hr.device.pick_device leases, the torch path, `sampler` torch:<type>.
    (Played on the CPU: pick_device is stubbed to return torch's CPU device.)"""
    import d3hr.device
    import d3hr.group_sampling as gs

    leased = []
    monkeypatch.setattr(gs, "_no_gpu_here", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(d3hr.device, "pick_device", lambda prefer: leased.append(prefer) or torch.device("cpu"))
    g = _gaussian_file(tmp_path / "g.h5")
    kw = dict(ipc=2, m=60, timestep=500, seed=0, l_mu=1.0, l_sigma=1.0, l_skew=0.5, skew_mode="paper", chunk_groups=25,
              cov_rank=0, rescale="none", criterion="moments")
    sel = select_class(str(g), str(tmp_path / "s.h5"), where="auto", **kw)
    assert leased == ["auto"]
    with open_h5(tmp_path / "s.h5") as f:
        assert read_attrs(f)["sampler"] == "torch:cpu"
    ref = select_group(*_mean_var(g), 2, 60, 0, key=("cat",), chunk_groups=25, device="cpu")
    assert sel.latents.tobytes() == ref.latents.tobytes()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto without a GPU: numpy
    sel = select_class(str(g), str(tmp_path / "n.h5"), where="auto", **kw)
    with open_h5(tmp_path / "n.h5") as f:
        assert read_attrs(f)["sampler"] == "numpy" and leased == ["auto"]
    ref = select_group(*_mean_var(g), 2, 60, 0, key=("cat",), chunk_groups=25)
    assert sel.latents.tobytes() == ref.latents.tobytes()


def test_select_class_cuda_without_a_gpu_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    g = _gaussian_file(tmp_path / "g.h5")
    with pytest.raises(D3HRError, match="cuda"):
        select_class(str(g), str(tmp_path / "s.h5"), ipc=2, m=60, timestep=500, seed=0, l_mu=1.0, l_sigma=1.0,
                     l_skew=0.5, skew_mode="paper", chunk_groups=25, where="cuda", cov_rank=0,
                     rescale="none", criterion="moments")
    assert not (tmp_path / "s.h5").exists()


def test_no_gpu_is_decided_without_torch_where_it_is_certain(monkeypatch):
    """`where: auto` skips the torch import where no GPU can be seen: CUDA_VISIBLE_DEVICES empty, a SLURM job given
    no GPU (SLURM sets CUDA_VISIBLE_DEVICES for the GPUs it allocates), or no GPU device node."""
    import d3hr.group_sampling as gs

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gs._no_gpu_here() and gs.sampling_device("auto") is None
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gs._no_gpu_here()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(gs.os.path, "exists", lambda p: p == "/dev/nvidiactl")
    assert not gs._no_gpu_here()
    monkeypatch.setattr(gs.os.path, "exists", lambda p: False)
    assert gs._no_gpu_here() == sys.platform.startswith("linux")
    assert gs.sampling_device("cpu") is None
    with pytest.raises(D3HRError):
        gs.sampling_device("gpu")
