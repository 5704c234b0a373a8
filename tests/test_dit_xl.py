"""DiT-XL/2-256 and the Stable Diffusion VAE, built from their published configurations with random weights (nothing
downloaded): one batch of every GPU stage on the CPU, so that shapes, learned sigma, the null class 1000 and the
0.18215 scaling are right at the paper's scale. The stages run a DiT-XL/2 cut to 2 of its 28 blocks (every block is
the same code; the whole model is built, on the meta device, only to count its parameters): the 28 blocks made this
test 75 s of the suite's CPU time for nothing it checks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from d3hr.synthetic import DIT_XL_2_256


@pytest.fixture(scope="module")
def dit_xl_pipeline(tmp_path_factory):
    from diffusers import DiTTransformer2DModel

    from d3hr.synthetic import save_dit_xl_pipeline

    with torch.device("meta"):  # the published model: no memory, no initialisation
        n_params = sum(p.numel() for p in DiTTransformer2DModel(**DIT_XL_2_256).parameters())
    out = save_dit_xl_pipeline(tmp_path_factory.mktemp("dit_xl") / "DiT-XL-2-256", num_layers=2)
    return out, n_params


@pytest.mark.slow
def test_dit_xl2_runs_one_batch_of_each_gpu_stage(dit_xl_pipeline, tmp_path):
    from d3hr.decode import decode_class
    from d3hr.encode import encode_class
    from d3hr.group_sampling import select_class
    from d3hr.gaussian import fit_class
    from d3hr.invert import invert_class
    from d3hr.models import load_ldm

    pipe, n_params = dit_xl_pipeline
    # DiT-XL/2 has 675M parameters; diffusers' format keeps a copy of the timestep/class embedder in each of the 28
    # blocks (AdaLayerNormZero), about 2.7M each: 750M
    assert 745e6 < n_params < 755e6
    ldm = load_ldm(pipe, components=("transformer",))
    config = {k: v for k, v in ldm.transformer.config.items() if k in DIT_XL_2_256}
    assert {**config, "num_layers": 28} == DIT_XL_2_256 and config["num_layers"] == 2  # DiT-XL/2 but for its depth
    assert ldm.learned_sigma and ldm.null_label == 1000 and ldm.num_classes == 1000
    assert ldm.scaling_factor == pytest.approx(0.18215) and ldm.latent_size == 32 and ldm.latent_channels == 4

    cls = "n00000207"
    d = tmp_path / "train" / cls
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):  # odd sizes: resized (short side) and centre-cropped to 256
        Image.fromarray(rng.integers(0, 255, (300 + 10 * i, 280, 3), dtype=np.uint8)).save(d / f"{cls}_{i}.JPEG")
    lat = tmp_path / "latents.h5"  # the posterior mean (one VAE pass per image; sampling: tests/test_workflow.py)
    assert encode_class(d, pipe, lat, 256, 3, batch_size=2, sample_posterior=False, on_bad_image="error", seed=0, max_images=0,
                        device="cpu", model_precision="auto") == 2
    with h5py.File(lat) as f:
        z0 = f["latents"][:]
        assert z0.shape == (2, 4, 32, 32) and f.attrs["scaling_factor"] == pytest.approx(0.18215)
    # the latents carry the 0.18215 factor: z0 = s * E(x)
    from d3hr.data import load_image, to_model_range
    from d3hr.device import model_dtype

    vae = load_ldm(pipe, dtype=model_dtype("cpu", "auto"), components=("vae",)).vae  # as encode loads it
    x = to_model_range(np.stack([load_image(d / f"{cls}_0.JPEG", 256, 3)])).to(vae.dtype)
    with torch.no_grad():
        mean = vae.encode(x).latent_dist.mean.float() * 0.18215
    got = torch.from_numpy(z0[:1])
    if vae.dtype == torch.float32:
        assert torch.allclose(mean, got, atol=1e-3)
    else:  # bf16 weights (model_precision auto on a CPU with native bf16): 28 convolutions' rounding, batch 2 vs 1
        rel = float((mean - got).norm() / mean.norm())
        assert rel < 0.05, rel  # without the factor (or with it twice) the norms differ 5.5x

    inv = tmp_path / "inverted.h5"
    # one DDIM step up and one down (each a guided DiT-XL/2 pass at batch 2): the forwards are most of this test
    invert_class(lat, pipe, inv, cls, 207, [20], num_steps=50, guidance=4.0, batch_size=2, store=True,
                 structure_timestep=20, cov_rank=4, reference_images=2, device="cpu", model_precision="auto",
                 compile="never")
    with h5py.File(inv) as f:
        assert f["t20"].shape == (2, 4, 32, 32) and f.attrs["null_label"] == 1000 and f.attrs["label"] == 207
        # 2 latents: a covariance of rank 1 at most, whatever invert.cov_rank asks; the reference holds both
        assert f["stats/t20/cov_factor"].shape == (4 * 32 * 32, 1) and f["stats/t20/reference"].shape == (2, 4096)
        assert np.isfinite(f["t20"][:]).all()
    gauss = tmp_path / "gaussian.h5"
    fit_class(inv, lat, gauss)
    sel = tmp_path / "selected.h5"
    select_class(gauss, sel, ipc=2, m=20, timestep=20, seed=0, l_mu=1.0, l_sigma=1.0, l_skew=0.5, skew_mode="paper",
                 chunk_groups=10, where="cpu", cov_rank=0, rescale="none", criterion="moments", threads=1)
    images = decode_class(sel, pipe, tmp_path / "images", guidance=4.0, num_steps=50, batch_size=2,
                          latents_name="latents", start="inverted", device="cpu", model_precision="auto", compile="never",
                          resize=224)
    assert images.shape == (2, 256, 256, 3) and images.dtype == np.uint8
    pngs = sorted((tmp_path / "images").glob("*.png"))
    assert len(pngs) == 2 and Image.open(pngs[0]).size == (224, 224)
