#!/usr/bin/env python3
"""make_seeds.py: writes the seed corpora of the fuzz harnesses (fuzz/corpus/TARGET/).

    /usr/bin/python3 fuzz/make_seeds.py [--out fuzz/corpus]

Needs numpy, PIL (with WebP) and onnx: Debian's python3 has them. The seeds are small valid (and
a few deliberately invalid) inputs of every kind each harness reads, so that libFuzzer starts from
every decoder path instead of having to find the magic bytes first. Everything is generated from
fixed seeds; nothing is downloaded. The outputs are committed, so a rerun is only needed to add
seeds (a different PIL or libjpeg may write slightly different bytes, which does no harm).

  image/  JPEG (baseline 4:4:4, 4:2:0, 4:2:2, progressive, optimised Huffman, grayscale, CMYK, EXIF
          orientations 2, 4, 5, 6, 7), PNG (RGB, RGBA, gray, gray+alpha, palette with tRNS, 1-bit,
          16-bit gray and RGB, Adam7 interlaced, eXIf orientation 3, a 1300x3 row for the widest
          resize kernels), WebP (lossy, lossless, alpha, EXIF, animated: refused). Each file ends with the harness's option byte (fuzz_image.c).
  onnx/   tiny models (a few KB): a classifier head, a residual block with BatchNormalization, an
          MLP head, most other operators imgsim imports (grouped/dilated Conv, Clip, Sigmoid, Mul,
          MaxPool/AveragePool, Concat of three, Constant, no-op Pad, Dropout, Identity, MatMul,
          Reshape), float16/bfloat16/double/int/bool and typed-field initializers, opsets 11 and
          18, initializers in external data pointing into the harness's weights.bin, and refused
          external data (absolute, '..', missing file, past the end).
  npy/    float32 and float16 arrays (2-D, 1-D, empty), a version 2.0 header, and refused ones
          (float64, big-endian, Fortran order, int32, 3-D).
  tsv/    lists with and without labels, BOM, CRLF, blank lines, absolute and relative paths, a
          header only, refused ones (three columns, empty path, stray CR), and files that are not
          lists (an image, text).
"""
import argparse
import io
import os
import struct
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

# ---- images -------------------------------------------------------------------------------

# option byte of fuzz_image.c: bits 0-2 target size, bit 3 exif_rotate, bit 4 dct_scaling,
# bit 5 the small max_pixels
OPT_224 = 0x18        # 224x224, exif, dct scaling
OPT_TINY = 0x19       # 1x1: every image is at least twice the target (DCT scaling paths)
OPT_ODD = 0x1A        # 7x3
OPT_NOEXIF = 0x04     # 31x64, no exif, no dct scaling
OPT_SMALLMAX = 0x3B   # 16x16 with max_pixels 4096


