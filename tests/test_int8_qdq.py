"""int8 on the CPU from a QDQ model (QuantizeLinear/DequantizeLinear pairs; issue 13 items 2 and 4).

The model is a torchvision ResNet-18 with seeded random weights and BatchNorm statistics, exported
to ONNX, and given Q/DQ pairs by tests/qdq_models.py the way onnxruntime's quantize_static writes
them in QDQ format (per-tensor activations, per-channel int8 weight initializers + DequantizeLinear,
int32 biases, Relus removed in favour of [0, 255] pairs; both encodings of each pair; one
per-tensor weight scale, one float weight with a QuantizeLinear), with scales numpy chooses from
the float model's ranges on the images. The reference is that QDQ graph run by torch in float64
(tests/qdq_models.py evaluate): "fq" simulates every pair exactly (round half to even, saturate),
"dq" runs the dequantised model.

  - imgsim --precision=int8 (no --calib) against "fq": per-image cosine >= 0.999, of the raw
    features and of the features centred on the reference's mean (a random-weight network's
    features share one large component; centred, the check sees the image-dependent part);
  - imgsim --precision=fp32 of the QDQ model against "dq": cosine >= 0.99999 (it runs the
    dequantised model, keeping the clamp at 0 of [0, 255] pairs);
  - refused, the message naming the node: Conv weights per channel on axis 1, asymmetric Conv weights, a QuantizeLinear read by a Conv,
    two scales for one tensor; --calib with a QDQ model; the same refusals and an int8 run of two
    images by the sanitizer build (IMGSIM_CLI_ASAN) when there is one.

Usage: test_int8_qdq.py [--images=N] [--size=S]
"""
import argparse
import glob
import os
import sys

import numpy as np

import testlib as T

ap = argparse.ArgumentParser()
ap.add_argument("--images", type=int, default=12)
ap.add_argument("--size", type=int, default=128)
args = ap.parse_args()

try:
    import torch
    import onnx
    from onnx import numpy_helper
except ImportError:
    T.skip("torch/onnx not available")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qdq_models as Q

