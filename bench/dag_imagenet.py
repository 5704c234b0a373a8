"""How long `snakemake -n` takes to build the DAG of config/imagenet.yaml (1,000 classes, about 9,000 jobs) on a
fake ImageNet tree of ImageNet's size: 1,000 class folders of 1,300 training and 50 validation placeholder files each
(hard links of one tiny JPEG: the workflow lists and fingerprints 1.35 M files, as on the real tree), against the 60 s
target.

    python bench/dag_imagenet.py [repeats] [files per class]
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import BIN, copy_workflow, imagenet_config, make_fake_imagenet  # noqa: E402

TARGET_S = 60.0
repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
per_class = int(sys.argv[2]) if len(sys.argv) > 2 else 1300
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    wd = copy_workflow(d / "wf")
    t0 = time.perf_counter()
    root = make_fake_imagenet(d / "imagenet", 1000, n_train=per_class, n_val=50)
    print(f"made 1,000 classes x {per_class:,} training and 50 validation files in {time.perf_counter() - t0:.0f} s")
    (d / "DiT-XL-2-256").mkdir()
    (d / "resnet18.pt").touch()
    (d / "imagenet.yaml").write_text(yaml.safe_dump(imagenet_config(root, d / "DiT-XL-2-256", d / "resnet18.pt")))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = subprocess.run([str(BIN / "snakemake"), "-n", "--quiet", "rules", "--configfile", str(d / "imagenet.yaml")],
                           cwd=wd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if p.returncode:
            sys.exit(p.stdout[-3000:] + p.stderr[-3000:])
    jobs = [l for l in p.stdout.splitlines() if l.startswith("total")][0].split()[1]
    best, med = min(times), statistics.median(times)
    print(f"snakemake -n, config/imagenet.yaml on a fake 1,000-class tree of {per_class:,} files a class: {jobs} jobs")
    print(f"wall s over {repeats} runs: best {best:.1f}, median {med:.1f}; target {TARGET_S:.0f} s; "
          f"median / target = {med / TARGET_S:.2f} ({'met' if med < TARGET_S else 'NOT met'})")
