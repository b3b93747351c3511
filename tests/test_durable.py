"""--durable (issue 12 item 6): every file of a store is fsynced before it is renamed into place and
its folder after, as strace sees the system calls (the independent observer here):
 - extract --durable: for every file renamed into the store (each shard's .npy/.tsv/.json, then
   features.npy, manifest.tsv, inputs.tsv, meta.json) an fsync of the temporary file's descriptor
   comes before its rename and an fsync of a descriptor on its folder after;
 - extract --durable --layout=sharded: the same for each features-K.npy and manifest-K.tsv;
 - extract without it: no fsync at all; the two stores are byte for byte the same;
 - run: durable by default (its stores' files fsynced), --no-durable turns it off.
Skipped (77) without strace."""
import os
import re
import shutil
import subprocess

import testlib as T

strace = shutil.which("strace")
if not strace:
    T.skip("no strace")
w = T.workdir()
data = os.path.join(w, "data")
T.make_dataset(data, 2, 5, seed=4, sizes=((96, 72), (72, 96)))
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=2", "--out=" + model])


def traced(args, name):
    log = os.path.join(w, name + ".strace")
    p = subprocess.run([strace, "-f", "-qq", "-e", "trace=openat,open,fsync,fdatasync,rename,renameat,renameat2,close",
                        "-o", log, T.CLI] + args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return open(log).read().splitlines()


def check_durable(lines, root):
    """Every rename into root: its temporary file fsynced before, its folder fsynced after."""
    fd_path = {}  # (pid, fd) -> path, while open
    synced = set()  # paths whose descriptor was fsynced
    renames = []
    dir_syncs = []  # (index, path of the folder fsynced)
    for i, ln in enumerate(lines):
        m = re.match(r"(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)", ln)
        if not m:
            continue
        pid, call, args, ret = m.group(1), m.group(2), m.group(3), int(m.group(4))
        if call in ("openat", "open") and ret >= 0:
            path = re.search(r'"([^"]*)"', args).group(1)
            fd_path[(pid, ret)] = path
        elif call == "close":
            fd_path.pop((pid, int(args.split(",")[0])), None)
        elif call in ("fsync", "fdatasync") and ret == 0:
            path = fd_path.get((pid, int(args)))
            if path:
                synced.add(os.path.abspath(path))
                dir_syncs.append((i, os.path.abspath(path)))
        elif call.startswith("rename") and ret == 0:
            src, dst = re.findall(r'"([^"]*)"', args)[:2]
            renames.append((i, os.path.abspath(src), os.path.abspath(dst)))
    ours = [r for r in renames if r[2].startswith(os.path.abspath(root) + os.sep)]
    assert ours, "no file renamed into %s" % root
    for i, src, dst in ours:
        assert src in synced, "%s: renamed into place without an fsync of %s" % (dst, src)
        d = os.path.dirname(dst)
        assert any(j > i and p == d for j, p in dir_syncs), "%s: its folder %s not fsynced after the rename" % (dst, d)
    return ours, len([1 for _, p in dir_syncs if p.startswith(os.path.abspath(root))])


a = os.path.join(w, "durable")
lines = traced(["extract", "--model=" + model, "--out=" + a, "--durable", "--shard-size=4", "--quiet", data], "a")
ours, n_sync = check_durable(lines, a)
names = sorted(set(os.path.basename(d) for _, _, d in ours))
print("extract --durable: %d files renamed into the store, each fsynced before and its folder after (%s)"
      % (len(ours), ", ".join(names)))
for f in ("features.npy", "manifest.tsv", "inputs.tsv", "meta.json"):
    assert f in names, (f, names)
assert any(n.endswith(".npy") and n != "features.npy" for n in names), names  # the shards

s = os.path.join(w, "sharded")  # --layout=sharded: each features-K.npy and manifest-K.tsv too
lines = traced(["extract", "--model=" + model, "--out=" + s, "--durable", "--shard-size=4", "--batch-size=2", "--layout=sharded", "--quiet",
                data], "s")
ours, _ = check_durable(lines, s)
names = sorted(set(os.path.basename(d) for _, _, d in ours))
for f in ("features-00000.npy", "manifest-00000.tsv", "features-00002.npy", "manifest-00002.tsv", "meta.json"):
    assert f in names, (f, names)
print("extract --durable --layout=sharded: %d files renamed into the store, each fsynced (%s)" % (len(ours), ", ".join(names)))

b = os.path.join(w, "plain")
lines = traced(["extract", "--model=" + model, "--out=" + b, "--shard-size=4", "--quiet", data], "b")
fs = [ln for ln in lines if re.search(r"\b(fsync|fdatasync)\(", ln)]
assert not fs, "extract without --durable called fsync: %s" % fs[:3]
for f in ("features.npy", "manifest.tsv", "inputs.tsv"):
    assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f
print("extract without --durable: no fsync; the two stores byte for byte the same")

job = os.path.join(w, "job")
lines = traced(["run", data, "--model=" + model, "--out=" + job, "--k=2", "--quiet"], "run")
ours, _ = check_durable(lines, os.path.join(job, "gallery"))
check_durable(lines, os.path.join(job, "queries"))
job2 = os.path.join(w, "job2")
lines = traced(["run", data, "--model=" + model, "--out=" + job2, "--k=2", "--no-durable", "--quiet"], "run2")
assert not [ln for ln in lines if re.search(r"\b(fsync|fdatasync)\(", ln)], "run --no-durable called fsync"
print("run: its stores durable by default; --no-durable: no fsync")
print("ok")
