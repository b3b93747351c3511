"""imgsim dedup under mpirun (Open MPI, CPU), issue 15: every rank takes its share of the blockwise
work (tile pairs of 512 rows, dealt round robin) and rank 0 writes the pairs. A store of 1,300 rows
(three tiles: six tile pairs, so every rank of -np 3 has work; each image listed twice, so exact
ties of score 1 fall across tile and rank boundaries) gives, at -np 2 and 3, the one-process pairs
JSON byte for byte, at two thresholds and for a --no-normalize store by --metric=dot; the pair set
equals numpy's float64 one. A rank's failure (a missing store) stops every rank within seconds.
Skipped (77) without MPI in this build or without mpirun."""
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib as S  # noqa: E402
import testlib as T  # noqa: E402

mpirun = T.mpirun_or_skip()
w = T.workdir()
data = os.path.join(w, "data")
items = T.make_dataset(data, 5, 130, seed=31, sizes=((40, 32), (32, 40)))
lst = os.path.join(data, "list.tsv")
with open(lst, "w") as f:  # every image twice: 1,300 rows
    f.write("path\tlabel\n")
    for rep in range(2):
        for p, lab in items:
            f.write("%s\t%s\n" % (p, lab))
model = S.tiny_model(os.path.join(w, "tiny.onnx"))
store, raw = os.path.join(w, "store"), os.path.join(w, "raw")
T.run(["extract", "--model=" + model, "--out=" + store, lst, "--quiet"])
T.run(["extract", "--model=" + model, "--out=" + raw, lst, "--quiet", "--no-normalize"])
x = np.load(os.path.join(store, "features.npy")).astype(np.float64)
T.check(x.shape[0] == 1300, "the store has 1,300 rows: %s" % (x.shape,))
gram = x @ x.T
paths = [l.split("\t")[1] for l in open(os.path.join(store, "manifest.tsv")).read().splitlines()[1:]]


def mpi(np_, args, timeout=120):
    return subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(np_), T.CLI] + args,
                          capture_output=True, text=True, timeout=timeout)


for label, st, thr, extra in (("cosine 0.99", store, 0.99, []), ("cosine 0.999", store, 0.999, []),
                              ("no-normalize dot", raw, None, ["--metric=dot"])):
    if thr is None:  # a dot threshold with a few thousand pairs
        r = np.load(os.path.join(raw, "features.npy")).astype(np.float64)
        g = r @ r.T
        thr = float(np.sort(g[np.triu_indices(len(r), 1)])[-3000])
    args = ["dedup", st, "--threshold=%r" % thr, "--quiet"] + extra
    ref = os.path.join(w, "ref.json")
    T.run(args + ["--out=" + ref])
    want = open(ref, "rb").read()
    if st == store:  # the pair set against numpy's float64 (one process)
        iu = np.triu_indices(len(x), 1)
        keep = gram[iu] >= np.float64(np.float32(thr))
        exp = sorted((paths[i], paths[j]) for i, j in zip(iu[0][keep], iu[1][keep]))
        # (a path listed twice is two keys of the object: keep them all)
        got = sorted((a, b) for a, lst_ in json.loads(want, object_pairs_hook=list) for b, _ in lst_)
        T.check(len(exp) > 650 and got == exp, "%s: %d pairs, numpy %d" % (label, len(got), len(exp)))
    for np_ in (2, 3):
        out = os.path.join(w, "np%d.json" % np_)
        p = mpi(np_, args + ["--out=" + out])
        T.check(p.returncode == 0, "%s, %d ranks: exit %d\n%s" % (label, np_, p.returncode, p.stderr[-1500:]))
        if p.returncode == 0:
            T.check(open(out, "rb").read() == want, "%s, %d ranks: the pairs differ from one process's" % (label, np_))

t0 = time.time()
p = mpi(3, ["dedup", os.path.join(w, "missing"), "--out=" + os.path.join(w, "x.json")], timeout=60)
T.check(p.returncode != 0 and time.time() - t0 < 30, "missing store under 3 ranks: exit %d" % p.returncode)
T.check("missing" in p.stderr and "rank 0 of 3" in p.stderr, "the message names the store and the rank: %s" % p.stderr[-800:])
T.finish()
