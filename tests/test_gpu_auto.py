"""imgsim extract --device=cuda --decode=auto: JPEGs split between the CPU workers and nvJPEG by
size (the CPU takes the smallest first), with progressive, CMYK, PNG and EXIF-rotated files that
must stay on the CPU. Against the CPU pipeline (fp32 on both sides): the same manifest, every
feature row cosine >= 0.999, and both sides really decoded some of the JPEGs (meta.json counts).
IMGSIM_GPU_INIT_SYNC=1 makes the GPU take part from the first image (normally the CPU starts
alone while the nvJPEG decoders are made, and a job this small would finish first).
Skipped (77) where there is no GPU or no nvJPEG."""
import json
import os

import numpy as np
from PIL import Image

import testlib as T

w = T.workdir()
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=3", "--out=" + model])
probe_dir = os.path.join(w, "probe")
os.makedirs(os.path.join(probe_dir, "c"))
T.photo_like(64, 48, 0, 0).save(os.path.join(probe_dir, "c", "p.jpg"), quality=90)
p = T.run(["extract", "--model=" + model, "--device=cuda", "--engine-cache=off", "--out=" + os.path.join(w, "ps"),
           "--quiet", probe_dir], check=False)
if p.returncode != 0:
    T.skip("no CUDA extract here: " + (p.stderr.strip().splitlines() or ["?"])[-1])
d = os.path.join(w, "data")
rng = np.random.default_rng(11)
n = 0
for c in range(4):
    os.makedirs(os.path.join(d, "c%d" % c))
    for i in range(60):
        large = rng.random() < 0.25
        side = int(rng.integers(1100, 1500)) if large else int(rng.integers(160, 420))
        img = T.photo_like(side, int(side * rng.uniform(0.6, 1.0)), c, 1000 * c + i)
        img.save(os.path.join(d, "c%d" % c, "i%03d.jpg" % i), quality=90)
        n += 1
T.photo_like(400, 300, 0, 1).save(os.path.join(d, "c0", "prog.jpg"), quality=90, progressive=True)
T.photo_like(300, 200, 1, 2).convert("CMYK").save(os.path.join(d, "c1", "cmyk.jpg"), quality=90)
T.photo_like(320, 240, 2, 3).save(os.path.join(d, "c2", "plain.png"))
ex = Image.Exif()
ex[0x0112] = 6
T.photo_like(360, 240, 3, 4).save(os.path.join(d, "c3", "rot.jpg"), quality=90, exif=ex)
n += 4

sa, sc = os.path.join(w, "auto"), os.path.join(w, "cpu")
p = T.run(["extract", "--model=" + model, "--device=cuda", "--precision=fp32", "--decode=auto", "--batch-size=32",
           "--engine-cache=off", "--out=" + sa, "--quiet", d], check=False, env={"IMGSIM_GPU_INIT_SYNC": "1"})
if p.returncode != 0:
    T.skip("no CUDA extract here: " + (p.stderr.strip().splitlines() or ["?"])[-1])
meta = json.load(open(os.path.join(sa, "meta.json")))
if meta["counts"]["gpu_decoded"] == 0 and "GPU decoding unavailable" in p.stderr:
    T.skip("no nvJPEG here")
T.run(["extract", "--model=" + model, "--device=cpu", "--no-dct-scaling", "--out=" + sc, "--quiet", d])
ma, mc = T.read_tsv(os.path.join(sa, "manifest.tsv")), T.read_tsv(os.path.join(sc, "manifest.tsv"))
T.check([(r["path"], r["status"]) for r in ma] == [(r["path"], r["status"]) for r in mc], "manifests differ")
T.check(all(r["status"] == "ok" for r in ma) and len(ma) == n, "not every image ok: %d rows" % len(ma))
fa, fc = np.load(os.path.join(sa, "features.npy")), np.load(os.path.join(sc, "features.npy"))
cos = (fa * fc).sum(1) / np.linalg.norm(fa, axis=1) / np.linalg.norm(fc, axis=1)
print("auto vs cpu pipeline: %d images, %d decoded by nvJPEG, CPU share %.2f, min cosine %.6f" % (
    len(cos), meta["counts"]["gpu_decoded"], meta["cpu_decode_share_final"], cos.min()))
T.check(fa.shape == fc.shape and cos.min() >= 0.999, "min cosine %.6f" % cos.min())
g = meta["counts"]["gpu_decoded"]
T.check(0 < g <= n - 4 - 1, "nvJPEG decoded %d of %d JPEGs: both sides should take some" % (g, n))
T.finish()
