#!/usr/bin/env python3
"""search_vs_faiss.py: exact top-k search, imgsim (`imgsim topk`) against FAISS IndexFlatIP on the
same data, the same machine and the same number of threads, in one run.

Data: a seeded random gallery [n, dim] and queries [q, dim], rows L2-normalised, float32.
Reports queries/s of both (the search call alone: imgsim's own timer around imgsim_search,
FAISS's index.search; neither includes loading), their ratio, recall@k of imgsim against FAISS,
and both against the exact float64 top-k (numpy, ties by lower row).

The runs alternate (faiss, imgsim, faiss, imgsim, ...) and the best of each is kept, so a busy
machine affects both alike; CPU seconds (all threads) are reported too, since they depend far
less on other load than wall time. FAISS's BLAS threads are set with OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS before numpy/faiss load, and faiss.omp_set_num_threads."""
import argparse
import os
import re
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--cli", required=True)
ap.add_argument("--n", type=int, default=200000)
ap.add_argument("--dim", type=int, default=2048)
ap.add_argument("--q", type=int, default=1000)
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--work", default="/tmp/imgsim_bench_search")
ap.add_argument("--repeat", type=int, default=2, help="runs of each; the best is reported")
ap.add_argument("--no-exact", action="store_true", help="skip the float64 reference")
ap.add_argument("--data", choices=("gauss", "relu"), default="gauss",
                help="gauss: N(0,1) rows; relu: |N(0,1)| rows, non-negative like CNN features after ReLU")
a = ap.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(a.threads)
os.environ["OMP_NUM_THREADS"] = str(a.threads)

import faiss  # noqa: E402  (after the thread settings)
import numpy as np  # noqa: E402

os.makedirs(a.work, exist_ok=True)
gpath = os.path.join(a.work, "g_%s_%d_%d_%d.npy" % (a.data, a.n, a.dim, a.seed))
qpath = os.path.join(a.work, "q_%s_%d_%d_%d.npy" % (a.data, a.q, a.dim, a.seed))


def make(path, rows, seed):
    if os.path.exists(path):
        return np.load(path, mmap_mode="r")
    rng = np.random.default_rng(seed)
    X = np.empty((rows, a.dim), np.float32)
    for s in range(0, rows, 16384):
        blk = rng.standard_normal((min(16384, rows - s), a.dim), dtype=np.float32)
        if a.data == "relu":
            blk = np.abs(blk)
        X[s:s + len(blk)] = blk / np.linalg.norm(blk, axis=1, keepdims=True)
    np.save(path + ".tmp.npy", X)
    os.replace(path + ".tmp.npy", path)
    return X


t0 = time.time()
G = np.ascontiguousarray(make(gpath, a.n, a.seed))
Q = np.ascontiguousarray(make(qpath, a.q, a.seed + 1))
print("data: gallery %s, queries %s, float32, %s rows, normalised (%.1f s to make/load)"
      % (G.shape, Q.shape, a.data, time.time() - t0))


def blas_of_this_process():
    libs = set()
    for line in open("/proc/self/maps"):
        m = re.search(r"(/\S*(blas|lapack|mkl)\S*\.so\S*)", line)
        if m:
            libs.add(os.path.realpath(m.group(1)))
    return sorted(libs)


# ---- FAISS and imgsim, alternating -------------------------------------------------------
faiss.omp_set_num_threads(a.threads)
index = faiss.IndexFlatIP(a.dim)
index.add(G)
oi, osc = os.path.join(a.work, "imgsim_i.npy"), os.path.join(a.work, "imgsim_s.npy")
fs, fc, ims, imc = [], [], [], []
for _ in range(a.repeat):
    c, t = time.process_time(), time.perf_counter()
    FD, FI = index.search(Q, a.k)
    fs.append(time.perf_counter() - t)
    fc.append(time.process_time() - c)
    r = subprocess.run([a.cli, "topk", "--gallery=" + gpath, "--query=" + qpath, "--k=%d" % a.k,
                        "--threads=%d" % a.threads, "--out-idx=" + oi, "--out-score=" + osc, "--time"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("imgsim topk failed: " + r.stderr)
    ims.append(float(re.search(r"search_seconds (\S+)", r.stdout).group(1)))
    imc.append(float(re.search(r"search_cpu_seconds (\S+)", r.stdout).group(1)))
faiss_s, imgsim_s = min(fs), min(ims)
print("faiss %s IndexFlatIP, %d threads, BLAS: %s" % (faiss.__version__, a.threads, ", ".join(blas_of_this_process()) or "?"))
del index
II = np.load(oi)

# ---- exact float64 reference (ties by lower row) -----------------------------------------
t = time.time()
Q64 = Q.astype(np.float64)
best_s = np.full((a.q, 0), -np.inf)
best_i = np.zeros((a.q, 0), np.int64)
for s in range(0, 0 if a.no_exact else a.n, 20000):
    S = Q64 @ G[s:s + 20000].astype(np.float64).T
    kk = min(a.k, S.shape[1])
    part = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
    best_s = np.concatenate([best_s, np.take_along_axis(S, part, 1)], 1)
    best_i = np.concatenate([best_i, part + s], 1)
    o = np.array([np.lexsort((best_i[r], -best_s[r]))[:a.k] for r in range(a.q)])
    best_s = np.take_along_axis(best_s, o, 1)
    best_i = np.take_along_axis(best_i, o, 1)
EI = best_i
ref_s = time.time() - t


def recall(A, B):
    return float(np.mean([len(set(A[i]) & set(B[i])) / a.k for i in range(a.q)]))


flop = 2.0 * a.n * a.dim * a.q
print("\n%-26s %10s %12s %10s %12s %14s" % ("", "seconds", "queries/s", "GFLOP/s", "CPU-seconds", "GFLOP/CPU-s"))
for name, w, c in (("faiss IndexFlatIP", faiss_s, min(fc)), ("imgsim topk (cpu)", imgsim_s, min(imc))):
    print("%-26s %10.3f %12.1f %10.1f %12.3f %14.1f" % (name, w, a.q / w, flop / w / 1e9, c, flop / c / 1e9))
print("speed-up imgsim / faiss: %.2fx wall, %.2fx CPU time" % (faiss_s / imgsim_s, min(fc) / min(imc)))
print("all runs (wall s): faiss %s, imgsim %s" % (["%.3f" % x for x in fs], ["%.3f" % x for x in ims]))
print("all runs (CPU s):  faiss %s, imgsim %s" % (["%.3f" % x for x in fc], ["%.3f" % x for x in imc]))
print("recall@%d imgsim vs faiss: %.4f" % (a.k, recall(II, FI)))
if not a.no_exact:
    print("recall@%d imgsim vs exact float64: %.4f (identical lists: %s)" % (a.k, recall(II, EI), bool((II == EI).all())))
    print("recall@%d faiss  vs exact float64: %.4f (identical lists: %s)" % (a.k, recall(FI, EI), bool((FI == EI).all())))
    print("(float64 reference took %.1f s)" % ref_s)
