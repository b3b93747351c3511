"""The peers of bench/cpu_models.sh: ONNX Runtime (CPU execution provider) and PyTorch eager on the
CPU, same protocol as `imgsim bench` (random input, --warmup untimed runs, then --iterations
timed runs of one batch each; one JSON object with the same fields).

  ort-bench MODEL.onnx --batch-size=N --threads=T [--iterations=K] [--warmup=W] [--profile=OUT.json]
      ONNX Runtime on the file (ORT_ENABLE_ALL, intra-op T threads, inter-op 1, sequential).
      --profile: also runs ONNX Runtime's profiler over the timed runs and writes the per-op-type
      and per-node times (ms per run) to OUT.json (not timed: the profiler costs a little).
  torch-bench --arch=NAME --batch-size=N --threads=T [...]
      torchvision's model with the weights of the exported file (tools/export_torchvision.py's
      seed 0 and --randomize-bn), eval(), torch.inference_mode, eager (NCHW, as users run it).
  ort-load MODEL.onnx --threads=T [--repeat=R]
      seconds of ort.InferenceSession creation (file read, graph optimisation, kernel creation
      and weight pre-packing), R times in this process: {"load_seconds": [..]}.
  flops MODEL.onnx
      multiply-accumulates per image of the Conv, Gemm and MatMul nodes (shapes inferred at
      batch 1): {"gmac": .., "gflop": ..}.
  dnnl-profile VERBOSE.log RUNS
      oneDNN's verbose exec lines (ONEDNN_VERBOSE=1 of an `imgsim bench` run) summed per
      primitive kind and per layer shape, ms per run: JSON.
"""
import argparse
import collections
import json
import os
import resource
import sys
import time

import numpy as np


