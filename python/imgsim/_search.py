"""imgsim.search and imgsim.dedup: exact inner-product (cosine) top-k and near-duplicate pairs."""
import numpy as np

from . import _imgsim
from ._engine import _bad, _parse_device
from ._store import Store


def _matrix(x, what):
    """A C-contiguous 2-D float32/float16 array of a Store or array-like (no copy when it is one)."""
    if isinstance(x, Store):
        x = x.features
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise _bad("%s must be [n, dim] (got shape %s)" % (what, a.shape))
    if a.dtype not in (np.float32, np.float16):
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def search(gallery, queries, k=5, device="cpu", *, threads=0, gpu_memory=0):
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
    (0: all cores). The GIL is released while it runs.
    """
    g = _matrix(gallery, "gallery")
    q = _matrix(queries, "queries")
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


def dedup(store, threshold=0.95, device="cpu"):
    raise NotImplementedError
