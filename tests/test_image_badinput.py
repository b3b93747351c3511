"""Bad inputs: each gives its own clear error (exit status 1, a message naming the file and the
reason), nothing crashes or hangs, and in a batch the good files are still processed. Run with
the normal CLI and the AddressSanitizer+UBSan build (IMGSIM_CLI_ASAN) when there is one."""
import os
import random
import shutil
import struct
import sys
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pyutil_image import Checker, env_or_skip, photo_like, reference, run  # noqa: E402

cli, asan, work = env_or_skip()
C = Checker()
bad_dir = os.path.join(work, "bad")
shutil.rmtree(bad_dir, ignore_errors=True)
os.makedirs(bad_dir)


def p(name):
    return os.path.join(bad_dir, name)


def write(name, data):
    with open(p(name), "wb") as f:
        f.write(data)
    return p(name)


img = photo_like(120, 90, seed=1)
img.save(p("good.jpg"), quality=90)
img.save(p("good.png"))
img.save(p("good.webp"), quality=80)
jpg = open(p("good.jpg"), "rb").read()
png = open(p("good.png"), "rb").read()
webp = open(p("good.webp"), "rb").read()
img.save(p("prog.tmp"), "JPEG", quality=90, progressive=True)
prog = open(p("prog.tmp"), "rb").read()
os.remove(p("prog.tmp"))


def jpeg_with_dims(w, h, progressive=False):
    """A valid small JPEG whose SOF header is patched to claim w x h."""
    src = photo_like(16, 16, seed=2)
    import io

    b = io.BytesIO()
    src.save(b, "JPEG", quality=90, progressive=progressive)
    d = bytearray(b.getvalue())
    sof = d.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    assert sof > 0
    struct.pack_into(">HH", d, sof + 5, h, w)
    return bytes(d)


