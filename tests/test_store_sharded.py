"""Sharded stores (issue 15 item 3): extract --layout=sharded leaves features-K.npy + manifest-K.tsv
per shard, listed in meta.json, instead of joining them; every reader takes both layouts.
 - the shards end to end equal a single-layout extract's features.npy byte for byte (float32 and
   float16), the manifests less their headers its manifest.tsv; numpy.load of each shard works;
   meta.json lists each shard's files, rows and first row;
 - search on the sharded gallery: the same results.tsv as on the single store, and the numpy
   float64 exact top-k (ties by lower row); dedup the same pairs;
 - a sharded extraction killed with SIGKILL after two shards and run again: the files of an
   uninterrupted one;
 - extract --update on a sharded store: the same store as a fresh sharded extraction; run again
   with the other layout, the store is rewritten in it;
 - run --layout=sharded: results.tsv equal the single-layout run's, a second run reuses both
   stores, a run without it rewrites them in the single layout;
 - a shard whose features file is damaged, or a shard file missing, is refused naming the file;
 - imgsim.Store on a sharded store (this build's extension module, when there is one): .shards
   memmaps, .features their concatenation, the failed and skipped lists of the single store;
   Engine.extract(layout="sharded");
 - (test_extract_engines.c: the multi-engine finish writes the sharded layout too.)"""
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

import testlib as T

w = T.workdir()
p = lambda *a: os.path.join(w, *a)  # noqa: E731
data = p("data")
T.make_dataset(data, 2, 8, seed=5, sizes=((96, 72), (72, 96)))
with open(os.path.join(data, "class_01", "bad.jpg"), "wb") as f:  # a failed row
    f.write(open(os.path.join(data, "class_01", "img_000.jpg"), "rb").read()[:400])
with open(os.path.join(data, "class_00", "notes.txt"), "w") as f:  # a skipped line
    f.write("not an image\n")
model = p("m.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=3", "--out=" + model])
OPTS = ["--threads=2", "--batch-size=2", "--shard-size=4"]  # 17 images: 5 shards (one failed)


def extract(out, *extra, src=data, check=True):
    return T.run(["extract", "--model=" + model, "--out=" + out, "--quiet"] + OPTS + list(extra) + [src], check=check)


def fail(msg):
    sys.stderr.write("FAIL: " + msg + "\n")
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def shard_files(store, kind):
    return sorted(glob.glob(os.path.join(store, kind + "-[0-9]*." + ("npy" if kind == "features" else "tsv"))))


def joined(store):
    """The shards' features end to end (numpy.load of each) and their manifests less headers."""
    feats = [np.load(f) for f in shard_files(store, "features")]
    mans = []
    for f in shard_files(store, "manifest"):
        head, _, rest = open(f, newline="\n").read().partition("\n")
        check(head == "row\tpath\tlabel\tstatus\terror", "%s: header %r" % (f, head))
        mans.append(rest)
    return np.concatenate(feats), "".join(mans), feats


def body(path):
    return open(path, newline="\n").read().partition("\n")[2]


