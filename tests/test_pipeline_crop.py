"""The preprocessing options through the whole pipeline (issue 14 item 5), against torch:

1. `imgsim extract` of a CLIP-like tower (tests/vit_models.py, random weights) with CLIP's
   preprocessing (--resize=shorter:224 --crop=224 --interp=bicubic, CLIP's mean/std), of a
   ResNet-18 with torchvision's classification preset (--resize=shorter:256 --crop=224) and of the
   CLIP-like tower with --resize=HxW --crop: per-image cosine >= 0.9999 against the float32 torch
   model fed torchvision's Resize + CenterCrop + ToTensor + Normalize of the same files (PNGs and
   JPEGs of odd sizes: 317x211, 211x317, 224x224, 1000x3, 500x375).
2. meta.json records the resize (resize_shorter or resize [h, w]), the crop, the filter, mean/std.
3. search refuses a query store preprocessed otherwise, naming the field (resize, mean,
   interpolation); image queries are embedded the gallery's way (equal to its rows), and
   preprocessing options given to search that are not the gallery's are refused naming the field.
4. extract --update with other preprocessing re-extracts in full with a warning naming the field;
   a killed extraction rerun with other preprocessing drops its shards, naming
   preprocessing.<field> in job.json, and equals a fresh extraction with the new settings.
5. A crop that is not the model's input, or larger than the resized image, is refused.
6. The Python binding: Engine(resize=, crop=, interpolation=, mean=, std=).embed gives the CLI's
   rows; extract() records them in meta.json.
7. imgsim run with --resize/--crop: the stores record it, and a rerun with other preprocessing does
   not reuse them; calibrate records it in the calibration file.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

import testlib as T

try:
    import torch
    import torchvision
    import torchvision.transforms as TV
    from PIL import Image
except ImportError:
    T.skip("torch/torchvision not available")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_models  # noqa: E402

torch.set_num_threads(2)
w = T.workdir()
CLIP = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def flags(resize, crop, interp, mean_std):
    return ["--resize=" + resize, "--crop=" + crop, "--interp=" + interp,
            "--mean=" + ",".join(repr(x) for x in mean_std[0]), "--std=" + ",".join(repr(x) for x in mean_std[1])]


def transform(resize, crop, interp, mean_std):
    mode = TV.InterpolationMode[interp.upper()]
    r = TV.Resize(int(resize[8:]), interpolation=mode) if resize.startswith("shorter:") else \
        TV.Resize(tuple(int(x) for x in resize.split("x")), interpolation=mode)
    return TV.Compose([r, TV.CenterCrop(int(crop)), TV.ToTensor(), TV.Normalize(*mean_std)])


def cosine(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def store_rows(store):
    man = [m for m in T.read_tsv(os.path.join(store, "manifest.tsv")) if m["status"] == "ok"]
    f = np.load(os.path.join(store, "features.npy"))
    return {m["path"]: f[int(m["row"])] for m in man}


def meta(store):
    return json.load(open(os.path.join(store, "meta.json")))


# images: PNGs (lossless) and JPEGs of odd sizes, two classes
data = os.path.join(w, "data")
sizes = [(317, 211), (211, 317), (224, 224), (1000, 3), (500, 375)]
for c in range(2):
    os.makedirs(os.path.join(data, "c%d" % c))
    for i, (iw, ih) in enumerate(sizes):
        img = T.photo_like(iw, ih, c, 10 * c + i)
        img.save(os.path.join(data, "c%d" % c, "p%d.png" % i))
        if ih >= 8:
            img.save(os.path.join(data, "c%d" % c, "j%d.jpg" % i), quality=92)

# models: a CLIP-like tower (its output, the projected class token, is imgsim's embedding) and a
# ResNet-18 (the pooled features, the classifier's input)
clip = vit_models.build("clip_b32", 3, depth=2, width=128)
clip_path = os.path.join(w, "clip.onnx")
vit_models.export(clip, clip_path, 17, 224)
torch.manual_seed(5)
r18 = torchvision.models.resnet18(weights=None).eval()
r18_path = os.path.join(w, "r18.onnx")
torch.onnx.export(r18, torch.randn(1, 3, 224, 224), r18_path, input_names=["input"], output_names=["output"],
                  dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}}, opset_version=13)
r18.fc = torch.nn.Identity()


def parity(model, path, store, resize, crop, interp, mean_std, what):
    T.run(["extract", "--model=" + path, "--out=" + store, "--batch-size=4", "--threads=2", "--quiet"] +
          flags(resize, crop, interp, mean_std) + [data])
    rows = store_rows(store)
    tf = transform(resize, crop, interp, mean_std)
    names = sorted(rows)
    x = torch.stack([tf(Image.open(os.path.join(data, n)).convert("RGB")) for n in names])
    with torch.no_grad():
        ref = model(x).numpy().astype(np.float64)
    got = np.stack([rows[n] for n in names]).astype(np.float64)
    cs = cosine(got, ref)
    print("%s: cosine per image: min %.7f over %d images" % (what, cs.min(), len(cs)))
    T.check(len(names) == 18 and np.all(cs >= 0.9999),
            "%s: cosine >= 0.9999 per image (min %.7f, worst %s)" % (what, cs.min(), names[int(np.argmin(cs))]))


G = os.path.join(w, "clip_store")
parity(clip, clip_path, G, "shorter:224", "224", "bicubic", CLIP, "CLIP-like, CLIP preprocessing")
parity(r18, r18_path, os.path.join(w, "r18_store"), "shorter:256", "224", "bilinear", IMAGENET,
       "ResNet-18, Resize(256) + CenterCrop(224)")
parity(clip, clip_path, os.path.join(w, "clip_hw"), "256x300", "224", "bilinear", CLIP,
       "CLIP-like, Resize((256, 300)) + CenterCrop(224)")

# 2. meta.json
p = meta(G)["preprocessing"]
T.check(p.get("resize_shorter") == 224 and "resize" not in p and p.get("crop") == [224, 224] and
        p.get("interpolation") == "bicubic-antialias (PIL)" and
        np.allclose(p.get("mean"), CLIP[0], atol=1e-7) and np.allclose(p.get("std"), CLIP[1], atol=1e-7),
        "meta.json records shorter:224, crop 224, bicubic, CLIP mean/std: %s" % p)
p = meta(os.path.join(w, "clip_hw"))["preprocessing"]
T.check(p.get("resize") == [256, 300] and p.get("crop") == [224, 224] and "resize_shorter" not in p,
        "meta.json records resize [256, 300] and crop: %s" % p)

# 3. search: query stores preprocessed otherwise are refused, naming the field
out = os.path.join(w, "res.tsv")
for name, extra, field in [("q_default", [], "resize differs"),
                           ("q_mean", flags("shorter:224", "224", "bicubic", (IMAGENET[0], CLIP[1])), "mean differs"),
                           ("q_interp", flags("shorter:224", "224", "bilinear", CLIP), "interpolation differs")]:
    q = os.path.join(w, name)
    T.run(["extract", "--model=" + clip_path, "--out=" + q, "--quiet", os.path.join(data, "c0")] + extra)
    r = T.run(["search", "--gallery=" + G, "--query=" + q, "--out=" + out, "--quiet"], check=False)
    T.check(r.returncode == 1 and "different preprocessing (" + field in r.stderr,
            "search refuses the query store %s: %s" % (name, r.stderr.strip()))
q = os.path.join(w, "q_same")
T.run(["extract", "--model=" + clip_path, "--out=" + q, "--quiet", os.path.join(data, "c0")] +
      flags("shorter:224", "224", "bicubic", CLIP))
r = T.run(["search", "--gallery=" + G, "--query=" + q, "--out=" + out, "--quiet"], check=False)
T.check(r.returncode == 0, "search takes a query store preprocessed the gallery's way: %s" % r.stderr.strip())
# image queries: embedded with the gallery's preprocessing (top-1 is the image itself, score 1)
r = T.run(["search", "--gallery=" + G, "--query=" + os.path.join(data, "c1"), "--out=" + out, "--k=1", "--quiet"],
          check=False)
res = T.read_tsv(out) if r.returncode == 0 else []
T.check(r.returncode == 0 and len(res) == 9 and all(x["match_path"] == "c1/" + x["query_path"] and
                                                     float(x["score"]) > 0.99999 for x in res),
        "image queries are embedded the gallery's way (each finds itself, score 1): %s" % r.stderr.strip()[-300:])
r = T.run(["search", "--gallery=" + G, "--query=" + os.path.join(data, "c1"), "--out=" + out, "--quiet",
           "--resize=shorter:256"], check=False)
T.check(r.returncode == 1 and "resize differs" in r.stderr, "search --resize not the gallery's refused: %s" %
        r.stderr.strip())
r = T.run(["search", "--gallery=" + G, "--query=" + os.path.join(data, "c1"), "--out=" + out, "--quiet",
           "--std=0.2,0.2,0.2"], check=False)
T.check(r.returncode == 1 and "std differs" in r.stderr, "search --std not the gallery's refused: %s" % r.stderr.strip())
r = T.run(["search", "--gallery=" + G, "--query=" + os.path.join(data, "c1"), "--out=" + out, "--quiet",
           "--resize=shorter:224", "--interp=bicubic"], check=False)
T.check(r.returncode == 0, "search with the gallery's own options runs: %s" % r.stderr.strip())

# 4. update with other preprocessing: extracted in full, the warning names the field
U = os.path.join(w, "upd")
shutil.copytree(G, U)
r = T.run(["extract", "--model=" + clip_path, "--out=" + U, "--update"] +
          flags("shorter:256", "224", "bicubic", CLIP) + [data], check=False)
T.check(r.returncode == 0 and "other preprocessing (resize differs)" in r.stderr,
        "--update with another resize: re-extracted, the warning names it: %s" % r.stderr.strip())
T.check(meta(U)["preprocessing"].get("resize_shorter") == 256, "the updated store records the new resize")
# a killed extraction rerun with other preprocessing: its shards are dropped, naming the field
K = os.path.join(w, "killed")
big = os.path.join(w, "big")
for c in range(2):
    os.makedirs(os.path.join(big, "c%d" % c))
    for i in range(12):
        T.photo_like(400, 300, c, 100 + 20 * c + i).save(os.path.join(big, "c%d" % c, "i%02d.jpg" % i))
base = [T.CLI, "extract", "--model=" + r18_path, "--out=" + K, "--batch-size=2", "--shard-size=2", "--threads=1",
        "--workers=1", "--quiet"]
proc = subprocess.Popen(base + ["--resize=shorter:256", big], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
t0 = time.time()
while proc.poll() is None and len([f for f in os.listdir(os.path.join(K, "shards")) if f.endswith(".json") and
                                   f[0].isdigit()] if os.path.isdir(os.path.join(K, "shards")) else []) < 1 \
        and time.time() - t0 < 120:
    time.sleep(0.005)
alive = proc.poll() is None
proc.kill()
proc.wait()
T.check(alive, "the first extraction was killed midway (it had not finished)")
job = json.load(open(os.path.join(K, "shards", "job.json")))
T.check(job["preprocessing"].get("resize_shorter") == 256 and job["preprocessing"].get("crop") == [224, 224] and
        job["preprocessing"].get("interpolation") == "bilinear" and job["layer"] == meta(os.path.join(w, "r18_store"))["layer"],
        "job.json records the geometry in its own keys (not in the layer): %s" % job)
r = T.run([a for a in base[1:] if a != "--quiet"] + ["--resize=shorter:300", big], check=False)
T.check(r.returncode == 0 and "other settings (preprocessing.resize_shorter differs): starting over" in r.stderr,
        "the rerun with another resize drops the shards, naming it: %s" % r.stderr.strip())
F = os.path.join(w, "fresh")
T.run(["extract", "--model=" + r18_path, "--out=" + F, "--batch-size=2", "--threads=1", "--quiet",
       "--resize=shorter:300", big])
T.check(np.array_equal(np.load(os.path.join(K, "features.npy")), np.load(os.path.join(F, "features.npy"))),
        "the rerun's store equals a fresh extraction with the new preprocessing")

# 5. crops that cannot be
for extra, msg in [(["--crop=200"], "(the crop) 200x200 differs from the model's input 224x224"),
                   (["--resize=200x200"], "crop 224x224 is larger than the resized image 200x200"),
                   (["--resize=shorter:200"], "larger than the resized image's shorter side 200")]:
    r = T.run(["extract", "--model=" + clip_path, "--out=" + os.path.join(w, "bad"), "--quiet"] + extra + [data],
              check=False)
    T.check(r.returncode == 1 and msg in r.stderr, "extract %s refused: %s" % (" ".join(extra), r.stderr.strip()))

# 6. the Python binding (this build's extension module)
mod = os.environ.get("IMGSIM_PY_MODULE", "")
if mod and os.path.exists(mod):
    pkg = os.path.join(w, "pkg")
    shutil.copytree(os.path.join(T.SRC, "python", "imgsim"), os.path.join(pkg, "imgsim"))
    shutil.copy(mod, os.path.join(pkg, "imgsim", os.path.basename(mod)))
    sys.path.insert(0, pkg)
    import imgsim  # noqa: E402

    rows = store_rows(G)
    names = sorted(rows)
    with imgsim.Engine(clip_path, batch_size=4, threads=2, resize=224, crop=224, interpolation="bicubic",
                       mean=CLIP[0], std=CLIP[1]) as eng:
        f = eng.embed([os.path.join(data, n) for n in names])
        T.check(np.array_equal(f, np.stack([rows[n] for n in names])),
                "Engine(resize=224, crop=224, bicubic, CLIP mean/std).embed == the CLI's store rows")
        f2 = eng.embed([os.path.join(data, n) for n in names], resize=(256, 300), interpolation="bilinear")
        hw = store_rows(os.path.join(w, "clip_hw"))
        T.check(np.array_equal(f2, np.stack([hw[n] for n in names])), "embed(resize=(256, 300)) overrides the engine's")
        st = eng.extract(data, os.path.join(w, "py_store"))
        T.check(meta(os.path.join(w, "py_store"))["preprocessing"] == meta(G)["preprocessing"],
                "Engine.extract records the engine's preprocessing in meta.json")
        # imgsim.run: both stores with the engine's preprocessing
        imgsim.run(data, clip_path, os.path.join(w, "py_run"), threads=2, resize=224, crop=224,
                   interpolation="bicubic", mean=CLIP[0], std=CLIP[1])
        T.check(all(meta(os.path.join(w, "py_run", d))["preprocessing"] == meta(G)["preprocessing"]
                    for d in ("gallery", "queries")), "imgsim.run(resize=..., ...) records it in both stores")
        try:
            eng.embed([os.path.join(data, names[0])], crop=200)
            T.check(False, "embed(crop=200) on a 224 model raises")
        except imgsim.InvalidArgumentError as ex:
            T.check("not the model's input 224x224" in str(ex), "embed(crop=200) raises naming it: %s" % ex)
else:
    print("no Python extension module in this build: the binding's checks skipped")

# 7. run and calibrate
R = os.path.join(w, "run")
T.run(["run", data, "--model=" + clip_path, "--out=" + R, "--quiet", "--threads=2"] +
      flags("shorter:224", "224", "bicubic", CLIP))
gal = [d for d in os.listdir(R) if os.path.exists(os.path.join(R, d, "meta.json"))]
T.check(gal and all(meta(os.path.join(R, d))["preprocessing"].get("resize_shorter") == 224 for d in gal),
        "imgsim run's stores record --resize=shorter:224 (%s)" % gal)
r = T.run(["run", data, "--model=" + clip_path, "--out=" + R, "--threads=2"] + flags("shorter:256", "224", "bicubic", CLIP))
T.check(all(meta(os.path.join(R, d))["preprocessing"].get("resize_shorter") == 256 for d in gal),
        "a rerun with another resize extracts again (the stores are not reused): %s" % r.stderr.strip()[-400:])
cal = os.path.join(w, "r18.calib")
T.run(["calibrate", "--model=" + r18_path, "--out=" + cal, "--images=4", "--threads=2", "--quiet",
       "--resize=shorter:256", "--crop=224", data])
cp = json.load(open(cal))["preprocessing"]
T.check(cp.get("resize_shorter") == 256 and cp.get("crop") == [224, 224], "the calibration file records it: %s" % cp)
r = T.run(["calibrate", "--model=" + r18_path, "--out=" + cal, "--images=4", "--quiet", "--crop=200", data], check=False)
T.check(r.returncode == 1 and "not the model's input" in r.stderr, "calibrate --crop=200 refused: %s" % r.stderr.strip())
T.finish()
