#!/bin/sh
# cpu_qdq.sh: a QDQ model on the CPU: imgsim's int8 engine running the scales the model carries
# (no --calib) against imgsim fp32 on the float model and ONNX Runtime on the same QDQ model (and
# on the float model), same machine, same threads, one run. The model: a torchvision ResNet
# (seeded random weights and BatchNorm statistics, tests/qdq_models.py) quantised by onnxruntime's
# quantize_static (QuantFormat.QDQ, per-channel int8 weights, symmetric int8 activations, MinMax
# on synthetic photo-like images); without a Python with onnxruntime (IMGSIM_ORT_PYTHON,
# .venv-ort/bin/python or /tmp/ortvenv/bin/python: bench/lib.sh) the QDQ model comes from
# tests/qdq_models.py instead and ONNX Runtime is left out. Engine-only throughput (`imgsim bench`, ort_qdq.py bench: random inputs), batch 1 and
# 16, configurations alternating over --rounds rounds, each in its own process, the round with the
# lowest median latency kept (the machine may be shared). Also: each int8's feature cosine to its
# fp32 on other images.
#
# First the floor: the CPU's int8-relevant flags and the peak of a 4096^3 oneDNN matmul in f32 and
# u8 x s8 -> s32.
#
# usage: bench/cpu_qdq.sh [--cli=build/imgsim] [--arch=resnet50] [--threads=2] [--iterations=8]
#                         [--rounds=2] [--batches="1 16"] [--calib-images=32] [--work=DIR]
set -eu
. "$(dirname "$0")/lib.sh"
ARCH=resnet50
ITERS=8
CALIB_IMAGES=32
WORK=${TMPDIR:-/tmp}/imgsim-qdq-bench
for a in "$@"; do
  bench_opt "$a" && continue
  case "$a" in
    --arch=*) ARCH=${a#--arch=} ;;
    --calib-images=*) CALIB_IMAGES=${a#--calib-images=} ;;
    *) echo "usage: $0 [--cli=PATH] [--arch=resnet50] [--threads=N] [--iterations=K] [--rounds=R] [--batches=\"1 16\"] [--calib-images=N] [--work=DIR]" >&2; exit 2 ;;
  esac
done
ORT_PY=$(bench_ort_python)
HAVE_ORT=0
[ -n "$ORT_PY" ] && "$ORT_PY" -c "import onnxruntime.quantization" 2>/dev/null && HAVE_ORT=1

bench_start
echo "int8-relevant CPU flags: $(bench_cpu_flags)"
echo "model: $ARCH (best round kept)"
[ "$HAVE_ORT" = 1 ] && echo "onnxruntime: $("$ORT_PY" -c 'import onnxruntime; print(onnxruntime.__version__)') ($ORT_PY)" \
  || echo "onnxruntime: not available (no Python with onnxruntime.quantization): QDQ model from tests/qdq_models.py, no ONNX Runtime timings"

# ---- floor: f32 and int8 matmul peaks ----
set -- $(bench_peak 1 f32 u8s8)
PEAK_F32=$1
PEAK_I8=$2
GOP=$(case "$ARCH" in resnet18) echo 3.6 ;; resnet34) echo 7.3 ;; *) echo 8.2 ;; esac)
echo "peak (oneDNN matmul 4096^3, $THREADS threads): f32 $PEAK_F32 GFLOP/s, u8s8s32 $PEAK_I8 GOP/s -> int8 / fp32 ceiling $(awk -v a="$PEAK_I8" -v b="$PEAK_F32" 'BEGIN { printf "%.2f", a / b }')x"
awk -v f="$PEAK_F32" -v i="$PEAK_I8" -v g="$GOP" -v a="$ARCH" 'BEGIN {
  printf "floor: %s = %.1f GOP/image -> at most %.1f images/s fp32, %.1f images/s int8\n", a, g, f / g, i / g }'

