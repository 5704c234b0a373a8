"""End to end on a GPU: the ImageNet configuration through every stage, on a synthetic ImageNet-shaped dataset with
random-weight models of the real shapes (nothing downloaded). Not a test: it needs a GPU (about 8 minutes on one).

1. 8 classes x 64 training JPEGs (and 8 validation JPEGs) of 500 x 375 px, wnid-style names (d3hr.synthetic).
2. A DiTPipeline of DiT-XL/2-256's shape (all 28 blocks, float16) with the SD VAE's, random weights, saved as a
   diffusers directory; a torchvision ResNet-18 (random weights, 1,000 classes) imported with `d3hr import-classifier`.
3. config/imagenet.yaml with those paths, smaller budgets (m = 10,000, 2 epochs, ResNet-18 students, one seed, the
   timestep ablation at 3 timesteps on 2 classes), run with `snakemake --cores 16 --resources gpu=1`.
4. Checks that every GPU job ran on CUDA (its log's "leased GPU" or its result's device) and prints the seconds of
   each stage from the rules' benchmark files; exit status 1 if a GPU job ran elsewhere.

    python bench/imagenet_e2e.py                         # on a GPU machine: everything
    python bench/imagenet_e2e.py --layers 2 --dry-run     # anywhere: data, models and the DAG only (snakemake -n)
    python bench/imagenet_e2e.py --smoke                  # on a CPU: every stage at tiny sizes (about 5 min, 2 cores)

`--smoke` runs the same configuration and models (DiT-XL/2's width, 1 block unless --layers) on 2 classes x 12 images,
IPC 2 and 4, m = 1,000, one epoch, on whatever device there is: it checks that the ImageNet path runs through every
stage and writes every output, so that a GPU session does not spend its time on a crash. It measures nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GPU_RULES = ("encode", "invert", "select", "decode", "ablation_timestep", "evaluate", "dit_noise")


def prepare(work: Path, a) -> Path:
    """The dataset, the models and the config; returns the config file."""
    import torch
    import torchvision
    import yaml

    from d3hr.synthetic import imagenet_like, save_dit_xl_pipeline

    t0 = time.time()
    data, models = work / "imagenet", work / "models"
    if not (data / "train").is_dir():
        imagenet_like(data, a.classes, a.images, a.val)
    pipe = models / "DiT-XL-2-256"
    if not (pipe / "model_index.json").is_file():
        save_dit_xl_pipeline(pipe, num_layers=a.layers)
    teacher = models / "resnet18.pt"
    if not teacher.is_file():
        torch.manual_seed(0)
        weights = models / "resnet18-random.pth"
        torch.save(torchvision.models.resnet18(weights=None, num_classes=1000).state_dict(), weights)
        subprocess.run([sys.executable, "-m", "d3hr", "import-classifier", "--weights", str(weights), "--arch",
                        "resnet18", "--num-classes", "1000", "--resolution", "224", "--input-norm", "imagenet",
                        "--out", str(teacher)], check=True, cwd=REPO)
    cfg = yaml.safe_load((REPO / "config" / "imagenet.yaml").read_text())
    cfg["datasets"]["imagenet"].update(root=str(data), model=str(pipe), teacher=str(teacher))
    cfg["select"]["m"] = 10_000
    cfg["evaluate"].update(students=["resnet18"], seeds=[0], epochs=a.epochs)
    cfg["invert"]["store_classes"] = 2
    cfg["figures"]["timestep_ablation"]["timesteps"] = [480, 600, 760]
    if a.smoke:  # CPU sizes: the same stages and shapes, less of everything
        cfg["select"].update(ipc=[2, 4], m=1_000, chunk_groups=500)
        cfg["figures"].update(grid_ipc=2)
        cfg["figures"]["timestep_ablation"].update(ipc=2, m=200)
        cfg["encode"].update(batch_size=8, threads=1)
        cfg["invert"].update(batch_size=8)  # 12 images: a full batch and a partial one
        cfg["decode"].update(batch_size=8)
    out = work / "imagenet_e2e.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"[e2e] data, models and config in {work} ({time.time() - t0:.0f} s)", flush=True)
    return out


def on_cuda(work: Path) -> dict[str, list[str]]:
    """{rule: [jobs whose log shows no CUDA]} for the GPU rules, from the logs (a lease, or a CUDA device named)."""
    bad = {}
    for rule in GPU_RULES:
        for log in (work / "logs").rglob("*.log"):
            if f"/{rule}/" not in str(log).replace("\\", "/"):
                continue
            text = log.read_text(errors="replace")
            if not re.search(r"leased GPU|SLURM allocation|cuda:\d|torch:cuda", text):
                bad.setdefault(rule, []).append(str(log.relative_to(work)))
    return bad


def stage_seconds(work: Path) -> list[tuple[str, int, float]]:
    import pandas as pd

    rows = {}
    for f in (work / "benchmarks").rglob("*.tsv"):
        stage = Path(f.relative_to(work / "benchmarks").parts[1]).stem  # a rule's folder, or a lone job's file
        n, s = rows.get(stage, (0, 0.0))
        rows[stage] = (n + 1, s + float(pd.read_csv(f, sep="\t")["s"].iloc[0]))
    return sorted(((k, n, s) for k, (n, s) in rows.items()), key=lambda r: -r[2])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/d3hr-imagenet-e2e")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--val", type=int, default=8)
    p.add_argument("--layers", type=int, default=28, help="DiT blocks (28: DiT-XL/2)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--cores", type=int, default=16)
    p.add_argument("--dry-run", action="store_true", help="only snakemake -n")
    p.add_argument("--json", help="write the per-stage seconds and the CUDA check here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on any device (2 classes x 12 images, IPC 2 and 4, "
                   "1 block, 1 epoch, 2 cores); no CUDA check")
    a = p.parse_args(argv)
    if a.smoke:
        smoke = {"classes": 2, "images": 12, "val": 2, "layers": 1, "epochs": 1, "cores": 2}
        for k, v in smoke.items():  # the smoke sizes, where the command line did not give others
            if f"--{k}" not in (argv if argv is not None else sys.argv[1:]):
                setattr(a, k, v)
        if a.work == p.get_default("work"):
            a.work += "-smoke"
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = prepare(work, a)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work), "--configfile",
           str(cfg), "--cores", str(a.cores), "--resources", "gpu=1"] + (["-n", "--quiet", "rules"] if a.dry_run else [])
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    t0 = time.time()
    run = subprocess.run(cmd, env=env, cwd=REPO)
    wall = time.time() - t0
    if a.dry_run or run.returncode:
        return run.returncode
    bad, secs = ({} if a.smoke else on_cuda(work)), stage_seconds(work)
    print(f"\n[e2e] snakemake finished in {wall:.0f} s\n\n| stage | jobs | seconds |\n|---|---:|---:|")
    for stage, n, s in secs:
        print(f"| {stage} | {n} | {s:.1f} |")
    if a.smoke:
        print("\n(smoke run: sizes too small to measure anything; no CUDA check)")
    else:
        print("\nevery GPU job on CUDA" if not bad else f"\nGPU jobs that did not run on CUDA: {bad}")
    if a.json:
        Path(a.json).write_text(json.dumps({"wall_s": wall, "stages": secs, "not_on_cuda": bad}, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
