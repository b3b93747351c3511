"""GPU input pipeline (nvJPEG + fused preprocessing kernel) against the CPU path.

1. Tensors from the GPU path vs the CPU path on the same JPEGs (real sizes, 4:2:0/4:4:4/
   grayscale/progressive): max abs difference <= 0.05 and mean <= 0.005 after normalisation.
2. Features from `extract --device=cuda --decode=gpu` vs `--device=cpu` (fp32): cosine >= 0.999.
3. A batch mixing good JPEGs, PNGs, a CMYK JPEG, a progressive JPEG, truncated and corrupt files:
   every good image gets its features, every bad one its error, counts balance.
Skipped (77) where there is no GPU or imgsim was built without CUDA/nvJPEG."""
import json
import os

import numpy as np
from PIL import Image

import testlib as T

w = T.workdir()
d = os.path.join(w, "imgs")
os.makedirs(d)
files = []
for i, (sz, kw) in enumerate([((500, 375), dict(quality=90)), ((1600, 1200), dict(quality=90)),
                              ((333, 217), dict(quality=85, subsampling=0)), ((640, 480), dict(quality=90, progressive=True)),
                              ((224, 224), dict(quality=95)), ((90, 120), dict(quality=90))]):
    p = os.path.join(d, "a%02d.jpg" % i)
    T.photo_like(sz[0], sz[1], i, 40 + i).save(p, **kw)
    files.append(p)
g = os.path.join(d, "gray.jpg")
T.photo_like(400, 300, 3, 7).convert("L").save(g, quality=90)
files.append(g)

probe = T.run(["gpupre", "--out=" + os.path.join(w, "probe.npy"), files[0]], check=False)
if probe.returncode != 0:
    T.skip("no GPU path here: " + probe.stderr.strip())

gpu_npy = os.path.join(w, "gpu.npy")
p = T.run(["gpupre", "--out=" + gpu_npy] + files)
routes = [l.split("\t")[0] for l in p.stdout.splitlines()]
assert routes.count("gpu") >= len(files) - 1, p.stdout  # nvJPEG takes (nearly) all of these
gpu = np.load(gpu_npy)
worst_max = worst_mean = 0.0
for i, f in enumerate(files):
    cpu_npy = os.path.join(w, "cpu%d.npy" % i)
    T.run(["preprocess", f, "--out=" + cpu_npy, "--no-dct-scaling"])
    cpu = np.load(cpu_npy)[0]
    diff = np.abs(gpu[i] - cpu)
    worst_max, worst_mean = max(worst_max, diff.max()), max(worst_mean, diff.mean())
    assert diff.max() <= 0.05 and diff.mean() <= 0.005, (f, routes[i], diff.max(), diff.mean())
print("GPU vs CPU preprocessing: max abs %.4f, mean abs %.5f (limits 0.05, 0.005)" % (worst_max, worst_mean))

# features: GPU pipeline vs CPU pipeline
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=5", "--out=" + model])
sg, sc = os.path.join(w, "sg"), os.path.join(w, "sc")
T.run(["extract", "--model=" + model, "--device=cuda", "--precision=fp32", "--decode=gpu", "--engine-cache=off",
       "--out=" + sg, "--quiet", d])
T.run(["extract", "--model=" + model, "--device=cpu", "--no-dct-scaling", "--out=" + sc, "--quiet", d])
gpu_counts = json.load(open(os.path.join(sg, "meta.json")))["counts"]
assert gpu_counts["gpu_decoded"] >= len(files) - 1, gpu_counts  # --decode=gpu: nvJPEG did decode them
fg, fc = np.load(os.path.join(sg, "features.npy")), np.load(os.path.join(sc, "features.npy"))
cos = (fg * fc).sum(1) / np.linalg.norm(fg, axis=1) / np.linalg.norm(fc, axis=1)
print("features GPU pipeline vs CPU pipeline: min cosine %.6f" % cos.min())
assert fg.shape == fc.shape and cos.min() >= 0.999, cos

# mixed batch
m = os.path.join(w, "mixed")
os.makedirs(m)
for i in range(6):
    T.photo_like(500, 375, i, 100 + i).save(os.path.join(m, "good%d.jpg" % i), quality=90)
T.photo_like(300, 200, 1, 1).save(os.path.join(m, "png.png"))
T.photo_like(300, 200, 2, 2).convert("CMYK").save(os.path.join(m, "cmyk.jpg"), quality=90)
T.photo_like(600, 400, 3, 3).save(os.path.join(m, "prog.jpg"), quality=90, progressive=True)
blob = open(os.path.join(m, "good0.jpg"), "rb").read()
open(os.path.join(m, "trunc.jpg"), "wb").write(blob[: len(blob) // 2])
open(os.path.join(m, "corrupt.jpg"), "wb").write(blob[:600] + bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8)))
sm = os.path.join(w, "sm")
T.run(["extract", "--model=" + model, "--device=cuda", "--decode=gpu", "--engine-cache=off", "--batch-size=8",
       "--out=" + sm, "--quiet", m])
man = T.read_tsv(os.path.join(sm, "manifest.tsv"))
ok = sorted(x["path"] for x in man if x["status"] == "ok")
bad = sorted(x["path"] for x in man if x["status"] == "failed")
assert len(man) == 11 and len(ok) + len(bad) == 11, man
assert set(ok) >= {"good%d.jpg" % i for i in range(6)} | {"png.png", "cmyk.jpg", "prog.jpg"}, ok
assert "trunc.jpg" in bad, bad
assert json.load(open(os.path.join(sm, "meta.json")))["counts"]["gpu_decoded"] >= 6, "nvJPEG decoded no good JPEG"
feats = np.load(os.path.join(sm, "features.npy"))
assert feats.shape[0] == len(ok) and np.isfinite(feats).all()
print("mixed batch: %d ok, %d failed: %s" % (len(ok), len(bad), bad))
print("ok")
