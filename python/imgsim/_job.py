"""imgsim.split and imgsim.run: the stratified split and the whole job of `imgsim run`."""
import hashlib
import json
import os
import shutil
import tempfile
import time

from . import _imgsim
from ._engine import Engine, _bad, calibrate
from ._search import search
from ._store import Store


def _read_list(tsv):
    """(path, label) pairs of a TSV list written by the library, paths made usable from here."""
    base = os.path.dirname(tsv)
    out = []
    with open(tsv, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        lines = f.read().split("\n")
    for line in lines[1:]:
        if line:
            p, _, label = line.partition("\t")
            out.append((os.path.normpath(os.path.join(base, p)), label))
    return out


def split(dataset, test_size=0.2, seed=42, out_dir=None):
    """The stratified split of `imgsim split`: returns (train, test), lists of (path, label).

    dataset: an ImageFolder-layout folder (label = first-level folder), a TSV list
    "path<TAB>label" or one image. Per class, round(test_size x count) images (half to even, like
    Python's round) go to test; a class keeps at least one training image. The split depends on
    seed and the set of paths, not on listing order. With out_dir, train.tsv and test.tsv are
    written there (as `imgsim split --out-dir`); the returned paths are usable from the current
    folder either way. Raises FileError for a missing dataset, InvalidArgumentError for an empty
    one or a test_size outside (0, 1)."""
    tmp = None
    if out_dir is None:
        tmp = out_dir = tempfile.mkdtemp(prefix="imgsim-split-")
    try:
        _imgsim._split(os.fspath(dataset), float(test_size), int(seed), os.fspath(out_dir))
        return (_read_list(os.path.join(out_dir, "train.tsv")), _read_list(os.path.join(out_dir, "test.tsv")))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _knn_vote(labels):
    """Majority label of the ranked labels; a tie goes to the label whose best match ranks first."""
    best, best_n = None, 0
    for r, lab in enumerate(labels):
        if lab in labels[:r]:
            continue
        n = labels[r:].count(lab)
        if n > best_n:
            best, best_n = lab, n
    return best


def _clean(s):
    return s.replace("\t", " ").replace("\n", " ")


def _search_job(g, q, k, device, threads, out_tsv):
    """results.tsv and the metrics of `imgsim search` for Stores g (gallery) and q (queries)."""
    t0 = time.perf_counter()
    scores, idx = search(g, q, k=k, device=device, threads=threads)
    secs = time.perf_counter() - t0
    gallery_labelled = any(g.labels)
    classes = {}
    labelled = top1 = topk = knn = 0
    tmp = out_tsv + ".tmp.%d" % os.getpid()
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        f.write("query_path\tquery_label\trank\tmatch_path\tmatch_label\tscore\n")
        for i in range(len(q)):
            ranked = [int(j) for j in idx[i] if j >= 0]
            for r, j in enumerate(ranked):
                f.write("%s\t%s\t%d\t%s\t%s\t%.6f\n" % (_clean(q.paths[i]), _clean(q.labels[i]), r + 1,
                                                       _clean(g.paths[j]), _clean(g.labels[j]), scores[i, r]))
            ql = q.labels[i]
            if not ql or not gallery_labelled:
                continue
            labs = [g.labels[j] for j in ranked]
            h1 = bool(labs) and labs[0] == ql
            hk = ql in labs
            hv = _knn_vote(labs) == ql
            c = classes.setdefault(ql, [0, 0, 0, 0])
            c[0] += 1
            c[1] += h1
            c[2] += hk
            c[3] += hv
            labelled += 1
            top1 += h1
            topk += hk
            knn += hv
    os.replace(tmp, out_tsv)
    m = {"k": k, "gallery": len(g), "queries": len(q), "labelled_queries": labelled, "search_seconds": secs,
         "queries_per_s": len(q) / secs if secs > 0 else 0}
    if labelled:
        m["accuracy"] = {"top1": top1 / labelled, "topk": topk / labelled, "knn_vote": knn / labelled}
        m["per_class"] = {lab: {"queries": c[0], "top1": c[1] / c[0], "topk": c[2] / c[0], "knn_vote": c[3] / c[0]}
                          for lab, c in sorted(classes.items())}
    return m


def _stage(seconds, images, reused=False):
    return {"seconds": seconds, "images": images, "images_per_s": images / seconds if seconds > 0 else 0,
            "reused": reused}


def run(dataset, model, out, *, test_size=0.2, seed=42, k=5, layer=None, device="cpu", precision=None,
        batch_size=32, workers=0, threads=0, dtype="float32", engine_cache=None, progress=None, calib=None,
        calib_images=512, resize=None, crop=None, mean=None, std=None, interpolation=None):
    """The whole job of `imgsim run`, returning its summary (summary.json) as a dict.

    Splits dataset (see split) into out/train.tsv and out/test.tsv, extracts the gallery (train)
    into out/gallery and the queries (test) into out/queries with one engine, searches the exact
    top-k of every query, writes out/results.tsv (query_path, query_label, rank, match_path,
    match_label, score) and out/summary.json, and returns the summary: dataset, model,
    model_sha256, layer, dim, device, split (test_size, seed, train, test, skipped), counts
    (gallery, gallery_failed, queries, queries_failed), k, accuracy (top1, topk, knn_vote, where
    both sides are labelled), per_class, stages (seconds, images, images_per_s per stage) and
    total_seconds ("engine build" includes the model's import, "model load" is 0). The same keys
    and the same accuracies as the CLI's; the stores are always extracted afresh (the CLI's reuse
    of complete stores is `imgsim run` without --force).
    precision="int8": with calib=None, calibrates on calib_images training images (calibrate of
    out/train.tsv, the CLI's sample and file) into out/int8.calib first (stage "calibration",
    always made afresh), else uses the calibration file calib; the summary then has
    "calibration": {file, sha256, source ("calibrated" or "given")}. A QDQ model (model_info's
    "quantized") runs with its own scales: no calibration, "calibration": {file None, sha256 "",
    source "model"}; a calib given with one raises InvalidArgumentError, as Engine does.
    progress as in Engine.extract, for each of the two extractions. The other options (the
    preprocessing: resize, crop, mean, std, interpolation, for both stores)
    as in Engine and Engine.extract."""
    t_all = time.perf_counter()
    k = int(k)
    if k < 1:
        raise _bad("k=%d: expected k >= 1" % k)
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    info = _imgsim._split(os.fspath(dataset), float(test_size), int(seed), out)
    t_split = time.perf_counter() - t0
    int8 = precision is not None and str(precision).lower() == "int8"
    calib_stage, calib_info = _stage(0.0, 0), None
    qdq = int8 and calib is None and _imgsim.model_info(os.fspath(model), layer)["quantized"]
    if qdq:  # a QDQ model: its own scales, nothing to calibrate (a calib given with one: Engine refuses it)
        calib_info = {"file": None, "sha256": "", "source": "model"}
    elif int8:
        if calib is None:
            t0 = time.perf_counter()
            calib = os.path.join(out, "int8.calib")
            ci = calibrate(model, os.path.join(out, "train.tsv"), calib, images=calib_images, layer=layer,
                           batch_size=batch_size if isinstance(batch_size, int) else 32, threads=threads)
            calib_stage = _stage(time.perf_counter() - t0, ci["images"])
            source = "calibrated"
        else:
            source = "given"
        with open(calib, "rb") as f:
            calib_info = {"file": os.fspath(calib), "sha256": hashlib.sha256(f.read()).hexdigest(), "source": source}
    t0 = time.perf_counter()
    with Engine(model, device=device, precision=precision, batch_size=batch_size, layer=layer,
                engine_cache=engine_cache, threads=threads, calib=calib if int8 else None, resize=resize,
                crop=crop, mean=mean, std=std, interpolation=interpolation) as eng:
        t_engine = time.perf_counter() - t0  # the model's import and the engine's planning
        mi = eng.info()
        stages = {}
        stores = {}
        for name, tsv, sub in (("gallery (train)", "train.tsv", "gallery"), ("queries (test)", "test.tsv", "queries")):
            s = eng.extract(os.path.join(out, tsv), os.path.join(out, sub), progress=progress, dtype=dtype,
                            workers=workers)
            stages[name] = _stage(s.stats["seconds_total"], s.stats["ok"])
            stores[sub] = s
    g, q = stores["gallery"], stores["queries"]
    t0 = time.perf_counter()
    metrics = _search_job(g, q, k, device, threads, os.path.join(out, "results.tsv"))
    t_search = time.perf_counter() - t0
    dev = "cpu" if str(device).lower() == "cpu" else "cuda"
    summary = {"dataset": os.fspath(dataset), "model": os.fspath(model), "model_sha256": mi["model_sha256"],
               "layer": mi["layer"], "dim": mi["dim"], "device": dev,
               **({"calibration": calib_info} if calib_info else {}),
               "split": {"test_size": float(test_size), "seed": int(seed), "train": info["train"],
                         "test": info["test"], "skipped": info["skipped"]},
               "counts": {"gallery": len(g), "gallery_failed": len(g.failed), "queries": len(q),
                          "queries_failed": len(q.failed)},
               "k": k}
    for key in ("accuracy", "per_class"):
        if key in metrics:
            summary[key] = metrics[key]
    summary["stages"] = {"split": _stage(t_split, info["train"] + info["test"]), "model load": _stage(0.0, 0),
                         "calibration": calib_stage, "engine build": _stage(t_engine, 0), **stages,
                         "search": _stage(t_search, len(q))}
    summary["total_seconds"] = time.perf_counter() - t_all
    tmp = os.path.join(out, "summary.json.tmp.%d" % os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent="\t")
        f.write("\n")
    os.replace(tmp, os.path.join(out, "summary.json"))
    return summary

