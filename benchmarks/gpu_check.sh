#!/usr/bin/env bash
# The GPU check: the one script a session with a lent GPU runs (one H100/H200, one command of at most
# 600 s, nothing from the network). benchmarks/RESULTS.md says what each step shows and what to record.
#
# Runs from the source tree (PYTHONPATH=.) on a machine with PyTorch (CUDA), Triton, CuPy, nanobind
# and nvcc, but without diffusers, TensorRT or onnxruntime-gpu. diffusers (and the pure-Python
# packages it needs that the machine lacks) travel as wheels in the gitignored .whl/: run
# `make gpu-wheels` here, then the device tool's run with carry: [".whl"] and the command
#   GPU_CHECK_COMMIT=<git rev-parse --short HEAD here> OUT=$OUT bash benchmarks/gpu_check.sh
# (the copied tree has no .git: GPU_CHECK_COMMIT names the commit; without it, "unknown").
#
#   GPU_CHECK_PLAN=1 bash benchmarks/gpu_check.sh            the plan (step, limit, total); runs nothing
#   GPU_CHECK_PREFLIGHT_ONLY=1 bash benchmarks/gpu_check.sh  the preflight alone
#   GPU_CHECK_DRY=1 [GPU_CHECK_BUDGET=S] bash ...            no preflight, no build; each step echoes its
#                                                            command: the guard, summary and archive on any
#                                                            machine (tests/test_gpu_check.py);
#                                                            GPU_CHECK_DRY_BUILD_STATUS=1: as if the build failed
#
# One 600 s command, so the steps share a budget of 580 s (the rest packs the results), in the order
# that gets the most evidence first; a step whose limit exceeds the time left (580 - $SECONDS) is
# skipped, and summary.txt says so:
#   preflight          install the carried wheels (pip --no-index from .whl/), import diffusers, cupy,
#                      torch (CUDA available), nanobind; nvidia-smi, nvcc --version. Anything missing:
#                      one line naming it and the fix, exit 2, no step runs.
#   native_cuda_build  (e) flipnet_rt._native with CUDA kernels (sm_90), in the background from the
#                      start (it needs no GPU), beside the preflight and the GPU tests
#   gpu_tests          (a) the GPU-marked tests of tests/backends and tests/profiler, with (b) the
#                      TensorRT backend on a torch double of TensorRT
#   native_cuda_tests  (e) the CUDA kernels' parity and the device frame path's kernel contract
#   device_pipeline    (f) frame-to-frame on the device with CuPy arrays vs the host pipeline
#   parity_bench       (c)+(d) one process, one random:sd21-base: fp16 parity/NaN and the attention
#                      upcast (benchmarks/gpu_parity.py), then the reduced bench with --baseline
#   gpu_detect         (h) face detection: the RetinaFace network on CUDA (fp32, fp16; batch 1, 8)
#                      vs MTCNN on the host (benchmarks/gpu_detect.py, issue 29); needs no CUDA build
#   gpu_video          (g) video: host vs device frame path
# Steps (e) tests, (f) and (g) need the CUDA build: when it failed they are skipped, saying why.
#
# What comes back ($OUT keeps at most 8 files): $OUT/summary.txt and $OUT/gpu_check.tar.gz, both
# rewritten after every step (a command stopped at its limit keeps what finished). The archive holds
# gpu_check/: summary.txt, log.txt (all output), native_build.log, gpu_tests.xml, native_tests.xml,
# parity.json, bench.json, bench.csv, device_pipeline.json, gpu_detect.json, gpu_video.json.
set -uo pipefail  # no -e: every step runs and records, whatever the one before it did
cd "$(dirname "$0")/.." || exit 2

BUDGET=${GPU_CHECK_BUDGET:-580}
# name, limit in seconds, what (the order they run in; native_cuda_build runs in the background)
PLAN=(
  "preflight 40 carried wheels; imports of diffusers, cupy, torch (CUDA), nanobind; nvidia-smi; nvcc"
  "native_cuda_build 175 (e) build, in the background from the start: overlaps preflight and gpu_tests"
  "gpu_tests 140 (a)+(b) GPU-marked tests: CUDA graphs vs eager, TensorRT backend on a torch double"
  "native_cuda_tests 60 (e) CUDA kernels vs the CPU kernels; device frame path's kernel contract"
  "device_pipeline 65 (f) warp-crop -> engine -> paste on the device (CuPy) vs the host pipeline"
  "parity_bench 175 (c)+(d) random:sd21-base loaded once: fp16 parity/NaN, upcast, bench --baseline"
  "gpu_detect 40 (h) RetinaFace network on CUDA (fp32/fp16, batch 1/8) vs MTCNN on the host"
  "gpu_video 60 (g) VideoRestorer frames/s, host vs device frame path"
)
BACKGROUND=native_cuda_build

