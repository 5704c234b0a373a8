"""Config validation: the shipped configs pass; out-of-range values fail with the key named (property-based)."""

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from d3hr import D3HRError
from d3hr.config import check_semantics, validate_schema
from d3hr.data import load_image

REPO = Path(__file__).resolve().parent.parent
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def check(cfg):
    return check_semantics(validate_schema(copy.deepcopy(cfg)))


def with_(path, value):
    cfg = copy.deepcopy(DEFAULT)
    d = cfg
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    return cfg


def test_default_config_is_valid():
    check(DEFAULT)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-5, 0), min_size=1, max_size=3))
def test_ipc_below_one_is_rejected(bad):
    with pytest.raises(D3HRError, match="select/ipc"):
        check(with_(("select", "ipc"), [10] + bad))


@settings(max_examples=40, deadline=None)
@given(st.integers(-10**6, 0))
def test_m_below_one_is_rejected(m):
    with pytest.raises(D3HRError, match="select/m"):
        check(with_(("select", "m"), m))


@settings(max_examples=40, deadline=None)
@given(st.floats(-10, 0.999, allow_nan=False))
def test_guidance_below_one_is_rejected(w):
    with pytest.raises(D3HRError, match="invert/guidance_scale"):
        check(with_(("invert", "guidance_scale"), w))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 999))
def test_timesteps_must_be_on_the_grid(t):
    cfg = with_(("invert", "keep_timesteps"), sorted({t, 600}))
    cfg["figures"]["timestep_ablation"]["timesteps"] = None  # every kept timestep
    if t % 20 == 0:
        check(cfg)
    else:
        with pytest.raises(D3HRError, match="not on the 50-step DDIM grid"):
            check(cfg)


def test_selected_timestep_must_be_kept_and_students_must_exist():
    with pytest.raises(D3HRError, match="select.timestep=620"):
        check(with_(("select", "timestep"), 620) | {"invert": {**DEFAULT["invert"], "keep_timesteps": [600]}})
    with pytest.raises(D3HRError, match=r"figures.timestep_ablation.timesteps \[480, 680, 760\] are not in"):
        check(with_(("invert", "keep_timesteps"), [600]))
    with pytest.raises(D3HRError, match="ablation.ipc=7 is not in select.ipc"):
        check(with_(("ablation", "ipc"), 7))
    with pytest.raises(D3HRError, match=r"evaluate.methods: unknown \['d4m'\]; the methods \(d3hr/methods.py\) are"):
        check(with_(("evaluate", "methods"), ["d3hr", "d4m"]))
    with pytest.raises(D3HRError, match="unknown classifier architecture 'resnet_999'"):
        check(with_(("evaluate", "students"), ["resnet_999"]))
    check(with_(("evaluate", "students"), ["resnet18", "mobilenetv2_100", "convnet"]))
    # lr 0: the authors' rate per student, which a student without one cannot use
    deit = with_(("evaluate", "students"), ["deit_tiny_patch16_224"])
    with pytest.raises(D3HRError, match="no learning rate for student 'deit_tiny_patch16_224': set evaluate.lr"):
        check(deit | {"evaluate": {**deit["evaluate"], "lr": 0}})
    check(deit | {"evaluate": {**deit["evaluate"], "lr": 5e-4}})


def test_grid_ipc_is_checked_only_when_figures_are_made():
    """figures.grid_ipc names an IPC of the sample grids: with figures off, a run at other IPCs is valid."""
    with pytest.raises(D3HRError, match=r"figures.grid_ipc=10 is not in select.ipc \[1\]"):
        check(with_(("select", "ipc"), [1]) | {"ablation": {**DEFAULT["ablation"], "ipc": 1}})
    off = with_(("select", "ipc"), [1]) | {"ablation": {**DEFAULT["ablation"], "ipc": 1}}
    check(off | {"figures": {**DEFAULT["figures"], "enabled": False}})


