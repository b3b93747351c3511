"""imgsim search under mpirun (Open MPI, CPU): with 1, 2 and 3 ranks results.tsv is byte-identical
to the one-process search (every rank searches its share of the gallery's rows, rank 0 merges
exactly), also with duplicated gallery images (exact ties, broken by lower row across the rank
boundaries), k above a rank's share of rows, and a --no-normalize gallery searched by cosine and
by --metric=dot; a rank-0 failure (missing query folder) ends every rank with a non-zero status
within seconds. Skipped (77) without MPI in this build or without mpirun."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib as S  # noqa: E402
import testlib as T  # noqa: E402

mpirun = T.mpirun_or_skip()
w = T.workdir()
data, qdir = os.path.join(w, "data"), os.path.join(w, "queries")
items = T.make_dataset(data, 3, 5, seed=21, sizes=((96, 72), (72, 96)))
for p, _ in items[:4]:  # exact duplicates: ties of equal scores at rows far apart
    src = os.path.join(data, p)
    shutil.copy(src, os.path.join(os.path.dirname(src), "dup_" + os.path.basename(src)))
T.make_dataset(qdir, 3, 2, seed=22, sizes=((96, 72),))
model = S.tiny_model(os.path.join(w, "tiny.onnx"))
gal, raw = os.path.join(w, "gallery"), os.path.join(w, "raw")
T.run(["extract", "--model=" + model, "--out=" + gal, data, "--quiet"])
T.run(["extract", "--model=" + model, "--out=" + raw, data, "--quiet", "--no-normalize"])


def mpi(np_, args, timeout=120):
    t0 = time.time()
    p = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(np_), T.CLI] + args,
                       capture_output=True, text=True, timeout=timeout)
    return p, time.time() - t0


for label, g, extra, k in (("cosine k=5", gal, [], 5), ("k=12 over a rank's share", gal, [], 12),
                           ("no-normalize cosine", raw, [], 4), ("no-normalize dot", raw, ["--metric=dot"], 4)):
    ref = os.path.join(w, "ref.tsv")
    T.run(["search", "--gallery=" + g, "--query=" + qdir, "--out=" + ref, "--k=%d" % k, "--quiet"] + extra)
    want = open(ref, "rb").read()
    for np_ in (1, 2, 3):
        out = os.path.join(w, "np%d.tsv" % np_)
        p, _ = mpi(np_, ["search", "--gallery=" + g, "--query=" + qdir, "--out=" + out, "--k=%d" % k, "--quiet"] + extra)
        T.check(p.returncode == 0, "%s, %d ranks: exit %d\n%s" % (label, np_, p.returncode, p.stderr[-1500:]))
        if p.returncode == 0:
            T.check(open(out, "rb").read() == want, "%s, %d ranks: results.tsv differs from one process" % (label, np_))

p, dt = mpi(3, ["search", "--gallery=" + gal, "--query=" + os.path.join(w, "missing"), "--out=" + os.path.join(w, "x.tsv")])
T.check(p.returncode != 0, "missing query folder under 3 ranks: exit %d" % p.returncode)
T.check(dt < 30, "the failed job ended on every rank in %.1f s" % dt)
T.check("missing" in p.stderr, "the message names the folder: %s" % p.stderr[-800:])
T.finish()
