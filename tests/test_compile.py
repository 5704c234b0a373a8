"""`compile`: the DiT and the students under torch.compile give the eager results within bf16 tolerance (on the CPU,
with tiny models: the same inductor graphs a GPU job compiles, there with Triton kernels instead of C++)."""

import numpy as np
import pytest
import torch

from d3hr.ddim import guided_eps, invert, sample, timestep_grid
from d3hr.compiling import COMPILES, compile_mode, compiled
from d3hr.evaluate import train_student
from d3hr.models import build_dit, build_scheduler
from d3hr.nets import create_classifier

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
BF16_TOL = 2**-8  # bf16's relative rounding step: compiled kernels reorder sums, they must not do worse


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    """A graph that fails to compile raises here (in a job it would run eagerly and pass these comparisons)."""
    monkeypatch.setenv("D3HR_COMPILE_STRICT", "1")


def test_compile_mode_rules():
    assert compile_mode(CPU, "auto") is None and compile_mode(CUDA, "auto") == "default"
    assert compile_mode(CUDA, "never") is None and compile_mode(CPU, "reduce-overhead") == "reduce-overhead"
    assert set(COMPILES) >= {"auto", "never", "default"}
    with pytest.raises(ValueError, match="unknown compile setting"):
        compile_mode(CPU, "yes")
    m = torch.nn.Linear(2, 2)
    assert compiled(m, "cpu", "auto") is m and compiled(m, "cpu", "never") is m
    assert compiled(m, "cpu", "default") is not m  # an explicit mode compiles on any device


def test_auto_compiles_only_jobs_whose_work_pays_for_it():
    """`auto` on a GPU weighs a job's images through the model against AUTO_MIN_WORK: an ImageNet class's inversion
    compiles, a decode job of one class does not; an explicit mode compiles whatever the work."""
    from d3hr.compiling import AUTO_MIN_WORK, dit_work

    invert_job, decode_job = dit_work(1281, 39, 4.0), dit_work(50, 31, 4.0)
    assert (invert_job, decode_job, dit_work(10, 31, 1.0)) == (1281 * 39 * 2, 50 * 31 * 2, 310)
    assert compile_mode(CUDA, "auto", invert_job) == "default" and compile_mode(CUDA, "auto", decode_job) is None
    assert compile_mode(CUDA, "auto", AUTO_MIN_WORK["dit"]) == "default"
    assert compile_mode(CUDA, "auto", AUTO_MIN_WORK["dit"] - 1) is None
    assert compile_mode(CUDA, "auto", 10**6, "student") is None and compile_mode(CUDA, "auto", 10**7, "student")
    assert compile_mode(CUDA, "default", 1) == "default" and compile_mode(CPU, "auto", 10**9) is None


def test_a_partial_last_batch_of_the_inversion_runs_eagerly(tmp_path, tiny_pipeline, monkeypatch):
    """A class's last batch has a size of its own: compiled, it would be a fresh compilation in nearly every job. The
    full batches go through the compiled DiT, the partial one through the eager module."""
    import d3hr.invert as inv
    from d3hr.h5io import write_h5

    seen = {"compiled": [], "eager": []}

    class Spy(torch.nn.Module):
        def __init__(self, inner, name):
            super().__init__()
            self.inner, self.name = inner, name

        @property
        def dtype(self):
            return self.inner.dtype

        def forward(self, z, **kw):
            seen[self.name].append(len(z))
            return self.inner(z, **kw)

    real_load = inv.load_ldm

    def load(*a, **kw):
        ldm = real_load(*a, **kw)
        ldm.transformer = Spy(ldm.transformer, "eager")
        return ldm

    monkeypatch.setattr(inv, "load_ldm", load)
    monkeypatch.setattr(inv, "compiled", lambda model, *a, **kw: Spy(model.inner, "compiled"))
    lat = tmp_path / "latents.h5"
    write_h5(lat, {"latents": np.random.default_rng(0).standard_normal((5, 4, 8, 8)).astype(np.float32),
                   "ids": np.array([f"cat_{i}.png" for i in range(5)], dtype=object)}, {"seed": 0})
    inv.invert_class(lat, tiny_pipeline, tmp_path / "inv.h5", "cat", 0, [200], num_steps=10, guidance=4.0,
                     batch_size=2, store=False, structure_timestep=-1, cov_rank=0, reference_images=0, device="cpu",
                     model_precision="auto", compile="default")
    steps = 3  # the 10-step grid's 0, 100, 200
    assert seen["compiled"] == [4] * (2 * steps)  # two full batches of 2, doubled by CFG, one forward a step
    assert seen["eager"] == [2] * steps  # the last image alone (CFG: 2 rows), eagerly


def rel(a, b):
    return float((a - b).norm() / b.norm())


def test_compiled_dit_matches_eager():
    torch.manual_seed(0)
    dit = build_dit(3, 8, 4, hidden_size=32, num_heads=2, num_layers=2).eval()
    with torch.no_grad():  # adaLN-Zero starts at zero: perturb, so that every block does work
        for p in dit.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    fast = compiled(dit, "cpu", "default")
    assert torch._dynamo.config.suppress_errors is False
    grid, ac = timestep_grid(1000, 10), build_scheduler().alphas_cumprod.to(torch.float64)
    z = torch.randn(5, 4, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1])
    e0, e1 = (guided_eps(m, z, 500, y, 3, 4.0) for m in (dit, fast))  # one static graph: the CFG batch of 10
    assert rel(e1, e0) < BF16_TOL, rel(e1, e0)
    # the whole inversion and the sampling back: 4 guided steps each
    zt0 = invert(dit, z, y, ac, grid, [300], 3, 4.0)[300]
    zt1 = invert(fast, z, y, ac, grid, [300], 3, 4.0)[300]
    assert rel(zt1, zt0) < BF16_TOL, rel(zt1, zt0)
    back0, back1 = (sample(m, zt0, 300, y, ac, grid, 3, 4.0) for m in (dit, fast))
    assert rel(back1, back0) < BF16_TOL, rel(back1, back0)


def test_compiled_student_trains_like_eager():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)  # 2 full batches an epoch: one training graph
    y = rng.integers(0, 4, 32)
    runs = {}
    for mode in ("never", "default"):
        student = create_classifier("convnet_tiny", 4, 3, resolution=16, seed=0)
        teacher = create_classifier("resnet_tiny", 4, 3, resolution=16, seed=1)
        res = train_student(student, teacher, x, y, (x[:16], y[:16]), steps=6, batch_size=16, lr=1e-2, weight_decay=0.01, seed=0,
                            epochs=3, precision="fp32", compile=mode)
        runs[mode] = (res, torch.cat([p.detach().flatten() for p in student.parameters()]))
    (eager, w0), (comp, w1) = runs["never"], runs["default"]
    assert eager["compile"] == "eager" and comp["compile"] == "default"
    # 6 optimiser steps of the same draws: the weights agree to bf16 tolerance, the losses to float rounding
    assert rel(w1, w0) < BF16_TOL, rel(w1, w0)
    assert abs(comp["loss_first"] - eager["loss_first"]) < 1e-3 * abs(eager["loss_first"])
    assert [e["step"] for e in comp["evals"]] == [e["step"] for e in eager["evals"]]