def test_student_names_are_checked_without_torch_from_a_cache_of_timm_names(tmp_path):
    from d3hr.archs import LOCAL_ARCHS, check_arch_name, timm_model_names
    from d3hr.nets import create_classifier

    for arch in LOCAL_ARCHS:  # the torch-free list names only what nets.py builds
        assert create_classifier(arch, 3, resolution=32) is not None
    names = timm_model_names(tmp_path)
    assert "resnet18" in names and len(list(tmp_path.glob("timm-*-models.txt"))) == 1
    assert check_arch_name("resnet18.a1_in1k", tmp_path) == "resnet18.a1_in1k"  # a pretrained tag
    with pytest.raises(D3HRError, match="unknown classifier architecture 'resnet_999'"):
        check_arch_name("resnet_999", tmp_path)
    # the cache is what is read: a name written into it is accepted, one removed from it is not
    cache = next(tmp_path.glob("timm-*-models.txt"))
    cache.write_text("made_up_net\n")
    assert check_arch_name("made_up_net", tmp_path) == "made_up_net"
    with pytest.raises(D3HRError, match="'resnet18'"):
        check_arch_name("resnet18", tmp_path)


@pytest.mark.parametrize("names", [["../x"], ["a/b"], [".."], []])
def test_class_names_that_could_leave_the_results_folder_are_rejected(names):
    cfg = with_(("datasets", "animal_mnist", "classes"), names)
    with pytest.raises(D3HRError, match="datasets/animal_mnist/classes"):
        check(cfg)


def test_unknown_keys_are_rejected():
    with pytest.raises(D3HRError, match="select"):
        check(with_(("select", "nmber_of_groups"), 5))


MODES = ["L", "RGB", "RGBA", "CMYK", "P", "I;16", "LA"]


@settings(max_examples=60, deadline=None)
@given(w=st.integers(1, 70), h=st.integers(1, 70), mode=st.sampled_from(MODES), res=st.sampled_from([8, 16, 32]),
       channels=st.sampled_from([1, 3]), fmt=st.sampled_from(["png", "tiff"]), seed=st.integers(0, 1000))
def test_image_loader_any_size_and_mode(tmp_path_factory, w, h, mode, res, channels, fmt, seed):
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 4), dtype=np.uint8)
    im = Image.fromarray(arr, "RGBA")
    if mode == "I;16":
        im = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
    elif mode != "RGBA":
        im = im.convert(mode)
    if mode == "CMYK" and fmt == "png":
        fmt = "tiff"  # PNG has no CMYK
    p = tmp_path_factory.mktemp("img") / f"x.{fmt}"
    im.save(p)
    out = load_image(p, res, channels)
    assert out.shape == (res, res, channels) and out.dtype == np.uint8


def test_config_readme_describes_every_schema_key():
    """config/README.md is generated from the schema (`make config-readme`); every leaf key has a description."""
    from d3hr.config import SCHEMA, _schema_leaves, schema_markdown

    schema = yaml.safe_load(SCHEMA.read_text())
    leaves = list(_schema_leaves(schema, "", schema["definitions"]))
    assert len(leaves) > 60 and not [k for k, node in leaves if not node.get("description")]
    assert (REPO / "config" / "README.md").read_text() == schema_markdown(), "run `make config-readme`"
    assert "| `select.m` | integer | >= 1 | required |" in schema_markdown()


def test_cli_examples_in_the_docs_parse():
    """docs/configuration.md's `d3hr <stage>` examples name every required flag (the CLI has no defaults of its own
    for what the workflow sets), so each parses."""
    import shlex

    from d3hr.cli import build_parser

    text = (REPO / "docs" / "configuration.md").read_text()
    start = text.index("```bash\nd3hr encode") + len("```bash\n")
    lines = text[start : text.index("```", start)].replace("\\\n", " ").strip().split("\n")
    assert len(lines) >= 10
    parser = build_parser()
    for line in lines:
        parser.parse_args(shlex.split(line.split("   #")[0])[1:])  # SystemExit on a missing flag
