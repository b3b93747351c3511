"""int8 on the CPU from a QDQ model made by onnxruntime itself, against ONNX Runtime (optional).

Needs a Python with onnxruntime (not in Debian): IMGSIM_ORT_PYTHON, else .venv-ort/bin/python in
the source tree (`python3 -m venv --system-site-packages .venv-ort && .venv-ort/bin/pip install
onnxruntime onnx`); skipped (77) without one.

A torchvision ResNet-18 (seeded random weights and BatchNorm statistics) exported by torch, quantised
by onnxruntime.quantization.quantize_static (QuantFormat.QDQ, per-channel int8 weights, int8
activations with ActivationSymmetric=True, MinMax calibration on the images), run by ONNX Runtime
and by imgsim --precision=int8 (no --calib) on the same preprocessed images (`imgsim preprocess`):
  - per-image cosine of the features (the input of the final Gemm) to ONNX Runtime's >= 0.999;
    the same centred on ONNX Runtime's mean (a random-weight network's features share one large
    component) is printed, not checked: imgsim rounds fewer tensors than the graph names (README,
    "QDQ models") and ONNX Runtime's fused int8 kernels round in their own way (torch's exact
    float64 simulation of the QDQ graph is as far from ONNX Runtime's output), so the two int8
    results differ by about int8's own noise;
  - onnxruntime's QDQ model through tests/qdq_models.py's float64 simulation by imgsim's rules
    (every pair rounded except those README names): raw cosine >= 0.9999, centred min >= 0.99 and
    mean >= 0.998 (imgsim runs the scales onnxruntime chose, as it says it does);
  - quantize_static's default, asymmetric activations (--asymmetric --activations=uint8, and the
    same with int8 activations), weights symmetric int8 per channel: the model has asymmetric zero
    points; imgsim int8 against ONNX Runtime on it: raw cosine >= 0.999; against the simulation by
    imgsim's rules: raw >= 0.9995, centred min >= 0.96 and mean >= 0.995 (test_int8_qdq_asym's
    limits; measured on the dev machine, AVX2 without VNNI, 16 images at 224: vs ONNX Runtime raw
    min 0.99985, centred mean 0.993; vs the rules 0.99995, 0.987, 0.998, both types alike).

Usage: test_int8_qdq_ort.py [--images=N] [--size=S]
"""
import argparse
import glob
import os
import subprocess
import sys

import numpy as np

import testlib as T

ap = argparse.ArgumentParser()
ap.add_argument("--images", type=int, default=16)
ap.add_argument("--size", type=int, default=224)
args = ap.parse_args()

here = os.path.dirname(os.path.abspath(__file__))
ort_py = os.environ.get("IMGSIM_ORT_PYTHON") or os.path.join(T.SRC, ".venv-ort", "bin", "python")
if not os.path.exists(ort_py):
    T.skip("no Python with onnxruntime (IMGSIM_ORT_PYTHON, or .venv-ort/bin/python)")
if subprocess.run([ort_py, "-c", "import onnxruntime.quantization"], capture_output=True).returncode != 0:
    T.skip(ort_py + " cannot import onnxruntime.quantization")
try:
    import torch
except ImportError:
    T.skip("torch not available")
sys.path.insert(0, here)
import qdq_models as Q