def stats(lat, batch, threads, peer):
    lat = np.array(lat)
    return {
        "peer": peer, "batch_size": batch, "threads": threads, "iterations": len(lat),
        "images_per_s": batch * len(lat) / lat.sum(),
        "latency_ms_median": float(np.median(lat) * 1e3),
        "latency_ms_p90": float(np.percentile(lat, 90) * 1e3),
        "latency_ms_p99": float(np.percentile(lat, 99) * 1e3),
        "latency_ms_min": float(lat.min() * 1e3),
        "latency_ms_mean": float(lat.mean() * 1e3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def timed(fn, warmup, iterations):
    for _ in range(warmup):
        fn()
    lat = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    return lat


def ort_session(path, threads, profile=None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def input_shape(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    x = [i for i in m.graph.input if i.name not in init][0]
    return [d.dim_value for d in x.type.tensor_type.shape.dim[1:]]


def rand_input(batch, chw):
    return np.random.default_rng(0).uniform(-2, 2, [batch] + list(chw)).astype(np.float32)


def ort_bench(a):
    import onnxruntime as ort
    s = ort_session(a.model, a.threads)
    name = s.get_inputs()[0].name
    x = rand_input(a.batch_size, input_shape(a.model))
    lat = timed(lambda: s.run(None, {name: x}), a.warmup, a.iterations)
    out = stats(lat, a.batch_size, a.threads, "onnxruntime %s CPU" % ort.__version__)
    if a.profile:
        prefix = a.profile + ".trace"
        p = ort_session(a.model, a.threads, profile=prefix)
        p.run(None, {name: x})  # warm-up, dropped below: only the last `iterations` runs count
        for _ in range(a.iterations):
            p.run(None, {name: x})
        trace = p.end_profiling()
        ev = json.load(open(trace))
        runs = [e for e in ev if e.get("cat") == "Session" and e.get("name") == "model_run"]
        t_first = runs[1]["ts"] if len(runs) > 1 else 0
        by_op, by_node = collections.Counter(), collections.Counter()
        for e in ev:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < t_first:
                continue
            op = e.get("args", {}).get("op_name", "?")
            by_op[op] += e["dur"] / 1e3 / a.iterations
            by_node[op + " " + e["name"][:-len("_kernel_time")]] += e["dur"] / 1e3 / a.iterations
        json.dump({"by_op": by_op.most_common(), "by_node": by_node.most_common(40)}, open(a.profile, "w"), indent=1)
        os.remove(trace)
    print(json.dumps(out))


def torch_bench(a):
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
    import export_torchvision as E
    torch.set_num_threads(a.threads)
    model = E.build_model(a.arch, "none", 0)  # the weights cpu_models.sh exported (seed 0, --randomize-bn)
    E.randomize_bn(model, 0)
    model.eval()
    x = torch.from_numpy(rand_input(a.batch_size, [3, a.image_size, a.image_size]))
    with torch.inference_mode():
        lat = timed(lambda: model(x), a.warmup, a.iterations)
    print(json.dumps(stats(lat, a.batch_size, a.threads, "torch %s eager" % torch.__version__)))


def ort_load(a):
    import onnxruntime as ort
    t = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        s = ort_session(a.model, a.threads)
        t.append(time.perf_counter() - t0)
        del s
    print(json.dumps({"peer": "onnxruntime %s" % ort.__version__, "load_seconds": t,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def flops(a):
    import onnx
    from onnx import shape_inference
    m = onnx.load(a.model)
    for i in m.graph.input:
        d = i.type.tensor_type.shape.dim
        if d and not d[0].dim_value:
            d[0].dim_value = 1
    m = shape_inference.infer_shapes(m)
    shape = {}
    for v in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        shape[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    for t in m.graph.initializer:
        shape[t.name] = list(t.dims)
    mac = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            w, y = shape[n.input[1]], shape[n.output[0]]
            mac += int(np.prod(y)) * int(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            y, b = shape[n.output[0]], shape[n.input[1]]
            trans = n.op_type == "Gemm" and any(at.name == "transB" and at.i for at in n.attribute)
            k = b[-1] if trans else b[-2]
            mac += int(np.prod(y)) * k
    print(json.dumps({"gmac": mac / 1e9, "gflop": 2 * mac / 1e9}))


def dnnl_profile(a):
    """Sums oneDNN 2.x verbose exec lines: dnnl_verbose,exec,cpu,KIND,IMPL,PROP,MDS,ATTRS,ALG,DESC,MS."""
    by_kind, by_layer, total = collections.Counter(), collections.Counter(), 0.0
    for line in open(a.log, errors="replace"):
        f = line.rstrip("\n").split(",")
        if len(f) < 11 or f[0] not in ("dnnl_verbose", "onednn_verbose") or f[1] != "exec":
            continue
        kind, impl, desc, ms = f[3], f[4], f[-2], float(f[-1])
        if kind == "convolution" and desc.startswith("g"):
            g = desc[1:].split("m")[0]
            ic = desc.split("ic")[1].split("oc")[0] if "ic" in desc else "?"
            kind = "convolution depthwise" if g == ic else "convolution grouped"
        elif kind == "convolution":
            kind = "convolution 1x1" if "kh1" in desc and "kw1" in desc else "convolution kxk"
        attrs = f[7].replace("attr-post-ops:", "").strip()
        by_kind[kind] += ms / a.runs
        by_layer["%s %s %s %s" % (kind, impl, desc, attrs)] += ms / a.runs
        total += ms / a.runs
    print(json.dumps({"total_ms": total, "by_kind": by_kind.most_common(),
                      "by_layer": by_layer.most_common(25)}, indent=1))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ort-bench", "torch-bench"):
        p = sub.add_parser(name)
        if name == "ort-bench":
            p.add_argument("model")
            p.add_argument("--profile")
        else:
            p.add_argument("--arch", required=True)
            p.add_argument("--image-size", type=int, default=224)
        p.add_argument("--batch-size", type=int, default=1)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--iterations", type=int, default=10)
        p.add_argument("--warmup", type=int, default=2)
    p = sub.add_parser("ort-load")
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p = sub.add_parser("flops")
    p.add_argument("model")
    p = sub.add_parser("dnnl-profile")
    p.add_argument("log")
    p.add_argument("runs", type=float)
    a = ap.parse_args()
    {"ort-bench": ort_bench, "torch-bench": torch_bench, "ort-load": ort_load, "flops": flops,
     "dnnl-profile": dnnl_profile}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
