#!/usr/bin/env bash
# The GPU check of `flipnet-rt bench` (one H100/H200, < 8 minutes, nothing from the network).
# Runs from the source tree: PYTHONPATH=. ; the lent machine has torch (CUDA), Triton and nvcc, but
# not diffusers: carry its wheel (and huggingface_hub if missing) in .whl/ as the device tool's README says.
#   bench on random:sd21-base, fp16, 512x512, 20 steps of DPM-Solver++, guidance 1.5, torch backend:
#   eager vs torch.compile vs CUDA graphs, condition cache on and off, batch 1 and 8, plus the naive baseline.
# Results (JSON, CSV, PNG, log) go to $OUT (or ./gpu_check_out). Record card, date and commit with them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
git rev-parse --short HEAD 2>/dev/null | tee "$OUT/commit.txt" || true
date -u | tee -a "$OUT/gpu.txt"

common=(--model random:sd21-base --device cuda --precision fp16 --steps 20 --guidance 1.5 --warmup 2 --iters 5)
# 1) eager and CUDA graphs, cache on/off, batch 1 and 8, with the naive baseline (batch 1)
timeout 330 python3 -m flipnet_rt bench "${common[@]}" --batch 1,8 --cond-cache on,off --cuda-graph off,on \
  --baseline --json "$OUT/eager_graphs.json" --csv "$OUT/eager_graphs.csv" --plot "$OUT/eager_graphs.png" \
  2>&1 | tee "$OUT/eager_graphs.log"
# 2) torch.compile (compilation is minutes: batch 1 only, cache on/off)
timeout 150 python3 -m flipnet_rt bench "${common[@]}" --batch 1 --cond-cache on,off --compile on \
  --json "$OUT/compile.json" --csv "$OUT/compile.csv" 2>&1 | tee "$OUT/compile.log" || echo "compile run timed out or failed" | tee -a "$OUT/compile.log"
