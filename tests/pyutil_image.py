"""Shared helpers for the image tests: photo-like test images, running `imgsim preprocess`,
and the Python pipeline's reference transform (PIL + torchvision)."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def env_or_skip():
    """Returns (cli, asan_cli_or_None, workdir); exits 77 (skipped) without a CLI."""
    cli = os.environ.get("IMGSIM_CLI")
    if not cli or not os.path.exists(cli):
        print("IMGSIM_CLI not set or missing: skipped")
        sys.exit(77)
    asan = os.environ.get("IMGSIM_CLI_ASAN")
    if asan and not os.path.exists(asan):
        asan = None
    work = os.environ.get("IMGSIM_TEST_DIR") or "/tmp/imgsim-test-image"
    os.makedirs(work, exist_ok=True)
    return cli, asan, work


def photo_like(w, h, seed):
    """An RGB PIL image with what makes photos hard to resize and compress: smooth colour
    gradients (low frequencies), hard-edged shapes, thin lines and fine noise texture."""
    rng = np.random.default_rng(seed)
    # low-frequency colour field: a small random image upscaled with bicubic
    small = rng.integers(0, 256, size=(max(2, h // 64 + 2), max(2, w // 64 + 2), 3), dtype=np.uint8)
    base = Image.fromarray(small, "RGB").resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(1, max(2, w // 3))), y0 + int(rng.integers(1, max(2, h // 3)))
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=col)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=col)
    for _ in range(8):
        pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(2)]
        draw.line(pts, fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=int(rng.integers(1, 4)))
    base = base.filter(ImageFilter.GaussianBlur(radius=0.7))
    a = np.asarray(base).astype(np.int16)
    a = a + rng.normal(0, 6, size=a.shape).astype(np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def run(cli, args, check=True):
    """Runs the CLI; returns CompletedProcess (text)."""
    p = subprocess.run([cli] + list(args), capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{cli} {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def decoded(cli, path, work, extra=()):
    """Decoded RGB pixels as imgsim sees them (uint8 [H, W, 3]), via the hidden --decoded."""
    out = os.path.join(work, "decoded.npy")
    run(cli, ["preprocess", path, "--decoded", "--out=" + out] + list(extra))
    a = np.load(out)
    assert a.dtype == np.float32 and a.ndim == 3 and a.shape[2] == 3, a.shape
    return a.astype(np.uint8)


def preprocess(cli, path, work, h=224, w=224, extra=()):
    """imgsim's tensor for path: float32 [3, h, w]."""
    out = os.path.join(work, "pre.npy")
    run(cli, ["preprocess", path, f"--size={h}x{w}", "--out=" + out] + list(extra))
    a = np.load(out)
    assert a.dtype == np.float32 and a.shape == (1, 3, h, w), a.shape
    return a[0]


def reference(img, h=224, w=224):
    """The Python pipeline: torchvision Resize((h, w)) + ToTensor + Normalize on a PIL RGB image."""
    import torchvision.transforms as T

    t = T.Compose([
        T.Resize((h, w)),
        T.ToTensor(),
        T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    return t(img.convert("RGB")).numpy()


class Checker:
    """Collects failures so one run reports all of them."""

    def __init__(self):
        self.failures = []
        self.count = 0

    def check(self, ok, what):
        self.count += 1
        status = "ok  " if ok else "FAIL"
        print(f"{status} {what}", flush=True)
        if not ok:
            self.failures.append(what)

    def finish(self):
        print(f"{self.count - len(self.failures)} passed, {len(self.failures)} failed")
        sys.exit(1 if self.failures else 0)


# ---- a small PNG writer (PIL cannot write 16-bit RGB/RGBA/LA or interlaced PNGs) ----------

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _chunk(tag, data):
    import struct
    import zlib

    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _pack_rows(a, bit_depth):
    """a: [h, w, c] (uint8 or uint16 samples) -> list of raw scanline bytes (no filter byte)."""
    h = a.shape[0]
    rows = []
    for y in range(h):
        r = a[y].reshape(-1)
        if bit_depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:  # 1, 2, 4: pack MSB first
            per = 8 // bit_depth
            vals = list(r.astype(int))
            out = bytearray()
            for i in range(0, len(vals), per):
                byte = 0
                for j in range(per):
                    v = vals[i + j] if i + j < len(vals) else 0
                    byte |= v << (8 - bit_depth * (j + 1))
                out.append(byte)
            rows.append(bytes(out))
    return rows


def write_png(path, a, color_type, bit_depth, interlace=False, plte=None, trns=None, exif=None, filt=0):
    """Writes a PNG. a: [h, w, channels] samples (palette indices for color_type 3)."""
    import struct
    import zlib

    if a.ndim == 2:
        a = a[:, :, None]
    h, w = a.shape[:2]
    raw = bytearray()
    if not interlace:
        for r in _pack_rows(a, bit_depth):
            raw += bytes([0]) + r
    else:
        for (x0, y0, dx, dy) in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            for r in _pack_rows(sub, bit_depth):
                raw += bytes([0]) + r
    png = b"\x89PNG\r\n\x1a\n"
    png += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if plte is not None:
        png += _chunk(b"PLTE", bytes(np.asarray(plte, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        png += _chunk(b"tRNS", trns)
    if exif is not None:
        png += _chunk(b"eXIf", exif)
    png += _chunk(b"IDAT", zlib.compress(bytes(raw), 6))
    png += _chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)
