#!/bin/sh
# onnx_load.sh: time of reading a ResNet-50 ONNX file: `imgsim model info` (two full imports:
# parse, SHA-256, validation, float32 conversion; plus shape inference and optimisation) against
# Python's onnx.load (protobuf parse only), same file, same machine, in one run.
#   bench/onnx_load.sh [IMGSIM_BINARY] [MODEL.onnx]
# Without MODEL, exports torchvision resnet50 (random weights) with tools/export_torchvision.py.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cli=${1:-$here/build/imgsim}
model=${2:-}
py=${IMGSIM_PYTHON:-/usr/bin/python3}
if [ -z "$model" ]; then
    model=${TMPDIR:-/tmp}/imgsim-bench-resnet50.onnx
    [ -f "$model" ] || "$py" "$here/tools/export_torchvision.py" --arch resnet50 --weights none --out "$model" >/dev/null
fi
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; model $(du -m "$model" | cut -f1) MB"
for i in 1 2 3; do
    /usr/bin/time -f "imgsim model info (2 imports + passes): %e s wall, %U s user, %M KB peak" \
        "$cli" model info "$model" >/dev/null
    /usr/bin/time -f "python onnx.load (parse only):        %e s wall, %U s user, %M KB peak" \
        "$py" -c "import sys, onnx; onnx.load(sys.argv[1])" "$model"
done
