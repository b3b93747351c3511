#!/usr/bin/env bash
# gpu-check.sh: the one-call GPU check: builds imgsim with CUDA on the GPU machine, runs the GPU
# tests and the GPU benchmarks, writes logs under $OUT and prints a short summary table last.
#
# How to run (from the development machine, through the device tool):
#   run(command="bash scripts/gpu-check.sh", carry=[".device-sysroot"])
# .device-sysroot/ (oneDNN, protobuf-c, TurboJPEG, spng, webp, cJSON, exif, cmocka) is made by
# ../shared/device/make-sysroot.sh. Locally (any CUDA machine with those libraries installed):
#   OUT=/tmp/gpu-out bash scripts/gpu-check.sh
# Environment: GPU_CHECK_SECTIONS="cuda gpusearch" (default: all) picks sections; BUILD (default
# build-gpu) is the build folder; GPU_CHECK_BENCH=0 runs the tests only (no benchmarks).
#
# Layout: a setup section (environment, configure, build), then one section per area, each
# clearly separated, each appending "area | check | result" lines to $SUMMARY (printed by an EXIT
# trap, so it always comes last). Append new sections at the end of this file. Sections keep
# going after a failure so one call reports everything.
set -u
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="${OUT:-/tmp/imgsim-gpu-out}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
BUILD="${BUILD:-build-gpu}"
SECTIONS="${GPU_CHECK_SECTIONS:-all}"
want() { [ "$SECTIONS" = all ] || [[ " $SECTIONS " == *" $1 "* ]]; }
bench() { [ "${GPU_CHECK_BENCH:-1}" != 0 ]; }
note() { echo "$1 | $2 | $3" >> "$SUMMARY"; }
# section_tests AREA LOG REGEX "TEST..." [PATTERN]: runs the CTest tests matching REGEX (verbose)
# into $OUT/LOG, notes each named TEST's result ("not run" when absent), and copies the lines of
# the log matching PATTERN (extended regex) into the summary
section_tests() {
  local area=$1 log=$OUT/$2 re=$3 tests=$4 pat=${5:-} t r
  (cd "$BUILD" && ctest -R "$re" -V) > "$log" 2>&1
  for t in $tests; do
    r=$(grep -E "Test +#[0-9]+: $t " "$log" | sed -E 's/.*\.\.\.+ *//; s/ +[0-9.]+ sec//' | head -1)
    note "$area" "$t" "${r:-not run}"
  done
  if [ -n "$pat" ]; then grep -E "$pat" "$log" | sed -E 's/^[0-9]+: //; s/^/  /' >> "$SUMMARY"; fi
  return 0
}
# the summary prints when the script ends, after every section (sections may be appended below)
summary() {
  echo
  echo "================================ gpu-check summary ================================"
  cat "$OUT/machine.txt" 2>/dev/null
  cat "$SUMMARY"
}
trap summary EXIT

# ==================================================================================================
# section: setup (environment, configure, build)
# ==================================================================================================
if [ -f scripts/device-env.sh ] && [ -d .device-sysroot ]; then
  # shellcheck disable=SC1091
  source scripts/device-env.sh
fi
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PATH="/usr/local/cuda/bin:$PATH"
PY="$(command -v python3)"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nvcc --version | tail -1
  "$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cudnn", torch.backends.cudnn.version())'
  lscpu | grep 'Model name'
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
t0=$(date +%s)
if cmake -S . -B "$BUILD" -DIMGSIM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DIMGSIM_PYTHON="$PY" -DIMGSIM_ASAN=OFF \
     -DCMAKE_BUILD_TYPE=Release > "$OUT/configure.log" 2>&1 &&
   cmake --build "$BUILD" -j"$(nproc)" > "$OUT/build.log" 2>&1; then
  note setup build "ok ($(( $(date +%s) - t0 )) s)"
  BUILD_OK=1
else
  note setup build "FAILED (see build.log)"
  tail -40 "$OUT/configure.log" "$OUT/build.log"
  BUILD_OK=0
fi

