"""Reliability: determinism of whole runs, a job killed mid-write, streaming memory, bad inputs through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config, write_config, BIN, copy_workflow, make_dataset, make_pipeline, make_teacher, snakemake


def outputs_digest(results: Path) -> dict:
    """sha256 of every HDF5 file's datasets and attributes, and of every PNG's bytes, by relative path."""
    out = {}
    for p in sorted(results.rglob("*")):
        if p.suffix == ".h5":
            h = hashlib.sha256()
            def add(name, obj):
                h.update(name.encode())
                if isinstance(obj, h5py.Dataset):
                    v = obj[()]
                    # object arrays (strings) hold pointers: hash their values, not their bytes
                    h.update(repr(v.tolist()).encode() if getattr(v, "dtype", None) == object else np.asarray(v).tobytes())

            with h5py.File(p) as f:
                f.visititems(add)
                for k in sorted(f.attrs):
                    h.update(k.encode() + str(f.attrs[k]).encode())
            out[str(p.relative_to(results))] = h.hexdigest()
        elif p.suffix == ".png":
            out[str(p.relative_to(results))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def setup_wf(tmp_path, name, root, pipe, teacher, **kw):
    wd = copy_workflow(tmp_path / name)
    cfg = tiny_config(root, pipe, teacher, **kw)
    cfg.pop("evaluate")
    cfg["figures"] = {"enabled": False}
    write_config(wd, cfg)
    return wd


@pytest.fixture()
def tiny_models(tmp_path):
    root = make_dataset(tmp_path / "data", classes=("cat", "dog"), n_train=12)
    pipe = make_pipeline(tmp_path / "models" / "pipeline", ["cat", "dog"])
    teacher = make_teacher(tmp_path / "models" / "teacher.pt", ["cat", "dog"])
    return root, pipe, teacher


@pytest.mark.slow
def test_two_runs_are_identical_and_a_killed_invert_leaves_nothing(tmp_path, tiny_models):
    root, pipe, teacher = tiny_models
    a = setup_wf(tmp_path, "a", root, pipe, teacher)
    snakemake(a)
    # second run, with an invert job killed (SIGKILL, whole process group) while its HDF5 file is being written
    b = setup_wf(tmp_path, "b", root, pipe, teacher)
    snakemake(b, "results/tiny/latents/cat.h5")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "results/tiny/inverted/cat.h5"], cwd=b, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    inv = b / "results/tiny/inverted"
    deadline = time.time() + 120
    while not (inv.is_dir() and any(p.name.startswith(".cat.h5.tmp-") for p in inv.iterdir())):
        assert time.time() < deadline and proc.poll() is None, "the invert job never started writing"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (inv / "cat.h5").exists()  # nothing Snakemake would take as complete
    snakemake(b, "--unlock")  # a SIGKILLed snakemake leaves its directory lock behind
    snakemake(b, "--rerun-incomplete")
    da, db = outputs_digest(a / "results"), outputs_digest(b / "results")
    assert len(da) > 10 and da == db
    # and the raw HDF5 bytes of the interrupted-and-rerun inversion equal the uninterrupted one
    assert (a / "results/tiny/inverted/cat.h5").read_bytes() == (b / "results/tiny/inverted/cat.h5").read_bytes()


def _peak_rss_mb(args):
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    return float(subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True).stdout)


@pytest.mark.slow
def test_encode_memory_does_not_grow_with_the_class(tmp_path):
    """Encoding streams batches: 25x more images (of 64x64, 98 MB as float32 at 2,500) cost no more memory than
    a few batches. Measured here: +2..33 MB between 100 and 1,000 images (allocator noise, the larger in a full
    suite run); a version that holds the class in memory takes +45 MB per 1,000 images, +110 MB at 2,500."""
    pipe = make_pipeline(tmp_path / "pipe", ["big"], resolution=64)
    rng = np.random.default_rng(0)
    for n in (100, 2500):
        d = tmp_path / f"c{n}" / "big"
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / f"{i:05d}.png", compress_level=0)
    peak = {n: _peak_rss_mb([str(BIN / "d3hr"), "encode", "--pipeline", str(pipe), "--class-dir", str(tmp_path / f"c{n}" / "big"),
                             "--resolution", "64", "--batch-size", "32", "--device", "cpu", "--channels", "3", "--seed", "0",
                             "--on-bad-image", "error", "--sample-posterior", "--model-precision", "auto", "--max-images", "0",
                             "--out", str(tmp_path / f"{n}.h5")])
            for n in (100, 2500)}
    with h5py.File(tmp_path / "2500.h5") as f:
        assert f["latents"].shape == (2500, 4, 32, 32) and f["latents"].chunks is not None and f["latents"].compression == "gzip"
    assert peak[2500] - peak[100] < 45, peak


@pytest.mark.slow
def test_evaluate_memory_does_not_grow_with_the_validation_split_or_the_distilled_set(tmp_path):
    """The validation split is prepared once (uint8 HDF5) and read one batch at a time, and a distilled set above the
    host limit (D3HR_EVAL_HOST_MB, lowered here to 1 MB) is streamed through a uint8 HDF5 file: 12x more validation
    images (6,000 of 64x64: 74 MB as uint8, 295 MB as float32) or 10x more training images (4,000: 49 MB as uint8,
    197 MB as float32) cost an evaluation job no more memory than a few batches. Measured here: +20..32 MB between
    500 and 3,000 validation images (allocator noise); a version that loads the whole split, as evaluate did before,
    takes +150 MB (the uint8 array and its list of images) or more, one that holds the training set as float32 +200 MB."""
    make_teacher(tmp_path / "teacher.pt", ["a", "b"], resolution=64)
    rng = np.random.default_rng(0)

    def folders(name, n):
        dirs = []
        for c in ("a", "b"):
            d = tmp_path / name / c
            d.mkdir(parents=True)
            for i in range(n // 2):
                Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / f"{i:05d}.png",
                                                                                          compress_level=0)
            dirs.append(d)
        return dirs

    vals = {}
    for n in (500, 6000):
        vals[n] = tmp_path / f"val{n}.h5"
        p = _d3hr("prepare-val", "--val-dirs", *folders(f"val{n}", n), "--labels", 0, 1, "--resolution", 64,
                  "--channels", 3, "--crop", 1.0, "--out", vals[n])
        assert p.returncode == 0, p.stderr
    trains = {n: folders(f"train{n}", n) for n in (400, 4000)}

    def peak(n_train, n_val):
        out = tmp_path / f"eval-{n_train}-{n_val}.json"
        mb = _peak_rss_mb(["env", "D3HR_EVAL_HOST_MB=1", str(BIN / "d3hr"), "evaluate", "--class-dirs",
                           *map(str, trains[n_train]), "--val", str(vals[n_val]), "--labels", "0", "1",
                           "--teacher", str(tmp_path / "teacher.pt"), "--student", "convnet_tiny", "--method", "m",
                           "--ipc", "5", "--resolution", "64", *map(str, _eval_flags(batch_size=4, threads=1)),
                           "--out", str(out)])
        res = json.loads(out.read_text())
        assert res["n_val_images"] == n_val and res["n_train_images"] == n_train
        assert res["train_set"] == "HDF5, one batch at a time"
        return mb

    base, more_val, more_train = peak(400, 500), peak(400, 6000), peak(4000, 500)
    assert more_val - base < 45 and more_train - base < 45, (base, more_val, more_train)


def _flags(**kw):
    return [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", v)]


ENCODE = _flags(channels=3, batch_size=4, seed=0, on_bad_image="error", model_precision="auto", max_images=0) + [
    "--sample-posterior"]


def _eval_flags(**kw):
    """The evaluate flags the workflow always sets, with test values (`batch_size=4` for --batch-size 4)."""
    return _flags(**{"seed": 0, "channels": 3, "epochs": 1, "steps": 2, "batch_size": 0, "lr": 0,
                     "weight_decay": 0.01, "mix": "cutmix", "temperature": 0, "device": "cpu", "schedule": "authors",
                     "precision": "auto", "min_steps": 0, "builder": "timm", "compile": "never", **kw})


def _d3hr(*args):
    return subprocess.run([str(BIN / "d3hr"), *map(str, args)], capture_output=True, text=True)


def _cli(*args):
    """`d3hr ARGS` run by the CLI's `main` in this process (a new process pays seconds of imports), as a
    CompletedProcess: the exit status `d3hr` would return (2 for a D3HRError, argparse's for bad flags, 1 for any other
    exception) and what it wrote to stderr."""
    import contextlib
    import io
    import traceback

    from d3hr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # as the interpreter exits: None is 0, a message goes to stderr with status 1
            rc = e.code if isinstance(e.code, int) else 0 if e.code is None else print(e.code, file=sys.stderr) or 1
        except Exception:  # noqa: BLE001 - what the interpreter would print before exiting with 1
            traceback.print_exc()
            rc = 1
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def test_cli_errors_name_the_file_and_write_nothing(tmp_path, tiny_pipeline):
    make_dataset(tmp_path / "d", classes=("cat",), n_train=3)
    cls = tmp_path / "d" / "train" / "cat"
    (cls / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = tmp_path / "out" / "cat.h5"
    p = _d3hr("encode", "--pipeline", tiny_pipeline, "--class-dir", cls, "--resolution", 16, "--device", "cpu", *ENCODE,
              "--out", out)  # a process: the installed command's exit status
    assert p.returncode == 2 and "zz_broken.png: cannot read image" in p.stderr
    assert not out.exists() and not list(out.parent.glob("*.h5"))
    p = _cli("encode", "--pipeline", tiny_pipeline, "--class-dir", cls, "--resolution", 16, "--device", "cpu", *ENCODE,
             "--out", out, "--on-bad-image", "skip")
    assert p.returncode == 0 and "skipped" in p.stderr
    with h5py.File(out) as f:
        assert f["latents"].shape[0] == 3 and f.attrs["n_skipped"] == 1
    # a folder that is not a pipeline, a wrong resolution, NaN latents
    p = _cli("encode", "--pipeline", tmp_path, "--class-dir", cls, "--resolution", 16, "--device", "cpu", *ENCODE,
             "--out", tmp_path / "x.h5")
    assert p.returncode == 2 and "not a diffusers pipeline directory" in p.stderr
    p = _cli("encode", "--pipeline", tiny_pipeline, "--class-dir", cls, "--resolution", 32, "--device", "cpu", *ENCODE,
             "--out", tmp_path / "y.h5", "--on-bad-image", "skip")
    assert p.returncode != 0 and "resolution" in p.stderr and not (tmp_path / "y.h5").exists()
    with h5py.File(out, "r+") as f:
        f["latents"][1, 0, 0, 0] = np.nan
    p = _cli("invert", "--pipeline", tiny_pipeline, "--latents", out, "--cls", "cat", "--label", 0, "--timesteps", 600,
             "--out", tmp_path / "inv.h5", "--device", "cpu",
             *_flags(batch_size=4, num_steps=50, guidance=4.0, model_precision="auto", compile="never",
                     structure_timestep=600, cov_rank=4, reference_images=2), "--store")
    assert p.returncode == 2 and "NaN/Inf" in p.stderr and "[1]" in p.stderr and not (tmp_path / "inv.h5").exists()
    # a label the model does not have
    p = _cli("baseline-noise", "--pipeline", tiny_pipeline, "--cls", "cat", "--label", 7, "--ipc", 1,
             *_flags(seed=0, num_steps=50, guidance=4.0), "--out", tmp_path / "n.h5")
    assert p.returncode == 2 and "outside the model's 2 classes" in p.stderr


def test_cli_reports_the_time_from_launch_to_its_stage_when_asked(tmp_path, monkeypatch):
    """bench/job_overhead.py sets $D3HR_LAUNCHED_AT and reads this line from the job's log; without it, no line."""
    args = ("fit-gaussian", "--inverted", tmp_path / "missing.h5", "--latents", tmp_path / "missing.h5",
            "--out", tmp_path / "g.h5")
    monkeypatch.delenv("D3HR_LAUNCHED_AT", raising=False)
    assert "after its launch" not in _cli(*args).stderr
    monkeypatch.setenv("D3HR_LAUNCHED_AT", repr(time.time() - 5))
    m = re.search(r"^\[d3hr\] fit-gaussian starts ([\d.]+) s after its launch$", _cli(*args).stderr, re.M)
    assert m and 5 <= float(m.group(1)) < 60