torch.set_num_threads(2)
w = T.workdir()
float_model = os.path.join(w, "resnet18.onnx")
Q.export_resnet(float_model, "resnet18", seed=3, size=args.size)
img_dir = os.path.join(w, "img")
T.run(["synth", "--out=" + img_dir, "--classes=4", "--per-class=%d" % max(1, args.images // 4), "--min-side=120",
       "--max-side=300", "--seed=7", "--quiet"])


def extract(model, out, precision, extra=(), check=True):
    p = T.run(["extract", "--model=" + model, img_dir, "--out=" + out, "--precision=" + precision, "--threads=2",
               "--no-normalize", "--quiet"] + list(extra), check=check)
    if not check:
        return p
    return T.store_rows(out)


# the network inputs, as imgsim preprocesses them
paths = sorted(os.path.relpath(p, img_dir) for p in glob.glob(os.path.join(img_dir, "*", "*.jpg")))
x = T.preprocess([os.path.join(img_dir, p) for p in paths], args.size, w)

qdq_model = os.path.join(w, "resnet18_qdq.onnx")
qm = Q.write_qdq(float_model, x, qdq_model, seed=1)
ops = {}
for n in qm.graph.node:
    ops[n.op_type] = ops.get(n.op_type, 0) + 1
print("QDQ model:", ops)

ref_fq = Q.features(qm, x, "fq")
ref_dq = Q.features(qm, x, "dq")
skip = Q.unrounded_pairs(qm)
ref_rules = Q.features(qm, x, "fq", skip)
print("pairs imgsim's int8 engine does not round (fused residual, float32 readers):", len(skip))


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


mu = ref_dq.mean(axis=0)
print("reference fq vs dq (the int8 noise): raw cosine min %.6f, centred min %.6f" % (
    min(cos(ref_fq[k], ref_dq[k]) for k in range(len(paths))),
    min(cos(ref_fq[k] - mu, ref_dq[k] - mu) for k in range(len(paths)))))

i8 = extract(qdq_model, os.path.join(w, "s_int8"), "int8")
f32 = extract(qdq_model, os.path.join(w, "s_fp32"), "fp32")
T.check(sorted(i8) == paths and sorted(f32) == paths, "stores do not hold every image")
raw = [cos(i8[p], ref_fq[k]) for k, p in enumerate(paths)]
cen = [cos(i8[p] - mu, ref_fq[k] - mu) for k, p in enumerate(paths)]
vs_dq = [cos(i8[p] - mu, ref_dq[k] - mu) for k, p in enumerate(paths)]
fp = [cos(f32[p], ref_dq[k]) for k, p in enumerate(paths)]
fpc = [cos(f32[p] - mu, ref_dq[k] - mu) for k, p in enumerate(paths)]
rr = [cos(i8[p], ref_rules[k]) for k, p in enumerate(paths)]
rc = [cos(i8[p] - mu, ref_rules[k] - mu) for k, p in enumerate(paths)]
noise = [cos(ref_rules[k] - mu, ref_dq[k] - mu) for k in range(len(paths))]
print("int8 vs fq (every pair rounded): raw cosine min %.6f mean %.6f; centred min %.6f mean %.6f" % (
    min(raw), np.mean(raw), min(cen), np.mean(cen)))
print("int8 vs fq by imgsim's rules: raw min %.6f; centred min %.6f mean %.6f" % (min(rr), min(rc), np.mean(rc)))
print("int8 vs dq (centred): min %.6f mean %.6f; fq by the rules vs dq (the int8 noise): mean %.6f" % (
    min(vs_dq), np.mean(vs_dq), np.mean(noise)))
print("fp32 vs dq: raw cosine min %.8f, centred min %.8f" % (min(fp), min(fpc)))
T.check(min(raw) >= 0.999, "int8: raw cosine to the QDQ reference %.6f < 0.999" % min(raw))
# Without VNNI (AVX2 only) oneDNN's u8 x s8 kernels pair products into saturating 16-bit sums
# (vpmaddubsw), so int8 strays further from the exact-rounding reference: looser limits there,
# measured on an AVX2 EPYC (raw 0.99983, centred min 0.9755, mean 0.9942); README "QDQ models".
vnni = any(f in open("/proc/cpuinfo").read() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
lim = (0.9999, 0.99, 0.998) if vnni else (0.9995, 0.95, 0.99)
print("int8 limits for this CPU (%s): raw %g, centred min %g mean %g" % ("VNNI" if vnni else "no VNNI", *lim))
T.check(min(rr) >= lim[0], "int8: raw cosine to the QDQ reference by imgsim's rules %.6f < %g" % (min(rr), lim[0]))
T.check(min(rc) >= lim[1] and np.mean(rc) >= lim[2],
        "int8: centred cosine to the QDQ reference by imgsim's rules min %.6f (>= %g) mean %.6f (>= %g)" % (
            min(rc), lim[1], np.mean(rc), lim[2]))
# (on AVX2 the saturation noise is larger than the rounding it would tell apart: VNNI CPUs only)
T.check(not vnni or np.mean(rc) > np.mean(noise), "int8 is no closer to its QDQ reference (%.6f) than that is to the "
        "dequantised model (%.6f): the comparison does not see the quantisation" % (np.mean(rc), np.mean(noise)))
T.check(min(fp) >= 0.99999 and min(fpc) >= 0.99999, "fp32: cosine to the dequantised reference %.8f / %.8f" %
        (min(fp), min(fpc)))

# --calib with a QDQ model
p = extract(qdq_model, os.path.join(w, "s_calib"), "int8", ["--calib=" + os.path.join(w, "x.npy")], check=False)
T.check(p.returncode != 0 and "carries its own int8 scales" in p.stderr, "--calib with a QDQ model: %r" % p.stderr)


# refusals: each a small edit of the QDQ model, refused when loaded, naming the node
def edited(name, fn):
    m = onnx.ModelProto()
    m.CopyFrom(qm)
    node = fn(m)
    path = os.path.join(w, name + ".onnx")
    onnx.save(m, path)
    return path, node


def init_of(m, name):
    return [t for t in m.graph.initializer if t.name == name][0]


def is_init(m, name):
    return any(t.name == name for t in m.graph.initializer)


def set_init(m, name, arr):
    t = init_of(m, name)
    t.CopyFrom(numpy_helper.from_array(arr, name))


def weight_axis(m):  # a per-channel weight DequantizeLinear on axis 1
    n = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and is_init(m, n.input[0]) and
         any(a.name == "axis" for a in n.attribute) and numpy_helper.to_array(init_of(m, n.input[0])).dtype == np.int8][0]
    q = numpy_helper.to_array(init_of(m, n.input[0]))
    c = q.shape[1]
    set_init(m, n.input[1], np.full(c, 0.01, np.float32))
    set_init(m, n.input[2], np.zeros(c, np.int8))
    for a in n.attribute:
        if a.name == "axis":
            a.i = 1
    return n.name


def weight_asym(m):  # a weight zero point of 1
    n = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and is_init(m, n.input[0]) and
         len(n.input) > 2 and numpy_helper.to_array(init_of(m, n.input[0])).dtype == np.int8 and
         numpy_helper.to_array(init_of(m, n.input[2])).size > 1][1]
    z = numpy_helper.to_array(init_of(m, n.input[2])).copy()
    z[0] = 1
    set_init(m, n.input[2], z)
    return n.name


