"""imgsim run: the split partitions the dataset; results.tsv is the exact top-k of the query
store against the gallery store (numpy float64); summary.json's accuracies equal those
recomputed here from results.tsv and the splits; a re-run reuses the gallery (files unchanged,
shown as reused); another model invalidates it; searching with images gives the same results as
searching with the query store; after images are added and removed, a rerun brings the stores up
to date (rows of unchanged images kept) and equals a fresh run."""
import collections
import hashlib
import json
import os

import numpy as np

import testlib as T

w = T.workdir()
data = os.path.join(w, "data")
items = T.make_dataset(data, 4, [7, 6, 5, 3], seed=2)
m1 = os.path.join(w, "m1.onnx")
m2 = os.path.join(w, "m2.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=11", "--out=" + m1])
T.run(["model", "init", "--arch=resnet18", "--seed=12", "--out=" + m2])
job = os.path.join(w, "job")
K = 3
args = ["run", data, "--model=" + m1, "--out=" + job, "--k=%d" % K, "--test-size=0.25", "--seed=7",
        "--batch-size=4", "--quiet"]
T.run(args)

train = T.read_tsv(os.path.join(job, "train.tsv"))
test = T.read_tsv(os.path.join(job, "test.tsv"))
norm = lambda p: os.path.normpath(os.path.join(job, p))
all_paths = sorted(norm(r["path"]) for r in train + test)
assert all_paths == sorted(os.path.normpath(os.path.join(data, p)) for p, _ in items)
assert not set(r["path"] for r in train) & set(r["path"] for r in test)

gal = np.load(os.path.join(job, "gallery", "features.npy")).astype(np.float64)
qry = np.load(os.path.join(job, "queries", "features.npy")).astype(np.float64)
gman = [m for m in T.read_tsv(os.path.join(job, "gallery", "manifest.tsv")) if m["status"] == "ok"]
qman = [m for m in T.read_tsv(os.path.join(job, "queries", "manifest.tsv")) if m["status"] == "ok"]
gpath = {int(m["row"]): m["path"] for m in gman}
glabel = {int(m["row"]): m["label"] for m in gman}
res = T.read_tsv(os.path.join(job, "results.tsv"))
by_q = collections.defaultdict(list)
for r in res:
    by_q[r["query_path"]].append(r)
assert len(by_q) == len(qman)

S = qry @ gal.T
top1 = topk = knn = 0
for m in qman:
    i = int(m["row"])
    order = np.lexsort((np.arange(len(gal)), -S[i]))[:K]
    rows = sorted(by_q[m["path"]], key=lambda r: int(r["rank"]))
    assert [r["match_path"] for r in rows] == [gpath[j] for j in order], (m["path"], rows)
    assert np.allclose([float(r["score"]) for r in rows], S[i, order], atol=2e-6)
    labels = [glabel[j] for j in order]
    top1 += labels[0] == m["label"]
    topk += m["label"] in labels
    cnt = collections.Counter(labels)
    best = max(cnt.values())
    vote = next(l for l in labels if cnt[l] == best)  # ties: the label ranked first
    knn += vote == m["label"]

summary = json.load(open(os.path.join(job, "summary.json")))
acc = summary["accuracy"]
n = len(qman)
assert abs(acc["top1"] - top1 / n) < 1e-9 and abs(acc["topk"] - topk / n) < 1e-9 and \
    abs(acc["knn_vote"] - knn / n) < 1e-9, (acc, top1, topk, knn, n)
assert summary["counts"]["gallery"] == len(gman) and summary["counts"]["queries"] == n
assert not summary["stages"]["gallery (train)"]["reused"]

# re-run: the gallery is reused, its files unchanged
def digest(d):
    return {f: hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest() + str(os.stat(os.path.join(d, f)).st_mtime_ns)
            for f in ("features.npy", "manifest.tsv", "meta.json")}
