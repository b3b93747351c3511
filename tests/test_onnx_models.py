#!/usr/bin/env python3
"""test_onnx_models.py: real models load, and what imgsim writes is valid ONNX with torchvision's
meaning.

1. tools/export_torchvision.py (weights none, random BatchNorm statistics) exports resnet18 at
   opsets 11, 13 and 17 and MobileNetV2 at opset 13; an opset-18 copy is made by raising the
   opset of the opset-17 file (torch 1.13 cannot write 18; the operators used did not change).
   `imgsim model info --json` must report what the onnx package reads from the same file: opset,
   input shape, the input of the final Gemm as the layer, its dimension, the parameter count and
   the file's SHA-256. The same model saved with external data loads the same way, and --layer
   picks a 4-D activation (dim C*H*W).
2. `imgsim model init --arch=resnet18` output passes onnx.checker (full check) and strict shape
   inference, its weights load by name into torchvision's resnet18 (shapes checked by
   load_state_dict), and running the ONNX graph op by op with torch.nn.functional gives the same
   output as torchvision's module on the same input. The same interpreter run on the
   torch-exported file against its torch model shows the interpreter itself is right.
"""
import hashlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402

try:
    import numpy as np
    import onnx
    import torch
    import torch.nn.functional as F
    import torchvision
    from onnx import helper, numpy_helper
except ImportError as ex:  # pragma: no cover
    testlib.skip("needs numpy, onnx, torch and torchvision: %s" % ex)

WORK = testlib.workdir()
EXPORT = os.path.join(testlib.SRC, "tools", "export_torchvision.py")
failures = []


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def export(arch, opset, name, seed=1):
    path = os.path.join(WORK, name)
    subprocess.run([sys.executable, EXPORT, "--arch", arch, "--weights", "none", "--opset", str(opset),
                    "--seed", str(seed), "--randomize-bn", "--out", path], check=True,
                   stdout=subprocess.DEVNULL)
    return path


def info(path, *extra):
    p = testlib.run(["model", "info", path, "--json"] + list(extra), check=False)
    if p.returncode != 0:
        print("model info %s failed: %s" % (path, p.stderr))
        return None
    return json.loads(p.stdout)


