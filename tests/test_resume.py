"""Resumable extraction (issue 12, item 6): a store is written in shards (STORE/shards/), and an
`extract` or `run` killed with SIGKILL, then run again with the same command, keeps the complete
shards and gives the store an uninterrupted run gives, byte for byte (features.npy and
manifest.tsv; meta.json but for its timings and creation time), checked with numpy:
 - killed again and again at random points (after a random number of shards, at a random moment);
 - a shard whose features or manifest lines were damaged is detected and extracted again;
 - a shard whose images changed is extracted again (the result equals a fresh extraction);
 - run again with another model, the shards are dropped with a message naming the difference;
 - `imgsim run` killed in its gallery extraction and run again: the same stores and results."""
import glob
import json
import os
import random
import shutil
import subprocess
import time

import numpy as np

import testlib as T

w = T.workdir()
data = os.path.join(w, "data")
T.make_dataset(data, 2, 8, seed=5, sizes=((160, 120),))
with open(os.path.join(data, "class_01", "bad.jpg"), "wb") as f:  # a failed row
    f.write(open(os.path.join(data, "class_01", "img_000.jpg"), "rb").read()[:400])
with open(os.path.join(data, "class_00", "notes.txt"), "w") as f:  # a skipped line
    f.write("not an image\n")
mA, mB = os.path.join(w, "a.onnx"), os.path.join(w, "b.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=1", "--out=" + mA])
T.run(["model", "init", "--arch=resnet18", "--seed=2", "--out=" + mB])
# slow enough to be killed mid-job: one thread, batches of 2, shards of 4 images (17 items: 5 shards)
OPTS = ["--threads=1", "--workers=1", "--batch-size=2", "--shard-size=4"]
rng = random.Random(int(os.environ.get("IMGSIM_TEST_SEED", "0")) or None)


def extract_cmd(model, out, src=data):
    return [T.CLI, "extract", "--model=" + model, "--out=" + out] + OPTS + [src]


def records(store):
    return len(glob.glob(os.path.join(store, "shards", "[0-9]*.json")))


