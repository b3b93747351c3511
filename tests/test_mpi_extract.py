"""imgsim extract under mpirun (Open MPI, CPU), issue 15: the listing's shards are dealt to the
ranks by file size, each rank writes its own shards of the one store and rank 0 joins them.
 - -np 1, 2 and 3 give the store one process gives: features.npy and manifest.tsv byte for byte
   (compared with numpy and as bytes; a failed and a skipped input included), inputs.tsv, and
   meta.json but for its timings, creation time and engine name (which names the threads: a rank
   gets its share of the host's cores);
 - the deal is a function of the files, not of the order the file system lists them in: two
   folders of the same files created in opposite orders give every rank the same shards, and the
   deal is balanced (the largest rank's bytes exceed the smallest's by at most one shard's);
 - a rank killed with SIGKILL mid-extract ends the job on every rank within 30 s, mpirun naming the
   rank; the same command run again keeps the completed shards and gives the clean store;
 - a rank whose part fails (another model: its settings are not the job's) names its rank and
   host and ends the job on every rank (MPI_Abort); the rerun completes;
 - a store folder another writer holds: every rank stops within seconds, the message naming it.
Skipped (77) without MPI in this build or without mpirun."""
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib as T  # noqa: E402

mpirun = T.mpirun_or_skip()
w = T.workdir()
data, model = os.path.join(w, "data"), os.path.join(w, "m.onnx")
T.run(["synth", "--out=" + data, "--classes=3", "--per-class=6", "--min-side=48", "--max-side=200", "--seed=7",
       "--quiet"])
with open(os.path.join(data, "class_01", "bad.jpg"), "wb") as f:  # a failed row
    f.write(open(os.path.join(data, "class_01", "img_0000.jpg"), "rb").read()[:300])
with open(os.path.join(data, "class_02", "notes.txt"), "w") as f:  # a skipped line
    f.write("not an image\n")
T.run(["model", "init", "--arch=resnet18", "--seed=3", "--out=" + model])
OPTS = ["--batch-size=2", "--shard-size=2"]  # 19 inputs: 10 shards


def mpi(np_, args, timeout=120):
    return subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(np_), T.CLI] + args,
                          capture_output=True, text=True, timeout=timeout)


def extract_args(out, src=data, extra=()):
    return ["extract", "--model=" + model, "--out=" + out] + OPTS + list(extra) + [src]


def meta_core(store):
    m = json.load(open(os.path.join(store, "meta.json")))
    for key in ("timings", "created", "device_name"):
        m.pop(key, None)
    return m


def same_store(store, ref, label):
    ok = os.path.exists(os.path.join(store, "meta.json")) and not os.path.exists(os.path.join(store, "shards"))
    T.check(ok, "%s: a complete store without its shards folder" % label)
    if not ok:
        return
    a, b = np.load(os.path.join(store, "features.npy")), np.load(os.path.join(ref, "features.npy"))
    T.check(a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b),
            "%s: features differ from one process's (%s vs %s)" % (label, a.shape, b.shape))
    for name in ("features.npy", "manifest.tsv", "inputs.tsv"):
        T.check(open(os.path.join(store, name), "rb").read() == open(os.path.join(ref, name), "rb").read(),
                "%s: %s differs from one process's" % (label, name))
    T.check(meta_core(store) == meta_core(ref), "%s: meta.json differs beyond timings" % label)


ref = os.path.join(w, "ref")
T.run(extract_args(ref, extra=["--quiet"]))
man = T.read_tsv(os.path.join(ref, "manifest.tsv"))
T.check(any(r["status"] == "failed" for r in man) and any(r["status"] == "skipped" for r in man),
        "the reference has a failed and a skipped input")

