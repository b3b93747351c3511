#!/bin/sh
# cpu_models.sh: imgsim's CPU engine (oneDNN, fp32) against ONNX Runtime (CPU execution provider,
# pip, in a venv) and PyTorch eager on torchvision's families (issue 19's CPU benchmark), same
# machine, same threads, one run: efficientnet_b0, convnext_tiny, mobilenet_v3_large, densenet121,
# resnet50, random seeded weights and BatchNorm statistics, exported at opset 17 by Debian's torch
# (tools/export_torchvision.py). Model-only throughput at batch 1 and 16 on random input: imgsim
# `bench --layer=output` (the whole graph, head included, as the peers run it), ONNX Runtime
# (ORT_ENABLE_ALL, 2 intra-op threads) on the same file and torch eager on the same architecture
# (bench/cpu_models_peer.py). Every measurement is its own process; configurations alternate
# over --rounds rounds; each configuration's figure is the median round (by median latency).
# Target: imgsim >= 1.2x ONNX Runtime at batch 1 and 16 for every model.
#
# First the floor: a 4096^3 oneDNN f32 matmul's GFLOP/s on this CPU (bench/lib.sh), each model's
# FLOPs per image (Conv/Gemm/MatMul MACs of the file) and their quotient. Where imgsim misses the
# target, the time is attributed: oneDNN's verbose exec lines of an imgsim run summed per
# primitive kind and per layer, and ONNX Runtime's profiler per op type (--no-profile skips it).
#
# Then the load time (issue 19 item 7): imgsim's model load + engine creation (`imgsim bench
# --batch-size=1 --iterations=1`: load_seconds + build_seconds) against ONNX Runtime's
# InferenceSession creation, each in a fresh process, alternating, --load-rounds times, for
# --load-models (resnet50 vgg16; VGG-16 is 528 MB).
#
# ONNX Runtime comes from a venv: python3 -m venv .venv-ort && .venv-ort/bin/pip install
# onnxruntime onnx numpy (torch torchvision too, for a current PyTorch peer; without them the
# peer is Debian's torch). IMGSIM_ORT_PYTHON / IMGSIM_TORCH_PYTHON name others.
#
# usage: bench/cpu_models.sh [--cli=build/imgsim] [--threads=2] [--iterations=8] [--iterations-big=3]
#                            [--rounds=3] [--batches="1 16"] [--models="..."] [--load-models="resnet50 vgg16"]
#                            [--load-rounds=3] [--no-profile] [--no-load] [--no-throughput] [--work=DIR]
set -eu
. "$(dirname "$0")/lib.sh"
ITERS=8
ITERS_BIG=3
ROUNDS=3
MODELS="efficientnet_b0 convnext_tiny mobilenet_v3_large densenet121 resnet50"
LOAD_MODELS="resnet50 vgg16"
LOAD_ROUNDS=3
PROFILE=1
LOAD=1
THROUGHPUT=1
WORK=${TMPDIR:-/tmp}/imgsim-models-bench
for a in "$@"; do
  bench_opt "$a" && continue
  case "$a" in
    --iterations-big=*) ITERS_BIG=${a#--iterations-big=} ;;
    --models=*) MODELS=${a#--models=} ;;
    --load-models=*) LOAD_MODELS=${a#--load-models=} ;;
    --load-rounds=*) LOAD_ROUNDS=${a#--load-rounds=} ;;
    --no-profile) PROFILE=0 ;;
    --no-load) LOAD=0 ;;
    --no-throughput) THROUGHPUT=0 ;;
    *) echo "usage: see the header of $0" >&2; exit 2 ;;
  esac
done
ORT_PY=$(bench_ort_python)
[ -n "$ORT_PY" ] || { echo "no Python with onnxruntime (see the header of $0)" >&2; exit 1; }
TORCH_PY=${IMGSIM_TORCH_PYTHON:-}
if [ -z "$TORCH_PY" ]; then
  TORCH_PY=$PY
  "$ORT_PY" -c "import torch, torchvision" 2>/dev/null && TORCH_PY=$ORT_PY