limit_of() {  # limit_of NAME: the plan's limit
  local row
  for row in "${PLAN[@]}"; do
    read -r n l _ <<< "$row"
    [ "$n" = "$1" ] && { echo "$l"; return; }
  done
  echo 0
}

if [ -n "${GPU_CHECK_PLAN:-}" ]; then
  total=0
  echo "GPU check plan: limits in seconds; a step whose limit exceeds the time left ($BUDGET - \$SECONDS) is skipped"
  for row in "${PLAN[@]}"; do
    read -r n l what <<< "$row"
    printf '  %-18s %4d s  %s\n' "$n" "$l" "$what"
    [ "$n" = "$BACKGROUND" ] || total=$((total + l))
  done
  printf '  %-18s %4d s  of %d s (the background build is not counted: it ends within preflight + gpu_tests)\n' \
    total "$total" "$BUDGET"
  exit 0
fi

OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
W=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")/gpu_check  # every result, packed into $OUT after each step
mkdir -p "$W"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# train/ and export/ install as flipnet_rt.train / flipnet_rt.export (pyproject.toml); from a source
# tree (not installed) they are links (git ignores them; a dry run leaves the tree alone)
if [ -z "${GPU_CHECK_DRY:-}" ] && ! python3 -c 'import flipnet_rt.export' > /dev/null 2>&1; then
  for d in train export; do [ -e flipnet_rt/$d ] || ln -s ../$d flipnet_rt/$d; done
fi

pack() {  # summary.txt and the archive into $OUT (written beside, then moved: never half an archive)
  cp "$W/summary.txt" "$OUT/summary.txt"
  tar -czf "$W.tar.gz" -C "$(dirname "$W")" gpu_check 2> /dev/null && mv -f "$W.tar.gz" "$OUT/gpu_check.tar.gz"
}
note() { echo "$*" | tee -a "$W/summary.txt"; }

COMMIT=${GPU_CHECK_COMMIT:-}
if [ -z "$COMMIT" ] && [ -e .git ] && command -v git > /dev/null 2>&1; then
  COMMIT="$(git rev-parse --short HEAD 2> /dev/null)$(git diff --quiet HEAD 2> /dev/null || echo ' (+ local changes)')"
fi
export GPU_CHECK_COMMIT=${COMMIT:-unknown}
note "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
note "commit: $GPU_CHECK_COMMIT"

# ---- preflight: stop at once, on one line, when the machine cannot run the check ------------------
missing=()
DRY=${GPU_CHECK_DRY:-}
if [ -n "$DRY" ]; then
  note "preflight: skipped (GPU_CHECK_DRY: every step echoes its command)"
elif ! command -v python3 > /dev/null 2>&1; then
  missing+=("python3 not found: run on the GPU machine (device tool), whose python3 holds torch")
