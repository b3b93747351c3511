"""gpu_vs_torch.py: ResNet-50 model-only throughput on one GPU, imgsim's CUDA engine against
PyTorch eager, in the same run on the same GPU (run through bench/gpu_vs_torch.sh).

Measures, with the input already on the device for both:
  - the GPU's FP16 matrix peak: a large torch fp16 matmul (median of timed runs);
  - PyTorch eager: torchvision resnet50 (random weights), .half(), channels_last,
    cudnn.benchmark=True, inference_mode, at batch 1, 32, 256 (CUDA-event timing);
  - imgsim fp16 and tf32 engines at the same batches (tests/test_cuda_run --bench: CUDA-graph
    replays on the engine's device input, no host copies);
  - engine build time (imgsim engine build) and cached-engine load to first batch.
Prints a table; ResNet-50 = 8.2 GFLOP per image (2 x 4.1 GMAC) for the % of peak.
"""
import os
import subprocess
import sys
import time

GFLOP_PER_IMAGE = 8.2
BATCHES = (1, 32, 256)


def sh(cmd, **kw):
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.time() - t
    if p.returncode != 0:
        print(p.stdout)
        print(p.stderr)
        raise SystemExit("failed: " + " ".join(cmd))
    return p, dt


def kv_lines(text):
    kv, bench = {}, {}
    for line in text.splitlines():
        if line.startswith("bench "):
            f = dict(x.split("=") for x in line.split()[1:])
            bench[int(f["batch"])] = float(f["ms"])
        elif "=" in line:
            k, v = line.split("=", 1)
            kv[k] = v
    return kv, bench


