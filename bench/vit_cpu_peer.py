#!/usr/bin/env python3
"""vit_cpu_peer.py: ONNX Runtime on the CPU, the peer of bench/vit_cpu.sh (one configuration per
process so that its peak RSS is its own).

    vit_cpu_peer.py MODEL.onnx --batch=8 --threads=2 --iterations=5 --warmup=2

Runs the whole model (every graph optimisation ORT has, ORT_ENABLE_ALL; intra-op threads as
given, one inter-op thread, sequential execution) on a random float32 batch; prints one JSON
object: median and minimum latency in ms, images/s from the median, peak RSS in MB.
"""
import argparse
import json
import resource
import time

import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--iterations", type=int, default=5)
ap.add_argument("--warmup", type=int, default=2)
a = ap.parse_args()

so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [a.batch] + [int(d) for d in inp.shape[1:]]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
for _ in range(a.warmup):
    sess.run(None, {inp.name: x})
ts = []
for _ in range(a.iterations):
    t = time.perf_counter()
    sess.run(None, {inp.name: x})
    ts.append((time.perf_counter() - t) * 1e3)
ts.sort()
med = ts[len(ts) // 2] if len(ts) % 2 else 0.5 * (ts[len(ts) // 2 - 1] + ts[len(ts) // 2])
print(json.dumps({"engine": "onnxruntime %s" % ort.__version__, "batch": a.batch, "threads": a.threads,
                  "latency_ms_median": med, "latency_ms_min": ts[0], "images_per_s": a.batch / med * 1e3,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
