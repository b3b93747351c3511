"""Decoding parity with PIL: every JPEG / PNG / WebP variant the issue lists is decoded by
`imgsim preprocess --decoded` (RGB after EXIF orientation, before resizing) and compared with
PIL's Image.open(...).convert('RGB') (after ImageOps.exif_transpose): pixel-exact for lossless
formats, mean absolute difference <= 1 level for JPEG and lossy WebP.

usage: test_image_decode.py [MKYCCK]   (MKYCCK: the helper that writes YCCK JPEGs)"""
import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pyutil_image import Checker, decoded, env_or_skip, photo_like, write_png  # noqa: E402

cli, _, work = env_or_skip()
mkycck = sys.argv[1] if len(sys.argv) > 1 else None
C = Checker()


def pil_rgb(path, exif=True):
    im = Image.open(path)
    if exif:
        im = ImageOps.exif_transpose(im)
    return np.asarray(im.convert("RGB"))


def compare(path, what, lossy=False, exif=True, extra=()):
    ref = pil_rgb(path, exif)
    try:
        got = decoded(cli, path, work, extra)
    except AssertionError as e:
        C.check(False, f"{what}: {e}")
        return
    if got.shape != ref.shape:
        C.check(False, f"{what}: shape {got.shape} != PIL {ref.shape}")
        return
    d = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    if lossy:
        C.check(d.mean() <= 1.0, f"{what}: mean abs diff {d.mean():.4f} (max {d.max()}) <= 1 level")
    else:
        C.check(d.max() == 0, f"{what}: pixel-exact (max diff {d.max()})")


def p(name):
    return os.path.join(work, name)


img = photo_like(203, 157, seed=7)  # odd sizes: partial MCUs, odd chroma
rgb = np.asarray(img)

# ---- JPEG --------------------------------------------------------------------------------
for sub, sname in [(0, "4:4:4"), (1, "4:2:2"), (2, "4:2:0")]:
    img.save(p(f"base_{sub}.jpg"), quality=90, subsampling=sub)
    compare(p(f"base_{sub}.jpg"), f"JPEG baseline {sname}", lossy=True)
img.save(p("prog.jpg"), quality=85, progressive=True)
compare(p("prog.jpg"), "JPEG progressive 4:2:0", lossy=True)
img.save(p("prog444.jpg"), quality=95, progressive=True, subsampling=0)
compare(p("prog444.jpg"), "JPEG progressive 4:4:4", lossy=True)
img.convert("L").save(p("gray.jpg"), quality=90)
compare(p("gray.jpg"), "JPEG grayscale", lossy=True)
img.convert("CMYK").save(p("cmyk.jpg"), quality=90)
compare(p("cmyk.jpg"), "JPEG CMYK (Adobe, inverted)", lossy=True)
# a CMYK image with real black ink and non-trivial C/M/Y, not just convert('CMYK') output
rng = np.random.default_rng(3)
cmyk = np.concatenate([rgb[:, :, :3], rng.integers(0, 256, size=rgb.shape[:2] + (1,), dtype=np.uint8)], axis=2)
Image.fromarray(cmyk, "CMYK").save(p("cmyk2.jpg"), quality=92)
compare(p("cmyk2.jpg"), "JPEG CMYK with K channel", lossy=True)
if mkycck and os.path.exists(mkycck):
    cmyk.tofile(p("ycck.raw"))
    subprocess.run([mkycck, p("ycck.raw"), str(cmyk.shape[1]), str(cmyk.shape[0]), p("ycck.jpg")], check=True)
    compare(p("ycck.jpg"), "JPEG YCCK", lossy=True)
else:
    print("note: no YCCK helper given; YCCK case not run")
# no DHT segment (as in MJPEG frames): decoders fall back to the standard Huffman tables, which
# is what PIL's encoder uses without optimize=True, so stripping them leaves a decodable file
def strip_dht(data):
    out, i = bytearray(data[:2]), 2
    while i + 4 <= len(data) and data[i] == 0xFF and data[i + 1] != 0xDA:
        seg = int.from_bytes(data[i + 2:i + 4], "big")
        if data[i + 1] != 0xC4:
            out += data[i:i + 2 + seg]
        i += 2 + seg
    return bytes(out + data[i:])


img.save(p("std.jpg"), quality=90)
with open(p("nodht.jpg"), "wb") as f:
    f.write(strip_dht(open(p("std.jpg"), "rb").read()))
compare(p("nodht.jpg"), "JPEG without DHT (standard Huffman tables)", lossy=True)
# restart markers
img.save(p("rst.jpg"), quality=90, restart_marker_blocks=1)
compare(p("rst.jpg"), "JPEG with restart markers", lossy=True)

