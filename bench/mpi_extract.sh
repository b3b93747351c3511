#!/usr/bin/env bash
# mpi_extract.sh: imgsim extract as one process against mpirun -np 1, 2 (and more) on this machine
# (issue 15). Every store is checked against the one-process store (numpy: features; manifest bytes).
# Each configuration runs --repeat times, alternating; the median wall time (mpirun start-up, engine
# loads and the join included) and images/s are printed.
#   bench/mpi_extract.sh [--images=192] [--shard-size=16] [--arch=resnet18] [--np=1,2] [--repeat=3]
#                        [--cli=build/imgsim] [--keep=DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cli="${IMGSIM_CLI:-$here/../build/imgsim}" images=192 shard=16 arch=resnet18 nps=1,2 repeat=3 keep=""
for a in "$@"; do
  case "$a" in
    --cli=*) cli="${a#--cli=}" ;;
    --images=*) images="${a#--images=}" ;;
    --shard-size=*) shard="${a#--shard-size=}" ;;
    --arch=*) arch="${a#--arch=}" ;;
    --np=*) nps="${a#--np=}" ;;
    --repeat=*) repeat="${a#--repeat=}" ;;
    --keep=*) keep="${a#--keep=}" ;;
    *) echo "mpi_extract.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
[ -x "$cli" ] || { echo "mpi_extract.sh: no imgsim binary at $cli (build first or pass --cli=PATH)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "mpi_extract.sh: no mpirun (Debian: openmpi-bin)" >&2; exit 1; }
w="${keep:-$(mktemp -d /tmp/imgsim-mpi.XXXXXX)}"
mkdir -p "$w"
[ -n "$keep" ] || trap 'rm -rf "$w"' EXIT
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "imgsim $("$cli" --version 2>/dev/null | head -1), $(mpirun --version | head -1), $arch (random weights), $images images, shards of $shard"
exec /usr/bin/python3 - "$cli" "$w" "$images" "$shard" "$arch" "$nps" "$repeat" <<'PY'
import os, shutil, statistics, subprocess, sys, time
import numpy as np
cli, w, n, shard, arch, nps, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
data, model = os.path.join(w, "data"), os.path.join(w, "m.onnx")
if not os.path.isdir(data):
    subprocess.run([cli, "synth", "--out=" + data, "--classes=8", "--per-class=%d" % (n // 8), "--min-side=256",
                    "--max-side=640", "--quiet"], check=True)
if not os.path.exists(model):
    subprocess.run([cli, "model", "init", "--arch=" + arch, "--out=" + model], check=True, capture_output=True)
mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
def cmd(out):
    return [cli, "extract", "--model=" + model, "--out=" + out, "--shard-size=" + shard, "--quiet", data]
configs = [("1 process", None)] + [("mpirun -np %s" % k, int(k)) for k in nps.split(",")]
times = {c: [] for c, _ in configs}
ref = os.path.join(w, "ref")
for r in range(repeat):
    for label, np_ in configs:
        out = os.path.join(w, "s")
        shutil.rmtree(out, ignore_errors=True)
        c = cmd(out) if np_ is None else mpirun + ["-np", str(np_)] + cmd(out)
        t = time.time()
        subprocess.run(c, check=True, capture_output=True)
        times[label].append(time.time() - t)
        if np_ is None and r == 0:
            shutil.rmtree(ref, ignore_errors=True)
            shutil.copytree(out, ref)
        same = np.array_equal(np.load(os.path.join(out, "features.npy")), np.load(os.path.join(ref, "features.npy"))) \
            and open(os.path.join(out, "manifest.tsv"), "rb").read() == open(os.path.join(ref, "manifest.tsv"), "rb").read()
        if not same:
            sys.exit("%s: the store differs from one process's" % label)
base = statistics.median(times["1 process"])
print("%-16s %10s %10s %8s   %s" % ("config", "median s", "images/s", "vs 1", "all runs (s)"))
for label, _ in configs:
    m = statistics.median(times[label])
    print("%-16s %10.2f %10.1f %8.2f   %s" % (label, m, n / m, base / m, " ".join("%.2f" % t for t in times[label])))
print("every store byte-identical to the one-process store; load after: %s" % open("/proc/loadavg").read().split()[:3])
PY
