"""imgsim.Store: a feature store folder (features.npy, manifest.tsv, meta.json), memory-mapped."""
import json
import os

import numpy as np

from . import _imgsim

_IO, _FORMAT, _MISMATCH = 3, 4, 7  # IMGSIM_ERR_IO, IMGSIM_ERR_FORMAT, IMGSIM_ERR_MISMATCH


class Store:
    """A feature store, the folder `imgsim extract` and Engine.extract write.

    Store(path) opens it without reading the features: .features is a read-only numpy memmap of
    features.npy ([n, dim], float32 or float16, C order), so a gallery larger than memory costs
    nothing until rows are touched, and search() reads it in place.

    Attributes: features, paths (the manifest path of each row, list of str), labels (list of
    str, "" where none), meta (meta.json as a dict), failed and skipped (lists of (path, reason)
    for inputs without a row), dim, dtype, path (the folder). len(store) is the row count.

    A store without meta.json is incomplete (meta.json is written last) and is refused with
    FormatError, as the CLI refuses it; so are a features.npy and manifest that disagree
    (MismatchError). A missing folder raises FileError.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise _imgsim.error(_IO if not os.path.exists(self.path) else _FORMAT,
                                "%s: not a feature store folder" % self.path)
        meta_p = os.path.join(self.path, "meta.json")
        feat_p = os.path.join(self.path, "features.npy")
        man_p = os.path.join(self.path, "manifest.tsv")
        if not os.path.exists(meta_p):
            raise _imgsim.error(_FORMAT, "%s: incomplete store (no meta.json: the extraction did not finish)" %
                                self.path)
        for p in (feat_p, man_p):
            if not os.path.exists(p):
                raise _imgsim.error(_IO, "%s: missing" % p)
        try:
            with open(meta_p, encoding="utf-8") as f:
                self.meta = json.load(f)
        except ValueError as ex:
            raise _imgsim.error(_FORMAT, "%s: not valid JSON (%s)" % (meta_p, ex)) from None
        try:
            self.features = np.load(feat_p, mmap_mode="r")
        except (ValueError, OSError) as ex:
            raise _imgsim.error(_FORMAT, "%s: not a readable .npy file (%s)" % (feat_p, ex)) from None
        if self.features.ndim != 2 or self.features.dtype not in (np.float32, np.float16):
            raise _imgsim.error(_FORMAT, "%s: expected [n, dim] float32 or float16, got %s %s" %
                                (feat_p, self.features.dtype, self.features.shape))
        n = self.features.shape[0]
        self.paths = [None] * n
        self.labels = [None] * n
        self.failed, self.skipped = [], []
        with open(man_p, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            lines = f.read().split("\n")
        if not lines or lines[0] != "row\tpath\tlabel\tstatus\terror":
            raise _imgsim.error(_FORMAT, '%s:1: expected the header "row<TAB>path<TAB>label<TAB>status<TAB>error"' %
                                man_p)
        for no, line in enumerate(lines[1:], 2):
            if not line:
                continue
            f = line.split("\t")
            if len(f) != 5:
                raise _imgsim.error(_FORMAT, "%s:%d: expected 5 tab-separated columns, found %d" % (man_p, no, len(f)))
            row = int(f[0]) if f[0].lstrip("-").isdigit() else None
            if row == -1:
                (self.skipped if f[3] == "skipped" else self.failed).append((f[1], f[4]))
            elif row is None or not 0 <= row < n or self.paths[row] is not None:
                raise _imgsim.error(_MISMATCH, "%s:%d: row %r does not fit features.npy's %d rows" %
                                    (man_p, no, f[0], n))
            else:
                self.paths[row] = f[1]
                self.labels[row] = f[2]
        if any(p is None for p in self.paths):
            raise _imgsim.error(_MISMATCH, "%s: lists fewer rows than features.npy's %d" % (man_p, n))
        dim = self.meta.get("dim")
        if dim is not None and dim != self.features.shape[1]:
            raise _imgsim.error(_MISMATCH, '%s: "dim" does not match features.npy\'s %d columns' %
                                (meta_p, self.features.shape[1]))
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
