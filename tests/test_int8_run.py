"""int8 in the job (issue 13, item 5): `imgsim run --precision=int8` without --calib calibrates on
training images into DIR/int8.calib and reuses it; the calibration file's sha256 follows the
features (meta.json, shard job.json, engine info) and stores of other calibrations are refused.

The model is torchvision's resnet18 with random weights and random BatchNorm statistics, exported
to ONNX by PyTorch; the images come from `imgsim synth` (photo-like JPEGs, 4 classes).

  - run int8 without --calib writes DIR/int8.calib (no temporary file left) byte for byte what
    `imgsim calibrate` makes of DIR/train.tsv with --images=--calib-images; its model sha256 is
    hashlib's; stage "calibration" is timed (not reused); both stores' meta.json carry
    calib_sha256 = hashlib's sha256 of the file; the gallery's int8 features against the fp32
    run's, row by row: mean cosine >= 0.99;
  - the same run again reuses the file (bytes and mtime unchanged, stage reused, stores reused);
  - another --calib-images, or another model, makes it again with a message saying why (the
    documented choice: recalibrate, not refuse), and the stores are extracted again;
  - --calib=FILE: that file is used, none is written in the job folder;
  - search refuses an int8 query store against an fp32 gallery ("precision") and against an int8
    gallery of another calibration ("calib_sha256"); query images extracted by an fp32 engine or
    another calibration are refused too;
  - no store mixes calibrations: `extract --update` with another calibration extracts every image
    again (warning "not updated (... calib_sha256 differs)"), an extraction killed mid-way and run
    again with another calibration drops its shards ("calib_sha256 differs"); both give the fresh
    extraction's features and record the new calib_sha256.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np

import testlib as T

try:
    import torch
    import torchvision
except ImportError:
    T.skip("torch/torchvision not available")

torch.set_num_threads(2)
w = T.workdir()


def export_model(path, seed):
    T.export_resnet(path, "resnet18", seed)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def meta(store):
    return json.load(open(os.path.join(store, "meta.json")))


def summary(job):
    return json.load(open(os.path.join(job, "summary.json")))


mA, mB = os.path.join(w, "a.onnx"), os.path.join(w, "b.onnx")
export_model(mA, 3)
export_model(mB, 4)
data = os.path.join(w, "data")
T.run(["synth", "--out=" + data, "--classes=4", "--per-class=6", "--min-side=160", "--max-side=320", "--seed=7",
       "--quiet"])
OPTS = ["--threads=2", "--k=3"]


def run(job, *extra, model=mA, check=True):
    return T.run(["run", data, "--model=" + model, "--out=" + job] + OPTS + list(extra), check=check)


# fp32 and int8 (no --calib) runs of the same job
jf, ji = os.path.join(w, "fp32"), os.path.join(w, "int8")
run(jf)
p = run(ji, "--precision=int8", "--calib-images=12")
calib = os.path.join(ji, "int8.calib")
T.check(os.path.isfile(calib), "no %s" % calib)
T.check(sorted(f for f in os.listdir(ji) if "tmp" in f) == [], "temporary files left: %r" % os.listdir(ji))
cj = json.load(open(calib))
T.check(cj["format"] == "imgsim-calib-1" and cj["model"]["sha256"] == sha(mA), "calib model: %r" % cj["model"])
T.check(cj["images"] == 12 and cj["images_requested"] == 12 and cj["method"] == "entropy",
        "calib images/method: %r %r %r" % (cj["images"], cj.get("images_requested"), cj["method"]))
ref = os.path.join(w, "ref.calib")  # what `imgsim calibrate` makes of the job's training split
T.run(["calibrate", "--model=" + mA, os.path.join(ji, "train.tsv"), "--images=12", "--out=" + ref, "--quiet"])
T.check(open(ref, "rb").read() == open(calib, "rb").read(), "DIR/int8.calib differs from imgsim calibrate's")
s = summary(ji)
st = s["stages"]["calibration"]
T.check(st["images"] == 12 and not st["reused"] and st["seconds"] > 0, "calibration stage: %r" % st)
T.check(s["calibration"]["source"] == "calibrated" and s["calibration"]["sha256"] == sha(calib),
        "summary calibration: %r" % s.get("calibration"))
T.check("calibration" in p.stderr, "the stage table has no calibration row:\n" + p.stderr)
for sub in ("gallery", "queries"):
    m = meta(os.path.join(ji, sub))
    T.check(m["precision"] == "int8" and m.get("calib_sha256") == sha(calib),
            "%s meta.json: precision %r calib_sha256 %r, file %s" % (sub, m["precision"], m.get("calib_sha256"),
                                                                     sha(calib)))
T.check("calib_sha256" not in meta(os.path.join(jf, "gallery")), "an fp32 store records calib_sha256")
T.check("calibration" not in summary(jf) and summary(jf)["stages"]["calibration"]["images"] == 0,
        "fp32 run: calibration stage %r" % summary(jf)["stages"]["calibration"])
f32 = np.load(os.path.join(jf, "gallery", "features.npy")).astype(np.float64)
f8 = np.load(os.path.join(ji, "gallery", "features.npy")).astype(np.float64)
T.check(f32.shape == f8.shape, "shapes %r %r" % (f32.shape, f8.shape))
cos = np.sum(f32 * f8, 1) / (np.linalg.norm(f32, axis=1) * np.linalg.norm(f8, axis=1))
print("int8 run vs fp32 run, %d gallery rows: cosine mean %.5f min %.5f" % (len(cos), cos.mean(), cos.min()))
T.check(cos.mean() >= 0.99, "cosine mean %.5f < 0.99" % cos.mean())

# the rerun reuses the file
before = (open(calib, "rb").read(), os.stat(calib).st_mtime_ns)
p = run(ji, "--precision=int8", "--calib-images=12")
T.check((open(calib, "rb").read(), os.stat(calib).st_mtime_ns) == before, "the rerun rewrote int8.calib")
s = summary(ji)
T.check(s["stages"]["calibration"]["reused"] and s["calibration"]["source"] == "reused", "rerun: %r" % s["stages"])
T.check(s["stages"]["gallery (train)"]["reused"], "rerun: the gallery was extracted again")
T.check("reusing " + calib in p.stderr, "rerun: no reuse message:\n" + p.stderr)

# another --calib-images: calibrated again, the stores extracted again
p = run(ji, "--precision=int8", "--calib-images=8")
T.check("--calib-images=12, not 8" in p.stderr and "calibrating again" in p.stderr, "calib-images 8:\n" + p.stderr)
cj = json.load(open(calib))
s = summary(ji)
T.check(cj["images_requested"] == 8 and not s["stages"]["calibration"]["reused"], "calib-images 8: %r" % cj["images"])
T.check(not s["stages"]["gallery (train)"]["reused"] and
        meta(os.path.join(ji, "gallery"))["calib_sha256"] == sha(calib),
        "calib-images 8: the gallery was not extracted with the new file")
# another model: calibrated again for it
p = run(ji, "--precision=int8", "--calib-images=8", model=mB)
T.check("calibration file is for another model" in p.stderr and "calibrating again" in p.stderr,
        "model B:\n" + p.stderr)
T.check(json.load(open(calib))["model"]["sha256"] == sha(mB), "model B: int8.calib not remade for it")
calib_b = os.path.join(w, "b.calib")
shutil.copy(calib, calib_b)

# --calib=FILE: used as given, nothing written in the job folder
jg = os.path.join(w, "given")
p = run(jg, "--precision=int8", "--calib=" + ref)
s = summary(jg)
T.check(not os.path.exists(os.path.join(jg, "int8.calib")) and s["calibration"]["source"] == "given",
        "--calib: %r" % s.get("calibration"))
T.check(meta(os.path.join(jg, "gallery"))["calib_sha256"] == sha(ref), "--calib: meta.json calib_sha256")
T.check(np.array_equal(np.load(os.path.join(jg, "gallery", "features.npy")), f8.astype(np.float32)),
        "--calib with the same file's bytes gives other features than the calibrating run")

# search refuses mixed precisions and calibrations, naming the field
ref2 = os.path.join(w, "ref2.calib")  # another calibration of model A
T.run(["calibrate", "--model=" + mA, data, "--images=6", "--out=" + ref2, "--quiet"])
q2 = os.path.join(w, "q2")
T.run(["extract", "--model=" + mA, os.path.join(jg, "test.tsv"), "--out=" + q2, "--precision=int8", "--calib=" + ref2,
       "--threads=2", "--quiet"])
res = os.path.join(w, "res.tsv")
for gal, qry, field in ((os.path.join(jf, "gallery"), os.path.join(jg, "queries"), "precision"),
                        (os.path.join(jg, "gallery"), q2, "calib_sha256")):
    p = T.run(["search", "--gallery=" + gal, "--query=" + qry, "--out=" + res, "--quiet"], check=False)
    T.check(p.returncode == 1 and field in p.stderr and gal in p.stderr, "search %s: rc %d %s" %
            (field, p.returncode, p.stderr.strip()))
img = os.path.join(data, sorted(os.listdir(data))[0])
for extra, field in (([], "precision"), (["--precision=int8", "--calib=" + ref2], "calib_sha256")):
    p = T.run(["search", "--gallery=" + os.path.join(jg, "gallery"), "--query=" + img, "--out=" + res, "--quiet",
               "--threads=2"] + extra, check=False)
    T.check(p.returncode == 1 and field in p.stderr,
            "search images %s: rc %d %s" % (field, p.returncode, p.stderr.strip()))
p = T.run(["search", "--gallery=" + os.path.join(jg, "gallery"), "--query=" + os.path.join(jg, "queries"),
           "--out=" + res, "--quiet"], check=False)
T.check(p.returncode == 0, "search of the same calibration: %s" % p.stderr.strip())

# extract --update with another calibration: no row of the old calibration is kept (the store is
# not updated but extracted again, as --update does for any other setting), the warning names
# calib_sha256
up = os.path.join(w, "up")
T.run(["extract", "--model=" + mA, data, "--out=" + up, "--precision=int8", "--calib=" + ref, "--threads=2", "--quiet"])
p = T.run(["extract", "--model=" + mA, data, "--out=" + up, "--precision=int8", "--calib=" + ref2, "--threads=2",
           "--update"])
T.check("not updated" in p.stderr and "calib_sha256 differs" in p.stderr, "--update, other calibration: %s" %
        p.stderr.strip())

# a killed extraction resumed with another calibration: its shards are dropped, not mixed
rs = os.path.join(w, "resume")
cmd = [T.CLI, "extract", "--model=" + mA, data, "--out=" + rs, "--precision=int8", "--threads=1", "--workers=1",
       "--batch-size=2", "--shard-size=4", "--quiet"]
proc = subprocess.Popen(cmd + ["--calib=" + ref], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
first = os.path.join(rs, "shards", "000000.json")
t0 = time.time()
while not os.path.exists(first) and proc.poll() is None and time.time() - t0 < 120:
    time.sleep(0.005)
proc.send_signal(signal.SIGKILL) if proc.poll() is None else None
proc.wait()
T.check(os.path.exists(first) and not os.path.exists(os.path.join(rs, "meta.json")),
        "the extraction was not killed mid-way (it finished first)")
job = json.load(open(os.path.join(rs, "shards", "job.json")))
T.check(job.get("calib_sha256") == sha(ref), "shards/job.json calib_sha256 %r" % job.get("calib_sha256"))
p = subprocess.run(cmd[:-1] + ["--calib=" + ref2], capture_output=True, text=True)
T.check(p.returncode == 0 and "calib_sha256 differs" in p.stderr, "resume, other calibration: %s" % p.stderr.strip())
fresh = os.path.join(w, "fresh")
T.run(["extract", "--model=" + mA, data, "--out=" + fresh, "--precision=int8", "--calib=" + ref2, "--threads=2",
       "--quiet"])
T.check(np.array_equal(np.load(os.path.join(rs, "features.npy")), np.load(os.path.join(fresh, "features.npy"))) and
        meta(rs)["calib_sha256"] == sha(ref2), "resumed with another calibration: not the fresh extraction")
T.check(np.array_equal(np.load(os.path.join(up, "features.npy")), np.load(os.path.join(fresh, "features.npy"))) and
        meta(up)["calib_sha256"] == sha(ref2), "--update with another calibration: not the fresh extraction")
T.finish()
