#!/bin/sh
# vit_cpu.sh: imgsim's CPU engine (oneDNN) against ONNX Runtime (CPU execution provider) on
# transformer image embedders, same machine, same threads, in one run: torchvision vit_b_16 and
# the DINOv2-S/14-like encoder of tests/vit_models.py (12 blocks, width 384, 6 heads, 224 ->
# 257 tokens), random weights, exported once at opset 17 by Debian's torch. Both engines run the
# whole graph (imgsim --layer=output, so vit_b_16's head runs too) on a random batch. Every
# measurement is its own process; configurations alternate over --rounds rounds and the round
# with the lowest median latency of each is kept (the machine may be shared).
#
# First the floor: a 4096^3 oneDNN f32 matmul's GFLOP/s on this CPU, and each model's FLOPs over
# it (vit_b_16 35.1 GFLOP/image, the DINOv2-S-like 12.3 GFLOP/image).
#
# ONNX Runtime comes from a venv (not a test dependency): python3 -m venv /tmp/ortvenv &&
# /tmp/ortvenv/bin/pip install onnxruntime numpy
#
# usage: bench/vit_cpu.sh [--cli=build/imgsim] [--ort-python=/tmp/ortvenv/bin/python] [--threads=2]
#                         [--iterations=4] [--rounds=2] [--batches="1 8"] [--models="vit_b_16 dinov2_s14"]
#                         [--work=DIR]
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
CLI="$SRC/build/imgsim"
ORTPY=/tmp/ortvenv/bin/python
THREADS=2
ITERS=4
ROUNDS=2
BATCHES="1 8"
MODELS="vit_b_16 dinov2_s14"
WORK=${TMPDIR:-/tmp}/imgsim-vit-bench
PY=${IMGSIM_PYTHON:-/usr/bin/python3}
for a in "$@"; do
  case "$a" in
    --cli=*) CLI=${a#--cli=} ;;
    --ort-python=*) ORTPY=${a#--ort-python=} ;;
    --threads=*) THREADS=${a#--threads=} ;;
    --iterations=*) ITERS=${a#--iterations=} ;;
    --rounds=*) ROUNDS=${a#--rounds=} ;;
    --batches=*) BATCHES=${a#--batches=} ;;
    --models=*) MODELS=${a#--models=} ;;
    --work=*) WORK=${a#--work=} ;;
    *) echo "usage: see the header of $0" >&2; exit 2 ;;
  esac
done
[ -x "$CLI" ] || { echo "no imgsim CLI at $CLI (build first or pass --cli=)" >&2; exit 1; }
"$ORTPY" -c "import onnxruntime" 2>/dev/null || { echo "no onnxruntime in $ORTPY (see the header)" >&2; exit 1; }
mkdir -p "$WORK"
export OMP_NUM_THREADS=$THREADS

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(getconf _NPROCESSORS_ONLN) cores online, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "threads: $THREADS, iterations: $ITERS per process, rounds: $ROUNDS (best kept); $("$ORTPY" -c 'import onnxruntime; print("onnxruntime", onnxruntime.__version__)')"