# ==================================================================================================
# section: cuda (CUDA engine: engine-file unit test, PyTorch parity, cache, sanitizer; benchmark)
# ==================================================================================================
if want cuda && [ "$BUILD_OK" = 1 ]; then
  section_tests cuda cuda_tests.log 'test_cuda' "test_cuda_engine_file test_cuda_parity" 'rel_l2|fresh vs cached|memcheck'
  if ! bench; then note bench skipped "GPU_CHECK_BENCH=0"
  elif BENCH_DIR="$OUT/bench_work" IMGSIM_PYTHON="$PY" bash bench/gpu_vs_torch.sh "$BUILD" > "$OUT/cuda_bench.log" 2>&1; then
    note cuda gpu_vs_torch ok
    sed -n '/^GPU:/,$p' "$OUT/cuda_bench.log" | sed 's/^/  /' >> "$SUMMARY"
  else
    note cuda gpu_vs_torch FAILED
    tail -30 "$OUT/cuda_bench.log"
  fi
  rm -rf "$OUT/bench_work"
fi

# ==================================================================================================
# section: gpusearch (exact CUDA top-k: API/CLI parity tests vs float64 and the CPU search;
# benchmark against PyTorch fp16 GEMM + topk, resident and streamed)
# ==================================================================================================
if want gpusearch && [ "$BUILD_OK" = 1 ]; then
  section_tests gpusearch gpusearch_tests.log 'test_gpusearch' "test_gpusearch_api test_gpusearch_parity"
  if ! bench; then note bench skipped "GPU_CHECK_BENCH=0"
  elif OUT="$OUT" bash bench/search_gpu.sh "$BUILD" > "$OUT/gpusearch_bench.log" 2>&1; then
    note gpusearch search_gpu ok
  else
    note gpusearch search_gpu FAILED
    tail -30 "$OUT/gpusearch_bench.log"
  fi
  sed -n '/^GPU:/,$p' "$OUT/gpusearch_bench.log" | sed 's/^/  /' >> "$SUMMARY"
fi

# ==================================================================================================
# section: e2e (GPU input pipeline: nvJPEG + fused preprocessing vs the CPU path; end-to-end
# benchmark of imgsim extract on CUDA against the PIL + ThreadPoolExecutor + PyTorch pipeline)
# ==================================================================================================
if want e2e && [ "$BUILD_OK" = 1 ]; then
  section_tests e2e e2e_tests.log 'gpu_decode|gpu_dedup|gpu_run|gpu_auto|pipeline' \
    "gpu_decode gpu_dedup gpu_run gpu_auto pipeline_extract pipeline_run" \
    'GPU vs CPU preprocessing|features GPU pipeline|mixed batch|auto vs cpu pipeline|cuda vs cpu|pairs [0-9]+ \(cuda|cached engine:'
  if ! bench; then note bench skipped "GPU_CHECK_BENCH=0"
  elif N="${E2E_N:-20000}" BENCH_DIR=/tmp/imgsim-e2e IMGSIM_PYTHON="$PY" bash bench/e2e_gpu.sh "$BUILD" > "$OUT/e2e_bench.log" 2>&1; then
    note e2e e2e_gpu ok
  else
    note e2e e2e_gpu FAILED
    tail -30 "$OUT/e2e_bench.log"
  fi
  sed -n '/^GPU:/,$p' "$OUT/e2e_bench.log" | sed 's/^/  /' >> "$SUMMARY"
fi

# ==================================================================================================
# section: serve (imgsim serve on the GPU: the HTTP API test; load benchmark at 1/8/32 clients,
# CUDA against CPU extraction in the same call)
# ==================================================================================================
if want serve && [ "$BUILD_OK" = 1 ]; then
  section_tests serve serve_tests.log 'serve_api' "serve_api"
  if bench; then
    for dev in cuda cpu; do
      if bash bench/serve_load.sh --cli="$BUILD/imgsim" --device=$dev --arch=resnet50 --seconds="${SERVE_SECONDS:-15}" \
           > "$OUT/serve_bench_$dev.log" 2>&1; then
        note serve "serve_load $dev" ok
        sed -n '/^batch:/,$p' "$OUT/serve_bench_$dev.log" | sed 's/^/  /' >> "$SUMMARY"
      else
        note serve "serve_load $dev" FAILED
        tail -20 "$OUT/serve_bench_$dev.log"
      fi
    done
  fi
fi

