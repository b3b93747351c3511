"""Nothing hangs (issue 12). Every command runs under a timeout that fails the test rather than
hanging CI:
 - a FIFO (named pipe with no writer) given to `preprocess`, as `search --query`, as --model, or
   named in a TSV list is refused with a message naming it (the list's other images are still
   extracted; the FIFO's manifest line says why it failed);
 - --threads and --workers far above the cores are capped, with a message, and the job completes;
 - the CLI makes OpenMP (oneDNN's threads) wait passively unless the user chose a policy or a
   spin count (libgomp's own report, OMP_DISPLAY_ENV)."""
import os
import subprocess

import testlib as T

TIMEOUT = int(os.environ.get("IMGSIM_HANG_TIMEOUT", "300"))  # generous: commands here take seconds


def run(args, env=None):
    e = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    try:
        return subprocess.run([T.CLI] + [str(a) for a in args], capture_output=True, text=True, env=e, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        T.check(False, "hung (killed after %d s): %s" % (TIMEOUT, " ".join(map(str, args))))
        return None


w = T.workdir()
data = os.path.join(w, "data")
T.make_dataset(data, 2, 3, seed=6, sizes=((96, 80),))
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=2", "--out=" + model])
gallery = os.path.join(w, "gallery")
T.run(["extract", "--model=" + model, "--out=" + gallery, "--quiet", data])

# ---- FIFOs --------------------------------------------------------------------------------------
fifo = os.path.join(w, "pipe.jpg")
os.mkfifo(fifo)
p = run(["preprocess", fifo, "--out=" + os.path.join(w, "x.npy")])
T.check(p is not None and p.returncode == 1 and fifo in p.stderr and "FIFO" in p.stderr, "preprocess FIFO: %s" % (p and p.stderr))
p = run(["search", "--gallery=" + gallery, "--query=" + fifo, "--out=" + os.path.join(w, "r.tsv")])
T.check(p is not None and p.returncode == 1 and fifo in p.stderr, "search --query=FIFO: %s" % (p and p.stderr))
p = run(["extract", "--model=" + fifo, "--out=" + os.path.join(w, "m"), data])
T.check(p is not None and p.returncode == 1 and fifo in p.stderr and "FIFO" in p.stderr, "--model=FIFO: %s" % (p and p.stderr))
lst = os.path.join(w, "list.tsv")
with open(lst, "w") as f:
    f.write("path\tlabel\npipe.jpg\ta\ndata/class_00/img_000.jpg\tb\n")
store = os.path.join(w, "listed")
p = run(["extract", "--model=" + model, "--out=" + store, "--quiet", lst])
T.check(p is not None and p.returncode == 0, "extract of a list naming a FIFO: %s" % (p and p.stderr))
if p is not None and p.returncode == 0:
    man = T.read_tsv(os.path.join(store, "manifest.tsv"))
    st = {m["path"]: (m["status"], m["error"]) for m in man}
    T.check(st.get("data/class_00/img_000.jpg", ("",))[0] == "ok", "the list's image: %s" % st)
    T.check(st.get("pipe.jpg", ("",))[0] == "failed" and "FIFO" in st["pipe.jpg"][1], "the list's FIFO: %s" % st)

# ---- threads far above the cores: capped with a message, and the job completes -------------------
cores = len(os.sched_getaffinity(0))
many = 64 * cores
p = run(["run", data, "--model=" + model, "--out=" + os.path.join(w, "job"), "--threads=%d" % many,
         "--workers=%d" % many, "--test-size=0.34", "--k=2"])
T.check(p is not None and p.returncode == 0, "run --threads=%d: %s" % (many, p and p.stderr[-2000:]))
if p is not None:
    cap = 4 * cores if 4 * cores > 4 else 4
    for opt in ("threads", "workers"):
        T.check("%s=%d is far more than the %d cores: using %d" % (opt, many, cores, cap) in p.stderr,
                "no cap message for --%s: %s" % (opt, p.stderr[-2000:]))
    T.check(", %d threads)" % cap in p.stderr, "the engine does not report %d threads: %s" % (cap, p.stderr[-2000:]))

# ---- OpenMP waits passively, unless the user chose ---------------------------------------------------
# libgomp prints its settings when it starts (OMP_DISPLAY_ENV); the spin count of the process that
# runs the command (the last one printed) is 0 when waiting is passive
for env, want in (({"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}, "'0'"), ({"OMP_WAIT_POLICY": "active"}, "'30000000000'"),
                  ({"GOMP_SPINCOUNT": "1234"}, "'1234'")):
    e = {"OMP_DISPLAY_ENV": "verbose"}
    e.update(env)
    for cmd in (["extract", "--help"], ["bench", "--help"]):
        p = run(cmd, env=e)
        spins = [l.split("=")[1].strip() for l in (p.stdout + p.stderr).splitlines() if "GOMP_SPINCOUNT" in l] if p else []
        T.check(spins and spins[-1] == want, "%s %s: libgomp's GOMP_SPINCOUNT %s, want %s" % (env, cmd[0], spins, want))
T.finish()
