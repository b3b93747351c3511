"""The Python package, installed as a user installs it: a fresh venv (/usr/bin/python3 -m venv
--system-site-packages, so Debian's numpy/PIL/torch/onnx are visible), `pip install` of this
checkout (scikit-build-core from PyPI, installed once into the venv, then --no-build-isolation),
and python_checks.py run by the venv's python from a folder outside the source tree, so it
imports the installed package and not the build tree.

The pip build compiles the whole library once per run; to keep it short on CI's two cores it
passes IMGSIM_CUDA=OFF (the CUDA build of the extension is compiled by the plain CMake build) and
IMGSIM_ASAN=OFF. IMGSIM_PY_CUDA=AUTO builds the package with CUDA (the GPU machine's DLPack check).
Skips (77) when venv, pip or scikit-build-core cannot be had (no python3-venv, no PyPI)."""
import os
import subprocess
import sys
import time

import testlib as T

w = T.workdir()
venv = os.path.join(w, "venv")
py = os.path.join(venv, "bin", "python")
r = subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], capture_output=True, text=True)
if r.returncode != 0:
    T.skip("cannot create a venv (python3-venv missing?): " + r.stderr.strip()[-300:])
r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "scikit-build-core>=0.8"],
                   capture_output=True, text=True)
if r.returncode != 0:
    T.skip("cannot install scikit-build-core into the venv (no PyPI?): " + r.stderr.strip()[-300:])

t0 = time.time()
env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
cuda = os.environ.get("IMGSIM_PY_CUDA", "OFF")
r = subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-build-isolation", "--no-deps",
                    "--config-settings=cmake.define.IMGSIM_CUDA=" + cuda,
                    "--config-settings=cmake.define.IMGSIM_ASAN=OFF",
                    "--config-settings=build-dir=" + os.path.join(w, "pip-build"), T.SRC],
                   capture_output=True, text=True, env=env)
if r.returncode != 0:
    sys.stderr.write("pip install failed:\n" + r.stdout[-6000:] + r.stderr[-6000:])
    sys.exit(1)
print("pip install: %.1f s" % (time.time() - t0))

# run the checks from a folder outside the source tree, with nothing of it on sys.path
outside = os.path.join(w, "outside")
os.makedirs(outside)
env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
env["IMGSIM_TESTLIB"] = os.path.dirname(os.path.abspath(__file__))
r = subprocess.run([py, os.path.join(env["IMGSIM_TESTLIB"], "python_checks.py"), venv], cwd=outside, env=env)
sys.exit(r.returncode)
