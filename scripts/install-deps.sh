#!/usr/bin/env bash
# Installs the Debian 12 packages imgsim needs to build and test (idempotent; quiet when all
# are present). Run as root, or with sudo available.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --fuzz   also clang and libFuzzer (make fuzz)
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libdnnl-dev libprotobuf-c-dev protobuf-c-compiler
      libturbojpeg0-dev libspng-dev libwebp-dev libexif-dev libcjson-dev
      libcmocka-dev
      libssl-dev         # SHA-256 of model files through libcrypto (optional at build time)
      libopenmpi-dev openmpi-bin  # the CLI under mpirun (optional at build time)
      libmicrohttpd-dev  # imgsim serve (optional at build time: without it serve is left out)
      chromium           # the report and serve page tests drive a real headless browser
      strace             # the --durable test watches the fsync and rename calls
      python3-numpy python3-pil python3-torch python3-torchvision python3-onnx python3-faiss
      python3-dev python3-venv python3-pip  # the Python package: its build and its venv test
      libopenblas0-pthread)  # the BLAS numpy/FAISS use in tests and benchmarks (reference BLAS is ~50x slower)
if [ "${1:-}" = --fuzz ]; then pkgs+=(clang libclang-rt-14-dev); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