def photo(w, h, seed):
    """A smooth gradient with noise and a few edges: compresses to varied coefficients."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 100 * np.sin(x / max(w, 1) * 6.0 + seed)
    g = 128 + 100 * np.cos(y / max(h, 1) * 5.0)
    b = (x * 7 + y * 3) % 256
    a = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    a[h // 3: h // 2, w // 4: w // 2] = (250, 20, 30)
    return np.clip(a, 0, 255).astype(np.uint8)


def exif_orientation(o):
    ex = Image.Exif()
    ex[0x0112] = o
    return ex.tobytes()


def pil_bytes(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_rows(a, depth):
    rows = []
    for y in range(a.shape[0]):
        r = a[y].reshape(-1)
        if depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // depth
            out = bytearray()
            vals = [int(v) for v in r]
            for i in range(0, len(vals), per):
                byte = 0
                for j in range(per):
                    v = vals[i + j] if i + j < len(vals) else 0
                    byte |= v << (8 - depth * (j + 1))
                out.append(byte)
            rows.append(bytes(out))
    return rows


def png(a, color_type, depth, interlace=False, plte=None, trns=None, exif=None):
    """A PNG written by hand (PIL cannot write 16-bit RGB, interlaced or eXIf PNGs)."""
    if a.ndim == 2:
        a = a[:, :, None]
    h, w = a.shape[:2]
    raw = bytearray()
    for (x0, y0, dx, dy) in (ADAM7 if interlace else [(0, 0, 1, 1)]):
        sub = a[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        bpp = max(1, sub.shape[2] * depth // 8)
        for k, r in enumerate(png_rows(sub, depth)):
            if k % 2 and depth >= 8:  # every other row with the Sub filter
                b = bytearray(r)
                for j in range(len(b) - 1, bpp - 1, -1):
                    b[j] = (b[j] - b[j - bpp]) & 0xFF
                raw += b"\x01" + bytes(b)
            else:
                raw += b"\x00" + r
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0))
    if plte is not None:
        out += png_chunk(b"PLTE", bytes(np.asarray(plte, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    if exif is not None:
        out += png_chunk(b"eXIf", exif)
    out += png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    out += png_chunk(b"IEND", b"")
    return out


def image_seeds():
    s = {}
    rgb = Image.fromarray(photo(24, 16, 1))
    odd = Image.fromarray(photo(33, 17, 2))
    big = Image.fromarray(photo(64, 48, 3))
    s["jpeg_444.jpg"] = (pil_bytes(rgb, "JPEG", quality=90, subsampling=0), OPT_224)
    s["jpeg_420_odd.jpg"] = (pil_bytes(odd, "JPEG", quality=75, subsampling=2), OPT_ODD)
    s["jpeg_422.jpg"] = (pil_bytes(odd, "JPEG", quality=60, subsampling=1), OPT_NOEXIF)
    s["jpeg_progressive.jpg"] = (pil_bytes(big, "JPEG", quality=80, progressive=True), OPT_TINY)
    s["jpeg_optimized_dct.jpg"] = (pil_bytes(big, "JPEG", quality=50, optimize=True), 0x12)  # 7x3, dct
    s["jpeg_gray.jpg"] = (pil_bytes(rgb.convert("L"), "JPEG", quality=85), OPT_224)
    s["jpeg_cmyk.jpg"] = (pil_bytes(rgb.convert("CMYK"), "JPEG", quality=85), OPT_ODD)
    s["jpeg_exif6.jpg"] = (pil_bytes(odd, "JPEG", quality=70, exif=exif_orientation(6)), OPT_224)
    s["jpeg_smallmax.jpg"] = (pil_bytes(big, "JPEG", quality=70), OPT_SMALLMAX)
    s["jpeg_exif5.jpg"] = (pil_bytes(odd, "JPEG", quality=70, exif=exif_orientation(5)), OPT_ODD)
    s["jpeg_exif7.jpg"] = (pil_bytes(rgb, "JPEG", quality=70, exif=exif_orientation(7)), OPT_224)
    s["jpeg_exif2.jpg"] = (pil_bytes(rgb, "JPEG", quality=70, exif=exif_orientation(2)), OPT_TINY)
    s["jpeg_exif4.jpg"] = (pil_bytes(odd, "JPEG", quality=70, exif=exif_orientation(4)), OPT_224)

    a = photo(20, 13, 4)
    s["png_rgb8.png"] = (pil_bytes(Image.fromarray(a), "PNG"), OPT_224)
    alpha = np.dstack([a, (np.arange(20 * 13).reshape(13, 20) * 3 % 256).astype(np.uint8)])
    s["png_rgba8.png"] = (pil_bytes(Image.fromarray(alpha, "RGBA"), "PNG"), OPT_ODD)
    s["png_gray8.png"] = (png(a[:, :, 0], 0, 8), OPT_NOEXIF)
    s["png_la8.png"] = (png(alpha[:, :, [0, 3]], 4, 8), OPT_TINY)
    idx = (a[:, :, 0] // 64).astype(np.uint8)
    s["png_palette_trns.png"] = (png(idx, 3, 2, plte=[(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)],
                                     trns=bytes([0, 128])), OPT_224)
    s["png_gray1.png"] = (png((a[:, :, 1] > 128).astype(np.uint8), 0, 1), OPT_ODD)
    s["png_gray16.png"] = (png(a[:, :, 2].astype(np.uint16) * 257 + 3, 0, 16), OPT_224)
    s["png_rgb16_interlaced.png"] = (png(a.astype(np.uint16) * 250, 2, 16, interlace=True), OPT_ODD)
    tiff = exif_orientation(3)
    tiff = tiff[6:] if tiff.startswith(b"Exif\0\0") else tiff  # eXIf holds the TIFF block itself
    s["png_rgb8_interlaced_exif3.png"] = (png(a, 2, 8, interlace=True, exif=tiff), OPT_224)
    # over 1024 horizontal taps (a 1300-pixel row to one pixel): the resize's 32-bit kernel path
    wide = np.tile(photo(13, 3, 8), (1, 100, 1))
    s["png_wide_1300x3.png"] = (png(wide, 2, 8), OPT_TINY)

    w = Image.fromarray(photo(18, 14, 5))
    s["webp_lossy.webp"] = (pil_bytes(w, "WEBP", quality=70), OPT_224)
    s["webp_lossless.webp"] = (pil_bytes(w, "WEBP", lossless=True), OPT_ODD)
    wa = Image.fromarray(np.dstack([photo(18, 14, 6), np.full((14, 18), 100, np.uint8)]), "RGBA")
    s["webp_alpha.webp"] = (pil_bytes(wa, "WEBP", quality=60, alpha_quality=50), OPT_TINY)
    s["webp_exif8.webp"] = (pil_bytes(w, "WEBP", quality=50, exif=exif_orientation(8)), OPT_224)
    frames = [Image.fromarray(photo(10, 8, 7 + i)) for i in range(2)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100, quality=40)
    s["webp_animated.webp"] = (buf.getvalue(), OPT_224)
    return {k: v + bytes([o]) for k, (v, o) in s.items()}


# ---- ONNX ---------------------------------------------------------------------------------

WEIGHTS_FLOATS = 4096  # fuzz_onnx.c writes weights.bin with these values


def weights_bin():
    return np.array([((i * 37) % 97 - 48) / 64.0 for i in range(WEIGHTS_FLOATS)], dtype=np.float32)


def T(name, arr, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


def model(nodes, inits, inp_shape, out_name="output", opset=13, ir=7, inputs_extra=()):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, inp_shape)]
                          + list(inputs_extra),
                          [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="imgsim-fuzz-seeds")
    m.ir_version = ir
    return m.SerializeToString()


def onnx_seeds():
    rng = np.random.default_rng(0)
    r = lambda *shape: rng.standard_normal(shape).astype(np.float32) * 0.5  # noqa: E731
    s = {}
    s["cls_head.onnx"] = model([
        helper.make_node("Conv", ["input", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "FW", "FB"], ["output"], transB=1),
    ], [T("W", r(4, 3, 3, 3)), T("B", r(4)), T("FW", r(2, 4)), T("FB", r(2))], ["N", 3, 8, 8])

    bn = lambda p, c: [T(p + "_s", 1 + r(c) * 0.1), T(p + "_b", r(c)), T(p + "_m", r(c)),  # noqa: E731
                       T(p + "_v", 1 + np.abs(r(c)))]
    s["resnet_block.onnx"] = model([
        helper.make_node("Conv", ["input", "W1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"], ["b1"], epsilon=1e-5),
        helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["mp", "W2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "bn2_s", "bn2_b", "bn2_m", "bn2_v"], ["b2"]),
        helper.make_node("Add", ["b2", "mp"], ["a"]),
        helper.make_node("Relu", ["a"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "FW", "FB"], ["output"], transB=1),
    ], [T("W1", r(4, 3, 3, 3)), *bn("bn1", 4), T("W2", r(4, 4, 3, 3)), *bn("bn2", 4),
        T("shape", [-1, 4], np.int64), T("FW", r(3, 4)), T("FB", r(3))], ["N", 3, 16, 16], opset=17, ir=8)

    s["mlp_head.onnx"] = model([
        helper.make_node("Conv", ["input", "W", "B"], ["c"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["ap"], ["f"]),
        helper.make_node("Gemm", ["f", "W1", "B1"], ["g1"], transB=1),
        helper.make_node("Relu", ["g1"], ["r1"]),
        helper.make_node("Dropout", ["r1"], ["d1"]),
        helper.make_node("Gemm", ["d1", "W2", "B2"], ["output"], transB=1),
    ], [T("W", r(3, 3, 2, 2)), T("B", r(3)), T("W1", r(6, 12)), T("B1", r(6)), T("W2", r(5, 6)), T("B2", r(5))],
        ["N", 3, 8, 8])

    s["misc_ops.onnx"] = model([
        helper.make_node("Pad", ["input", "pads"], ["pd"], mode="constant"),
        helper.make_node("Conv", ["pd", "Wg"], ["cg"], kernel_shape=[3, 3], group=2, dilations=[2, 2],
                         pads=[2, 2, 2, 2]),
        helper.make_node("Clip", ["cg", "lo", "hi"], ["cl"]),
        helper.make_node("Sigmoid", ["cl"], ["sg"]),
        helper.make_node("Mul", ["cl", "sg"], ["sw"]),
        helper.make_node("Conv", ["sw", "Ws"], ["cs"], kernel_shape=[1, 1], auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("AveragePool", ["cs"], ["ap"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                         count_include_pad=1, ceil_mode=1),
        helper.make_node("MaxPool", ["cs"], ["mx"], kernel_shape=[3, 3], strides=[1, 1], auto_pad="SAME_LOWER"),
        helper.make_node("Identity", ["cs"], ["id"]),
        helper.make_node("Concat", ["ap", "mx", "id"], ["cc"], axis=1),
        helper.make_node("GlobalAveragePool", ["cc"], ["gp"]),
        helper.make_node("Constant", [], ["newshape"], value=T("k", [0, -1], np.int64)),
        helper.make_node("Reshape", ["gp", "newshape"], ["fl"]),
        helper.make_node("MatMul", ["fl", "M"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["output"]),
    ], [T("pads", [0, 0, 0, 0, 0, 0, 0, 0], np.int64), T("Wg", r(4, 2, 3, 3)), T("lo", 0.0), T("hi", 6.0),
        T("Ws", r(4, 4, 1, 1)), T("M", r(12, 5)), T("bias", r(5))], ["N", 4, 9, 11])

    # initializers in other element types and in the typed fields instead of raw_data
    w16 = numpy_helper.from_array(r(4, 3, 3, 3).astype(np.float16), "W")
    b64 = numpy_helper.from_array(r(4).astype(np.float64), "B")
    fw = helper.make_tensor("FW", TensorProto.FLOAT, [2, 4], r(2, 4).reshape(-1).tolist(), raw=False)
    shp = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 4], raw=False)
    s["dtypes_opset11.onnx"] = model([
        helper.make_node("Conv", ["input", "W", "B"], ["c"], kernel_shape=[3, 3]),
        helper.make_node("Clip", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "FW"], ["output"], transB=1, alpha=0.5),
    ], [w16, b64, fw, shp], ["N", 3, 6, 6], opset=11, ir=6)

    s["opset18_matmul.onnx"] = model([
        helper.make_node("Conv", ["input", "W"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "M"], ["output"]),
    ], [T("W", r(2, 1, 1, 1)), T("M", r(2, 3))], ["N", 1, 5, 5], opset=18, ir=8)

    # external data in the harness's weights.bin: W = floats [0, 108), B = floats [256, 260)
    wb = weights_bin()
    ext = onnx.load_from_string(model([
        helper.make_node("Conv", ["input", "W", "B"], ["c"], kernel_shape=[3, 3]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["output"]),
    ], [T("W", wb[:108].reshape(4, 3, 3, 3)), T("B", wb[256:260])], ["N", 3, 7, 7]))
    for t, off, n in ((ext.graph.initializer[0], 0, 108), (ext.graph.initializer[1], 1024, 4)):
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "weights.bin"), ("offset", str(off)), ("length", str(n * 4))):
            e = t.external_data.add()
            e.key, e.value = k, v
    s["external_data.onnx"] = ext.SerializeToString()
    # and refused ones: each breaks one rule of the external-data check
    for name, loc, off in (("absolute", "/etc/weights.bin", "0"), ("dotdot", "../weights.bin", "0"),
                           ("missing", "missing.bin", "0"), ("past_end", "weights.bin", "16380")):
        bad = onnx.ModelProto()
        bad.CopyFrom(ext)
        for e in bad.graph.initializer[0].external_data:
            if e.key == "location":
                e.value = loc
            elif e.key == "offset":
                e.value = off
        s["external_%s_refused.onnx" % name] = bad.SerializeToString()

    # the typed fields and element types the converter knows: bfloat16 and bool raw data, float16
    # in int32_data, double_data, int32 shape values
    def typed(name, dt, dims, field, values):
        t = TensorProto()
        t.name, t.data_type = name, dt
        t.dims.extend(dims)
        getattr(t, field).extend(values)
        return t

    wbf = (r(4, 3, 1, 1).view(np.uint32) >> 16).astype(np.uint16)
    bf16 = TensorProto()
    bf16.name, bf16.data_type = "W", TensorProto.BFLOAT16
    bf16.dims.extend([4, 3, 1, 1])
    bf16.raw_data = wbf.tobytes()
    s["typed_fields.onnx"] = model([
        helper.make_node("Conv", ["input", "W", "B"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
        helper.make_node("Dropout", ["n", "ratio", "train"], ["d"]),
        helper.make_node("GlobalAveragePool", ["d"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["output"]),
    ], [bf16, typed("B", TensorProto.FLOAT16, [4], "int32_data", r(4).astype(np.float16).view(np.uint16).tolist()),
        typed("s", TensorProto.DOUBLE, [4], "double_data", [1.0, 0.5, 2.0, 1.5]),
        typed("b", TensorProto.FLOAT, [4], "float_data", [0.0, 0.1, -0.1, 0.2]),
        typed("m", TensorProto.INT32, [4], "int32_data", [0, 1, -1, 2]),
        typed("v", TensorProto.INT64, [4], "int64_data", [1, 2, 3, 4]),
        typed("ratio", TensorProto.FLOAT, [], "float_data", [0.5]),
        numpy_helper.from_array(np.array(False), "train"),
        typed("shape", TensorProto.INT32, [2], "int32_data", [-1, 4])], ["N", 3, 4, 4], opset=13)
    return s


# ---- .npy ---------------------------------------------------------------------------------

def npy(arr, version=None, fortran=False):
    buf = io.BytesIO()
    if version:
        np.lib.format.write_array(buf, np.asfortranarray(arr) if fortran else arr, version=version)
    else:
        np.save(buf, np.asfortranarray(arr) if fortran else arr)
    return buf.getvalue()


def npy_seeds():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((3, 5)).astype(np.float32)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    return {
        "f4_3x5.npy": npy(f),
        "f2_4x3.npy": npy(rng.standard_normal((4, 3)).astype(np.float16)),
        "f4_1d.npy": npy(rng.standard_normal(7).astype(np.float32)),
        "f4_0x4.npy": npy(np.zeros((0, 4), np.float32)),
        "f4_v2.npy": npy(f, version=(2, 0)),
        "f8_refused.npy": npy(f.astype(np.float64)),
        "f4_bigendian_refused.npy": npy(f.astype(">f4")),
        "f4_fortran_refused.npy": npy(f, fortran=True),
        "i4_refused.npy": npy(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "f4_3d_refused.npy": npy(np.zeros((2, 2, 2), np.float32)),
    }


# ---- TSV lists ----------------------------------------------------------------------------

def tsv_seeds():
    return {
        "labelled.tsv": b"path\tlabel\ncat/1.jpg\tcat\ncat/2.jpg\tcat\ndog/a b.png\tdog\n",
        "bom_crlf.tsv": b"\xef\xbb\xbfpath\tlabel\r\nx/1.webp\tx\r\ny/2.jpg\ty\r\n",
        "no_labels_blank_lines.tsv": b"path\tlabel\n\none.jpg\n\ntwo.jpg\t\nthree.jpg",
        "paths.tsv": b"path\tlabel\n/abs/img.jpg\ta\n../up/img.jpg\tb\n./here//img.jpg\tc\nsub/./x/../y.jpg\td\n",
        "utf8_names.tsv": "path\tlabel\nfleur/\u00e9t\u00e9.jpg\tfleur\n\u732b/1.jpg\t\u732b\n".encode(),
        "header_only.tsv": b"path\tlabel",
        "three_columns_refused.tsv": b"path\tlabel\na.jpg\tx\textra\n",
        "empty_path_refused.tsv": b"path\tlabel\n\tx\n",
        "stray_cr_refused.tsv": b"path\tlabel\na\r.jpg\tx\n",
        "jpeg_not_a_list.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
        "text_not_a_list.txt": b"paths\tlabels\na.jpg\n",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus"))
    args = ap.parse_args()
    for target, seeds in (("image", image_seeds()), ("onnx", onnx_seeds()), ("npy", npy_seeds()),
                          ("tsv", tsv_seeds())):
        d = os.path.join(args.out, target)
        os.makedirs(d, exist_ok=True)
        total = 0
        for name, data in sorted(seeds.items()):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            total += len(data)
        print("%s: %d seeds, %d bytes" % (d, len(seeds), total))


if __name__ == "__main__":
    main()
