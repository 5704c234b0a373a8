"""Device check: jobs on a CUDA device through the job server (d3hr/jobserver.py).

The server imports torch & co. without initialising CUDA and forks one child per command; each child must then
initialise CUDA itself. This script builds a tiny dataset, DiT pipeline and teacher (tests/conftest.py), runs
`encode` and `evaluate` on `--device cuda` as processes of their own and through a server, two evaluations at once,
and prints: where each ran, its wall time both ways, and how far the outputs of the two ways differ.

    python bench/gpu_jobserver.py          # on a machine with a CUDA device (exit 1 if a check fails)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def run(args, env, cwd):
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "d3hr", *args], env=env, cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(args)}\n{p.stderr[-3000:]}")
    return time.time() - t0, p.stderr


def main():
    import h5py
    import numpy as np
    import torch
    from conftest import make_dataset, make_pipeline, make_teacher

    from d3hr.jobserver import ENV, start_server, stop_server

    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"  # cpu: a smoke test of this script
    assert device == "cpu" or torch.cuda.is_available(), "no CUDA device"
    wd = Path(tempfile.mkdtemp(prefix="d3hr-gpu-js-"))
    classes = ["cat", "dog"]
    data = make_dataset(wd / "data", classes, n_train=40, n_val=20)
    pipe = make_pipeline(wd / "pipe", classes)
    teacher = make_teacher(wd / "teacher.pt", classes)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    env.pop(ENV, None)
    common = ["--resolution", "16", "--channels", "3"]
    run(["prepare-val", "--val-dirs", *(str(data / "val" / c) for c in classes), "--labels", "0", "1", *common,
         "--crop", "1.0", "--out", "val.h5"], env, wd)

    def encode(out):
        return ["encode", "--class-dir", str(data / "train/cat"), *common, "--batch-size", "16", "--on-bad-image",
                "error", "--seed", "0", "--device", device, "--pipeline", str(pipe), "--out", out,
                "--model-precision", "auto", "--max-images", "0", "--sample-posterior"]

    def evaluate(out, seed=0):
        return ["evaluate", "--class-dirs", *(str(data / "train" / c) for c in classes), "--val", "val.h5",
                "--labels", "0", "1", "--teacher", str(teacher), "--student", "convnet_tiny", "--method", "x",
                "--ipc", "20", "--seed", str(seed), *common, "--epochs", "1", "--steps", "200", "--batch-size", "16",
                "--lr", "0", "--weight-decay", "0.01", "--mix", "cutmix", "--temperature", "0", "--device", device,
                "--out", out, "--min-steps", "0", "--schedule", "authors", "--precision", "auto", "--builder", "timm",
                "--compile", "auto"]

    times, ok = {}, True
    times["encode alone"], _ = run(encode("lat_a.h5"), env, wd)
    times["evaluate alone"], _ = run(evaluate("ev_a.json"), env, wd)
    server = start_server(log_dir=str(wd))
    served = dict(env, **{ENV: os.environ[ENV]})
    try:
        run(["--version"], served, wd)  # waits for the server's imports
        times["encode served"], log = run(encode("lat_b.h5"), served, wd)
        ok &= "ran in the job server" in log
        times["evaluate served"], log = run(evaluate("ev_b.json"), served, wd)
        ok &= "ran in the job server" in log
        t0 = time.time()  # two CUDA jobs at once, each a child of the same server
        procs = [subprocess.Popen([sys.executable, "-m", "d3hr", *evaluate(f"ev_p{s}.json", s)], env=served, cwd=wd,
                                  stderr=subprocess.PIPE, text=True) for s in (1, 2)]
        errs = [p.communicate()[1] for p in procs]
        times["two evaluations at once, served"] = time.time() - t0
        ok &= all(p.returncode == 0 and "ran in the job server" in e for p, e in zip(procs, errs))
    finally:
        stop_server(server)
    with h5py.File(wd / "lat_a.h5") as a, h5py.File(wd / "lat_b.h5") as b:
        diff = float(np.abs(a["latents"][:] - b["latents"][:]).max())
    ev = {k: json.loads((wd / f"ev_{k}.json").read_text()) for k in ("a", "b", "p1", "p2")}
    same_eval = ev["a"]["top1"] == ev["b"]["top1"] and ev["a"]["evals"] == ev["b"]["evals"]
    print(f"device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}, torch {torch.__version__}")
    for k, v in times.items():
        print(f"{k}: {v:.2f} s")
    print("evaluate devices:", {k: v["device"] for k, v in ev.items()}, "autocast:", ev["b"]["autocast"])
    print(f"latents, own process vs server: max |difference| {diff:.3g}; evaluation equal: {same_eval} "
          f"(top-1 {ev['a']['top1']:.3f} / {ev['b']['top1']:.3f}; cuDNN autotuning may differ between processes)")
    ok &= all(v["device"].startswith(device) for v in ev.values())
    print("CHECK", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
