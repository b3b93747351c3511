"""int8 on the CPU: `imgsim calibrate`, its file, and `--precision=int8 --calib=FILE`.

The model is a torchvision network with random weights and random BatchNorm statistics exported
to ONNX (so the folded biases are not zero); images come from `imgsim synth` (photo-like JPEGs),
a calibration set and a separate evaluation set.

  calib (--calib):
    - determinism: two calibrations of the same images give the same bytes;
    - the file is JSON naming the model's sha256 (hashlib's), its layer, the method, the images;
      every tensor name is a value of the ONNX graph (onnx's own reading of the file), scale is
      threshold / 255 for unsigned tensors and / 127 for signed ones (float32), and an unsigned
      tensor's min is >= 0;
    - min-max and percentile against numpy: the "input" tensor's threshold is max |x| of the
      calibration images' network inputs (`imgsim preprocess` of each, numpy) exactly for
      minmax, and numpy's percentile of |x| within one histogram bin for percentile;
    - round trip: the file rewritten by Python's json (other formatting, same content) gives
      bit-identical int8 features; a file for another model is refused with a message saying so
      (extract and bench, also with the ASan build); another format version is refused; no
      --calib for int8 is refused.
  int8 (--int8): calibrated (entropy) int8 features against the fp32 features of the same model
    on the evaluation images: cosine mean >= 0.99 and min >= 0.98, and the top-1 neighbour of
    each image among the others (exact search in numpy) is the same for >= 95% of the images. The
    search is over features centred on the fp32 mean: a random-weight network's features share
    one large component (every pair of images has cosine 0.97..0.9996, top-1 margins ~1e-4, below
    any quantisation's noise), which a trained model's features do not; the raw-cosine agreement
    is printed too (90% on resnet18 here);
    `imgsim bench --precision=int8` runs.

Usage: test_int8_cpu.py --arch=resnet18 [--calib] [--int8] [--images=N]
"""
import argparse
import glob
import hashlib
import json
import os
import sys

import numpy as np

import testlib as T

ap = argparse.ArgumentParser()
ap.add_argument("--arch", default="resnet18")
ap.add_argument("--calib", action="store_true")
ap.add_argument("--int8", action="store_true")
ap.add_argument("--images", type=int, default=40)
args = ap.parse_args()

try:
    import torch
    import torchvision
    import onnx
except ImportError:
    T.skip("torch/torchvision/onnx not available")

torch.set_num_threads(2)
w = T.workdir()


def export_model(path, arch, seed):
    T.export_resnet(path, arch, seed)


model = os.path.join(w, args.arch + ".onnx")
export_model(model, args.arch, 3)
cal_dir = os.path.join(w, "cal")
eval_dir = os.path.join(w, "eval")
T.run(["synth", "--out=" + cal_dir, "--classes=4", "--per-class=4", "--min-side=160", "--max-side=320",
       "--seed=7", "--quiet"])
