#!/usr/bin/env python3
"""test_search_topk.py: `imgsim topk` (the exact CPU top-k behind imgsim search) against numpy's
float64 top-k, ties broken by lower gallery row (np.lexsort((row, -score))).

Covers random data (normalised and not), float32 and float16 inputs (the reference uses the
float16 values upcast to float64), a gallery that is not a multiple of the tile, duplicated
gallery rows and exact ties (quantised values, so the float64 reference is exact), k > n
(idx -1, score -inf), n = 1, n = 0, q = 0, q = 1, one and two threads, and bad inputs.
With IMGSIM_CLI_ASAN set, a few cases also run under the sanitizer build."""
import os
import subprocess
import sys

import numpy as np

CLI = os.environ.get("IMGSIM_CLI")
ASAN = os.environ.get("IMGSIM_CLI_ASAN")
WORK = os.environ.get("IMGSIM_TEST_DIR", "/tmp/imgsim_test_search_topk")
if not CLI:
    print("IMGSIM_CLI not set")
    sys.exit(77)
os.makedirs(WORK, exist_ok=True)
failures = []


def reference(G, Q, k):
    """numpy float64 top-k: indices [q, k] (-1 past n) and scores (-inf past n)."""
    G64, Q64 = G.astype(np.float64), Q.astype(np.float64)
    n, q = G.shape[0], Q.shape[0]
    idx = np.full((q, k), -1, dtype=np.int64)
    sc = np.full((q, k), -np.inf)
    if n == 0 or q == 0:
        return idx, sc
    S = Q64 @ G64.T
    rows = np.arange(n)
    for i in range(q):
        order = np.lexsort((rows, -S[i]))[:k]
        idx[i, :len(order)] = order
        sc[i, :len(order)] = S[i, order]
    return idx, sc


def run_topk(name, G, Q, k, threads=2, cli=CLI, expect_rc=0, screen=None):
    g, q = os.path.join(WORK, name + "_g.npy"), os.path.join(WORK, name + "_q.npy")
    oi, osc = os.path.join(WORK, name + "_i.npy"), os.path.join(WORK, name + "_s.npy")
    np.save(g, G)
    np.save(q, Q)
    r = subprocess.run([cli, "topk", "--gallery=" + g, "--query=" + q, "--k=%d" % k, "--threads=%d" % threads,
                        "--out-idx=" + oi, "--out-score=" + osc], capture_output=True, text=True,
                       env=dict(os.environ, IMGSIM_SEARCH_SCREEN=screen) if screen else None)
    if r.returncode != expect_rc:
        failures.append("%s: exit %d (expected %d): %s" % (name, r.returncode, expect_rc, r.stderr.strip()))
        return None
    if expect_rc != 0:
        return r
    return np.load(oi), np.load(osc)


def check(name, G, Q, k, threads=2, cli=CLI, screen=None):
    got = run_topk(name, G, Q, k, threads, cli, screen=screen)
    if got is None:
        return
    I, S = got
    ri, rs = reference(G, Q, k)
    if I.dtype != np.int64 or I.shape != (Q.shape[0], k) or S.dtype != np.float32 or S.shape != (Q.shape[0], k):
        failures.append("%s: outputs %s %s / %s %s" % (name, I.dtype, I.shape, S.dtype, S.shape))
        return
    if not np.array_equal(I, ri):
        bad = np.argwhere(I != ri)
        r0 = bad[0][0]
        failures.append("%s: %d index mismatches; query %d: got %s want %s (ref scores %s)"
                        % (name, len(bad), r0, I[r0].tolist(), ri[r0].tolist(), rs[r0].tolist()))
        return
    fin = np.isfinite(rs)
    if not np.array_equal(np.isfinite(S), fin) or (S[~fin] != -np.inf).any():
        failures.append("%s: -inf padding differs" % name)
        return
    err = np.abs(S[fin].astype(np.float64) - rs[fin])
    tol = 1e-6 * np.abs(rs[fin]) + 1e-37
    if (err > tol).any():
        failures.append("%s: score error %.3g over 1e-6 relative" % (name, float((err / np.maximum(np.abs(rs[fin]), 1e-37)).max())))
        return
    print("ok  %-28s n=%d q=%d dim=%d k=%d %s threads=%d%s" % (name, G.shape[0], Q.shape[0], G.shape[1], k, G.dtype,
                                                            threads, " screen=" + screen if screen else ""))


