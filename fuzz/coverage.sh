#!/usr/bin/env bash
# coverage.sh FUZZ_BUILD_DIR [TARGET...]: line and branch coverage that the fuzzing corpora reach,
# measured with clang's source-based coverage (llvm-cov) rather than libFuzzer's edge counters.
# Builds the harnesses for coverage in FUZZ_BUILD_DIR-cov (no sanitizers, standalone.c as main),
# runs each over its corpora (FUZZ_BUILD_DIR/fuzz-corpus/TARGET as `make fuzz` left it, the seeds
# and the regression inputs), and prints llvm-cov's per-file report for the imgsim sources that
# target is about (names relative to their common folder). `make fuzz-coverage` runs it after
# `make fuzz`. FUZZ_COV_FUNCTIONS=1 adds the per-function table (lines and branches).
set -euo pipefail
build=${1:?usage: fuzz/coverage.sh FUZZ_BUILD_DIR [TARGET...]}
shift
src=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$src/.." && pwd)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(image onnx npy tsv)
cov=$build-cov
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
cmake -S "$root" -B "$cov" -DIMGSIM_FUZZ=ON -DIMGSIM_FUZZ_COVERAGE=ON -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build "$cov" -j "${JOBS:-$(nproc)}" >/dev/null
# the files each harness is about (the rest of what it reaches is shown in the full report)
declare -A files=(
  [image]="src/image/decode.c src/image/jpeg.c src/image/png.c src/image/webp.c src/image/exif.c src/image/preprocess.c src/image/resize.c src/image/api.c"
  [onnx]="src/model/onnx/import.c src/model/link.c src/model/shapes.c src/model/select.c src/model/passes.c src/api/model.c"
  [npy]="src/core/npy.c"
  [tsv]="src/data/dataset.c")
for t in "${targets[@]}"; do
  dirs=("$src/corpus/$t")
  [ -d "$build/fuzz-corpus/$t" ] && dirs=("$build/fuzz-corpus/$t" "${dirs[@]}")
  [ -d "$src/regress/$t" ] && dirs+=("$src/regress/$t")
  rm -f "$cov/$t".prof*
  LLVM_PROFILE_FILE="$cov/$t.profraw" "$cov/fuzz/fuzz_$t" "${dirs[@]}" >/dev/null 2>&1 || true
  llvm-profdata merge -sparse "$cov/$t.profraw" -o "$cov/$t.profdata"
  echo "== $t: $(find "${dirs[@]}" -type f ! -name '.*' | wc -l) inputs"
  sel=()
  for f in ${files[$t]}; do [ -f "$root/$f" ] && sel+=("$root/$f"); done
  llvm-cov report "$cov/fuzz/fuzz_$t" -instr-profile="$cov/$t.profdata" "${sel[@]}" |
    sed "s#$root/##" | awk 'NR > 2 && !/^-/ && NF >= 13 { printf "  %-22s lines %5s of %5s (%7s)  branches %5s of %5s (%7s)\n", $1, $8 - $9, $8, $10, $11 - $12, $11, $13 }'
  if [ "${FUZZ_COV_FUNCTIONS:-0}" = 1 ]; then
    llvm-cov report --show-functions "$cov/fuzz/fuzz_$t" -instr-profile="$cov/$t.profdata" "${sel[@]}" |
      awk 'NF > 8 && !/^-/ && $1 != "Name" && $1 != "TOTAL" && !/^File/ { printf "    %-34s lines %8s  branches %8s\n", $1, $(NF-3), $NF }' | awk '!seen[$0]++'
  fi
done
