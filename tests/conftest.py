"""Shared fixtures: a tiny image-folder dataset and a tiny random-weight DiT pipeline (nothing downloaded)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def make_dataset(root, classes=("cat", "dog"), n_train=6, n_val=3, size=16, seed=0):
    """Image folders {root}/{train,val}/{class}/*.png with class-dependent colour blobs."""
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        for split, n in (("train", n_train), ("val", n_val)):
            d = Path(root) / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4, k % 3] = 200 + rng.integers(0, 50)
                Image.fromarray(img).save(d / f"{c}_{i:03d}.png")
    return Path(root)


def make_pipeline(out, classes, resolution=16, seed=0, learn_sigma=False):
    """A tiny DiTPipeline (VAE factor 2, 8x8x4 latents, 2-layer DiT) with random weights."""
    from d3hr.models import build_dit, build_scheduler, build_vae, save_pipeline

    torch.manual_seed(seed)
    vae = build_vae(3, 4, (8, 8), layers_per_block=1, norm_num_groups=4, sample_size=resolution)
    dit = build_dit(len(classes), resolution // 2, 4, learn_sigma=learn_sigma, hidden_size=32, num_heads=2, num_layers=2)
    save_pipeline(out, dit, vae, build_scheduler(), classes)
    return Path(out)


def make_teacher(out, classes, resolution=16):
    from d3hr.nets import create_classifier, save_classifier

    torch.manual_seed(0)
    model = create_classifier("resnet_tiny", len(classes), 3, True, resolution)
    save_classifier(out, model, {"arch": "resnet_tiny", "num_classes": len(classes), "in_chans": 3,
                                 "small_input": True, "resolution": resolution, "classes": list(classes)})
    return Path(out)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    return make_pipeline(tmp_path_factory.mktemp("models") / "pipeline", ["cat", "dog"])


TEST_CONFIG = REPO / ".test" / "config.yaml"  # the tiny test configuration (the workflow catalog's place)


def tiny_config(root, pipeline, teacher, ipc=(1, 2), m=300, classes="all"):
    """.test/config.yaml with its dataset, pipeline and teacher at these paths (and the IPCs, m, classes given)."""
    import yaml

    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    ds = cfg["datasets"]["tiny"]
    ds.update(root=str(root), model=str(pipeline), teacher=str(teacher), classes=classes)
    cfg["select"].update(ipc=list(ipc), m=m)
    return cfg


def write_config(wd, cfg):
    import yaml

    (Path(wd) / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def copy_workflow(dst):
    Path(dst).mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "rules", "config", "envs", "profiles", "report"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, Path(dst) / name)
    return Path(dst)


def snakemake(workdir, *args, check=True, command=None):
    """Run snakemake (or `command`, a list that takes Snakemake's arguments) in workdir with this interpreter's
    environment; returns the CompletedProcess."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    p = subprocess.run([*(command or [str(BIN / "snakemake")]), *args], cwd=workdir, env=env, capture_output=True,
                       text=True)
    if check and p.returncode != 0:
        logs = "\n".join(f"--- {f}\n{f.read_text()[-3000:]}" for f in Path(workdir, "logs").rglob("*.log")) if Path(workdir, "logs").exists() else ""
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-5000:]}\n{p.stderr[-5000:]}\n{logs}")
    return p


def dry_run_jobs(workdir, *args):
    """The jobs `snakemake -n` would run, as (rule, {wildcard: value}) pairs."""
    p = snakemake(workdir, "-n", *args)
    jobs, rule = [], None
    for line in (p.stdout + p.stderr).splitlines():
        s = line.strip()
        if s.startswith("rule ") and s.endswith(":") or s.startswith("localrule ") and s.endswith(":"):
            rule = s.split()[1].rstrip(":")
            jobs.append((rule, {}))
        elif s.startswith("wildcards:") and jobs:
            for kv in s[len("wildcards:"):].split(","):
                k, _, v = kv.strip().partition("=")
                jobs[-1][1][k] = v
    return jobs


def build_tiny_workflow(wd, classes=("cat", "dog"), model_classes=("cat", "dog", "eel")):
    """A tiny workflow directory whose data and models live inside it, referenced by relative paths, so that a copy
    of a finished run (shutil.copytree keeps mtimes and .snakemake/) has nothing pending."""
    wd = copy_workflow(wd)
    make_dataset(wd / "inputs" / "data", classes=classes)
    make_pipeline(wd / "inputs" / "pipeline", list(model_classes))
    make_teacher(wd / "inputs" / "teacher.pt", list(model_classes))
    cfg = tiny_config("inputs/data", "inputs/pipeline", "inputs/teacher.pt")
    write_config(wd, cfg)
    return wd, cfg


def shared_tmp(tmp_path_factory) -> Path:
    """A folder of this test session: with pytest-xdist (`make test` runs `-n 2`), the one all workers share."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny workflow run to the end once per session (outputs, figures, tables), by whichever xdist worker asks
    first while the others wait for it. Read-only: copy it to change it."""
    import fcntl
    import yaml

    root = shared_tmp(tmp_path_factory) / "tiny_run"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wd, done = root / "wf", root / "config.done.yaml"
        if not done.is_file():
            shutil.rmtree(wd, ignore_errors=True)
            wd, cfg = build_tiny_workflow(wd)
            snakemake(wd, "--cores", "2")
            done.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return wd, yaml.safe_load(done.read_text())


def pytest_collection_modifyitems(config, items):
    """The slow tests first, the rest in their order: with `-n 2` the long ones start at once instead of finishing
    the run on one worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # two workers on two cores: one thread each for the tests' own torch work


def copy_run(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return Path(dst)


def make_fake_imagenet(root, n_classes=1000, size=8, n_train=1, n_val=1):
    """An ImageNet-shaped image-folder tree: n_classes wnid-like folders with n_train tiny JPEGs each in train and n_val
    in val (hard links of one file: a class needs at least max(select.ipc) images for random real images)."""
    root = Path(root)
    img = Image.fromarray(np.full((size, size, 3), 128, np.uint8))
    for k in range(n_classes):
        wnid = f"n{k:08d}"
        for split in ("train", "val"):
            d = root / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            img.save(d / f"{wnid}_0.JPEG")
            for i in range(1, n_train if split == "train" else n_val):
                os.link(d / f"{wnid}_0.JPEG", d / f"{wnid}_{i}.JPEG")
    return root


def imagenet_config(root, model, teacher) -> dict:
    """config/imagenet.yaml with the dataset, pipeline and teacher paths replaced."""
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "imagenet.yaml").read_text())
    cfg["datasets"]["imagenet"].update(root=str(root), model=str(model), teacher=str(teacher))
    return cfg
