#!/usr/bin/env bash
# resume.sh: what a killed extraction costs to finish, and what an update costs, on this machine:
#  - a clean `imgsim extract` of N images (the baseline);
#  - the same extract SIGKILLed once half of its shards are written, then run again with the same
#    command: (time to the kill + time of the rerun) / clean time (issue 12's target: <= 1.1), and
#    the rerun alone / clean time;
#  - `extract --update` after 1% new images, against the clean extraction (target: <= 5%);
#  - the same by content: `--hash` on a full extraction against none, and `--update --hash` after
#    1% more new images against a full `--hash` extraction.
# Every store is checked against the clean one (numpy: features and manifest).
#   bench/resume.sh [--images=1000] [--shard-size=64] [--arch=resnet18] [--threads=0] [--cli=build/imgsim]
#                   [--keep=DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cli="${IMGSIM_CLI:-$here/../build/imgsim}" images=1000 shard=64 arch=resnet18 threads=0 keep=""
for a in "$@"; do
  case "$a" in
    --cli=*) cli="${a#--cli=}" ;;
    --images=*) images="${a#--images=}" ;;
    --shard-size=*) shard="${a#--shard-size=}" ;;
    --arch=*) arch="${a#--arch=}" ;;
    --threads=*) threads="${a#--threads=}" ;;
    --keep=*) keep="${a#--keep=}" ;;
    *) echo "resume.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
[ -x "$cli" ] || { echo "resume.sh: no imgsim binary at $cli (build first or pass --cli=PATH)" >&2; exit 1; }
w="${keep:-$(mktemp -d /tmp/imgsim-resume.XXXXXX)}"
mkdir -p "$w"
[ -n "$keep" ] || trap 'rm -rf "$w"' EXIT
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "imgsim $("$cli" --version 2>/dev/null | head -1), $arch (random weights), $images images, shards of $shard"
exec /usr/bin/python3 - "$cli" "$w" "$images" "$shard" "$arch" "$threads" "$here/../tests" <<'PY'
import glob, os, subprocess, sys, time
import numpy as np
cli, w, n, shard, arch, threads, tests = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
sys.path.insert(0, tests)
import testlib as T
data, model = os.path.join(w, "data"), os.path.join(w, "m.onnx")
if not os.path.isdir(data):
    T.make_dataset(data, 10, n // 10, seed=7)
subprocess.run([cli, "model", "init", "--arch=" + arch, "--out=" + model], check=True, capture_output=True)
def cmd(out, extra=()):
    return [cli, "extract", "--model=" + model, "--out=" + out, "--shard-size=%d" % shard, "--threads=" + threads,
            "--quiet"] + list(extra) + [data]
def timed(c):
    t = time.time(); subprocess.run(c, check=True, capture_output=True); return time.time() - t
def same(a, b):
    fa, fb = (np.load(os.path.join(s, "features.npy")) for s in (a, b))
    ma, mb = (open(os.path.join(s, "manifest.tsv"), "rb").read() for s in (a, b))
    return fa.shape == fb.shape and np.allclose(fa, fb, rtol=0, atol=1e-6), np.array_equal(fa, fb) and ma == mb
clean = os.path.join(w, "clean")
t_clean = timed(cmd(clean))
print("clean extract:              %7.2f s  (%.1f images/s)" % (t_clean, n / t_clean))
# killed once half of the shards are written, then rerun
k = os.path.join(w, "killed")
half = (n + shard - 1) // shard // 2
t = time.time()
p = subprocess.Popen(cmd(k), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while p.poll() is None and len(glob.glob(os.path.join(k, "shards", "[0-9]*.json"))) < half:
    time.sleep(0.01)
p.kill(); p.wait()
t_kill = time.time() - t
done = len(glob.glob(os.path.join(k, "shards", "[0-9]*.json")))
t_rerun = timed(cmd(k))
eq = same(k, clean)
print("killed after %d of %d shards: %7.2f s, rerun %.2f s: (kill + rerun) / clean = %.3f, rerun / clean = %.3f; store %s"
      % (done, (n + shard - 1) // shard, t_kill, t_rerun, (t_kill + t_rerun) / t_clean, t_rerun / t_clean,
         "byte-identical" if eq[1] else "DIFFERS"))
# 1% new images, --update against a full extraction
new = max(1, n // 100)
for i in range(new):
    T.photo_like(320, 240, i % 10, 90000 + i).save(os.path.join(data, "class_%02d" % (i % 10), "new_%03d.jpg" % i), quality=90)
t_upd = timed(cmd(clean, ["--update"]))
full = os.path.join(w, "full")
t_full = timed(cmd(full))
eq = same(clean, full)
print("--update with %d new images: %7.2f s, full extraction %.2f s: update / full = %.3f; store %s"
      % (new, t_upd, t_full, t_upd / t_full, "byte-identical" if eq[1] else "equal to 1e-6" if eq[0] else "DIFFERS"))
# the same by content (--hash): what hashing adds to a full extraction, and an update hashing every file
hashed = os.path.join(w, "hashed")
t_hfull = timed(cmd(hashed, ["--hash"]))
for i in range(new):
    T.photo_like(320, 240, i % 10, 95000 + i).save(os.path.join(data, "class_%02d" % (i % 10), "newh_%03d.jpg" % i), quality=90)
t_hupd = timed(cmd(hashed, ["--update", "--hash"]))
hfull = os.path.join(w, "hfull")
t_hfull2 = timed(cmd(hfull, ["--hash"]))
eq = same(hashed, hfull)
print("--hash on a full extraction: %7.2f s against %.2f s without (x %.3f)" % (t_hfull, t_full, t_hfull / t_full))
print("--update --hash with %d new images: %7.2f s, full --hash extraction %.2f s: update / full = %.3f; store %s"
      % (new, t_hupd, t_hfull2, t_hupd / t_hfull2, "byte-identical" if eq[1] else "equal to 1e-6" if eq[0] else "DIFFERS"))
PY
