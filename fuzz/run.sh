#!/usr/bin/env bash
# run.sh BUILD_DIR [TARGET...]: runs each libFuzzer harness built in BUILD_DIR/fuzz (by `make fuzz`)
# for FUZZ_SECONDS seconds (default 60) and prints what each reached. TARGETs: image onnx npy tsv
# (default all). Fails when any target finds a crash, a leak, a sanitizer report, a broken
# invariant or a hang (-timeout): the input is then in BUILD_DIR/fuzz-artifacts/TARGET/, and
#   BUILD_DIR/fuzz/fuzz_TARGET FILE
# reproduces it.
#
# Each target reads the committed seeds (fuzz/corpus/TARGET) and regression inputs
# (fuzz/regress/TARGET) and adds what it finds to BUILD_DIR/fuzz-corpus/TARGET, which is kept
# between runs (so a local run continues where the last stopped; CI starts from the seeds).
# The scratch files the harnesses write go to /dev/shm when TMPDIR is not set (10x faster than a
# disk). FUZZ_FLAGS adds libFuzzer flags (e.g. FUZZ_FLAGS=-jobs=4 or -max_len=...).
set -uo pipefail
build=${1:?usage: fuzz/run.sh BUILD_DIR [TARGET...]}
shift
src=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(image onnx npy tsv)
secs=${FUZZ_SECONDS:-60}
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
# leaks are failures; UBSan reports abort (the library is built with -fno-sanitize-recover)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
summary=()
for t in "${targets[@]}"; do
  bin=$build/fuzz/fuzz_$t
  if [ ! -x "$bin" ]; then echo "run.sh: $bin not built (make fuzz)"; exit 2; fi
  work=$build/fuzz-corpus/$t
  art=$build/fuzz-artifacts/$t
  log=$build/fuzz-$t.log
  mkdir -p "$work" "$art"
  dirs=("$work" "$src/corpus/$t")
  [ -d "$src/regress/$t" ] && dirs+=("$src/regress/$t")
  echo "== fuzz_$t: ${secs} s (log $log)"
  # -timeout: an input running longer is a hang (generous: CI machines are shared);
  # -rss_limit_mb / -malloc_limit_mb: an input that makes imgsim allocate more is a finding
  # (max_pixels in fuzz_image.c keeps legitimate images well below).
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2560 -malloc_limit_mb=2048 \
    -print_final_stats=1 -dict="$src/dict/$t.dict" -artifact_prefix="$art/" ${FUZZ_FLAGS:-} \
    "${dirs[@]}" >"$log" 2>&1
  rc=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ $rc -ne 0 ] || [ -z "$done_line" ]; then
    failed+=("$t")
    echo "fuzz_$t FAILED (exit $rc):"
    grep -E 'ERROR|SUMMARY|invariant broken|runtime error|Test unit written|==[0-9]+==' "$log" | head -20
    tail -5 "$log"
    summary+=("$(printf '%-6s FAILED (exit %d): see %s and %s' "$t" "$rc" "$log" "$art")")
  else
    cov=$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$done_line")
    ft=$(sed -E 's/.* ft: ([0-9]+).*/\1/' <<<"$done_line")
    corp=$(sed -E 's/.* corp: ([0-9]+)\/([0-9a-zA-Z]+).*/\1 inputs, \2/' <<<"$done_line")
    eps=$(sed -E 's/.* exec\/s: ([0-9]+).*/\1/' <<<"$done_line")
    summary+=("$(printf '%-6s cov %5s  ft %6s  corpus %-22s %9s runs  %6s exec/s' "$t" "$cov" "$ft" "$corp" "${runs:-?}" "$eps")")
  fi
done
echo "== fuzz summary (${secs} s per target; cov = code edges reached, ft = libFuzzer features)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
