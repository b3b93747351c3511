#!/usr/bin/env bash
# serve_load.sh: `imgsim serve` under load on 127.0.0.1: requests/s and p50/p99 latency of
# POST /search at 1, 8 and 32 concurrent clients (each client one keep-alive connection, one
# request at a time), against the same query images run as one `imgsim search` batch. Bounded:
# at most --requests per level and --seconds per level; everything on localhost, then it stops.
#   bench/serve_load.sh [--device=cpu|cuda[:N]] [--arch=resnet18|resnet50] [--gallery-size=500]
#                       [--queries=64] [--requests=400] [--seconds=30] [--clients=1,8,32]
#                       [--batch-size=32] [--batch-window-ms=2] [--cli=build/imgsim] [--keep=DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cli="${IMGSIM_CLI:-$here/../build/imgsim}"
args=()
for a in "$@"; do
  case "$a" in
    --cli=*) cli="${a#--cli=}" ;;
    *) args+=("$a") ;;
  esac
done
[ -x "$cli" ] || { echo "serve_load: no imgsim binary at $cli (build first or pass --cli=PATH)" >&2; exit 1; }
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online$(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | sed 's/^/, GPU: /')"
exec /usr/bin/python3 "$here/serve_load.py" --cli="$cli" "${args[@]}"
