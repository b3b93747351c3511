"""Resize + centre crop + mean/std (issue 14 item 5) against torchvision on PIL images:
`imgsim preprocess --resize=shorter:S|HxW --crop=N|HxW --interp=bilinear|bicubic --mean --std`
equals T.Resize(S or (h, w), BILINEAR or BICUBIC) + T.CenterCrop + T.ToTensor + T.Normalize bit
for bit on PNGs (lossless: the same pixels reach both), for odd sizes (317x211, 211x317, 224x224,
1000x3, 3x1000, 500x375, 255x256: aspect ratios whose shorter-side rounding and odd crop offsets
differ), ImageNet's and CLIP's mean/std; JPEGs within today's preprocessing tolerance (max 0.02,
mean 0.002). The Python binding's preprocess() gives the CLI's tensor. Bad values are refused
with a message naming the option: a crop larger than the resized image, std 0, malformed lists
and sizes, a bare --resize=N, an unknown filter; the GPU preprocessing refuses a crop."""
import os
import shutil
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pyutil_image import Checker, env_or_skip, photo_like, run  # noqa: E402

try:
    import torchvision.transforms as T
except ImportError:
    print("torchvision not available: skipped")
    sys.exit(77)

cli, _, work = env_or_skip()
C = Checker()
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CLIP = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])


def p(name):
    return os.path.join(work, name)


def ref(img, resize, crop, interp, mean, std):
    mode = T.InterpolationMode[interp.upper()]
    r = T.Resize(int(resize[8:]), interpolation=mode) if resize.startswith("shorter:") else \
        T.Resize(tuple(int(x) for x in resize.split("x")), interpolation=mode)
    return T.Compose([r, T.CenterCrop(crop), T.ToTensor(), T.Normalize(mean, std)])(img.convert("RGB")).numpy()


def crop_arg(crop):
    return str(crop) if isinstance(crop, int) else "%dx%d" % crop


def ours(path, resize, crop, interp, mean, std):
    out = p("o.npy")
    run(cli, ["preprocess", path, "--out=" + out, "--resize=" + resize, "--crop=" + crop_arg(crop), "--interp=" + interp,
              "--mean=" + ",".join(repr(x) for x in mean), "--std=" + ",".join(repr(x) for x in std)])
    return np.load(out)[0]


CASES = [("shorter:256", 224, "bilinear", IMAGENET),   # torchvision's classification presets
         ("shorter:224", 224, "bicubic", CLIP),        # CLIP's
         ("256x256", 224, "bilinear", IMAGENET),
         ("240x300", (199, 250), "bicubic", CLIP),     # a tie at 20.5: rounded down (to even)
         ("240x300", (197, 245), "bilinear", IMAGENET),  # ties at 21.5 and 27.5: rounded up (to even)
         ("shorter:160", (153, 160), "bilinear", IMAGENET)]
sizes = [(317, 211), (211, 317), (224, 224), (1000, 3), (3, 1000), (500, 375), (255, 256)]
for i, (w, h) in enumerate(sizes):
    img = photo_like(w, h, seed=400 + i)
    img.save(p("a.png"))
    for resize, crop, interp, (mean, std) in CASES:
        want = ref(img, resize, crop, interp, mean, std)
        got = ours(p("a.png"), resize, crop, interp, mean, std)
        same = got.shape == want.shape and np.array_equal(got, want)
        C.check(same, "PNG %dx%d resize %s crop %s %s: bit-exact%s" % (
            w, h, resize, crop, interp, "" if same or got.shape != want.shape
            else " (max diff %.3g)" % np.abs(got - want).max()))
    if w >= 8 and h >= 8:
        img.save(p("a.jpg"), quality=90)
        for resize, crop, interp, (mean, std) in CASES[:2]:
            d = np.abs(ours(p("a.jpg"), resize, crop, interp, mean, std) -
                       ref(Image.open(p("a.jpg")), resize, crop, interp, mean, std))
            C.check(d.max() <= 0.02 and d.mean() <= 0.002,
                    "JPEG %dx%d resize %s crop %s: max %.4f mean %.5f" % (w, h, resize, crop, d.max(), d.mean()))