def normalised(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(x.dtype)


rng = np.random.default_rng(12345)

# random, unnormalised, n not a multiple of the 512-row tile
G = rng.standard_normal((3001, 64)).astype(np.float32)
Q = rng.standard_normal((300, 64)).astype(np.float32)
check("random_f32", G, Q, 7)
check("random_f32_1thread", G, Q, 7, threads=1)
check("random_f32_screen_f32", G, Q, 7, screen="f32")

# normalised (cosine), k = 10
G = normalised(rng.standard_normal((1500, 96)).astype(np.float32))
Q = normalised(rng.standard_normal((37, 96)).astype(np.float32))
check("normalised_f32", G, Q, 10)
# the bf16 screening pass (forced; it is float32 again where oneDNN has no native bf16)
check("normalised_f32_bf16", G, Q, 10, screen="bf16")
check("random_f32_bf16", rng.standard_normal((2000, 80)).astype(np.float32),
      rng.standard_normal((70, 80)).astype(np.float32), 5, screen="bf16")

# non-negative rows (like CNN features after ReLU)
G = normalised(np.abs(rng.standard_normal((3000, 128))).astype(np.float32))
Q = normalised(np.abs(rng.standard_normal((300, 128))).astype(np.float32))
check("nonnegative_auto", G, Q, 10)
# tight clusters (64 rows within ~0.001 of each of 40 centres) and queries near the centres: the
# top scores are denser than the bf16 bound, so the bf16 probe gives up and float32 takes over
C = normalised(rng.standard_normal((40, 128)).astype(np.float32))
G = normalised((np.repeat(C, 64, axis=0) + 0.003 * rng.standard_normal((2560, 128))).astype(np.float32))
G = G[rng.permutation(2560)]
Q = normalised((C[rng.integers(0, 40, 300)] + 0.003 * rng.standard_normal((300, 128))).astype(np.float32))
check("clusters_auto", G, Q, 10)

# float16 stores: the reference is the float16 values upcast
G = normalised(rng.standard_normal((1200, 48)).astype(np.float32)).astype(np.float16)
Q = normalised(rng.standard_normal((50, 48)).astype(np.float32)).astype(np.float16)
check("normalised_f16", G, Q, 5)
check("normalised_f16_bf16", G, Q, 5, screen="bf16")
check("unnormalised_f16", (rng.standard_normal((700, 40)) * 3).astype(np.float16),
      (rng.standard_normal((20, 40)) * 3).astype(np.float16), 9)

# duplicated gallery rows (40 copies of a few rows, scattered) and queries equal to them: ties
# beyond k + margin; values are multiples of 2^-10 so the float64 reference is exact
base = np.round(rng.uniform(-1, 1, (900, 64)) * 1024) / 1024
for src in (3, 500, 777):
    pos = rng.choice(900, 40, replace=False)
    base[pos] = base[src]
G = base.astype(np.float32)
Q = np.concatenate([G[[3, 500, 777]], np.round(rng.uniform(-1, 1, (5, 64)) * 1024) / 1024]).astype(np.float32)
check("duplicates_f32", G, Q, 10)
check("duplicates_f16", G.astype(np.float16), Q.astype(np.float16), 12)
check("duplicates_1thread", G, Q, 50, threads=1)
check("duplicates_bf16", G, Q, 10, screen="bf16")
check("duplicates_f16_bf16", G.astype(np.float16), Q.astype(np.float16), 4, screen="bf16")

# exact ties everywhere: few distinct values, short rows
G = (rng.integers(-2, 3, (2000, 16)) / 4).astype(np.float32)
Q = (rng.integers(-2, 3, (64, 16)) / 4).astype(np.float32)
check("quantised_ties", G, Q, 20)
check("quantised_ties_f16", G.astype(np.float16), Q.astype(np.float16), 3)

# sizes: k > n, n = 1, q = 1, n = 0, q = 0
G = rng.standard_normal((5, 8)).astype(np.float32)
Q = rng.standard_normal((4, 8)).astype(np.float32)
check("k_gt_n", G, Q, 8)
check("n_1", G[:1], Q, 3)
check("n_1_q_1", G[:1], Q[:1], 1)
G = normalised(rng.standard_normal((5000, 32)).astype(np.float32))
check("q_1_large_n", G, normalised(rng.standard_normal((1, 32)).astype(np.float32)), 10)
check("q_0", G, np.zeros((0, 32), np.float32), 4)
check("n_0", np.zeros((0, 32), np.float32), Q[:, :8].repeat(4, axis=1), 3)

# sanitizer build on the paths that differ (f16 conversion, fallback, padding)
if ASAN and os.path.exists(ASAN):
    G = base.astype(np.float32)
    Q = G[[3, 500, 10]]
    check("asan_duplicates", G, Q, 10, cli=ASAN)
    check("asan_f16", G.astype(np.float16), Q.astype(np.float16), 7, cli=ASAN)
    check("asan_k_gt_n", G[:6], Q, 9, cli=ASAN)
    check("asan_q0", G, np.zeros((0, 64), np.float32), 2, cli=ASAN)

# bad inputs: mismatched dtype or width, k = 0
r = run_topk("bad_dtype", G[:10].astype(np.float32), G[:2].astype(np.float16), 3, expect_rc=1)
if r is not None and "element type" not in r.stderr:
    failures.append("bad_dtype: message %r" % r.stderr)
r = run_topk("bad_dim", np.zeros((10, 8), np.float32), np.zeros((2, 9), np.float32), 3, expect_rc=1)
if r is not None and "columns" not in r.stderr:
    failures.append("bad_dim: message %r" % r.stderr)
run_topk("bad_k", np.zeros((10, 8), np.float32), np.zeros((2, 8), np.float32), 0, expect_rc=2)

for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
