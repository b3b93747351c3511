"""test_cuda_parity.py: the CUDA engine against PyTorch (GPU machine only; exits 77 elsewhere).

torchvision ResNet-18 and ResNet-50 with seeded random weights and randomized BatchNorm
statistics are exported to ONNX; the engine (also with ResNet-18's classifier output as the
layer, which adds a cuBLAS GEMM step) (driven by tests/test_cuda_run.c through the slot
pipeline, batches of 2 with a partial last batch) must match PyTorch's float64 CPU embeddings
(the input of fc, L2-normalised):
  fp32: relative L2 error <= 1e-4;  tf32: cosine >= 0.9999 per image;  fp16: cosine >= 0.999.
Then, on ResNet-50 fp16: the features from the cached engine file equal those of the freshly
built engine; a corrupted cached file is detected, rebuilt and rewritten; an engine file for
another precision is rebuilt; and compute-sanitizer memcheck is clean on a small ResNet-18 run.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RUN = os.environ.get("IMGSIM_CUDA_RUN")
WORK = os.environ.get("IMGSIM_TEST_DIR", "/tmp/imgsim_cuda_parity")
N_IMAGES = 5


def skip(reason):
    print("SKIP:", reason)
    sys.exit(77)


def drive(args, timeout=900, prefix=()):
    """Runs the driver; returns (key=value dict, stderr)."""
    p = subprocess.run(list(prefix) + [RUN] + args, capture_output=True, text=True, timeout=timeout)
    if p.returncode == 77:
        skip("no CUDA device")
    if p.returncode != 0:
        print(p.stdout)
        print(p.stderr)
        raise SystemExit("driver failed (rc %d): %s" % (p.returncode, " ".join(args)))
    kv = {}
    for line in p.stdout.splitlines():
        if "=" in line and not line.startswith("bench"):
            k, v = line.split("=", 1)
            kv[k] = v
    return kv, p.stderr


def export(arch, path, seed):
    import torch
    import torchvision

    torch.manual_seed(seed)
    m = getattr(torchvision.models, arch)(weights=None) if hasattr(torchvision.models, "ResNet50_Weights") \
        else getattr(torchvision.models, arch)(pretrained=False)
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
            bn.momentum = None  # cumulative: running stats = this batch's statistics
            bn.reset_running_stats()
        m.train()
        m(torch.randn(8, 3, 224, 224))
        # randomize the statistics around the calibrated ones so that folding is really exercised
        for bn in bns:
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.7, 1.4))
            bn.running_mean.add_(0.2 * bn.running_var.sqrt() * torch.randn_like(bn.running_mean))
    m.eval()
    x = torch.randn(1, 3, 224, 224)
    kw = dict(opset_version=13, input_names=["input"], output_names=["output"],
              dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}})
    try:
        torch.onnx.export(m, x, path, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(m, x, path, **kw)
    return m


def reference(m, x):
    import torch

    m = m.double().eval()
    m.fc = torch.nn.Identity()
    with torch.no_grad():
        f = m(torch.from_numpy(x).double()).numpy()
    import numpy as np

    return f / np.linalg.norm(f, axis=1, keepdims=True)


def compare(name, got, ref, precision):
    import numpy as np

    assert got.shape == ref.shape, (name, got.shape, ref.shape)
    assert np.all(np.isfinite(got)), name + ": non-finite features"
    got = got.astype(np.float64)
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    print("%-10s %-5s rel_l2=%.3e min_cos=%.7f" % (name, precision, rel, cos.min()))
    if precision == "fp32":
        assert rel <= 1e-4, "%s fp32: relative L2 %.3e > 1e-4" % (name, rel)
    elif precision == "tf32":
        assert cos.min() >= 0.9999, "%s tf32: min cosine %.7f < 0.9999" % (name, cos.min())
    else:
        assert cos.min() >= 0.999, "%s fp16: min cosine %.7f < 0.999" % (name, cos.min())
    return rel, cos.min()


def main():
    if not RUN or not os.path.exists(RUN):
        skip("IMGSIM_CUDA_RUN not set (CUDA backend not built)")
    probe = subprocess.run([RUN], capture_output=True)
    if probe.returncode == 77:
        skip("no CUDA device")
    import numpy as np

    os.makedirs(WORK, exist_ok=True)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N_IMAGES, 3, 224, 224)).astype(np.float32)
    xpath = os.path.join(WORK, "x.npy")
    np.save(xpath, x.reshape(N_IMAGES, -1))

    for arch, seed in (("resnet18", 1), ("resnet50", 2)):
        onnx_path = os.path.join(WORK, arch + ".onnx")
        m = export(arch, onnx_path, seed)
        if arch == "resnet18":  # the classifier output too (a GEMM step through cuBLAS)
            import torch

            with torch.no_grad():
                logits = m.double()(torch.from_numpy(x).double()).numpy()
            logits /= np.linalg.norm(logits, axis=1, keepdims=True)
            for prec in ("fp32", "fp16"):
                out = os.path.join(WORK, "%s_fc_%s.npy" % (arch, prec))
                drive(["--model=" + onnx_path, "--precision=" + prec, "--max-batch=4", "--batch=2",
                       "--input=" + xpath, "--out=" + out, "--engine-cache=off", "--layer=output"])
                compare(arch + "-fc", np.load(out), logits, prec)
            m = m.float()
        ref = reference(m, x)
        for prec in ("fp32", "tf32", "fp16"):
            out = os.path.join(WORK, "%s_%s.npy" % (arch, prec))
            drive(["--model=" + onnx_path, "--precision=" + prec, "--max-batch=4", "--batch=2",
                   "--input=" + xpath, "--out=" + out, "--engine-cache=off"])
            compare(arch, np.load(out), ref, prec)

    # engine cache: fresh build, then load, on ResNet-50 fp16
    r50 = os.path.join(WORK, "resnet50.onnx")
    ref50 = reference(export("resnet50", r50, 2), x)
    cache = os.path.join(WORK, "cache")
    subprocess.run(["rm", "-rf", cache])
    common = ["--model=" + r50, "--precision=fp16", "--max-batch=4", "--batch=2", "--input=" + xpath,
              "--engine-cache=" + cache]
    fresh = os.path.join(WORK, "fresh.npy")
    kv1, _ = drive(common + ["--out=" + fresh])
    assert kv1["loaded_from_file"] == "0", kv1
    path = kv1["engine_file"]
    assert path.startswith(cache) and os.path.exists(path), kv1
    cached = os.path.join(WORK, "cached.npy")
    kv2, _ = drive(common + ["--out=" + cached])
    assert kv2["loaded_from_file"] == "1", kv2
    a, b = np.load(fresh), np.load(cached)
    print("fresh vs cached engine: max abs diff %.3e" % np.abs(a - b).max())
    assert np.array_equal(a, b), "features from the cached engine file differ from the fresh engine's"
    compare("r50-cached", b, ref50, "fp16")

    # corrupted engine file: detected, rebuilt, rewritten
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x5A
    open(path, "wb").write(bytes(data))
    rebuilt = os.path.join(WORK, "rebuilt.npy")
    kv3, err3 = drive(common + ["--out=" + rebuilt])
    assert kv3["loaded_from_file"] == "0", kv3
    assert "rebuilding" in err3, err3
    compare("r50-rebuilt", np.load(rebuilt), ref50, "fp16")
    kv4, _ = drive(common + ["--out=" + rebuilt])
    assert kv4["loaded_from_file"] == "1", "the rebuilt engine file was not rewritten"

    # an engine file for another precision is not trusted
    efile = os.path.join(WORK, "explicit.engine")
    drive(["--model=" + r50, "--precision=fp16", "--max-batch=4", "--engine-file=" + efile])
    other = os.path.join(WORK, "other.npy")
    kv5, err5 = drive(["--model=" + r50, "--precision=tf32", "--max-batch=4", "--batch=2", "--input=" + xpath,
                       "--out=" + other, "--engine-file=" + efile])
    assert kv5["loaded_from_file"] == "0" and "precision fp16" in err5 and "rebuilding" in err5, err5
    compare("r50-other", np.load(other), ref50, "tf32")

    # compute-sanitizer memcheck on a small run (engine file built first so the sanitized run
    # loads it instead of autotuning)
    san = subprocess.run(["bash", "-c", "command -v compute-sanitizer"], capture_output=True, text=True).stdout.strip()
    if not san and os.path.exists("/usr/local/cuda/bin/compute-sanitizer"):
        san = "/usr/local/cuda/bin/compute-sanitizer"
    if san:
        r18 = os.path.join(WORK, "resnet18.onnx")
        x2 = os.path.join(WORK, "x2.npy")
        np.save(x2, x[:3].reshape(3, -1))
        sfile = os.path.join(WORK, "san.engine")
        args = ["--model=" + r18, "--precision=fp16", "--max-batch=2", "--batch=2", "--input=" + x2,
                "--out=" + os.path.join(WORK, "san.npy"), "--engine-file=" + sfile]
        drive(args)
        kv, err = drive(args, timeout=900, prefix=[san, "--tool", "memcheck", "--error-exitcode", "3"])
        assert kv["loaded_from_file"] == "1", kv
        print("compute-sanitizer memcheck: clean")
    else:
        print("compute-sanitizer not found: memcheck not run")
    print("OK")


if __name__ == "__main__":
    main()
