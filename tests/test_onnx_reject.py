#!/usr/bin/env python3
"""test_onnx_reject.py: every malformed or unsupported ONNX model is refused with its own clear
message, exit status 1 and no sanitizer report.

Each case starts from a small valid model built with the onnx package (Conv -> Relu ->
GlobalAveragePool -> Flatten -> Gemm), breaks one thing (with onnx.helper or by editing the
protobuf / the bytes), and runs `imgsim model info` on it: with the ASan+UBSan build when the
test environment has it (IMGSIM_CLI_ASAN), else with the normal build. The unbroken model must
load, so each refusal is caused by the one thing broken.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as ex:  # pragma: no cover
    testlib.skip("needs numpy and onnx: %s" % ex)

CLI = testlib.CLI_ASAN or testlib.CLI
WORK = testlib.workdir()
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")

failures = []


def tensor(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def base_parts(opset=13):
    """The parts of the valid model; cases edit them before make()."""
    rng = np.random.default_rng(0)
    inits = [
        tensor("W", rng.standard_normal((4, 3, 3, 3))),
        tensor("B", rng.standard_normal(4)),
        tensor("FW", rng.standard_normal((2, 4))),
        tensor("FB", rng.standard_normal(2)),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "W", "B"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "FW", "FB"], ["output"], name="fc", transB=1),
    ]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 2])
    return {"nodes": nodes, "inits": inits, "inputs": [inp], "outputs": [out], "opset": opset}


def make(p):
    g = helper.make_graph(p["nodes"], "g", p["inputs"], p["outputs"], initializer=p["inits"])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", p["opset"])])
    m.ir_version = 7
    return m


def write(name, model_or_bytes, folder=None):
    d = folder or WORK
    path = os.path.join(d, name + ".onnx")
    data = model_or_bytes if isinstance(model_or_bytes, (bytes, bytearray)) else model_or_bytes.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    return path


def check(case, path, expect):
    """Runs model info on path; expects exit 1 and every string of expect in stderr."""
    p = testlib.run(["model", "info", path], cli=CLI, check=False)
    err = p.stderr
    problems = []
    if p.returncode != 1:
        problems.append("exit status %d, expected 1" % p.returncode)
    if any(mark in err for mark in SANITIZER_MARKS):
        problems.append("sanitizer report")
    for s in [path] + list(expect):
        if s not in err:
            problems.append("message lacks %r" % s)
    if problems:
        failures.append(case)
        print("FAIL %-28s %s\n     stderr: %s" % (case, "; ".join(problems), err.strip()[:2000]))
    else:
        print("ok   %-28s %s" % (case, err.strip().splitlines()[-1] if err.strip() else ""))


def case(name, expect, edit=None, data=None, path=None):
    if path is None:
        if data is None:
            p = base_parts()
            model = edit(p) if edit else make(p)
            if model is None:
                model = make(p)
            data = model.SerializeToString()
        path = write(name, data)
    check(name, path, expect)


def main():
    # the unbroken model loads (under the sanitizers too)
    good = write("good", make(base_parts()))
    p = testlib.run(["model", "info", good, "--json"], cli=CLI, check=False)
    if p.returncode != 0 or any(m in p.stderr for m in SANITIZER_MARKS):
        print("FAIL the valid base model does not load:\n" + p.stderr)
        sys.exit(1)
    good_bytes = open(good, "rb").read()

    # --- operators, opsets, attributes -----------------------------------------------------
    def unknown_op(p):
        p["nodes"][1] = helper.make_node("Foo", ["c"], ["r"], name="my_node")
    case("unknown_operator", ["node 'my_node'", "unsupported operator 'Foo' (opset 13)"], unknown_op)

    def unknown_ops(p):  # every unsupported node is named, not just the first
        p["nodes"][1] = helper.make_node("Foo", ["c"], ["r"], name="my_node")
        p["nodes"][3] = helper.make_node("Bar", ["p"], ["f"], name="other_node")
        p["nodes"].insert(3, helper.make_node("Baz", ["p"], ["unused"]))
    case("unknown_operators", ["node 'my_node'", "unsupported operator 'Foo' (opset 13)",
                               "3 unsupported nodes in all", "'Baz_3' (Baz)", "'other_node' (Bar)"], unknown_ops)

    def other_domain(p):
        p["nodes"][1] = helper.make_node("FusedRelu", ["c"], ["r"], name="fr", domain="com.microsoft")
    case("operator_other_domain", ["node 'fr'", "unsupported operator 'com.microsoft.FusedRelu'"], other_domain)

    def opset(v):
        def f(p):
            p["opset"] = v
        return f
    case("opset_10", ["opset 10 is not supported", "11 to 25"], opset(10))
    case("opset_26", ["opset 26 is not supported", "11 to 25"], opset(26))

    def no_default_opset(p):
        m = make(p)
        del m.opset_import[:]
        m.opset_import.append(helper.make_opsetid("com.example", 1))
        return m
    case("no_default_opset", ["no default-domain"], no_default_opset)

    def ir_version(p):
        m = make(p)
        m.ir_version = 2
        return m
    case("ir_version_2", ["IR version 2 is not supported", "3 or later"], ir_version)

    def conv3d(p):
        p["inputs"] = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])]
        p["inits"][0] = tensor("W", np.ones((4, 3, 3, 3, 3)))
        p["nodes"][0] = helper.make_node("Conv", ["input", "W", "B"], ["c"], name="conv3d", kernel_shape=[3, 3, 3])
    case("conv_3d_kernel", ["node 'conv3d'", "3-D kernel_shape is not supported"], conv3d)

    def conv3d_weight(p):
        p["inits"][0] = tensor("W", np.ones((4, 3, 3, 3, 3)))
        p["nodes"][0] = helper.make_node("Conv", ["input", "W", "B"], ["c"], name="conv3d")
    case("conv_3d_weight", ["node 'conv3d'", "3-D convolution is not supported"], conv3d_weight)

    def pads6(p):
        p["nodes"][0] = helper.make_node("Conv", ["input", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1, 1, 1])
    case("conv_3d_pads", ["node 'conv'", "3-D pads is not supported"], pads6)

    def neg_pads(p):
        p["nodes"][0] = helper.make_node("Conv", ["input", "W", "B"], ["c"], name="conv", pads=[1, -1, 1, 1])
    case("conv_negative_pads", ["node 'conv'", "pads value -1 is not supported"], neg_pads)

    def storage_order(p):
        p["nodes"][2] = helper.make_node("MaxPool", ["r"], ["p"], name="mp", kernel_shape=[2, 2], storage_order=1)
    case("maxpool_storage_order", ["node 'mp'", "storage_order=1 is not supported"], storage_order)

    def bad_attr(p):
        p["nodes"][1] = helper.make_node("Relu", ["c"], ["r"], name="relu", foo=3)
    case("unknown_attribute", ["node 'relu'", "attribute 'foo' of Relu is not supported"], bad_attr)

    def attr_type(p):
        p["nodes"][0] = helper.make_node("Conv", ["input", "W", "B"], ["c"], name="conv", group=1.5)
    case("attribute_wrong_type", ["node 'conv'", "'group' of Conv must be an INT"], attr_type)

    def auto_pad(p):
        p["nodes"][0] = helper.make_node("Conv", ["input", "W", "B"], ["c"], name="conv", auto_pad="SIDEWAYS")
    case("auto_pad_unknown", ["node 'conv'", "unknown auto_pad"], auto_pad)

    def training_bn(p):
        c = 4
        p["inits"] += [tensor(n, np.ones(c)) for n in ("s", "bb", "mean", "var")]
        p["nodes"].insert(1, helper.make_node("BatchNormalization", ["c", "s", "bb", "mean", "var"], ["c2"],
                                              name="bn", training_mode=1))
        p["nodes"][2] = helper.make_node("Relu", ["c2"], ["r"], name="relu")
    case("batchnorm_training_mode", ["node 'bn'", "training_mode=1 is not supported"], training_bn)

    def conv_weight_activation(p):
        p["nodes"][0] = helper.make_node("Conv", ["input", "input", "B"], ["c"], name="conv")
    case("conv_weight_not_constant", ["node 'conv'", "weight must be a constant"], conv_weight_activation)

    # --- tensors ---------------------------------------------------------------------------
    def raw_tensor(name, dims, raw, dtype=TensorProto.FLOAT):
        t = TensorProto()
        t.name = name
        t.data_type = dtype
        t.dims.extend(dims)
        t.raw_data = raw
        return t

    def neg_dim(p):
        p["inits"][1] = raw_tensor("B", [-4], b"")
    case("negative_dim", ["tensor 'B'", "negative dimension -4"], neg_dim)

    def zero_dim(p):
        p["inits"][1] = raw_tensor("B", [0], b"")
    case("zero_dim", ["tensor 'B'", "zero-size dimension"], zero_dim)

    def overflow_dims(p):
        p["inits"][1] = raw_tensor("B", [1 << 40, 1 << 40], b"\0" * 16)
    case("dims_overflow_int64", ["tensor 'B'", "overflow a 64-bit element count"], overflow_dims)

    def huge_dims(p):
        p["inits"][1] = raw_tensor("B", [1 << 20, 1 << 20], b"\0" * 16)
    case("dims_over_limit", ["tensor 'B'", "elements is over the limit"], huge_dims)

    def rank9(p):
        p["inits"][1] = raw_tensor("B", [1] * 9, b"\0" * 4)
    case("rank_9", ["tensor 'B'", "rank 9 is over 8"], rank9)

    def raw_size(p):
        p["inits"][1] = raw_tensor("B", [4], b"\0" * 12)
    case("raw_data_size_mismatch", ["tensor 'B'", "raw_data has 12 bytes, its dims need 16"], raw_size)

    def typed_count(p):
        t = TensorProto()
        t.name = "B"
        t.data_type = TensorProto.FLOAT
        t.dims.extend([4])
        t.float_data.extend([1.0, 2.0, 3.0])
        p["inits"][1] = t
    case("float_data_count_mismatch", ["tensor 'B'", "has 3 values, its dims need 4"], typed_count)

    def int8_tensor(p):
        p["inits"][1] = raw_tensor("B", [4], b"\0" * 4, TensorProto.INT8)
    case("data_type_int8", ["tensor 'B'", "data type INT8"], int8_tensor)

    def no_dtype(p):
        t = TensorProto()
        t.name = "B"
        t.dims.extend([4])
        t.raw_data = b"\0" * 16
        p["inits"][1] = t
    case("data_type_missing", ["tensor 'B'", "no data type"], no_dtype)

    # --- graph structure ---------------------------------------------------------------------
    def cycle(p):
        p["nodes"][0] = helper.make_node("Add", ["input", "y"], ["x"], name="add")
        p["nodes"][1] = helper.make_node("Relu", ["x"], ["y"], name="relu")
        p["nodes"][2] = helper.make_node("GlobalAveragePool", ["x"], ["p"], name="gap")
        p["inits"] = p["inits"][2:]
        p["nodes"][4] = helper.make_node("Gemm", ["f", "FW", "FB"], ["output"], name="fc", transB=1)
        p["inits"][0] = tensor("FW", np.ones((2, 3)))
    case("cyclic_graph", ["cyclic"], cycle)

    def undefined(p):
        p["nodes"][1] = helper.make_node("Relu", ["nope"], ["r"], name="relu")
    case("undefined_input", ["node 'relu'", "input 'nope' is not defined"], undefined)

    def twice(p):
        p["nodes"][1] = helper.make_node("Relu", ["c"], ["c"], name="relu")
    case("value_defined_twice", ["value 'c' is defined twice"], twice)

    def two_inputs(p):
        p["inputs"].append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["N", 3, 8, 8]))
    case("two_image_inputs", ["2 inputs besides its weights"], two_inputs)

    def input_3d(p):
        p["inputs"] = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8])]
    case("input_not_4d", ["input 'input' must have 4 dimensions"], input_3d)

    def input_symbolic(p):
        p["inputs"] = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", 8])]
    case("input_symbolic_height", ["dimension H is not a fixed number"], input_symbolic)

    def input_int(p):
        p["inputs"] = [helper.make_tensor_value_info("input", TensorProto.INT64, ["N", 3, 8, 8])]
    case("input_not_float", ["element type INT64"], input_int)

    def no_graph(p):
        m = make(p)
        m.ClearField("graph")
        return m
    case("no_graph", ["no graph"], no_graph)

    # --- bytes ---------------------------------------------------------------------------------
    case("truncated_file", ["not a valid ONNX protobuf"], data=good_bytes[: len(good_bytes) * 6 // 10])
    rng = np.random.default_rng(1)
    case("random_bytes", ["not a valid ONNX protobuf"], data=rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    case("empty_file", ["not a valid ONNX protobuf (empty file)"], data=b"")
    case("missing_file", ["No such file"], path=os.path.join(WORK, "does-not-exist.onnx"))

    # --- external data ---------------------------------------------------------------------------
    def external(name, location, offset=None, length=None, setup=None):
        folder = os.path.join(WORK, name)
        os.makedirs(folder, exist_ok=True)
        if setup:
            setup(folder)
        p = base_parts()
        w = p["inits"][0]
        t = TensorProto()
        t.name = "W"
        t.data_type = TensorProto.FLOAT
        t.dims.extend(w.dims)
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", offset), ("length", length)):
            if v is not None:
                e = t.external_data.add()
                e.key, e.value = k, str(v)
        p["inits"][0] = t
        return write("model", make(p), folder)

    wbytes = numpy_helper.to_array(base_parts()["inits"][0]).astype("<f4").tobytes()  # 432 bytes

    def weights_file(folder, name="weights.bin", data=wbytes):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)

    outside = os.path.join(WORK, "outside")
    os.makedirs(outside, exist_ok=True)
    weights_file(outside)

    path = external("ext_ok", "weights.bin", 0, len(wbytes), setup=weights_file)
    p = testlib.run(["model", "info", path], cli=CLI, check=False)
    if p.returncode != 0:
        failures.append("external_data_valid")
        print("FAIL external_data_valid: %s" % p.stderr)
    else:
        print("ok   external_data_valid")

    case("external_absolute_path", ["tensor 'W'", "is an absolute path"],
         path=external("ext_abs", os.path.join(outside, "weights.bin")))
    case("external_dotdot", ["tensor 'W'", "leaves the model's folder ('..')"],
         path=external("ext_dotdot", "../outside/weights.bin"))
    case("external_dotdot_inner", ["tensor 'W'", "('..')"],
         path=external("ext_dotdot2", "sub/../../outside/weights.bin"))

    def link_out(folder):
        os.symlink(os.path.join(outside, "weights.bin"), os.path.join(folder, "w.bin"))
    case("external_symlink_outside", ["tensor 'W'", "resolves outside the model's folder"],
         path=external("ext_symlink", "w.bin", setup=link_out))

    def link_dir_out(folder):
        os.symlink(outside, os.path.join(folder, "sub"))
    case("external_symlinked_dir_outside", ["resolves outside the model's folder"],
         path=external("ext_symdir", "sub/weights.bin", setup=link_dir_out))
    case("external_offset_past_end", ["tensor 'W'", "offset 100000 is past the end"],
         path=external("ext_offset", "weights.bin", 100000, None, setup=weights_file))
    case("external_length_past_end", ["tensor 'W'", "past the end of 'weights.bin'"],
         path=external("ext_length", "weights.bin", 16, len(wbytes), setup=weights_file))
    case("external_length_mismatch", ["tensor 'W'", "external data has 400 bytes, its dims need 432"],
         path=external("ext_short", "weights.bin", 0, 400, setup=weights_file))
    case("external_missing_file", ["tensor 'W'", "No such file"],
         path=external("ext_missing", "nothere.bin", 0, len(wbytes)))
    case("external_bad_offset", ["bad external data offset"],
         path=external("ext_badoff", "weights.bin", "-5", None, setup=weights_file))

    def dir_as_data(folder):
        os.makedirs(os.path.join(folder, "adir"), exist_ok=True)
    case("external_not_regular", ["not a regular file"], path=external("ext_dir", "adir", setup=dir_as_data))

    # --- variants that are valid and must load (each next to the refusals it could be taken for) ---
    def accept(name, edit, dim=4):
        """The variant must load; dim: the expected feature size (None: not checked)."""
        p = base_parts()
        m = edit(p) or make(p)
        path = write(name, m)
        r = testlib.run(["model", "info", path, "--json"], cli=CLI, check=False)
        ok = r.returncode == 0 and not any(mk in r.stderr for mk in SANITIZER_MARKS)
        if ok and dim is not None:
            ok = json.loads(r.stdout)["dim"] == dim
        if not ok:
            failures.append(name)
            print("FAIL %-28s valid variant refused: %s %s" % (name, r.stderr.strip()[:2000], r.stdout.strip()))
        else:
            print("ok   %-28s loads" % name)

    def inits_as_inputs(p):
        p["inputs"] += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in p["inits"]]
    accept("initializers_as_inputs", inits_as_inputs)

    def reversed_nodes(p):
        p["nodes"].reverse()
    accept("nodes_out_of_order", reversed_nodes)

    def identity_const(p):
        p["nodes"].insert(0, helper.make_node("Identity", ["B"], ["B2"]))
        p["nodes"].insert(0, helper.make_node("Identity", ["B2"], ["B3"]))
        p["nodes"][2] = helper.make_node("Conv", ["input", "W", "B3"], ["c"], pads=[1, 1, 1, 1])
    accept("identity_of_constants", identity_const)

    def clip_consts(p):
        p["nodes"].insert(0, helper.make_node("Constant", [], ["lo"], value=helper.make_tensor("v", 1, [], [0.0])))
        p["nodes"].insert(0, helper.make_node("Constant", [], ["hi"], value_float=6.0))
        p["nodes"][3] = helper.make_node("Clip", ["c", "lo", "hi"], ["r"])
    accept("clip_constant_bounds", clip_consts)

    def clip_max_only(p):
        p["inits"].append(tensor("hi", np.float32(6.0)))
        p["nodes"][1] = helper.make_node("Clip", ["c", "", "hi"], ["r"])
    accept("clip_max_only", clip_max_only)

    def static_batch(p):
        p["inputs"] = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])]
    accept("static_batch", static_batch)

    def same_upper(p):
        p["nodes"][0] = helper.make_node("Conv", ["input", "W", "B"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2])
    accept("auto_pad_same_upper", same_upper)

    def flatten_negative(p):
        p["nodes"][3] = helper.make_node("Flatten", ["p"], ["f"], axis=-3)
    accept("flatten_negative_axis", flatten_negative)

    def reshape_int64(p):
        p["inits"].append(numpy_helper.from_array(np.array([-1, 4], np.int64), "shape"))
        p["nodes"][3] = helper.make_node("Reshape", ["p", "shape"], ["f"])
    accept("reshape_int64_shape", reshape_int64)

    def matmul_add(p):
        p["inits"][2] = tensor("FW", np.ones((4, 2)))
        p["nodes"][4] = helper.make_node("MatMul", ["f", "FW"], ["mm"])
        p["nodes"].append(helper.make_node("Add", ["mm", "FB"], ["output"]))
    accept("matmul_add_head", matmul_add, dim=None)

    def fp16_weights(p):
        w = numpy_helper.to_array(p["inits"][0]).astype(np.float16)
        p["inits"][0] = numpy_helper.from_array(w, "W")
        p["inits"][1] = numpy_helper.from_array(numpy_helper.to_array(p["inits"][1]).astype(np.float64), "B")
    accept("float16_and_double_weights", fp16_weights)

    def pad_noop(p):  # torch writes these before DenseNet's AveragePool
        p["inits"].append(numpy_helper.from_array(np.zeros(8, np.int64), "pads"))
        p["nodes"][2] = helper.make_node("Pad", ["r", "pads"], ["rp"], mode="constant")
        p["nodes"].insert(3, helper.make_node("GlobalAveragePool", ["rp"], ["p"]))
    accept("pad_that_pads_nothing", pad_noop)

    def pad_nonzero(p):  # zero padding folds only into a Conv or AveragePool
        p["inits"].append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"))
        p["nodes"][2] = helper.make_node("Pad", ["r", "pads"], ["rp"], name="pad")
        p["nodes"].insert(3, helper.make_node("GlobalAveragePool", ["rp"], ["p"], name="gap"))
    case("pad_nonzero", ["node 'gap'", "output of Pad 'pad' with non-zero pads",
                         "only before a Conv or AveragePool"], pad_nonzero)

    def pad_edit(mode="constant", pp=(0, 0, 1, 1, 0, 0, 1, 1), value=None, then="AveragePool", **kw):
        """Pad (pads pp) -> then (3x3, attributes kw) -> GlobalAveragePool."""
        def edit(p):
            p["inits"].append(numpy_helper.from_array(np.array(pp, np.int64), "pads"))
            ins = ["r", "pads"]
            if value is not None:
                p["inits"].append(numpy_helper.from_array(np.array(value, np.float32), "cval"))
                ins.append("cval")
            p["nodes"][2] = helper.make_node("Pad", ins, ["rp"], name="pad", mode=mode)
            if then == "Conv":
                p["inits"].append(tensor("W2", np.ones((4, 4, 3, 3))))
                p["nodes"].insert(3, helper.make_node("Conv", ["rp", "W2"], ["q"], name="then", **kw))
            else:
                p["nodes"].insert(3, helper.make_node(then, ["rp"], ["q"], name="then", kernel_shape=[3, 3], **kw))
            p["nodes"].insert(4, helper.make_node("GlobalAveragePool", ["q"], ["p"]))
        return edit
    accept("pad_then_averagepool", pad_edit())
    accept("pad_value_zero_then_avgpool", pad_edit(value=0.0, count_include_pad=0))
    accept("pad_then_conv", pad_edit(then="Conv", pads=[1, 0, 1, 0]))
    case("pad_reflect", ["node 'pad'", "Pad (opset 13) with a mode other than constant"], pad_edit(mode="reflect"))
    case("pad_channel_axis", ["node 'pad'", "padding of the batch or channel axis"],
         pad_edit(pp=(0, 1, 0, 0, 0, 0, 0, 0)))
    case("pad_value_nonzero", ["node 'pad'", "a constant_value other than 0"], pad_edit(value=1.5))
    case("pad_then_maxpool", ["node 'then'", "MaxPool reads 'rp'", "only before a Conv or AveragePool"],
         pad_edit(then="MaxPool"))
    case("pad_then_avgpool_own_pads", ["node 'then'", "its own uncounted pads"],
         pad_edit(pads=[1, 1, 1, 1], count_include_pad=0))
    case("pad_then_conv_auto_pad", ["node 'then'", "with auto_pad"], pad_edit(then="Conv", auto_pad="SAME_UPPER"))

    def reducemean(axes, keepdims, name="rm"):
        def edit(p):
            p["nodes"][2] = helper.make_node("ReduceMean", ["r"], ["p"], name=name, axes=axes, keepdims=keepdims)
            if not keepdims:
                p["nodes"][3] = helper.make_node("Identity", ["p"], ["f"])
        return edit
    accept("reducemean_hw_keepdims", reducemean([2, 3], 1))
    accept("reducemean_hw", reducemean([-1, -2], 0))
    def reducemean_all(p):  # no axes: every axis, the batch too
        p["nodes"][2] = helper.make_node("ReduceMean", ["r"], ["p"], name="rm")
    case("reducemean_all_axes", ["node 'rm'", "ReduceMean (opset 13) is supported only over listed axes"],
         reducemean_all)

    # shape subgraphs (a dynamic batch): folded by shape inference, the batch kept as it is
    def shape_reshape(batch_op=None, perm=None, operand="two"):
        """Flatten replaced by Reshape(p, Concat(Unsqueeze(Gather(Shape(p), 0)) [op], [-1]))."""
        def edit(p):
            p["inits"] += [numpy_helper.from_array(np.array(0, np.int64), "i0"),
                           numpy_helper.from_array(np.array([0], np.int64), "ax0"),
                           numpy_helper.from_array(np.array([-1], np.int64), "m1"),
                           numpy_helper.from_array(np.array(2, np.int64), "two"),
                           numpy_helper.from_array(np.array(1, np.int64), "one")]
            nodes = [helper.make_node("Shape", ["p"], ["sh"], name="shape"),
                     helper.make_node("Gather", ["sh", "i0"], ["n"], name="gather", axis=0)]
            b = "n"
            if batch_op:
                nodes.append(helper.make_node(batch_op, ["n", operand], ["n2"], name="batch_arith"))
                b = "n2"
            nodes += [helper.make_node("Unsqueeze", [b, "ax0"], ["nu"], name="unsq"),
                      helper.make_node("Concat", ["nu", "m1"], ["shp"], name="cat", axis=0),
                      helper.make_node("Reshape", ["p", "shp"], ["f"], name="reshape")]
            if perm:
                p["nodes"].insert(2, helper.make_node("Transpose", ["r"], ["rt"], name="tr", perm=perm))
                p["nodes"][3] = helper.make_node("GlobalAveragePool", ["rt"], ["p"], name="gap")
            p["nodes"][-2:-1] = nodes
        return edit
    accept("shape_subgraph_reshape", shape_reshape())
    accept("shape_subgraph_div_by_one", shape_reshape(batch_op="Div", operand="one"))
    case("shape_batch_arithmetic", ["node 'batch_arith'", "shape arithmetic on the batch size"],
         shape_reshape(batch_op="Mul"))
    accept("transpose_hw", shape_reshape(perm=[0, 1, 3, 2]))
    case("transpose_batch_axis", ["node 'tr'", "would move the batch axis"], shape_reshape(perm=[1, 0, 2, 3]))

    def slice_edit(starts, ends, axes, steps=None, name="sl"):
        def edit(p):
            p["inits"] += [numpy_helper.from_array(np.array(v, np.int64), k)
                           for k, v in (("st", starts), ("en", ends), ("axs", axes)) + ((("sp", steps),) if steps else ())]
            ins = ["r", "st", "en", "axs"] + (["sp"] if steps else [])
            p["nodes"].insert(2, helper.make_node("Slice", ins, ["rs"], name=name))
            p["nodes"][3] = helper.make_node("GlobalAveragePool", ["rs"], ["p"], name="gap")
        return edit
    def chunk(p):  # torch's chunk(2, dim=1) with the halves swapped
        p["inits"] += [numpy_helper.from_array(np.array(v, np.int64), k)
                       for k, v in (("z", [0]), ("h", [2]), ("e", [4]), ("a1", [1]))]
        p["nodes"][2:3] = [helper.make_node("Slice", ["r", "z", "h", "a1"], ["lo"], name="lo"),
                           helper.make_node("Slice", ["r", "h", "e", "a1"], ["hi"], name="hi"),
                           helper.make_node("Concat", ["hi", "lo"], ["rs"], axis=1),
                           helper.make_node("GlobalAveragePool", ["rs"], ["p"], name="gap")]
    accept("slice_channels", chunk)
    accept("slice_hw_negative", slice_edit([-5, 1], [2**62, -1], [-1, 2]), dim=4)
    case("slice_step_2", ["node 'sl'", "step 2 on an activation is not supported"], slice_edit([0], [8], [2], [2]))
    case("slice_batch_axis", ["node 'sl'", "slicing the batch axis is not supported"], slice_edit([0], [1], [0]))

    def gather_act(p):
        p["inits"].append(numpy_helper.from_array(np.array([0, 2], np.int64), "idx"))
        p["nodes"].insert(2, helper.make_node("Gather", ["r", "idx"], ["rg"], name="ga", axis=1))
        p["nodes"][3] = helper.make_node("GlobalAveragePool", ["rg"], ["p"], name="gap")
    case("gather_of_activation", ["node 'ga'", "Gather", "on an activation is not supported"], gather_act)

    def layernorm(axis, name="ln"):
        def edit(p):
            p["inits"] += [tensor("g", np.ones(8)), tensor("bb", np.zeros(8))]
            p["nodes"].insert(2, helper.make_node("LayerNormalization", ["r", "g", "bb"], ["rl"], name=name, axis=axis,
                                                  epsilon=1e-5))
            p["nodes"][3] = helper.make_node("GlobalAveragePool", ["rl"], ["p"], name="gap")
            p["opset"] = 17
        return edit
    accept("layernorm_last_axis", layernorm(-1))
    case("layernorm_axis_2", ["node 'ln'", "LayerNormalization (opset 17) is supported over the last axis only"],
         layernorm(2))
    case("reducemean_batch", ["node 'rm'", "other than the batch"], reducemean([0, 1], 1))

    def reducemean_last(p):
        p["nodes"].insert(2, helper.make_node("ReduceMean", ["r"], ["rm"], name="rm", axes=[-1]))
        p["nodes"][3] = helper.make_node("GlobalAveragePool", ["rm"], ["p"], name="gap")
    accept("reducemean_last_axis", reducemean_last)

    def dropout(p):  # other exporters keep inference Dropouts
        p["inits"].append(numpy_helper.from_array(np.array(False), "train"))
        p["nodes"][1] = helper.make_node("Dropout", ["c", "", "train"], ["d"], seed=3)
        p["nodes"].insert(2, helper.make_node("Relu", ["d"], ["r"]))
    accept("dropout_inference", dropout)

    def dropout_training(p):
        p["inits"].append(numpy_helper.from_array(np.array([1.0], np.float32), "train"))
        p["nodes"][1] = helper.make_node("Dropout", ["c", "", "train"], ["d"], name="drop")
        p["nodes"].insert(2, helper.make_node("Relu", ["d"], ["r"]))
    case("dropout_training_mode", ["node 'drop'", "Dropout in training mode is not supported"], dropout_training)

    def concat_many(p):  # DenseNet's blocks concatenate more than 16 inputs: a chain of Concats
        p["nodes"].insert(2, helper.make_node("Concat", ["r"] * 20, ["cc"], axis=1))
        p["nodes"][3] = helper.make_node("GlobalAveragePool", ["cc"], ["p"])
        p["inits"][2] = tensor("FW", np.ones((2, 80)))
    accept("concat_of_20_inputs", concat_many, dim=80)

    # a model that imports but that the engine cannot run: refused when the engine is built,
    # naming the file, the node, its operator and the opset
    def lone_erf(p):
        p["nodes"].insert(2, helper.make_node("Erf", ["r"], ["re"], name="lone_erf"))
        p["nodes"][3] = helper.make_node("GlobalAveragePool", ["re"], ["p"], name="gap")
    q = base_parts()
    lone_erf(q)
    path = write("engine_lone_erf", make(q))
    inp = os.path.join(WORK, "x.npy")
    np.save(inp, np.zeros((1, 3 * 8 * 8), np.float32))
    r = testlib.run(["bench", "--model=" + path, "--input=" + inp, "--dump=" + os.path.join(WORK, "y.npy"),
                     "--threads=1"], cli=CLI, check=False)
    want = [path, "node 'lone_erf'", "(Erf, opset 13)", "only as part of GELU"]
    missing = [w for w in want if w not in r.stderr]
    if r.returncode == 0 or missing or any(mk in r.stderr for mk in SANITIZER_MARKS):
        failures.append("engine_lone_erf")
        print("FAIL %-28s exit %d, message lacks %s: %s" % ("engine_lone_erf", r.returncode, missing,
                                                           r.stderr.strip()[-600:]))
    else:
        print("ok   %-28s %s" % ("engine_lone_erf", r.stderr.strip().splitlines()[-1]))

    if failures:
        print("%d case(s) failed: %s" % (len(failures), ", ".join(failures)))
        sys.exit(1)
    print("all cases refused as expected (%s)" % ("ASan+UBSan build" if testlib.CLI_ASAN else "normal build"))


if __name__ == "__main__":
    main()
