"""imgsim run under mpirun (Open MPI, CPU), issue 15: rank 0 splits, every rank extracts its shards
of the gallery and the queries, the search is spread over the ranks and merged on rank 0. At -np 3
(and 2) the job gives one process's results: results.tsv byte for byte (rows, scores), the
accuracies and per-class table of summary.json, train.tsv/test.tsv, and both stores (features
equal in numpy, manifests byte for byte). Run again, the complete stores are reused on every rank.
With --layout=sharded, -np 3 gives one process's sharded stores (every features-K.npy and
manifest-K.tsv byte for byte, the features end to end numpy-equal to the single store's) and the
same results.tsv.
Skipped (77) without MPI in this build or without mpirun."""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib as T  # noqa: E402

mpirun = T.mpirun_or_skip()
w = T.workdir()
data, model = os.path.join(w, "data"), os.path.join(w, "m.onnx")
T.run(["synth", "--out=" + data, "--classes=4", "--per-class=8", "--min-side=48", "--max-side=160", "--seed=11",
       "--quiet"])
T.run(["model", "init", "--arch=resnet18", "--seed=4", "--out=" + model])
OPTS = ["--batch-size=2", "--shard-size=2", "--k=3", "--test-size=0.25"]


def run_args(out):
    return ["run", data, "--model=" + model, "--out=" + out] + OPTS


ref = os.path.join(w, "ref")
T.run(run_args(ref) + ["--quiet"])
want = json.load(open(os.path.join(ref, "summary.json")))
T.check(want["counts"]["queries"] == 8 and want["counts"]["gallery"] == 24, "the reference job: %s" % want["counts"])


def same_job(out, label):
    for name in ("results.tsv", "train.tsv", "test.tsv", "gallery/manifest.tsv", "queries/manifest.tsv",
                 "gallery/features.npy", "queries/features.npy"):
        T.check(open(os.path.join(out, name), "rb").read() == open(os.path.join(ref, name), "rb").read(),
                "%s: %s differs from one process's" % (label, name))
    for s in ("gallery", "queries"):
        a, b = np.load(os.path.join(out, s, "features.npy")), np.load(os.path.join(ref, s, "features.npy"))
        T.check(a.shape == b.shape and np.array_equal(a, b), "%s: %s features differ" % (label, s))
    got = json.load(open(os.path.join(out, "summary.json")))
    for key in ("accuracy", "per_class", "counts", "split", "k", "model_sha256"):
        T.check(got.get(key) == want.get(key), "%s: summary %s: %s vs %s" % (label, key, got.get(key), want.get(key)))
    rows = T.read_tsv(os.path.join(out, "results.tsv"))
    T.check(len(rows) == 8 * 3, "%s: %d result rows" % (label, len(rows)))


for np_ in (3, 2):
    out = os.path.join(w, "np%d" % np_)
    p = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(np_), T.CLI] + run_args(out),
                       capture_output=True, text=True, timeout=200)
    T.check(p.returncode == 0, "%d ranks: exit %d\n%s" % (np_, p.returncode, p.stderr[-2500:]))
    if p.returncode == 0:
        same_job(out, "%d ranks" % np_)
        T.check(p.stderr.count("stage ") == 1, "%d ranks: one stage table (rank 0's)" % np_)

# run again: rank 0 finds both stores complete and every rank skips the extraction
out = os.path.join(w, "np3")
p = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "3", T.CLI] + run_args(out),
                   capture_output=True, text=True, timeout=200)
T.check(p.returncode == 0 and p.stderr.count("reusing the complete store") == 2,
        "rerun: exit %d, stores reused\n%s" % (p.returncode, p.stderr[-2000:]))
if p.returncode == 0:
    same_job(out, "rerun, 3 ranks")

# --layout=sharded: one process's sharded stores and results, at -np 3
sref, s3 = os.path.join(w, "sref"), os.path.join(w, "sharded_np3")
T.run(run_args(sref) + ["--layout=sharded", "--quiet"])
p = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "3", T.CLI] + run_args(s3) +
                   ["--layout=sharded"], capture_output=True, text=True, timeout=200)
T.check(p.returncode == 0, "sharded, 3 ranks: exit %d\n%s" % (p.returncode, p.stderr[-2500:]))
if p.returncode == 0:
    for name in ("results.tsv", "train.tsv", "test.tsv"):
        T.check(open(os.path.join(s3, name), "rb").read() == open(os.path.join(ref, name), "rb").read(),
                "sharded, 3 ranks: %s differs from one process's single-layout job" % name)
    for s in ("gallery", "queries"):
        files = sorted(f for f in os.listdir(os.path.join(sref, s)) if f.startswith(("features-", "manifest-")))
        T.check(len(files) >= 4 and files == sorted(f for f in os.listdir(os.path.join(s3, s))
                                                  if f.startswith(("features-", "manifest-"))),
                "sharded %s: the same shard files: %s" % (s, files))
        for f in files + ["inputs.tsv"]:
            T.check(open(os.path.join(s3, s, f), "rb").read() == open(os.path.join(sref, s, f), "rb").read(),
                    "sharded %s: %s differs from one process's" % (s, f))
        x = np.concatenate([np.load(os.path.join(s3, s, f)) for f in files if f.endswith(".npy")])
        T.check(np.array_equal(x, np.load(os.path.join(ref, s, "features.npy"))),
                "sharded %s: the features end to end are the single store's (numpy)" % s)
T.finish()
