#!/usr/bin/env bash
# Every GPU benchmark of the ImageNet-scale and GPU-limit issues on one GPU, one after another, each under a timeout;
# the rates go to $RATES (default bench/rates.jsonl, which bench/cost_model.py and the README's cost table read).
#   bash bench/gpu_all.sh            # the benchmarks, about 7 minutes on one H200
#   bash bench/gpu_all.sh e2e        # then the synthetic ImageNet run end to end (bench/imagenet_e2e.py), about 8
set -u
cd "$(dirname "$0")/.."
RATES=${RATES:-bench/rates.jsonl}
PY=${PYTHON:-python}
run() { local t=$1; shift; echo "== $* (timeout ${t}s)"; timeout "$t" "$PY" "$@" || echo "== exit $? : $*"; }
if [ "${1:-}" = e2e ]; then
  run 540 bench/imagenet_e2e.py --json "${E2E_JSON:-bench/imagenet_e2e.json}"
  exit
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
run 150 bench/gpu_stages.py --batch 50 --repeats 1 --rates-out "$RATES"
run 60 bench/eval_throughput.py --rates-out "$RATES"
run 60 bench/eval_throughput.py --arch resnet50 --steps 30 --rates-out "$RATES"
run 60 bench/eval_throughput.py --arch resnet101 --steps 30 --rates-out "$RATES"
run 90 bench/group_sampling_device.py --m 100000 --rates-out "$RATES"
run 40 bench/encode_decode.py --n 512 --rates-out "$RATES"
