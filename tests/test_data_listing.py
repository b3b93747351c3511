#!/usr/bin/python3
"""test_data_listing.py: dataset listing (folder, TSV list, single file), seen through `imgsim split`.

The union of train.tsv and test.tsv is the listing; stderr carries the skipped files. Checked:
  - content sniffing: a PNG named .jpg and a JPEG with no extension are listed, a WebP is listed;
    a text file named .jpg, random bytes and an empty file are skipped with their reasons;
  - hidden files and folders are ignored; nested folders take the first-level folder as label;
    images directly in the root get the label "";
  - symbolic links: a linked file is followed; a link to a folder outside the dataset root is not
    (skipped, with that reason: issue 12), nor a link back to an ancestor folder (a loop), and
    nothing is listed twice;
  - a file name with a tab is refused with a clear error;
  - TSV lists: relative and absolute paths, entries not sniffed (a missing file is still listed),
    malformed lines rejected with their line number;
  - a single image file is a dataset of one; a single text file is an error.
Runs the sanitizer build of the CLI too when IMGSIM_CLI_ASAN is set.
"""
import os
import shutil
import subprocess
import sys

WORK = os.environ.get("IMGSIM_TEST_DIR", "/tmp/imgsim_test_data_listing")

try:
    from PIL import Image
except ImportError:
    print("PIL not available")
    sys.exit(77)

clis = [c for c in (os.environ.get("IMGSIM_CLI"), os.environ.get("IMGSIM_CLI_ASAN")) if c and os.path.exists(c)]
if not clis:
    print("IMGSIM_CLI not set")
    sys.exit(77)

from testlib import check, finish  # noqa: E402


def read_tsv(path):
    with open(path) as f:
        lines = f.read().split("\n")
    assert lines[0] == "path\tlabel"
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for ln in lines[1:]:
        if ln:
            p, lab = ln.split("\t")
            out.append((os.path.normpath(os.path.join(base, p)), lab))
    return out


def listing(cli, dataset, out, expect=0):
    """Runs imgsim split; returns ({abs path: label}, stderr)."""
    p = subprocess.run([cli, "split", dataset, "--test-size=0.3", "--out-dir=" + out], capture_output=True, text=True)
    if p.returncode != expect:
        print(p.stderr)
        check(False, "%s split %s: exit %d, expected %d" % (cli, dataset, p.returncode, expect))
        return {}, p.stderr
    if expect != 0:
        return {}, p.stderr
    items = read_tsv(os.path.join(out, "train.tsv")) + read_tsv(os.path.join(out, "test.tsv"))
    d = {}
    for path, lab in items:
        check(path not in d, "listed twice: " + path)
        d[path] = lab
    return d, p.stderr


shutil.rmtree(WORK, ignore_errors=True)
D = os.path.join(WORK, "D")
EXT = os.path.join(WORK, "outside")
for sub in ("cat/sub/deeper", "dog", ".hiddendir", "empty"):
    os.makedirs(os.path.join(D, sub))
os.makedirs(EXT)


def img(path, fmt, size=(10, 7), color=(200, 30, 40)):
    im = Image.new("RGB", size, color)
    kw = {"lossless": True} if fmt == "WEBP" else {}
    im.save(path, fmt, **kw)


img(os.path.join(D, "cat", "a.jpg"), "JPEG")
img(os.path.join(D, "cat", "png_named.jpg"), "PNG")          # PNG content, .jpg name
img(os.path.join(D, "cat", "sub", "deeper", "b.webp"), "WEBP")
img(os.path.join(D, "dog", "noext"), "JPEG")                 # no extension
img(os.path.join(D, "root.png"), "PNG")                      # label ""
img(os.path.join(D, ".hiddendir", "h.jpg"), "JPEG")          # ignored
img(os.path.join(D, "dog", ".h.png"), "PNG")                 # ignored
with open(os.path.join(D, "dog", "text.jpg"), "w") as f:
    f.write("this is text\n")
with open(os.path.join(D, "dog", "random.png"), "wb") as f:
    f.write(bytes(range(7, 250)))
open(os.path.join(D, "dog", "empty.jpg"), "wb").close()
img(os.path.join(EXT, "linked.png"), "PNG")
os.makedirs(os.path.join(EXT, "folder"))
img(os.path.join(EXT, "folder", "c.png"), "PNG")
os.symlink(os.path.join(EXT, "linked.png"), os.path.join(D, "dog", "link.png"))
os.symlink(os.path.join(EXT, "folder"), os.path.join(D, "extcls"))
os.symlink("../..", os.path.join(D, "cat", "sub", "loop"))   # back to D: a loop
os.symlink("missing.png", os.path.join(D, "dog", "dangling.png"))