# --resize=HxW without a crop is torchvision's Resize((h, w)) alone; the defaults are today's
img = photo_like(317, 211, seed=7)
img.save(p("b.png"))
run(cli, ["preprocess", p("b.png"), "--out=" + p("r.npy"), "--resize=150x199", "--interp=bicubic"])
want = T.Compose([T.Resize((150, 199), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                  T.Normalize(*IMAGENET)])(img).numpy()
C.check(np.array_equal(np.load(p("r.npy"))[0], want), "--resize=150x199 --interp=bicubic alone: Resize((150, 199))")
run(cli, ["preprocess", p("b.png"), "--out=" + p("d.npy")])
run(cli, ["preprocess", p("b.png"), "--out=" + p("e.npy"), "--resize=224x224", "--crop=224", "--interp=bilinear",
          "--mean=0.485,0.456,0.406", "--std=0.229,0.224,0.225"])
C.check(np.array_equal(np.load(p("d.npy")), np.load(p("e.npy"))), "the options spelled at their defaults change nothing")

# the Python binding (this build's extension module, as test_gpu_dlpack.py loads it)
mod = os.environ.get("IMGSIM_PY_MODULE", "")
if mod and os.path.exists(mod):
    pkg = p("pkg")
    shutil.rmtree(pkg, ignore_errors=True)
    shutil.copytree(os.path.join(os.environ["IMGSIM_SOURCE_DIR"], "python", "imgsim"), os.path.join(pkg, "imgsim"))
    shutil.copy(mod, os.path.join(pkg, "imgsim", os.path.basename(mod)))
    sys.path.insert(0, pkg)
    import imgsim  # noqa: E402

    want = ref(img, "shorter:224", 224, "bicubic", *CLIP)
    got = imgsim.preprocess(p("b.png"), resize=224, crop=224, interpolation="bicubic", mean=CLIP[0], std=CLIP[1])
    C.check(np.array_equal(got, want), "imgsim.preprocess(resize=224, crop=224, bicubic, CLIP mean/std) == torchvision")
    got = imgsim.preprocess(img, resize=(240, 300), crop=(199, 250), interpolation=T.InterpolationMode.BICUBIC,
                            mean=CLIP[0], std=CLIP[1])
    C.check(np.array_equal(got, ref(img, "240x300", (199, 250), "bicubic", *CLIP)),
            "imgsim.preprocess(PIL image, resize=(h, w), crop=(h, w), InterpolationMode) == torchvision")
    for kw, word in [(dict(resize=256, crop=300), "larger than"), (dict(std=(0.2, 0, 0.2)), "std"),
                     (dict(mean=(1, 2)), "mean"), (dict(interpolation="nearest"), "bilinear or bicubic")]:
        try:
            imgsim.preprocess(p("b.png"), **kw)
            C.check(False, "imgsim.preprocess(%s) raises" % kw)
        except imgsim.Error as ex:
            C.check(word in str(ex), "imgsim.preprocess(%s) raises naming it: %s" % (kw, ex))
else:
    print("no Python extension module in this build: the binding's checks skipped")

# bad values: exit 2 (usage) or 1, with a message naming the option and what is wrong
bad = [(["--resize=256x256", "--crop=300"], "crop 300x300 is larger than the resized image 256x256"),
       (["--resize=shorter:256", "--crop=300x200"], "larger than the resized image's shorter side 256"),
       (["--std=0.2,0,0.2"], "--std=0.2,0,0.2"),
       (["--std=0.2,-1,0.2"], "> 0"),
       (["--mean=0.5,0.5"], "expected three numbers"),
       (["--mean=0.5,0.5,0.5,0.5"], "expected three numbers"),
       (["--mean=a,b,c"], "expected three numbers"),
       (["--mean=nan,0,0"], "expected three numbers"),
       (["--resize=256"], "expected HxW or shorter:S"),
       (["--resize=shorter:0"], "shorter:S"),
       (["--resize=0x5"], "expected HxW"),
       (["--crop=12x"], "crop=12x"),
       (["--interp=nearest"], "expected bilinear or bicubic"),
       (["--resize=shorter:256"], "needs --crop")]
for extra, msg in bad:
    r = run(cli, ["preprocess", p("b.png"), "--out=" + p("x.npy")] + extra, check=False)
    C.check(r.returncode in (1, 2) and msg in r.stderr, "%s refused: %s" % (" ".join(extra), r.stderr.strip()[-300:]))

# the GPU path resizes straight to the size, bilinear: a crop is refused there, whatever the machine
r = run(cli, ["gpupre", "--out=" + p("g.npy"), "--resize=shorter:256", "--crop=224", p("b.png")], check=False)
C.check(r.returncode == 1 and "GPU preprocessing" in r.stderr and "crop 224x224" in r.stderr,
        "gpupre with a crop refused: %s" % r.stderr.strip())
C.finish()