for np_ in (1, 2, 3):
    out = os.path.join(w, "np%d" % np_)
    p = mpi(np_, extract_args(out))
    T.check(p.returncode == 0, "%d ranks: exit %d\n%s" % (np_, p.returncode, p.stderr[-2000:]))
    if p.returncode == 0:
        same_store(out, ref, "%d ranks" % np_)
        ranks = re.findall(r"rank (\d+) on \S+: (\d+) shards, (\d+) images", p.stderr)
        T.check(np_ == 1 or (len(ranks) == np_ and sum(int(r[2]) for r in ranks) == 19),
                "%d ranks: every rank reported its part, 19 images in all: %s" % (np_, ranks))

# the deal: the same files listed in other orders give the same ranks the same shards
src_files = sorted(os.path.relpath(os.path.join(d, f), data) for d, _, fs in os.walk(data) for f in fs)
deals = []
for name, order in (("fwd", src_files), ("rev", src_files[::-1])):
    root = os.path.join(w, "order_" + name)
    for rel in order:
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        shutil.copy2(os.path.join(data, rel), os.path.join(root, rel))
    out = os.path.join(w, "store_" + name)
    p = mpi(3, extract_args(out, root, ["--verbose"]))
    T.check(p.returncode == 0, "order %s: exit %d\n%s" % (name, p.returncode, p.stderr[-2000:]))
    deal = dict((int(r), s.split()) for r, s in re.findall(r"rank (\d+) of 3 on \S+: \d+ shards \(\d+ images\):([ \d]*)\n",
                                                            p.stderr))
    bytes_ = [int(b) for b in re.findall(r"rank \d+ on \S+: \d+ shards, \d+ images \((\d+) bytes\)", p.stderr)]
    deals.append((deal, bytes_))
    f = np.load(os.path.join(out, "features.npy"))
    T.check(np.array_equal(f, np.load(os.path.join(ref, "features.npy"))), "order %s: features differ" % name)
a, b = (open(os.path.join(w, "store_" + n, "manifest.tsv"), "rb").read().replace(os.path.join(w, "order_" + n).encode(), b"")
        for n in ("fwd", "rev"))  # (a failure's message names the file by its full path)
T.check(a == b, "the two orders give the same manifest")
T.check(len(deals[0][0]) == 3 and deals[0] == deals[1], "the deal differs with the listing order: %s" % deals)
shard_bytes = []
items = [r for r in man if r["status"] != "skipped"]
for k in range(0, len(items), 2):
    shard_bytes.append(sum(os.path.getsize(os.path.join(data, r["path"])) for r in items[k:k + 2]))
b = deals[0][1]
T.check(len(b) == 3 and sum(b) == sum(shard_bytes) and max(b) - min(b) <= max(shard_bytes),
        "the deal is balanced by bytes: %s (shards %s)" % (b, shard_bytes))
all_shards = sorted(int(k) for v in deals[0][0].values() for k in v)
T.check(all_shards == list(range(len(shard_bytes))), "every shard dealt once: %s" % all_shards)


