#!/bin/sh
# bench/search_gpu.sh [BUILD_DIR]: imgsim's exact CUDA top-k against PyTorch (fp16 q @ g.T +
# torch.topk) on one GPU, in one run: gallery 1,000,000 x 2048 float16, 10,000 queries, k = 10
# (GS_N, GS_D, GS_Q, GS_K override). Needs a CUDA build (BUILD_DIR/tests/gpusearch_bench) and a
# python3 with torch. Prints queries/s, ratio, % of the measured fp16 matmul peak, batch-1
# latency, the streamed path (--gpu-memory = gallery / 4) and exactness vs float64.
set -e
BUILD=${1:-build}
BENCH="$BUILD/tests/gpusearch_bench"
if [ ! -x "$BENCH" ]; then
    echo "search_gpu.sh: $BENCH not found (configure with CUDA and build gpusearch_bench)" >&2
    exit 1
fi
HERE=$(cd "$(dirname "$0")" && pwd)
WORK="${TMPDIR:-/tmp}/imgsim_search_gpu"
trap 'rm -rf "$WORK"' EXIT
PYTHONUNBUFFERED=1 python3 "$HERE/search_gpu.py" "$BENCH" "$WORK"
