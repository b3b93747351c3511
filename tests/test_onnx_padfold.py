#!/usr/bin/env python3
"""test_onnx_padfold.py: the import-time rewrites of Pad and ReduceMean compute what torch does.

A hand-written ONNX graph (opsets 13 and 17): an asymmetric zero Pad before a Conv that has pads
and strides of its own, a Pad (constant_value 0 given) before an AveragePool that does not count
padding (the Pad's zeros count, as in ONNX), and ReduceMean over H, W without keepdims; and a
torch module exported by torch.onnx.export with x.mean([2, 3], keepdim=True). Each runs on the CPU engine (`imgsim bench --layer=output`) against the module in
float64: relative L2 error <= 1e-5 per image.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as ex:  # pragma: no cover
    testlib.skip("needs numpy and torch: %s" % ex)

torch.set_num_threads(2)
WORK = testlib.workdir()


class PadConv(torch.nn.Module):
    """Written as ONNX by hand (torch's ZeroPad2d exports a shape subgraph): see padconv_onnx."""
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, (3, 2), padding=(1, 0), stride=(2, 1))

    def forward(self, x):
        y = self.conv(F.pad(x, (1, 2, 0, 3)))  # left, right, top, bottom
        y = F.avg_pool2d(F.pad(y, (0, 1, 1, 0)), 3, stride=2, count_include_pad=False)
        return y.mean([2, 3])


def padconv_onnx(m, path, opset):
    from onnx import TensorProto, helper, numpy_helper
    w = m.conv.weight.detach().numpy()
    b = m.conv.bias.detach().numpy()
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"),
             numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 3, 2], np.int64), "p1"),  # begins, ends
             numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64), "p2"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [helper.make_node("Pad", ["input", "p1"], ["a"], name="pad1", mode="constant"),
             helper.make_node("Conv", ["a", "W", "B"], ["c"], name="conv", pads=[1, 0, 1, 0], strides=[2, 1]),
             helper.make_node("Pad", ["c", "p2", "zero"], ["d"], name="pad2"),
             helper.make_node("AveragePool", ["d"], ["e"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                              count_include_pad=0),
             helper.make_node("ReduceMean", ["e"], ["output"], name="mean", axes=[2, 3], keepdims=0)]
    if opset >= 18:
        raise ValueError("ReduceMean axes are an input from opset 18")
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 17, 14])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 5])], initializer=inits)
    mod = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    mod.ir_version = 8
    open(path, "wb").write(mod.SerializeToString())


class MeanKeep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean([2, 3], keepdim=True) * 2.0


failures = 0
rng = np.random.default_rng(5)
x = rng.standard_normal((3, 3, 17, 14)).astype(np.float32)
for cls in (PadConv, MeanKeep):
    for opset in (13, 17):
        torch.manual_seed(1)
        m = cls().eval()
        path = os.path.join(WORK, "%s_op%d.onnx" % (cls.__name__, opset))
        with torch.no_grad():
            if cls is PadConv:
                padconv_onnx(m, path, opset)
            else:
                torch.onnx.export(m, torch.from_numpy(x[:1]), path, input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "n"}, "output": {0: "n"}}, opset_version=opset)
            ref = m.double()(torch.from_numpy(x).double()).reshape(len(x), -1).numpy()
        inp, out = os.path.join(WORK, "x.npy"), os.path.join(WORK, "y.npy")
        np.save(inp, x.reshape(len(x), -1))
        p = testlib.run(["bench", "--model=" + path, "--input=" + inp, "--dump=" + out, "--no-normalize",
                         "--layer=output", "--batch-size=2", "--threads=2"], check=False)
        if p.returncode != 0:
            print("FAIL %s opset %d: imgsim bench: %s" % (cls.__name__, opset, p.stderr.strip()[-800:]))
            failures += 1
            continue
        got = np.load(out).astype(np.float64).reshape(len(x), -1)
        err = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
        ok = got.shape == ref.shape and np.all(err <= 1e-5)
        failures += not ok
        print("%s %s opset %d: relative L2 error per image: %s" % ("ok  " if ok else "FAIL", cls.__name__, opset,
                                                                  " ".join("%.2e" % e for e in err)))
sys.exit(1 if failures else 0)
