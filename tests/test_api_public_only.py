#!/usr/bin/python3
"""test_api_public_only.py: the public headers are the only door (issue 11).

  - every C file and header under src/cli/ and python/src/ includes, of the project's own
    headers, only include/imgsim.h, include/imgsim_synth.h and headers of its own folder tree
    (src/cli/...): an include that resolves, as the compiler would resolve it (the file's folder,
    then src/, then include/), to a header elsewhere in src/ fails, whatever its spelling;
  - no code (comments and strings stripped) in those files names an internal ims_ function or type;
  - `nm` of each static library given on the command line (libimgsim, libimgsim_synth and their
    sanitizer builds) defines only external symbols named imgsim_* or ims_* (and the
    DW.ref.__gxx_personality_v0 that C++/CUDA objects carry, and in the sanitizer build the
    __odr_asan.NAME indicator AddressSanitizer adds beside a global NAME of those prefixes).

Usage: test_api_public_only.py LIB.a [LIB.a ...]   (IMGSIM_SOURCE_DIR: the checkout)
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import SRC, check, finish  # noqa: E402

SRC_DIR = os.path.join(SRC, "src")
INC_DIR = os.path.join(SRC, "include")
PUBLIC = {os.path.join(INC_DIR, "imgsim.h"), os.path.join(INC_DIR, "imgsim_synth.h")}
# folders whose files may include only the public headers and their own tree's headers
CHECKED = [os.path.join(SRC, "src", "cli"), os.path.join(SRC, "python", "src")]
ALLOWED_SYMBOL = re.compile(r"^(__odr_asan\.)?(imgsim_|ims_)|^DW\.ref\.__gxx_personality_v0$")

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def strip_comments_and_strings(text):
    """C source with comments, string and character literals blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def resolve(name, from_dir, quoted):
    """The file an include names, searched as the build does: the including file's folder
    (quoted only), then src/ (the CLI's include path), then include/. None: a system header."""
    dirs = ([from_dir] if quoted else []) + [SRC_DIR, INC_DIR]
    for d in dirs:
        p = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(p):
            return p
    return None


def check_sources():
    n_files = n_includes = 0
    for top in CHECKED:
        for dirpath, _, names in os.walk(top):
            for nm in sorted(names):
                if not nm.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, nm)
                rel = os.path.relpath(path, SRC)
                text = open(path, encoding="utf-8", errors="surrogateescape").read()
                n_files += 1
                for m in INCLUDE.finditer(text):
                    target = resolve(m.group(2), dirpath, m.group(1) == '"')
                    if target is None:
                        continue  # a system or generated header
                    n_includes += 1
                    inside_own_tree = os.path.commonpath([target, top]) == top
                    check(target in PUBLIC or inside_own_tree,
                          "%s includes %s (%s): a library-internal header; use include/imgsim.h" %
                          (rel, m.group(2), os.path.relpath(target, SRC)))
                code = strip_comments_and_strings(text)
                for ln, line in enumerate(code.split("\n"), 1):
                    for m in re.finditer(r"\bims_\w+", line):
                        check(False, "%s:%d uses %s, an internal name; use the imgsim_ call" % (rel, ln, m.group(0)))
    check(n_files > 20, "only %d files checked under %s" % (n_files, CHECKED))
    check(n_includes > 20, "only %d project includes seen" % n_includes)
    print("sources: %d files, %d project includes checked" % (n_files, n_includes))


def check_library(lib):
    p = subprocess.run(["nm", "-g", "--defined-only", lib], capture_output=True, text=True)
    check(p.returncode == 0, "nm %s failed: %s" % (lib, p.stderr.strip()))
    syms = set()
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:  # address, type, name (member headers and blank lines have fewer)
            syms.add(parts[2])
    bad = sorted(s for s in syms if not ALLOWED_SYMBOL.search(s))
    check(len(syms) > 0, "%s: no defined symbols found" % lib)
    check(not bad, "%s exports %d symbols outside imgsim_/ims_: %s" % (os.path.basename(lib), len(bad), bad[:20]))
    print("%s: %d external symbols" % (os.path.basename(lib), len(syms)))


if len(sys.argv) < 2:
    sys.exit("usage: test_api_public_only.py LIB.a [LIB.a ...]")
check_sources()
for lib in sys.argv[1:]:
    check_library(lib)
finish()