# ---- the writer: the shards end to end are the single store ---------------------------------------
for dt in ("float32", "float16"):
    single, sharded = p("single_" + dt), p("sharded_" + dt)
    extract(single, "--dtype=" + dt)
    extract(sharded, "--dtype=" + dt, "--layout=sharded")
    check(not os.path.exists(os.path.join(sharded, "features.npy")) and not os.path.exists(
        os.path.join(sharded, "manifest.tsv")), "a sharded store holds no features.npy / manifest.tsv")
    check(not os.path.exists(os.path.join(sharded, "shards")), "the shards folder stays after the store is complete")
    F, M, feats = joined(sharded)
    ref = np.load(os.path.join(single, "features.npy"))
    check(len(feats) == 5, "%s: %d shards, expected 5" % (sharded, len(feats)))
    check(F.dtype == ref.dtype and F.shape == ref.shape and F.tobytes() == ref.tobytes(),
          "%s: the shards end to end are not features.npy byte for byte" % dt)
    check(M == body(os.path.join(single, "manifest.tsv")), "%s: the manifests end to end are not manifest.tsv" % dt)
    meta = json.load(open(os.path.join(sharded, "meta.json")))
    check(meta.get("layout") == "sharded" and meta.get("rows") == len(ref), "meta.json: layout/rows %r" % meta.get("rows"))
    first = 0
    for k, (sh, a) in enumerate(zip(meta["shards"], feats)):
        check(sh["features"] == "features-%05d.npy" % k and sh["manifest"] == "manifest-%05d.tsv" % k,
              "meta.json shard %d names %r" % (k, sh))
        check(sh["rows"] == len(a) and sh["first_row"] == first, "meta.json shard %d rows %r" % (k, sh))
        check(sh["features_bytes"] == os.path.getsize(os.path.join(sharded, sh["features"])), "shard %d bytes" % k)
        first += len(a)
    check(np.load(os.path.join(sharded, "features-00000.npy"), mmap_mode="r").shape == feats[0].shape,
          "numpy.load(mmap_mode='r') of a shard")
    # the same command again (the store complete): the same files
    before = {f: open(f, "rb").read() for f in shard_files(sharded, "features") + shard_files(sharded, "manifest")}
    extract(sharded, "--dtype=" + dt, "--layout=sharded", "--durable")
    check(before == {f: open(f, "rb").read() for f in before}, "a second sharded extract changed the shard files")
print("writer: sharded == single, float32 and float16")

single, sharded = p("single_float32"), p("sharded_float32")

# ---- search and dedup ---------------------------------------------------------------------------
K = 5
res = {}
for name, g in (("single", single), ("sharded", sharded)):
    for qname, q in (("qsingle", single), ("qsharded", sharded)):
        out = p("r_%s_%s.tsv" % (name, qname))
        T.run(["search", "--gallery=" + g, "--query=" + q, "--out=" + out, "--k=%d" % K, "--quiet"])
        res[(name, qname)] = open(out).read()
check(len(set(res.values())) == 1, "search: results.tsv differ between the layouts of gallery and queries")
dd = []
for g in (single, sharded):
    T.run(["dedup", g, "--threshold=0.5", "--out=" + p("d.json"), "--quiet"])
    dd.append(open(p("d.json")).read())
check(dd[0] == dd[1] and dd[0].strip() not in ("", "{}"), "dedup: the pairs differ between the layouts")

# numpy float64 exact top-k over the sharded gallery (rows as the manifests number them)
G = joined(sharded)[0].astype(np.float64)
paths = {}
for f in shard_files(sharded, "manifest"):
    for ln in body(f).split("\n"):
        c = ln.split("\t")
        if len(c) == 5 and c[0] != "-1":
            paths[int(c[0])] = c[1]
names = [paths[i] for i in range(len(G))]
Gn = G / np.linalg.norm(G, axis=1, keepdims=True)
S = Gn @ Gn.T
rows = [ln.split("\t") for ln in res[("sharded", "qsharded")].strip().split("\n")[1:]]
check(len(rows) == len(G) * K, "results.tsv: %d rows, expected %d" % (len(rows), len(G) * K))
for qi in range(len(G)):
    order = np.lexsort((np.arange(len(G)), -S[qi]))[:K]
    got = rows[qi * K:(qi + 1) * K]
    for r, (j, g) in enumerate(zip(order, got)):
        check(g[0] == names[qi] and int(g[2]) == r + 1, "results.tsv: row %r out of order" % g)
        check(abs(float(g[5]) - S[qi, j]) < 2e-6, "query %s rank %d: score %s, float64 %.7f" % (names[qi], r + 1, g[5], S[qi, j]))
        if g[3] != names[j]:  # only where float32 rounding may swap near-ties
            check(abs(S[qi, names.index(g[3])] - S[qi, j]) < 1e-6,
                  "query %s rank %d: %s, float64 top-k has %s" % (names[qi], r + 1, g[3], names[j]))