# ==================================================================================================
# section: ctest (the whole CTest suite on the CUDA build: every CPU test must still pass with CUDA
# compiled in, and the GPU tests that have no section above run here: gpu_dlpack, MPI on a GPU
# machine, the CUDA refusals of the ONNX and ViT tests). Not part of "all": name it.
# ==================================================================================================
if [[ " $SECTIONS " == *" ctest "* ]] && [ "$BUILD_OK" = 1 ]; then
  (cd "$BUILD" && ctest -j"${CTEST_JOBS:-12}" --timeout 400 --output-on-failure ${CTEST_EXCLUDE:+-E "$CTEST_EXCLUDE"}) \
    > "$OUT/ctest.log" 2>&1
  note ctest all "$(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1)"
  grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess|Not Run|Exception)' "$OUT/ctest.log" | sed 's/^/  FAILED /' >> "$SUMMARY"
  grep -E '\*\*\*Skipped|Skipped$' "$OUT/ctest.log" | sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: //; s/ \.+.*//; s/^/  skipped /' | sort -u >> "$SUMMARY"
fi

# ==================================================================================================
# section: multi (several CUDA engines in one job: --device=cuda:0,0 and cuda:all against cuda:0,
# mpirun -np 2 on one GPU; benchmark: the multi-engine path's overhead, end to end)
# ==================================================================================================
if want multi && [ "$BUILD_OK" = 1 ]; then
  section_tests multi multi_tests.log 'gpu_multi|test_extract_engines$' "gpu_multi test_extract_engines" \
    'max \|diff\||queries|top-1 as|not run'
  if ! bench; then note bench skipped "GPU_CHECK_BENCH=0"
  elif N="${MULTI_N:-10000}" bash bench/multi_gpu.sh "$BUILD" > "$OUT/multi_bench.log" 2>&1; then
    note multi multi_gpu ok
    sed -n '/^GPU:/,$p' "$OUT/multi_bench.log" | sed 's/^/  /' >> "$SUMMARY"
  else
    note multi multi_gpu FAILED
    tail -20 "$OUT/multi_bench.log"
  fi
fi

# ==================================================================================================
# section: crop (issue 14 item 5: --resize/--crop/--interp/--mean/--std on a CUDA engine: mean/std
# in the GPU kernel, a resize + crop preprocessed on the CPU, --decode=gpu with a crop refused)
# ==================================================================================================
if want crop && [ "$BUILD_OK" = 1 ]; then
  section_tests crop crop_tests.log '^(gpu_crop|preprocess_crop)$' "gpu_crop preprocess_crop" 'crop on CUDA|FAIL'
fi

# ==================================================================================================
# section: families (issue 19: every torchvision family of the issue on the CPU engine and the
# CUDA engine against PyTorch float64, through tests/test_onnx_families.py; a table of results).
# Not part of "all": name it.
# ==================================================================================================
if [[ " $SECTIONS " == *" families "* ]] && [ "$BUILD_OK" = 1 ]; then
  (cd "$BUILD" && ctest -L family -j"${CTEST_JOBS:-8}" --timeout 300 --output-on-failure) > "$OUT/families_cuda.log" 2>&1
  note families cuda "$(grep -E 'tests passed|tests failed' "$OUT/families_cuda.log" | tail -1)"
  grep -E ' cuda: |FAIL' "$OUT/families_cuda.log" | sed -E 's/^[0-9]+: //; s/^/  /' >> "$SUMMARY"
  : > "$OUT/families_cpu.log"
  [ "${FAMILIES_CPU:-1}" = 1 ] && for a in resnext50_32x4d wide_resnet50_2 efficientnet_b0 efficientnet_b3 efficientnet_v2_s regnet_x_1_6gf \
           regnet_y_400mf densenet121 googlenet shufflenet_v2_x1_0 squeezenet1_1 mnasnet1_0 vgg16_bn:224 alexnet:224; do
    sz=64; [[ "$a" == *:* ]] && sz=${a#*:} && a=${a%%:*}
    IMGSIM_CLI="$BUILD/imgsim" IMGSIM_TEST_DIR="$OUT/fam_cpu_$a" timeout 300 "$PY" tests/test_onnx_families.py \
      --arch="$a" --opset=17 --size="$sz" >> "$OUT/families_cpu.log" 2>&1 || echo "FAIL $a (cpu, exit $?)" >> "$OUT/families_cpu.log"
    rm -rf "$OUT/fam_cpu_$a"
  done
  grep -E 'engine-only fp32|FAIL' "$OUT/families_cpu.log" | sed 's/^/  cpu: /' >> "$SUMMARY"
fi
