"""Incremental stores (issue 12, item 7): `imgsim extract --update` on a complete store of a folder
in which images were added, removed and changed extracts only the new and changed ones (by path,
size and modification time, from the store's inputs.tsv) and writes the store a fresh extraction
of the folder gives: the same manifest and inputs.tsv byte for byte, the same meta.json but for
timings and creation time, and features equal row for row (numpy; kept rows are the old rows bit
for bit). Without a store, or with one from another model, it extracts everything, saying why.
With --hash, inputs.tsv records each file's SHA-256 and an update compares content: a touched file
keeps its row, a same-size same-time rewrite is extracted again (without --hash it goes unseen)."""
import json
import os
import shutil
import subprocess

import numpy as np
import torch

import testlib as T

w = T.workdir()
data = os.path.join(w, "data")
T.make_dataset(data, 3, 6, seed=3, sizes=((96, 80), (120, 90)))
with open(os.path.join(data, "class_01", "bad.jpg"), "wb") as f:  # fails, so it is extracted again
    f.write(open(os.path.join(data, "class_01", "img_000.jpg"), "rb").read()[:300])
with open(os.path.join(data, "class_00", "notes.txt"), "w") as f:
    f.write("not an image\n")


def tiny(path, seed):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    torch.onnx.export(m, torch.randn(1, 3, 64, 64), path, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "n"}, "output": {0: "n"}}, opset_version=13)


mA, mB = os.path.join(w, "a.onnx"), os.path.join(w, "b.onnx")
tiny(mA, 1)
tiny(mB, 2)
OPTS = ["--batch-size=4", "--workers=2"]


def extract(model, out, extra=()):
    p = subprocess.run([T.CLI, "extract", "--model=" + model, "--out=" + out] + OPTS + list(extra) + [data],
                       capture_output=True, text=True)
    T.check(p.returncode == 0, "extract %s failed: %s" % (" ".join(extra), p.stderr))
    return p.stderr


def meta(store):
    m = json.load(open(os.path.join(store, "meta.json")))
    m.pop("timings", None)
    m.pop("created", None)
    return m


def read(store, name):
    return open(os.path.join(store, name), "rb").read()


def same_as_fresh(a, fresh, what):
    fa, ff = np.load(os.path.join(a, "features.npy")), np.load(os.path.join(fresh, "features.npy"))
    T.check(fa.shape == ff.shape and fa.dtype == ff.dtype, "%s: shape %s, fresh %s" % (what, fa.shape, ff.shape))
    if fa.shape == ff.shape:
        T.check(np.allclose(fa, ff, rtol=0, atol=1e-6),
                "%s: features differ from a fresh extraction's by %g" % (what, np.abs(fa - ff).max()))
    for name in ("manifest.tsv", "inputs.tsv"):
        T.check(read(a, name) == read(fresh, name), "%s: %s differs from a fresh extraction's" % (what, name))
    ma, mf = meta(a), meta(fresh)
    T.check(ma == mf, "%s: meta.json differs in %s" % (what, [k for k in mf if ma.get(k) != mf.get(k)]))
    T.check(not os.path.exists(os.path.join(a, "update")) and not os.path.exists(os.path.join(a, "shards")),
            "%s: work folders left behind" % what)


store = os.path.join(w, "store")
extract(mA, store)
old_f = np.load(os.path.join(store, "features.npy"))
old_rows = {r["path"]: int(r["row"]) for r in T.read_tsv(os.path.join(store, "manifest.tsv")) if r["status"] == "ok"}
ins = T.read_tsv(os.path.join(store, "inputs.tsv"))
T.check(len(ins) == 19 and ins[0]["path"] == "class_00/img_000.jpg" and
        int(ins[0]["size"]) == os.path.getsize(os.path.join(data, "class_00/img_000.jpg")) and
        int(ins[0]["mtime_ns"]) == os.stat(os.path.join(data, "class_00/img_000.jpg")).st_mtime_ns,
        "inputs.tsv lists every image with its size and mtime_ns: %s" % ins[:1])

# the folder changes: 3 added (one in a new class), 2 removed, 1 rewritten, 1 touched (same bytes)
T.photo_like(96, 80, 0, 501).save(os.path.join(data, "class_00", "img_100.jpg"), quality=90)
T.photo_like(120, 90, 2, 502).save(os.path.join(data, "class_02", "img_050.jpg"), quality=90)
os.makedirs(os.path.join(data, "class_03"))
T.photo_like(96, 80, 3, 503).save(os.path.join(data, "class_03", "img_000.jpg"), quality=90)
os.remove(os.path.join(data, "class_00", "img_002.jpg"))
os.remove(os.path.join(data, "class_02", "img_004.jpg"))
T.photo_like(96, 80, 1, 504).save(os.path.join(data, "class_01", "img_003.jpg"), quality=90)
st = os.stat(os.path.join(data, "class_02", "img_001.jpg"))
os.utime(os.path.join(data, "class_02", "img_001.jpg"), ns=(st.st_atime_ns, st.st_mtime_ns + 1000))

err = extract(mA, store, ["--update"])
# 20 images now: 3 new + 1 rewritten + 1 touched + the failed one are extracted, 14 kept, 18 - 14 rows dropped
T.check("update: 14 of 20 images kept, 6 new or changed to extract, 4 rows dropped" in err,
        "the update says what it does: %s" % err)
fresh = os.path.join(w, "fresh")
extract(mA, fresh)
same_as_fresh(store, fresh, "after --update")
print("after --update, features byte-identical to a fresh extraction's:",
      read(store, "features.npy") == read(fresh, "features.npy"))
