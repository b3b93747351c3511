"""The Python package's DLPack output on a CUDA engine, through the extension module of this build
(IMGSIM_PY_MODULE: python/imgsim/ with the _imgsim module built beside the library):
Engine(device="cuda").embed(out="dlpack") hands torch.from_dlpack a CUDA tensor holding exactly
the features out="numpy" gives (same engine, same images), which stays valid after the engine and
the DLPack object are gone; the fp32 CUDA features agree with the CPU engine's (cosine >= 0.9999
per image); out="dlpack" on the CPU engine is the numpy array's own DLPack (a CPU tensor).
Skipped (77) without the module, torch with CUDA, or a GPU."""
import gc
import os
import shutil
import sys

import numpy as np

import testlib as T

mod = os.environ.get("IMGSIM_PY_MODULE", "")
if not mod or not os.path.exists(mod):
    T.skip("no Python extension module in this build")
try:
    import torch
except ImportError:
    T.skip("no torch")
if not torch.cuda.is_available():
    T.skip("no CUDA device for torch")
w = T.workdir()
pkg = os.path.join(w, "pkg")
shutil.copytree(os.path.join(T.SRC, "python", "imgsim"), os.path.join(pkg, "imgsim"))
shutil.copy(mod, os.path.join(pkg, "imgsim", os.path.basename(mod)))
sys.path.insert(0, pkg)
import imgsim  # noqa: E402

data = os.path.join(w, "data")
items = T.make_dataset(data, 3, 4, seed=12, sizes=((160, 120), (120, 160)))
files = [os.path.join(data, p) for p, _ in items]
model = os.path.join(w, "r18.onnx")
T.run(["model", "init", "--arch=resnet18", "--seed=5", "--out=" + model])
try:
    eng = imgsim.Engine(model, device="cuda", precision="fp32")
except imgsim.Error as e:
    T.skip("no CUDA engine here: %s" % e)
ref = eng.embed(files)
d = eng.embed(files, out="dlpack")
t = torch.from_dlpack(d)
T.check(t.is_cuda, "out='dlpack' on a CUDA engine gives a CUDA tensor (%s)" % t.device)
T.check(tuple(t.shape) == ref.shape and t.dtype == torch.float32, "shape %s dtype %s" % (tuple(t.shape), t.dtype))
del d, eng
gc.collect()
got = t.cpu().numpy()
# the two calls ran the same 12 images, but a CUDA engine runs a batch size's first batch in its
# full-size graph and captures one of that size the next time (cuda_backend.c, launch): the rows
# agree to float rounding, not bit for bit
diff = float(np.abs(got - ref).max())
print("DLPack features vs numpy features of the same images: max |diff| %.3g" % diff)
T.check(diff <= 1e-6, "DLPack features == numpy features within 1e-6 (max diff %g)" % diff)
cpu = imgsim.Engine(model, device="cpu")
c = cpu.embed(files)
cos = (c.astype(np.float64) * ref).sum(1) / np.linalg.norm(c, axis=1) / np.linalg.norm(ref, axis=1)
print("cuda fp32 vs cpu: min cosine %.7f over %d images" % (cos.min(), len(files)))
T.check(cos.min() >= 0.9999, "cuda fp32 vs cpu features: min cosine %.7f" % cos.min())
tc = torch.from_dlpack(cpu.embed(files, out="dlpack"))
T.check(not tc.is_cuda and np.array_equal(tc.numpy(), c), "CPU engine: out='dlpack' is the numpy array's")
T.finish()