# a rank killed mid-extract: the job ends on every rank, a rerun completes it
def children(pid):
    """{rank: pid} of the processes mpirun started (its children with an Open MPI rank)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % d).read()
            env = open("/proc/%s/environ" % d, "rb").read().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        for e in env:
            if e.startswith(b"OMPI_COMM_WORLD_RANK="):
                out[int(e.split(b"=", 1)[1])] = int(d)
    return out


def kill_and_rerun(kill, extra, same, label, before_rerun=None):
    """mpirun -np 3 extract into kill, rank 1 killed once 3 shards are complete, then (after
    before_rerun(kill)) the same command again: it keeps every shard completed (the resuming line
    counts them) and same(kill, label) checks the store."""
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "3", T.CLI] + \
          extract_args(kill, extra=["--threads=1", "--workers=1"] + list(extra))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < 120 and \
            len([f for f in os.listdir(os.path.join(kill, "shards")) if f.endswith(".json") and f[0].isdigit()]
                if os.path.isdir(os.path.join(kill, "shards")) else []) < 3:
        time.sleep(0.01)
    ranks = children(p.pid)
    T.check(p.poll() is None and 1 in ranks, "the job runs with its ranks when a rank is killed: %s" % ranks)
    if 1 in ranks:
        os.kill(ranks[1], 9)
        tk = time.time()
        try:
            out, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        dt = time.time() - tk
        T.check(p.returncode != 0, "killed rank: mpirun exit %d" % p.returncode)
        T.check(dt < 30, "the job ended %.1f s after the kill" % dt)
        T.check(re.search(r"rank 1\b", out) is not None, "the message names the killed rank: %s" % out[-1500:])

        def running(pid):
            try:
                return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                return False

        while time.time() - tk < 30 and any(running(pid) for pid in ranks.values()):  # (mpirun's SIGTERM lands)
            time.sleep(0.05)
        left = [r for r, pid in ranks.items() if running(pid)]
        T.check(not left, "every rank ended within 30 s of the kill: %s still running" % left)
        T.check(not os.path.exists(os.path.join(kill, "meta.json")), "the killed job left no complete store")
        if before_rerun:
            before_rerun(kill)
        complete = len([f for f in os.listdir(os.path.join(kill, "shards")) if re.match(r"\d+\.json$", f)])
        p = mpi(3, extract_args(kill, extra=extra))
        kept = re.search(r"resuming: (\d+) of 10 shards", p.stderr)
        T.check(kept is not None and int(kept.group(1)) == complete,
                "%sthe rerun kept the %d complete shards: %s" % (label, complete, p.stderr[-1500:]))
        T.check(p.returncode == 0, "rerun after the kill: exit %d\n%s" % (p.returncode, p.stderr[-2000:]))
        redone = sum(int(r) for r in re.findall(r"rank \d+ on \S+: \d+ shards, (\d+) images", p.stderr))
        T.check("resuming" in p.stderr and 0 < redone <= 19 - 6,
                "the rerun kept the completed shards (3 or more) and extracted %d images: %s" % (redone, p.stderr[-1500:]))
        if p.returncode == 0:
            same(kill, label + "rerun after the kill")
    else:
        p.kill()
        p.wait()


kill_and_rerun(os.path.join(w, "killed"), [], lambda s, l: same_store(s, ref, l), "")

# a rank whose part fails (MPMD: rank 1 runs another model, so its settings are not the job's):
# it names itself and its host, and MPI_Abort ends the job on every rank at once
other = os.path.join(w, "other.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=5", "--out=" + other])
bad = os.path.join(w, "badrank")
t0 = time.time()
p = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2", T.CLI] + extract_args(bad) +
                   [":", "-np", "1", T.CLI, "extract", "--model=" + other, "--out=" + bad] + OPTS + [data],
                   capture_output=True, text=True, timeout=120)
dt = time.time() - t0
T.check(p.returncode != 0 and dt < 60, "a failing part: exit %d after %.1f s" % (p.returncode, dt))
T.check(re.search(r"rank 2 of 3 on \S+ failed: .*model_sha256 differs", p.stderr) is not None,
        "the failed rank names itself, its host and why: %s" % p.stderr[-1500:])
p = mpi(3, extract_args(bad))
T.check(p.returncode == 0, "rerun after the failed part: exit %d\n%s" % (p.returncode, p.stderr[-1500:]))
if p.returncode == 0:
    same_store(bad, ref, "rerun after the failed part")

# a store folder another writer holds: every rank stops at once, naming it
held = os.path.join(w, "held")
os.makedirs(held)
fd = os.open(os.path.join(held, ".imgsim.lock"), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
t0 = time.time()
p = mpi(3, extract_args(held), timeout=60)
dt = time.time() - t0
os.close(fd)
T.check(p.returncode != 0 and dt < 30, "held store: exit %d after %.1f s" % (p.returncode, dt))
T.check("rank 0 of 3" in p.stderr and held in p.stderr, "the message names rank 0 and the store: %s" % p.stderr[-1500:])

# --layout=sharded: every rank's shards become the store's features-K.npy and manifest-K.tsv
# (renamed into place, the features not copied through rank 0), rank 0 writes the manifests' row
# numbers, inputs.tsv and meta.json last: one process's sharded store, byte for byte
SH = ["--layout=sharded"]
sref = os.path.join(w, "sref")
T.run(extract_args(sref, extra=SH + ["--quiet"]))


def shard_files(store):
    return sorted(f for f in os.listdir(store) if re.match(r"(features|manifest)-\d{5}\.(npy|tsv)$", f))


names = shard_files(sref)
T.check(len(names) == 20 and not os.path.exists(os.path.join(sref, "features.npy")),
        "one process's sharded store: 10 shards, no features.npy: %s" % names)
feats = [np.load(os.path.join(sref, f)) for f in names if f.startswith("features")]
T.check(np.array_equal(np.concatenate(feats), np.load(os.path.join(ref, "features.npy"))),
        "the sharded store's features end to end are the single store's (numpy)")
lines = [l for f in names if f.startswith("manifest") for l in open(os.path.join(sref, f)).read().splitlines()[1:]]
T.check(lines == open(os.path.join(ref, "manifest.tsv")).read().splitlines()[1:],
        "the sharded store's manifests end to end are the single store's manifest")


def same_sharded(store, label):
    ok = os.path.exists(os.path.join(store, "meta.json")) and not os.path.exists(os.path.join(store, "shards"))
    T.check(ok, "%s: a complete store without its shards folder" % label)
    if not ok:
        return
    T.check(shard_files(store) == names and not os.path.exists(os.path.join(store, "features.npy")),
            "%s: the shard files are one process's: %s" % (label, shard_files(store)))
    for name in names + ["inputs.tsv"]:
        a, b = os.path.join(store, name), os.path.join(sref, name)
        T.check(os.path.exists(a) and open(a, "rb").read() == open(b, "rb").read(),
                "%s: %s differs from one process's" % (label, name))
    T.check(meta_core(store) == meta_core(sref), "%s: meta.json differs beyond timings" % label)


for np_ in (2, 3):
    out = os.path.join(w, "sharded_np%d" % np_)
    p = mpi(np_, extract_args(out, extra=SH))
    T.check(p.returncode == 0, "sharded, %d ranks: exit %d\n%s" % (np_, p.returncode, p.stderr[-2000:]))
    if p.returncode == 0:
        same_sharded(out, "sharded, %d ranks" % np_)


def killed_finish(store):
    """As if rank 0's finish was killed after renaming one complete shard's features into place."""
    done = sorted(f for f in os.listdir(os.path.join(store, "shards")) if re.match(r"\d+\.json$", f))
    T.check(len(done) >= 3, "sharded kill: complete shards: %s" % done)
    if done:
        k = int(done[0].split(".")[0])
        os.rename(os.path.join(store, "shards", "%06d.npy" % k), os.path.join(store, "features-%05d.npy" % k))


kill_and_rerun(os.path.join(w, "sharded_killed"), SH, same_sharded, "sharded: ", killed_finish)

# search and dedup under mpirun over the sharded store: one process's results
s3 = os.path.join(w, "sharded_np3")
for args, name in ((["search", "--gallery=" + s3, "--query=" + s3, "--k=4"], "results.tsv"),
                   (["dedup", s3, "--threshold=0.5"], "pairs.json")):
    one, many = os.path.join(w, "one_" + name), os.path.join(w, "three_" + name)
    T.run(args + ["--out=" + one, "--quiet"])
    p = mpi(3, args + ["--out=" + many, "--quiet"])
    T.check(p.returncode == 0 and open(one, "rb").read() == open(many, "rb").read(),
            "%s over the sharded store: 3 ranks give one process's output (exit %d)\n%s" %
            (args[0], p.returncode, p.stderr[-1000:]))
    T.check(os.path.getsize(one) > 2, "%s: some output" % args[0])
T.finish()
