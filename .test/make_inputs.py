"""Make the inputs of the tiny test configuration (.test/config.yaml) in .test/inputs/: a two-class image-folder
dataset (class-dependent colour blobs, 16 px) and a random-weight DiT pipeline and teacher of three classes.

    python .test/make_inputs.py

The files are committed, so that `snakemake --configfile .test/config.yaml` runs as it is; this script remakes them
(seeded), with the same functions the tests use (tests/conftest.py)."""

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from conftest import make_dataset, make_pipeline, make_teacher  # noqa: E402

if __name__ == "__main__":
    out = HERE / "inputs"
    shutil.rmtree(out, ignore_errors=True)
    make_dataset(out / "dataset", classes=("cat", "dog"))
    make_pipeline(out / "pipeline", ["cat", "dog", "eel"])
    make_teacher(out / "teacher.pt", ["cat", "dog", "eel"])
    print(f"wrote {out}")
