"""Several CUDA engines in one job (issue 15 item 1), on the GPU machine: --device=cuda:0,0 (two
engines on one GPU) and cuda:all against the one-engine job on cuda:0, with numpy as the judge:
 - extract: the same manifest and inputs listing, features equal to the one-engine store's (every
   row within 1e-5; bit-identity reported), the corrupt image failed the same way;
 - search: --device=cuda:0,0 (the gallery's rows split over two "GPUs", top-k merged) gives
   results.tsv identical to cuda:0's, and both equal numpy's float64 top-k (ties by lower row);
 - run: the same split, counts and top-1 matches as the one-engine run;
 - mpirun -np 2 on one GPU (where this build has MPI and mpirun exists): the store equals the
   one-engine store within the same bound;
 - dedup refuses a list of GPUs, a malformed list is refused.
Skipped (77) without a GPU."""
import json
import os
import shutil
import subprocess

import numpy as np

import testlib as T

w = T.workdir()
data = os.path.join(w, "data")
T.make_dataset(data, 4, 30, seed=3)
with open(os.path.join(data, "class_01", "broken.jpg"), "wb") as f:  # a JPEG that stops early: fails
    f.write(open(os.path.join(data, "class_00", "img_000.jpg"), "rb").read()[:300])
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=5", "--out=" + model])
cache = os.path.join(w, "cache")
common = ["--model=" + model, "--precision=fp32", "--batch-size=16", "--shard-size=16", "--engine-cache=" + cache,
          "--quiet"]


def extract(dev, name, pre=None):
    out = os.path.join(w, name)
    p = subprocess.run((pre or []) + [T.CLI, "extract", "--device=" + dev, "--out=" + out, data] + common,
                       capture_output=True, text=True)
    return p, out


p, one = extract("cuda:0", "one")
if p.returncode != 0:
    T.skip("no CUDA extraction here: " + (p.stderr.strip().splitlines() or ["?"])[-1])


def same_store(a, b, what):
    for f in ("manifest.tsv", "inputs.tsv"):
        assert open(os.path.join(a, f)).read() == open(os.path.join(b, f)).read(), (what, f)
    A, B = np.load(os.path.join(a, "features.npy")), np.load(os.path.join(b, "features.npy"))
    assert A.shape == B.shape and A.shape[0] == 120, (A.shape, B.shape)
    d = float(np.abs(A.astype(np.float64) - B).max())
    print("%s: %d rows, max |diff| %.3g vs cuda:0 (%s)" % (what, A.shape[0], d,
                                                          "bit-identical" if d == 0 else "not bit-identical"))
    assert d <= 1e-5, d
    m = [l.split("\t") for l in open(os.path.join(b, "manifest.tsv")).read().splitlines()[1:]]
    assert [r[1] for r in m if r[3] == "failed"] == ["class_01/broken.jpg"], m


p, two = extract("cuda:0,0", "two")
assert p.returncode == 0, p.stderr
same_store(one, two, "extract --device=cuda:0,0")
n_gpu = len(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip().splitlines())
p, alls = extract("cuda:all", "all")
assert p.returncode == 0, p.stderr
same_store(one, alls, "extract --device=cuda:all (%d GPU%s)" % (n_gpu, "" if n_gpu == 1 else "s"))

# search over two engines' share of the rows: identical results, equal to numpy's exact top-k
res = {}
for dev in ("cuda:0", "cuda:0,0"):
    out = os.path.join(w, "search_%s.tsv" % dev.replace(":", "_").replace(",", "_"))
    T.run(["search", "--gallery=" + one, "--query=" + one, "--k=7", "--device=" + dev, "--out=" + out])
    res[dev] = open(out).read()
assert res["cuda:0"] == res["cuda:0,0"], "search: cuda:0,0 differs from cuda:0"
X = np.load(os.path.join(one, "features.npy")).astype(np.float64)
S = X @ X.T
order = np.lexsort((np.broadcast_to(np.arange(len(X)), S.shape), -S), axis=1)[:, :7]
rows = T.read_tsv(os.path.join(w, "search_cuda_0_0.tsv"))
paths = [l.split("\t")[1] for l in open(os.path.join(one, "manifest.tsv")).read().splitlines()[1:]
         if l.split("\t")[3] == "ok"]
got = {}
for r in rows:
    got.setdefault(r["query_path"], []).append(r["match_path"])
want = {paths[i]: [paths[j] for j in order[i]] for i in range(len(X))}
bad = [q for q in want if got.get(q) != want[q]]
print("search --device=cuda:0,0: results identical to cuda:0; %d of %d queries equal numpy's float64 top-7"
      % (len(want) - len(bad), len(want)))
assert not bad, bad[:3]

# run on two engines: the same job as on one
sums = {}
for dev in ("cuda:0", "cuda:0,0"):
    job = os.path.join(w, "job_" + dev.replace(":", "_").replace(",", "_"))
    T.run(["run", data, "--model=" + model, "--out=" + job, "--k=3", "--device=" + dev, "--precision=fp32",
           "--engine-cache=" + cache, "--quiet"])
    sums[dev] = (json.load(open(os.path.join(job, "summary.json"))), T.read_tsv(os.path.join(job, "results.tsv")))
(s1, r1), (s2, r2) = sums["cuda:0"], sums["cuda:0,0"]
assert s1["counts"] == s2["counts"] and s1["split"] == s2["split"], (s1["counts"], s2["counts"])
top1 = lambda rows: {r["query_path"]: r["match_path"] for r in rows if r["rank"] == "1"}
a, b = top1(r1), top1(r2)
same = sum(a[q] == b.get(q) for q in a) / len(a)
print("run --device=cuda:0,0: %d queries, same top-1 as cuda:0 for %.1f%%" % (len(a), 100 * same))
assert same >= 0.99, same

# mpirun -np 2 on one GPU
mpirun = shutil.which("mpirun")
if os.environ.get("IMGSIM_HAVE_MPI", "0") == "1" and mpirun:
    p, mp = extract("cuda:0", "mpi", pre=[mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2"])
    assert p.returncode == 0, p.stderr
    same_store(one, mp, "mpirun -np 2 extract --device=cuda:0")
else:
    print("mpirun -np 2 on one GPU: not run (no MPI in this build or no mpirun)")

# refusals
p = T.run(["dedup", one, "--device=cuda:0,1", "--out=" + os.path.join(w, "d.json")], check=False)
assert p.returncode != 0 and "one GPU" in p.stderr, p.stderr
p = T.run(["extract", "--device=cuda:0,x", "--out=" + os.path.join(w, "bad"), data] + common, check=False)
assert p.returncode == 2 and "cuda:N,M" in p.stderr, p.stderr
print("ok")
