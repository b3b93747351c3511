"""imgsim extract: the store accounts for every input (ok + failed + skipped = files), features
are L2-normalised float32 readable by numpy, float16 stores equal the float32 store cast by numpy,
no temporary files remain, and a single image works."""
import glob
import json
import os

import numpy as np

import testlib as T

w = T.workdir()
data = os.path.join(w, "data")
items = T.make_dataset(data, 3, 4, seed=1)
# bad inputs mixed in: a truncated JPEG, random bytes named .jpg, a text file, a PNG named .jpg
good = os.path.join(data, items[0][0])
blob = open(good, "rb").read()
open(os.path.join(data, "class_00", "truncated.jpg"), "wb").write(blob[: len(blob) // 2])
open(os.path.join(data, "class_01", "notes.txt"), "w").write("not an image\n")
open(os.path.join(data, "class_01", "random.jpg"), "wb").write(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(3000))
open(os.path.join(data, "class_01", "noise.bin"), "wb").write(np.random.default_rng(1).bytes(3000))
T.photo_like(120, 90, 2, 5).save(os.path.join(data, "class_02", "really_png.jpg"), format="PNG")
n_files = sum(len(fs) for _, _, fs in os.walk(data))

model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=3", "--out=" + model])
store = os.path.join(w, "store")
p = T.run(["extract", "--model=" + model, "--out=" + store, "--batch-size=4", "--workers=2", "--quiet", data])

man = T.read_tsv(os.path.join(store, "manifest.tsv"))
meta = json.load(open(os.path.join(store, "meta.json")))
feats = np.load(os.path.join(store, "features.npy"))
ok = [m for m in man if m["status"] == "ok"]
failed = [m for m in man if m["status"] == "failed"]
skipped = [m for m in man if m["status"] == "skipped"]
assert len(man) == n_files, (len(man), n_files)
assert len(ok) + len(failed) + len(skipped) == n_files
assert len(ok) == len(items) + 1, len(ok)  # the PNG named .jpg decodes
assert sorted(m["path"].split("/")[-1] for m in failed) == ["random.jpg", "truncated.jpg"], failed
assert sorted(m["path"].split("/")[-1] for m in skipped) == ["noise.bin", "notes.txt"], skipped
for m in failed:
    assert m["row"] == "-1" and m["path"].split("/")[-1] in m["error"], m
assert sorted(int(m["row"]) for m in ok) == list(range(len(ok)))
assert feats.dtype == np.float32 and feats.shape == (len(ok), 512), feats.shape
assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
c = meta["counts"]
assert (c["inputs"], c["ok"], c["failed"], c["skipped"]) == (len(ok) + len(failed), len(ok), len(failed), 2), c
assert meta["dim"] == 512 and meta["model"]["sha256"] and meta["layer"]
assert not glob.glob(os.path.join(store, "*.tmp.*"))

# float16 store == float32 store cast to float16
store16 = os.path.join(w, "store16")
T.run(["extract", "--model=" + model, "--out=" + store16, "--batch-size=3", "--dtype=float16", "--quiet", data])
f16 = np.load(os.path.join(store16, "features.npy"))
assert f16.dtype == np.float16 and f16.shape == feats.shape
assert np.abs(f16.astype(np.float32) - feats.astype(np.float16).astype(np.float32)).max() <= 1e-3

# a single image gives the same features as inside the folder
one = os.path.join(w, "one")
T.run(["extract", "--model=" + model, "--out=" + one, "--quiet", good])
f1 = np.load(os.path.join(one, "features.npy"))
row = [int(m["row"]) for m in ok if m["path"].endswith(items[0][0].split("/")[-1]) and "class_00" in m["path"]][0]
assert f1.shape == (1, 512) and np.allclose(f1[0], feats[row], atol=1e-5)

# progress: plain periodic lines and a final one when stderr is not a terminal, nothing with --quiet
loud = T.run(["extract", "--model=" + model, "--out=" + os.path.join(w, "loud"), "--batch-size=4", data])
assert "extract %d/%d" % (len(ok) + len(failed), len(ok) + len(failed)) in loud.stderr and "done" in loud.stderr, loud.stderr
quiet = T.run(["extract", "--model=" + model, "--out=" + os.path.join(w, "q"), "--batch-size=4", "--quiet", data])
assert quiet.stderr == "", quiet.stderr

# a missing input folder is a clear error
p = T.run(["extract", "--model=" + model, "--out=" + os.path.join(w, "x"), os.path.join(w, "nope")], check=False)
assert p.returncode == 1 and "nope" in p.stderr, p.stderr
print("ok")
