#!/bin/sh
# cpu_int8.sh: imgsim's CPU int8 engine against its fp32 engine, same machine, same threads, one
# run: ResNet-50 (torchvision layout, seeded random weights and random BatchNorm statistics, so the
# folded biases are not zero), calibrated with `imgsim calibrate` (entropy) on synthetic photo-like
# images, then `imgsim bench` at batch 1 and 16 for fp32 and int8, configurations alternating over
# --rounds rounds, each in its own process, the round with the lowest median latency kept (the
# machine may be shared). Also: the int8 features' cosine to the fp32 features on other images.
#
# First the floor: the CPU's int8-relevant flags, and the peak of a 4096^3 oneDNN matmul in f32 and
# in u8 x s8 -> s32 (what the int8 convolutions can at best reach over fp32 here).
#
# usage: bench/cpu_int8.sh [--cli=build/imgsim] [--threads=2] [--iterations=10] [--rounds=2]
#                          [--batches="1 16"] [--calib-images=64] [--work=DIR]
set -eu
. "$(dirname "$0")/lib.sh"
ITERS=10
CALIB_IMAGES=64
WORK=${TMPDIR:-/tmp}/imgsim-int8-bench
for a in "$@"; do
  bench_opt "$a" && continue
  case "$a" in
    --calib-images=*) CALIB_IMAGES=${a#--calib-images=} ;;
    *) echo "usage: $0 [--cli=PATH] [--threads=N] [--iterations=K] [--rounds=R] [--batches=\"1 16\"] [--calib-images=N] [--work=DIR]" >&2; exit 2 ;;
  esac
done
bench_start
FLAGS=$(bench_cpu_flags)
echo "int8-relevant CPU flags: $FLAGS(VNNI: $(echo "$FLAGS" | grep -q vnni && echo yes || echo no))"
echo "(best round kept)"

# ---- floor: f32 and int8 matmul peaks ----
set -- $(bench_peak 2 f32 u8s8)
PEAK_F32=$1
PEAK_I8=$2
echo "peak (oneDNN matmul 4096^3, $THREADS threads): f32 $PEAK_F32 GFLOP/s, u8s8s32 $PEAK_I8 GOP/s -> int8 / fp32 ceiling $(awk -v a="$PEAK_I8" -v b="$PEAK_F32" 'BEGIN { printf "%.2f", a / b }')x"
awk -v f="$PEAK_F32" -v i="$PEAK_I8" 'BEGIN {
  printf "floor: ResNet-50 = 8.2 GOP/image -> at most %.1f images/s fp32, %.1f images/s int8\n", f / 8.2, i / 8.2 }'

# ---- model, images, calibration ----
MODEL="$WORK/resnet50.onnx"
if [ ! -f "$MODEL" ]; then
  "$PY" - "$MODEL" <<'EOF'
import sys, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet50(weights=None)
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.25)
            mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
            mod.bias.copy_(torch.randn(c, generator=g) * 0.2)
m.eval()
torch.onnx.export(m, torch.randn(1, 3, 224, 224), sys.argv[1], input_names=["input"], output_names=["output"],
                  dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}}, opset_version=13)
EOF
fi
[ -d "$WORK/cal" ] || "$CLI" synth --out="$WORK/cal" --classes=8 --per-class=8 --seed=7 --quiet
[ -d "$WORK/eval" ] || "$CLI" synth --out="$WORK/eval" --classes=8 --per-class=5 --seed=11 --quiet
CALIB="$WORK/resnet50.calib"
t0=$(date +%s.%N)
"$CLI" calibrate --model="$MODEL" "$WORK/cal" --images="$CALIB_IMAGES" --threads="$THREADS" --out="$CALIB" --quiet
echo "calibrate: $CALIB_IMAGES images, $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

for bs in $BATCHES; do
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    measure "fp32_b$bs" "$r" "$CLI" bench --model="$MODEL" --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3 --json
    measure "int8_b$bs" "$r" "$CLI" bench --model="$MODEL" --precision=int8 --calib="$CALIB" --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3 --json
    r=$((r + 1))
  done
done

# ---- quality: int8 against fp32 features on other images ----
"$CLI" extract --model="$MODEL" "$WORK/eval" --out="$WORK/s_fp32" --threads="$THREADS" --quiet
"$CLI" extract --model="$MODEL" "$WORK/eval" --out="$WORK/s_int8" --precision=int8 --calib="$CALIB" --threads="$THREADS" --quiet

bench_py - "$WORK" "$BATCHES" "$ROUNDS" "$PEAK_F32" "$PEAK_I8" <<'EOF'
import sys
import numpy as np
import benchlib as B
work, batches, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
peak = {"fp32": float(sys.argv[4]), "int8": float(sys.argv[5])}
def best(name):
    return B.pick(work, name, rounds, "best")
print()
print("%-6s %-8s %12s %10s %11s %9s %9s %10s %10s" % ("batch", "engine", "images/s(*)", "mean i/s", "median ms",
      "p99 ms", "min ms", "peak RSS", "% of peak"))
for bs in batches:
    f, q = best("fp32_b" + bs), best("int8_b" + bs)
    for label, j in (("fp32", f), ("int8", q)):
        print("%-6s %-8s %12.2f %10.2f %11.1f %9.1f %9.1f %7.0f MB %9.0f%%" % (
            bs, label, j["ips_median"], j["images_per_s"], j["latency_ms_median"], j["latency_ms_p99"],
            j["latency_ms_min"], j["peak_rss_mb"], 100 * j["ips_median"] * 8.2 / peak[label]))
    print("batch %s: int8 / fp32 = %.2fx (target 2.5x; this CPU's matmul ceiling %.2fx)" % (
        bs, q["ips_median"] / f["ips_median"], peak["int8"] / peak["fp32"]))
a = np.load(work + "/s_fp32/features.npy").astype(np.float64)
b = np.load(work + "/s_int8/features.npy").astype(np.float64)
c = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
print("int8 vs fp32 features on %d other images: cosine mean %.5f, min %.5f" % (a.shape[0], c.mean(), c.min()))
print("(*) images/s = batch / median latency of the least disturbed round")
EOF
