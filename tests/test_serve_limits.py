"""imgsim serve under overload, made deterministic with a long batch window (a batch waits up to
--batch-window-ms to fill, so the queued requests stay queued):
1. --queue=2: with two requests waiting, a third is refused at once with 503, a JSON error naming
   --queue and a Retry-After header; the two waiting ones are then answered 200, with the same
   matches as `imgsim search` of that image; /stats counts the 503.
2. --timeout=1: a request whose batch has not run after 1 s gets 504 naming --timeout, well before
   the batch window ends; the server keeps serving (/health 200, a search after it answers)."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib as S  # noqa: E402
import testlib as T  # noqa: E402

S.need_serve()
w = T.workdir()
data = os.path.join(w, "data")
items = T.make_dataset(data, 3, 3, seed=5, sizes=((96, 72), (72, 96)))
model = S.tiny_model(os.path.join(w, "tiny.onnx"))
gal = os.path.join(w, "gallery")
T.run(["extract", "--model=" + model, "--out=" + gal, data, "--quiet"])
qpath = items[0][0]
img = open(os.path.join(data, qpath), "rb").read()
res = os.path.join(w, "res.tsv")
T.run(["search", "--gallery=" + gal, "--query=" + os.path.join(data, os.path.dirname(qpath)), "--out=" + res,
       "--k=3", "--quiet"])
want = [r["match_path"] for r in T.read_tsv(res) if r["query_path"] == os.path.basename(qpath)]
T.check(len(want) == 3, "reference search: 3 matches for %s (%s)" % (qpath, want))

# 1. a full queue answers 503 at once
srv = S.Server(["--gallery=" + gal, "--batch-size=8", "--batch-window-ms=3000", "--queue=2", "--timeout=30"])
try:
    answers = []

    def waiting():
        answers.append(srv.json("POST", "/search?k=3", img, timeout=30))
    threads = [threading.Thread(target=waiting) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.time() + 2
    queued = 0
    while time.time() < deadline and queued < 2:
        queued = srv.json("GET", "/stats")[1].get("queue", {}).get("waiting", 0)
        time.sleep(0.05)
    T.check(queued == 2, "two requests queued (stats: %s)" % srv.json("GET", "/stats")[1])
    t0 = time.time()
    st, h, body = srv.request("POST", "/search?k=3", img, timeout=30)
    dt = time.time() - t0
    T.check(st == 503, "third request with --queue=2 full: status %d (%s)" % (st, body[:200]))
    T.check(dt < 1.0, "the 503 came at once (%.2f s), not after the batch window" % dt)
    T.check(b"--queue" in body and b"\"error\"" in body, "503 body names --queue: %s" % body[:200])
    T.check(h.get("Retry-After") == "1", "503 carries Retry-After: %s" % h)
    for t in threads:
        t.join(30)
    T.check(len(answers) == 2 and all(a[0] == 200 for a in answers), "the queued requests answered 200: %s"
            % [a[0] for a in answers])
    for st, j in answers:
        if st == 200:
            T.check([m["path"] for m in j["matches"]] == want, "queued request: matches %s == %s"
                    % ([m["path"] for m in j["matches"]], want))
    stats = srv.json("GET", "/stats")[1]
    T.check(stats["responses"]["503"] == 1, "/stats counts one 503: %s" % stats["responses"])
finally:
    srv.stop(9)

# 2. a request not answered within --timeout gets 504; the server goes on
srv = S.Server(["--gallery=" + gal, "--batch-size=8", "--batch-window-ms=6000", "--timeout=1"])
try:
    t0 = time.time()
    st, h, body = srv.request("POST", "/search?k=3", img, timeout=30)
    dt = time.time() - t0
    T.check(st == 504, "request under --timeout=1 with a 6 s batch window: status %d (%s)" % (st, body[:200]))
    T.check(0.9 < dt < 4.0, "504 after about 1 s (%.2f s)" % dt)
    T.check(b"--timeout" in body, "504 body names --timeout: %s" % body[:200])
    T.check(srv.request("GET", "/health")[0] == 200, "health after the 504")
    rc = srv.proc.poll()
    T.check(rc is None, "server still running after the 504 (exit %s)" % rc)
finally:
    srv.stop(9)
T.finish()
