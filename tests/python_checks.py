"""The installed imgsim package against the CLI and numpy (run by test_python_package.py with the
venv's python, from outside the source tree; argv[1] is the venv).

1. The package imported is the venv's, not the source tree's.
2. Engine.embed of a store's files equals the CLI's `extract` features bit for bit (float32, and
   float16 against --dtype=float16), and paths, bytes, numpy arrays and PIL images of one image
   give the same row; Engine.extract writes the CLI's store; progress reports every image.
3. imgsim.search equals numpy's float64 exact top-k (ties by lower row, -1/-inf past n) on
   float32 and float16, and the CLI's `search` results on the same stores.
4. A corrupt image, a missing file and a malformed model raise FormatError / FileError /
   FormatError naming the file; errors="collect" lists them and returns the other rows intact.
5. Four Python threads embedding at once on one engine get the single-threaded rows; another
   Python thread runs while embed runs (the GIL is released).
6. 10,000 embeds (100 calls of 100 small images: paths, bytes and arrays) grow the resident
   memory by less than 24 MiB after the first 1,000.
7. out="dlpack": the CPU engine's numpy array goes through torch.from_dlpack without a copy; on a
   GPU machine (CUDA built and present) the device copy equals the host rows.
9. imgsim.dedup equals `imgsim dedup`'s JSON on a Store and numpy's float64 pairs on an array.
8. imgsim.split writes and returns the CLI's train/test lists; imgsim.run gives the CLI's summary
   (split, counts, accuracies, per class) and results.tsv.
10. int8: imgsim.calibrate writes the CLI's calibration file byte for byte (entropy, percentile);
   Engine(precision="int8", calib=) embeds the CLI's int8 extract bit for bit, and info() names
   the file's sha256 (the store's calib_sha256); a file for another model raises MismatchError (an
   imgsim.Error) saying so; run(precision="int8", calib_images=N) calibrates as `imgsim run` does
   (the same file but for its input path) and gives the CLI's summary keys and results.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.environ["IMGSIM_TESTLIB"])
import numpy as np  # noqa: E402

import testlib as T  # noqa: E402

check = T.check
venv = os.path.realpath(sys.argv[1])

import imgsim  # noqa: E402

# 1. the installed package
where = os.path.realpath(imgsim.__file__)
check(where.startswith(venv + os.sep), "imgsim imported from %s, not from the venv %s" % (where, venv))
check(not where.startswith(os.path.join(os.path.realpath(T.SRC), "python") + os.sep),
      "imgsim imported from the source tree: %s" % where)
check(os.path.exists(os.path.join(venv, "bin", "imgsim")), "the wheel installs the imgsim command")
print("imgsim %s from %s (CUDA built: %s)" % (imgsim.__version__, where, imgsim.has_cuda()))

w = T.workdir("checks")
data = os.path.join(w, "data")
T.make_dataset(data, 2, 5, seed=1)  # 10 JPEGs under 448 px: no DCT scaling, so PIL decodes the same pixels
png = os.path.join(data, "class_01", "lossless.png")
T.photo_like(300, 200, 1, 7).save(png)
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=3", "--out=" + model])
store_dir = os.path.join(w, "store")
T.run(["extract", "--model=" + model, "--out=" + store_dir, "--batch-size=4", "--quiet", data])
store = imgsim.Store(store_dir)
check(isinstance(store.features, np.memmap) and not store.features.flags.writeable,
      "Store.features is a read-only memory map")
cli_feats = np.load(os.path.join(store_dir, "features.npy"))
paths = [os.path.join(data, p) for p in store.paths]
man = T.read_tsv(os.path.join(store_dir, "manifest.tsv"))
check(store.paths == [m["path"] for m in man if m["status"] == "ok"] and
      store.labels == [m["label"] for m in man if m["status"] == "ok"], "Store.paths/labels are the manifest's")
check(store.meta == json.load(open(os.path.join(store_dir, "meta.json"))), "Store.meta is meta.json")

# 2. embed == CLI extract, bit for bit
eng = imgsim.Engine(model, batch_size=4)
check(eng.dim == 512 and eng.input_size == (224, 224) and eng.info()["layer"] == store.meta["layer"],
      "Engine.dim/input_size/info: %r" % eng.info())
f = eng.embed(paths)
check(f.dtype == np.float32 and f.shape == cli_feats.shape, "embed shape %s" % (f.shape,))
check(np.array_equal(f, cli_feats), "embed == CLI extract bit for bit (max diff %g)" % np.abs(f - cli_feats).max())
store16 = os.path.join(w, "store16")
T.run(["extract", "--model=" + model, "--out=" + store16, "--batch-size=4", "--dtype=float16", "--quiet", data])
f16 = eng.embed(paths, dtype="float16")
check(f16.dtype == np.float16 and np.array_equal(f16, np.load(os.path.join(store16, "features.npy"))),
      "embed(dtype=float16) == CLI --dtype=float16")

from PIL import Image  # noqa: E402

for p in (png, paths[3]):
    blob = open(p, "rb").read()
    arr = np.asarray(Image.open(p).convert("RGB"))
    rows = eng.embed([p, blob, arr, Image.open(p), arr[:, :, :].copy(order="F")])
    check(all(np.array_equal(rows[0], rows[i]) for i in range(1, 5)),
          "%s: path, bytes, array, PIL and Fortran-order array give one row" % os.path.basename(p))
    check(np.array_equal(eng.embed(p)[0], rows[0]), "a single item is one row")

xstore = eng.extract(data, os.path.join(w, "pystore"))
check(np.array_equal(np.asarray(xstore.features), cli_feats) and xstore.paths == store.paths,
      "Engine.extract writes the CLI's store")
seen = []
eng.extract(data, os.path.join(w, "pystore2"), progress=lambda done, total: seen.append((done, total)))
check(seen and seen[-1] == (len(paths), len(paths)) and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:])),
      "progress callback: %r" % seen)


class Bar:  # what a tqdm bar offers: total and update(n)
    total, n = None, 0

    def update(self, k):
        self.n += k


bar = Bar()
eng.extract(data, os.path.join(w, "pystore3"), progress=bar)
check(bar.total == len(paths) and bar.n == len(paths), "tqdm-like bar: total %r, n %r" % (bar.total, bar.n))

# extract(update=True, hash=True): only the new image extracted, a removed one dropped, the store a
# fresh extraction gives (and inputs.tsv with the files' sha256, checked against hashlib)
import hashlib  # noqa: E402
import shutil  # noqa: E402
data2, upd, fresh2 = (os.path.join(w, n) for n in ("data2", "pyupd", "pyfresh2"))
shutil.copytree(data, data2)
eng.extract(data2, upd, hash=True, shard_size=4)
cls = sorted(d for d in os.listdir(data2) if os.path.isdir(os.path.join(data2, d)))[0]
first = sorted(os.listdir(os.path.join(data2, cls)))[0]
shutil.copy(os.path.join(data2, cls, first), os.path.join(data2, cls, "zz_copy.jpg"))
os.remove(os.path.join(data2, cls, first))
u = eng.extract(data2, upd, update=True, hash=True)
f = eng.extract(data2, fresh2, hash=True)
check(u.stats["kept"] == len(f.paths) - 1 and u.paths == f.paths and
      np.allclose(np.asarray(u.features), np.asarray(f.features), rtol=0, atol=1e-6),
      "extract(update=True): kept %r of %d rows, the fresh store's rows" % (u.stats["kept"], len(f.paths)))
st = f.stats
check(st["ok"] == len(f.paths) and st["inputs"] == len(f.paths) + len(f.failed) + len(f.skipped) and
      st["failed"] == len(f.failed) and st["skipped"] == len(f.skipped) and st["kept"] == 0 and
      st["gpu_decoded"] == 0 and all(isinstance(st[k], int) for k in ("inputs", "ok", "failed", "skipped", "kept")) and
      all(isinstance(st[k], float) and 0 <= st[k] < 1e6 for k in ("seconds_total", "seconds_list", "seconds_write",
                                                                 "seconds_decode_busy", "seconds_infer_busy")) and
      0 < st["seconds_total"] and st["images_per_s"] > 0, "extract: stats %r" % st)
ins = [l.split("\t") for l in open(os.path.join(upd, "inputs.tsv")).read().splitlines()]
check(ins[0] == ["path", "size", "mtime_ns", "sha256"] and all(
    r[3] == hashlib.sha256(open(os.path.join(data2, r[0]), "rb").read()).hexdigest() for r in ins[1:]),
    "extract(hash=True): inputs.tsv holds each file's sha256")

# 3. search == numpy float64 exact top-k and the CLI


def reference(G, Q, k):
    G64, Q64 = G.astype(np.float64), Q.astype(np.float64)
    idx = np.full((Q.shape[0], k), -1, np.int64)
    sc = np.full((Q.shape[0], k), -np.inf)
    S = Q64 @ G64.T
    for i in range(Q.shape[0]):
        o = np.lexsort((np.arange(G.shape[0]), -S[i]))[:k]
        idx[i, :len(o)], sc[i, :len(o)] = o, S[i, o]
    return idx, sc


rng = np.random.default_rng(0)
G = rng.standard_normal((700, 48)).astype(np.float32)
G /= np.linalg.norm(G, axis=1, keepdims=True)
G[350:400] = G[0:50]  # exact ties: the lower row must come first
Q = np.vstack([G[:20], rng.standard_normal((30, 48)).astype(np.float32)])
for dt in (np.float32, np.float16):
    g, q = G.astype(dt), Q.astype(dt)
    s, i = imgsim.search(g, q, k=7)
    ri, rs = reference(g, q, 7)
    check(np.array_equal(i, ri), "search %s indices == numpy float64 top-k (ties by lower row)" % dt.__name__)
    check(np.allclose(s, rs, rtol=0, atol=1e-6), "search %s scores == numpy float64" % dt.__name__)
s, i = imgsim.search(G[:3], Q[:2], k=5)
check((i[:, 3:] == -1).all() and np.isneginf(s[:, 3:]).all(), "k > n gives -1 / -inf")
qstore = os.path.join(w, "qstore")
T.run(["extract", "--model=" + model, "--out=" + qstore, "--quiet", os.path.join(data, "class_01")])
res = os.path.join(w, "results.tsv")
T.run(["search", "--gallery=" + store_dir, "--query=" + qstore, "--out=" + res, "--k=3", "--quiet"])
qs = imgsim.Store(qstore)
s, i = imgsim.search(store, qs, k=3)
mine = [(qs.paths[a], str(r + 1), store.paths[i[a, r]], "%.6f" % s[a, r]) for a in range(len(qs)) for r in range(3)]
cli = [(x["query_path"], x["rank"], x["match_path"], x["score"]) for x in T.read_tsv(res)]
check(mine == cli, "search of Stores == the CLI's results.tsv")

# 4. errors
blob = open(paths[0], "rb").read()
bad = os.path.join(w, "truncated.jpg")
open(bad, "wb").write(blob[: len(blob) // 2])
missing = os.path.join(w, "missing.jpg")
for item, cls, name in ((bad, imgsim.FormatError, bad), (missing, imgsim.FileError, missing),
                        (blob[:100], imgsim.FormatError, "item 1")):
    try:
        eng.embed([paths[0], item])
        check(False, "%s raised nothing" % name)
    except imgsim.Error as ex:
        check(type(ex) is cls and name in str(ex) and ex.index == 1, "%s: %s %s" % (name, type(ex).__name__, ex))
check(issubclass(imgsim.FileError, OSError) and issubclass(imgsim.FormatError, ValueError), "exception bases")
junk = os.path.join(w, "junk.onnx")
open(junk, "wb").write(b"\x08\x07garbage" * 50)
try:
    imgsim.Engine(junk)
    check(False, "a malformed model raised nothing")
except imgsim.FormatError as ex:
    check(junk in str(ex), "malformed model: %s" % ex)
try:
    imgsim.Engine(missing)
    check(False, "a missing model raised nothing")
except imgsim.FileError as ex:
    check(missing in str(ex), "missing model: %s" % ex)
got, failures = eng.embed([paths[0], bad, paths[1], missing, paths[2]], errors="collect")
check([i for i, _ in failures] == [1, 3] and bad in failures[0][1] and missing in failures[1][1],
      "collect: %r" % failures)
check(np.isnan(got[[1, 3]]).all() and not np.isnan(got[[0, 2, 4]]).any(), "collect: NaN rows are the failed ones")
check(np.array_equal(got[[0, 2, 4]], eng.embed([paths[0], bad, paths[1], missing, paths[2]][::2])) or
      np.allclose(got[[0, 2, 4]], f[:3], atol=1e-6), "collect: the other rows are right")
try:
    imgsim.Store(os.path.join(w, "nostore"))
    check(False, "a missing store raised nothing")
except imgsim.FileError:
    pass
os.remove(os.path.join(w, "pystore2", "meta.json"))
try:
    imgsim.Store(os.path.join(w, "pystore2"))
    check(False, "an incomplete store raised nothing")
except imgsim.Error as ex:
    check("incomplete" in str(ex) or "meta.json" in str(ex), "incomplete store: %s" % ex)

# 5. threads and the GIL
groups = [paths[i::4] + [png] for i in range(4)]
want = [eng.embed(g) for g in groups]
got = [None] * 4


def work(k):
    for _ in range(3):
        got[k] = eng.embed(groups[k])


ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
check(all(g is not None and np.array_equal(g, x) for g, x in zip(got, want)),
      "four threads on one engine get the single-threaded rows")

ticks = []
stop = threading.Event()


def ticker():
    while not stop.is_set():
        ticks.append(time.monotonic())
        time.sleep(0.001)


th = threading.Thread(target=ticker)
th.start()
time.sleep(0.05)
t0 = time.monotonic()
eng.embed(paths)
t1 = time.monotonic()
stop.set()
th.join()
during = sum(1 for t in ticks if t0 < t < t1)
print("GIL: %d ticks of the other thread during a %.2f s embed" % (during, t1 - t0))
check(during >= 20, "another Python thread ran during embed (%d ticks in %.2f s)" % (during, t1 - t0))
eng.close()
eng.close()
try:
    eng.embed(paths[:1])
    check(False, "a closed engine raised nothing")
except imgsim.InvalidArgumentError:
    pass

# 6. memory over 10,000 embeds, with a tiny model (32x32 input)
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

r = np.random.default_rng(1)
nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fw", "fb"], ["out"], transB=1)]
inits = [numpy_helper.from_array(r.standard_normal(s).astype(np.float32), n)
         for n, s in (("w", (16, 3, 3, 3)), ("b", (16,)), ("fw", (4, 16)), ("fb", (4,)))]
graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])], inits)
tiny = os.path.join(w, "tiny.onnx")
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tiny)
small = [os.path.join(w, "s%d.png" % i) for i in range(20)]
for i, p in enumerate(small):
    T.photo_like(40, 30, i % 3, 100 + i).save(p)
blobs = [open(p, "rb").read() for p in small]
arrs = [np.asarray(Image.open(p).convert("RGB")) for p in small]
batch = (small + blobs + arrs) * 2 + small[:-20] + blobs[:20]  # 100 items of three kinds


def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


with imgsim.Engine(tiny, threads=1) as te:  # one thread: CI's two cores are shared
    check(te.dim == 16 and te.input_size == (32, 32), "tiny model: %d-d, %r" % (te.dim, te.input_size))
    first = te.embed(batch)
    base = None
    t0 = time.time()
    for call in range(100):
        x, fails = te.embed(batch, errors="collect", workers=1)
        if call == 9:
            base = rss()
    grown = rss() - base
    print("memory: 10,000 embeds in %.1f s, resident memory %+.1f MiB after the first 1,000" %
          (time.time() - t0, grown / 2**20))
    check(np.array_equal(x, first) and not fails, "the 10,000th embed gives the first's rows")
    check(grown < 24 * 2**20, "resident memory grew %.1f MiB (bound 24 MiB)" % (grown / 2**20))

    # 7. DLPack
    d = te.embed(small[:5], out="dlpack")
    import torch  # noqa: E402
    t = torch.from_dlpack(d)
    check(t.shape == (5, 16) and np.array_equal(t.numpy(), first[:5]), "CPU out='dlpack' through torch.from_dlpack")

# 8. split and run against the CLI
sd, sp = os.path.join(w, "split_cli"), os.path.join(w, "split_py")
T.run(["split", data, "--test-size=0.3", "--seed=7", "--out-dir=" + sd, "--quiet"])
tr, te = imgsim.split(data, test_size=0.3, seed=7, out_dir=sp)
for name in ("train.tsv", "test.tsv"):
    check(open(os.path.join(sd, name)).read() == open(os.path.join(sp, name)).read(), "split writes the CLI's " + name)
want = [(os.path.normpath(os.path.join(sd, x["path"])), x["label"]) for x in T.read_tsv(os.path.join(sd, "test.tsv"))]
check(te == want and len(tr) + len(te) == len(paths) + 0, "split returns the CLI's lists: %r" % (te,))
check(imgsim.split(data, test_size=0.3, seed=7) == (tr, te), "split without out_dir")
try:
    imgsim.split(os.path.join(w, "nodata"))
    check(False, "split of a missing dataset raised nothing")
except imgsim.FileError as ex:
    check("nodata" in str(ex), "split of a missing dataset: %s" % ex)
rc, rp = os.path.join(w, "run_cli"), os.path.join(w, "run_py")
T.run(["run", data, "--model=" + model, "--out=" + rc, "--k=3", "--batch-size=4", "--quiet"])
summ = imgsim.run(data, model, rp, k=3, batch_size=4)
cs = json.load(open(os.path.join(rc, "summary.json")))
for key in ("split", "counts", "k", "accuracy", "per_class", "dim", "layer", "model_sha256", "device"):
    check(summ.get(key) == cs.get(key), "run: summary[%r] %r == the CLI's %r" % (key, summ.get(key), cs.get(key)))
check(set(summ["stages"]) == set(cs["stages"]) and set(summ) == set(cs), "run: the CLI's summary keys")
check(open(os.path.join(rc, "results.tsv")).read() == open(os.path.join(rp, "results.tsv")).read(),
      "run: results.tsv == the CLI's")
check(json.load(open(os.path.join(rp, "summary.json"))) == summ, "run: summary.json is the returned dict")

# 9. dedup against the CLI and numpy
S = cli_feats.astype(np.float64) @ cli_feats.astype(np.float64).T
thr = float(np.median(S[np.triu_indices(len(S), 1)]))
dj = os.path.join(w, "dedup.json")
T.run(["dedup", store_dir, "--threshold=%.9g" % np.float32(thr), "--out=" + dj, "--quiet"])
cli_d = json.load(open(dj))
mine = imgsim.dedup(store, np.float32(thr))
check(list(mine) == list(cli_d) and all(
    [(p, np.float32(s)) for p, s in mine[k]] == [(p, np.float32(s)) for p, s in cli_d[k]] for k in cli_d),
    "dedup of a Store == imgsim dedup's JSON (%d rows with pairs)" % len(cli_d))
D = G[:300].copy()
D[200:230] = D[0:30] + 1e-3 * rng.standard_normal((30, 48)).astype(np.float32)
D /= np.linalg.norm(D, axis=1, keepdims=True)
S = D.astype(np.float64) @ D.astype(np.float64).T
want = {(i, j) for i, j in zip(*np.nonzero(np.triu(S >= 0.9, 1)))}
got = imgsim.dedup(D, 0.9)
check({(i, j) for i, lst in got.items() for j, _ in lst} == want and len(want) >= 30,
      "dedup of an array == numpy float64 pairs (%d)" % len(want))
check(all(np.float32(s) == np.float32(S[i, j]) for i, lst in got.items() for j, s in lst), "dedup scores")

# 10. int8: calibrate, Engine(precision="int8", calib=) and run(precision="int8") against the CLI
import hashlib  # noqa: E402
ccli, cpy = os.path.join(w, "cli.calib"), os.path.join(w, "py.calib")
T.run(["calibrate", "--model=" + model, data, "--images=8", "--out=" + ccli, "--quiet"])
ci = imgsim.calibrate(model, data, cpy, images=8)
check(open(cpy, "rb").read() == open(ccli, "rb").read(), "calibrate writes the CLI's file byte for byte")
check(ci["images"] == 8 and ci["images_requested"] == 8 and ci["n_tensors"] >= 10 and
      ci["layer"] == store.meta["layer"],
      "calibrate returns %r" % ci)
pc, pm = os.path.join(w, "p.calib"), os.path.join(w, "m.calib")
T.run(["calibrate", "--model=" + model, data, "--images=6", "--method=percentile", "--percentile=99.5",
       "--out=" + pc, "--quiet"])
imgsim.calibrate(model, data, pm, images=6, method="percentile", percentile=99.5)
check(open(pc, "rb").read() == open(pm, "rb").read(), "calibrate(method='percentile') == the CLI's")
s8 = os.path.join(w, "store_int8")
T.run(["extract", "--model=" + model, "--out=" + s8, "--batch-size=4", "--precision=int8", "--calib=" + ccli,
       "--quiet", data])
with imgsim.Engine(model, precision="int8", calib=cpy, batch_size=4) as e8:
    f8 = e8.embed(paths)
    i8 = e8.info()
cli8 = np.load(os.path.join(s8, "features.npy"))
check(f8.shape == cli8.shape and np.array_equal(f8, cli8), "int8 embed == CLI int8 extract bit for bit")
check(not np.array_equal(f8, cli_feats), "int8 features are not the fp32 ones")
check(i8["precision"] == "int8" and i8["calib_sha256"] == hashlib.sha256(open(cpy, "rb").read()).hexdigest() and
      i8["calib_sha256"] == json.load(open(os.path.join(s8, "meta.json")))["calib_sha256"],
      "info()['calib_sha256'] is the file's sha256 and the CLI store's: %r" % i8.get("calib_sha256"))
other = os.path.join(w, "other.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=4", "--out=" + other])
try:
    imgsim.Engine(other, precision="int8", calib=cpy)
    check(False, "a calibration file for another model raised nothing")
except imgsim.MismatchError as ex:
    check(isinstance(ex, imgsim.Error) and "calibration file is for another model" in str(ex) and cpy in str(ex),
          "another model's calibration: %s" % ex)
try:
    imgsim.Engine(model, precision="int8")
    check(False, "int8 without calib raised nothing")
except imgsim.Error as ex:
    check("calib" in str(ex), "int8 without calib: %s" % ex)
try:
    imgsim.calibrate(model, data, cpy, method="median")
    check(False, "calibrate(method='median') raised nothing")
except imgsim.InvalidArgumentError as ex:
    check("median" in str(ex), "bad method: %s" % ex)
rc8, rp8 = os.path.join(w, "run_cli8"), os.path.join(w, "run_py8")
T.run(["run", data, "--model=" + model, "--out=" + rc8, "--k=3", "--batch-size=4", "--precision=int8",
       "--calib-images=6", "--quiet"])
s8 = imgsim.run(data, model, rp8, k=3, batch_size=4, precision="int8", calib_images=6)
c8 = json.load(open(os.path.join(rc8, "summary.json")))
jc, jp = json.load(open(os.path.join(rc8, "int8.calib"))), json.load(open(os.path.join(rp8, "int8.calib")))
check(jc.pop("input") == os.path.join(rc8, "train.tsv") and jp.pop("input") == os.path.join(rp8, "train.tsv") and
      jc == jp,
      "run(precision='int8') calibrates as the CLI's run does (the same file but for its input)")
check(set(s8) == set(c8) and set(s8["stages"]) == set(c8["stages"]) and s8["stages"]["calibration"]["images"] == 6 and
      s8["calibration"]["source"] == "calibrated" and s8.get("accuracy") == c8.get("accuracy"),
      "run(precision='int8'): the CLI's summary keys and accuracies")
check(open(os.path.join(rc8, "results.tsv")).read() == open(os.path.join(rp8, "results.tsv")).read(),
      "run(precision='int8'): results.tsv == the CLI's")

gpu = None
if imgsim.has_cuda():
    try:
        gpu = imgsim.Engine(model, device="cuda", precision="fp32", batch_size=4)
    except imgsim.NoDeviceError as ex:
        print("SKIP GPU DLPack: %s" % ex)
else:
    print("SKIP GPU DLPack: this build has no CUDA")
if gpu:
    import torch  # noqa: E402
    host = gpu.embed(paths)
    dev = gpu.embed(paths, out="dlpack")
    check(dev.__dlpack_device__() == (2, 0), "CUDA DLPack device %r" % (dev.__dlpack_device__(),))
    t = torch.from_dlpack(dev)
    check(t.is_cuda and np.array_equal(t.cpu().numpy(), host), "CUDA DLPack rows == host rows")
    h16 = gpu.embed(paths, dtype="float16", out="dlpack")
    check(torch.from_dlpack(h16).dtype == torch.float16, "float16 DLPack")
    gpu.close()
T.finish()
