#!/usr/bin/env bash
# The GPU check: the one script a session with a lent GPU runs (one H100/H200, under 10 minutes,
# nothing from the network). benchmarks/RESULTS.md says what to record from it.
#
# Runs from the source tree (PYTHONPATH=.) on a machine with PyTorch (CUDA), Triton, CuPy and nvcc,
# but without diffusers, TensorRT or onnxruntime-gpu. diffusers travels as a wheel in .whl/ (gitignored):
#   python3 -m pip download --no-deps --only-binary=:all: diffusers==0.42.1 -d .whl
# and the device tool's call names .whl in `carry` (see /work/.library/device/README.md).
#
# Steps, each under its own time limit; a step that fails or times out is recorded and the next runs:
#   (a) the GPU-marked tests (torch CUDA graphs vs eager, ONNX Runtime CUDA and TensorRT skip: not installed)
#   (b) the TensorRT backend against a test double of TensorRT that runs the torch networks on the
#       backend's stream: buffers, streams, shapes A,B,A, K/V binding, CUDA-graph capture/replay vs eager
#   (c) random:sd21-base fp16 at 512 px: eager vs CUDA graphs, cache on/off, 4 steps: rel L2 and NaN;
#       and the fp16 exports' attention upcast (issue 14 item 12): time and NaN with and without
#   (d) a reduced bench with --baseline (batch 1, 20 steps, cache on/off, CUDA graphs off/on)
#   (e) the native CUDA kernels' parity tests and the device frame path's kernel contract (issue 16);
#   (f) the frame-to-frame device pipeline on CuPy (issue 17); (g) video: host vs device frame path
# Every result is written as it comes, into $OUT (default ./gpu_check_out):
#   summary.txt (card, driver, date, commit; each step's exit status and seconds), log.txt (all output),
#   gpu_tests.xml, parity.json, bench.json, bench.csv, device_pipeline.json, gpu_video.json.
set -uo pipefail  # no -e: every step runs and records, whatever the one before it did
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi

{
  echo "card, driver, memory: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ local changes)')"
  echo "torch: $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1)"
  echo "diffusers: $(python3 -c 'import diffusers; print(diffusers.__version__)' 2>&1 | tail -1)"
} | tee "$OUT/summary.txt"

step() {  # step NAME SECONDS COMMAND...: run under a limit, log, record status and time
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$OUT/log.txt"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT/log.txt"
  local status=${PIPESTATUS[0]}
  echo "$name: exit $status in $((SECONDS - start)) s$([ "$status" = 124 ] && echo ' (timed out)')" | tee -a "$OUT/summary.txt"
}

# (a) + (b): the GPU-marked tests; the TensorRT double is tests/backends/test_tensorrt_double_gpu.py
step gpu_tests 150 python3 -m pytest -q -rs -s -m gpu -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml" \
  tests/backends tests/bench
# (c) parity and NaN at 512 px, and the attention upcast
step parity 170 python3 benchmarks/gpu_parity.py --json "$OUT/parity.json"
# (d) the reduced bench (each configuration's record is written as it finishes)
step bench 200 python3 -m flipnet_rt bench --model random:sd21-base --device cuda --backend torch --precision fp16 \
  --steps 20 --guidance 1.5 --batch 1 --cond-cache on,off --cuda-graphs off,on --warmup 1 --iters 3 --baseline \
  --json "$OUT/bench.json" --csv "$OUT/bench.csv"

# ---- issue 17: the native CUDA kernels and the GPU runtime on CuPy ---------------------------------
# (a) above already runs tests/backends/test_cupy_gpu.py: CuPy helpers and the sampler on CuPy arrays,
#     CupyStream graph replay, the TensorRT backend on CuPy *and* torch arrays over the TensorRT double.
# (e) build flipnet_rt._native with CUDA kernels (sm_90 only, to save time) and put it into the source
#     package for this run (PYTHONPATH=. imports ./flipnet_rt first; removed on exit), then the CUDA
#     kernels' parity tests (tests/native/test_cuda_kernels.py: warp-crop and paste within 1 grey level,
#     colour fix 1e-6).
# (f) frame-to-frame on the device: host decode, then warp-crop -> engine -> paste on the GPU with CuPy
#     arrays (engine: the TensorRT backend on CuPy arrays over the torch TensorRT double), vs the host
#     pipeline within 1 grey level, ms per frame for both: device_pipeline.json.
NATIVE_SO=""
if ! ls flipnet_rt/_native*.so > /dev/null 2>&1; then  # never replace a module someone built here
  NATIVE_SO=flipnet_rt/_native.$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX")[1:])')
  trap 'rm -f "$NATIVE_SO"' EXIT
fi
step native_cuda_build 150 bash -c "cmake -S . -B /tmp/build-cuda -G Ninja -DFLIPNET_CUDA=ON -DFLIPNET_PYTHON=ON \
  -DFLIPNET_TESTS=OFF -DCMAKE_CUDA_ARCHITECTURES=90 -DPython_EXECUTABLE=\$(command -v python3) > /dev/null \
  && cmake --build /tmp/build-cuda && ${NATIVE_SO:+cp /tmp/build-cuda/native/python/_native*.so $NATIVE_SO &&} \
  python3 -c 'import flipnet_rt._native as n; print(\"CUDA kernels:\", n.cuda, n.cuda_architectures, n.__file__)'"
step native_cuda_tests 60 python3 -m pytest -q -rs -s -m gpu -p no:cacheprovider tests/native/test_cuda_kernels.py \
  tests/faces/test_device_gpu.py
step device_pipeline 90 python3 benchmarks/gpu_device_pipeline.py --frames 20 --json "$OUT/device_pipeline.json"
# (g) issue 16: the video path's frame path on the GPU: VideoRestorer with --frame-path host vs device
#     (demo model on torch CUDA, 720p, 3 faces): frames/s of each, their difference: gpu_video.json
step gpu_video 90 python3 benchmarks/gpu_video.py --frames 60 --json "$OUT/gpu_video.json"
echo "total: $SECONDS s" | tee -a "$OUT/summary.txt"
