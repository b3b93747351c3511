"""imgsim dedup --device=cuda against the CPU dedup (itself checked against numpy by
test_search_dedup) and numpy float64: the same pair set, scores within 1e-6; float32 and float16
stores; a cluster with more near-duplicates than the first K neighbours (the escalation path);
a gallery streamed under a small --gpu-memory cap. Skipped (77) without a GPU."""
import json
import os

import numpy as np

import testlib as T

w = T.workdir()


def make_store(d, X):
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "features.npy"), X)
    with open(os.path.join(d, "manifest.tsv"), "w") as f:
        f.write("row\tpath\tlabel\tstatus\terror\n")
        for i in range(X.shape[0]):
            f.write("%d\timg/%05d.jpg\t\tok\t\n" % (i, i))
    json.dump({"dim": int(X.shape[1]), "dtype": "float16" if X.dtype == np.float16 else "float32"},
              open(os.path.join(d, "meta.json"), "w"))


rng = np.random.default_rng(11)
n, dim = 6000, 256
X = rng.standard_normal((n, dim)).astype(np.float32)
for c in range(40):  # planted near-duplicate groups of 2..6
    base = rng.integers(0, n)
    for m in range(int(rng.integers(1, 6))):
        X[rng.integers(0, n)] = X[base] + 0.05 * rng.standard_normal(dim)
big = rng.choice(n, 120, replace=False)  # one cluster of 120: more pairs per row than K0 = 32
X[big] = X[big[0]] + 0.03 * rng.standard_normal((120, dim))
X /= np.linalg.norm(X, axis=1, keepdims=True)

probe = os.path.join(w, "probe")
make_store(probe, X[:10])
p = T.run(["dedup", probe, "--device=cuda", "--out=" + os.path.join(w, "probe.json")], check=False)
if p.returncode != 0:
    T.skip("no GPU dedup here: " + p.stderr.strip())

for name, data, extra in [("f32", X, []), ("f16", X.astype(np.float16), []),
                          ("f32_streamed", X, ["--gpu-memory=%d" % (n * dim)])]:
    d = os.path.join(w, name)
    make_store(d, data)
    got = {}
    for dev in ("cuda", "cpu"):
        out = os.path.join(w, "%s_%s.json" % (name, dev))
        T.run(["dedup", d, "--threshold=0.9", "--device=" + dev, "--out=" + out, "--quiet"] + extra)
        got[dev] = json.load(open(out))
    assert set(got["cuda"]) == set(got["cpu"]), name
    npairs = 0
    for k in got["cpu"]:
        a = sorted(got["cuda"][k])
        b = sorted(got["cpu"][k])
        assert [p for p, _ in a] == [p for p, _ in b], (name, k)
        assert np.allclose([s for _, s in a], [s for _, s in b], rtol=1e-6, atol=0), (name, k)
        npairs += len(a)
    X64 = data.astype(np.float64)
    S = X64 @ X64.T
    want = int(np.triu(S >= np.float32(0.9), k=1).sum())
    assert npairs == want, (name, npairs, want)
    print("ok %-14s pairs %d (cuda == cpu == numpy)" % (name, npairs))
print("ok")
