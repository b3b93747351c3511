#!/usr/bin/env bash
# bench/multi_gpu.sh BUILD: the multi-engine path's cost on one GPU machine (issue 15): imgsim
# extract --device=cuda:0 against --device=cuda:0,0 (two engines on the one GPU, the store's shards
# dealt to them) and, where the machine has several GPUs, cuda:all; end to end, files on disk to
# features on disk, ResNet-50 fp16, the same cached engine file, alternating runs (REPEATS, default
# 3), best and median wall time each. Target: cuda:0,0 within 5% of cuda:0.
# Env: N (default 10000 photo-like JPEGs, sides 375..500), BENCH_DIR, BATCH (256).
set -eu
BUILD="${1:-build-gpu}"
N="${N:-10000}"
W="${BENCH_DIR:-/tmp/imgsim-multi}"
BATCH="${BATCH:-256}"
REPEATS="${REPEATS:-3}"
IMGSIM="$BUILD/imgsim"
mkdir -p "$W"
per=$(( (N + 19) / 20 ))
if [ ! -f "$W/data/.done-$N" ]; then
  rm -rf "$W/data"
  "$IMGSIM" synth --out="$W/data" --classes=20 --per-class=$per --min-side=375 --max-side=500 --quality=90 --quiet
  touch "$W/data/.done-$N"
fi
[ -f "$W/r50.onnx" ] || "$IMGSIM" model init --arch=resnet50 --seed=1 --out="$W/r50.onnx"
export XDG_CACHE_HOME="$W/cache"
"$IMGSIM" engine build --model="$W/r50.onnx" --device=cuda --precision=fp16 --batch-size="$BATCH" --quiet || true
ngpu=$(nvidia-smi -L | wc -l)
devs="cuda:0 cuda:0,0"
[ "$ngpu" -gt 1 ] && devs="$devs cuda:all"
: > "$W/times.txt"
for r in $(seq "$REPEATS"); do
  for d in $devs; do
    rm -rf "$W/store"
    t0=$(date +%s.%N)
    "$IMGSIM" extract --model="$W/r50.onnx" --device="$d" --precision=fp16 --batch-size="$BATCH" --out="$W/store" \
        "$W/data" 2> "$W/extract.log" || { tail -20 "$W/extract.log"; exit 1; }
    t1=$(date +%s.%N)
    # the job's own seconds (listing to meta.json; the engines and their loading not counted)
    job=$(grep -oE 'skipped in [0-9.]+ s' "$W/extract.log" | grep -oE '[0-9.]+' | tail -1)
    echo "$d $(awk "BEGIN{print $t1 - $t0}") $job" >> "$W/times.txt"
  done
done
nimg=$(find "$W/data" -name '*.jpg' | wc -l)
echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) x$ngpu, CPU: $(nproc) cores, $nimg images, ResNet-50 fp16 batch $BATCH, $REPEATS runs each"
python3 - "$W/times.txt" "$nimg" <<'PYEOF'
import sys, statistics as st
t, j = {}, {}
for l in open(sys.argv[1]):
    d, s, job = l.split(); t.setdefault(d, []).append(float(s)); j.setdefault(d, []).append(float(job))
n = int(sys.argv[2]); base, jbase = st.median(t["cuda:0"]), st.median(j["cuda:0"])
for d in t:
    print("%-9s process median %.2f s (best %.2f s), %.3fx cuda:0's; the job alone (engines loaded) median %.2f s, "
          "%.0f images/s, %.3fx cuda:0's" % (d, st.median(t[d]), min(t[d]), st.median(t[d]) / base,
                                            st.median(j[d]), n / st.median(j[d]), st.median(j[d]) / jbase))
PYEOF
