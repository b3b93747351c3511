"""Preprocessing parity with the Python pipeline: `imgsim preprocess` against torchvision's
Resize((H, W)) + ToTensor + Normalize(ImageNet) on PIL images, for real photo sizes (downscale),
upscale, odd sizes and 1-pixel-wide/tall images: max abs <= 0.02 and mean <= 0.002 after
normalisation. Large JPEGs meet the strict bound by default (full decode, as PIL); with
--fast-decode (DCT-domain scaling) these photo-like ones stay within mean <= 0.005, max <= 0.1
(a bound that does not hold for every image: test_robust_decode.py), and --no-dct-scaling (the old
switch) changes nothing."""
import os
import sys

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pyutil_image import Checker, env_or_skip, photo_like, preprocess, reference  # noqa: E402

cli, _, work = env_or_skip()
C = Checker()


def p(name):
    return os.path.join(work, name)


def parity(path, what, h=224, w=224, max_tol=0.02, mean_tol=0.002, extra=(), ref_img=None):
    ref = reference(ref_img if ref_img is not None else Image.open(path), h, w)
    got = preprocess(cli, path, work, h, w, extra)
    d = np.abs(got - ref)
    C.check(d.max() <= max_tol and d.mean() <= mean_tol,
            f"{what}: max {d.max():.5f} <= {max_tol}, mean {d.mean():.6f} <= {mean_tol}")
    return got


# (width, height): real photo sizes, upscale, odd, 1-pixel-wide and -tall
sizes = [(500, 375), (375, 500), (1600, 1200), (100, 80), (333, 217), (224, 224), (224, 100),
         (1, 97), (97, 1), (1, 1), (640, 3), (5000, 7)]
for i, (w, h) in enumerate(sizes):
    img = photo_like(w, h, seed=100 + i)
    img.save(p(f"s{w}x{h}.png"))
    parity(p(f"s{w}x{h}.png"), f"PNG {w}x{h} -> 224x224")
    if w >= 8 and h >= 8:
        img.save(p(f"s{w}x{h}.jpg"), quality=90)
        parity(p(f"s{w}x{h}.jpg"), f"JPEG q90 {w}x{h} -> 224x224")

# other target sizes (non-square, upscale in one axis only, odd)
img = photo_like(500, 375, seed=5)
img.save(p("t.png"))
for (h, w) in [(299, 299), (160, 224), (375, 123), (7, 501), (1, 1)]:
    parity(p("t.png"), f"PNG 500x375 -> {h}x{w}", h=h, w=w)

# EXIF-rotated input: the target is in the displayed (rotated) axes
ex = Image.Exif()
ex[0x0112] = 6
img.save(p("rot6.jpg"), quality=90, exif=ex.tobytes())
parity(p("rot6.jpg"), "JPEG 500x375 EXIF orientation 6 -> 224x160", h=224, w=160,
       ref_img=ImageOps.exif_transpose(Image.open(p("rot6.jpg"))))

# large JPEGs: exact by default, DCT-domain scaling with --fast-decode (bounded tolerance here)
for i, (w, h) in enumerate([(2048, 1536), (1536, 2048), (4000, 3000)]):
    big = photo_like(w, h, seed=200 + i)
    big.save(p(f"big{i}.jpg"), quality=90)
    a = parity(p(f"big{i}.jpg"), f"JPEG {w}x{h} --fast-decode", max_tol=0.1, mean_tol=0.005, extra=["--fast-decode"])
    b = parity(p(f"big{i}.jpg"), f"JPEG {w}x{h} (default: full decode)")
    c = preprocess(cli, p(f"big{i}.jpg"), work, extra=["--no-dct-scaling"])
    C.check(np.abs(a - b).max() > 0, f"JPEG {w}x{h}: --fast-decode used DCT scaling (output differs from full decode)")
    C.check(np.array_equal(b, c), f"JPEG {w}x{h}: --no-dct-scaling changes nothing")
# a JPEG just under 3x the target is decoded at full size even with --fast-decode (the threshold
# measured in jpeg.c)
img = photo_like(1600, 1200, seed=300)
img.save(p("b1600.jpg"), quality=90)
a = parity(p("b1600.jpg"), "JPEG 1600x1200 --fast-decode (under 3x: full decode)", max_tol=0.0, mean_tol=0.0,
           extra=["--fast-decode"])

C.finish()
