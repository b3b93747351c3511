"""The PyTorch side of bench/cpu_vs_torch.sh: times a torchvision model's forward on the CPU.

Same protocol as `imgsim bench`: random input, model in eval mode under torch.inference_mode,
`--warmup` untimed runs, then `--iterations` timed runs of one batch each; prints one JSON object
with images_per_s, latency_ms_median/p90/p99/min, batch_size, threads, peak_rss_mb (this
process's ru_maxrss, so run it in its own process).

Modes: eager (what the old Python pipeline ran: model(x) with the stock model) and jit (the
strongest easy CPU recipe of this PyTorch: torch.jit.trace + torch.jit.freeze, which folds BN into
the convolutions and pre-packs oneDNN weights; torch.jit.optimize_for_inference on top).
"""
import argparse
import json
import resource
import time

import numpy as np
import torch
import torchvision

ap = argparse.ArgumentParser()
ap.add_argument("--arch", default="resnet50")
ap.add_argument("--batch-size", type=int, default=1)
ap.add_argument("--iterations", type=int, default=20)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--mode", choices=["eager", "jit"], default="eager")
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
model = getattr(torchvision.models, args.arch)(weights=None).eval()
x = torch.from_numpy(np.random.default_rng(0).uniform(-2, 2, (args.batch_size, 3, 224, 224)).astype(np.float32))
with torch.inference_mode():
    if args.mode == "jit":
        model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
    for _ in range(args.warmup):
        model(x)
    lat = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        model(x)
        lat.append(time.perf_counter() - t0)
lat = np.array(lat)
print(json.dumps({
    "peer": "torch %s %s" % (torch.__version__, args.mode),
    "batch_size": args.batch_size, "threads": args.threads, "iterations": args.iterations,
    "images_per_s": args.batch_size * len(lat) / lat.sum(),
    "latency_ms_median": float(np.median(lat) * 1e3),
    "latency_ms_p90": float(np.percentile(lat, 90) * 1e3),
    "latency_ms_p99": float(np.percentile(lat, 99) * 1e3),
    "latency_ms_min": float(lat.min() * 1e3),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
}))
