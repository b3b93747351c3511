"""The job on a QDQ model (issue 13, items 2 and 5): `imgsim run --precision=int8` and the Python
imgsim.run(precision="int8") of a model that carries its own int8 scales (QuantizeLinear/
DequantizeLinear) skip calibration and run with the model's scales.

The model is a small torchvision ResNet-18 (seeded random weights and BatchNorm statistics, 96x96
input) given Q/DQ pairs by tests/qdq_models.py as onnxruntime's quantize_static writes them, with
scales numpy chooses from the float model's ranges on a few of the dataset's images; the images
come from `imgsim synth`.

  - run --precision=int8 (no --calib) succeeds, writes no DIR/int8.calib, says why on stderr,
    times no calibration stage (images 0; the stage table says "model"), summary.json's
    "calibration" is {file null, sha256 "", source "model"}; the stores' meta.json say int8 with
    calib_sha256 ""; the same run again reuses both stores;
  - its gallery and query features equal, row for row (by path, bit for bit), those of
    `imgsim extract --precision=int8` of the same model on DIR/train.tsv and DIR/test.tsv;
  - run --precision=int8 --calib=FILE with the QDQ model is refused before anything is extracted,
    the message naming the model and saying that it carries its own int8 scales;
  - model_info's "quantized" (True for the QDQ model, False for the float one), and the Python
    imgsim.run(precision="int8") of the same job: no int8.calib, the same features as the CLI's,
    the same summary "calibration"; Engine(precision="int8", calib=...) of the QDQ model raises
    InvalidArgumentError (when the build has the extension module, IMGSIM_PY_MODULE).
"""
import glob
import json
import os
import shutil
import sys

import numpy as np

import testlib as T

try:
    import torch
    import onnx  # noqa: F401 (qdq_models needs it)
except ImportError:
    T.skip("torch/onnx not available")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qdq_models as Q  # noqa: E402

torch.set_num_threads(2)
w = T.workdir()
SIZE = 96
float_model = os.path.join(w, "resnet18.onnx")
T.export_resnet(float_model, "resnet18", seed=3, size=SIZE)
data = os.path.join(w, "data")
T.run(["synth", "--out=" + data, "--classes=3", "--per-class=5", "--min-side=100", "--max-side=200", "--seed=7",
       "--quiet"])
qdq_model = os.path.join(w, "resnet18_qdq.onnx")
Q.write_qdq(float_model, T.preprocess(sorted(glob.glob(os.path.join(data, "*", "*.jpg")))[::3], SIZE, w), qdq_model, seed=1)
OPTS = ["--threads=2", "--k=3", "--batch-size=4"]


def rows(store):
    """{path: feature row} of a store."""
    f = np.load(os.path.join(store, "features.npy"))
    return {r["path"]: f[int(r["row"])] for r in T.read_tsv(os.path.join(store, "manifest.tsv")) if r["status"] == "ok"}


def same_rows(a, b, what):
    T.check(sorted(a) == sorted(b), "%s: other images: %r vs %r" % (what, sorted(a), sorted(b)))
    diff = [k for k in a if k in b and not np.array_equal(a[k], b[k])]
    worst = max((float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in diff), default=0.0)
    T.check(not diff, "%s: %d of %d rows differ (max |d| %.3g)" % (what, len(diff), len(a), worst))
    print("%s: %d rows, %d differ" % (what, len(a), len(diff)))


def meta(store):
    return json.load(open(os.path.join(store, "meta.json")))


# 1. run --precision=int8 of the QDQ model: no calibration
job = os.path.join(w, "job")
p = T.run(["run", data, "--model=" + qdq_model, "--out=" + job, "--precision=int8"] + OPTS)
T.check(not os.path.exists(os.path.join(job, "int8.calib")), "run wrote %s" % os.path.join(job, "int8.calib"))
T.check("carries its own int8 scales" in p.stderr, "run does not say why it does not calibrate:\n" + p.stderr)
s = json.load(open(os.path.join(job, "summary.json")))
T.check(s.get("calibration") == {"file": None, "sha256": "", "source": "model"},
        "summary calibration: %r" % s.get("calibration"))
