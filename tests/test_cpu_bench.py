"""imgsim bench on the CPU: --json prints one JSON object with the documented fields and sane
values (batch, device, precision as asked; positive throughput consistent with the latencies;
the peak RSS at least the engine's own memory); the text output names throughput, latency and
peak RSS; bad options are usage errors."""
import json
import os

import testlib as T

w = T.workdir()
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=5", "--out=" + model])

p = T.run(["bench", "--model=" + model, "--batch-size=2", "--iterations=3", "--warmup=1", "--threads=2", "--json"])
j = json.loads(p.stdout)
for k in ("images_per_s", "latency_ms_median", "latency_ms_p90", "latency_ms_p99", "batch_size", "device",
          "precision", "peak_rss_mb", "load_seconds", "build_seconds", "device_bytes", "dim", "iterations"):
    assert k in j, (k, j)
assert j["batch_size"] == 2 and j["device"] == "cpu" and j["precision"] == "fp32" and j["dim"] == 512, j
assert j["iterations"] == 3 and j["threads"] == 2, j
assert j["images_per_s"] > 0 and 0 < j["latency_ms_min"] <= j["latency_ms_median"] <= j["latency_ms_p99"], j
# images/s is batch * iterations / total time, total = mean latency * iterations
assert abs(j["images_per_s"] - 2 * 1000.0 / j["latency_ms_mean"]) <= 0.02 * j["images_per_s"], j
# the engine holds ResNet-18's 11.2 M parameters (44.7 MB of float32 weights) plus activations
assert j["device_bytes"] > 40e6, j
assert j["peak_rss_mb"] * 1024 * 1024 >= j["device_bytes"], j
assert j["build_seconds"] > 0 and j["load_seconds"] > 0, j

p = T.run(["bench", "--model=" + model, "--batch-size=1", "--iterations=2", "--warmup=0", "--threads=1"])
for word in ("images/s", "median", "p99", "peak RSS", "oneDNN"):
    assert word in p.stdout, (word, p.stdout)

for bad in (["bench"], ["bench", "--model=" + model, "--iterations=0"], ["bench", "--model=" + model, "--bogus"],
            ["bench", "--model=" + model, "--input=x.npy"]):
    r = T.run(bad, check=False)
    assert r.returncode == 2, (bad, r.returncode, r.stderr)
r = T.run(["bench", "--model=" + os.path.join(w, "missing.onnx")], check=False)
assert r.returncode == 1 and "missing.onnx" in r.stderr, r.stderr
print("OK")
