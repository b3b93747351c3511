"""imgsim serve over HTTP on 127.0.0.1 (bounded: a few hundred requests, each with a timeout):
1. POST /search of each query image (raw body and multipart) gives the same matches as
   `imgsim search` of the same images (paths in order, scores within 1e-5), and POST /embed gives
   features whose numpy top-k against the gallery's features.npy is the same again.
2. 20 concurrent clients x 50 requests: every answer 200 and equal to the reference, and
   /stats counts them, with batches of more than one image (dynamic batching).
3. Corrupt, truncated, oversized (over --max-upload), over --max-pixels, non-image and empty
   uploads and a bad k each get a 4xx whose JSON names the reason; the server keeps serving.
4. Thumbnails: a gallery path gives a JPEG of that image (PIL decodes it; mean colour close to
   the original's); path traversal and paths outside the gallery get 404.
5. SIGTERM ends it with status 0 within 2 s, also with requests in flight.
Parts 2-5 run again, smaller, on the AddressSanitizer build where there is one."""
import io
import os
import sys
import threading
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib as S  # noqa: E402
import testlib as T  # noqa: E402

S.need_serve()
w = T.workdir()
data, qdir = os.path.join(w, "data"), os.path.join(w, "queries")
T.make_dataset(data, 4, 6, seed=3, sizes=((96, 72), (120, 90), (72, 96)))
qitems = T.make_dataset(qdir, 4, 2, seed=4, sizes=((96, 72), (120, 90)))
model = S.tiny_model(os.path.join(w, "tiny.onnx"))
gal = os.path.join(w, "gallery")
T.run(["extract", "--model=" + model, "--out=" + gal, data, "--quiet"])
K = 5
res = os.path.join(w, "res.tsv")
T.run(["search", "--gallery=" + gal, "--query=" + qdir, "--out=" + res, "--k=%d" % K, "--quiet"])
ref = {}
for r in T.read_tsv(res):
    ref.setdefault(r["query_path"], []).append((r["match_path"], float(r["score"])))
qpaths = [p for p, _ in qitems]  # relative to qdir, as the results write them
qbytes = {p: open(os.path.join(qdir, p), "rb").read() for p in qpaths}
assert sorted(ref) == sorted(qpaths), (sorted(ref)[:3], qpaths[:3])
gfeat = np.load(os.path.join(gal, "features.npy")).astype(np.float64)
gman = {int(m["row"]): m["path"] for m in T.read_tsv(os.path.join(gal, "manifest.tsv")) if m["status"] == "ok"}


def same_matches(got, want, what):
    T.check([m["path"] for m in got] == [p for p, _ in want], "%s: paths %s != %s" % (what, [m["path"] for m in got], want))
    T.check(all(abs(m["score"] - s) < 1e-5 for m, (_, s) in zip(got, want)), "%s: scores differ" % what)


