"""imgsim.search and imgsim.dedup: exact inner-product (cosine) top-k and near-duplicate pairs."""
import numpy as np

from . import _imgsim
from ._engine import _bad, _parse_device
from ._store import Store


def _matrix(x, what, metric="cosine"):
    """A C-contiguous 2-D float32/float16 array of a Store or array-like (no copy when it is one).
    A Store whose rows are not unit length (--no-normalize) gives its rows divided by their norms
    (the library's imgsim_store_features_f32) for metric="cosine", as the CLI compares it."""
    if metric not in ("cosine", "dot"):
        raise _bad("metric=%r: expected 'cosine' or 'dot'" % (metric,))
    if isinstance(x, Store):
        if not x.unit_norm and metric == "cosine":
            unit = np.empty((len(x), x.dim), np.float32)
            _imgsim._store_features_f32(x.path, unit, True)
            return unit
        x = x.features
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise _bad("%s must be [n, dim] (got shape %s)" % (what, a.shape))
    if a.dtype not in (np.float32, np.float16):
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def search(gallery, queries, k=5, device="cpu", *, metric="cosine", threads=0, gpu_memory=0):
    """Exact top-k of every query row against the gallery by inner product (cosine for the
    L2-normalised features imgsim makes): returns (scores, indices), numpy [q, k] float32 and
    int64, best first.

    gallery, queries: Stores or arrays [n, dim] / [q, dim] (a 1-D query is one row), float32 or
    float16 (other dtypes are converted to float32; a float16 side is compared in float32 when the
    other is float32, as the CLI does). Stores are read in place from their memory map.

    The results are the CLI's (`imgsim search`, the same library call): scores re-ranked in
    float64, ties broken by the lower gallery row; where the gallery has fewer than k rows the
    remaining indices are -1 with score -inf. device: "cpu" or "cuda[:N]" (cuBLAS tiles with a
    float64 re-rank; gpu_memory caps the gallery's device memory, 0 = none). threads: CPU threads
    (0: all cores). metric: Stores whose rows are not unit length (--no-normalize) are compared
    by cosine as the CLI does ("cosine", default) or by the raw inner product ("dot"); arrays are
    always taken as given. The GIL is released while it runs.
    """
    g = _matrix(gallery, "gallery", metric)
    q = _matrix(queries, "queries", metric)
    if g.dtype != q.dtype:
        g, q = g.astype(np.float32), q.astype(np.float32)
    if g.shape[1] != q.shape[1]:
        raise _bad("gallery has %d-d rows and queries %d-d" % (g.shape[1], q.shape[1]))
    k = int(k)
    if k < 1:
        raise _bad("k=%d: expected k >= 1" % k)
    dev, idx_dev = _parse_device(device)
    idx = np.empty((q.shape[0], k), np.int64)
    score = np.empty((q.shape[0], k), np.float32)
    _imgsim._search(idx, score, g, q, k, threads=int(threads), device=dev, device_index=idx_dev,
                    gpu_memory=int(gpu_memory))
    return score, idx



def dedup(x, threshold=0.95, device="cpu", *, metric="cosine", threads=0, gpu_memory=0):
    """Near-duplicate pairs: every pair of rows i < j whose inner product (cosine for normalised
    rows) is >= threshold, exactly (the library's imgsim_dedup: blockwise, no n x n matrix,
    candidates re-scored in float64; device "cpu" or "cuda[:N]").

    x: a Store or an array [n, dim]. Returns a dict in row order holding only rows with pairs, each
    pair once under its lower row, each list sorted by score descending then row ascending: for a
    Store {path_i: [(path_j, score), ...]} (what `imgsim dedup` writes as JSON), for an array
    {i: [(j, score), ...]}. Scores are the float64 inner product rounded to float32. metric as in
    search (a --no-normalize Store is compared by cosine unless metric="dot")."""
    a = _matrix(x, "x", metric)
    dev, idx = _parse_device(device)
    pairs = _imgsim._dedup(a, float(threshold), threads=int(threads), device=dev, device_index=idx,
                           gpu_memory=int(gpu_memory))
    pairs.sort(key=lambda p: (p[0], -p[2], p[1]))
    out = {}
    name = (lambda r: x.paths[r]) if isinstance(x, Store) else (lambda r: r)
    for i, j, sc in pairs:
        out.setdefault(name(i), []).append((name(j), sc))
    return out