new_f = np.load(os.path.join(store, "features.npy"))
new_rows = {r["path"]: int(r["row"]) for r in T.read_tsv(os.path.join(store, "manifest.tsv")) if r["status"] == "ok"}
kept = [p for p in new_rows if p in old_rows and p not in ("class_01/img_003.jpg", "class_02/img_001.jpg")]
T.check(len(kept) == 14 and all(np.array_equal(new_f[new_rows[p]], old_f[old_rows[p]]) for p in kept),
        "kept rows are the old rows, bit for bit (%d)" % len(kept))
T.check(not np.allclose(new_f[new_rows["class_01/img_003.jpg"]], old_f[old_rows["class_01/img_003.jpg"]], atol=1e-3),
        "the rewritten image has new features")

# nothing changed: nothing extracted, the same store
err = extract(mA, store, ["--update"])
T.check("update: 19 of 20 images kept, 1 new or changed to extract, 0 rows dropped" in err,
        "a second update extracts only the failed image: %s" % err)
same_as_fresh(store, fresh, "a second --update")

# no store, or a store of another model: everything is extracted, with the reason
none = os.path.join(w, "none")
err = extract(mA, none, ["--update"])
T.check("not updated" in err and "extracting every image" in err, "a missing store is said so: %s" % err)
same_as_fresh(none, fresh, "--update without a store")
err = extract(mB, store, ["--update"])
T.check("not updated (it was extracted with another model (sha256 differs))" in err,
        "another model is named: %s" % err)
freshB = os.path.join(w, "freshB")
extract(mB, freshB)
same_as_fresh(store, freshB, "--update with another model")

# --hash: inputs.tsv records each file's SHA-256 (checked against hashlib) and an update compares
# content: a touched file keeps its row, a file rewritten in place with the same size and
# modification time (an uncompressed PNG of the same size) is extracted again, where the size and
# time comparison keeps its stale row
import hashlib
png = os.path.join(data, "class_00", "flat.png")
T.photo_like(64, 48, 0, 601).save(png, compress_level=0)
hs = os.path.join(w, "hashed")
extract(mA, hs, ["--hash"])
hins = T.read_tsv(os.path.join(hs, "inputs.tsv"))
T.check(open(os.path.join(hs, "inputs.tsv")).readline() == "path\tsize\tmtime_ns\tsha256\n" and len(hins) == 21 and
        all(r["sha256"] == hashlib.sha256(open(os.path.join(data, r["path"]), "rb").read()).hexdigest() for r in hins),
        "--hash: inputs.tsv holds every input's sha256: %s" % hins[:1])
plain = os.path.join(w, "plain")
shutil.copytree(hs, plain)
h_f = np.load(os.path.join(hs, "features.npy"))
h_rows = {r["path"]: int(r["row"]) for r in T.read_tsv(os.path.join(hs, "manifest.tsv")) if r["status"] == "ok"}
size0, st0 = os.path.getsize(png), os.stat(png)
T.photo_like(64, 48, 2, 602).save(png, compress_level=0)
os.utime(png, ns=(st0.st_atime_ns, st0.st_mtime_ns))
T.check(os.path.getsize(png) == size0, "the rewritten PNG has the old size")
touched = os.path.join(data, "class_00", "img_000.jpg")
st = os.stat(touched)
os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5000))
err = extract(mA, hs, ["--update", "--hash"])
# 21 inputs: the rewritten PNG and the failed image extracted, the touched one kept
T.check("update: 19 of 21 images kept, 2 new or changed to extract, 1 rows dropped" in err,
        "--update --hash extracts the rewritten file only: %s" % err)
freshH = os.path.join(w, "freshH")
extract(mA, freshH, ["--hash"])
same_as_fresh(hs, freshH, "after --update --hash")
u_f = np.load(os.path.join(hs, "features.npy"))
u_rows = {r["path"]: int(r["row"]) for r in T.read_tsv(os.path.join(hs, "manifest.tsv")) if r["status"] == "ok"}
T.check(np.array_equal(u_f[u_rows["class_00/img_000.jpg"]], h_f[h_rows["class_00/img_000.jpg"]]),
        "the touched image keeps its row bit for bit")
T.check(not np.allclose(u_f[u_rows["class_00/flat.png"]], h_f[h_rows["class_00/flat.png"]], atol=1e-3),
        "the rewritten PNG has new features")
# without --hash the same change goes unseen (size and time are the old ones): the README says so
err = extract(mA, plain, ["--update"])
p_f = np.load(os.path.join(plain, "features.npy"))
p_rows = {r["path"]: int(r["row"]) for r in T.read_tsv(os.path.join(plain, "manifest.tsv")) if r["status"] == "ok"}
T.check(np.array_equal(p_f[p_rows["class_00/flat.png"]], h_f[h_rows["class_00/flat.png"]]),
        "without --hash, a same-size same-time rewrite keeps the stale row")
T.check(open(os.path.join(plain, "inputs.tsv")).readline() == "path\tsize\tmtime_ns\n",
        "an update without --hash records no hashes")
# a store without hashes updated with --hash: compared by size and time, with a warning, hashes recorded
err = extract(mA, plain, ["--update", "--hash"])
T.check("have no content hash recorded (the store was made without --hash)" in err,
        "an unhashed store is said so: %s" % err)
T.check(read(plain, "inputs.tsv") == read(freshH, "inputs.tsv"), "the hashes are recorded by that update")
T.finish()