def q_to_conv(m):  # a Conv reading a QuantizeLinear's output directly
    conv = [n for n in m.graph.node if n.op_type == "Conv"][1]
    dq = [n for n in m.graph.node if n.output[0] == conv.input[0]][0]
    conv.input[0] = dq.input[0]
    return conv.name


def two_scales(m):  # a second pair on the input tensor with another scale, read by the first Conv
    g = m.graph
    g.initializer.append(numpy_helper.from_array(np.array(0.5, np.float32), "input_scale2"))
    g.initializer.append(numpy_helper.from_array(np.array(0, np.int8), "input_zp2"))
    q = onnx.helper.make_node("QuantizeLinear", ["input", "input_scale2", "input_zp2"], ["input_q2"], name="second_q")
    d = onnx.helper.make_node("DequantizeLinear", ["input_q2", "input_scale2", "input_zp2"], ["input_dq2"],
                              name="second_dq")
    conv = [n for n in g.node if n.op_type == "Conv"][0]
    conv.input[0] = "input_dq2"
    nodes = [q, d] + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return "second_q"


cases = [("weight_axis", weight_axis, "axis other than 0"),
         ("weight_asym", weight_asym, "asymmetric weights"),
         ("q_to_conv", q_to_conv, "not by a DequantizeLinear"),
         ("two_scales", two_scales, "two int8 scales")]
for name, fn, want in cases:
    path, node = edited(name, fn)
    for prec in ("int8", "fp32"):
        p = T.run(["model", "info", path] if prec == "fp32" else
                  ["bench", "--model=" + path, "--precision=int8", "--threads=2", "--batch-size=1", "--iterations=1", "--warmup=0"],
                  check=False)
        T.check(p.returncode != 0 and want in p.stderr and node in p.stderr,
                "%s (%s): expected a refusal naming '%s' with '%s', got rc %d: %s" % (
                    name, prec, node, want, p.returncode, p.stderr.strip()[-400:]))
    print("refused %s: %s" % (name, p.stderr.strip().splitlines()[-1][:300]))
    if T.CLI_ASAN:  # the sanitizer build refuses it too, cleanly (no leak, no UB)
        p = T.run(["model", "info", path], cli=T.CLI_ASAN, check=False)
        T.check(p.returncode == 1 and want in p.stderr and "Sanitizer" not in p.stderr,
                "%s (ASan): rc %d, %s" % (name, p.returncode, p.stderr.strip()[-400:]))

# the sanitizer build imports the QDQ model and runs two images in int8
if T.CLI_ASAN:
    np.save(os.path.join(w, "x2.npy"), x[:2].reshape(2, -1).astype(np.float32))
    p = T.run(["bench", "--model=" + qdq_model, "--precision=int8", "--input=" + os.path.join(w, "x2.npy"),
               "--dump=" + os.path.join(w, "f2.npy"), "--threads=2", "--no-normalize"], cli=T.CLI_ASAN, check=False)
    T.check(p.returncode == 0 and "Sanitizer" not in p.stderr, "ASan int8 run: rc %d, %s" % (
        p.returncode, p.stderr.strip()[-400:]))
    if p.returncode == 0:
        f2 = np.load(os.path.join(w, "f2.npy")).astype(np.float64)
        c2 = min(cos(f2[k], i8[paths[k]]) for k in range(2))
        T.check(c2 >= 0.99999, "ASan int8 features differ from the normal build's: cosine %.7f" % c2)
else:
    print("note: IMGSIM_CLI_ASAN not set; sanitizer runs skipped")
T.finish()
