#!/usr/bin/env python3
"""python_overhead.py: what the Python package costs over the C library, on the same machine.

1. Embedding: Engine.embed of N generated JPEGs (`imgsim synth`, sides 256-640) against the CLI's
   `imgsim extract` of the same files with the same model, batch and threads. Reported: the
   extraction alone (the CLI's own seconds_total from meta.json: listing, decoding, inference,
   writing the store; embed's call time: items, decoding, inference, the numpy result) and the
   whole thing (the CLI process's wall time, model load included; Engine() + embed). Runs
   alternate (cli, py, cli, py, ...) and the best of each is kept, so a busy machine affects both
   alike. The rows are checked equal to the CLI's features bit for bit.
2. Search: imgsim.search against faiss.IndexFlatIP (Debian's python3-faiss) from Python on a
   seeded random gallery [n, dim] (rows L2-normalised, float32) with q queries, top-k, both on all
   cores, search calls alone (faiss's add is a copy, timed apart), best of --repeat alternating
   runs. Exactness: both against numpy's float64 top-k (ties by lower row) on --exact-q queries.

Run with a python where imgsim is installed (pip install . into a venv made with
--system-site-packages, so faiss/numpy come from Debian):
    venv/bin/python bench/python_overhead.py --cli build/imgsim
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--cli", required=True, help="the imgsim command to compare with")
ap.add_argument("--images", type=int, default=2000)
ap.add_argument("--arch", default="resnet18", help="random-weight model made by `imgsim model init`")
ap.add_argument("--batch-size", type=int, default=32)
ap.add_argument("--n", type=int, default=200000)
ap.add_argument("--dim", type=int, default=2048)
ap.add_argument("--q", type=int, default=1000)
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--exact-q", type=int, default=50, help="queries checked against the float64 top-k")
ap.add_argument("--repeat", type=int, default=2)
ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "imgsim_bench_python"))
ap.add_argument("--skip-embed", action="store_true")
ap.add_argument("--skip-search", action="store_true")
a = ap.parse_args()
threads = len(os.sched_getaffinity(0))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
os.environ.setdefault("OMP_NUM_THREADS", str(threads))

import numpy as np  # noqa: E402

import imgsim  # noqa: E402

os.makedirs(a.work, exist_ok=True)
print("imgsim %s (%s), %d cores, python %s" % (imgsim.__version__, imgsim.__file__, threads,
                                               sys.version.split()[0]))


def cli(*args):
    t0 = time.perf_counter()
    subprocess.run([a.cli] + [str(x) for x in args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


if not a.skip_embed:
    data = os.path.join(a.work, "data_%d" % a.images)
    per = max(1, a.images // 10)
    if not os.path.isdir(data):
        cli("synth", "--out=" + data, "--classes=10", "--per-class=%d" % per, "--min-side=256", "--max-side=640",
            "--quiet")
    model = os.path.join(a.work, a.arch + ".onnx")
    if not os.path.exists(model):
        cli("model", "init", "--arch=" + a.arch, "--out=" + model)
    store = os.path.join(a.work, "store")
    best = {"cli_x": 1e9, "cli_wall": 1e9, "py_x": 1e9, "py_wall": 1e9}
    paths = None
    for r in range(a.repeat):
        wall = cli("extract", "--model=" + model, "--out=" + store, "--batch-size=%d" % a.batch_size, "--quiet", data)
        meta = json.load(open(os.path.join(store, "meta.json")))
        best["cli_wall"] = min(best["cli_wall"], wall)
        best["cli_x"] = min(best["cli_x"], meta["timings"]["total_s"])
        s = imgsim.Store(store)
        if paths is None:
            paths = [os.path.join(data, p) for p in s.paths]
        t0 = time.perf_counter()
        with imgsim.Engine(model, batch_size=a.batch_size) as eng:
            t1 = time.perf_counter()
            f = eng.embed(paths)
            t2 = time.perf_counter()
        best["py_x"] = min(best["py_x"], t2 - t1)
        best["py_wall"] = min(best["py_wall"], t2 - t0)
        same = np.array_equal(f, np.asarray(s.features))
        print("run %d: cli extract %.2f s (process %.2f s), py embed %.2f s (with Engine() %.2f s), equal: %s" %
              (r + 1, meta["timings"]["total_s"], wall,
               t2 - t1, t2 - t0, same))
    n = len(paths)
    print("\nembed of %d images (%s, batch %d), best of %d:" % (n, a.arch, a.batch_size, a.repeat))
    print("  extraction: CLI %.2f s (%.1f img/s), Python %.2f s (%.1f img/s): overhead %+.1f%%" % (
        best["cli_x"], n / best["cli_x"], best["py_x"], n / best["py_x"], 100 * (best["py_x"] / best["cli_x"] - 1)))
    print("  whole:      CLI process %.2f s, Engine() + embed %.2f s: overhead %+.1f%%" % (
        best["cli_wall"], best["py_wall"], 100 * (best["py_wall"] / best["cli_wall"] - 1)))

if not a.skip_search:
    import faiss

    faiss.omp_set_num_threads(threads)
    rng = np.random.default_rng(42)
    G = rng.standard_normal((a.n, a.dim), dtype=np.float32)
    G /= np.linalg.norm(G, axis=1, keepdims=True)
    Q = rng.standard_normal((a.q, a.dim), dtype=np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(a.dim)
    index.add(G)
    t_add = time.perf_counter() - t0
    tf, ti = 1e9, 1e9
    for r in range(a.repeat):
        t0 = time.perf_counter()
        fs, fi = index.search(Q, a.k)
        tf = min(tf, time.perf_counter() - t0)
        t0 = time.perf_counter()
        s, i = imgsim.search(G, Q, k=a.k)
        ti = min(ti, time.perf_counter() - t0)
        print("run %d: faiss %.2f s, imgsim %.2f s" % (r + 1, tf, ti))
    e = min(a.exact_q, a.q)
    S = Q[:e].astype(np.float64) @ G.astype(np.float64).T
    ref = np.array([np.lexsort((np.arange(a.n), -row))[:a.k] for row in S])
    exact_imgsim = np.mean(i[:e] == ref)
    exact_faiss = np.mean(fi[:e] == ref)
    agree = np.mean([len(set(x) & set(y)) / a.k for x, y in zip(i, fi)])
    print("\nsearch %d x %d, %d queries, k=%d, %d threads, best of %d:" % (a.n, a.dim, a.q, a.k, threads, a.repeat))
    print("  faiss.IndexFlatIP %.2f s (%.0f q/s; add %.2f s), imgsim.search %.2f s (%.0f q/s): %.2fx" % (
        tf, a.q / tf, t_add, ti, a.q / ti, tf / ti))
    print("  ranks equal to the float64 top-k (%d queries): imgsim %.4f, faiss %.4f; recall imgsim vs faiss %.4f" % (
        e, exact_imgsim, exact_faiss, agree))
