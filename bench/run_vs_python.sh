#!/usr/bin/env bash
# bench/run_vs_python.sh [BUILD]: the whole job on the CPU, in one run on one machine:
# `imgsim run` (split, gallery, queries, exact search) against the old Python pipeline's stages
# on the same data, split, model architecture and cores: PIL + torchvision transforms in a
# ThreadPoolExecutor, PyTorch CPU ResNet-50 features, numpy cosine similarity + top-k.
# Data: the demo dataset (imgsim synth, 10 classes x 30 photo-like JPEGs, sides 160..800).
# Env: BENCH_DIR (work folder), IMGSIM_PYTHON (/usr/bin/python3), ARCH (resnet50), PER_CLASS (30).
set -eu
BUILD="${1:-build}"
W="${BENCH_DIR:-/tmp/imgsim-run-bench}"
PY="${IMGSIM_PYTHON:-/usr/bin/python3}"
ARCH="${ARCH:-resnet50}"
PER="${PER_CLASS:-30}"
IMGSIM="$BUILD/imgsim"
mkdir -p "$W"
[ -d "$W/data" ] || "$IMGSIM" synth --out="$W/data" --classes=10 --per-class="$PER" --min-side=160 --max-side=800 --quiet
[ -f "$W/model.onnx" ] || "$IMGSIM" model init --arch="$ARCH" --seed=42 --out="$W/model.onnx"
rm -rf "$W/job"
/usr/bin/time -v "$IMGSIM" run "$W/data" --model="$W/model.onnx" --out="$W/job" --k=5 --quiet 2> "$W/imgsim_time.log"
"$PY" "$(dirname "$0")/run_vs_python_peer.py" "$W/job" "$ARCH" > "$W/python.txt"
"$PY" - "$W/job/summary.json" "$W/python.txt" "$W/imgsim_time.log" <<'PYEOF'
import json, sys, re
s = json.load(open(sys.argv[1]))
py = dict(l.split(None, 1) for l in open(sys.argv[2]) if l.strip())
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(sys.argv[3]).read())
st = s["stages"]
imgs = s["counts"]["gallery"] + s["counts"]["queries"]
ext = st["gallery (train)"]["seconds"] + st["queries (test)"]["seconds"]
print("machine: %s" % py["machine"].strip())
print("%-28s %12s %12s %8s" % ("stage", "imgsim s", "python s", "ratio"))
rows = [("extract gallery+queries", ext, float(py["extract_s"])), ("search", st["search"]["seconds"], float(py["search_s"])),
        ("total", s["total_seconds"], float(py["total_s"]))]
for name, a, b in rows:
    print("%-28s %12.3f %12.3f %7.2fx" % (name, a, b, b / a if a > 0 else 0))
print("end to end images/s: imgsim %.1f, python %.1f (%.2fx); peak RSS imgsim %.0f MB, python %s MB" % (
    imgs / s["total_seconds"], imgs / float(py["total_s"]), float(py["total_s"]) / s["total_seconds"],
    int(rss.group(1)) / 1024 if rss else 0, py["peak_rss_mb"].strip()))
print("top-1 accuracy: imgsim %.4f, python %s (random weights: only sanity)" % (s["accuracy"]["top1"], py["top1"].strip()))
PYEOF
