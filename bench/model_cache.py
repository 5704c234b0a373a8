"""What the job server's held models save a model job (d3hr/jobserver.py, "Models held in memory"): a DiT-XL/2-shaped
pipeline with the SD VAE's shape (random weights, as `d3hr.synthetic.save_dit_xl_pipeline` saves it), and one tiny
encode job and one tiny invert job (2 ImageNet-sized JPEGs, inverted to t = 0 on a 1-step grid), each run as a
process of its own, served by a job server with `D3HR_HOLD_MODELS=0` (the job loads its models itself, as before
session 16), and served with the models held (after the first served job, which makes the server load them once), in
one process. The jobs' work is small and the same in every column (on this CPU still seconds: the SD VAE encoder and
a DiT-XL/2 forward at 256 px); what differs is each job's fixed cost.

    python bench/model_cache.py [--layers 28] [--repeats 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from d3hr.jobserver import ENV, HOLD_ENV, start_server, stop_server  # noqa: E402


def job(env, args, cwd) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "d3hr", *args], env=env, cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=28, help="DiT blocks (DiT-XL/2 has 28)")
    ap.add_argument("--repeats", type=int, default=4, help="served runs of each job and mode, interleaved (median)")
    a = ap.parse_args()
    import torch

    from d3hr.synthetic import imagenet_like, save_dit_xl_pipeline

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t0 = time.perf_counter()
        save_dit_xl_pipeline(d / "pipe", num_layers=a.layers)
        imagenet_like(d / "data", classes=1, n_train=2, n_val=0)
        print(f"DiT-XL/2-shaped pipeline ({a.layers} blocks) and 2 JPEGs made in {time.perf_counter() - t0:.0f} s; "
              f"torch {torch.__version__}, {os.cpu_count()} CPUs, on the CPU")
        cls = next((d / "data" / "train").iterdir())
        common = ["--threads", "2", "--device", "cpu", "--model-precision", "fp32", "--pipeline", "pipe"]
        jobs = {
            "encode (VAE)": ["encode", *common, "--class-dir", str(cls), "--out", "lat.h5", "--resolution", "256",
                             "--channels", "3", "--batch-size", "2", "--no-sample-posterior", "--on-bad-image", "error",
                             "--seed", "0", "--max-images", "0"],
            "invert (DiT, 1 step)": ["invert", *common, "--latents", "lat.h5", "--out", "inv.h5", "--cls", cls.name,
                                     "--label", "0", "--timesteps", "0", "--num-steps", "1", "--guidance", "4",
                                     "--batch-size", "2", "--store", "--compile", "never"],
        }
        env = {k: v for k, v in os.environ.items() if k != ENV}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        own = {name: job(env, args, d) for name, args in jobs.items()}
        proc = start_server(log_dir=str(d))
        served_env = dict(env, **{ENV: os.environ.pop(ENV)})
        try:
            job(served_env, ["--version"], d)  # the server's imports done: what follows is the jobs' own time
            first = job(served_env, jobs["encode (VAE)"], d)  # the server loads the VAE and the DiT
            runs = {(name, mode): [] for name in jobs for mode in ("held", "loads")}
            for _ in range(a.repeats):  # interleaved: what the machine does meanwhile falls on both modes alike
                for name, args in jobs.items():
                    runs[name, "held"].append(job(served_env, args, d))
                    runs[name, "loads"].append(job(dict(served_env, **{HOLD_ENV: "0"}), args, d))
            held = {name: statistics.median(runs[name, "held"]) for name in jobs}
            loads = {name: statistics.median(runs[name, "loads"]) for name in jobs}
        finally:
            stop_server(proc)
        log = (d / "d3hr-jobserver.log").read_text()
        if "not held" in log or "Traceback" in log:
            sys.exit(log[-3000:])
    print("| job | own process (s) | served, loading its models (s) | served, models held (s) | "
          "held saves a job (s) |")
    print("|---|---:|---:|---:|---:|")
    for name in jobs:
        print(f"| {name} | {own[name]:.2f} | {loads[name]:.2f} | {held[name]:.2f} | {loads[name] - held[name]:.2f} |")
    print(f"the first served job, whose server loads the VAE and the DiT once: {first:.2f} s "
          f"({first - held['encode (VAE)']:.2f} s more than a served encode from memory)")


if __name__ == "__main__":
    main()