print("search: sharded == single == numpy float64 top-k; dedup equal")

# ---- extract --update on a sharded store ----------------------------------------------------------
upd, fresh = p("upd"), p("fresh")
shutil.copytree(sharded, upd)
shutil.copy(os.path.join(data, "class_00", "img_001.jpg"), os.path.join(data, "class_01", "img_100.jpg"))
os.remove(os.path.join(data, "class_00", "img_003.jpg"))
extract(upd, "--layout=sharded", "--update")
extract(fresh, "--layout=sharded")
for a, b in zip(shard_files(upd, "features") + shard_files(upd, "manifest"),
                shard_files(fresh, "features") + shard_files(fresh, "manifest")):
    check(open(a, "rb").read() == open(b, "rb").read(), "update: %s is not the fresh extraction's %s" % (a, b))
check(len(shard_files(upd, "features")) == len(shard_files(fresh, "features")), "update: the shard count differs")
extract(upd, "--update")  # the single layout asked for: rewritten in it, no shard left
check(os.path.exists(os.path.join(upd, "features.npy")) and not shard_files(upd, "features")
      and not shard_files(upd, "manifest"), "update to the single layout left shard files")
check(np.load(os.path.join(upd, "features.npy")).tobytes() == joined(fresh)[0].tobytes(), "update: single != sharded")
print("update: sharded store updated == fresh sharded extraction; rewritten in the single layout")

# ---- a sharded extraction killed and run again: the uninterrupted one's files -------------------
ks = p("killed")
cmd = [T.CLI, "extract", "--model=" + model, "--out=" + ks, "--quiet", "--workers=1", "--layout=sharded"] + OPTS + [data]
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
t0 = time.time()
while proc.poll() is None and len(glob.glob(os.path.join(ks, "shards", "[0-9]*.json"))) < 2 and time.time() - t0 < 120:
    time.sleep(0.005)
killed = proc.poll() is None
if killed:
    proc.kill()
proc.wait()
check(not killed or not os.path.exists(os.path.join(ks, "meta.json")), "a killed extraction left meta.json")
r = T.run([a for a in cmd[1:] if a != "--quiet"])
check(not killed or "resuming" in r.stderr, "the rerun did not resume:\n" + r.stderr)
for a, b in zip(shard_files(ks, "features") + shard_files(ks, "manifest"),
                shard_files(fresh, "features") + shard_files(fresh, "manifest")):
    check(open(a, "rb").read() == open(b, "rb").read(), "killed and resumed: %s is not %s" % (a, b))
check(len(shard_files(ks, "features")) == len(shard_files(fresh, "features")), "killed and resumed: shard count")
print("resume: killed (%s) and run again == uninterrupted" % ("after 2 shards" if killed else "finished first"))

# ---- run --layout=sharded -------------------------------------------------------------------------
ra, rb = p("run_single"), p("run_sharded")
T.run(["run", data, "--model=" + model, "--out=" + ra, "--quiet", "--k=3"] + OPTS)
T.run(["run", data, "--model=" + model, "--out=" + rb, "--quiet", "--k=3", "--layout=sharded"] + OPTS)
check(shard_files(os.path.join(rb, "gallery"), "features"), "run --layout=sharded: the gallery is not sharded")
check(open(os.path.join(ra, "results.tsv")).read() == open(os.path.join(rb, "results.tsv")).read(),
      "run: results.tsv differ between the layouts")
r2 = T.run(["run", data, "--model=" + model, "--out=" + rb, "--k=3", "--layout=sharded"] + OPTS)
check(r2.stderr.count("reusing the complete store") == 2, "run again: the sharded stores were not reused:\n" + r2.stderr)
check(open(os.path.join(ra, "results.tsv")).read() == open(os.path.join(rb, "results.tsv")).read(), "run again: results")
T.run(["run", data, "--model=" + model, "--out=" + rb, "--quiet", "--k=3"] + OPTS)  # the single layout now
check(os.path.exists(os.path.join(rb, "gallery", "features.npy")) and not shard_files(os.path.join(rb, "gallery"), "features"),
      "run in the other layout: the gallery was not rewritten in it")
