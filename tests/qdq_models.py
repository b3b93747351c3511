"""QDQ test models and their reference, for test_int8_qdq.py (onnx + numpy + torch, no onnxruntime).

  export_resnet(path, arch, seed, size): testlib's (a torchvision ResNet with seeded random weights
    and random BatchNorm statistics, so the folded biases are not zero, exported to ONNX, opset 13);
  insert_qdq(src, dst, ranges, seed): the same model with QuantizeLinear/DequantizeLinear written
    the way onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ) writes
    them: every Conv's input and output, the Add inputs and outputs, MaxPool's input and output
    (the same scale) quantised per tensor; a Relu after a Conv or an Add removed, its output
    quantised with a [0, 255] range instead (the clamp at 0 is the pair's); weights as int8
    initializers (per output channel, symmetric: max |w| / 127) read through a DequantizeLinear,
    biases as int32 at scale s_x * s_w. Scales come from numpy: max |x| / 127 (signed tensors) and
    max x / 255 (tensors >= 0) over the given ranges. Each pair is written in one of its two
    equivalent encodings, chosen by the seed: int8 zero point 0 or uint8 zero point 128 for signed
    tensors, uint8 zero point 0 or int8 zero point -128 for [0, 255] ones. One Conv keeps a
    per-tensor weight scale, one keeps float weights with a QuantizeLinear of them (onnxruntime's
    AddQDQPairToWeight), and the stem's Relu stays, so each form is there;
  evaluate(model, x, mode): the model run by torch in float64, node by node. mode "fq" simulates
    the QDQ graph exactly (fake quantisation: round half to even, saturate, dequantise, at each
    pair); mode "dq" runs it dequantised (weights dequantised, pairs pass their input through but
    keep the clamp at 0 of a [0, 255] pair), which is what imgsim's fp32 engine runs. Returns
    every tensor by name.
"""
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper, TensorProto

from testlib import export_resnet  # noqa: F401 (qdq_models.export_resnet, as the tests and bench call it)


def _attrs(n):
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def _qrange(dt):
    return (-128, 127) if dt == TensorProto.INT8 else (0, 255) if dt == TensorProto.UINT8 else (-2 ** 31, 2 ** 31 - 1)


