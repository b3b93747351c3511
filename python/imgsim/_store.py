"""imgsim.Store: a feature store folder (features.npy, manifest.tsv, meta.json, or a sharded
store's features-K.npy, manifest-K.tsv), memory-mapped."""
import json
import os

import numpy as np

from . import _imgsim

_FORMAT, _MISMATCH = 4, 7  # IMGSIM_ERR_FORMAT, IMGSIM_ERR_MISMATCH


class Store:
    """A feature store, the folder `imgsim extract` and Engine.extract write.

    Store(path) opens it without reading the features: .features is a read-only numpy memmap of
    features.npy ([n, dim], float32 or float16, C order), so a gallery larger than memory costs
    nothing until rows are touched, and search() reads it in place.

    A sharded store (extract --layout=sharded: features-00000.npy, ... listed in meta.json's
    "shards") has .shards, one read-only memmap per features-K.npy in order, and .features their
    concatenation (an in-memory copy, read-only; use .shards to stay out of memory). A single-file
    store's .shards is [features].

    Attributes: features, shards, paths (the manifest path of each row, list of str), labels (list of
    str, "" where none), meta (meta.json as a dict), failed and skipped (lists of (path, reason)
    for inputs without a row), unit_norm (rows L2-normalised), dim, dtype, path (the folder).
    len(store) is the row count.

    The store is checked by the library (imgsim_store_open), as the CLI checks it: a store without
    meta.json is incomplete (meta.json is written last) and is refused with FileError saying so;
    a features.npy, manifest and meta.json that disagree raise FormatError or MismatchError
    naming the file (and line). A missing folder raises FileError.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        info = _imgsim._store_open(self.path)  # the library's checks: complete, consistent
        self.paths, self.labels = info["paths"], info["labels"]
        self.unit_norm = info["unit_norm"]
        with open(os.path.join(self.path, "meta.json"), encoding="utf-8") as f:
            self.meta = json.load(f)
        sharded = self.meta.get("layout") == "sharded"
        names = [(sh["features"], sh["manifest"]) for sh in self.meta["shards"]] if sharded else \
            [("features.npy", "manifest.tsv")]
        self.shards = []
        for feat_name, _ in names:
            feat_p = os.path.join(self.path, feat_name)
            try:
                self.shards.append(np.load(feat_p, mmap_mode="r"))
            except (ValueError, OSError) as ex:  # changed since the library read it
                raise _imgsim.error(_FORMAT, "%s: not a readable .npy file (%s)" % (feat_p, ex)) from None
        if len(self.shards) == 1:
            self.features = self.shards[0]
        else:
            self.features = np.concatenate(self.shards)
            self.features.flags.writeable = False
        if self.features.shape != (info["n"], info["dim"]):
            raise _imgsim.error(_MISMATCH, "%s changed while it was opened" % os.path.join(self.path, names[0][0]))
        self.failed, self.skipped = [], []
        for _, man_name in names:
            with open(os.path.join(self.path, man_name), encoding="utf-8", errors="surrogateescape",
                      newline="\n") as f:
                for line in f.read().split("\n")[1:]:
                    col = line.split("\t")
                    if len(col) == 5 and col[0] == "-1":
                        (self.skipped if col[3] == "skipped" else self.failed).append((col[1], col[4]))
        self.stats = None

    @property
    def dim(self):
        """Feature dimension."""
        return self.features.shape[1]

    @property
    def dtype(self):
        """numpy dtype of the features (float32 or float16)."""
        return self.features.dtype

    def __len__(self):
        return self.features.shape[0]

    def __repr__(self):
        return "<imgsim.Store %s: %d x %d %s, %d failed>" % (self.path, len(self), self.dim, self.dtype,
                                                             len(self.failed))
