"""Search never answers wrongly with exit 0 (issue 12):
 - a store made with --no-normalize is searched by cosine (every image its own top-1, results equal
   numpy's cosine top-k); --metric=dot gives numpy's raw inner-product top-k; dedup likewise;
 - a store holding a NaN or an infinity is refused, naming the row and its path (search, dedup);
 - a store without meta.json (a killed extract) given as --query or --gallery is refused as
   incomplete, not read as an image folder;
 - a k far above the gallery size runs in bounded memory (peak RSS measured) and gives exactly the
   results of k = n."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

import testlib as T

w = T.workdir()
data = os.path.join(w, "data")
T.make_dataset(data, 3, 4, seed=4, sizes=((96, 80), (120, 96)))
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=5", "--out=" + model])
norm = os.path.join(w, "norm")
raw = os.path.join(w, "raw")
T.run(["extract", "--model=" + model, "--out=" + norm, "--batch-size=4", "--quiet", data])
T.run(["extract", "--model=" + model, "--out=" + raw, "--batch-size=4", "--no-normalize", "--quiet", data])


def rows_paths(store):
    man = [m for m in T.read_tsv(os.path.join(store, "manifest.tsv")) if m["status"] == "ok"]
    return {int(m["row"]): m["path"] for m in man}


def results(path):
    out = {}
    for r in T.read_tsv(path):
        out.setdefault(r["query_path"], []).append((int(r["rank"]), r["match_path"], float(r["score"])))
    return {q: sorted(v) for q, v in out.items()}


def topk_ref(G, Q, k):
    S = Q.astype(np.float64) @ G.astype(np.float64).T
    return [np.lexsort((np.arange(len(G)), -S[i]))[:k] for i in range(len(Q))], S


# ---- an unnormalised store: cosine by default, raw inner product with --metric=dot ----------------
F = np.load(os.path.join(raw, "features.npy")).astype(np.float64)
norms = np.linalg.norm(F, axis=1)
T.check(norms.std() / norms.mean() > 1e-3, "the --no-normalize rows should differ in norm: %s" % norms[:5])
T.check(json.load(open(os.path.join(raw, "meta.json")))["normalized"] is False, "meta.json of --no-normalize says normalized")
T.check(json.load(open(os.path.join(norm, "meta.json")))["normalized"] is True, "meta.json of a normal store")
paths = rows_paths(raw)
K = 4
for metric, ref in (("cosine", F / norms[:, None]), ("dot", F)):
    out = os.path.join(w, "res_%s.tsv" % metric)
    args = ["search", "--gallery=" + raw, "--query=" + raw, "--out=" + out, "--k=%d" % K, "--quiet"]
    if metric == "dot":
        args.append("--metric=dot")
    T.run(args)
    res = results(out)
    order, S = topk_ref(ref, ref, K)
    for i in range(len(F)):
        got = res[paths[i]]
        T.check([m for _, m, _ in got] == [paths[j] for j in order[i]], "%s: %s: %s, numpy %s" % (metric, paths[i], got, [paths[j] for j in order[i]]))
        T.check(np.allclose([s for _, _, s in got], S[i, order[i]], rtol=1e-5, atol=2e-6), "%s scores of %s" % (metric, paths[i]))
        if metric == "cosine":
            T.check(got[0][1] == paths[i], "cosine: %s is not its own top-1: %s" % (paths[i], got[0]))
    if metric == "cosine":
        m = json.load(open(os.path.join(w, "res_cosine.metrics.json")))
        T.check(m.get("metric") == "cosine", "metrics name the metric: %s" % m.get("metric"))
# the raw inner product does rank some image below another (else the check above proves nothing)
order_dot, _ = topk_ref(F, F, 1)
T.check(any(order_dot[i][0] != i for i in range(len(F))), "raw dot product never misranks here: the test is weak")
bad = T.run(["search", "--gallery=" + raw, "--query=" + raw, "--out=" + os.path.join(w, "x.tsv"), "--metric=l2"], check=False)
T.check(bad.returncode == 2 and "--metric" in bad.stderr, "unknown --metric: %d %s" % (bad.returncode, bad.stderr))

# dedup of the unnormalised store compares cosines (each score <= 1), as numpy does
pairs_out = os.path.join(w, "pairs.json")
T.run(["dedup", raw, "--threshold=0.5", "--out=" + pairs_out, "--quiet"])
pairs = json.load(open(pairs_out))
U = F / norms[:, None]
C = U @ U.T
want = {(i, j) for i in range(len(F)) for j in range(i + 1, len(F)) if C[i, j] >= 0.5}
row_of = {p: i for i, p in paths.items()}
got = {(row_of[a], row_of[b]) for a, lst in pairs.items() for b, _ in lst}
T.check(got == want, "dedup pairs by cosine: %d got, %d numpy" % (len(got), len(want)))
T.check(all(s <= 1 + 1e-5 for lst in pairs.values() for _, s in lst), "dedup scores above 1: raw dot product")

# ---- NaN / Inf rows are refused with the row and its path ------------------------------------------
npaths = rows_paths(norm)
for name, dtype, val, row in (("nan32", np.float32, np.nan, 3), ("inf16", np.float16, np.inf, 7)):
    bad_store = os.path.join(w, name)
    shutil.copytree(norm, bad_store)
    f = np.load(os.path.join(bad_store, "features.npy")).astype(dtype)
    f[row, 5] = val
    np.save(os.path.join(bad_store, "features.npy"), f)
    meta = json.load(open(os.path.join(bad_store, "meta.json")))
    meta["dtype"] = "float16" if dtype == np.float16 else "float32"
    json.dump(meta, open(os.path.join(bad_store, "meta.json"), "w"))
    for args in (["search", "--gallery=" + bad_store, "--query=" + norm, "--out=" + os.path.join(w, "n.tsv")],
                 ["search", "--gallery=" + norm, "--query=" + bad_store, "--out=" + os.path.join(w, "n.tsv")],
                 ["dedup", bad_store]):
        p = T.run(args, check=False)
        T.check(p.returncode == 1 and ("row %d" % row) in p.stderr and npaths[row] in p.stderr and "NaN" in p.stderr,
                "%s %s: rc %d: %s" % (name, args[0], p.returncode, p.stderr))

# ---- an incomplete store (no meta.json) is refused, not read as a folder of images ---------------
inc = os.path.join(w, "incomplete")
os.makedirs(inc)
for f in ("features.npy", "manifest.tsv"):
    shutil.copy(os.path.join(norm, f), inc)
for args in (["--gallery=" + norm, "--query=" + inc], ["--gallery=" + inc, "--query=" + norm]):
    out = os.path.join(w, "inc.tsv")
    if os.path.exists(out):
        os.remove(out)
    p = T.run(["search"] + args + ["--out=" + out, "--model=" + model], check=False)
    T.check(p.returncode == 1 and "incomplete" in p.stderr and inc in p.stderr, "incomplete store %s: rc %d: %s" % (args, p.returncode, p.stderr))
    T.check(not os.path.exists(out), "incomplete store: results written")

# ---- k far above the gallery: memory bounded, same results as k = n -------------------------------
n = len(npaths)


def peak_rss_kb(args):
    """Runs the CLI in a child of a fresh Python and returns the child's peak RSS (KiB)."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "sys.stderr.buffer.write(p.stderr)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if p.returncode == 0 else -1)\n")
    out = subprocess.run([sys.executable, "-c", code, T.CLI] + args, capture_output=True, text=True)
    return int(out.stdout.strip()), out.stderr


rss = {}
for k in (n, 1 << 20):
    rss[k], err = peak_rss_kb(["search", "--gallery=" + norm, "--query=" + norm, "--out=" + os.path.join(w, "k%d.tsv" % k),
                               "--k=%d" % k, "--quiet"])
    T.check(rss[k] > 0, "search --k=%d failed: %s" % (k, err))
same = open(os.path.join(w, "k%d.tsv" % n)).read() == open(os.path.join(w, "k%d.tsv" % (1 << 20))).read()
T.check(same, "k = 2^20 and k = n give different results")
# 2^20 x 12 queries x 12 bytes of results alone is 150 MB; allow 32 MB over k = n
T.check(rss[1 << 20] < rss[n] + 32 * 1024, "peak RSS %d KiB with k = 2^20, %d KiB with k = n" % (rss[1 << 20], rss[n]))
print("peak RSS (KiB): k=n %d, k=2^20 %d" % (rss[n], rss[1 << 20]))
T.finish()
