"""One writer per output folder, and readers never accept a mixed store (issue 12):
 - while another process holds a folder's write lock (.imgsim.lock), `extract --out=` and
   `run --out=` into it fail at once, naming that process's pid;
 - two `extract` started together into one --out (different models): when they overlap, the second
   fails with that message; the store left behind opens, and its features, manifest and meta.json
   all come from one of them (equal to that model's reference store);
 - a store whose features.npy or manifest.tsv is not the one its meta.json was written with (files
   of two extractions mixed, or edited) is refused;
 - an extract killed with SIGKILL leaves an incomplete store (refused) and temporary files (in the
   store and in its shards/); the next extract into that folder removes them (also `run` for its
   own folder) and succeeds."""
import fcntl
import glob
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np

import testlib as T

w = T.workdir()
data = os.path.join(w, "data")
T.make_dataset(data, 3, 8, seed=9, sizes=((160, 120),))
mA, mB = os.path.join(w, "a.onnx"), os.path.join(w, "b.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=1", "--out=" + mA])
T.run(["model", "init", "--arch=resnet18", "--seed=2", "--out=" + mB])
SLOW = ["--threads=1", "--workers=1", "--batch-size=1", "--quiet"]  # long enough to overlap
refA, refB = os.path.join(w, "refA"), os.path.join(w, "refB")
T.run(["extract", "--model=" + mA, "--out=" + refA, "--quiet", data])
T.run(["extract", "--model=" + mB, "--out=" + refB, "--quiet", data])


def same_store(a, b):
    """Features (to float rounding: batch sizes and threads differ), manifest and model of a and b
    agree (the two models' features differ by far more)."""
    fa, fb = np.load(os.path.join(a, "features.npy")), np.load(os.path.join(b, "features.npy"))
    ma, mb = (open(os.path.join(s, "manifest.tsv"), "rb").read() for s in (a, b))
    sa, sb = (json.load(open(os.path.join(s, "meta.json")))["model"]["sha256"] for s in (a, b))
    return fa.shape == fb.shape and np.allclose(fa, fb, atol=1e-5) and ma == mb and sa == sb


def opens(store):
    return T.run(["search", "--gallery=" + store, "--query=" + store, "--out=" + os.path.join(w, "chk.tsv"), "--quiet"],
                 check=False)


