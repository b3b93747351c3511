"""serve_load.py: the load generator of serve_load.sh (see there). Clients are processes (no GIL
between them), each with one keep-alive HTTP connection to 127.0.0.1."""
import argparse
import http.client
import multiprocessing as mp
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def client(port, bodies, start, stop_at, count, out):
    lat, errors = [], 0
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = start
    while len(lat) + errors < count and time.time() < stop_at:
        t0 = time.perf_counter()
        try:
            c.request("POST", "/search?k=5", body=bodies[i % len(bodies)])
            r = c.getresponse()
            r.read()
            ok = r.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        if ok:
            lat.append((time.perf_counter() - t0) * 1e3)
        else:
            errors += 1
        i += 1
    c.close()
    out.put((lat, errors))


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(-(-p * len(v) // 100)) - 1))] if v else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--gallery-size", type=int, default=500)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batch-window-ms", type=float, default=2)
    ap.add_argument("--keep", default=None)
    a = ap.parse_args()
    w = a.keep or tempfile.mkdtemp(prefix="imgsim-serve-load-")
    os.makedirs(w, exist_ok=True)
    try:
        model = os.path.join(w, a.arch + ".onnx")
        if not os.path.exists(model):
            run([a.cli, "model", "init", "--arch=" + a.arch, "--out=" + model])
        gdata, qdata, gal = os.path.join(w, "gdata"), os.path.join(w, "qdata"), os.path.join(w, "gallery")
        if not os.path.exists(gdata):
            run([a.cli, "synth", "--out=" + gdata, "--classes=10", "--per-class=%d" % max(1, a.gallery_size // 10),
                 "--min-side=200", "--max-side=400", "--seed=1", "--quiet"])
            run([a.cli, "synth", "--out=" + qdata, "--classes=8", "--per-class=%d" % max(1, a.queries // 8),
                 "--min-side=200", "--max-side=400", "--seed=2", "--quiet"])
        dev = ["--device=" + a.device]
        if not os.path.exists(os.path.join(gal, "meta.json")):
            run([a.cli, "extract", "--model=" + model, "--out=" + gal, gdata, "--quiet"] + dev)
        qfiles = sorted(os.path.join(r, f) for r, _, fs in os.walk(qdata) for f in fs)
        bodies = [open(f, "rb").read() for f in qfiles]

        # the same queries as one batch job
        t0 = time.perf_counter()
        p = run([a.cli, "search", "--gallery=" + gal, "--query=" + qdata, "--out=" + os.path.join(w, "batch.tsv"),
                 "--k=5"] + dev)
        batch_s = time.perf_counter() - t0
        rate = [l for l in p.stderr.splitlines() if "images/s" in l and "queries:" in l]
        print("batch: imgsim search of %d query images: %.2f s for the whole command (model load, extraction, search)%s"
              % (len(bodies), batch_s, "; " + rate[-1].strip() if rate else ""))

        srv = subprocess.Popen([a.cli, "serve", "--gallery=" + gal, "--port=0", "--batch-size=%d" % a.batch_size,
                                "--batch-window-ms=%g" % a.batch_window_ms, "--queue=4096"] + dev,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port, log, deadline = None, b"", time.time() + 300
        while port is None and time.time() < deadline and srv.poll() is None:
            if select.select([srv.stderr], [], [], 0.5)[0]:
                log += os.read(srv.stderr.fileno(), 65536)
                for l in log.decode(errors="replace").splitlines():
                    if "listening on http://127.0.0.1:" in l:
                        port = int(l.split("127.0.0.1:")[1].split("/")[0])
                        print(l.strip())
        if port is None:
            sys.exit("serve_load: the server did not start:\n" + log.decode(errors="replace"))
        try:
            # warm-up: one request per batch size the engine may see first
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            for b in bodies[:4]:
                c.request("POST", "/search?k=5", body=b)
                c.getresponse().read()
            c.close()
            print("%8s %10s %10s %10s %10s %8s %10s" % ("clients", "requests", "req/s", "p50 ms", "p99 ms", "errors", "mean batch"))
            base = None
            for n in [int(x) for x in a.clients.split(",")]:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("GET", "/stats")
                s0 = __import__("json").loads(c.getresponse().read())
                q = mp.Queue()
                per = max(1, a.requests // n)
                t0 = time.time()
                ps = [mp.Process(target=client, args=(port, bodies, i * 7, t0 + a.seconds, per, q)) for i in range(n)]
                for x in ps:
                    x.start()
                res = [q.get(timeout=a.seconds + 120) for _ in ps]
                for x in ps:
                    x.join()
                dt = time.time() - t0
                c.request("GET", "/stats")
                s1 = __import__("json").loads(c.getresponse().read())
                c.close()
                lat = [v for l, _ in res for v in l]
                err = sum(e for _, e in res)
                nb = s1["batches"]["count"] - s0["batches"]["count"]
                mb = (s1["batches"]["images"] - s0["batches"]["images"]) / nb if nb else 0
                rps = len(lat) / dt
                base = base or rps
                print("%8d %10d %10.1f %10.1f %10.1f %8d %10.2f   (%.2fx the 1-client rate)" %
                      (n, len(lat), rps, pct(lat, 50), pct(lat, 99), err, mb, rps / base))
        finally:
            srv.terminate()
            srv.wait(10)
    finally:
        if not a.keep:
            shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
