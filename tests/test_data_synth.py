#!/usr/bin/python3
"""test_data_synth.py: `imgsim synth` datasets, checked with PIL and numpy.

  - the layout is ROOT/class_XX/img_YYYY.jpg with the requested counts;
  - every file is a baseline JPEG that PIL decodes, RGB, 4:2:0, with the IJG quantisation tables
    for quality 90 (computed here from the IJG formula), sides within [min-side, max-side], and
    sizes that vary (several aspect ratios, landscape and portrait);
  - the same seed gives byte-identical files, a different seed different ones, and the thread
    count does not matter;
  - --large-fraction=1 gives sides in [large-min-side, large-min-side*4/3];
  - classes look different: a leave-one-out nearest-centroid classifier on a 4x4 colour thumbnail
    is far above chance (a random-weight CNN relies on the same cues).
"""
import glob
import os
import shutil
import subprocess
import sys

CLI = os.environ.get("IMGSIM_CLI")
WORK = os.environ.get("IMGSIM_TEST_DIR", "/tmp/imgsim_test_data_synth")

try:
    import numpy as np
    from PIL import Image, JpegImagePlugin
except ImportError:
    print("PIL/numpy not available")
    sys.exit(77)
if not CLI or not os.path.exists(CLI):
    print("IMGSIM_CLI not set")
    sys.exit(77)

from testlib import check, finish  # noqa: E402


def synth(out, *args):
    subprocess.run([CLI, "synth", "--out=" + out, "--quiet", *args], check=True)
    return sorted(glob.glob(os.path.join(out, "*", "*")))


def ijg_table(std, quality):
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, (q * scale + 50) // 100)) for q in std]


# IJG standard tables (JPEG spec Annex K), natural order; PIL reports them in the same order
STD_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
            14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
            49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
STD_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
              47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32

shutil.rmtree(WORK, ignore_errors=True)
NC, PC = 6, 8
a = synth(os.path.join(WORK, "a"), "--classes=%d" % NC, "--per-class=%d" % PC, "--min-side=48", "--max-side=120",
          "--seed=7")
want = sorted(os.path.join(WORK, "a", "class_%02d" % c, "img_%04d.jpg" % i) for c in range(NC) for i in range(PC))
check(a == want, "layout differs: %s" % a[:5])

sizes = set()
feats, labels = [], []
for path in a:
    im = Image.open(path)
    check(im.format == "JPEG" and im.mode == "RGB", "%s: %s %s" % (path, im.format, im.mode))
    check(JpegImagePlugin.get_sampling(im) == 2, "%s: not 4:2:0" % path)
    q = im.quantization
    check(list(q[0]) == ijg_table(STD_LUMA, 90) and list(q[1]) == ijg_table(STD_CHROMA, 90),
          "%s: quantisation tables are not IJG quality 90" % path)
    w, h = im.size
    check(48 <= w <= 120 and 48 <= h <= 120, "%s: size %dx%d outside [48, 120]" % (path, w, h))
    sizes.add((w, h))
    thumb = np.asarray(im.convert("RGB").resize((4, 4), Image.BILINEAR), dtype=np.float64) / 255.0
    feats.append(thumb.ravel())
    labels.append(int(os.path.basename(os.path.dirname(path))[6:]))
check(len(sizes) >= len(a) // 2, "sizes hardly vary: %d distinct of %d" % (len(sizes), len(a)))
check(any(w > h for w, h in sizes) and any(h > w for w, h in sizes), "no mix of landscape and portrait")

# leave-one-out nearest centroid on colour thumbnails
X, y = np.array(feats), np.array(labels)
correct = 0
for i in range(len(X)):
    mask = np.arange(len(X)) != i
    cents = np.array([X[mask & (y == c)].mean(axis=0) for c in range(NC)])
    correct += int(np.argmin(((cents - X[i]) ** 2).sum(axis=1)) == y[i])
acc = correct / len(X)
print("nearest-centroid accuracy %.2f (chance %.2f)" % (acc, 1.0 / NC))
check(acc >= 0.6, "classes are not visually distinct: nearest-centroid accuracy %.2f" % acc)

# determinism: same seed (other thread count) -> identical bytes; other seed -> different
b = synth(os.path.join(WORK, "b"), "--classes=%d" % NC, "--per-class=%d" % PC, "--min-side=48", "--max-side=120",
          "--seed=7", "--threads=1")
same = all(open(p, "rb").read() == open(q, "rb").read() for p, q in zip(a, b))
check(len(a) == len(b) and same, "same seed gave different files")
c = synth(os.path.join(WORK, "c"), "--classes=%d" % NC, "--per-class=%d" % PC, "--min-side=48", "--max-side=120",
          "--seed=8")
ndiff = sum(open(p, "rb").read() != open(q, "rb").read() for p, q in zip(a, c))
check(ndiff == len(a), "seed 8 reproduced %d files of seed 7" % (len(a) - ndiff))

# large images
big = synth(os.path.join(WORK, "big"), "--classes=2", "--per-class=2", "--large-fraction=1", "--large-min-side=150")
for path in big:
    w, h = Image.open(path).size
    check(150 <= w <= 200 and 150 <= h <= 200, "%s: large size %dx%d outside [150, 200]" % (path, w, h))

# bad options are usage errors
p = subprocess.run([CLI, "synth", "--classes=2"], capture_output=True, text=True)
check(p.returncode == 2 and "--out" in p.stderr, "missing --out not a usage error")
p = subprocess.run([CLI, "synth", "--out=" + os.path.join(WORK, "x"), "--min-side=100", "--max-side=50"],
                   capture_output=True, text=True)
check(p.returncode == 2, "max-side < min-side not a usage error")

finish()
