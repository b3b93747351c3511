#!/usr/bin/python3
"""test_data_split.py: `imgsim split` against an independent Python model of the rule.

Checked, on a generated dataset with uneven classes (1..26 images), a root-level image and a
non-image:
  - every class's test count equals Python's round(test_size * count), clamped to [0, count-1]
    (round half to even), hence within +-1 of test_size * count; singleton classes stay in train;
  - train and test partition the listed images exactly, with the right labels;
  - same seed -> identical files; different seed -> a different test set;
  - the same images created in reverse order in another folder, and a shuffled TSV list of them,
    give the same split (as sets of dataset-relative paths);
  - the paths in train.tsv/test.tsv resolve (relative to the TSV's folder) to the listed files;
  - bad arguments are usage errors (exit 2).
"""
import os
import random
import shutil
import subprocess
import sys

CLI = os.environ.get("IMGSIM_CLI")
WORK = os.environ.get("IMGSIM_TEST_DIR", "/tmp/imgsim_test_data_split")

try:
    from PIL import Image
except ImportError:
    print("PIL not available")
    sys.exit(77)

if not CLI or not os.path.exists(CLI):
    print("IMGSIM_CLI not set")
    sys.exit(77)

from testlib import check, finish  # noqa: E402


def run(*args, expect=0):
    p = subprocess.run([CLI, "split", *args], capture_output=True, text=True)
    if p.returncode != expect:
        print(p.stdout, p.stderr)
        raise SystemExit("imgsim split %s: exit %d, expected %d" % (" ".join(args), p.returncode, expect))
    return p


def read_tsv(path):
    """Returns [(resolved absolute path, label)] of a "path\\tlabel" list."""
    with open(path) as f:
        lines = f.read().split("\n")
    assert lines[0] == "path\tlabel", "bad header in %s: %r" % (path, lines[0])
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for ln in lines[1:]:
        if not ln:
            continue
        p, label = ln.split("\t")
        out.append((os.path.normpath(os.path.join(base, p)), label))
    return out


def rel_set(entries, root):
    root = os.path.realpath(root)
    return {(os.path.relpath(os.path.realpath(p), root), lab) for p, lab in entries}


# class name -> count; uneven, includes a singleton, a pair and .5 cases for test_size 0.25
COUNTS = {"ant": 1, "bee": 2, "cat": 3, "dog": 5, "eel": 6, "fox": 7, "gnu": 10, "hen": 13, "owl": 26}


