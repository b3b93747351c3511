"""The library reads the environment in one place and documents every knob it reads.

- no file of the library (src/ outside src/cli/, which is the command-line tool) calls getenv
  except src/core/tune.c;
- every IMGSIM_* variable tune.c reads has a row in README.md's "Tuning knobs" table, and every
  row there is read by tune.c.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib as T

src = os.path.join(T.SRC, "src")
bad = []
for root, _, files in os.walk(src):
    if os.path.relpath(root, src).split(os.sep)[0] == "cli":
        continue
    for f in files:
        path = os.path.join(root, f)
        if not f.endswith((".c", ".h", ".cu", ".cuh")) or os.path.relpath(path, src) == os.path.join("core", "tune.c"):
            continue
        text = open(path, encoding="utf-8", errors="replace").read()
        if re.search(r"\b(secure_)?getenv\s*\(", text):
            bad.append(os.path.relpath(path, T.SRC))
assert not bad, "getenv outside src/core/tune.c: %s" % bad

tune = open(os.path.join(src, "core", "tune.c")).read()
read = set(re.findall(r'"(IMGSIM_[A-Z0-9_]+)"', tune))
assert read, "tune.c reads no IMGSIM_ variable?"
readme = open(os.path.join(T.SRC, "README.md")).read()
m = re.search(r"^## Tuning knobs\n(.*?)^## ", readme, re.S | re.M)
assert m, "README.md has no 'Tuning knobs' section"
documented = set(re.findall(r"^\| `(IMGSIM_[A-Z0-9_]+)` \|", m.group(1), re.M))
assert read == documented, "read but not documented: %s; documented but not read: %s" % (
    sorted(read - documented), sorted(documented - read))
print("%d knobs, all read in tune.c and documented" % len(read))