# ---- models and images ----
FLOAT="$WORK/$ARCH.onnx"
QDQ="$WORK/${ARCH}_qdq.onnx"
[ -d "$WORK/cal" ] || "$CLI" synth --out="$WORK/cal" --classes=8 --per-class=$(( (CALIB_IMAGES + 7) / 8 )) --seed=7 --quiet
[ -d "$WORK/eval" ] || "$CLI" synth --out="$WORK/eval" --classes=8 --per-class=4 --seed=11 --quiet
PYTHONPATH="$SRC/tests" "$PY" - "$FLOAT" "$QDQ" "$WORK" "$CLI" "$ARCH" "$CALIB_IMAGES" "$HAVE_ORT" <<'PEOF'
import glob, os, subprocess, sys
import numpy as np
import onnx
import qdq_models as Q
flt, qdq, work, cli, arch, n, have_ort = sys.argv[1:8]
if not os.path.exists(flt):
    Q.export_resnet(flt, arch, seed=0, size=224)
for d in ("cal", "eval"):
    out = os.path.join(work, d + ".npy")
    if os.path.exists(out):
        continue
    xs = []
    for p in sorted(glob.glob(os.path.join(work, d, "*", "*.jpg")))[:int(n) if d == "cal" else None]:
        subprocess.run([cli, "preprocess", p, "--out=" + os.path.join(work, "x1.npy")], check=True)
        xs.append(np.load(os.path.join(work, "x1.npy")))
    np.save(out, np.concatenate(xs))
    np.save(os.path.join(work, d + "_rows.npy"), np.concatenate(xs).reshape(len(xs), -1))
if have_ort != "1" and not os.path.exists(qdq):
    fm = Q.unshare_identities(onnx.load(flt))
    onnx.save(Q.insert_qdq(fm, Q.tensor_ranges(fm, [np.load(os.path.join(work, "cal.npy"))]), seed=0), qdq)
PEOF
# with onnxruntime: the int8-activation model both run, its uint8 twin (ONNX Runtime's U8S8 kernels,
# which x86 prefers; imgsim runs it too), and quantize_static's recommended x86 form, uint8
# asymmetric activations (both run it: imgsim with oneDNN zero points)
QDQ_U8="$WORK/${ARCH}_qdq_u8.onnx"
QDQ_ASYM="$WORK/${ARCH}_qdq_u8_asym.onnx"
if [ "$HAVE_ORT" = 1 ]; then
  [ -f "$QDQ" ] || "$ORT_PY" "$SRC/tests/ort_qdq.py" quantize "$FLOAT" "$WORK/cal.npy" "$QDQ"
  [ -f "$QDQ_U8" ] || "$ORT_PY" "$SRC/tests/ort_qdq.py" quantize "$FLOAT" "$WORK/cal.npy" "$QDQ_U8" --activations=uint8
  [ -f "$QDQ_ASYM" ] || "$ORT_PY" "$SRC/tests/ort_qdq.py" quantize "$FLOAT" "$WORK/cal.npy" "$QDQ_ASYM" --activations=uint8 --asymmetric
fi 2> "$WORK/quantize.err"

for bs in $BATCHES; do
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    measure "imgsim_fp32_b$bs" "$r" "$CLI" bench --model="$FLOAT" --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3 --json
    measure "imgsim_int8_b$bs" "$r" "$CLI" bench --model="$QDQ" --precision=int8 --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3 --json
    if [ "$HAVE_ORT" = 1 ]; then
      measure "ort_int8_b$bs" "$r" "$ORT_PY" "$SRC/tests/ort_qdq.py" bench "$QDQ" --batch="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3
      measure "ort_fp32_b$bs" "$r" "$ORT_PY" "$SRC/tests/ort_qdq.py" bench "$FLOAT" --batch="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3
      measure "imgsim_int8u8_b$bs" "$r" "$CLI" bench --model="$QDQ_U8" --precision=int8 --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3 --json
      measure "ort_int8u8_b$bs" "$r" "$ORT_PY" "$SRC/tests/ort_qdq.py" bench "$QDQ_U8" --batch="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3
      measure "ort_int8asym_b$bs" "$r" "$ORT_PY" "$SRC/tests/ort_qdq.py" bench "$QDQ_ASYM" --batch="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3
      measure "imgsim_int8asym_b$bs" "$r" "$CLI" bench --model="$QDQ_ASYM" --precision=int8 --batch-size="$bs" --threads="$THREADS" --iterations="$ITERS" --warmup=3 --json
    fi
    r=$((r + 1))
  done
done