cat > "$WORK/peak.c" <<'PEAK'
/* peak.c: GFLOP/s of a 4096x4096x4096 oneDNN f32 matmul (weights in the layout it picks), best of 6. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <oneapi/dnnl/dnnl.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(void) {
    const dnnl_dim_t n = 4096;
    dnnl_engine_t eng; dnnl_stream_t s;
    dnnl_engine_create(&eng, dnnl_cpu, 0); dnnl_stream_create(&s, eng, dnnl_stream_default_flags);
    dnnl_dims_t d = {n, n};
    dnnl_memory_desc_t a, b, c;
    dnnl_memory_desc_init_by_tag(&a, 2, d, dnnl_f32, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&b, 2, d, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&c, 2, d, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t md; dnnl_primitive_desc_t pd; dnnl_primitive_t p;
    dnnl_matmul_desc_init(&md, &a, &b, NULL, &c);
    if (dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL)) return 1;
    const dnnl_memory_desc_t *bq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_create(&p, pd);
    dnnl_memory_t ma, mb, mc;
    dnnl_memory_create(&ma, &a, eng, DNNL_MEMORY_ALLOCATE); dnnl_memory_create(&mb, bq, eng, DNNL_MEMORY_ALLOCATE);
    dnnl_memory_create(&mc, &c, eng, DNNL_MEMORY_ALLOCATE);
    float *pa; dnnl_memory_get_data_handle(ma, (void **)&pa);
    for (dnnl_dim_t i = 0; i < n * n; i++) pa[i] = 1.0f / (float)(1 + i % 7);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    double best = 1e30;
    for (int k = 0; k < 6; k++) {
        double t = now();
        dnnl_primitive_execute(p, s, 3, args); dnnl_stream_wait(s);
        t = now() - t; if (t < best) best = t;
    }
    printf("%.1f\n", 2.0 * n * n * n / best / 1e9);
    return 0;
}
PEAK
cc -O2 -o "$WORK/peak" "$WORK/peak.c" -ldnnl
PEAKF=$("$WORK/peak")
echo "floor: f32 matmul peak $PEAKF GFLOP/s -> vit_b_16 (35.1 GFLOP) at most $(echo "$PEAKF / 35.1" | bc -l | cut -c1-5) images/s, DINOv2-S-like (12.3 GFLOP) at most $(echo "$PEAKF / 12.3" | bc -l | cut -c1-5) images/s"

for m in $MODELS; do
  [ -f "$WORK/$m.onnx" ] || "$PY" "$SRC/tests/vit_models.py" --arch "$m" --opset 17 --out "$WORK/$m.onnx" 2>/dev/null
done

field() { "$PY" -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
best() { # best KEY VALUE: keeps the lowest median per key in $WORK/best.tsv
  k=$1; shift
  old=$(awk -F'\t' -v k="$k" '$1 == k {print $2}' "$WORK/best.tsv" 2>/dev/null | head -1)
  med=$(echo "$1" | field latency_ms_median)
  if [ -z "$old" ] || [ "$(echo "$med < $old" | bc -l)" = 1 ]; then
    grep -v "^$k	" "$WORK/best.tsv" > "$WORK/best.tmp" 2>/dev/null || true
    printf '%s\t%s\t%s\n' "$k" "$med" "$1" >> "$WORK/best.tmp"
    mv "$WORK/best.tmp" "$WORK/best.tsv"
  fi
}
rm -f "$WORK/best.tsv"
r=1
while [ $r -le "$ROUNDS" ]; do
  for m in $MODELS; do
    for b in $BATCHES; do
      j=$("$CLI" bench --model="$WORK/$m.onnx" --layer=output --batch-size="$b" --threads="$THREADS" \
            --iterations="$ITERS" --warmup=1 --json)
      best "$m/$b/imgsim" "$j"
      j=$("$ORTPY" "$SRC/bench/vit_cpu_peer.py" "$WORK/$m.onnx" --batch="$b" --threads="$THREADS" \
            --iterations="$ITERS" --warmup=1)
      best "$m/$b/ort" "$j"
    done
  done
  r=$((r + 1))
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| model | batch | engine | images/s (batch / median) | median ms | min ms | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for m in $MODELS; do
  for b in $BATCHES; do
    for eng in imgsim ort; do
      j=$(awk -F'\t' -v k="$m/$b/$eng" '$1 == k {print $3}' "$WORK/best.tsv")
      echo "$j" | "$PY" -c "
import json, sys
d = json.loads(sys.stdin.read())
print('| $m | $b | %s | %.2f | %.1f | %.1f | %.0f MB |' % ('imgsim fp32' if '$eng' == 'imgsim' else 'ONNX Runtime',
      $b / d['latency_ms_median'] * 1e3, d['latency_ms_median'], d['latency_ms_min'], d['peak_rss_mb']))"
    done
    a=$(awk -F'\t' -v k="$m/$b/imgsim" '$1 == k {print $2}' "$WORK/best.tsv")
    o=$(awk -F'\t' -v k="$m/$b/ort" '$1 == k {print $2}' "$WORK/best.tsv")
    echo "| $m | $b | imgsim / ORT | **$(echo "$o / $a" | bc -l | cut -c1-4)x** (by median) | | | |"
  done
done