def make_dataset(root, reverse=False):
    """Writes tiny images; `reverse` creates files (and folders) in the opposite order."""
    jobs = []
    for ci, (cls, n) in enumerate(sorted(COUNTS.items())):
        for i in range(n):
            jobs.append((cls, i, ci))
    if reverse:
        jobs.reverse()
    os.makedirs(root)
    for cls, i, ci in jobs:
        d = os.path.join(root, cls)
        os.makedirs(d, exist_ok=True)
        im = Image.new("RGB", (8 + i % 5, 6 + ci), (ci * 20, i * 7 % 256, 100))
        name = os.path.join(d, "im%03d" % i)
        if i % 3 == 0:
            im.save(name + ".jpg", "JPEG", quality=90)
        elif i % 3 == 1:
            im.save(name + ".png", "PNG")
        else:
            im.save(name + ".webp", "WEBP", lossless=True)
    # one image directly in the root (label ""), one non-image, one hidden file
    Image.new("RGB", (9, 9), (1, 2, 3)).save(os.path.join(root, "loose.png"))
    with open(os.path.join(root, "dog", "README.jpg"), "w") as f:
        f.write("not an image\n")
    with open(os.path.join(root, "cat", ".hidden.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 hidden")


def py_round_rule(test_size, count):
    if count <= 1:
        return 0
    return max(0, min(count - 1, round(test_size * count)))


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
A = os.path.join(WORK, "A")
B = os.path.join(WORK, "B")
make_dataset(A)
make_dataset(B, reverse=True)
listed = {(os.path.join(A, cls, f), cls) for cls in COUNTS for f in os.listdir(os.path.join(A, cls))
          if not f.startswith(".") and not f.startswith("README")}
listed.add((os.path.join(A, "loose.png"), ""))
counts = dict(COUNTS)
counts[""] = 1

for test_size in (0.2, 0.25, 0.5, 0.37):
    out = os.path.join(WORK, "out_%g" % test_size)
    p = run(A, "--test-size=%g" % test_size, "--seed=42", "--out-dir=" + out)
    train, test = read_tsv(os.path.join(out, "train.tsv")), read_tsv(os.path.join(out, "test.tsv"))
    check(len(set(train) & set(test)) == 0, "train and test overlap")
    check(set(train) | set(test) == listed, "train+test != the listed images (ts %g)" % test_size)
    check(len(train) + len(test) == len(listed), "duplicates in the split files")
    for cls, n in counts.items():
        nt = sum(1 for _, lab in test if lab == cls)
        want = py_round_rule(test_size, n)
        check(nt == want, "ts %g class %r (%d images): %d test, Python round rule says %d" % (test_size, cls, n, nt, want))
        if n > 1:
            check(abs(nt - test_size * n) <= 1.0, "ts %g class %r: %d test, target %.2f" % (test_size, cls, nt, test_size * n))
        check(n - nt >= 1, "class %r has no training image" % cls)
    check("README.jpg" in p.stderr and "not an image" in p.stderr, "non-image not reported with a reason")
    check(".hidden" not in p.stderr, "hidden file should be ignored silently")
    for path, _ in train + test:
        check(os.path.isfile(path), "TSV path does not resolve: " + path)

# the singleton class and the root-level image stay in train
train = read_tsv(os.path.join(WORK, "out_0.5", "train.tsv"))
check(any(lab == "ant" for _, lab in train), "singleton class not in train")
check(any(lab == "" and p.endswith("loose.png") for p, lab in train), "root-level image (label '') not in train")

# same seed -> identical files
run(A, "--seed=42", "--out-dir=" + os.path.join(WORK, "again"))
for name in ("train.tsv", "test.tsv"):
    with open(os.path.join(WORK, "out_0.2", name), "rb") as f1, open(os.path.join(WORK, "again", name), "rb") as f2:
        check(f1.read() == f2.read(), "same seed gave a different " + name)

base_test = rel_set(read_tsv(os.path.join(WORK, "out_0.2", "test.tsv")), A)

# a different seed -> a different test set (same sizes)
run(A, "--seed=43", "--out-dir=" + os.path.join(WORK, "seed43"))
other = rel_set(read_tsv(os.path.join(WORK, "seed43", "test.tsv")), A)
check(other != base_test and len(other) == len(base_test), "seed 43 gave the same test set as seed 42")

# the copy created in reverse order -> the same split
run(B, "--seed=42", "--out-dir=" + os.path.join(WORK, "outB"))
check(rel_set(read_tsv(os.path.join(WORK, "outB", "test.tsv")), B) == base_test, "reverse-created copy split differently")

# a shuffled TSV list in the dataset root (paths relative to the list) -> the same split
entries = [(os.path.relpath(p, A), lab) for p, lab in listed]
random.Random(5).shuffle(entries)
lst = os.path.join(A, "list.tsv")
with open(lst, "w") as f:
    f.write("path\tlabel\n")
    for i, (p, lab) in enumerate(entries):
        f.write("%s\t%s\n" % (p, lab) if lab else "%s\n" % p)  # a line without a tab: label ""
        if i == 3:
            f.write("\n")  # blank lines are ignored
p = run(lst, "--seed=42", "--out-dir=" + os.path.join(WORK, "outL"))
check(rel_set(read_tsv(os.path.join(WORK, "outL", "test.tsv")), A) == base_test, "shuffled TSV list split differently")
check("split: skipped" not in p.stderr, "TSV entries must not be sniffed/skipped")

# writing the split into the dataset root gives paths relative to it
p = run(lst, "--seed=42", "--out-dir=" + A)
with open(os.path.join(A, "test.tsv")) as f:
    rows = f.read().split("\n")[1:]
check(all(not r or not r.startswith("/") for r in rows), "TSV inside the dataset root should hold relative paths")
check(rel_set(read_tsv(os.path.join(A, "test.tsv")), A) == base_test, "split written into the root differs")
os.remove(os.path.join(A, "train.tsv"))
os.remove(os.path.join(A, "test.tsv"))

# usage errors
run(A, "--test-size=1", "--out-dir=" + os.path.join(WORK, "x"), expect=2)
run(A, "--test-size=0", "--out-dir=" + os.path.join(WORK, "x"), expect=2)
run(A, expect=2)  # no --out-dir
run("--out-dir=" + os.path.join(WORK, "x"), expect=2)  # no dataset

finish()
