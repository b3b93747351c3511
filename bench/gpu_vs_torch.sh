#!/usr/bin/env bash
# gpu_vs_torch.sh: ResNet-50 model-only throughput, imgsim CUDA engine (fp16, tf32) vs PyTorch eager
# fp16 channels_last, same run, same GPU. Usage: bench/gpu_vs_torch.sh [BUILD_DIR] (default build-gpu,
# configured with the CUDA backend). Needs python3 with torch + torchvision + numpy (IMGSIM_PYTHON).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build-gpu}"
py="${IMGSIM_PYTHON:-$(command -v python3)}"
exec "$py" "$here/gpu_vs_torch.py" "$build"