st = s["stages"]["calibration"]
T.check(st["images"] == 0 and not st["reused"], "calibration stage: %r" % st)
T.check(any(l.split()[:2] == ["calibration", "model"] for l in p.stderr.splitlines()),
        "stage table: no 'calibration model' row:\n" + p.stderr)
for sub in ("gallery", "queries"):
    m = meta(os.path.join(job, sub))
    T.check(m["precision"] == "int8" and m.get("calib_sha256", "") == "",
            "%s meta.json: precision %r calib_sha256 %r" % (sub, m["precision"], m.get("calib_sha256")))

p = T.run(["run", data, "--model=" + qdq_model, "--out=" + job, "--precision=int8"] + OPTS)
T.check(p.stderr.count("reusing the complete store") == 2 and not os.path.exists(os.path.join(job, "int8.calib")),
        "the same run again: the stores not reused, or a calibration file written:\n" + p.stderr)

# 2. the same features as extract --precision=int8 of the same model
for tsv, sub in (("train.tsv", "gallery"), ("test.tsv", "queries")):
    out = os.path.join(w, "x_" + sub)
    T.run(["extract", "--model=" + qdq_model, os.path.join(job, tsv), "--out=" + out, "--precision=int8",
           "--threads=2", "--batch-size=4", "--quiet"])
    same_rows(rows(os.path.join(job, sub)), rows(out), "run %s vs extract --precision=int8" % sub)
ref = rows(os.path.join(job, "gallery"))

# 3. --calib with a QDQ model: refused before anything is extracted
cal = os.path.join(w, "float.calib")
T.run(["calibrate", "--model=" + float_model, data, "--images=4", "--out=" + cal, "--quiet"])
job2 = os.path.join(w, "job2")
p = T.run(["run", data, "--model=" + qdq_model, "--out=" + job2, "--precision=int8", "--calib=" + cal] + OPTS,
          check=False)
T.check(p.returncode == 1 and qdq_model in p.stderr and "carries its own int8 scales" in p.stderr and
        "no --calib" in p.stderr, "run --calib with a QDQ model: rc %d\n%s" % (p.returncode, p.stderr))
T.check(not os.path.exists(os.path.join(job2, "gallery")), "run --calib with a QDQ model extracted the gallery")

# 4. the Python package
mod = os.environ.get("IMGSIM_PY_MODULE", "")
if mod and os.path.exists(mod):
    pkg = os.path.join(w, "pkg")
    shutil.copytree(os.path.join(T.SRC, "python", "imgsim"), os.path.join(pkg, "imgsim"))
    shutil.copy(mod, os.path.join(pkg, "imgsim", os.path.basename(mod)))
    sys.path.insert(0, pkg)
    import imgsim  # noqa: E402

    T.check(imgsim.model_info(qdq_model)["quantized"] is True, "model_info(QDQ)['quantized'] is not True")
    T.check(imgsim.model_info(float_model)["quantized"] is False, "model_info(float)['quantized'] is not False")
    pj = os.path.join(w, "pyjob")
    ps = imgsim.run(data, qdq_model, pj, precision="int8", k=3, threads=2, batch_size=4)
    T.check(not os.path.exists(os.path.join(pj, "int8.calib")), "imgsim.run wrote %s" % os.path.join(pj, "int8.calib"))
    T.check(ps.get("calibration") == {"file": None, "sha256": "", "source": "model"},
            "imgsim.run calibration: %r" % ps.get("calibration"))
    T.check(ps["stages"]["calibration"]["images"] == 0, "imgsim.run calibration stage: %r" % ps["stages"]["calibration"])
    same_rows(rows(os.path.join(pj, "gallery")), ref, "imgsim.run gallery vs imgsim run's")
    try:
        imgsim.Engine(qdq_model, precision="int8", calib=cal, threads=2).close()
        T.check(False, "Engine(QDQ model, precision='int8', calib=...) was not refused")
    except imgsim.InvalidArgumentError as e:
        T.check("carries its own int8 scales" in str(e), "Engine's refusal: %s" % e)
else:
    print("no extension module (IMGSIM_PY_MODULE): the Python checks are left out")
T.finish()
