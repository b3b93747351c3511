#!/usr/bin/env python3
"""test_search_dedup.py: `imgsim dedup STORE` against numpy brute force: the pair set (every
i < j with float64 score >= threshold, each once under the lower row's path), each score within
1e-6 relative of float64, lists sorted by score descending; float32 and float16 stores, pairs
across tile boundaries, the sanitizer build, a threshold that no pair reaches, a bad store and a bad option."""
import json
import os
import subprocess
import sys

import numpy as np

CLI = os.environ.get("IMGSIM_CLI")
ASAN = os.environ.get("IMGSIM_CLI_ASAN")
WORK = os.environ.get("IMGSIM_TEST_DIR", "/tmp/imgsim_test_search_dedup")
if not CLI:
    print("IMGSIM_CLI not set")
    sys.exit(77)
os.makedirs(WORK, exist_ok=True)
failures = []


def make_store(d, X):
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "features.npy"), X)
    with open(os.path.join(d, "manifest.tsv"), "w") as f:
        f.write("row\tpath\tlabel\tstatus\terror\n")
        for i in range(X.shape[0]):
            f.write("%d\timg/%05d.jpg\tc%d\tok\t\n" % (i, i, i % 3))
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"dim": int(X.shape[1]), "rows": int(X.shape[0]),
                   "dtype": "float16" if X.dtype == np.float16 else "float32"}, f)


def check(name, X, thr, threads=2, cli=None):
    d = os.path.join(WORK, name)
    make_store(d, X)
    out = os.path.join(WORK, name + ".json")
    # --metric=dot: the raw inner product numpy computes below (some rows here are not unit length)
    r = subprocess.run([cli or CLI, "dedup", d, "--threshold=%r" % thr, "--out=" + out, "--threads=%d" % threads,
                        "--metric=dot"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        failures.append("%s: exit %d: %s" % (name, r.returncode, r.stderr.strip()))
        return
    got = json.load(open(out))
    X64 = X.astype(np.float64)
    S = X64 @ X64.T
    t = float(np.float32(thr))  # the threshold as the library sees it
    iu, ju = np.nonzero(np.triu(S >= t, k=1))
    want = {}
    for i, j in zip(iu, ju):
        want.setdefault("img/%05d.jpg" % i, []).append(("img/%05d.jpg" % j, S[i, j]))
    if set(got) != set(want):
        failures.append("%s: keys differ: extra %s missing %s" % (name, sorted(set(got) - set(want))[:5],
                                                                 sorted(set(want) - set(got))[:5]))
        return
    npairs = 0
    for k, lst in got.items():
        w = dict(want[k])
        if sorted(p for p, _ in lst) != sorted(w):
            failures.append("%s: %s: pairs %s, want %s" % (name, k, sorted(p for p, _ in lst)[:5], sorted(w)[:5]))
            return
        scores = [s for _, s in lst]
        if scores != sorted(scores, reverse=True):
            failures.append("%s: %s: not sorted by score descending" % (name, k))
            return
        for p, s in lst:
            if abs(s - w[p]) > 1e-6 * abs(w[p]) + 1e-30:
                failures.append("%s: %s-%s score %r, float64 %r" % (name, k, p, s, w[p]))
                return
        npairs += len(lst)
    if str(npairs) not in r.stderr:
        failures.append("%s: summary does not give the pair count %d: %r" % (name, npairs, r.stderr))
        return
    print("ok  %-22s n=%d dim=%d %s threshold=%g pairs=%d" % (name, X.shape[0], X.shape[1], X.dtype, thr, npairs))
    return npairs


rng = np.random.default_rng(7)

# normalised features with planted near-duplicates (small noise) spread across the 512-row tiles
X = rng.standard_normal((1300, 32))
for a in rng.choice(1300, 60, replace=False):
    b = rng.integers(0, 1300)
    X[b] = X[a] + rng.standard_normal(32) * 0.05
X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
if not check("near_dups_f32", X, 0.95):
    failures.append("near_dups_f32: expected some pairs")
check("near_dups_f16", X.astype(np.float16), 0.95)
check("near_dups_1thread", X, 0.9, threads=1)
# dim >= 64: bf16 tile products where the CPU has them (auto), and float32 forced
Y = rng.standard_normal((1100, 96))
for a in rng.choice(1100, 50, replace=False):
    Y[rng.integers(0, 1100)] = Y[a] + rng.standard_normal(96) * 0.04
Y = (Y / np.linalg.norm(Y, axis=1, keepdims=True)).astype(np.float32)
check("near_dups_dim96", Y, 0.95)
check("near_dups_dim96_f16", Y.astype(np.float16), 0.9)
os.environ["IMGSIM_SEARCH_SCREEN"] = "f32"
check("near_dups_dim96_f32", Y, 0.95)
del os.environ["IMGSIM_SEARCH_SCREEN"]
# exact duplicates and exact-threshold hits: quantised rows, scores are multiples of 1/64
Q = (rng.integers(-2, 3, (700, 4)) / 8).astype(np.float32)
check("quantised_exact_thr", Q, 0.125)
n = check("no_pairs", X, 1.5)
if n:
    failures.append("no_pairs: found pairs above 1.5")

# the sanitizer build (JSON writer, pair collection)
if ASAN and os.path.exists(ASAN):
    check("asan_near_dups", X[:700], 0.9, cli=ASAN)
    check("asan_quantised", Q[:300], 0.125, cli=ASAN)

# bad store, bad option
r = subprocess.run([CLI, "dedup", os.path.join(WORK, "nonexistent")], capture_output=True, text=True)
if r.returncode != 1 or "nonexistent" not in r.stderr:
    failures.append("missing store: exit %d, %r" % (r.returncode, r.stderr))
r = subprocess.run([CLI, "dedup", os.path.join(WORK, "no_pairs"), "--threshold=abc"], capture_output=True, text=True)
if r.returncode != 2:
    failures.append("bad threshold: exit %d" % r.returncode)

for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