# ---- PNG ---------------------------------------------------------------------------------
img.save(p("rgb8.png"))
compare(p("rgb8.png"), "PNG RGB 8-bit")
img.convert("RGBA").save(p("rgba8.png"))
alpha = np.dstack([rgb, rng.integers(0, 256, size=rgb.shape[:2], dtype=np.uint8)])
Image.fromarray(alpha, "RGBA").save(p("rgba8v.png"))
compare(p("rgba8v.png"), "PNG RGBA 8-bit (alpha dropped, not composited)")
img.convert("L").save(p("l8.png"))
compare(p("l8.png"), "PNG gray 8-bit")
Image.fromarray(np.dstack([rgb[:, :, 0], rgb[:, :, 1]]), "LA").save(p("la8.png"))
compare(p("la8.png"), "PNG gray+alpha 8-bit")
img.quantize(200).save(p("pal.png"))
compare(p("pal.png"), "PNG palette 8-bit")
img.quantize(16).save(p("pal4.png"), bits=4)
compare(p("pal4.png"), "PNG palette 4-bit")
q = img.quantize(64)
q.info["transparency"] = bytes(range(0, 256, 4))
q.save(p("pal_trns.png"), transparency=bytes(range(0, 256, 4)))
compare(p("pal_trns.png"), "PNG palette + tRNS")
img.convert("L").save(p("l8_trns.png"), transparency=17)
compare(p("l8_trns.png"), "PNG gray + tRNS")
img.save(p("rgb_trns.png"), transparency=(10, 20, 30))
compare(p("rgb_trns.png"), "PNG RGB + tRNS")
img.convert("1").save(p("bw1.png"))
compare(p("bw1.png"), "PNG 1-bit gray")
g2 = (rgb[:, :, 0] >> 6).astype(np.uint8)
write_png(p("g2.png"), g2, 0, 2)
compare(p("g2.png"), "PNG 2-bit gray")
# 16-bit variants (written by hand: PIL writes only 16-bit gray)
r16 = (rgb.astype(np.uint16) * 257 + rng.integers(0, 257, size=rgb.shape)).astype(np.uint16)
write_png(p("rgb16.png"), r16, 2, 16)
compare(p("rgb16.png"), "PNG RGB 16-bit")
write_png(p("rgba16.png"), np.dstack([r16, r16[:, :, :1]]), 6, 16)
compare(p("rgba16.png"), "PNG RGBA 16-bit")
write_png(p("la16.png"), np.dstack([r16[:, :, 0], r16[:, :, 1]]), 4, 16)
compare(p("la16.png"), "PNG gray+alpha 16-bit")
g16 = (rgb[:, :, 0].astype(np.uint16) * 3).astype(np.uint16)  # spans 0..765: PIL's "I" clip
write_png(p("g16.png"), g16, 0, 16)
compare(p("g16.png"), "PNG gray 16-bit (PIL clips mode I at 255)")
# interlaced (Adam7), several colour types and an odd size
write_png(p("rgb8_i.png"), rgb, 2, 8, interlace=True)
compare(p("rgb8_i.png"), "PNG RGB 8-bit interlaced")
write_png(p("rgb16_i.png"), r16, 2, 16, interlace=True)
compare(p("rgb16_i.png"), "PNG RGB 16-bit interlaced")
write_png(p("g2_i.png"), g2, 0, 2, interlace=True)
compare(p("g2_i.png"), "PNG 2-bit gray interlaced")
pal = np.asarray(q.getpalette()[: 64 * 3], dtype=np.uint8).reshape(-1, 3)
write_png(p("pal_i.png"), np.asarray(q), 3, 8, interlace=True, plte=pal, trns=bytes(range(64)))
compare(p("pal_i.png"), "PNG palette + tRNS interlaced")
write_png(p("tiny_i.png"), rgb[:3, :2], 2, 8, interlace=True)
compare(p("tiny_i.png"), "PNG 2x3 interlaced (empty Adam7 passes)")

# ---- WebP --------------------------------------------------------------------------------
img.save(p("lossless.webp"), lossless=True)
compare(p("lossless.webp"), "WebP lossless RGB")
Image.fromarray(alpha, "RGBA").save(p("lossless_a.webp"), lossless=True, exact=True)
compare(p("lossless_a.webp"), "WebP lossless RGBA (alpha dropped)")
img.save(p("lossy.webp"), quality=80)
compare(p("lossy.webp"), "WebP lossy RGB", lossy=True)
Image.fromarray(alpha, "RGBA").save(p("lossy_a.webp"), quality=80)
compare(p("lossy_a.webp"), "WebP lossy RGBA", lossy=True)

# ---- EXIF orientation --------------------------------------------------------------------
small = photo_like(61, 37, seed=11)  # non-square, so rotations change the shape
for o in range(1, 9):
    ex = Image.Exif()
    ex[0x0112] = o
    small.save(p(f"o{o}.jpg"), quality=95, exif=ex.tobytes())
    compare(p(f"o{o}.jpg"), f"JPEG EXIF orientation {o}", lossy=True)
    small.save(p(f"o{o}.png"), exif=ex.tobytes())
    compare(p(f"o{o}.png"), f"PNG eXIf orientation {o}")
    small.save(p(f"o{o}.webp"), lossless=True, exif=ex.tobytes())
    compare(p(f"o{o}.webp"), f"WebP EXIF orientation {o}")
# big-endian EXIF ("MM") written by hand
mm = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x00"
small.save(p("o6mm.jpg"), quality=95, exif=mm)
compare(p("o6mm.jpg"), "JPEG big-endian EXIF orientation 6", lossy=True)
# --no-exif-rotate leaves the pixels as stored
compare(p("o6.jpg"), "JPEG orientation 6 with --no-exif-rotate", lossy=True, exif=False, extra=["--no-exif-rotate"])
compare(p("o8.png"), "PNG orientation 8 with --no-exif-rotate", exif=False, extra=["--no-exif-rotate"])
# out-of-range orientation values are ignored (as PIL does)
for bad in (0, 9):
    ex = Image.Exif()
    ex[0x0112] = bad
    small.save(p(f"obad{bad}.png"), exif=ex.tobytes())
    compare(p(f"obad{bad}.png"), f"PNG EXIF orientation {bad} (invalid) ignored")

C.finish()
