"""File names and links (issue 12):
 - names that are not valid UTF-8 (a class folder, files, the dataset folder and the model's path)
   go through extract, run, search and dedup; every JSON file written (meta.json, summary.json,
   results.metrics.json, the dedup pairs) is valid JSON for json.load, and each name in it reads
   back as os.fsdecode(name), whose os.fsencode is the original bytes (invalid bytes are written as
   \\udcXX, Python's surrogateescape); a query store whose gallery's meta.json names such a model
   path finds that model again;
 - a symbolic link to "/" inside an image folder is not walked into (the job succeeds, the link is
   a skipped line of the manifest with the reason); a link to a folder inside the dataset root is
   followed;
 - skipped files' manifest paths are relative to the dataset root, like ok and failed rows."""
import json
import os
import subprocess
import sys

import testlib as T


def run(args):
    """The CLI; its messages hold the names' raw bytes, so they are decoded with surrogateescape."""
    p = subprocess.run([T.CLI] + args, capture_output=True)
    err = p.stderr.decode("utf-8", "surrogateescape")
    if p.returncode != 0:
        sys.stderr.write("command failed: %s\n%s\n" % (args, err))
        raise SystemExit(1)
    return err

w = T.workdir()
wb = os.fsencode(w)
data_b = os.path.join(wb, b"data_\xfe")  # the dataset folder itself is not UTF-8
data = os.fsdecode(data_b)
items = T.make_dataset(data, 2, 3, seed=8, sizes=((96, 80),))
bad_class = os.path.join(data_b, b"caf\xe9")  # Latin-1 'cafe' with an accent: invalid UTF-8
os.makedirs(bad_class)
T.photo_like(90, 70, 3, 1).save(os.fsdecode(os.path.join(bad_class, b"img_\xff\xfe.jpg")), quality=90)
T.photo_like(90, 70, 3, 2).save(os.fsdecode(os.path.join(bad_class, "ünï \"q\\.jpg".encode())), quality=90)
T.photo_like(90, 70, 3, 3).save(os.fsdecode(os.path.join(bad_class, b"trunc\xe2\x82.jpg")), quality=90)
open(os.path.join(data, "class_00", "notes.txt"), "w").write("not an image\n")
os.symlink("/", os.path.join(data, "class_00", "root_link"))
os.symlink(os.path.join("..", "class_01"), os.path.join(data, "class_00", "inside_link"))
model_b = os.path.join(wb, b"m\xe9del.onnx")
model = os.fsdecode(model_b)
run(["model", "init", "--arch=resnet18", "--seed=4", "--out=" + model])


def load_json(path):
    """json.load of a file that must be valid JSON (reported, not raised, when it is not)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        raw.decode("utf-8")  # the file itself is UTF-8 text
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as ex:
        T.check(False, "%s is not valid JSON: %s" % (path, ex))
        return None


def names_back(strings):
    """The byte strings that json strings stand for."""
    return {os.fsencode(s) for s in strings}


store = os.path.join(w, "store")
run(["extract", "--model=" + model, "--out=" + store, "--quiet", data])
with open(os.path.join(store, "manifest.tsv"), "rb") as f:
    lines = f.read().split(b"\n")
head = lines[0].split(b"\t")
man = [dict(zip(head, l.split(b"\t"))) for l in lines[1:] if l]
by_path = {m[b"path"]: m for m in man}
want_ok = [b"caf\xe9/img_\xff\xfe.jpg", b"caf\xe9/" + "ünï \"q\\.jpg".encode(), b"caf\xe9/trunc\xe2\x82.jpg"]
for r in want_ok + [b"class_00/img_000.jpg", b"class_00/inside_link/img_000.jpg"]:
    T.check(by_path.get(r, {}).get(b"status") == b"ok", "manifest: %r not ok: %r" % (r, by_path.get(r)))
# skipped rows: relative paths like ok rows, with the reason
sk = {m[b"path"]: m[b"error"] for m in man if m[b"status"] == b"skipped"}
T.check(set(sk) == {b"class_00/notes.txt", b"class_00/root_link"}, "skipped rows: %r" % sk)
T.check(b"outside the dataset root" in sk.get(b"class_00/root_link", b""), "root_link reason: %r" % sk.get(b"class_00/root_link"))
T.check(not any(b"/proc" in m[b"path"] or m[b"path"].startswith(b"/") for m in man), "the walk left the dataset root")

meta = load_json(os.path.join(store, "meta.json"))
if meta:
    T.check(os.fsencode(meta["input"]) == data_b, "meta.json input %r" % meta["input"])
    T.check(os.fsencode(meta["model"]["path"]) == model_b, "meta.json model path %r" % meta["model"]["path"])

# dedup: a threshold low enough that every row pairs with another
pairs = os.path.join(w, "pairs.json")
run(["dedup", store, "--threshold=-1", "--out=" + pairs, "--quiet"])
d = load_json(pairs)
if d is not None:
    keys = names_back(d) | names_back(q for lst in d.values() for q, _ in lst)
    oks = {m[b"path"] for m in man if m[b"status"] == b"ok"}
    T.check(keys == oks, "dedup names %r, manifest %r" % (sorted(keys - oks), sorted(oks - keys)))

# search with images: the model comes from the gallery's meta.json (a path that is not UTF-8)
res = os.path.join(w, "res.tsv")
run(["search", "--gallery=" + store, "--query=" + os.fsdecode(bad_class), "--out=" + res, "--k=2", "--quiet"])
m = load_json(os.path.join(w, "res.metrics.json"))
T.check(m is not None and m.get("queries") == 3, "search of the non-UTF-8 folder: %s" % (m and m.get("queries")))
# labelled queries: a store as query, per-class keys
run(["search", "--gallery=" + store, "--query=" + store, "--out=" + res, "--k=2", "--quiet"])
m = load_json(os.path.join(w, "res.metrics.json"))
if m:
    T.check(b"caf\xe9" in names_back(m.get("per_class", {})), "metrics per_class %r" % list(m.get("per_class", {})))

# run: summary.json
job = os.path.join(w, "job")
run(["run", data, "--model=" + model, "--out=" + job, "--k=2", "--test-size=0.4", "--quiet"])
s = load_json(os.path.join(job, "summary.json"))
if s:
    T.check(os.fsencode(s["dataset"]) == data_b and os.fsencode(s["model"]) == model_b, "summary.json paths")
    T.check(b"caf\xe9" in names_back(s.get("per_class", {})), "summary per_class %r" % list(s.get("per_class", {})))
T.finish()