def test_zero_variance_dimension_is_an_error(tmp_path):
    from d3hr import D3HRError
    from d3hr.gaussian import fit_class, timestep_stats
    from d3hr.h5io import write_h5

    x = np.random.default_rng(0).normal(size=(10, 4, 2, 2)).astype(np.float32)
    x[:, 0, 0, 0] = 1.5
    write_h5(tmp_path / "lat.h5", {"latents": x}, {"cls": "a"})
    stats = {f"stats/t600/{k}": v for k, v in timestep_stats(x.reshape(10, -1)).items()}
    write_h5(tmp_path / "inv.h5", {**stats, "timesteps": np.array([600])}, {"cls": "a", "latent_shape": [4, 2, 2]})
    with pytest.raises(D3HRError, match="1 of 16 dimensions have zero variance at t=600"):
        fit_class(tmp_path / "inv.h5", tmp_path / "lat.h5", tmp_path / "g.h5")
    assert not (tmp_path / "g.h5").exists()


def test_teacher_with_wrong_class_count_is_rejected(tmp_path):
    make_dataset(tmp_path / "d", classes=("a", "b", "c"), n_train=2, n_val=1)
    teacher = make_teacher(tmp_path / "t.pt", ["a", "b"])
    dirs = [tmp_path / "d" / "train" / c for c in "abc"]
    vals = [tmp_path / "d" / "val" / c for c in "abc"]
    out = tmp_path / "e.json"
    p = _cli("prepare-val", "--val-dirs", *vals, "--labels", 0, 1, 2, "--resolution", 16, "--channels", 3, "--crop", 1,
             "--out", tmp_path / "val.h5")
    assert p.returncode == 0, p.stderr
    p = _cli("evaluate", "--class-dirs", *dirs, "--val", tmp_path / "val.h5", "--labels", 0, 1, 2, "--teacher", teacher,
             "--student", "convnet_tiny", "--method", "random_real", "--ipc", 2, "--resolution", 16, *_eval_flags(),
             "--out", out)
    assert p.returncode == 2 and "the teacher has 2 classes, but label 2 is used" in p.stderr and not out.exists()
    from d3hr import D3HRError
    from d3hr.nets import load_classifier

    with pytest.raises(D3HRError, match="teacher has 2 classes but the dataset has 3"):
        load_classifier(teacher, num_classes=3)


