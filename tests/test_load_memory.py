#!/usr/bin/env python3
"""test_load_memory.py: loading a model and building the CPU engine holds a bounded number of
copies of the weights at the peak (issue 19 item 7), and the Gemm layouts compute what numpy does.

A Gemm-heavy random model (~140 MB of float32 weights: 768 -> 4096 with transB 0 and alpha 0.5, 4096 ->
4096 with transB 1, 4096 -> 4096 with transB 0, each + bias + ReLU) runs through `imgsim bench` under
/usr/bin/time (model load, engine build, one batch-1 run); its peak RSS less that of the same model with 64-wide
layers (the process's own baseline: libraries, threads) must stay within 1.85x the file's bytes.
Measured on the dev machine: 1.63x; 2.09x before the CPU engine stopped making a float32
temporary of each Gemm's weights (the import's two copies, the file's bytes and protobuf-c's
unpacked one, are still the peak of a model whose largest layer is a small part of it). Not a
timing: RSS is counted in pages and varies little between runs. Then the features of 3 random images against numpy
in float64: relative L2 <= 1e-5 per image.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402

try:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
except ImportError as ex:  # pragma: no cover
    testlib.skip("needs numpy and onnx: %s" % ex)

TIME = "/usr/bin/time"
if not os.access(TIME, os.X_OK):
    testlib.skip("needs GNU time (%s) to measure a process's peak RSS" % TIME)
WORK = testlib.workdir("load_memory")
IN = (3, 16, 16)


def mlp(path, hidden, seed):
    """x [n, 3, 16, 16] -> Flatten -> 3 Gemm + ReLU (the layouts above) -> Gemm head [n, 10].
    Returns the weights as numpy arrays (B, C, transB, alpha) for the reference."""
    rng = np.random.default_rng(seed)
    k0 = int(np.prod(IN))
    layers = [(k0, hidden, 0, 0.5), (hidden, hidden, 1, 1.0), (hidden, hidden, 0, 1.0)]
    inits, nodes, ref, x = [], [helper.make_node("Flatten", ["input"], ["f"])], [], "f"
    for i, (k, m, tb, alpha) in enumerate(layers):
        b = (rng.standard_normal((m, k) if tb else (k, m)) / np.sqrt(k)).astype(np.float32)
        c = rng.standard_normal(m).astype(np.float32) * 0.1
        inits += [numpy_helper.from_array(b, "B%d" % i), numpy_helper.from_array(c, "C%d" % i)]
        nodes += [helper.make_node("Gemm", [x, "B%d" % i, "C%d" % i], ["g%d" % i], transB=tb, alpha=alpha),
                  helper.make_node("Relu", ["g%d" % i], ["r%d" % i])]
        ref.append((b, c, tb, alpha))
        x = "r%d" % i
    head = rng.standard_normal((10, hidden)).astype(np.float32)
    inits.append(numpy_helper.from_array(head, "H"))
    nodes.append(helper.make_node("Gemm", [x, "H"], ["output"], transB=1))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n"] + list(IN))],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 10])], initializer=inits)
    mod = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    mod.ir_version = 8
    open(path, "wb").write(mod.SerializeToString())
    return ref


def peak_mb(path):
    """The CLI's peak RSS in MB, through /usr/bin/time: a process forked from this Python would
    start with the interpreter's high-water mark (Linux keeps it across exec), a grandchild forked
    from time(1) does not."""
    p = testlib.run(["-f", "peak_kb %M", testlib.CLI, "bench", "--model=" + path, "--batch-size=1", "--threads=2",
                     "--iterations=1", "--warmup=0", "--json"], cli=TIME)
    kb = [ln for ln in p.stderr.splitlines() if ln.startswith("peak_kb ")]
    json.loads(p.stdout.strip().splitlines()[-1])  # the bench ran
    return int(kb[-1].split()[1]) / 1024.0


big, small = os.path.join(WORK, "big.onnx"), os.path.join(WORK, "small.onnx")
ref = mlp(big, 4096, 1)
mlp(small, 64, 1)
file_mb = os.path.getsize(big) / (1 << 20)
base = min(peak_mb(small) for _ in range(2))
peak = min(peak_mb(big) for _ in range(2))
ratio = (peak - base) / file_mb
print("file %.1f MiB; peak RSS %.1f MB, baseline %.1f MB: %.2fx the file" % (file_mb, peak, base, ratio))
testlib.check(ratio <= 1.85, "peak RSS less baseline is %.2fx the model file's bytes (bound 1.85x)" % ratio)

# the features (the classifier's input: the third ReLU) against numpy, float64
x = np.random.default_rng(2).random((3, int(np.prod(IN))), dtype=np.float32)
inp, out = os.path.join(WORK, "x.npy"), os.path.join(WORK, "y.npy")
np.save(inp, x)
testlib.run(["bench", "--model=" + big, "--input=" + inp, "--dump=" + out, "--no-normalize", "--threads=2"])
got = np.load(out).astype(np.float64)
h = x.astype(np.float64)
for b, c, tb, alpha in ref:
    w = b.astype(np.float64)
    h = np.maximum(alpha * (h @ (w.T if tb else w)) + c, 0)
for i in range(len(x)):
    err = np.linalg.norm(got[i] - h[i]) / max(np.linalg.norm(h[i]), 1e-30)
    testlib.check(err <= 1e-5, "image %d: relative L2 %.3g > 1e-5" % (i, err))
testlib.finish()
