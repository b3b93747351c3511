#!/usr/bin/env bash
# search_vs_faiss.sh: exact top-k, imgsim vs FAISS IndexFlatIP (Debian python3-faiss), same data,
# same threads, one run: gallery 200,000 x 2048 float32 (seeded, normalised), 1,000 queries,
# k = 10. Prints queries/s of both, the ratio and recall@10 (vs FAISS and vs float64 exact).
#   bench/search_vs_faiss.sh [--threads=N] [--n=200000] [--q=1000] [--cli=build/imgsim] ...
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
[ -x "$cli" ] || { echo "search_vs_faiss: no imgsim binary at $cli (build first or pass --cli=PATH)" >&2; exit 1; }
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online"
exec /usr/bin/python3 "$here/search_vs_faiss.py" --cli="$cli" "${args[@]}"
