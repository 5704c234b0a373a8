#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment of envs/d3hr.yaml (--sdm conda). The embedded dataset's wheel
# declares tensorflow as a dependency, which d3hr never imports; a pip requirements file cannot say --no-deps for
# one package, so it is installed here. The version is the one in constraints.txt.
set -euo pipefail
python -m pip install --no-deps "animal-mnist==0.4"