before = digest(os.path.join(job, "gallery"))
p = T.run(args)
assert digest(os.path.join(job, "gallery")) == before
s2 = json.load(open(os.path.join(job, "summary.json")))
assert s2["stages"]["gallery (train)"]["reused"] and s2["accuracy"] == acc

# another model invalidates it
T.run(args[:2] + ["--model=" + m2] + args[3:])
s3 = json.load(open(os.path.join(job, "summary.json")))
assert not s3["stages"]["gallery (train)"]["reused"]
assert digest(os.path.join(job, "gallery")) != before
m2sha = hashlib.sha256(open(m2, "rb").read()).hexdigest()
assert json.load(open(os.path.join(job, "gallery", "meta.json")))["model"]["sha256"] == m2sha

# search with images == search with the query store
r_store = os.path.join(w, "r_store.tsv")
r_imgs = os.path.join(w, "r_imgs.tsv")
T.run(["search", "--gallery=" + os.path.join(job, "gallery"), "--query=" + os.path.join(job, "queries"),
       "--k=%d" % K, "--out=" + r_store, "--quiet"])
T.run(["search", "--gallery=" + os.path.join(job, "gallery"), "--query=" + os.path.join(job, "test.tsv"),
       "--k=%d" % K, "--out=" + r_imgs, "--quiet"])
a = T.read_tsv(r_store)
b = T.read_tsv(r_imgs)
assert [(x["query_path"], x["match_path"]) for x in a] == [(x["query_path"], x["match_path"]) for x in b]
assert np.allclose([float(x["score"]) for x in a], [float(x["score"]) for x in b], atol=1e-5)
# a query store from another model is refused
other = os.path.join(w, "other")
T.run(["extract", "--model=" + m1, "--out=" + other, "--quiet", os.path.join(job, "test.tsv")])
p = T.run(["search", "--gallery=" + os.path.join(job, "gallery"), "--query=" + other, "--out=" + r_store],
          check=False)
assert p.returncode == 1 and "different models" in p.stderr, p.stderr

# the dataset grows and loses an image: the rerun brings both stores up to date (rows of unchanged
# images kept, only the others extracted) and equals a fresh run of the changed dataset
args2 = args[:2] + ["--model=" + m2] + args[3:]
T.photo_like(320, 240, 1, 777).save(os.path.join(data, "class_01", "new_a.jpg"), quality=90)
T.photo_like(240, 320, 3, 778).save(os.path.join(data, "class_03", "new_b.jpg"), quality=90)
os.remove(os.path.join(data, "class_00", sorted(os.listdir(os.path.join(data, "class_00")))[0]))
T.run(args2)
s4 = json.load(open(os.path.join(job, "summary.json")))
g4, q4 = s4["stages"]["gallery (train)"], s4["stages"]["queries (test)"]
assert not g4["reused"] and g4["kept"] > 0 and q4["kept"] > 0 and g4["kept"] + q4["kept"] <= len(items) - 1, (g4, q4)
fresh = os.path.join(w, "fresh")
T.run([args2[0], args2[1], args2[2], "--out=" + fresh] + args2[4:])
for sub in ("gallery", "queries"):
    fa, ff = (np.load(os.path.join(d, sub, "features.npy")) for d in (job, fresh))
    assert fa.shape == ff.shape and np.allclose(fa, ff, rtol=0, atol=1e-6), (sub, fa.shape, ff.shape)
    assert open(os.path.join(job, sub, "manifest.tsv")).read() == open(os.path.join(fresh, sub, "manifest.tsv")).read()
ra, rf = T.read_tsv(os.path.join(job, "results.tsv")), T.read_tsv(os.path.join(fresh, "results.tsv"))
assert [(x["query_path"], x["match_path"]) for x in ra] == [(x["query_path"], x["match_path"]) for x in rf]
assert np.allclose([float(x["score"]) for x in ra], [float(x["score"]) for x in rf], atol=1e-5)
assert json.load(open(os.path.join(fresh, "summary.json")))["accuracy"] == s4["accuracy"]
print("ok")
