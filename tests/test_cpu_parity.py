"""CPU engine parity with PyTorch (the key acceptance test of the oneDNN backend).

A torchvision model with seeded random weights AND randomised BatchNorm statistics (so that BN
folding matters) is exported to ONNX exactly as the old Python pipeline did, then:

  engine-only: the same input tensor through `imgsim bench --input --dump --no-normalize` and
      through the PyTorch model in float64 (the reference): per-image relative L2 error <= 1e-5
      in fp32. Run with --batch-size below the number of images so that partial batches (the
      smaller plans) are exercised too.
  extract (--extract): real-size JPEG/PNG images through `imgsim extract` and through the Python
      pipeline's preprocessing (PIL convert('RGB'), torchvision Resize((H, W)), ToTensor,
      Normalize) and the float32 PyTorch model: per-image cosine >= 0.9999 and relative L2 error
      of the normalised features <= 1e-3.
  bf16 (--bf16): engine-only with --precision=bf16: cosine >= 0.999 (skipped where the CPU has no
      AVX-512 BF16 / AMX).

Usage: test_cpu_parity.py --arch=resnet18|resnet50|mobilenet_v2|resnext_small [--opset=13]
       [--size=224] [--images=5] [--batch-size=4] [--extract] [--bf16]
"""
import argparse
import os
import sys

import numpy as np

import testlib as T

ap = argparse.ArgumentParser()
ap.add_argument("--arch", default="resnet18")
ap.add_argument("--opset", type=int, default=13)
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--images", type=int, default=5)
ap.add_argument("--batch-size", type=int, default=4)
ap.add_argument("--extract", action="store_true")
ap.add_argument("--bf16", action="store_true")
args = ap.parse_args()

try:
    import torch
    import torchvision
    from torchvision import transforms
except ImportError:
    T.skip("torch/torchvision not available")

torch.set_num_threads(2)
w = T.workdir()


def cpu_has_bf16():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def build_model(arch, seed):
    """A torchvision model with random weights and random BN statistics, in eval mode."""
    return T.random_model(arch, seed)


def penultimate(m, arch):
    """The same model without its classifier (the features imgsim picks by default)."""
    import copy
    f = copy.deepcopy(m)
    if arch.startswith("mobilenet"):
        f.classifier = torch.nn.Identity()
    else:
        f.fc = torch.nn.Identity()
    return f.eval()


def export(m, path, size, opset):
    T.export_onnx(m, path, size, opset)


def rel_l2(a, b):
    return np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)


def cosine(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def engine_run(model, x, precision, batch):
    inp = os.path.join(w, "x.npy")
    out = os.path.join(w, "y_%s.npy" % precision)
    np.save(inp, x.reshape(x.shape[0], -1).astype(np.float32))
    T.run(["bench", "--model=" + model, "--input=" + inp, "--dump=" + out, "--no-normalize",
           "--precision=" + precision, "--batch-size=%d" % batch, "--threads=2"])
    return np.load(out)


failures = []
m = build_model(args.arch, 1234)
model_path = os.path.join(w, "%s_op%d.onnx" % (args.arch, args.opset))
export(m, model_path, args.size, args.opset)
feat = penultimate(m, args.arch)

# ---- engine only: same tensor, float64 reference ----
rng = np.random.default_rng(7)
x = rng.standard_normal((args.images, 3, args.size, args.size)).astype(np.float32)
with torch.inference_mode():
    ref = feat.double()(torch.from_numpy(x).double()).numpy()
    feat.float()
got = engine_run(model_path, x, "fp32", args.batch_size)
assert got.shape == ref.shape, (got.shape, ref.shape)
err = rel_l2(got.astype(np.float64), ref)
print("%s opset %d engine-only fp32: relative L2 error per image: %s" % (args.arch, args.opset,
      " ".join("%.2e" % e for e in err)))
if not np.all(err <= 1e-5):
    failures.append("engine-only fp32 relative error %.3e > 1e-5" % err.max())

if args.bf16:
    if not cpu_has_bf16():
        print("bf16: this CPU has no AVX-512 BF16/AMX: skipped")
    else:
        gotb = engine_run(model_path, x, "bf16", args.batch_size)
        cb = cosine(gotb.astype(np.float64), ref)
        print("%s engine-only bf16: cosine per image: %s (relative L2 %s)" % (
            args.arch, " ".join("%.6f" % c for c in cb),
            " ".join("%.2e" % e for e in rel_l2(gotb.astype(np.float64), ref))))
        if not np.all(cb >= 0.999):
            failures.append("bf16 cosine %.6f < 0.999" % cb.min())

# ---- extract: real images, the Python pipeline's preprocessing ----
if args.extract:
    data = os.path.join(w, "images")
    os.makedirs(data)
    names = []
    sizes = [(640, 480, "jpg"), (500, 375, "png"), (480, 640, "jpg"), (1024, 768, "png"), (300, 300, "jpg")]
    for i in range(args.images):
        wd, ht, ext = sizes[i % len(sizes)]
        p = os.path.join(data, "img_%02d.%s" % (i, ext))
        im = T.photo_like(wd, ht, i, 50 + i)
        if ext == "jpg":
            im.save(p, quality=92)
        else:
            im.save(p)
        names.append(p)
    store = os.path.join(w, "store")
    T.run(["extract", "--model=" + model_path, "--out=" + store, "--batch-size=%d" % args.batch_size,
           "--threads=2", "--workers=2", "--quiet", data])
    feats = np.load(os.path.join(store, "features.npy"))
    man = T.read_tsv(os.path.join(store, "manifest.tsv"))
    from PIL import Image
    tf = transforms.Compose([transforms.Resize((args.size, args.size)), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    rows, refs = [], []
    for mrow in man:
        assert mrow["status"] == "ok", mrow
        path = mrow["path"] if os.path.isabs(mrow["path"]) else os.path.join(data, mrow["path"])
        img = Image.open(path).convert("RGB")
        refs.append(tf(img))
        rows.append(int(mrow["row"]))
    with torch.inference_mode():
        r = feat(torch.stack(refs)).numpy().astype(np.float64)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    g = feats[rows].astype(np.float64)
    c = cosine(g, r)
    e = rel_l2(g, r)
    print("%s opset %d extract fp32: cosine %s; relative L2 %s" % (
        args.arch, args.opset, " ".join("%.6f" % v for v in c), " ".join("%.2e" % v for v in e)))
    if not (np.all(c >= 0.9999) and np.all(e <= 1e-3)):
        failures.append("extract: cosine %.6f (>= 0.9999), relative L2 %.2e (<= 1e-3)" % (c.min(), e.max()))

if failures:
    print("FAIL: " + "; ".join(failures))
    sys.exit(1)
print("OK")
