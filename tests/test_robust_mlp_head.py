"""The default embedding layer of models with an MLP head (issue 12): for torchvision's VGG-11 and
AlexNet (random weights, exported to ONNX), imgsim picks the input of the head's last Linear, i.e.
what model.classifier[:-1] gives in PyTorch (the last hidden ReLU; Dropout is the identity in eval
mode), not the logits. The heads keep torchvision's structure (Flatten -> [Dropout] Linear ReLU
Dropout Linear ReLU [Dropout] Linear) with narrower Linear layers (64 instead of 4096 units, 10
classes), so the files stay small; the convolutional part is torchvision's, at 224x224.

Checked on the same input tensors (`imgsim bench --input --dump --no-normalize`, engine only):
`imgsim model info` reports that layer's dimension, and the features equal PyTorch's float64
penultimate activations (relative L2 error <= 1e-5 per image)."""
import json
import os

import numpy as np

import testlib as T

try:
    import torch
    import torchvision
except ImportError:
    T.skip("torch/torchvision not available")

torch.set_num_threads(2)
w = T.workdir()
WIDTH = 64


def build(arch, seed):
    torch.manual_seed(seed)
    m = getattr(torchvision.models, arch)(weights=None)
    cl = m.classifier
    lin = [i for i, l in enumerate(cl) if isinstance(l, torch.nn.Linear)]
    assert len(lin) == 3, cl
    cl[lin[0]] = torch.nn.Linear(cl[lin[0]].in_features, WIDTH)
    cl[lin[1]] = torch.nn.Linear(WIDTH, WIDTH)
    cl[lin[2]] = torch.nn.Linear(WIDTH, 10)
    return m.eval()


rng = np.random.default_rng(3)
x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
for arch in ("vgg11", "alexnet"):
    m = build(arch, 11)
    path = os.path.join(w, arch + ".onnx")
    torch.onnx.export(m, torch.randn(1, 3, 224, 224), path, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=13)
    info = json.loads(T.run(["model", "info", path, "--json"]).stdout)
    T.check(info.get("dim") == WIDTH, "%s: default layer has dim %s, want %d (the last hidden layer)" % (arch, info.get("dim"), WIDTH))
    inp, out = os.path.join(w, "x.npy"), os.path.join(w, arch + "_y.npy")
    np.save(inp, x.reshape(len(x), -1))
    T.run(["bench", "--model=" + path, "--input=" + inp, "--dump=" + out, "--no-normalize", "--batch-size=2", "--threads=2"])
    got = np.load(out).astype(np.float64)
    penultimate = torch.nn.Sequential(m.features, m.avgpool, torch.nn.Flatten(1), m.classifier[:-1]).double()
    with torch.inference_mode():
        ref = penultimate(torch.from_numpy(x).double()).numpy()
    T.check(got.shape == ref.shape, "%s: features %s, PyTorch's penultimate %s" % (arch, got.shape, ref.shape))
    if got.shape == ref.shape:
        err = np.linalg.norm(got - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-30)
        print("%s: relative L2 error per image %s" % (arch, " ".join("%.2e" % e for e in err)))
        T.check(np.all(err <= 1e-5), "%s: relative L2 error %.3e > 1e-5" % (arch, err.max()))
        T.check(np.linalg.norm(ref, axis=1).min() > 0, "%s: the reference is all zeros (ReLU dead): the test is weak" % arch)
T.finish()
