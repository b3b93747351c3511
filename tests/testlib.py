"""Shared helpers for imgsim's Python tests (run by CTest with IMGSIM_PYTHON)."""
import os
import shutil
import subprocess
import sys

CLI = os.environ.get("IMGSIM_CLI", "imgsim")
CLI_ASAN = os.environ.get("IMGSIM_CLI_ASAN")
SRC = os.environ.get("IMGSIM_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def workdir(name=None):
    """A fresh scratch folder for this test."""
    base = os.environ.get("IMGSIM_TEST_DIR") or os.path.join("/tmp", "imgsim-test")
    d = os.path.join(base, name) if name else base
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def run(args, cli=None, check=True, env=None):
    """Runs the CLI; returns CompletedProcess with text stdout/stderr."""
    cmd = [cli or CLI] + [str(a) for a in args]
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, env=e)
    if check and p.returncode != 0:
        sys.stderr.write("command failed: %s\nstdout:\n%s\nstderr:\n%s\n" % (" ".join(cmd), p.stdout, p.stderr))
        raise SystemExit(1)
    return p


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(77)


def mpirun_or_skip():
    """The mpirun to run the MPI tests with; skips (77) when this build has no MPI
    (IMGSIM_HAVE_MPI from CTest) or no mpirun is on PATH."""
    if os.environ.get("IMGSIM_HAVE_MPI", "0") != "1":
        skip("imgsim was built without MPI")
    m = shutil.which("mpirun")
    if not m:
        skip("no mpirun")
    return m


def photo_like(w, h, cls, seed):
    """A deterministic photo-like RGB PIL image of class cls (gradient sky/ground + shapes + noise)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    palette = np.array([[200, 60, 40], [40, 160, 70], [50, 80, 200], [220, 200, 60],
                        [150, 60, 180], [60, 190, 200]], np.float32)
    base = palette[cls % len(palette)]
    img = np.empty((h, w, 3), np.float32)
    t = (y / max(h - 1, 1))[..., None]
    img[:] = base * (1 - 0.5 * t) + 40 * t
    freq = 0.02 + 0.03 * (cls % 4)
    ang = cls * 0.7
    img += 40 * np.sin(freq * (x * np.cos(ang) + y * np.sin(ang)))[..., None]
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)
        m = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        img[m] = img[m] * 0.4 + rng.uniform(0, 255, 3) * 0.6
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_dataset(root, classes, per_class, seed=0, sizes=((320, 240), (500, 375), (240, 320))):
    """ImageFolder dataset of JPEGs; returns list of (relpath, label)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for c in range(classes):
        d = os.path.join(root, "class_%02d" % c)
        os.makedirs(d, exist_ok=True)
        n = per_class[c] if isinstance(per_class, (list, tuple)) else per_class
        for i in range(n):
            w, h = sizes[int(rng.integers(len(sizes)))]
            p = os.path.join(d, "img_%03d.jpg" % i)
            photo_like(w, h, c, seed * 100003 + c * 1009 + i).save(p, quality=90)
            out.append((os.path.relpath(p, root), "class_%02d" % c))
    return out


def random_model(arch="resnet18", seed=3):
    """A torchvision model (getattr(torchvision.models, arch); "resnext_small": a ResNeXt of
    Bottleneck blocks [1, 1, 1, 1], groups 8, width 8, small enough for CI) with weights seeded by
    torch.manual_seed(seed) and random BatchNorm statistics and affine parameters from a generator
    seeded seed + 1 (so the folded biases are not zero), in eval mode."""
    import torch
    import torchvision
    torch.manual_seed(seed)
    if arch == "resnext_small":
        from torchvision.models.resnet import Bottleneck, ResNet
        m = ResNet(Bottleneck, [1, 1, 1, 1], groups=8, width_per_group=8)
    else:
        m = getattr(torchvision.models, arch)(weights=None)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                mod.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.25)
                mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return m.eval()


def export_onnx(m, path, size=224, opset=13):
    """m exported by torch.onnx to path: input "input" [N, 3, size, size] (N dynamic), output "output"."""
    import torch
    torch.onnx.export(m, torch.randn(1, 3, size, size), path, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}}, opset_version=opset)


def export_resnet(path, arch="resnet18", seed=3, size=224, opset=13):
    """random_model(arch, seed) exported to path (export_onnx)."""
    export_onnx(random_model(arch, seed), path, size, opset)


def preprocess(paths, size, w):
    """The network inputs of image files as `imgsim preprocess --size=SxS` makes them: float32
    [len(paths), 3, size, size] (each file preprocessed through w/x1.npy)."""
    import numpy as np
    xs = []
    for p in paths:
        run(["preprocess", p, "--out=" + os.path.join(w, "x1.npy"), "--size=%dx%d" % (size, size)])
        xs.append(np.load(os.path.join(w, "x1.npy")).reshape(1, 3, size, size))
    return np.concatenate(xs)


def store_rows(store):
    """A (single-layout) store's features by path, float64: {path: row} of its "ok" manifest rows."""
    import numpy as np
    f = np.load(os.path.join(store, "features.npy")).astype(np.float64)
    return {r["path"]: f[int(r["row"])] for r in read_tsv(os.path.join(store, "manifest.tsv")) if r["status"] == "ok"}


def cosines(a, b):
    """Per-row cosine of two [n, d] arrays."""
    import numpy as np
    return np.array([u @ v / (np.linalg.norm(u) * np.linalg.norm(v)) for u, v in zip(a, b)])


def read_tsv(path):
    with open(path) as f:
        lines = f.read().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, l.split("\t"))) for l in lines[1:] if l]


# Soft checks: a test records every failed check and reports them all at the end.
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def finish():
    """Exits 1 after listing the failed checks, else prints ok."""
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("ok")