# ---- quality: int8 against fp32 features on other images ----
"$CLI" bench --model="$FLOAT" --input="$WORK/eval_rows.npy" --dump="$WORK/imgsim_fp32.npy" --threads="$THREADS" --no-normalize > /dev/null
"$CLI" bench --model="$QDQ" --precision=int8 --input="$WORK/eval_rows.npy" --dump="$WORK/imgsim_int8.npy" --threads="$THREADS" --no-normalize > /dev/null
if [ "$HAVE_ORT" = 1 ]; then
  "$ORT_PY" "$SRC/tests/ort_qdq.py" run "$QDQ" "$WORK/eval.npy" "$WORK/ort_int8.npy" --threads="$THREADS"
  "$ORT_PY" "$SRC/tests/ort_qdq.py" run "$FLOAT" "$WORK/eval.npy" "$WORK/ort_fp32.npy" --threads="$THREADS"
fi

bench_py - "$WORK" "$BATCHES" "$ROUNDS" "$PEAK_F32" "$PEAK_I8" "$GOP" <<'PEOF'
import os, sys
import numpy as np
import benchlib as B
work, batches, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
peak = {"fp32": float(sys.argv[4]), "int8": float(sys.argv[5])}
gop = float(sys.argv[6])
def best(name):
    return B.pick(work, name, rounds, "best")
print()
print("%-6s %-24s %12s %10s %11s %9s %9s" % ("batch", "engine", "images/s(*)", "mean i/s", "median ms", "min ms",
                                              "% of peak"))
for bs in batches:
    r = {}
    for name, label, prec in (("imgsim_fp32", "imgsim fp32 (float)", "fp32"), ("imgsim_int8", "imgsim int8 (QDQ)", "int8"),
                              ("ort_fp32", "ONNX Runtime fp32", "fp32"), ("ort_int8", "ONNX Runtime QDQ", "int8"),
                              ("imgsim_int8u8", "imgsim int8 (QDQ u8)", "int8"), ("ort_int8u8", "ONNX Runtime QDQ u8", "int8"),
                              ("ort_int8asym", "ONNX Runtime QDQ u8 asym", "int8"),
                              ("imgsim_int8asym", "imgsim int8 (QDQ u8 asym)", "int8")):
        j = best(name + "_b" + bs)
        if not j:
            continue
        r[name] = j["ips_median"]
        print("%-6s %-24s %12.2f %10.2f %11.1f %9.1f %8.0f%%" % (bs, label, j["ips_median"], j["images_per_s"],
              j["latency_ms_median"], j["latency_ms_min"], 100 * j["ips_median"] * gop / peak[prec]))
    line = "batch %s: imgsim int8 / imgsim fp32 = %.2fx (target 2.5x)" % (bs, r["imgsim_int8"] / r["imgsim_fp32"])
    if "ort_int8" in r:
        line += "; imgsim int8 / ONNX Runtime QDQ = %.2fx (target 1.2x); ONNX Runtime QDQ / its fp32 = %.2fx" % (
            r["imgsim_int8"] / r["ort_int8"], r["ort_int8"] / r["ort_fp32"])
    print(line)
    if "ort_int8u8" in r:
        print("batch %s, uint8 twin: imgsim int8 / ONNX Runtime = %.2fx; asymmetric uint8 model, both engines on "
              "it: %.2fx" % (bs, r["imgsim_int8u8"] / r["ort_int8u8"], r["imgsim_int8asym"] / r["ort_int8asym"]))
def cos(a, b):
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
f = {k: np.load("%s/%s.npy" % (work, k)).astype(np.float64)
     for k in ("imgsim_fp32", "imgsim_int8", "ort_fp32", "ort_int8") if os.path.exists("%s/%s.npy" % (work, k))}
c = cos(f["imgsim_int8"], f["imgsim_fp32"])
print("imgsim int8 (QDQ) vs imgsim fp32 on %d other images: cosine mean %.5f, min %.5f" % (len(c), c.mean(), c.min()))
if "ort_int8" in f:
    for a, b in (("ort_int8", "ort_fp32"), ("imgsim_int8", "ort_int8")):
        c = cos(f[a], f[b])
        print("%s vs %s: cosine mean %.5f, min %.5f" % (a, b, c.mean(), c.min()))
print("(*) images/s = batch / median latency of the least disturbed round")
PEOF
