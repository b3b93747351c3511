#!/bin/bash
# bench/preprocess.sh: decode + preprocess the same JPEGs (photo-like, quality 90, half 500x375
# and half 1600x1200) with imgsim and with the Python pipeline's code path (PIL + torchvision
# transforms in a ThreadPoolExecutor), on the same cores in one run; prints images/s and ratio.
#
# usage: bench/preprocess.sh [--images=N] [--workers=N] [--repeat=N] [--imgsim=PATH]
#   --images   number of JPEGs (default 400; cached in /tmp/imgsim-bench-preprocess-N)
#   --workers  threads for both sides (default: all cores)
#   --repeat   passes over the set for each side (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
N=400; W=$(nproc); R=2; IMGSIM=build/imgsim; PY=${IMGSIM_PYTHON:-/usr/bin/python3}
for a in "$@"; do
  case "$a" in
    --images=*) N=${a#*=} ;;
    --workers=*) W=${a#*=} ;;
    --repeat=*) R=${a#*=} ;;
    --imgsim=*) IMGSIM=${a#*=} ;;
    *) echo "usage: $0 [--images=N] [--workers=N] [--repeat=N] [--imgsim=PATH]" >&2; exit 2 ;;
  esac
done
[ -x "$IMGSIM" ] || { echo "$IMGSIM not found: build first (make)" >&2; exit 1; }
DIR=/tmp/imgsim-bench-preprocess-$N
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; workers $W; $N JPEGs x $R passes"
echo "generating $N JPEGs in $DIR (cached) ..."
"$PY" bench/preprocess_peer.py gen "$DIR" "$N"
imgsim_out=$("$IMGSIM" preprocess --bench "$DIR" --workers="$W" --repeat="$R")
echo "$imgsim_out"
py_out=$("$PY" bench/preprocess_peer.py run "$DIR" "$W" "$R")
echo "$py_out"
a=$(echo "$imgsim_out" | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')
b=$(echo "$py_out" | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')
echo "ratio imgsim / python: $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')x"
