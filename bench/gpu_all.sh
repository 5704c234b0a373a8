#!/usr/bin/env bash
# Every GPU benchmark of the ImageNet-scale and GPU-limit issues on one GPU, one after another, each under a timeout;
# the rates go to $RATES (default bench/rates.jsonl, which bench/cost_model.py and the README's cost table read).
#   bash bench/gpu_all.sh            # the benchmarks, at most 11 minutes on one H200 (the timeouts)
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
# everything printed also goes to $REPORT (default bench/gpu_all.txt), which docs/make_results.py copies into
# docs/benchmarks.md ("GPU stages near the hardware's limit")
REPORT=${REPORT:-bench/gpu_all.txt}
{
date -u +"%Y-%m-%d %H:%M UTC; git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
# eager against torch.compile (default, and reduce-overhead: CUDA graphs) of the DiT-XL/2: forward, invert, decode
run 300 bench/gpu_stages.py --batch 64 --repeats 1 --compile default reduce-overhead --rates-out "$RATES"
# student steps: host draws (the old loop), device draws, and compiled; the validation pass both ways
run 100 bench/eval_throughput.py --rates-out "$RATES"
run 60 bench/eval_throughput.py --arch resnet50 --steps 30 --rates-out "$RATES"
run 60 bench/eval_throughput.py --arch resnet101 --steps 30 --rates-out "$RATES"
run 60 bench/group_sampling_device.py --m 100000 --rates-out "$RATES"
run 40 bench/encode_decode.py --n 512 --rates-out "$RATES"
} 2>&1 | tee "$REPORT"