@pytest.mark.slow
def test_teacher_and_student_training_repeat_exactly_in_new_processes(tmp_path):
    """torch seeds its global generator differently in every process: a network built before seeding would start
    from other weights each run (this is what made the embedded default's accuracies move between runs)."""
    root = make_dataset(tmp_path / "d", classes=("cat", "dog"), n_train=6, size=16)
    for i in (1, 2):
        p = _d3hr("train-teacher", "--threads", 1, "--root", root, "--classes", "cat", "dog", "--resolution", 16,
                  "--arch", "convnet_tiny", "--epochs", 1, "--seed", 3, "--channels", 3, "--batch-size", 128,
                  "--lr", 2e-3, "--weight-decay", 0.01, "--precision", "auto", "--min-steps", 0, "--crop-scale", 0.08, 1,
                  "--out", tmp_path / f"t{i}.pt")
        assert p.returncode == 0, p.stderr
    t1, t2 = (torch.load(tmp_path / f"t{i}.pt", weights_only=False)["state_dict"] for i in (1, 2))
    assert all(torch.equal(t1[k], t2[k]) for k in t1)
    runs = []
    p = _d3hr("prepare-val", "--val-dirs", root / "val" / "cat", root / "val" / "dog", "--labels", 0, 1,
              "--resolution", 16, "--channels", 3, "--crop", 1, "--out", tmp_path / "val.h5")
    assert p.returncode == 0, p.stderr
    for i in (1, 2):
        out = tmp_path / f"e{i}.json"
        p = _d3hr("evaluate", "--threads", 1, "--class-dirs", root / "train" / "cat", root / "train" / "dog",
                  "--val", tmp_path / "val.h5", "--labels", 0, 1, "--teacher", tmp_path / "t1.pt",
                  "--student", "convnet_tiny", "--method", "d3hr", "--ipc", 6, "--resolution", 16,
                  *_eval_flags(seed=1, steps=20, batch_size=4), "--out", out)
        assert p.returncode == 0, p.stderr
        runs.append({k: v for k, v in json.loads(out.read_text()).items() if k != "train_seconds"})
    assert runs[0] == runs[1]
