"""imgsim run --device=cuda end to end (CUDA engine, GPU decoding, GPU search) against the same
job on the CPU: same split, same counts, the same top-1 match for (nearly) every query with the
strict fp32 engine, and summary.json accuracies close. Skipped (77) without a GPU."""
import json
import os

import testlib as T

w = T.workdir()
data = os.path.join(w, "data")
T.make_dataset(data, 5, 8, seed=9)
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=21", "--out=" + model])
res = {}
for dev in ("cuda", "cpu"):
    job = os.path.join(w, "job_" + dev)
    extra = ["--precision=fp32", "--engine-cache=off"] if dev == "cuda" else []
    p = T.run(["run", data, "--model=" + model, "--out=" + job, "--k=3", "--device=" + dev, "--quiet"] + extra,
              check=dev == "cpu")
    if p.returncode != 0:
        T.skip("no CUDA run here: " + p.stderr.strip().splitlines()[-1])
    res[dev] = (json.load(open(os.path.join(job, "summary.json"))), T.read_tsv(os.path.join(job, "results.tsv")))
(sg, rg), (sc, rc) = res["cuda"], res["cpu"]
assert sg["counts"] == sc["counts"] and sg["split"] == sc["split"], (sg["counts"], sc["counts"])
top1 = lambda rows: {r["query_path"]: r["match_path"] for r in rows if r["rank"] == "1"}
a, b = top1(rg), top1(rc)
same = sum(a[q] == b[q] for q in b) / len(b)
print("cuda vs cpu: %d queries, same top-1 match for %.1f%%; top-1 accuracy %.4f vs %.4f" % (
    len(b), 100 * same, sg["accuracy"]["top1"], sc["accuracy"]["top1"]))
assert set(a) == set(b) and same >= 0.95, same
assert abs(sg["accuracy"]["top1"] - sc["accuracy"]["top1"]) <= 0.1

# imgsim_engine_load: the second extract loads the cached engine without importing the model; a
# different file at the same path is not mistaken for it
import hashlib
import shutil

import numpy as np

cache = os.path.join(w, "cache")
m = os.path.join(w, "model.onnx")
shutil.copy(model, m)
outs = []
for i in range(2):
    st = os.path.join(w, "fast%d" % i)
    p = T.run(["extract", "--model=" + m, "--device=cuda", "--engine-cache=" + cache, "--out=" + st, data])
    outs.append((p.stderr, np.load(os.path.join(st, "features.npy")), json.load(open(os.path.join(st, "meta.json")))))
assert "model not imported" not in outs[0][0] and "model not imported" in outs[1][0], outs[1][0]
assert np.array_equal(outs[0][1], outs[1][1]) and outs[0][2]["model"]["sha256"] == outs[1][2]["model"]["sha256"]
other = os.path.join(w, "other.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=22", "--out=" + other])
os.replace(other, m)  # same path, another model
st = os.path.join(w, "fast2")
p = T.run(["extract", "--model=" + m, "--device=cuda", "--engine-cache=" + cache, "--out=" + st, data])
meta = json.load(open(os.path.join(st, "meta.json")))
assert "model not imported" not in p.stderr, p.stderr
assert meta["model"]["sha256"] == hashlib.sha256(open(m, "rb").read()).hexdigest() != outs[0][2]["model"]["sha256"]
print("cached engine: second load skipped the model import; a replaced model file was imported again")
print("ok")