def exercise(cli, clients, per_client, label):
    srv = S.Server(["--gallery=" + gal, "--max-upload=300000", "--max-pixels=1000000", "--batch-window-ms=5",
                    "--timeout=60"], cli=cli)
    try:
        # 1. equality with imgsim search
        if clients == 20:
            for p in qpaths:
                st, j = srv.json("POST", "/search?k=%d" % K, qbytes[p])
                T.check(st == 200, "search %s: status %d" % (p, st))
                same_matches(j["matches"], ref[p], "raw " + p)
                body, ct = S.multipart("image", os.path.basename(p), qbytes[p], {"k": str(K)})
                st, j = srv.json("POST", "/search", body, {"Content-Type": ct})
                T.check(st == 200, "multipart %s: status %d" % (p, st))
                same_matches(j["matches"], ref[p], "multipart " + p)
                st, j = srv.json("POST", "/embed", qbytes[p])
                v = np.array(j["embedding"], np.float64)
                T.check(st == 200 and len(v) == gfeat.shape[1], "embed %s" % p)
                s = gfeat @ v
                order = np.lexsort((np.arange(len(s)), -s))[:K]
                T.check([gman[i] for i in order] == [q for q, _ in ref[p]], "embed %s: numpy top-k differs" % p)
            # a threshold halfway between the 2nd and 3rd scores (served scores agree to 1e-5)
            tq = [p for p in qpaths if ref[p][1][1] - ref[p][2][1] > 1e-4]
            T.check(bool(tq), "a query whose 2nd and 3rd scores differ by more than 1e-4")
            if tq:
                thr = (ref[tq[0]][1][1] + ref[tq[0]][2][1]) / 2
                st, j = srv.json("POST", "/search?k=3&threshold=%.9f" % thr, qbytes[tq[0]])
                T.check(st == 200 and len(j["matches"]) == 2, "threshold keeps the matches at or above it: %s" % j)

        # 2. concurrent clients
        errors = []
        sizes = []

        def client(c):
            for i in range(per_client):
                p = qpaths[(c * per_client + i) % len(qpaths)]
                try:
                    st, j = srv.json("POST", "/search?k=%d" % K, qbytes[p], timeout=60)
                except Exception as ex:  # noqa: BLE001
                    errors.append("%s: %r" % (p, ex))
                    continue
                if st != 200 or [m["path"] for m in j["matches"]] != [q for q, _ in ref[p]]:
                    errors.append("%s: status %d %s" % (p, st, str(j)[:200]))
                else:
                    sizes.append(j["batch_size"])
        before = srv.json("GET", "/stats")[1]
        th = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in th:
            t.start()
        for t in th:
            t.join(120)
        T.check(not any(t.is_alive() for t in th), "%s: clients still running after 120 s" % label)
        T.check(not errors, "%s: %d of %d concurrent requests failed: %s" % (label, len(errors), clients * per_client, errors[:3]))
        after = srv.json("GET", "/stats")[1]
        n = clients * per_client
        T.check(after["requests"]["search"] - before["requests"]["search"] == n, "%s: /stats counted %s" % (label, after["requests"]))
        T.check(after["batches"]["images"] - before["batches"]["images"] == n, "%s: batches hold %s" % (label, after["batches"]))
        T.check(max(sizes or [0]) > 1, "%s: no batch of more than one image under %d clients" % (label, clients))
        T.check(after["latency_ms"]["count"] >= n and after["latency_ms"]["p50"] <= after["latency_ms"]["p99"],
                "%s: latency stats %s" % (label, after["latency_ms"]))

        # 3. bad uploads
        good = qbytes[qpaths[0]]
        noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
        big = io.BytesIO()
        Image.fromarray(noise).save(big, "PNG")
        many = io.BytesIO()
        Image.new("RGB", (1200, 1000), (10, 120, 30)).save(many, "PNG")
        corrupt = bytearray(good)
        corrupt[200:] = bytes(len(corrupt) - 200)
        cases = [("corrupt JPEG", bytes(corrupt), 400, None), ("truncated JPEG", good[:len(good) // 2], 400, "truncated"),
                 ("oversized", big.getvalue(), 413, "max-upload"), ("too many pixels", many.getvalue(), 413, "pixels"),
                 ("not an image", b"hello, this is plain text and no image at all\n" * 4, 415, "not a JPEG"),
                 ("empty", b"", 400, "empty")]
        for name, body, code, word in cases:
            st, j = srv.json("POST", "/search", body)
            T.check(st == code and st < 500, "%s: status %d, expected %d (%s)" % (name, st, code, j))
            T.check(isinstance(j.get("error"), str) and len(j["error"]) > 10 and (not word or word in j["error"]),
                    "%s: reason %r" % (name, j.get("error")))
            st2, j2 = srv.json("POST", "/search?k=%d" % K, good)
            T.check(st2 == 200 and [m["path"] for m in j2["matches"]] == [q for q, _ in ref[qpaths[0]]],
                    "after %s the server still answers" % name)
        st, j = srv.json("POST", "/search?k=zero", good)
        T.check(st == 400 and "k" in j["error"], "bad k: %d %s" % (st, j))
        body, ct = S.multipart("other", "x.txt", b"")
        st, j = srv.json("POST", "/search", body.replace(b'filename="x.txt"', b""), {"Content-Type": ct})
        T.check(st == 400 and "file" in j["error"], "multipart without a file: %d %s" % (st, j))
        st, _, _ = srv.request("GET", "/search")
        T.check(st == 405, "GET /search: %d" % st)

        # 4. thumbnails and traversal
        p0 = gman[0]
        st, h, b = srv.request("GET", "/thumb?path=" + p0)
        T.check(st == 200 and h.get("Content-Type") == "image/jpeg", "thumbnail of %s: %d %s" % (p0, st, h))
        if st == 200:
            t = Image.open(io.BytesIO(b)).convert("RGB")
            o = Image.open(os.path.join(data, p0)).convert("RGB")
            T.check(max(t.size) <= 160 and abs(t.size[0] / t.size[1] - o.size[0] / o.size[1]) < 0.1, "thumb size %s" % (t.size,))
            diff = np.abs(np.asarray(t, np.float64).mean((0, 1)) - np.asarray(o, np.float64).mean((0, 1))).max()
            T.check(diff < 6, "thumbnail mean colour differs from the image's by %.1f" % diff)
        rel = os.path.relpath("/etc/passwd", os.path.dirname(os.path.join(data, p0)))
        for bad in ["/thumb?path=/etc/passwd", "/thumb?path=" + os.path.join(os.path.dirname(p0), rel),
                    "/thumb?path=" + os.path.join(data, p0),
                    "/thumb?path=../../../../../../etc/passwd", "/thumb/../../../../etc/passwd", "/thumb/%2e%2e/%2e%2e/etc/passwd",
                    "/thumb?path=" + p0 + "/../../../../etc/passwd", "/thumb?path=" + os.path.dirname(p0), "/thumb",
                    "/../../../../etc/passwd", "/thumb?path=" + os.path.join(qdir, qitems[0][0])]:
            st, h, b = srv.request("GET", bad)
            T.check(st == 404 and b"root:" not in b, "%s: status %d" % (bad, st))
        T.check(srv.request("GET", "/health")[0] == 200, "health after the bad requests")

        # 5. SIGTERM with requests in flight
        inflight = [threading.Thread(target=lambda: srv.request("POST", "/search", good, timeout=10)) for _ in range(4)]
        for t in inflight:
            t.start()
        time.sleep(0.05)
        rc, dt = srv.stop()
        for t in inflight:
            t.join(10)
        T.check(rc == 0, "%s: exit status %s after SIGTERM\n%s" % (label, rc, srv.drain_log()[-2000:]))
        T.check(dt < 2.0, "%s: took %.2f s to exit after SIGTERM" % (label, dt))
    finally:
        srv.stop(9)


exercise(T.CLI, 20, 50, "release build")
if T.CLI_ASAN:
    exercise(T.CLI_ASAN, 4, 10, "ASan build")
T.finish()