else
  if ls .whl/*.whl > /dev/null 2>&1; then
    if pip_out=$(timeout 30 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl 2>&1); then
      export PYTHONPATH=$PYTHONPATH:/tmp/site
      note "carried wheels: $(cd .whl && printf '%s ' ./*.whl)"
    else
      missing+=("the carried wheels in .whl/ did not install ($(echo "$pip_out" | tail -1)):\
 rerun \`make gpu-wheels\` here (one version of each)")
    fi
  else
    note "carried wheels: none (.whl/ absent or empty)"
  fi
fi

# (e) the native build needs no GPU: start it now, beside everything until native_cuda_tests
NATIVE_SO=""
BUILD_PID=""
if [ -n "$DRY" ]; then
  (echo "${GPU_CHECK_DRY_BUILD_STATUS:-0} 0" > "$W/native_build.rc"; echo "dry run: native CUDA build") \
    > "$W/native_build.log" 2>&1 &
  BUILD_PID=$!
elif [ ${#missing[@]} = 0 ] && [ -z "${GPU_CHECK_PREFLIGHT_ONLY:-}" ]; then
  if ! ls flipnet_rt/_native*.so > /dev/null 2>&1; then  # never replace a module someone built here
    NATIVE_SO=flipnet_rt/_native.$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX")[1:])')
    trap 'rm -f "$NATIVE_SO" "$NATIVE_SO.tmp"' EXIT
  fi
  build="cmake -S . -B /tmp/build-cuda -G Ninja -DFLIPNET_CUDA=ON -DFLIPNET_PYTHON=ON -DFLIPNET_TESTS=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DPython_EXECUTABLE=\$(command -v python3) \
    && cmake --build /tmp/build-cuda \
    && ${NATIVE_SO:+cp /tmp/build-cuda/native/python/_native*.so $NATIVE_SO.tmp && mv -f $NATIVE_SO.tmp $NATIVE_SO &&} \
    python3 -c 'import flipnet_rt._native as n; print(\"CUDA kernels:\", n.cuda, n.cuda_architectures, n.__file__); \
    assert n.cuda, \"built without CUDA kernels\"'"
  (
    start=$SECONDS
    echo "== native_cuda_build ($(date -u +%H:%M:%S), limit $(limit_of native_cuda_build)s, background): $build"
    nice -n 5 timeout --kill-after=5 "$(limit_of native_cuda_build)" bash -c "$build"
    echo "$? $((SECONDS - start))" > "$W/native_build.rc"
  ) > "$W/native_build.log" 2>&1 &
  BUILD_PID=$!
fi

if [ -z "$DRY" ] && [ ${#missing[@]} = 0 ]; then
  checks=$(timeout 30 python3 - 2>&1 << 'EOF'
import importlib

FIX_WHEELS = 'run `make gpu-wheels` here and pass carry: [".whl"]'
checks = [
    ("diffusers", FIX_WHEELS),
    ("cupy", "install cupy-cuda13x there, or carry its wheel in .whl/ (the GPU image has it)"),
    ("torch", "run on the GPU machine, whose python3 holds torch with CUDA"),
    ("nanobind", "carry a nanobind wheel in .whl/ (python3 -m pip download --no-deps nanobind -d .whl)"),
]
for name, fix in checks:
    try:
        module = importlib.import_module(name)
        if name == "diffusers":  # its imports are lazy: load what flipnet_rt uses
            from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel  # noqa: F401
            from diffusers.models.attention_processor import Attention, AttnProcessor2_0  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure to import is what the line reports
        print(f"MISSING {name} not importable ({type(exc).__name__}: {exc}): {fix}")
        continue
    version = getattr(module, "__version__", "?")
    if name == "torch":
        if not module.cuda.is_available():
            print(f"MISSING torch {version} has no CUDA device (torch.cuda.is_available() is False): {fix}")
            continue
        version = f"{version} CUDA {module.version.cuda}, {module.cuda.get_device_name(0)}"
    if name == "cupy":
        try:
            version = f"{version}, {module.cuda.runtime.getDeviceCount()} device(s)"
        except Exception as exc:  # noqa: BLE001
            print(f"MISSING cupy {version} sees no device ({type(exc).__name__}: {exc}): {fix}")
            continue
    print(f"ok {name}: {version}")
EOF
)
  status=$?
  while IFS= read -r line; do
    case $line in
      "MISSING "*) missing+=("${line#MISSING }") ;;
      "ok "*) note "${line#ok }" ;;
    esac
  done <<< "$checks"
  if [ "$status" != 0 ] && ! grep -q '^\(ok\|MISSING\) ' <<< "$checks"; then
    missing+=("python3 could not run the import checks (exit $status: $(echo "$checks" | tail -1))")
  fi
fi
if [ -n "$DRY" ]; then
  :
elif smi=$(timeout 15 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1); then
  note "card, driver, memory: $smi"
else
  missing+=("nvidia-smi not found or failing ($(echo "$smi" | tail -1)): run on the GPU machine (device tool)")
fi
if [ -n "$DRY" ]; then
  :
elif nvcc_out=$(timeout 15 nvcc --version 2>&1); then
  note "nvcc: $(echo "$nvcc_out" | grep -i release | tail -1)"
else
  missing+=("nvcc not found ($(echo "$nvcc_out" | tail -1)): the native CUDA build needs the CUDA toolkit on the PATH")
fi
for tool in cmake ninja; do
  [ -n "$DRY" ] || command -v "$tool" > /dev/null 2>&1 \
    || missing+=("$tool not found: the native CUDA build needs it (pip's cmake/ninja will do)")
done

if [ ${#missing[@]} != 0 ]; then
  line="gpu_check: preflight failed: $(printf '%s; ' "${missing[@]}")"
  line=${line%; }
  echo "preflight: FAILED in $SECONDS s: ${line#gpu_check: preflight failed: }" >> "$W/summary.txt"
  if [ -n "$BUILD_PID" ]; then  # the background build (its timeout forwards the signal to cmake)
    pkill -TERM -P "$BUILD_PID" 2> /dev/null
    kill "$BUILD_PID" 2> /dev/null
  fi
  pack
  echo "$line" >&2
  exit 2
fi
[ -n "$DRY" ] || note "preflight: ok in $SECONDS s"
pack
[ -n "${GPU_CHECK_PREFLIGHT_ONLY:-}" ] && exit 0

# ---- the steps --------------------------------------------------------------------------------------
skip() {  # skip NAME REASON
  note "$1: skipped: $2"
  echo "== $1: skipped: $2" >> "$W/log.txt"
  pack
}

step() {  # step NAME COMMAND...: run under the plan's limit if it fits the time left; log, record, pack
  local name=$1 limit start=$SECONDS left status
  limit=$(limit_of "$1")
  shift
  left=$((BUDGET - SECONDS))
  if [ "$limit" -gt "$left" ]; then
    skip "$name" "its limit ${limit}s exceeds the ${left}s left of ${BUDGET}s"
    return
  fi
  echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$W/log.txt"
  if [ -n "$DRY" ]; then
    echo "dry run: $*" | tee -a "$W/log.txt"
  else
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$W/log.txt"
  fi
  status=${PIPESTATUS[0]}
  note "$name: exit $status in $((SECONDS - start)) s$([ "$status" = 124 ] && echo ' (timed out)')"
  pack
}

# (a) + (b): the GPU-marked tests; the TensorRT double is tests/backends/test_tensorrt_double_gpu.py
step gpu_tests python3 -m pytest -q -rs -s -m gpu -p no:cacheprovider --junitxml="$W/gpu_tests.xml" \
  tests/backends tests/profiler

# (e) wait for the background build (it is bounded by its own limit), then the kernels' tests
wait "$BUILD_PID" 2> /dev/null
build_seconds="?"
read -r build_status build_seconds 2> /dev/null < "$W/native_build.rc" || build_status=unknown
cat "$W/native_build.log" >> "$W/log.txt"
[ "$build_status" = 0 ] || tail -n 25 "$W/native_build.log"
note "native_cuda_build: exit $build_status in ${build_seconds} s (background)$(
  [ "$build_status" = 124 ] && echo ' (timed out)')"
if [ "$build_status" = 0 ]; then
  step native_cuda_tests python3 -m pytest -q -rs -s -m gpu -p no:cacheprovider --junitxml="$W/native_tests.xml" \
    tests/native/test_cuda_kernels.py tests/faces/test_device_gpu.py
  # (f) frame-to-frame on the device with CuPy arrays (issue 17)
  step device_pipeline python3 benchmarks/gpu_device_pipeline.py --frames 20 --json "$W/device_pipeline.json"
else
  skip native_cuda_tests "the native CUDA build failed (exit $build_status; native_build.log)"
  skip device_pipeline "the native CUDA build failed (exit $build_status)"
fi

# (c) + (d): one process, one random:sd21-base (built in fp32 on the CPU once): parity, then the bench
step parity_bench python3 benchmarks/gpu_parity.py --json "$W/parity.json" -- \
  --device cuda --backend torch --precision fp16 --steps 20 --guidance 1.5 --batch 1 --cond-cache on,off \
  --cuda-graphs off,on --warmup 1 --iters 3 --baseline --json "$W/bench.json" --csv "$W/bench.csv"

# (h) face detection (issue 29): torch RetinaFace on CUDA vs MTCNN on the host; needs no CUDA build
step gpu_detect python3 benchmarks/gpu_detect.py --json "$W/gpu_detect.json"

# (g) video: host vs device frame path (demo model on torch CUDA, 720p, 3 faces)
if [ "$build_status" = 0 ]; then
  step gpu_video python3 benchmarks/gpu_video.py --frames 60 --json "$W/gpu_video.json"
else
  skip gpu_video "the native CUDA build failed (exit $build_status)"
fi
note "total: $SECONDS s"
pack
