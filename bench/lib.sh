# lib.sh: the set-up the CPU benchmarks share, sourced by bench/cpu_vs_torch.sh, cpu_int8.sh,
# cpu_qdq.sh and cpu_models.sh (`. "$(dirname "$0")/lib.sh"`, before their own defaults):
#
#   SRC, CLI, PY, THREADS, ROUNDS, BATCHES   defaults (the script may change them after sourcing)
#   bench_opt ARG          the options every script takes (--cli= --threads= --iterations=
#                          --rounds= --batches= --work=); returns 1 for any other ARG
#   bench_ort_python       prints the Python with onnxruntime: IMGSIM_ORT_PYTHON, else the
#                          checkout's .venv-ort, else /tmp/ortvenv (nothing when none has it)
#   bench_start            checks the CLI, makes WORK, fixes the threads (OMP_NUM_THREADS for
#                          oneDNN's and torch's OpenMP; the peers take --threads), prints the machine
#                          line (CPU, cores, load average) and the protocol line
#   bench_cpu_flags        the CPU's SIMD flags that matter for fp32/bf16/int8 kernels
#   bench_peak TRIES T...  GFLOP/s (GOP/s) of a 4096^3 oneDNN matmul for each type T (f32, bf16:
#                          bf16 x bf16 -> f32, u8s8: u8 x s8 -> s32; 0 where oneDNN has no kernel),
#                          best of 8 runs per try, best of TRIES tries (a shared machine disturbs
#                          some): prints one number per T
#   bench_export ARCH OUT [OPTIONS]  a torchvision model with random seeded weights exported to
#                          ONNX by tools/export_torchvision.py (--weights none --seed 0 OPTIONS)
#                          under $PY, unless OUT exists
#   measure NAME ROUND CMD...  runs CMD (one measurement, its own process) with its stdout, one
#                          JSON line, into $WORK/NAME.ROUND.json; on failure prints its stderr, exits
#   bench_py SCRIPT-ARGS   runs $PY with bench/ on PYTHONPATH (bench/benchlib.py: reading the
#                          measurements back, picking a round, printing ratios)
SRC=$(cd "$(dirname "$0")/.." && pwd)
CLI="$SRC/build/imgsim"
PY=${IMGSIM_PYTHON:-/usr/bin/python3}
THREADS=2
ROUNDS=2
BATCHES="1 16"

bench_opt() {
  case "$1" in
    --cli=*) CLI=${1#--cli=} ;;
    --threads=*) THREADS=${1#--threads=} ;;
    --iterations=*) ITERS=${1#--iterations=} ;;
    --rounds=*) ROUNDS=${1#--rounds=} ;;
    --batches=*) BATCHES=${1#--batches=} ;;
    --work=*) WORK=${1#--work=} ;;
    *) return 1 ;;
  esac
}

bench_ort_python() {
  for p in ${IMGSIM_ORT_PYTHON:-} "$SRC/.venv-ort/bin/python" /tmp/ortvenv/bin/python; do
    [ -x "$p" ] && "$p" -c "import onnxruntime" 2>/dev/null && { echo "$p"; return 0; }
  done
  return 0
}

bench_start() {
  [ -x "$CLI" ] || { echo "no imgsim CLI at $CLI (build first or pass --cli=)" >&2; exit 1; }
  mkdir -p "$WORK"
  export OMP_NUM_THREADS="$THREADS"
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(getconf _NPROCESSORS_ONLN) cores online, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "threads: $THREADS, iterations: $ITERS per process, rounds: $ROUNDS"
}

bench_cpu_flags() {
  grep -o -E ' (avx2|fma|avx512f|avx512_bf16|avx512_vnni|avx_vnni|amx_bf16|amx_int8)( |$)' /proc/cpuinfo |
    sort -u | tr -d ' ' | tr '\n' ' '
}

