#!/bin/sh
# cpu_vs_torch.sh: imgsim's CPU engine (oneDNN) against PyTorch on the same machine, same threads,
# in one run: ResNet-50 (seeded random weights exported to ONNX as the old pipeline exported it),
# batch 1 and 16, imgsim fp32 and bf16 vs PyTorch fp32 (eager, as the old pipeline ran it, and
# jit-frozen, the stronger peer). Every measurement runs in its own process so that its peak RSS
# is its own; configurations alternate over --rounds rounds and the round with the lowest median
# latency of each is kept (the machine may be shared; that round is the least disturbed).
# Throughput is reported from the median latency (batch / median), which a few preempted
# iterations do not move, and from the mean (images / total time).
#
# First it measures the floor: the peak FLOP/s of this CPU for fp32 and bf16 with a large oneDNN
# matmul (4096^3), and prints ResNet-50's 8.2 GFLOP/image over it (the best any engine can do).
#
# usage: bench/cpu_vs_torch.sh [--cli=build/imgsim] [--threads=2] [--iterations=10] [--rounds=2]
#                              [--batches="1 16"] [--work=DIR]
set -eu
. "$(dirname "$0")/lib.sh"
ITERS=10
WORK=${TMPDIR:-/tmp}/imgsim-cpu-bench
for a in "$@"; do
  bench_opt "$a" || { echo "usage: $0 [--cli=PATH] [--threads=N] [--iterations=K] [--rounds=R] [--batches=\"1 16\"] [--work=DIR]" >&2; exit 2; }
done
bench_start
echo "(best round kept)"

# ---- floor: peak FLOP/s of a large oneDNN matmul ----
# three tries, the best of each kept: a shared machine disturbs some of them
set -- $(bench_peak 3 f32 bf16)
MM_F32=$1
PEAK_BF16=$2
# oneDNN 2.6's f32 matmul stays below the FMA peak that its convolutions reach; an AVX-512 BF16
# dot product (VDPBF16PS) does twice the FLOPs of an fp32 FMA per lane, so half the bf16 peak is
# the better fp32 peak estimate where it is the larger.
PEAK_F32=$(awk -v f="$MM_F32" -v b="$PEAK_BF16" 'BEGIN { p = b / 2 > f ? b / 2 : f; printf "%.1f", p }')
echo "peak (oneDNN matmul 4096^3, $THREADS threads): fp32 matmul $MM_F32 GFLOP/s, bf16 $PEAK_BF16 GFLOP/s -> fp32 peak taken as $PEAK_F32 GFLOP/s"
awk -v f="$PEAK_F32" -v b="$PEAK_BF16" 'BEGIN {
  printf "floor: ResNet-50 = 4.1 GMAC = 8.2 GFLOP/image -> at most %.1f images/s fp32, %.1f images/s bf16 (%.0f / %.0f ms per image)\n",
    f / 8.2, (b > 0 ? b / 8.2 : 0), 8200 / f, (b > 0 ? 8200 / b : 0) }'

# ---- the model ----
MODEL="$WORK/resnet50.onnx"
bench_export resnet50 "$MODEL"

HAVE_BF16=0
grep -q -E ' (avx512_bf16|amx_bf16)' /proc/cpuinfo && HAVE_BF16=1

for bs in $BATCHES; do
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    measure "torch_eager_b$bs" "$r" "$PY" "$SRC/bench/cpu_vs_torch_peer.py" --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --mode=eager
    measure "imgsim_fp32_b$bs" "$r" "$CLI" bench --model="$MODEL" --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3 --json
    [ "$HAVE_BF16" = 1 ] && measure "imgsim_bf16_b$bs" "$r" "$CLI" bench --model="$MODEL" --precision=bf16 --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3 --json
    measure "torch_jit_b$bs" "$r" "$PY" "$SRC/bench/cpu_vs_torch_peer.py" --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --mode=jit
    r=$((r + 1))
  done
done

bench_py - "$WORK" "$BATCHES" "$ROUNDS" "$PEAK_F32" "$PEAK_BF16" <<'EOF'
import sys
import benchlib as B
work, batches, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
peak = {"fp32": float(sys.argv[4]), "bf16": float(sys.argv[5])}
def best(name):
    return B.pick(work, name, rounds, "best")
print()
print("%-6s %-22s %12s %10s %11s %9s %9s %10s %10s" % ("batch", "engine", "images/s(*)", "mean i/s", "median ms",
      "p99 ms", "min ms", "peak RSS", "% of peak"))
for bs in batches:
    te = best("torch_eager_b" + bs)
    tj = best("torch_jit_b" + bs)
    f32, b16 = best("imgsim_fp32_b" + bs), best("imgsim_bf16_b" + bs)
    rows = [("torch eager fp32", te, "fp32"), ("torch jit-frozen fp32", tj, "fp32"),
            ("imgsim fp32", f32, "fp32"), ("imgsim bf16", b16, "bf16")]
    for label, j, prec in rows:
        if j is None:
            continue
        print("%-6s %-22s %12.2f %10.2f %11.1f %9.1f %9.1f %7.0f MB %9.0f%%" % (
            bs, label, j["ips_median"], j["images_per_s"], j["latency_ms_median"], j["latency_ms_p99"],
            j["latency_ms_min"], j["peak_rss_mb"], 100 * j["ips_median"] * 8.2 / peak[prec] if peak[prec] > 0 else 0))
    line = "batch %s: imgsim fp32 / torch eager = %.2fx (target >= 1.1x), peak RSS %.0f vs %.0f MB" % (
        bs, f32["ips_median"] / te["ips_median"], f32["peak_rss_mb"], te["peak_rss_mb"])
    if tj:
        line += "; fp32 / torch jit = %.2fx" % (f32["ips_median"] / tj["ips_median"])
    if b16:
        line += "; bf16 / torch eager fp32 = %.2fx (target >= 1.6x)" % (b16["ips_median"] / te["ips_median"])
        if tj:
            line += ", bf16 / torch jit fp32 = %.2fx" % (b16["ips_median"] / tj["ips_median"])
    print(line)
print("(*) images/s = batch / median latency of the least disturbed round")
EOF