def evaluate(model, x, mode="fq", skip=()):
    """Every tensor of model (an onnx.ModelProto) for input x [N, 3, H, W], in float64 (see above);
    the QuantizeLinear nodes named in skip (and their DequantizeLinears) run as in "dq"."""
    g = model.graph
    env, dtype, passed = {}, {}, set()
    for t in g.initializer:
        a = numpy_helper.to_array(t)
        env[t.name] = torch.from_numpy(np.array(a, dtype=np.float64))
        dtype[t.name] = t.data_type
    env[g.input[0].name] = torch.from_numpy(np.asarray(x, np.float64))
    for n in g.node:
        a = _attrs(n)
        i = [env[k] if k else None for k in n.input]
        op = n.op_type
        if op == "Conv":
            p = a.get("pads", [0, 0, 0, 0])
            assert p[0] == p[2] and p[1] == p[3]
            y = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, stride=tuple(a.get("strides", [1, 1])),
                         padding=(p[0], p[1]), dilation=tuple(a.get("dilations", [1, 1])), groups=a.get("group", 1))
        elif op == "Relu":
            y = torch.clamp(i[0], min=0)
        elif op == "Add":
            y = i[0] + i[1]
        elif op == "MaxPool":
            p = a.get("pads", [0, 0, 0, 0])
            y = F.max_pool2d(i[0], tuple(a["kernel_shape"]), tuple(a.get("strides", [1, 1])), (p[0], p[1]),
                             ceil_mode=bool(a.get("ceil_mode", 0)))
        elif op == "GlobalAveragePool":
            y = i[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten":
            y = i[0].reshape(i[0].shape[0], -1)
        elif op == "Gemm":
            b = i[1].t() if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * (i[0] @ b) + (a.get("beta", 1.0) * i[2] if len(i) > 2 else 0)
        elif op == "Identity":
            y = i[0]
        elif op in ("QuantizeLinear", "DequantizeLinear"):
            s = i[1]
            zdt = dtype[n.input[2]] if len(n.input) > 2 and n.input[2] else (
                TensorProto.UINT8 if op == "QuantizeLinear" else dtype.get(n.input[0], TensorProto.UINT8))
            zp = i[2] if len(i) > 2 and i[2] is not None else torch.zeros_like(s)
            if s.numel() > 1:  # per channel: broadcast along axis
                shape = [1] * i[0].dim()
                shape[a.get("axis", 1)] = -1
                s, zp = s.reshape(shape), zp.reshape(shape)
            lo, hi = _qrange(zdt)
            const = n.input[0] in dtype
            fq = mode == "fq" and n.name not in skip and n.input[0] not in passed
            if op == "QuantizeLinear":
                if not fq and not const:
                    passed.add(n.output[0])
                if fq or const:
                    y = torch.clamp(torch.round(i[0] / s) + zp, lo, hi)
                else:
                    y = i[0]  # "dq": the pair passes x through (its DequantizeLinear keeps the clamp at 0)
            else:
                if fq or const:
                    y = (i[0] - zp) * s
                else:
                    y = torch.clamp(i[0], min=0) if float(lo - zp.flatten()[0]) == 0 else i[0]
            if const:
                dtype[n.output[0]] = zdt if op == "QuantizeLinear" else TensorProto.FLOAT
        else:
            raise RuntimeError("evaluate: operator %s" % op)
        env[n.output[0]] = y
    return env


def features(model, x, mode="fq", skip=()):
    """The input of the final Gemm (imgsim's default embedding), [N, D] float64 numpy."""
    env = evaluate(model, x, mode, skip)
    gemm = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    return env[gemm.input[0]].numpy()


def unshare_identities(model):
    """Identity nodes of initializers (torch.onnx's deduplication) become initializers of their own."""
    g = model.graph
    init = {t.name: t for t in g.initializer}
    keep = []
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in init:
            t = onnx.TensorProto()
            t.CopyFrom(init[n.input[0]])
            t.name = n.output[0]
            g.initializer.append(t)
            init[t.name] = t
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    return model


def tensor_ranges(model, xs):
    """min and max of every tensor of the float model over the inputs xs (a list of batches)."""
    r = {}
    for x in xs:
        for k, v in evaluate(model, x, "dq").items():
            lo, hi = float(v.min()), float(v.max())
            a, b = r.get(k, (lo, hi))
            r[k] = (min(a, lo), max(b, hi))
    return r


def insert_qdq(model, ranges, seed=0, per_tensor_conv=3, float_weight_conv=5, keep_first_relu=True, asym=False):
    """The QDQ form of a float ResNet (see the file comment). model: an onnx.ModelProto with
    unshared initializers; ranges: tensor_ranges of it. asym: tensors that take negative values
    quantised as quantize_static's default does (asymmetric: scale (max - min) / 255 of the range
    widened to hold 0, uint8 zero point round(-min / scale), or the same as int8 less 128, chosen
    by the seed) rather than symmetric. Returns a new onnx.ModelProto."""
    rng = np.random.default_rng(seed)
    g = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers = {}
    for n in g.node:
        for k in n.input:
            consumers.setdefault(k, []).append(n)
    nodes, inits, dq_of, scale_of = [], [], {}, {}
    rename = {}  # a removed Relu: its input's name -> its output's name
    first_relu = [keep_first_relu]

    def c(name, arr, dt=None):
        t = numpy_helper.from_array(np.asarray(arr), name)
        inits.append(t)
        return name

    def act(t):
        """t quantised once: the name of its DequantizeLinear output."""
        if t in dq_of:
            return dq_of[t]
        lo, hi = ranges[t]
        if lo >= 0:
            s = np.float32(max(hi, 1e-8) / 255.0)
            enc = [(np.uint8(0),), (np.int8(-128),)][rng.integers(2)]
        elif asym:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            s = np.float32((hi - lo) / 255.0)
            z = int(np.clip(np.round(-lo / s), 0, 255))
            enc = [(np.uint8(z),), (np.int8(z - 128),)][rng.integers(2)]
        else:
            s = np.float32(max(abs(lo), abs(hi)) / 127.0)
            enc = [(np.int8(0),), (np.uint8(128),)][rng.integers(2)]
        sn = c(t + "_scale", np.array(s, np.float32))
        zn = c(t + "_zero_point", np.array(enc[0]))
        nodes.append(helper.make_node("QuantizeLinear", [t, sn, zn], [t + "_QuantizeLinear_Output"],
                                      name=t + "_QuantizeLinear"))
        nodes.append(helper.make_node("DequantizeLinear", [t + "_QuantizeLinear_Output", sn, zn],
                                      [t + "_DequantizeLinear_Output"], name=t + "_DequantizeLinear"))
        dq_of[t] = t + "_DequantizeLinear_Output"
        scale_of[t] = float(s)
        return dq_of[t]

    conv_i = 0
    for n in g.node:
        op = n.op_type
        outs = [rename.get(o, o) for o in n.output]
        if op == "Relu":
            if rename.get(n.input[0]) != n.output[0]:  # kept (the stem's)
                first_relu[0] = False
                nodes.append(helper.make_node("Relu", [dq_of.get(n.input[0], n.input[0])], n.output, name=n.name))
            continue  # removed: its producer writes its output (renamed below)
        if op == "Conv":
            x = act(rename.get(n.input[0], n.input[0]))
            w = init[n.input[1]].astype(np.float32)
            b = init[n.input[2]].astype(np.float32) if len(n.input) > 2 else None
            if conv_i == per_tensor_conv:
                sw = np.full(w.shape[0], np.abs(w).max() / 127.0, np.float32)
            else:
                sw = (np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127.0).astype(np.float32)
            q = np.clip(np.round(w / sw[:, None, None, None]), -127, 127).astype(np.int8)
            wn = n.input[1]
            if conv_i == float_weight_conv:  # float weights, QuantizeLinear + DequantizeLinear
                c(wn, w)
                c(wn + "_scale", sw)
                c(wn + "_zero_point", np.zeros(w.shape[0], np.int8))
                nodes.append(helper.make_node("QuantizeLinear", [wn, wn + "_scale", wn + "_zero_point"],
                                              [wn + "_quantized"], name=wn + "_QuantizeLinear", axis=0))
            else:
                c(wn + "_quantized", q)
                if conv_i == per_tensor_conv:
                    c(wn + "_scale", np.array(sw[0], np.float32))
                    c(wn + "_zero_point", np.array(np.int8(0)))
                else:
                    c(wn + "_scale", sw)
                    c(wn + "_zero_point", np.zeros(w.shape[0], np.int8))
            dqa = {} if conv_i == per_tensor_conv else {"axis": 0}
            nodes.append(helper.make_node("DequantizeLinear", [wn + "_quantized", wn + "_scale", wn + "_zero_point"],
                                          [wn + "_DequantizeLinear_Output"], name=wn + "_DequantizeLinear", **dqa))
            ins = [x, wn + "_DequantizeLinear_Output"]
            if b is not None:
                bs = (np.float32(scale_of[rename.get(n.input[0], n.input[0])]) * sw).astype(np.float32)
                qb = np.round(b / bs).astype(np.int32)
                bn = n.input[2]
                c(bn + "_quantized", qb)
                c(bn + "_scale", bs)
                c(bn + "_zero_point", np.zeros(w.shape[0], np.int32))
                nodes.append(helper.make_node("DequantizeLinear", [bn + "_quantized", bn + "_scale", bn + "_zero_point"],
                                              [bn + "_DequantizeLinear_Output"], name=bn + "_DequantizeLinear", axis=0))
                ins.append(bn + "_DequantizeLinear_Output")
            conv_i += 1
        elif op in ("Add", "MaxPool"):
            ins = [act(rename.get(k, k)) for k in n.input]
        else:
            ins = [dq_of.get(rename.get(k, k), rename.get(k, k)) for k in n.input]
            for k in n.input:  # float initializers (the classifier's) as they are
                if k in init and k not in [t.name for t in inits]:
                    c(k, init[k])
        # a Relu after this Conv/Add that goes: write its output instead
        out = n.output[0]
        cons = consumers.get(out, [])
        if op in ("Conv", "Add") and len(cons) == 1 and cons[0].op_type == "Relu" and not first_relu[0]:
            rename[out] = cons[0].output[0]
            out = cons[0].output[0]
        nn = helper.make_node(op, ins, [out], name=n.name)
        nn.attribute.extend(n.attribute)
        nodes.append(nn)
        if op == "MaxPool":  # output at its input's scale
            ranges[out] = ranges[rename.get(n.input[0], n.input[0])]
        if op in ("Conv", "Add", "MaxPool") and out in ranges:
            act(out)
        elif op in ("Conv", "Add", "MaxPool"):
            raise RuntimeError("no range for " + out)
    # Relu outputs take their range: a renamed Conv/Add output is the Relu's output, already in ranges
    ng = helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits)
    m = helper.make_model(ng)
    del m.opset_import[:]
    m.opset_import.extend(model.opset_import)
    m.ir_version = model.ir_version
    return m