def extract(model, out, extra=()):
    return subprocess.Popen([T.CLI, "extract", "--model=" + model, "--out=" + out] + list(extra) + [data],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---- a held lock: extract and run fail at once, naming the holder ------------------------------
held = os.path.join(w, "held")
os.makedirs(held)
lf = open(os.path.join(held, ".imgsim.lock"), "w")
fcntl.flock(lf, fcntl.LOCK_EX | fcntl.LOCK_NB)
lf.write("%d\n" % os.getpid())
lf.flush()
for args in (["extract", "--model=" + mA, "--out=" + held, data], ["run", data, "--model=" + mA, "--out=" + held]):
    p = T.run(args, check=False)
    T.check(p.returncode == 1 and ("pid %d" % os.getpid()) in p.stderr and "another process" in p.stderr,
            "%s into a locked folder: rc %d: %s" % (args[0], p.returncode, p.stderr))
    T.check(not os.path.exists(os.path.join(held, "features.npy")), "%s wrote into a locked folder" % args[0])
lf.close()  # released: now it works
T.check(T.run(["extract", "--model=" + mA, "--out=" + held, "--quiet", data], check=False).returncode == 0,
        "extract after the lock was released")

# ---- two concurrent extracts into one --out ------------------------------------------------------
conflicts = 0
for rnd in range(2):
    out = os.path.join(w, "both%d" % rnd)
    a = extract(mA, out, SLOW)
    if rnd == 0:  # the second starts once the first holds the lock
        lock = os.path.join(out, ".imgsim.lock")
        t0 = time.time()
        while time.time() - t0 < 120 and a.poll() is None:
            if os.path.exists(lock) and open(lock).read().strip() == str(a.pid):
                break
            time.sleep(0.05)
    b = extract(mB, out, SLOW)
    ea, eb = a.communicate(timeout=600)[1], b.communicate(timeout=600)[1]
    T.check(a.returncode == 0 or b.returncode == 0, "round %d: both extracts failed: %s / %s" % (rnd, ea, eb))
    for loser, err, winner in ((a, ea, b), (b, eb, a)):
        if loser.returncode != 0:  # it overlapped the other: it names it, and wrote nothing
            conflicts += 1
            T.check(("pid %d" % winner.pid) in err and "another process" in err,
                    "round %d: the failed extract does not name pid %d: %s" % (rnd, winner.pid, err))
    p = opens(out)
    T.check(p.returncode == 0, "round %d: the store left by two writers does not open: %s" % (rnd, p.stderr))
    T.check(same_store(out, refA) or same_store(out, refB), "round %d: the store mixes the two extractions" % rnd)
T.check(conflicts >= 1, "the extracts never overlapped (the first was too quick): the test proves nothing")

# ---- mixed or edited files are refused -------------------------------------------------------------
mixed = os.path.join(w, "mixed")
shutil.copytree(refB, mixed)
shutil.copy(os.path.join(refA, "features.npy"), os.path.join(mixed, "features.npy"))  # same shape, A's rows
p = opens(mixed)
T.check(p.returncode == 1 and "features.npy" in p.stderr and "meta.json" in p.stderr, "features of another extraction: %s" % p.stderr)
edited = os.path.join(w, "edited")
shutil.copytree(refB, edited)
man = open(os.path.join(edited, "manifest.tsv"), "rb").read()
open(os.path.join(edited, "manifest.tsv"), "wb").write(man.replace(b"\tclass_01\t", b"\tclass_02\t", 1))
p = opens(edited)
T.check(p.returncode == 1 and "manifest.tsv" in p.stderr, "an edited manifest: %s" % p.stderr)

# ---- SIGKILL mid-extract: incomplete store refused, leftovers removed by the next writer ---------
killed = os.path.join(w, "killed")
a = extract(mA, killed, SLOW + ["--shard-size=2"])
t0 = time.time()  # (the rows go to shards first: killed/shards/, test_resume.py; kill once one is written)
while time.time() - t0 < 120 and a.poll() is None and not glob.glob(os.path.join(killed, "shards", "0*.json")):
    time.sleep(0.05)
os.kill(a.pid, signal.SIGKILL)
a.wait()
# what a writer killed while renaming leaves (a shard's temporary files live a moment only)
tmp = [os.path.join(killed, "features.npy.tmp.%d" % a.pid), os.path.join(killed, "shards", "000001.npy.tmp.%d" % a.pid)]
for f in tmp:
    open(f, "w").write("partial")
T.check(not os.path.exists(os.path.join(killed, "meta.json")), "a killed extract left meta.json")
p = opens(killed)
T.check(p.returncode == 1 and "incomplete" in p.stderr, "the killed store: %s" % p.stderr)
T.run(["extract", "--model=" + mA, "--out=" + killed, "--quiet", data])
T.check(not any(os.path.exists(f) for f in tmp), "leftovers remain: %s" % [f for f in tmp if os.path.exists(f)])
T.check(same_store(killed, refA), "the store re-extracted after the kill differs from the reference")
job = os.path.join(w, "job")
os.makedirs(job)
for f in ("summary.json.tmp.99999", "results.tsv.tmp.12345"):
    open(os.path.join(job, f), "w").write("partial")
open(os.path.join(job, "notes.tmp.txt"), "w").write("not ours")  # not a NAME.tmp.PID file: kept
T.run(["run", data, "--model=" + mA, "--out=" + job, "--k=2", "--quiet"])
T.check(not glob.glob(os.path.join(job, "*.tmp.[0-9]*")), "run left leftovers: %s" % glob.glob(os.path.join(job, "*.tmp.*")))
T.check(os.path.exists(os.path.join(job, "notes.tmp.txt")), "run removed a file that is not a leftover")
T.finish()
