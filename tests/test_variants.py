"""Ablation variants (rules/ablation.smk): a variant changes one setting and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import make_dataset


@pytest.fixture(scope="module")
def class_files(tiny_pipeline, tmp_path_factory):
    from d3hr.encode import encode_class
    from d3hr.gaussian import fit_class
    from d3hr.invert import invert_class

    tmp = tmp_path_factory.mktemp("variants")
    root = make_dataset(tmp / "data", classes=("cat", "dog"), n_train=6)
    lat, inv, gauss = tmp / "lat.h5", tmp / "inv.h5", tmp / "gauss.h5"
    encode_class(root / "train" / "dog", tiny_pipeline, lat, 16, 3, batch_size=4, seed=0)
    invert_class(lat, tiny_pipeline, inv, "dog", 1, [300, 500], num_steps=10, guidance=2.0, batch_size=4)
    fit_class(inv, lat, gauss)
    return tmp, lat, gauss


def _pngs(folder):
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_a_variant_with_the_main_settings_gives_d3hrs_images_and_each_change_changes_them(tiny_pipeline, class_files):
    from d3hr.decode import decode_class
    from d3hr.group_sampling import Weights, select_class
    from d3hr.variants import variant_class

    tmp, lat, gauss = class_files
    w = Weights()
    select_class(gauss, tmp / "sel.h5", ipc=3, m=200, timestep=500, seed=0, weights=w, chunk_groups=50, threads=1)
    decode_class(tmp / "sel.h5", tiny_pipeline, tmp / "d3hr", guidance=2.0, num_steps=10, batch_size=8)
    main = dict(ipc=3, seed=0, timestep=500, m=200, weights=w, skew_mode="paper", chunk_groups=50, decode_guidance=2.0,
                decode_start="inverted", invert_guidance=2.0, batch_size=8)
    variant_class(lat, gauss, tiny_pipeline, tmp / "same", **main)
    assert np.array_equal(_pngs(tmp / "same"), _pngs(tmp / "d3hr"))
    changes = {"above": dict(decode_start="above"), "cfg1": dict(invert_guidance=1.0), "m3": dict(m=3),
               "code": dict(skew_mode="code", weights=Weights(skew=5.0))}
    for name, change in changes.items():
        sel = variant_class(lat, gauss, tiny_pipeline, tmp / name, **(main | change))
        assert len(list((tmp / name).glob("*.png"))) == 3
        assert not np.array_equal(_pngs(tmp / name), _pngs(tmp / "d3hr")), name
    assert sel.latents.shape == (3, 4 * 8 * 8)