def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_with_dims(w, h):
    """A PNG whose IHDR (valid CRC) claims w x h, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def webp_with_dims(w, h):
    """A lossless WebP whose VP8L header is patched to claim w x h (at most 16384)."""
    import io

    b = io.BytesIO()
    photo_like(16, 16, seed=3).save(b, "WEBP", lossless=True)
    d = bytearray(b.getvalue())
    assert d[12:16] == b"VP8L" and d[20] == 0x2F
    bits = int.from_bytes(d[21:25], "little")
    bits = (bits & ~((1 << 28) - 1)) | (w - 1) | ((h - 1) << 14)
    d[21:25] = bits.to_bytes(4, "little")
    return bytes(d)


rnd = random.Random(5)
# name -> (data, expected reason substring)
cases = {
    "empty.jpg": (b"", "empty file"),
    "trunc_header.jpg": (jpg[:40], "JPEG header"),
    "trunc_scan.jpg": (jpg[: len(jpg) * 6 // 10], "Premature end of JPEG file"),
    "text.jpg": (b"this is not an image, just some text that is named like one\n" * 3, "not a JPEG, PNG or WebP"),
    "random.bin": (bytes(rnd.getrandbits(8) for _ in range(4096)), "not a JPEG, PNG or WebP"),
    "short.jpg": (b"\xff\xd8", "only 2 bytes"),
    "soi_garbage.jpg": (b"\xff\xd8\xff" + bytes(rnd.getrandbits(8) for _ in range(2000)), "JPEG"),
    "trunc_prog.jpg": (prog[: len(prog) // 2], "Premature end of JPEG file"),
    "trunc_data.webp": (webp[: len(webp) * 6 // 10], "WebP"),
    "trunc.png": (png[: len(png) // 2], "truncated PNG"),
    "trunc_header.png": (png[:20], "PNG header"),
    "bad_crc.png": (png[:29] + bytes([png[29] ^ 0xFF]) + png[30:], "PNG"),
    "trunc.webp": (open(p("good.png"), "rb").read()[:0] + b"RIFF\x00\x10\x00\x00WEBPVP8L", "WebP"),
    "huge_65500.jpg": (jpeg_with_dims(65500, 65500), "over the limit"),
    # JPEG's 16-bit size fields cannot claim 2^30; over 65500 libjpeg itself refuses the header
    "huge_65535_prog.jpg": (jpeg_with_dims(65535, 65535, progressive=True), "Maximum supported image dimension is 65500"),
    "huge_65500.png": (png_with_dims(65500, 65500), "over the limit"),
    "huge_2p30.png": (png_with_dims(1 << 30, 1 << 30), "over the limit"),
    "huge_2p31.png": (png_with_dims((1 << 31) - 1, (1 << 31) - 1), "over the limit"),
    "huge_16384.webp": (webp_with_dims(16384, 16384), "over the limit"),
    "zero_width.png": (png_with_dims(0, 10), "PNG header"),
}
for name, (data, _) in cases.items():
    write(name, data)


def check_cli(exe, tag):
    out = os.path.join(work, "x.npy")
    for name, (_, reason) in cases.items():
        r = run(exe, ["preprocess", p(name), "--out=" + out], check=False)
        msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        ok = r.returncode == 1 and p(name) in msg and reason in msg and "runtime error" not in r.stderr \
            and "AddressSanitizer" not in r.stderr
        C.check(ok, f"[{tag}] {name}: exit {r.returncode}, message names file and '{reason}': {msg!r}")
    # a missing file
    r = run(exe, ["preprocess", p("missing.jpg"), "--out=" + out], check=False)
    C.check(r.returncode == 1 and "missing.jpg" in r.stderr and "cannot open" in r.stderr,
            f"[{tag}] missing file: {r.stderr.strip()!r}")
    # a PNG named .jpg works: content decides
    shutil.copy(p("good.png"), p("png_named.jpg"))
    r = run(exe, ["preprocess", p("png_named.jpg"), "--out=" + out], check=False)
    ok = r.returncode == 0
    if ok:
        d = np.abs(np.load(out)[0] - reference(Image.open(p("good.png"))))
        ok = d.max() <= 0.02
    C.check(ok, f"[{tag}] PNG named .jpg decodes by content and matches torchvision")
    os.remove(p("png_named.jpg"))
    # --max-pixels refuses a normal image; 0 = no limit for a normal one
    r = run(exe, ["preprocess", p("good.jpg"), "--out=" + out, "--max-pixels=10000"], check=False)
    C.check(r.returncode == 1 and "over the limit" in r.stderr and "good.jpg" in r.stderr,
            f"[{tag}] --max-pixels=10000 refuses 120x90: {r.stderr.strip()!r}")
    r = run(exe, ["preprocess", p("good.jpg"), "--out=" + out, "--max-pixels=10800"], check=False)
    C.check(r.returncode == 0, f"[{tag}] --max-pixels=10800 accepts 120x90 (exactly at the limit)")
    # a batch: every bad file reported, the good ones processed
    r = run(exe, ["preprocess", "--bench", bad_dir, "--workers=2"], check=False)
    nbad = len(cases)
    reported = all(p(n) in r.stderr for n in cases)
    C.check(r.returncode == 1 and f"({nbad} failed)" in r.stdout and f"{nbad + 3} images" in r.stdout and reported,
            f"[{tag}] batch of {nbad + 3}: {nbad} errors reported, 3 good processed: {r.stdout.strip()!r}")
    C.check("AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, f"[{tag}] batch: no sanitizer report")


# mutated files (random byte changes and cuts of valid JPEG/PNG/WebP): any outcome but a crash
fuzz_dir = os.path.join(work, "fuzz")
shutil.rmtree(fuzz_dir, ignore_errors=True)
os.makedirs(fuzz_dir)
frnd = random.Random(11)
nfuzz = 0
for base_name, base in [("jpg", jpg), ("prog", prog), ("png", png), ("webp", webp)]:
    for i in range(25):
        d = bytearray(base)
        for _ in range(frnd.randint(1, 8)):
            d[frnd.randrange(len(d))] = frnd.getrandbits(8)
        if i % 3 == 0:
            d = d[: frnd.randrange(1, len(d))]
        with open(os.path.join(fuzz_dir, f"{base_name}{i:02d}"), "wb") as f:
            f.write(bytes(d))
        nfuzz += 1


def fuzz_failures(exe, workers):
    """Runs the mutated files as one batch; returns (CompletedProcess, set of refused names)."""
    r = run(exe, ["preprocess", "--bench", fuzz_dir, f"--workers={workers}"], check=False)
    names = set()
    for line in r.stderr.splitlines():
        if fuzz_dir in line:
            names.add(line.split(fuzz_dir + "/", 1)[1].split(":", 1)[0])
    return r, names


# a JPEG with optimised Huffman tables, then one without DHT (needs the standard tables): a
# decoder object reused between them would decode the second with the first one's tables
img.save(os.path.join(fuzz_dir, "zz0_optimized.jpg"), quality=90, optimize=True)
b = __import__("io").BytesIO()
img.save(b, "JPEG", quality=90)
d = b.getvalue()
out, i = bytearray(d[:2]), 2
while i + 4 <= len(d) and d[i] == 0xFF and d[i + 1] != 0xDA:
    seg = int.from_bytes(d[i + 2:i + 4], "big")
    if d[i + 1] != 0xC4:
        out += d[i:i + 2 + seg]
    i += 2 + seg
with open(os.path.join(fuzz_dir, "zz1_nodht.jpg"), "wb") as f:
    f.write(bytes(out + d[i:]))
nfuzz += 2

# the reference outcome: each mutated file on its own, in a fresh process
alone = set()
for name in sorted(os.listdir(fuzz_dir)):
    r = run(cli, ["preprocess", os.path.join(fuzz_dir, name), "--out=" + os.path.join(work, "f.npy")], check=False)
    if r.returncode != 0:
        alone.add(name)


def check_fuzz(exe, tag):
    for workers in (1, 2):
        r, refused = fuzz_failures(exe, workers)
        ok = r.returncode in (0, 1) and f"{nfuzz} images" in r.stdout and "AddressSanitizer" not in r.stderr \
            and "runtime error" not in r.stderr
        C.check(ok, f"[{tag}] {nfuzz} mutated files, {workers} workers: no crash: {r.stdout.strip()!r}")
        # a file's outcome must not depend on what the same thread decoded before it
        C.check(refused == alone, f"[{tag}] {workers} workers: the batch refuses exactly the files refused alone "
                f"({len(refused)} vs {len(alone)}; differ: {sorted(refused ^ alone)[:6]})")


check_cli(cli, "cli")
check_fuzz(cli, "cli")
if asan:
    check_cli(asan, "asan")
    check_fuzz(asan, "asan")
else:
    print("note: IMGSIM_CLI_ASAN not set; sanitizer run skipped")
C.finish()
