#!/usr/bin/env bash
# bench/e2e_gpu.sh BUILD: end to end, files on disk -> features on disk, on one GPU machine, in one
# run: imgsim extract --device=cuda --precision=fp16 (GPU decoding auto/gpu/cpu) against the old
# Python pipeline's method (PIL + torchvision transforms in a ThreadPoolExecutor feeding PyTorch
# fp16 channels_last), on the same files, machine and cores.
# Data: N (default 20000) generated photo-like JPEGs, quality 90, 4:2:0: most with sides 375..500
# (500x375-like), a fifth 1600x1200 and above.
# Env: N, BENCH_DIR (work folder), IMGSIM_PYTHON (python with torch+torchvision), BATCH (256),
# MODES (default "auto gpu cpu"; a mode may carry environment settings for experiments, e.g.
# "auto:IMGSIM_GPU_RING=4,IMGSIM_CUDA_GRAPHS=0"), PEER (1: also run the Python pipeline).
set -eu
BUILD="${1:-build-gpu}"
N="${N:-20000}"
W="${BENCH_DIR:-/tmp/imgsim-e2e}"
PY="${IMGSIM_PYTHON:-python3}"
BATCH="${BATCH:-256}"
IMGSIM="$BUILD/imgsim"
mkdir -p "$W"
per=$(( (N + 19) / 20 ))
if [ ! -f "$W/data/.done-$N" ]; then
  rm -rf "$W/data"
  "$IMGSIM" synth --out="$W/data" --classes=20 --per-class=$per --min-side=375 --max-side=500 \
      --large-fraction=0.2 --large-min-side=1200 --quality=90 --quiet
  touch "$W/data/.done-$N"
fi
nimg=$(find "$W/data" -name '*.jpg' | wc -l)
du -sh "$W/data" | sed 's/^/data: /'
[ -f "$W/r50.onnx" ] || "$IMGSIM" model init --arch=resnet50 --seed=1 --out="$W/r50.onnx"
export XDG_CACHE_HOME="$W/cache"
# build the engine once (cached engine file), so the runs below time the job, not autotuning
"$IMGSIM" engine build --model="$W/r50.onnx" --device=cuda --precision=fp16 --batch-size="$BATCH" --quiet || true
cat /dev/null > "$W/results.txt"
for spec in ${MODES:-auto gpu cpu}; do
  mode="${spec%%:*}"
  envs=""
  [ "$spec" != "$mode" ] && envs="${spec#*:}"
  name="$(echo "$spec" | tr ':,=' '___')"
  rm -rf "$W/store_$name"
  # drop nothing from the page cache: both sides read the same (cached) files
  tw0=$(date +%s.%N)
  env ${envs//,/ } "$IMGSIM" extract --model="$W/r50.onnx" --device=cuda --precision=fp16 --batch-size="$BATCH" \
      --decode="$mode" --out="$W/store_$name" --verbose "$W/data" 2> "$W/extract_$name.log" ||
      { tail -30 "$W/extract_$name.log"; exit 1; }
  tw1=$(date +%s.%N)
  grep -E 'nvJPEG: [0-9]+ batches|consumer: GPU decode' "$W/extract_$name.log" | sed "s/^/$name: /"
  "$PY" - "$W/store_$name/meta.json" "$name" "$(awk "BEGIN{print $tw1 - $tw0}")" >> "$W/results.txt" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1])); t = m["timings"]; c = m["counts"]
print("%s %.1f %d %.2f process=%.2fs total=%.2fs list=%.2fs setup=%.2fs gpu_init=%.2fs cpu_decode_busy=%.1fs gpu_decoded=%d gpu_decode=%.2fs infer_wait=%.2fs write=%.2fs wait_workers=%.2fs cpu_share=%.2f" % (
    sys.argv[2], t["images_per_s"], c["ok"], t["total_s"], float(sys.argv[3]), t["total_s"], t["list_s"], t.get("setup_s", 0),
    t.get("gpu_init_s", 0), t["decode_busy_s"],
    c.get("gpu_decoded", 0), t.get("gpu_decode_s", 0), t["infer_busy_s"], t["write_s"],
    t.get("wait_for_workers_s", 0), m.get("cpu_decode_share_final", -1)))
PYEOF
  tail -2 "$W/extract_$name.log"
done
[ "${PEER:-1}" = 1 ] && "$PY" "$(dirname "$0")/e2e_gpu_peer.py" "$W/data" "$W/peer.npy" "$BATCH" >> "$W/results.txt"
echo
echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), CPU: $(nproc) cores, $nimg images"
"$PY" - "$W/results.txt" <<'PYEOF'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
peer = ([float(r[1]) for r in rows if r[0] == "python"] or [float("nan")])[0]
print("%-12s %12s %8s  %s" % ("pipeline", "images/s", "x python", "stages"))
for r in rows:
    print("%-12s %12.1f %8.2f  %s" % (r[0], float(r[1]), float(r[1]) / peer, " ".join(r[4:])))
PYEOF