check(open(os.path.join(ra, "results.tsv")).read() == open(os.path.join(rb, "results.tsv")).read(), "run, relaid: results")
print("run: sharded == single, reused; rewritten in the layout asked for")

# ---- damaged and missing shard files are refused naming the file ----------------------------------
def refused(store, name, what):
    r = T.run(["search", "--gallery=" + store, "--query=" + single, "--out=" + p("x.tsv"), "--quiet"], check=False)
    check(r.returncode != 0, "%s: search took the store" % what)
    check(name in r.stderr, "%s: the message does not name %s:\n%s" % (what, name, r.stderr))


bad = p("bad")
shutil.copytree(sharded, bad)
fp = os.path.join(bad, "features-00002.npy")
b = bytearray(open(fp, "rb").read())
b[-7] ^= 0x40  # a bit of the array data
open(fp, "wb").write(bytes(b))
refused(bad, "features-00002.npy", "a damaged shard")
shutil.rmtree(bad)
shutil.copytree(sharded, bad)
os.remove(os.path.join(bad, "manifest-00001.tsv"))
refused(bad, "manifest-00001.tsv", "a missing manifest")
shutil.rmtree(bad)
shutil.copytree(sharded, bad)
os.remove(os.path.join(bad, "features-00004.npy"))
refused(bad, "features-00004.npy", "a missing shard")
print("refusals: damaged and missing shard files named")

# ---- imgsim.Store ---------------------------------------------------------------------------------
mod = os.environ.get("IMGSIM_PY_MODULE", "")
if mod and os.path.exists(mod):
    pkg = p("pkg")
    shutil.copytree(os.path.join(os.environ["IMGSIM_SOURCE_DIR"], "python", "imgsim"), os.path.join(pkg, "imgsim"))
    shutil.copy(mod, os.path.join(pkg, "imgsim", os.path.basename(mod)))
    sys.path.insert(0, pkg)
    import imgsim  # noqa: E402
    a, s = imgsim.Store(single), imgsim.Store(sharded)
    check(len(s.shards) == 5 and all(isinstance(x, np.memmap) for x in s.shards), "Store.shards: %r" % type(s.shards))
    check(np.array_equal(s.features, a.features) and s.features.dtype == a.features.dtype, "Store.features differ")
    check(not s.features.flags.writeable, "Store.features of a sharded store is writeable")
    check(s.paths == a.paths and s.labels == a.labels and s.failed == a.failed and s.skipped == a.skipped
          and len(s) == len(a), "Store: paths, labels, failed or skipped differ")
    check(len(a.shards) == 1 and a.shards[0] is a.features, "Store.shards of a single store")
    try:
        imgsim.Store(p("bad"))
        fail("Store took a store with a missing shard")
    except imgsim.Error as ex:
        check("features-00004.npy" in str(ex), "Store: the message does not name the file: %s" % ex)
    eng = imgsim.Engine(model, batch_size=2)
    pe = eng.extract(data, p("py_sharded"), layout="sharded")
    check(pe.meta.get("layout") == "sharded" and len(pe.shards) == 1 and
          os.path.exists(p("py_sharded", "features-00000.npy")), "Engine.extract(layout='sharded'): %r" % pe.meta.get("layout"))
    check(np.allclose(pe.features, imgsim.Store(fresh).features, atol=1e-5), "Engine.extract(layout='sharded') features")
    try:
        eng.extract(data, p("py_x"), layout="joined")
        fail("Engine.extract took layout='joined'")
    except imgsim.Error:
        pass
    print("python: Store on a sharded store, Engine.extract(layout='sharded')")
else:
    print("python: no extension module in this build (Store not checked)")
print("ok")