def onnx_facts(path):
    """What the onnx package reads from the file: opset, input dims, last Gemm input, params."""
    m = onnx.load(path)
    opset = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")][0]
    inits = {t.name for t in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    params = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    for n in m.graph.node:
        if n.op_type == "Constant":
            params += numpy_helper.to_array(n.attribute[0].t).size
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return {"opset": opset, "input": dims, "layer": gemms[-1].input[0], "params": params, "sha256": sha,
            "model": m}


def check_loaded(label, path, dim, opset=None):
    got = info(path)
    expect(got is not None, "%s: model info succeeds" % label)
    if got is None:
        return None
    f = onnx_facts(path)
    expect(got["opset"] == (opset or f["opset"]), "%s: opset %s" % (label, got["opset"]))
    expect(got["input"][1:] == f["input"][1:], "%s: input %s" % (label, got["input"]))
    expect(got["layer"] == f["layer"], "%s: layer %s is the final Gemm's input %s" % (label, got["layer"], f["layer"]))
    expect(got["dim"] == dim, "%s: dim %d == %d" % (label, got["dim"], dim))
    expect(got["params"] == f["params"], "%s: params %d == %d (onnx)" % (label, got["params"], f["params"]))
    expect(got["sha256"] == f["sha256"], "%s: sha256 of the file" % label)
    return got


# ---- a reference interpreter: ONNX nodes with torch.nn.functional (float64) -------------------

def run_onnx(model, x):
    g = model.graph
    env = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
    for k, v in list(env.items()):
        if v.is_floating_point():
            env[k] = v.double()
    inits = set(env)
    env[[i.name for i in g.input if i.name not in inits][0]] = x
    for n in g.node:
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        ins = [env[i] if i else None for i in n.input]
        op = n.op_type
        if op == "Conv":
            t, l, b, r = a.get("pads", [0, 0, 0, 0])
            y = F.conv2d(F.pad(ins[0], (l, r, t, b)), ins[1], ins[2] if len(ins) > 2 else None,
                         stride=a.get("strides", [1, 1]), dilation=a.get("dilations", [1, 1]),
                         groups=a.get("group", 1))
        elif op == "BatchNormalization":
            y = F.batch_norm(ins[0], ins[3], ins[4], ins[1], ins[2], training=False, eps=a.get("epsilon", 1e-5))
        elif op == "Relu":
            y = F.relu(ins[0])
        elif op == "Clip":
            lo = ins[1].item() if len(ins) > 1 and ins[1] is not None else None
            hi = ins[2].item() if len(ins) > 2 and ins[2] is not None else None
            y = torch.clamp(ins[0], lo, hi)
        elif op == "Add":
            y = ins[0] + ins[1]
        elif op == "Mul":
            y = ins[0] * ins[1]
        elif op == "Sigmoid":
            y = torch.sigmoid(ins[0])
        elif op == "MaxPool":
            t, l, b, r = a.get("pads", [0, 0, 0, 0])
            xp = F.pad(ins[0], (l, r, t, b), value=float("-inf"))
            y = F.max_pool2d(xp, a["kernel_shape"], a.get("strides", [1, 1]), 0, a.get("dilations", [1, 1]),
                             ceil_mode=bool(a.get("ceil_mode", 0)))
        elif op == "GlobalAveragePool":
            y = ins[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten":
            y = torch.flatten(ins[0], a.get("axis", 1))
        elif op == "Gemm":
            A = ins[0].t() if a.get("transA", 0) else ins[0]
            B = ins[1].t() if a.get("transB", 0) else ins[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(ins) > 2 and ins[2] is not None:
                y = y + a.get("beta", 1.0) * ins[2]
        elif op == "Identity":
            y = ins[0]
        elif op == "Constant":
            y = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
            if y.is_floating_point():
                y = y.double()
        else:
            raise RuntimeError("reference interpreter: no %s" % op)
        env[n.output[0]] = y
    return env[g.output[0].name]


def rel(a, b):
    return float((a - b).norm() / b.norm())


def main():
    # ---- torchvision exports load ---------------------------------------------------------------
    r13 = export("resnet18", 13, "r18_op13.onnx")
    r17 = export("resnet18", 17, "r18_op17.onnx")
    r11 = export("resnet18", 11, "r18_op11.onnx")
    mnv2 = export("mobilenet_v2", 13, "mnv2_op13.onnx")
    check_loaded("resnet18 opset 13", r13, 512)
    check_loaded("resnet18 opset 17", r17, 512)
    check_loaded("resnet18 opset 11", r11, 512)
    check_loaded("mobilenet_v2 opset 13", mnv2, 1280)

    m18 = onnx.load(r17)
    for o in m18.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 18
    r18 = os.path.join(WORK, "r18_op18.onnx")
    onnx.save(m18, r18)
    check_loaded("resnet18 opset 18", r18, 512, opset=18)
    # what current exporters write (torch.onnx's dynamo exporter: IR 10 to 14, opsets 18 to 23);
    # the operators of a ResNet read the same at every one of these
    for ir, op in ((10, 21), (14, 23), (14, 25)):
        mx = onnx.load(r17)
        mx.ir_version = ir
        for o in mx.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = op
        px = os.path.join(WORK, "r18_ir%d_op%d.onnx" % (ir, op))
        onnx.save(mx, px)
        check_loaded("resnet18 IR %d opset %d" % (ir, op), px, 512, opset=op)

    ext_dir = os.path.join(WORK, "external")
    os.makedirs(ext_dir, exist_ok=True)
    rext = os.path.join(ext_dir, "model.onnx")
    onnx.save_model(onnx.load(r13), rext, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    expect(os.path.getsize(rext) < 100000, "external data: weights moved out of the .onnx file")
    a, b = info(rext), info(r13)
    expect(a is not None and b is not None and
           (a["params"], a["dim"], a["layer"]) == (b["params"], b["dim"], b["layer"]),
           "resnet18 with external data loads like the single file")

    relus = [n for n in onnx.load(r13).graph.node if n.op_type == "Relu"]
    got = info(r13, "--layer", relus[-1].output[0])
    expect(got is not None and got["dim"] == 512 * 7 * 7 and got["layer"] == relus[-1].output[0],
           "--layer=%s picks the last block's 512x7x7 output" % relus[-1].output[0])

    # ---- the interpreter is right on the torch export ----------------------------------------------
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None)
    sys.path.insert(0, os.path.join(testlib.SRC, "tools"))
    import export_torchvision  # noqa: E402
    export_torchvision.randomize_bn(tv, 1)
    tv = tv.double().eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        e = rel(run_onnx(onnx.load(r13), x), tv(x))
    expect(e < 1e-5, "reference interpreter on the torch export: relative error %.2e < 1e-5 "
           "(float32 BN folding by the exporter)" % e)

    # ---- imgsim model init ----------------------------------------------------------------------------
    init = os.path.join(WORK, "init_r18.onnx")
    p = testlib.run(["model", "init", "--arch=resnet18", "--seed=5", "--out", init], check=False)
    expect(p.returncode == 0, "model init --arch=resnet18 succeeds")
    m = onnx.load(init)
    try:
        onnx.checker.check_model(m, full_check=True)
        onnx.shape_inference.infer_shapes(m, strict_mode=True)
        ok = True
    except Exception as ex:  # noqa: BLE001
        print(ex)
        ok = False
    expect(ok, "model init output passes onnx.checker (full) and strict shape inference")
    expect(m.opset_import[0].version == 13 and m.ir_version == 7, "model init: opset 13, IR version 7")
    expect([i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"],
           "model init: input 'input', output 'output'")
    d0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    o0 = m.graph.output[0].type.tensor_type.shape.dim[0]
    expect(d0.dim_param == "batch_size" and o0.dim_param == "batch_size", "model init: batch axis 'batch_size'")

    ref = torchvision.models.resnet18(weights=None)
    sd = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    try:
        res = ref.load_state_dict(sd, strict=False)
        missing = [k for k in res.missing_keys if not k.endswith("num_batches_tracked")]
        ok = not missing and not res.unexpected_keys
        if not ok:
            print("missing %s unexpected %s" % (missing[:5], res.unexpected_keys[:5]))
    except RuntimeError as ex:
        print(ex)
        ok = False
    expect(ok, "model init weights load into torchvision resnet18 by name with matching shapes")
    if ok:
        ref = ref.double().eval()
        with torch.no_grad():
            e = rel(run_onnx(m, x), ref(x))
        expect(e < 1e-9, "model init graph == torchvision resnet18 on the same input: relative error %.2e" % e)
        w = sd["layer1.0.conv1.weight"].double()
        fan_in, fan_out = w.shape[1] * 9, w.shape[0] * 9
        std = float(w.std())
        expect(any(abs(std / (2.0 / f) ** 0.5 - 1) < 0.05 for f in (fan_in, fan_out)),
               "model init conv weights are Kaiming-normal (std %.4f)" % std)

    again = os.path.join(WORK, "init_r18_again.onnx")
    other = os.path.join(WORK, "init_r18_seed6.onnx")
    testlib.run(["model", "init", "--arch=resnet18", "--seed=5", "--out", again])
    testlib.run(["model", "init", "--arch=resnet18", "--seed=6", "--out", other])
    same = open(init, "rb").read() == open(again, "rb").read()
    expect(same and open(init, "rb").read() != open(other, "rb").read(),
           "model init is deterministic per seed and differs across seeds")
    got = info(init)
    expect(got is not None and got["dim"] == 512 and got["opset"] == 13, "model info on model init output")

    r50 = os.path.join(WORK, "init_r50.onnx")
    testlib.run(["model", "init", "--arch=resnet50", "--out", r50])
    got = info(r50)
    expect(got is not None and got["dim"] == 2048, "model init --arch=resnet50 loads with dim 2048")
    p = testlib.run(["model", "init", "--arch=vgg16", "--out", os.path.join(WORK, "x.onnx")], check=False)
    expect(p.returncode == 2 and not os.path.exists(os.path.join(WORK, "x.onnx")), "model init refuses an unknown arch")

    # ---- what the importer built computes what torch computes (through the CPU engine) ----------
    # MobileNetV2 (Clip bounds from Constant nodes) and DenseNet-121 (Concat of up to 32 inputs
    # made a chain, Pads that pad nothing, BatchNorm not after a Conv, Identity-deduplicated
    # weights) on 224x224 images, so preprocessing is only the normalisation.
    dn = export("densenet121", 13, "densenet121_op13.onnx", seed=2)
    check_loaded("densenet121 opset 13", dn, 1024)
    imgs = os.path.join(WORK, "imgs", "c")
    os.makedirs(imgs)
    for i in range(2):
        testlib.photo_like(224, 224, i, i).save(os.path.join(imgs, "%d.png" % i))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    from PIL import Image
    x = torch.stack([(torch.from_numpy(np.asarray(Image.open(os.path.join(imgs, "%d.png" % i)).convert("RGB"),
                                                  np.float32) / 255.0).permute(2, 0, 1) - mean) / std
                     for i in range(2)])
    for arch, path, seed, head in (("mobilenet_v2", mnv2, 1, "classifier"), ("densenet121", dn, 2, "classifier")):
        torch.manual_seed(seed)
        tm = getattr(torchvision.models, arch)(weights=None)
        export_torchvision.randomize_bn(tm, seed)
        setattr(tm, head, torch.nn.Identity())
        tm.eval()
        with torch.no_grad():
            ref = tm(x).numpy()
        store = os.path.join(WORK, "store_" + arch)
        p = testlib.run(["extract", "--model", path, "--out", store, "--quiet", "--no-normalize",
                         os.path.dirname(imgs)], check=False)
        if p.returncode != 0:
            expect(False, "%s: imgsim extract: %s" % (arch, p.stderr.strip()[-500:]))
            continue
        feats = np.load(os.path.join(store, "features.npy"))
        rows = [ln.split("\t") for ln in open(os.path.join(store, "manifest.tsv")).read().splitlines()[1:]]
        worst = 0.0
        for r in rows:
            i = int(os.path.basename(r[1]).split(".")[0])
            a, b = feats[int(r[0])], ref[i]
            worst = max(worst, float(np.linalg.norm(a - b) / np.linalg.norm(b)))
        expect(len(rows) == 2 and worst < 1e-4,
               "%s: imgsim features == torchvision's penultimate features (worst relative error %.2e)"
               % (arch, worst))

    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
