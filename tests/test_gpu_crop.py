"""The preprocessing options (issue 14 item 5) on a CUDA engine. The GPU kernel resizes straight to
the input size with the bilinear filter and normalises with any mean/std, so:

1. mean/std through the GPU path: `gpupre --mean --std` (CLIP's) against the CPU's `preprocess`
   with the same mean/std, within test_gpu_decode.py's bounds (max 0.05, mean 0.005).
2. `extract --device=cuda --precision=fp32 --resize=shorter:256 --crop=224 --interp=bicubic` (decode
   auto): every image decoded and preprocessed on the CPU (meta.json: gpu_decoded 0), the
   features against the CPU engine's with the same options: relative L2 <= 1e-4 per image (the
   same input tensors: fp32 engine parity).
3. The same with --decode=gpu is refused (exit 1), the message naming the GPU preprocessing.
4. The CLIP mean/std with the plain resize and --decode=gpu: nvJPEG decodes, the kernel normalises
   with CLIP's mean/std: cosine >= 0.999 against the CPU pipeline's features.
Skipped (77) where there is no GPU or imgsim was built without CUDA/nvJPEG."""
import json
import os

import numpy as np

import testlib as T

w = T.workdir()
d = os.path.join(w, "imgs")
os.makedirs(os.path.join(d, "a"))
files = []
for i, (iw, ih) in enumerate([(500, 375), (317, 211), (211, 317), (640, 480), (224, 224), (1000, 260)]):
    p = os.path.join(d, "a", "i%02d.jpg" % i)
    T.photo_like(iw, ih, i, 70 + i).save(p, quality=90)
    files.append(p)
CLIP = ["--mean=0.48145466,0.4578275,0.40821073", "--std=0.26862954,0.26130258,0.27577711"]

probe = T.run(["gpupre", "--out=" + os.path.join(w, "probe.npy"), files[0]], check=False)
if probe.returncode != 0:
    T.skip("no GPU path here: " + probe.stderr.strip())

# 1. mean/std in the GPU kernel
g = os.path.join(w, "g.npy")
T.run(["gpupre", "--out=" + g] + CLIP + files)
gpu = np.load(g)
for i, f in enumerate(files):
    c = os.path.join(w, "c.npy")
    T.run(["preprocess", f, "--out=" + c] + CLIP)
    diff = np.abs(gpu[i] - np.load(c)[0])
    T.check(diff.max() <= 0.05 and diff.mean() <= 0.005,
            "%s: GPU vs CPU with CLIP mean/std: max %.4f mean %.5f" % (f, diff.max(), diff.mean()))
    print("crop on CUDA: gpupre with CLIP mean/std vs CPU preprocess: %s max %.4f mean %.5f" % (
        os.path.basename(f), diff.max(), diff.mean()))

model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=5", "--out=" + model])
crop = ["--resize=shorter:256", "--crop=224", "--interp=bicubic"] + CLIP


def extract(out, extra, check=True):
    return T.run(["extract", "--model=" + model, "--out=" + os.path.join(w, out), "--engine-cache=off", "--quiet",
                  "--precision=fp32"] + extra + [d], check=check)


def feats(name):
    return np.load(os.path.join(w, name, "features.npy")).astype(np.float64)


# 2. resize + crop on a CUDA engine: the CPU preprocesses, the GPU runs the engine
extract("gc", ["--device=cuda"] + crop)
extract("cc", ["--device=cpu"] + crop)
counts = json.load(open(os.path.join(w, "gc", "meta.json")))["counts"]
T.check(counts["gpu_decoded"] == 0 and counts["ok"] == len(files), "resize + crop: every image on the CPU: %s" % counts)
a, b = feats("gc"), feats("cc")
err = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
print("crop on CUDA: fp32 features vs the CPU engine's: relative L2 max %.2e over %d images" % (err.max(), len(err)))
T.check(a.shape == b.shape and np.all(err <= 1e-4), "CUDA fp32 vs CPU with resize + crop: relative L2 %s" % err)
pre = json.load(open(os.path.join(w, "gc", "meta.json")))["preprocessing"]
T.check(pre.get("resize_shorter") == 256 and pre.get("interpolation") == "bicubic-antialias (PIL)",
        "the CUDA store records the preprocessing: %s" % pre)

# 3. --decode=gpu cannot do it: refused
r = extract("gbad", ["--device=cuda", "--decode=gpu"] + crop, check=False)
T.check(r.returncode == 1 and "GPU preprocessing" in r.stderr, "--decode=gpu with a crop refused: %s" % r.stderr)

# 4. CLIP mean/std, plain resize: the GPU decodes and normalises
extract("gm", ["--device=cuda", "--decode=gpu"] + CLIP)
extract("cm", ["--device=cpu"] + CLIP)
counts = json.load(open(os.path.join(w, "gm", "meta.json")))["counts"]
a, b = feats("gm"), feats("cm")
cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
print("crop on CUDA: GPU decode with CLIP mean/std vs the CPU pipeline: cosine min %.6f, %d of %d on the GPU" % (
    cos.min(), counts["gpu_decoded"], len(files)))
T.check(counts["gpu_decoded"] >= len(files) - 1 and np.all(cos >= 0.999),
        "GPU decode with CLIP mean/std vs CPU: gpu_decoded %d, cosine %s" % (counts["gpu_decoded"], cos))
T.finish()