def torch_part(onnx_path):
    import torch
    import torchvision

    torch.manual_seed(0)
    dev = torch.device("cuda")
    # peak: 8192^3 fp16 matmul
    a = torch.randn(8192, 8192, device=dev, dtype=torch.half)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.half)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    peak = 2 * 8192 ** 3 / (ts[len(ts) // 2] * 1e-3)
    del a, b

    m = torchvision.models.resnet50()
    m.eval()
    x = torch.randn(1, 3, 224, 224)
    kw = dict(opset_version=13, input_names=["input"], output_names=["output"],
              dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}})
    try:
        torch.onnx.export(m, x, onnx_path, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(m, x, onnx_path, **kw)

    torch.backends.cudnn.benchmark = True
    mh = m.half().to(dev).to(memory_format=torch.channels_last)
    res = {}
    with torch.inference_mode():
        for n in BATCHES:
            xi = torch.randn(n, 3, 224, 224, device=dev).half().to(memory_format=torch.channels_last)
            for _ in range(10):
                mh(xi)
            torch.cuda.synchronize()
            iters = 200 if n == 1 else (50 if n == 32 else 20)
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(iters):
                mh(xi)
            e.record()
            e.synchronize()
            res[n] = s.elapsed_time(e) / iters
    return peak, res, torch.cuda.get_device_name(0)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build-gpu"
    work = os.environ.get("BENCH_DIR", "/tmp/imgsim_bench_gpu")
    os.makedirs(work, exist_ok=True)
    cli = os.path.join(build, "imgsim")
    drv = os.path.join(build, "tests", "test_cuda_run")
    onnx_path = os.path.join(work, "resnet50.onnx")
    peak, tres, gpu = torch_part(onnx_path)
    import numpy as np

    x1 = os.path.join(work, "x1.npy")
    np.save(x1, np.random.default_rng(0).standard_normal((1, 3 * 224 * 224)).astype(np.float32))
    out1 = os.path.join(work, "f1.npy")

    rows = []
    info = {}
    for prec in ("fp16", "tf32"):
        efile = os.path.join(work, "r50_%s.engine" % prec)
        pb, build_s = sh([cli, "engine", "build", "-v", "--model=" + onnx_path, "--device=cuda", "--precision=" + prec,
                          "--batch-size=256", "--out=" + efile])
        print("---- imgsim engine build -v (%s)" % prec)
        print(pb.stderr + pb.stdout)
        pi, _ = sh([cli, "engine", "info", efile])
        print(pi.stdout)
        t = time.time()
        p, _ = sh([drv, "--model=" + onnx_path, "--precision=" + prec, "--max-batch=256", "--engine-file=" + efile,
                   "--input=" + x1, "--out=" + out1, "--verbose=1"])
        wall = time.time() - t
        print("---- cached load (%s)" % prec)
        print(p.stderr + p.stdout)
        kv, _ = kv_lines(p.stdout)
        assert kv["loaded_from_file"] == "1", kv
        # the same through imgsim_engine_load: the cached engine without importing the model
        t = time.time()
        pf, _ = sh([drv, "--model=" + onnx_path, "--precision=" + prec, "--max-batch=256", "--engine-file=" + efile,
                    "--input=" + x1, "--out=" + out1, "--fast-load=1"])
        fast_wall = time.time() - t
        kvf, _ = kv_lines(pf.stdout)
        assert kvf["loaded_from_file"] == "1", kvf
        print("---- cached load without model import (%s)" % prec)
        print(pf.stderr + pf.stdout)
        p, _ = sh([drv, "--model=" + onnx_path, "--precision=" + prec, "--max-batch=256", "--engine-file=" + efile,
                   "--bench=1,32,256", "--iters=50"])
        _, bench = kv_lines(p.stdout)
        if prec == "fp16":  # the same without CUDA graphs (direct launches), for comparison
            pg, _ = sh([drv, "--model=" + onnx_path, "--precision=" + prec, "--max-batch=256", "--engine-file=" + efile,
                        "--bench=1,32,256", "--iters=50"], env=dict(os.environ, IMGSIM_CUDA_GRAPHS="0"))
            _, nog = kv_lines(pg.stdout)
            for n in BATCHES:
                rows.append(("imgsim fp16 nograph", n, nog[n]))
        info[prec] = dict(build_s=build_s, model_load=float(kv["model_load_seconds"]),
                          first=float(kv["first_batch_seconds"]), wall=wall,
                          mem=int(kv["device_bytes"]) / 2 ** 20, fast_first=float(kvf["first_batch_seconds"]),
                          fast_wall=fast_wall, fast_imported=kvf.get("model_imported", "?"))
        for n in BATCHES:
            rows.append(("imgsim " + prec, n, bench[n]))
    for n in BATCHES:
        rows.append(("torch eager fp16", n, tres[n]))

    print("GPU: %s   measured fp16 matmul peak: %.0f TFLOP/s" % (gpu, peak / 1e12))
    print("%-18s %6s %10s %12s %9s" % ("engine", "batch", "ms/batch", "images/s", "% peak"))
    for name, n, ms in rows:
        ips = n * 1000.0 / ms
        print("%-18s %6d %10.3f %12.0f %8.1f%%" % (name, n, ms, ips, 100 * ips * GFLOP_PER_IMAGE * 1e9 / peak))
    for n in BATCHES:
        t16 = [ms for name, b, ms in rows if name == "imgsim fp16" and b == n][0]
        print("batch %3d: imgsim fp16 / torch eager = %.2fx" % (n, tres[n] / t16))
    for prec, d in info.items():
        print("%s engine: build (imgsim engine build, wall) %.1f s; cached load: model import %.3f s + engine "
              "load to first batch %.3f s = %.3f s (process wall %.2f s); device memory %.0f MiB at batch 256"
              % (prec, d["build_s"], d["model_load"], d["first"], d["model_load"] + d["first"], d["wall"], d["mem"]))
        print("%s engine: imgsim_engine_load (cached engine, model imported: %s): to first batch %.3f s "
              "(process wall %.2f s)" % (prec, "no" if d["fast_imported"] == "0" else "yes", d["fast_first"],
                                         d["fast_wall"]))


if __name__ == "__main__":
    main()
