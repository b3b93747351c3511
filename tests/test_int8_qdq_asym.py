"""int8 on the CPU from a QDQ model with asymmetric activations (issue 13 items 2 and 4): what
onnxruntime's quantize_static writes by default (activation_type QUInt8, non-zero zero points),
weights symmetric int8 per output channel.

The model is tests/qdq_models.py's QDQ ResNet-18 (seeded random weights and BatchNorm statistics)
with asym=True: every tensor that takes negative values (the input, the Conv outputs the residual
Adds read) quantised with scale (max - min) / 255 and zero point round(-min / scale), as uint8 or
as the same int8 less 128 (chosen by the seed; both are there); tensors >= 0 keep uint8 zero point
0. The reference is torch in float64 (qdq_models.evaluate), no onnxruntime:

  - the model has asymmetric zero points of both types (else the test proves nothing);
  - imgsim --precision=int8 against the exact simulation of the QDQ graph by imgsim's rounding
    rules (qdq_models.unrounded_pairs): per-image cosine >= 0.9995 raw, centred on the
    reference's mean >= 0.96 min and >= 0.995 mean. Measured on the dev machine (AVX2, no VNNI):
    0.99967, 0.9725, 0.9967, where the symmetric model of test_int8_qdq.py gives 0.99983, 0.9755,
    0.9942 on the same machine (below that test's own limits there); with the zero points ignored
    the raw cosine falls far below (the check sees them);
  - imgsim --precision=fp32 of the model against the dequantised model: cosine >= 0.99999;
  - the sanitizer build (IMGSIM_CLI_ASAN) runs two images in int8, cleanly, with the normal
    build's features.

Usage: test_int8_qdq_asym.py [--images=N] [--size=S]
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
    from onnx import numpy_helper, TensorProto
except ImportError:
    T.skip("torch/onnx not available")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qdq_models as Q  # noqa: E402

torch.set_num_threads(2)
w = T.workdir()
float_model = os.path.join(w, "resnet18.onnx")
T.export_resnet(float_model, "resnet18", seed=3, size=args.size)
img_dir = os.path.join(w, "img")
T.run(["synth", "--out=" + img_dir, "--classes=4", "--per-class=%d" % max(1, args.images // 4), "--min-side=120",
       "--max-side=300", "--seed=7", "--quiet"])
paths = sorted(os.path.relpath(p, img_dir) for p in glob.glob(os.path.join(img_dir, "*", "*.jpg")))
x = T.preprocess([os.path.join(img_dir, p) for p in paths], args.size, w)
qdq_model = os.path.join(w, "resnet18_qdq_asym.onnx")
qm = Q.write_qdq(float_model, x, qdq_model, seed=1, asym=True)
init = {t.name: t for t in qm.graph.initializer}
zps = []
for n in qm.graph.node:
    if n.op_type == "QuantizeLinear" and n.input[0] not in init:
        t = init[n.input[2]]
        zps.append((t.data_type, int(numpy_helper.to_array(t))))
asym = [(d, z) for d, z in zps if not (d == TensorProto.UINT8 and z in (0, 128) or d == TensorProto.INT8 and z in (0, -128))]
print("activation pairs: %d, asymmetric: %d (uint8 %d, int8 %d)" % (
    len(zps), len(asym), sum(d == TensorProto.UINT8 for d, _ in asym), sum(d == TensorProto.INT8 for d, _ in asym)))
T.check({d for d, _ in asym} == {TensorProto.UINT8, TensorProto.INT8},
        "the model lacks asymmetric zero points of both types: %r" % asym)


def extract(model, out, precision):
    T.run(["extract", "--model=" + model, img_dir, "--out=" + out, "--precision=" + precision, "--threads=2",
           "--no-normalize", "--quiet"])
    d = T.store_rows(out)
    return np.stack([d[p] for p in paths])


cos = T.cosines


i8 = extract(qdq_model, os.path.join(w, "s_int8"), "int8")
f32 = extract(qdq_model, os.path.join(w, "s_fp32"), "fp32")
rules = Q.features(qm, x, "fq", Q.unrounded_pairs(qm))
full = Q.features(qm, x, "fq")
deq = Q.features(qm, x, "dq")
mu = rules.mean(axis=0)
rr, rc = cos(i8, rules), cos(i8 - mu, rules - mu)
near = cos(rules - mu, deq - mu).mean()
print("int8 vs the simulation by imgsim's rules: raw min %.6f; centred min %.6f mean %.6f; every pair rounded: "
      "centred mean %.6f; the rules' simulation vs the dequantised model: centred mean %.6f; int8 vs dequantised: "
      "centred mean %.6f" % (rr.min(), rc.min(), rc.mean(), cos(i8 - mu, full - mu).mean(), near,
                             cos(i8 - mu, deq - mu).mean()))
T.check(rr.min() >= 0.9995, "int8: raw cosine to the simulation by imgsim's rules %.6f < 0.9995" % rr.min())
T.check(rc.min() >= 0.96 and rc.mean() >= 0.995, "int8: centred cosine to the simulation by imgsim's rules: min "
        "%.6f (>= 0.96) mean %.6f (>= 0.995)" % (rc.min(), rc.mean()))
c32 = cos(f32 - mu, deq - mu)
print("fp32 vs dequantised: raw min %.8f, centred min %.8f" % (cos(f32, deq).min(), c32.min()))
T.check(cos(f32, deq).min() >= 0.99999 and c32.min() >= 0.9999, "fp32 vs the dequantised model: raw %.8f centred %.8f"
        % (cos(f32, deq).min(), c32.min()))

if T.CLI_ASAN:
    np.save(os.path.join(w, "x2.npy"), x[:2].reshape(2, -1).astype(np.float32))
    p = T.run(["bench", "--model=" + qdq_model, "--precision=int8", "--input=" + os.path.join(w, "x2.npy"),
               "--dump=" + os.path.join(w, "f2.npy"), "--threads=2", "--no-normalize"], cli=T.CLI_ASAN, check=False)
    T.check(p.returncode == 0 and "Sanitizer" not in p.stderr, "ASan int8 run: rc %d, %s" % (
        p.returncode, p.stderr.strip()[-400:]))
    if p.returncode == 0:
        f2 = np.load(os.path.join(w, "f2.npy")).astype(np.float64)
        c2 = cos(f2, i8[:2]).min()
        T.check(c2 >= 0.99999, "ASan int8 features differ from the normal build's: cosine %.7f" % c2)
else:
    print("note: IMGSIM_CLI_ASAN not set; sanitizer run skipped")
T.finish()