def killed_at(cmd, store, shards, delay=0.0):
    """Starts cmd, SIGKILLs it once `shards` shard records exist (then up to `delay` seconds later,
    at random); True when it was still running then."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while p.poll() is None and records(store) < shards and time.time() - t0 < 120:
        time.sleep(0.005)
    time.sleep(rng.uniform(0, delay))
    alive = p.poll() is None
    p.kill()
    p.wait()
    return alive


def finish_run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    T.check(p.returncode == 0, "rerun failed: %s" % p.stderr)
    return p.stderr


def meta_wo_times(store):
    m = json.load(open(os.path.join(store, "meta.json")))
    m.pop("timings", None)
    m.pop("created", None)
    return m


def same_store(a, b, what, job=False):
    fa, fb = np.load(os.path.join(a, "features.npy")), np.load(os.path.join(b, "features.npy"))
    T.check(fa.shape == fb.shape and fa.dtype == fb.dtype and np.array_equal(fa, fb),
            "%s: features differ from the uninterrupted run's (%s vs %s)" % (what, fa.shape, fb.shape))
    for name in ("features.npy", "manifest.tsv"):
        T.check(open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read(),
                "%s: %s not byte-identical" % (what, name))
    ma, mb = meta_wo_times(a), meta_wo_times(b)
    if job:  # the input is the job's own train.tsv / test.tsv
        ma["input"], mb["input"] = os.path.relpath(ma["input"], a), os.path.relpath(mb["input"], b)
    T.check(ma == mb, "%s: meta.json differs: %s" % (what, [k for k in ma if ma.get(k) != mb.get(k)]))
    T.check(not os.path.exists(os.path.join(a, "shards")), "%s: the shards folder is left behind" % what)


ref = os.path.join(w, "ref")
T.run(extract_cmd(mA, ref)[1:])
man = T.read_tsv(os.path.join(ref, "manifest.tsv"))
T.check([r["status"] for r in man].count("failed") == 1 and [r["status"] for r in man].count("skipped") == 1,
        "the reference has one failed and one skipped line")

# ---- killed again and again at random points, then run to the end -------------------------------
k = os.path.join(w, "k")
kills = 0
for cycle in range(4):  # each time a little further (or at once: a kill before any shard is written)
    if not killed_at(extract_cmd(mA, k), k, min(4, records(k) + rng.randint(0, 2)), delay=0.1):
        break
    kills += 1
T.check(kills >= 1, "the extraction was killed mid-job (%d times)" % kills)
had = records(k)
err = finish_run(extract_cmd(mA, k))
if had == 5:  # killed during the join, every shard complete: nothing is extracted again, only joined
    T.check("resuming:" not in err and "extracting its images again" not in err,
            "the rerun after a kill in the join extracted images again: %s" % err)
elif had:  # the complete shards are kept: only the others' images are extracted
    T.check("resuming: %d of 5 shards (%d images) already extracted, %d images to go" % (had, min(17, 4 * had), 17 - min(17, 4 * had))
            in err, "the rerun resumes after the %d complete shards: %s" % (had, err))
same_store(k, ref, "killed %d times" % kills)

# ---- damaged shards are extracted again ---------------------------------------------------------
d = os.path.join(w, "damaged")
killed_at(extract_cmd(mA, d), d, 3)
T.check(records(d) >= 3, "three shards complete before the kill")
npy0 = os.path.join(d, "shards", "000000.npy")
b = bytearray(open(npy0, "rb").read())
b[-3] ^= 0x40  # one bit of a feature
open(npy0, "wb").write(bytes(b))
tsv1 = os.path.join(d, "shards", "000001.tsv")
open(tsv1, "ab").write(b"x")
err = finish_run(extract_cmd(mA, d))
T.check("000000.npy: not the file its record" in err, "the damaged features are named: %s" % err)
T.check("000001.tsv: not the file its record" in err, "the damaged manifest lines are named: %s" % err)
same_store(d, ref, "damaged shards")

# ---- another model: the shards are dropped, with the reason ----------------------------------------
refB = os.path.join(w, "refB")
T.run(extract_cmd(mB, refB)[1:])
o = os.path.join(w, "other")
killed_at(extract_cmd(mA, o), o, 2)
err = finish_run(extract_cmd(mB, o))
T.check("other settings (model_sha256 differs): starting over" in err, "a changed model is named: %s" % err)
same_store(o, refB, "model changed between kill and rerun")

# ---- an image of a complete shard changed: that shard is extracted again ---------------------------
data2 = os.path.join(w, "data2")
shutil.copytree(data, data2)
c = os.path.join(w, "changed")
killed_at(extract_cmd(mA, c, data2), c, 2)
T.check(records(c) >= 2, "two shards complete before the kill")
T.photo_like(160, 120, 1, 999).save(os.path.join(data2, "class_00", "img_001.jpg"), quality=90)
err = finish_run(extract_cmd(mA, c, data2))
T.check("000000.json: its images are not the listing's" in err, "the changed shard is named: %s" % err)
fresh = os.path.join(w, "fresh2")
T.run(extract_cmd(mA, fresh, data2)[1:])
same_store(c, fresh, "an image changed between kill and rerun")
T.check(not np.array_equal(np.load(os.path.join(c, "features.npy"))[1], np.load(os.path.join(ref, "features.npy"))[1]),
        "the changed image has new features")

# ---- imgsim run, killed in its gallery extraction ---------------------------------------------------
def run_cmd(out):
    return [T.CLI, "run", data, "--model=" + mA, "--out=" + out, "--test-size=0.25", "--quiet"] + OPTS


jref = os.path.join(w, "jobref")
T.run(run_cmd(jref)[1:])
job = os.path.join(w, "job")
T.check(killed_at(run_cmd(job), os.path.join(job, "gallery"), rng.randint(1, 2)), "run killed mid-gallery")
finish_run(run_cmd(job))
for s in ("gallery", "queries"):
    same_store(os.path.join(job, s), os.path.join(jref, s), "run: " + s, job=True)
T.check(open(os.path.join(job, "results.tsv"), "rb").read() == open(os.path.join(jref, "results.tsv"), "rb").read(),
        "run: results.tsv equals the uninterrupted run's")
T.finish()