torch.set_num_threads(2)
w = T.workdir()
fm = os.path.join(w, "resnet18.onnx")
Q.export_resnet(fm, "resnet18", seed=5, size=args.size)
img_dir = os.path.join(w, "img")
T.run(["synth", "--out=" + img_dir, "--classes=4", "--per-class=%d" % max(1, args.images // 4), "--min-side=160",
       "--max-side=360", "--seed=9", "--quiet"])
paths = sorted(os.path.relpath(p, img_dir) for p in glob.glob(os.path.join(img_dir, "*", "*.jpg")))
x_path = os.path.join(w, "x.npy")
np.save(x_path, T.preprocess([os.path.join(img_dir, p) for p in paths], args.size, w))


def ort(*a):
    p = subprocess.run([ort_py, os.path.join(here, "ort_qdq.py")] + list(a), capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(1)
    return p


qm = os.path.join(w, "resnet18_qdq.onnx")
ort("quantize", fm, x_path, qm)
ops = {}
import onnx
from onnx import numpy_helper
for n in onnx.load(qm).graph.node:
    ops[n.op_type] = ops.get(n.op_type, 0) + 1
print("onnxruntime's QDQ model:", ops)
ort("run", qm, x_path, os.path.join(w, "ort_int8.npy"), "--threads=2")
ort("run", fm, x_path, os.path.join(w, "ort_fp32.npy"), "--threads=2")
ref = np.load(os.path.join(w, "ort_int8.npy")).astype(np.float64)
ref32 = np.load(os.path.join(w, "ort_fp32.npy")).astype(np.float64)


def extract(model, out, precision):
    T.run(["extract", "--model=" + model, img_dir, "--out=" + out, "--precision=" + precision, "--threads=2",
           "--no-normalize", "--quiet"])
    d = T.store_rows(out)
    return np.stack([d[p] for p in paths])


cos = T.cosines


i8 = extract(qm, os.path.join(w, "s_int8"), "int8")
f32 = extract(fm, os.path.join(w, "s_fp32"), "fp32")
mu = ref.mean(axis=0)
raw, cen = cos(i8, ref), cos(i8 - mu, ref - mu)
print("imgsim int8 vs ONNX Runtime int8 (same QDQ model): raw cosine min %.6f mean %.6f; centred min %.6f "
      "mean %.6f" % (raw.min(), raw.mean(), cen.min(), cen.mean()))
print("for scale: imgsim fp32 vs ONNX Runtime fp32 (float model): raw min %.8f; ONNX Runtime int8 vs fp32: "
      "centred mean %.6f; imgsim int8 vs ONNX Runtime fp32: centred mean %.6f" % (
          cos(f32, ref32).min(), cos(ref - mu, ref32 - mu).mean(), cos(i8 - mu, ref32 - mu).mean()))
T.check(raw.min() >= 0.999, "raw cosine to ONNX Runtime %.6f < 0.999" % raw.min())
# onnxruntime's model through torch's float64 simulation: every pair rounded, and by imgsim's rules
qmp = onnx.load(qm)
x = np.load(x_path)
full = Q.features(qmp, x, "fq")
rules = Q.features(qmp, x, "fq", Q.unrounded_pairs(qmp))
deq = Q.features(qmp, x, "dq")
rc, rr = cos(i8 - mu, rules - mu), cos(i8, rules)
print("the exact QDQ simulation vs ONNX Runtime: centred min %.6f mean %.6f (ONNX Runtime's own int8 "
      "arithmetic)" % (cos(full - mu, ref - mu).min(), cos(full - mu, ref - mu).mean()))
print("imgsim int8 vs the simulation by imgsim's rules: raw min %.6f; centred min %.6f mean %.6f; that "
      "simulation vs the dequantised model: centred mean %.6f" % (rr.min(), rc.min(), rc.mean(),
                                                                  cos(rules - mu, deq - mu).mean()))
T.check(rr.min() >= 0.9999 and rc.min() >= 0.99 and rc.mean() >= 0.998,
        "against the simulation by imgsim's rules: raw min %.6f (>= 0.9999), centred min %.6f (>= 0.99) mean %.6f "
        "(>= 0.998)" % (rr.min(), rc.min(), rc.mean()))

# quantize_static's default: asymmetric activations (uint8 with zero points; and int8 with zero
# points), weights symmetric int8 per channel: the same checks
for extra, name in ((["--asymmetric", "--activations=uint8"], "asym_uint8"), (["--asymmetric"], "asym_int8")):
    qa = os.path.join(w, "resnet18_qdq_%s.onnx" % name)
    ort("quantize", fm, x_path, qa, *extra)
    qap = onnx.load(qa)
    zps = [int(numpy_helper.to_array(t)) for t in qap.graph.initializer if t.name.endswith("_zero_point") and
           numpy_helper.to_array(t).size == 1 and t.data_type in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)]
    asym = sum(1 for z in zps if z not in (0, 128, -128))
    T.check(asym > 0, "%s: no asymmetric zero point in onnxruntime's model (%r)" % (name, zps))
    ort("run", qa, x_path, os.path.join(w, "ort_%s.npy" % name), "--threads=2")
    ra = np.load(os.path.join(w, "ort_%s.npy" % name)).astype(np.float64)
    ia = extract(qa, os.path.join(w, "s_" + name), "int8")
    rules_a = Q.features(qap, x, "fq", Q.unrounded_pairs(qap))
    mu_a = ra.mean(axis=0)
    raw_a, cen_a = cos(ia, ra), cos(ia - mu_a, ra - mu_a)
    rr_a, rc_a = cos(ia, rules_a), cos(ia - mu_a, rules_a - mu_a)
    print("%s (%d of %d activation zero points asymmetric): imgsim int8 vs ONNX Runtime: raw min %.6f mean %.6f, "
          "centred min %.6f mean %.6f; vs the simulation by imgsim's rules: raw min %.6f, centred min %.6f mean %.6f"
          % (name, asym, len(zps), raw_a.min(), raw_a.mean(), cen_a.min(), cen_a.mean(), rr_a.min(), rc_a.min(),
             rc_a.mean()))
    T.check(raw_a.min() >= 0.999, "%s: raw cosine to ONNX Runtime %.6f < 0.999" % (name, raw_a.min()))
    T.check(rr_a.min() >= 0.9995 and rc_a.min() >= 0.96 and rc_a.mean() >= 0.995,
            "%s: against the simulation by imgsim's rules: raw min %.6f (>= 0.9995), centred min %.6f (>= 0.96) "
            "mean %.6f (>= 0.995, test_int8_qdq_asym's limits)" % (name, rr_a.min(), rc_a.min(), rc_a.mean()))
T.finish()