per = max(1, args.images // 8)
T.run(["synth", "--out=" + eval_dir, "--classes=8", "--per-class=%d" % per, "--min-side=160", "--max-side=320",
       "--seed=11", "--quiet"])


def calibrate(out, method="entropy", extra=()):
    T.run(["calibrate", "--model=" + model, cal_dir, "--out=" + out, "--method=" + method, "--images=12",
           "--threads=2", "--quiet"] + list(extra))
    return out


def extract(out, precision, calib=None, cli=None, inp=None, check=True):
    a = ["extract", "--model=" + model, inp or eval_dir, "--out=" + out, "--precision=" + precision, "--threads=2",
         "--quiet"]
    if calib:
        a.append("--calib=" + calib)
    p = T.run(a, cli=cli, check=check)
    return p if not check else np.load(os.path.join(out, "features.npy"))


if args.calib:
    c1 = calibrate(os.path.join(w, "a.calib"))
    c2 = calibrate(os.path.join(w, "b.calib"))
    b1, b2 = open(c1, "rb").read(), open(c2, "rb").read()
    T.check(b1 == b2, "two calibrations of the same images differ")
    j = json.loads(b1)
    sha = hashlib.sha256(open(model, "rb").read()).hexdigest()
    T.check(j.get("format") == "imgsim-calib-1", "format: %r" % j.get("format"))
    T.check(j["model"]["sha256"] == sha, "sha256 %s, hashlib %s" % (j["model"]["sha256"], sha))
    T.check(j["model"]["layer"] != "", "no layer")
    T.check(j["method"] == "entropy" and j["images"] == 12, "method/images: %r %r" % (j["method"], j["images"]))
    T.check(j["preprocessing"]["resize"] == [224, 224], "preprocessing: %r" % j["preprocessing"])
    om = onnx.load(model)
    names = {i.name for i in om.graph.input} | {o for n in om.graph.node for o in n.output}
    ts = j["tensors"]
    T.check(len(ts) >= 10, "only %d tensors" % len(ts))
    for t in ts:
        T.check(t["name"] in names, "tensor %s is not in the ONNX graph" % t["name"])
        want = np.float32(np.float64(t["threshold"]) / (255.0 if t["unsigned"] else 127.0))
        T.check(np.float32(t["scale"]) == want, "%s: scale %r, threshold/%s = %r" %
                (t["name"], t["scale"], 255 if t["unsigned"] else 127, want))
        T.check(not t["unsigned"] or t["min"] >= 0, "%s: unsigned with min %r" % (t["name"], t["min"]))
        T.check(t["threshold"] <= max(abs(t["min"]), abs(t["max"])) * (1 + 1e-6), "%s: threshold above max" % t["name"])

    # the input tensor through numpy: max |x| (minmax) and the percentile of |x|
    xs = []
    imgs = sorted(glob.glob(os.path.join(cal_dir, "*", "*.jpg")))
    for k in range(12):  # the images calibrate takes: evenly spread over the sorted listing
        p = imgs[k * len(imgs) // 12]
        T.run(["preprocess", p, "--out=" + os.path.join(w, "x.npy")])
        xs.append(np.load(os.path.join(w, "x.npy")).ravel())
    a = np.abs(np.concatenate(xs).astype(np.float64))
    jm = json.load(open(calibrate(os.path.join(w, "m.calib"), "minmax")))
    tin = [t for t in jm["tensors"] if t["name"] == "input"][0]
    T.check(tin["threshold"] == float(np.float32(a.max())), "minmax input threshold %r, numpy %r" %
            (tin["threshold"], a.max()))
    jp = json.load(open(calibrate(os.path.join(w, "p.calib"), "percentile", ["--percentile=99"])))
    tin = [t for t in jp["tensors"] if t["name"] == "input"][0]
    ref = np.percentile(a, 99)
    T.check(abs(tin["threshold"] - ref) <= 2 * a.max() / 2048, "percentile input threshold %r, numpy %r" %
            (tin["threshold"], ref))
    T.check(jp["percentile"] == 99, "percentile not recorded")

    # round trip through another writer
    f8 = extract(os.path.join(w, "s1"), "int8", c1)
    c3 = os.path.join(w, "c.calib")
    json.dump(j, open(c3, "w"), indent=1, sort_keys=True)
    f8b = extract(os.path.join(w, "s2"), "int8", c3)
    T.check(np.array_equal(f8, f8b), "features differ with the file rewritten by json")
    T.check(f8.shape[0] == args.images // 8 * 8 and np.all(np.isfinite(f8)), "int8 features: %r" % (f8.shape,))

    # refusals
    other = os.path.join(w, "other.onnx")
    export_model(other, args.arch, 4)
    for cli in [None] + ([T.CLI_ASAN] if T.CLI_ASAN else []):
        p = T.run(["extract", "--model=" + other, eval_dir, "--out=" + os.path.join(w, "s3"), "--precision=int8",
                   "--calib=" + c1, "--quiet"], cli=cli, check=False)
        T.check(p.returncode == 1 and "calibration file is for another model" in p.stderr and c1 in p.stderr,
                "another model's file: rc %d, %s" % (p.returncode, p.stderr.strip()))
    p = T.run(["bench", "--model=" + other, "--precision=int8", "--calib=" + c1, "--iterations=1"], check=False)
    T.check(p.returncode == 1 and "another model" in p.stderr, "bench: %s" % p.stderr.strip())
    j9 = dict(j, format="imgsim-calib-9")
    c9 = os.path.join(w, "v9.calib")
    json.dump(j9, open(c9, "w"))
    p = extract(os.path.join(w, "s4"), "int8", c9, check=False)
    T.check(p.returncode == 1 and "imgsim-calib-9" in p.stderr and "not supported" in p.stderr,
            "format 9: %s" % p.stderr.strip())
    p = extract(os.path.join(w, "s5"), "int8", None, check=False)
    T.check(p.returncode == 1 and "calib" in p.stderr, "int8 without --calib: %s" % p.stderr.strip())
    if T.CLI_ASAN:  # the int8 engine under ASan/UBSan on two images
        one = os.path.join(w, "two.tsv")
        rows = sorted(glob.glob(os.path.join(eval_dir, "*", "*.jpg")))[:2]
        open(one, "w").write("path\tlabel\n" + "".join("%s\tx\n" % r for r in rows))
        fa = extract(os.path.join(w, "s6"), "int8", c1, cli=T.CLI_ASAN, inp=one)
        ca = np.sum(fa * f8[:2], 1)
        T.check(fa.shape[0] == 2 and ca.min() > 0.9999, "asan int8 rows: cosine %r to the others" % (ca,))

if args.int8:
    c1 = calibrate(os.path.join(w, "e.calib"))
    f32 = extract(os.path.join(w, "f32"), "fp32")
    f8 = extract(os.path.join(w, "i8"), "int8", c1)
    cos = np.sum(f32 * f8, 1) / (np.linalg.norm(f32, axis=1) * np.linalg.norm(f8, axis=1))
    n = f32.shape[0]

    def top1(f):
        s = f @ f.T
        np.fill_diagonal(s, -np.inf)
        return np.argmax(s, axis=1)

    def centred(f):
        f = f.astype(np.float64) - f32.astype(np.float64).mean(0)
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    raw = np.mean(top1(f32.astype(np.float64)) == top1(f8.astype(np.float64)))
    agree = np.mean(top1(centred(f32)) == top1(centred(f8)))
    print("int8 vs fp32 on %d images: cosine mean %.5f min %.5f, top-1 agreement %.1f%% (raw cosine: %.1f%%)" %
          (n, cos.mean(), cos.min(), 100 * agree, 100 * raw))
    T.check(cos.mean() >= 0.99, "cosine mean %.5f < 0.99" % cos.mean())
    T.check(cos.min() >= 0.98, "cosine min %.5f < 0.98" % cos.min())
    T.check(agree >= 0.95, "top-1 agreement %.3f < 0.95" % agree)
    p = T.run(["bench", "--model=" + model, "--precision=int8", "--calib=" + c1, "--iterations=1", "--warmup=0",
               "--batch-size=2", "--threads=2", "--json"])
    T.check('"int8"' in p.stdout, "bench --json does not say int8: %s" % p.stdout[:300])

T.finish()