fi
PEER="$SRC/bench/cpu_models_peer.py"
bench_start
echo "iterations: $ITERS at batch 1, $ITERS_BIG at larger batches; figure = the median round"
echo "peers: $("$ORT_PY" -c 'import onnxruntime; print("onnxruntime", onnxruntime.__version__)') ($ORT_PY); $("$TORCH_PY" -c 'import torch; print("torch", torch.__version__)') ($TORCH_PY); CPU flags: $(bench_cpu_flags)"

for m in $MODELS; do
  bench_export "$m" "$WORK/$m.onnx" --opset 17 --randomize-bn
done

if [ "$THROUGHPUT" = 1 ]; then
  # ---- floor ----
  PEAK=$(bench_peak 2 f32)
  echo "peak (oneDNN f32 matmul 4096^3, $THREADS threads, best of 2 tries): $PEAK GFLOP/s"
  : > "$WORK/flops.txt"
  for m in $MODELS; do
    echo "$m $("$ORT_PY" "$PEER" flops "$WORK/$m.onnx")" >> "$WORK/flops.txt"
  done
  awk -v p="$PEAK" '{ g = $5; sub(/[,}]/, "", g); printf "floor: %-20s %6.2f GFLOP/image -> at most %7.1f images/s (%.1f ms/image)\n", $1, g, p / g, 1000 * g / p }' "$WORK/flops.txt"

  # ---- throughput ----
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    for m in $MODELS; do
      for bs in $BATCHES; do
        it=$ITERS
        [ "$bs" -gt 1 ] && it=$ITERS_BIG
        measure "imgsim_${m}_b$bs" "$r" "$CLI" bench --model="$WORK/$m.onnx" --layer=output --batch-size="$bs" --threads="$THREADS" --iterations="$it" --warmup=2 --json
        measure "ort_${m}_b$bs" "$r" "$ORT_PY" "$PEER" ort-bench "$WORK/$m.onnx" --batch-size="$bs" --threads="$THREADS" --iterations="$it" --warmup=2
        measure "torch_${m}_b$bs" "$r" "$TORCH_PY" "$PEER" torch-bench --arch="$m" --batch-size="$bs" --threads="$THREADS" --iterations="$it" --warmup=2
      done
    done
    r=$((r + 1))
  done
  bench_py - "$WORK" "$MODELS" "$BATCHES" "$ROUNDS" "$PEAK" <<'EOF'
import json, sys
import benchlib as B
work, models, batches, rounds, peak = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4]), float(sys.argv[5])
gflop = {l.split()[0]: json.loads(l.split(None, 1)[1])["gflop"] for l in open(work + "/flops.txt")}
print()
print("%-20s %5s %11s %11s %11s %9s %9s %11s %8s" % ("model", "batch", "imgsim i/s", "ORT i/s", "torch i/s",
      "/ORT", "/torch", "imgsim ms", "% floor"))
short = []
for m in models:
    for bs in batches:
        i, o, t = (B.pick(work, "%s_%s_b%s" % (e, m, bs), rounds, "median") for e in ("imgsim", "ort", "torch"))
        if not (i and o and t):
            continue
        print("%-20s %5s %11.2f %11.2f %11.2f %8.2fx %8.2fx %11.1f %7.0f%%" % (
            m, bs, i["ips_median"], o["ips_median"], t["ips_median"], i["ips_median"] / o["ips_median"],
            i["ips_median"] / t["ips_median"], i["latency_ms_median"], 100 * i["ips_median"] * gflop[m] / peak))
        if i["ips_median"] < 1.2 * o["ips_median"]:
            short.append("%s %s" % (m, bs))
