#!/usr/bin/env python3
"""test_onnx_vit.py: transformer image embedders on the CPU engine against PyTorch float64.

tests/vit_models.py builds --arch (torchvision's VisionTransformer, a DINOv2-like or a CLIP-like
tower, random weights, seed 3) and exports it at --opset; the same module run in float64 is the
reference. `imgsim bench --input --dump --no-normalize --layer=output` runs the graph's output
(the logits for torchvision's ViT, so that the head runs too; the normed class token for the
DINOv2-like model; the projected class token for the CLIP-like one) on the CPU engine, with a
batch size below the image count so that partial batches run: per-image relative L2 error must
be <= 1e-5.

--pool checks --layer=pool:cls (the class token as the classifier or projection reads it) and
--layer=pool:mean (the mean of the patch tokens of the tensor the class token is taken from)
against the same tensors taken from the PyTorch module.

--check-graph asserts what the passes made of the graph (`imgsim model info --verbose`): one
Attention per block and no Softmax, Erf, ReduceMean or Sigmoid left (GELU, LayerNorm and quick
GELU fused), and the default embedding (the class token after the final LayerNorm).

--torch2 runs all of it with the Python in IMGSIM_PYTHON_TORCH2 (a current torch 2.x, e.g. a venv:
its TorchScript exporter writes nn.MultiheadAttention through scaled_dot_product_attention, unlike
torch 1.13); skipped (77) when that variable is unset or its torch is older than 2.

Usage: test_onnx_vit.py --arch=NAME [--opset=17] [--depth=N] [--width=W] [--images=3]
                        [--batch-size=2] [--check-graph] [--pool] [--torch2]
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--arch", required=True)
ap.add_argument("--opset", type=int, default=17)
ap.add_argument("--depth", type=int, default=None)
ap.add_argument("--width", type=int, default=None)
ap.add_argument("--images", type=int, default=3)
ap.add_argument("--batch-size", type=int, default=2)
ap.add_argument("--check-graph", action="store_true")
ap.add_argument("--pool", action="store_true", help="also --layer=pool:cls and pool:mean")
ap.add_argument("--torch2", action="store_true", help="run under IMGSIM_PYTHON_TORCH2 (torch >= 2)")
args = ap.parse_args()

if args.torch2:  # the same checks under another Python, with a current torch
    py = os.environ.get("IMGSIM_PYTHON_TORCH2", "")
    if not py or not os.access(py, os.X_OK):
        testlib.skip("IMGSIM_PYTHON_TORCH2 is not set to a Python with torch >= 2 (%r)" % py)
    v = subprocess.run([py, "-c", "import torch, torchvision, onnx, numpy; print(torch.__version__)"],
                       capture_output=True, text=True)
    if v.returncode != 0 or int(v.stdout.strip().split(".")[0] or 0) < 2:
        testlib.skip("%s: no torch >= 2 with torchvision, onnx and numpy: %s" % (py, (v.stdout + v.stderr).strip()[-300:]))
    print("torch %s (%s)" % (v.stdout.strip(), py))
    sys.stdout.flush()
    argv = [a for a in sys.argv[1:] if a != "--torch2"]
    os.execv(py, [py, os.path.abspath(__file__)] + argv)

try:
    import numpy as np
    import torch
except ImportError as ex:  # pragma: no cover
    testlib.skip("needs numpy and torch: %s" % ex)

torch.set_num_threads(2)
WORK = testlib.workdir()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import vit_models  # noqa: E402

SEED = 3
S = vit_models.SIZES[args.arch]
path = os.path.join(WORK, "%s_op%d.onnx" % (args.arch, args.opset))
cmd = [sys.executable, os.path.join(HERE, "vit_models.py"), "--arch", args.arch, "--opset", str(args.opset),
       "--seed", str(SEED), "--out", path]
if args.depth:
    cmd += ["--depth", str(args.depth)]
if args.width:
    cmd += ["--width", str(args.width)]
p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
if p.returncode != 0:  # the exporter's own error, so that a failure under another torch says why
    print("FAIL %s opset %d: vit_models.py (torch %s, %s) exited %d:\n%s" % (
        args.arch, args.opset, torch.__version__, sys.executable, p.returncode, (p.stdout + p.stderr).strip()[-4000:]))
    sys.exit(1)

REFUSED = {"masked": "attention with a mask (the Add", "manual": "attention in a form imgsim does not recognise"}
if args.arch in REFUSED:  # refused when loaded, naming the Softmax node and the reason
    p = testlib.run(["model", "info", path], check=False)
    print(p.stderr.strip())
    testlib.check(p.returncode != 0, "%s: loaded, expected a refusal" % args.arch)
    testlib.check(REFUSED[args.arch] in p.stderr and "Softmax" in p.stderr and path in p.stderr,
                  "%s: message %r" % (args.arch, p.stderr))
    testlib.finish()
    sys.exit(0)

model = vit_models.build(args.arch, SEED, args.depth, args.width).double().eval()
rng = np.random.default_rng(11)
x = rng.standard_normal((args.images, 3, S, S)).astype(np.float32)
TOKENS = {"vit_small": "encoder", "vit_b_16": "encoder", "dinov2_s14": "norm", "clip_b32": "blocks"}
CLS = {"vit_small": "encoder", "vit_b_16": "encoder", "dinov2_s14": "norm", "clip_b32": "ln_post"}
acts = {}
getattr(model, TOKENS[args.arch]).register_forward_hook(lambda m, i, o: acts.__setitem__("tokens", o))
getattr(model, CLS[args.arch]).register_forward_hook(lambda m, i, o: acts.__setitem__("cls", o))
with torch.no_grad():
    ref = model(torch.from_numpy(x).double()).numpy()
# pool:mean: the patch tokens (all but the class token) averaged, of the tensor the class token
# is taken from; pool:cls: the class token as the classifier (or projection) reads it
ref_pool = {"pool:mean": acts["tokens"][:, 1:].mean(1).numpy(),
            "pool:cls": (acts["cls"] if acts["cls"].dim() == 2 else acts["cls"][:, 0]).numpy()}

inp, out = os.path.join(WORK, "x.npy"), os.path.join(WORK, "y.npy")
np.save(inp, x.reshape(args.images, -1))
p = testlib.run(["bench", "--model=" + path, "--input=" + inp, "--dump=" + out, "--no-normalize",
                 "--layer=output", "--batch-size=%d" % args.batch_size, "--threads=2"], check=False)
if p.returncode != 0:
    print("FAIL %s opset %d: imgsim bench: %s" % (args.arch, args.opset, p.stderr.strip()[-800:]))
    sys.exit(1)
got = np.load(out).astype(np.float64)
if got.shape != ref.shape:
    print("FAIL %s opset %d: output %s, expected %s" % (args.arch, args.opset, got.shape, ref.shape))
    sys.exit(1)
err = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
print("%s opset %d engine-only fp32: relative L2 error per image: %s" % (
    args.arch, args.opset, " ".join("%.2e" % e for e in err)))
if not np.all(err <= 1e-5):
    print("FAIL: relative error %.3e > 1e-5" % err.max())
    sys.exit(1)

for layer in ("pool:cls", "pool:mean") if args.pool else ():
    p = testlib.run(["bench", "--model=" + path, "--input=" + inp, "--dump=" + out, "--no-normalize",
                     "--layer=" + layer, "--batch-size=%d" % args.batch_size, "--threads=2"], check=False)
    testlib.check(p.returncode == 0, "--layer=%s: %s" % (layer, p.stderr.strip()[-800:]))
    if p.returncode:
        continue
    got, want = np.load(out).astype(np.float64), ref_pool[layer]
    testlib.check(got.shape == want.shape, "%s: %s, expected %s" % (layer, got.shape, want.shape))
    if got.shape == want.shape:
        err = np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)
        print("--layer=%s: relative L2 error per image: %s" % (layer, " ".join("%.2e" % e for e in err)))
        testlib.check(np.all(err <= 1e-5), "%s: relative error %.3e > 1e-5" % (layer, err.max()))

if args.check_graph:
    import json

    info = json.loads(testlib.run(["model", "info", "--json", path]).stdout)
    ops = dict((t.rsplit(" ", 1)[0], int(t.rsplit(" ", 1)[1])) for t in info["operators"].split(", "))
    depth = args.depth or {"vit_small": 2}.get(args.arch, 12)
    print("graph after the passes: %s; embedding: %s (%s, dim %d)" % (info["operators"], info["layer"],
                                                                     info["embedding"], info["dim"]))
    testlib.check(ops.get("Attention") == depth, "one Attention per block: %s" % ops)
    for gone in ("Softmax", "Erf", "ReduceMean", "Sigmoid", "Pow", "Sqrt", "Sub", "Div"):
        testlib.check(gone not in ops, "%s left after the passes: %s" % (gone, ops))
    # every MatMul but the attention core's carries its bias: no Add left but the position
    # embedding's (and CLIP's class embedding plus zeros)
    testlib.check(ops.get("Add", 0) <= 2, "bias/residual Adds left: %s" % ops)
    want = {"vit_small": "class token after the final LayerNorm, the classifier's input",
            "vit_b_16": "class token after the final LayerNorm, the classifier's input",
            "dinov2_s14": "class token after the final LayerNorm, the graph's output",
            "clip_b32": "projected class token (the graph's output)"}[args.arch]
    testlib.check(info["embedding"] == want, "default embedding %r, expected %r" % (info["embedding"], want))
testlib.finish()