bench_peak() { # tries type...
  tries=$1
  shift
  cat > "$WORK/peak.c" <<'EOF'
/* peak.c TYPE...: GFLOP/s (GOP/s) of a 4096^3 oneDNN matmul for each TYPE (f32: f32 x f32 -> f32,
 * bf16: bf16 x bf16 -> f32, u8s8: u8 x s8 -> s32; weights in the layout oneDNN picks), best of 8
 * runs after one untimed; 0 where oneDNN has no kernel for it on this CPU. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <oneapi/dnnl/dnnl.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double run(dnnl_engine_t eng, dnnl_stream_t s, dnnl_data_type_t a_dt, dnnl_data_type_t b_dt, dnnl_data_type_t c_dt) {
    const dnnl_dim_t n = 4096;
    dnnl_dims_t d = {n, n};
    dnnl_memory_desc_t a, b, b_any, c;
    dnnl_memory_desc_init_by_tag(&a, 2, d, a_dt, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&b_any, 2, d, b_dt, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&c, 2, d, c_dt, dnnl_ab);
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd;
    if (dnnl_matmul_desc_init(&md, &a, &b_any, NULL, &c) || dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL)) return 0;
    b = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_t p;
    dnnl_primitive_create(&p, pd);
    dnnl_memory_t ma, mb, mc;
    dnnl_memory_create(&ma, &a, eng, DNNL_MEMORY_ALLOCATE);
    dnnl_memory_create(&mb, &b, eng, DNNL_MEMORY_ALLOCATE);
    dnnl_memory_create(&mc, &c, eng, DNNL_MEMORY_ALLOCATE);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    double best = 1e30;
    for (int i = 0; i < 9; i++) {
        double t0 = now();
        dnnl_primitive_execute(p, s, 3, args);
        dnnl_stream_wait(s);
        double t = now() - t0;
        if (i > 0 && t < best) best = t;
    }
    dnnl_memory_destroy(ma); dnnl_memory_destroy(mb); dnnl_memory_destroy(mc);
    dnnl_primitive_destroy(p); dnnl_primitive_desc_destroy(pd);
    return 2.0 * n * n * n / best / 1e9;
}
int main(int argc, char **argv) {
    dnnl_engine_t eng; dnnl_stream_t s;
    dnnl_engine_create(&eng, dnnl_cpu, 0);
    dnnl_stream_create(&s, eng, dnnl_stream_default_flags);
    for (int i = 1; i < argc; i++) {
        double g = !strcmp(argv[i], "bf16") ? run(eng, s, dnnl_bf16, dnnl_bf16, dnnl_f32)
                   : !strcmp(argv[i], "u8s8") ? run(eng, s, dnnl_u8, dnnl_s8, dnnl_s32)
                                              : run(eng, s, dnnl_f32, dnnl_f32, dnnl_f32);
        printf("%s%.1f", i > 1 ? " " : "", g);
    }
    printf("\n");
    return 0;
}
EOF
  cc -O2 -o "$WORK/peak" "$WORK/peak.c" -ldnnl
  i=0
  : > "$WORK/peak.out"
  while [ "$i" -lt "$tries" ]; do
    "$WORK/peak" "$@" >> "$WORK/peak.out"
    i=$((i + 1))
  done
  awk '{ for (k = 1; k <= NF; k++) if ($k > m[k]) m[k] = $k; n = NF }
       END { for (k = 1; k <= n; k++) printf "%s%s", (k > 1 ? " " : ""), m[k] + 0; printf "\n" }' "$WORK/peak.out"
}

bench_export() { # arch out [options]
  arch=$1
  out=$2
  shift 2
  [ -f "$out" ] || "$PY" "$SRC/tools/export_torchvision.py" --arch "$arch" --weights none --seed 0 "$@" --out "$out" > /dev/null
}

measure() { # name round command...
  name=$1; round=$2; shift 2
  "$@" > "$WORK/$name.$round.json" 2> "$WORK/$name.$round.err" || { echo "$name failed:"; cat "$WORK/$name.$round.err"; exit 1; }
}

bench_py() {
  PYTHONPATH="$SRC/bench${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$@"
}