expected = {
    os.path.join(D, "cat", "a.jpg"): "cat",
    os.path.join(D, "cat", "png_named.jpg"): "cat",
    os.path.join(D, "cat", "sub", "deeper", "b.webp"): "cat",
    os.path.join(D, "dog", "noext"): "dog",
    os.path.join(D, "dog", "link.png"): "dog",
    os.path.join(D, "root.png"): "",
}

for cli in clis:
    tag = os.path.basename(cli)
    got, err = listing(cli, D, os.path.join(WORK, "out_" + tag))
    # compare as real files (the TSV may spell a linked folder through its target)
    want = {os.path.realpath(p): lab for p, lab in expected.items()}
    gotr = {os.path.realpath(p): lab for p, lab in got.items()}
    check(gotr == want, "%s: listing differs:\n got  %s\n want %s" % (tag, sorted(gotr.items()), sorted(want.items())))
    check(len(got) == len(expected), "%s: %d items listed, expected %d" % (tag, len(got), len(expected)))
    for name, reason in (("text.jpg", "not an image (unrecognised content)"),
                         ("random.png", "not an image (unrecognised content)"),
                         ("empty.jpg", "not an image (empty file)"),
                         ("dangling.png", "cannot read"),
                         ("extcls", "symbolic link to a folder outside the dataset root")):
        line = [ln for ln in err.splitlines() if name in ln]
        check(line and reason in line[0], "%s: %s not reported as '%s': %r" % (tag, name, reason, line))
    check("hidden" not in err and ".h.png" not in err, "%s: hidden entries must be ignored silently" % tag)

    # a name with a tab cannot be written to a TSV: refused, naming the file
    T = os.path.join(WORK, "tab_" + tag)
    os.makedirs(os.path.join(T, "x"))
    img(os.path.join(T, "x", "a\tb.png"), "PNG")
    _, err = listing(cli, T, os.path.join(WORK, "outT"), expect=1)
    check("tab or newline" in err and "a\tb.png" in err, "%s: tab in a name not refused clearly: %r" % (tag, err))

    # TSV list: relative, absolute, missing (not sniffed), no-label lines; in a sub-folder of D
    L = os.path.join(D, "lists")
    os.makedirs(L, exist_ok=True)
    lst = os.path.join(L, "l.tsv")
    with open(lst, "w") as f:
        f.write("path\tlabel\n../cat/a.jpg\tkitty\n%s\tother\n\nnot_there.jpg\tghost\n../root.png\n"
                % os.path.join(D, "dog", "noext"))
    got, err = listing(cli, lst, os.path.join(WORK, "outL_" + tag))
    want = {os.path.join(D, "cat", "a.jpg"): "kitty", os.path.join(D, "dog", "noext"): "other",
            os.path.join(L, "not_there.jpg"): "ghost", os.path.join(D, "root.png"): ""}
    check({os.path.normpath(p): l for p, l in got.items()} == want, "%s: TSV listing differs: %s" % (tag, got))

    for body, lineno, what in (("path\tlabel\na.jpg\tcat\tx\n", 2, "columns"),
                               ("path\tlabel\na.jpg\tcat\n\n\tcat\n", 4, "empty path")):
        with open(lst, "w") as f:
            f.write(body)
        _, err = listing(cli, lst, os.path.join(WORK, "outX"), expect=1)
        check(("l.tsv:%d:" % lineno) in err and what in err, "%s: malformed TSV not reported at line %d: %r" % (tag, lineno, err))
    shutil.rmtree(L)

    # a single image file, and a single non-image
    got, err = listing(cli, os.path.join(D, "cat", "png_named.jpg"), os.path.join(WORK, "outS_" + tag))
    check(list(got.values()) == [""] and len(got) == 1, "%s: single file dataset: %s" % (tag, got))
    _, err = listing(cli, os.path.join(D, "dog", "text.jpg"), os.path.join(WORK, "outS2"), expect=1)
    check("not an image" in err, "%s: single text file not refused clearly: %r" % (tag, err))
    _, err = listing(cli, os.path.join(WORK, "nope"), os.path.join(WORK, "outS3"), expect=1)
    check("nope" in err, "%s: missing dataset not named: %r" % (tag, err))

finish()