print("(images/s = batch / median latency of the median of %d rounds; target imgsim / ORT >= 1.2x)" % rounds)
print("below target: %s" % (", ".join(short) if short else "none"))
open(work + "/short.txt", "w").write("".join(s + "\n" for s in short))
EOF

  # ---- where the time goes, for the models below target ----
  if [ "$PROFILE" = 1 ] && [ -s "$WORK/short.txt" ]; then
    while read -r m bs; do
      ONEDNN_VERBOSE=1 "$CLI" bench --model="$WORK/$m.onnx" --layer=output --batch-size="$bs" --threads="$THREADS" --iterations=2 --warmup=1 > "$WORK/verbose_${m}_b$bs.log" 2>&1
      "$ORT_PY" "$PEER" dnnl-profile "$WORK/verbose_${m}_b$bs.log" 3 > "$WORK/dnnl_${m}_b$bs.json"
      "$ORT_PY" "$PEER" ort-bench "$WORK/$m.onnx" --batch-size="$bs" --threads="$THREADS" --iterations=2 --warmup=1 --profile="$WORK/ortprof_${m}_b$bs.json" > /dev/null
    done < "$WORK/short.txt"
    bench_py - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
for line in open(work + "/short.txt"):
    m, bs = line.split()
    d = json.load(open("%s/dnnl_%s_b%s.json" % (work, m, bs)))
    o = json.load(open("%s/ortprof_%s_b%s.json" % (work, m, bs)))
    tot = d["total_ms"]
    ot = sum(v for _, v in o["by_op"])
    print("\n%s batch %s: imgsim (oneDNN verbose, ms per run, %.1f ms summed):" % (m, bs, tot))
    print("  " + "; ".join("%s %.1f (%.0f%%)" % (k, v, 100 * v / tot) for k, v in d["by_kind"][:8]))
    for k, v in d["by_layer"][:6]:
        print("    %6.2f ms  %s" % (v, k))
    print("  ONNX Runtime (profiler, ms per run, %.1f ms summed): " % ot +
          "; ".join("%s %.1f (%.0f%%)" % (k, v, 100 * v / ot) for k, v in o["by_op"][:8]))
EOF
  fi
fi

# ---- load time: imgsim model load + engine creation vs ort.InferenceSession ----
if [ "$LOAD" = 1 ]; then
  for m in $LOAD_MODELS; do
    bench_export "$m" "$WORK/$m.onnx"
  done
  r=1
  while [ "$r" -le "$LOAD_ROUNDS" ]; do
    for m in $LOAD_MODELS; do
      measure "load_imgsim_$m" "$r" "$CLI" bench --model="$WORK/$m.onnx" --batch-size=1 --threads="$THREADS" --iterations=1 --warmup=0 --json
      measure "load_ort_$m" "$r" "$ORT_PY" "$PEER" ort-load "$WORK/$m.onnx" --threads="$THREADS" --repeat=1
    done
    r=$((r + 1))
  done
  bench_py - "$WORK" "$LOAD_MODELS" "$LOAD_ROUNDS" <<'EOF'
import json, os, statistics, sys
import benchlib as B
work, models, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
print()
print("%-10s %7s %13s %13s %13s %13s %9s %11s %11s" % ("model", "MB", "imgsim load", "engine build", "imgsim total",
      "ORT session", "/ORT", "imgsim RSS", "ORT RSS"))
for m in models:
    im = B.rounds_of(work, "load_imgsim_" + m, rounds)
    oo = B.rounds_of(work, "load_ort_" + m, rounds)
    if not im or not oo:
        continue
    ld = statistics.median(j["load_seconds"] for j in im)
    bd = statistics.median(j["build_seconds"] for j in im)
    tot = statistics.median(j["load_seconds"] + j["build_seconds"] for j in im)
    ort = statistics.median(j["load_seconds"][0] for j in oo)
    print("%-10s %7.0f %11.3f s %11.3f s %11.3f s %11.3f s %8.2fx %8.0f MB %8.0f MB" % (
        m, os.path.getsize("%s/%s.onnx" % (work, m)) / 1e6, ld, bd, tot, ort, tot / ort,
        statistics.median(j["peak_rss_mb"] for j in im), statistics.median(j["peak_rss_mb"] for j in oo)))
print("(medians of %d alternating rounds, each a fresh process; /ORT = imgsim total / ORT session; "
      "target <= 1.0x; peak RSS of the process: imgsim's includes one batch-1 run, ORT's the Python "
      "interpreter and numpy)" % rounds)
EOF
fi