def unrounded_pairs(model):
    """The QuantizeLinear nodes whose rounding imgsim's int8 engine leaves out, by the rules
    README's "QDQ models" states: the pair on a Conv's output that imgsim fuses into the Conv with
    the residual Add it feeds (of an Add of two Conv outputs, the later Conv's), the pair between
    a Conv or such an Add and the Relu fused after it, and a pair on a tensor read only by
    operators that run in float32 (not Conv, MaxPool, Add or Relu: here the final
    GlobalAveragePool), whose producer writes float32."""
    g = model.graph
    readers, producer, index = {}, {}, {}
    for k, n in enumerate(g.node):
        index[n.name] = k
        producer[n.output[0]] = n
        for i in n.input:
            readers.setdefault(i, []).append(n)
    q_of = {}  # tensor -> its QuantizeLinear; DequantizeLinear output -> the tensor
    src = {}
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in producer:
            q_of[n.input[0]] = n
            for d in readers.get(n.output[0], []):
                src[d.output[0]] = n.input[0]
    skip = set()
    for n in g.node:
        if n.op_type == "Add":
            convs = [src.get(i) for i in n.input]
            cand = [t for t in convs if t and producer[t].op_type == "Conv" and
                    all(len(readers.get(d.output[0], [])) == 1 for d in readers[q_of[t].output[0]])]
            if cand:
                skip.add(q_of[max(cand, key=lambda t: index[producer[t].name])].name)
    for t, q in q_of.items():
        rd = [r for d in readers[q.output[0]] for r in readers.get(d.output[0], [])]
        if rd and all(r.op_type not in ("Conv", "MaxPool", "Add", "Relu") for r in rd):
            skip.add(q.name)
        # a pair between a Conv (or an Add fused into one) and the Relu fused after it
        if len(rd) == 1 and rd[0].op_type == "Relu" and producer[t].op_type in ("Conv", "Add"):
            skip.add(q.name)
    return skip


def write_qdq(float_model, x, out, **kw):
    """float_model's QDQ twin (insert_qdq with the ranges of inputs x; kw as insert_qdq's), checked
    by onnx.checker and saved to out; returns the ModelProto."""
    fm = unshare_identities(onnx.load(float_model))
    qm = insert_qdq(fm, tensor_ranges(fm, [x]), **kw)
    onnx.checker.check_model(qm)
    onnx.save(qm, out)
    return qm
