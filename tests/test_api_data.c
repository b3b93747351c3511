/*
 * test_api_data.c: the public dataset, .npy and folder-lock calls, through imgsim.h alone (also
 * built with ASan+UBSan). References come from Python (os, csv, numpy) through $IMGSIM_PYTHON:
 *  - imgsim_dataset_open of a folder lists exactly the images Python's walk finds, sorted, with
 *    the first-level folder as label ("" in the root), and skips the text files (one named .jpg)
 *    with a reason; out-of-range items and a missing folder are refused naming them;
 *  - imgsim_dataset_fingerprint is equal for a copy of the folder elsewhere (copy2 keeps mtimes)
 *    and changes when one file's modification time or size changes, and is back when restored;
 *  - imgsim_dataset_split sends round(test_size * count) items of each label to test (Python's
 *    round, half to even: 5 items at 0.5 give 2; a label of one item stays in train), and picks
 *    the same items from a list of them in reverse order (imgsim_dataset_write_tsv); other seeds
 *    pick other items;
 *  - imgsim_dataset_write_tsv writes a list that Python's csv reads as "path<TAB>label" with the
 *    chosen items, in order, each path (relative to the list) the same file as in the folder;
 *  - imgsim_npy_read gives numpy's bytes for float32/float16 2-D, 1-D (as [1, n]) and format 2.0
 *    files, and refuses float64, big-endian, Fortran-order, 3-D, truncated and non-.npy files with
 *    the file named; imgsim_npy_write_f32 writes what np.load reads as the same shape and values;
 *  - imgsim_store_dataset_root: the folder meta.json's input names, or the folder of a list (a bare
 *    name: "."); NULL without an input; a missing or broken meta.json refused naming it; a name
 *    that is not UTF-8 (written as \udcXX, Python's surrogateescape) comes back as its bytes;
 *  - imgsim_dir_lock_take: a second take from a child process fails at once (IMGSIM_ERR_IO) naming
 *    the folder and the holder's pid, succeeds once released; taking it removes the NAME.tmp.PID
 *    files left in the folder and nothing else.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "imgsim.h"

static char g_dir[4096];
static const char *g_python;

/* Runs the Python reference script with args; fails the test on a non-zero exit. */
static void python(const char *args) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s ref.py %s", g_dir, g_python, args);
    if (system(cmd) != 0) fail_msg("reference failed: %s", cmd);
}

static const char k_ref_py[] =
    "import csv, os, shutil, sys\n"
    "import numpy as np\n"
    "from PIL import Image\n"
    "cmd, d = sys.argv[1], sys.argv[2]\n"
    "if cmd == 'tree':\n" /* a dataset folder, and the listing and skips Python expects */
    "    rng = np.random.default_rng(3)\n"
    "    files = ['a/i0.png', 'a/i1.png', 'a/i2.png', 'a/deep/x.png', 'b/j0.png', 'b/j1.png', 'b/j2.png',\n"
    "             'b/j3.png', 'b/j4.png', 'r.png']\n"
    "    for f in files:\n"
    "        os.makedirs(os.path.dirname(os.path.join(d, f)), exist_ok=True)\n"
    "        Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(os.path.join(d, f))\n"
    "    open(os.path.join(d, 'a', 'notes.txt'), 'w').write('not an image\\n')\n"
    "    open(os.path.join(d, 'b', 'fake.jpg'), 'w').write('not a JPEG either\\n')\n"
    "    items, skips = [], []\n"
    "    for root, dirs, names in os.walk(d):\n"
    "        for n in names:\n"
    "            rel = os.path.relpath(os.path.join(root, n), d)\n"
    "            try:\n"
    "                Image.open(os.path.join(root, n)).verify()\n"
    "                items.append(rel)\n"
    "            except Exception:\n"
    "                skips.append(rel)\n"
    "    with open(d + '.expect', 'w') as f:\n"
    "        for rel in sorted(items):\n"
    "            f.write('%s\\t%s\\n' % (rel, rel.split('/')[0] if '/' in rel else ''))\n"
    "    with open(d + '.skips', 'w') as f:\n"
    "        for rel in sorted(skips): f.write(rel + '\\n')\n"
    "elif cmd == 'counts':\n" /* test items per label: round(test_size * count), one-item labels 0 */
    "    from collections import Counter\n"
    "    c = Counter(l.rstrip('\\n').split('\\t')[1] for l in open(d + '.expect'))\n"
    "    with open(d + '.counts', 'w') as f:\n"
    "        for lab, n in sorted(c.items()):\n"
    "            f.write('%s\\t%d\\n' % (lab if lab else '-', 0 if n < 2 else round(float(sys.argv[3]) * n)))\n"
    "elif cmd == 'copy':\n"
    "    shutil.copytree(d, sys.argv[3], copy_function=shutil.copy2)\n"
    "elif cmd == 'touch':\n" /* shift one file's mtime by argv[4] ns (0: back to the saved one) */
    "    p, dt = os.path.join(d, sys.argv[3]), int(sys.argv[4])\n"
    "    st = os.stat(p)\n"
    "    if dt: open(d + '.mtime', 'w').write(str(st.st_mtime_ns))\n"  /* outside the dataset */
    "    t = st.st_mtime_ns + dt if dt else int(open(d + '.mtime').read())\n"
    "    os.utime(p, ns=(st.st_atime_ns, t))\n"
    "elif cmd == 'grow':\n" /* append a byte, keeping the mtime */
    "    p = os.path.join(d, sys.argv[3])\n"
    "    st = os.stat(p)\n"
    "    open(p, 'ab').write(b'\\0')\n"
    "    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))\n"
    "elif cmd == 'readtsv':\n" /* the list's rows as rel-to-dataset-root and label; checks the files */
    "    tsv, root = d, sys.argv[3]\n"
    "    rows = list(csv.reader(open(tsv, newline=''), delimiter='\\t'))\n"
    "    assert rows[0] == ['path', 'label'], rows[0]\n"
    "    with open(tsv + '.seen', 'w') as f:\n"
    "        for path, label in rows[1:]:\n"
    "            full = os.path.join(os.path.dirname(tsv), path)\n"
    "            rel = os.path.relpath(full, root)\n"
    "            assert os.path.samefile(full, os.path.join(root, rel)), path\n"
    "            f.write('%s\\t%s\\n' % (rel, label))\n"
    "elif cmd == 'npy':\n" /* arrays numpy writes, their raw C-order bytes beside */
    "    os.makedirs(d, exist_ok=True)\n"
    "    rng = np.random.default_rng(9)\n"
    "    def save(name, a, **kw):\n"
    "        np.save(os.path.join(d, name + '.npy'), a, **kw)\n"
    "        open(os.path.join(d, name + '.raw'), 'wb').write(np.ascontiguousarray(a).tobytes())\n"
    "    save('f32', rng.standard_normal((5, 7)).astype(np.float32))\n"
    "    save('f16', rng.standard_normal((3, 4)).astype(np.float16))\n"
    "    save('v1d', rng.standard_normal(6).astype(np.float32))\n"
    "    a = rng.standard_normal((4, 3)).astype(np.float32)\n"
    "    with open(os.path.join(d, 'v2.npy'), 'wb') as f: np.lib.format.write_array(f, a, version=(2, 0))\n"
    "    open(os.path.join(d, 'v2.raw'), 'wb').write(a.tobytes())\n"
    "    np.save(os.path.join(d, 'f64.npy'), rng.standard_normal((2, 2)))\n"
    "    np.save(os.path.join(d, 'big.npy'), rng.standard_normal((2, 2)).astype('>f4'))\n"
    "    np.save(os.path.join(d, 'fortran.npy'), np.asfortranarray(rng.standard_normal((3, 2)).astype(np.float32)))\n"
    "    np.save(os.path.join(d, 'rank3.npy'), np.zeros((2, 2, 2), np.float32))\n"
    "    b = open(os.path.join(d, 'f32.npy'), 'rb').read()\n"
    "    open(os.path.join(d, 'trunc.npy'), 'wb').write(b[:-5])\n"
    "    open(os.path.join(d, 'text.npy'), 'w').write('hello\\n')\n"
    "elif cmd == 'metas':\n" /* store folders holding only a meta.json (or none, or not JSON) */
    "    import json\n"
    "    ds = os.path.abspath('ds')\n"
    "    odd = os.path.abspath(os.fsdecode(b'ds-\\xff'))\n" /* a folder whose name is not UTF-8 */
    "    os.makedirs(odd, exist_ok=True)\n"
    "    cases = {'s1': {'input': ds}, 's2': {'input': ds + '/rev.tsv'}, 's3': {'input': 'list.tsv'},\n"
    "             's4': {'input': '/x.tsv'}, 's5': {'dim': 3}, 's8': {'input': odd}}\n"
    "    for name, m in cases.items():\n"
    "        os.makedirs(os.path.join(d, name))\n"
    "        json.dump(m, open(os.path.join(d, name, 'meta.json'), 'w'))\n" /* ensure_ascii: \\udcff */
    "    os.makedirs(os.path.join(d, 's6'))\n"
    "    os.makedirs(os.path.join(d, 's7'))\n"
    "    open(os.path.join(d, 's7', 'meta.json'), 'w').write('{\"input\": ')\n"
    "elif cmd == 'npycheck':\n" /* what imgsim_npy_write_f32 wrote: [2, 3, 4], x = i / 4 - 2 */
    "    a = np.load(d)\n"
    "    assert a.dtype == np.dtype('<f4'), a.dtype\n"
    "    assert a.shape == (2, 3, 4), a.shape\n"
    "    assert a.flags['C_CONTIGUOUS']\n"
    "    assert np.array_equal(a, np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 4 - 2), a\n";

static char *path_in(const char *name) {
    static char p[8][4600];
    static int next;
    char *s = p[next++ % 8];
    snprintf(s, sizeof p[0], "%s/%s", g_dir, name);
    return s;
}

/* A whole small file as a NUL-terminated string (the caller frees it); *len its length. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s: cannot open", path);
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    size_t got = fread(buf, 1, (1 << 16) - 1, f);
    buf[got] = 0;
    fclose(f);
    if (len) *len = got;
    return buf;
}

/* ---- listing ---------------------------------------------------------------------------- */

static int setup_tree(void **state) {
    (void)state;
    python("tree ds");
    return 0;
}

/* The dataset's items as "rel<TAB>label\n" lines. */
static char *listing(const imgsim_dataset *ds) {
    imgsim_dataset_info info;
    assert_int_equal(imgsim_dataset_get_info(ds, &info), IMGSIM_OK);
    char *s = calloc(1, 1 << 16);
    assert_non_null(s);
    size_t off = 0;
    for (size_t i = 0; i < info.n; i++) {
        imgsim_dataset_item it;
        assert_int_equal(imgsim_dataset_get_item(ds, i, &it), IMGSIM_OK);
        off += (size_t)snprintf(s + off, (1 << 16) - off, "%s\t%s\n", it.rel, it.label);
    }
    return s;
}

static void test_listing(void **state) {
    (void)state;
    imgsim_dataset *ds = NULL;
    assert_int_equal(imgsim_dataset_open(&ds, path_in("ds")), IMGSIM_OK);
    imgsim_dataset_info info;
    assert_int_equal(imgsim_dataset_get_info(ds, &info), IMGSIM_OK);
    assert_string_equal(info.source, path_in("ds"));
    char *want = slurp(path_in("ds.expect"), NULL), *got = listing(ds);
    assert_string_equal(got, want);
    free(want);
    free(got);
    /* every item's path opens the file: the root joined with rel */
    for (size_t i = 0; i < info.n; i++) {
        imgsim_dataset_item it;
        assert_int_equal(imgsim_dataset_get_item(ds, i, &it), IMGSIM_OK);
        struct stat a, b;
        char joined[4700];
        snprintf(joined, sizeof joined, "%s/%s", info.root, it.rel);
        assert_int_equal(stat(it.path, &a), 0);
        assert_int_equal(stat(joined, &b), 0);
        assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    }
    /* the skipped files, with a reason each */
    char *skips = slurp(path_in("ds.skips"), NULL);
    assert_int_equal(info.n_skipped, 2);
    for (size_t i = 0; i < info.n_skipped; i++) {
        imgsim_dataset_skip sk;
        assert_int_equal(imgsim_dataset_get_skipped(ds, i, &sk), IMGSIM_OK);
        const char *base = strrchr(sk.path, '/') ? strrchr(sk.path, '/') + 1 : sk.path;
        if (!strstr(skips, base)) fail_msg("skipped %s, which Python reads as an image", sk.path);
        assert_true(sk.reason && strlen(sk.reason) > 3);
    }
    free(skips);
    imgsim_dataset_item it;
    assert_int_equal(imgsim_dataset_get_item(ds, info.n, &it), IMGSIM_ERR_INVALID_ARG);
    imgsim_dataset_skip sk;
    assert_int_equal(imgsim_dataset_get_skipped(ds, info.n_skipped, &sk), IMGSIM_ERR_INVALID_ARG);
    imgsim_dataset_destroy(ds);
    imgsim_dataset_destroy(NULL);

    ds = NULL;
    assert_int_not_equal(imgsim_dataset_open(&ds, path_in("no-such-folder")), IMGSIM_OK);
    assert_null(ds);
    assert_non_null(strstr(imgsim_last_error(), "no-such-folder"));
}

/* ---- fingerprint -------------------------------------------------------------------------- */

static void fingerprint(char out[65], const char *dir) {
    imgsim_dataset *ds = NULL;
    assert_int_equal(imgsim_dataset_open(&ds, dir), IMGSIM_OK);
    assert_int_equal(imgsim_dataset_fingerprint(out, ds), IMGSIM_OK);
    imgsim_dataset_destroy(ds);
    assert_int_equal(strlen(out), 64);
    assert_int_equal(strspn(out, "0123456789abcdef"), 64);
}

static void test_fingerprint(void **state) {
    (void)state;
    char fp[65], again[65], copy[65], touched[65], restored[65], grown[65];
    fingerprint(fp, path_in("ds"));
    fingerprint(again, path_in("ds"));
    assert_string_equal(fp, again);
    python("copy ds ds-copy"); /* elsewhere, same names, sizes and mtimes */
    fingerprint(copy, path_in("ds-copy"));
    assert_string_equal(fp, copy);
    python("touch ds-copy a/i1.png 2000000000");
    fingerprint(touched, path_in("ds-copy"));
    assert_string_not_equal(fp, touched);
    python("touch ds-copy a/i1.png 0");
    fingerprint(restored, path_in("ds-copy"));
    assert_string_equal(fp, restored);
    python("grow ds-copy b/j2.png");
    fingerprint(grown, path_in("ds-copy"));
    assert_string_not_equal(fp, grown);
}

/* ---- split and lists ---------------------------------------------------------------------- */

/* Test items per label of is_test, as the "label<TAB>count" lines of ref.py counts ("-" for ""). */
static char *split_counts(const imgsim_dataset *ds, const uint8_t *is_test) {
    imgsim_dataset_info info;
    assert_int_equal(imgsim_dataset_get_info(ds, &info), IMGSIM_OK);
    const char *labels[64];
    int counts[64], nl = 0;
    for (size_t i = 0; i < info.n; i++) {
        imgsim_dataset_item it;
        assert_int_equal(imgsim_dataset_get_item(ds, i, &it), IMGSIM_OK);
        const char *l = *it.label ? it.label : "-";
        int k = 0;
        while (k < nl && strcmp(labels[k], l)) k++;
        if (k == nl) labels[nl] = l, counts[nl++] = 0;
        counts[k] += is_test[i];
    }
    for (int a = 0; a < nl; a++) /* sorted by label, as Python's sorted() */
        for (int b = a + 1; b < nl; b++)
            if (strcmp(labels[b], labels[a]) < 0) {
                const char *t = labels[a];
                labels[a] = labels[b], labels[b] = t;
                int c = counts[a];
                counts[a] = counts[b], counts[b] = c;
            }
    char *s = calloc(1, 4096);
    assert_non_null(s);
    size_t off = 0;
    for (int k = 0; k < nl; k++) off += (size_t)snprintf(s + off, 4096 - off, "%s\t%d\n", labels[k], counts[k]);
    return s;
}

/* The rel paths of the test items, one a line, sorted (for comparing two listings). */
static char *test_rels(const imgsim_dataset *ds, const uint8_t *is_test) {
    imgsim_dataset_info info;
    assert_int_equal(imgsim_dataset_get_info(ds, &info), IMGSIM_OK);
    const char *r[64];
    int n = 0;
    for (size_t i = 0; i < info.n; i++) {
        imgsim_dataset_item it;
        assert_int_equal(imgsim_dataset_get_item(ds, i, &it), IMGSIM_OK);
        if (is_test[i]) r[n++] = it.rel;
    }
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++)
            if (strcmp(r[b], r[a]) < 0) {
                const char *t = r[a];
                r[a] = r[b], r[b] = t;
            }
    char *s = calloc(1, 4096);
    assert_non_null(s);
    size_t off = 0;
    for (int k = 0; k < n; k++) off += (size_t)snprintf(s + off, 4096 - off, "%s\n", r[k]);
    return s;
}

static void test_split_and_tsv(void **state) {
    (void)state;
    imgsim_dataset *ds = NULL;
    assert_int_equal(imgsim_dataset_open(&ds, path_in("ds")), IMGSIM_OK);
    imgsim_dataset_info info;
    assert_int_equal(imgsim_dataset_get_info(ds, &info), IMGSIM_OK);
    assert_true(info.n == 10);
    uint8_t is_test[10], other[10];
    python("counts ds 0.5");
    char *want = slurp(path_in("ds.counts"), NULL);
    assert_int_equal(imgsim_dataset_split(is_test, ds, 0.5, 42), IMGSIM_OK);
    char *got = split_counts(ds, is_test);
    assert_string_equal(got, want);
    free(got);
    /* other seeds: the same counts, not always the same items */
    int differs = 0;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        assert_int_equal(imgsim_dataset_split(other, ds, 0.5, seed), IMGSIM_OK);
        got = split_counts(ds, other);
        assert_string_equal(got, want);
        free(got);
        differs += memcmp(other, is_test, sizeof other) != 0;
    }
    assert_true(differs > 0);
    free(want);
    assert_int_equal(imgsim_dataset_split(other, ds, 0.0, 42), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(imgsim_dataset_split(other, ds, 1.0, 42), IMGSIM_ERR_INVALID_ARG);

    /* a list of a few items, in the order given: Python's csv reads those files and labels */
    size_t pick[3] = {4, 0, 7};
    assert_int_equal(imgsim_dataset_write_tsv(ds, pick, 3, path_in("ds/few.tsv")), IMGSIM_OK);
    char args[9200];
    snprintf(args, sizeof args, "readtsv '%s' '%s'", path_in("ds/few.tsv"), path_in("ds"));
    python(args);
    char *seen = slurp(path_in("ds/few.tsv.seen"), NULL), expect[4096];
    size_t off = 0;
    for (int k = 0; k < 3; k++) {
        imgsim_dataset_item it;
        assert_int_equal(imgsim_dataset_get_item(ds, pick[k], &it), IMGSIM_OK);
        off += (size_t)snprintf(expect + off, sizeof expect - off, "%s\t%s\n", it.rel, it.label);
    }
    assert_string_equal(seen, expect);
    free(seen);

    /* all items in reverse order, listed in the dataset's root (so with the same relative paths):
     * the split picks the same files */
    size_t rev[10];
    for (size_t i = 0; i < 10; i++) rev[i] = 9 - i;
    assert_int_equal(imgsim_dataset_write_tsv(ds, rev, 10, path_in("ds/rev.tsv")), IMGSIM_OK);
    imgsim_dataset *rd = NULL;
    assert_int_equal(imgsim_dataset_open(&rd, path_in("ds/rev.tsv")), IMGSIM_OK);
    imgsim_dataset_info ri;
    assert_int_equal(imgsim_dataset_get_info(rd, &ri), IMGSIM_OK);
    assert_true(ri.n == 10 && ri.n_skipped == 0);
    assert_int_equal(imgsim_dataset_split(other, rd, 0.5, 42), IMGSIM_OK);
    char *a = test_rels(ds, is_test), *b = test_rels(rd, other);
    assert_string_equal(a, b);
    free(a);
    free(b);
    imgsim_dataset_destroy(rd);

    assert_int_not_equal(imgsim_dataset_write_tsv(ds, pick, 3, "/proc/no/such/dir/x.tsv"), IMGSIM_OK);
    assert_non_null(strstr(imgsim_last_error(), "/proc/no/such/dir"));
    imgsim_dataset_destroy(ds);
}

/* ---- .npy --------------------------------------------------------------------------------- */

static void npy_equal(const char *name, imgsim_dtype want_dt, int64_t want_r, int64_t want_c) {
    char npy[64], raw[64];
    snprintf(npy, sizeof npy, "npy/%s.npy", name);
    snprintf(raw, sizeof raw, "npy/%s.raw", name);
    void *data = NULL;
    imgsim_dtype dt;
    int64_t r, c;
    if (imgsim_npy_read(&data, &dt, &r, &c, path_in(npy)) != IMGSIM_OK) fail_msg("%s", imgsim_last_error());
    assert_int_equal(dt, want_dt);
    assert_int_equal(r, want_r);
    assert_int_equal(c, want_c);
    size_t len;
    char *bytes = slurp(path_in(raw), &len);
    assert_int_equal(len, (size_t)(r * c) * (dt == IMGSIM_F16 ? 2 : 4));
    assert_memory_equal(data, bytes, len);
    free(bytes);
    imgsim_free(data);
}

static void npy_refused(const char *name, imgsim_status want) {
    char npy[64];
    snprintf(npy, sizeof npy, "npy/%s.npy", name);
    void *data = (void *)1;
    imgsim_dtype dt;
    int64_t r, c;
    imgsim_status st = imgsim_npy_read(&data, &dt, &r, &c, path_in(npy));
    if (st != want) fail_msg("%s: status %d (%s), want %d", npy, st, imgsim_last_error(), want);
    assert_null(data);
    if (!strstr(imgsim_last_error(), npy)) fail_msg("message does not name %s: %s", npy, imgsim_last_error());
}

static void test_npy(void **state) {
    (void)state;
    python("npy npy");
    npy_equal("f32", IMGSIM_F32, 5, 7);
    npy_equal("f16", IMGSIM_F16, 3, 4);
    npy_equal("v1d", IMGSIM_F32, 1, 6);
    npy_equal("v2", IMGSIM_F32, 4, 3);
    npy_refused("f64", IMGSIM_ERR_UNSUPPORTED);
    npy_refused("big", IMGSIM_ERR_UNSUPPORTED);
    npy_refused("fortran", IMGSIM_ERR_UNSUPPORTED);
    npy_refused("rank3", IMGSIM_ERR_UNSUPPORTED);
    npy_refused("trunc", IMGSIM_ERR_FORMAT);
    npy_refused("text", IMGSIM_ERR_FORMAT);
    npy_refused("missing", IMGSIM_ERR_IO);

    float x[24];
    for (int i = 0; i < 24; i++) x[i] = (float)i / 4 - 2;
    int64_t shape[3] = {2, 3, 4};
    assert_int_equal(imgsim_npy_write_f32(path_in("npy/out.npy"), x, shape, 3), IMGSIM_OK);
    char args[4700];
    snprintf(args, sizeof args, "npycheck '%s'", path_in("npy/out.npy"));
    python(args);
    assert_int_equal(imgsim_npy_write_f32(path_in("npy/out.npy"), NULL, shape, 3), IMGSIM_ERR_INVALID_ARG);
    assert_int_not_equal(imgsim_npy_write_f32("/proc/no/such/dir/out.npy", x, shape, 3), IMGSIM_OK);
    assert_non_null(strstr(imgsim_last_error(), "/proc/no/such/dir/out.npy"));
}

/* ---- a store's dataset root ---------------------------------------------------------------- */

static void root_is(const char *store, const char *want) {
    char *root = (char *)1;
    if (imgsim_store_dataset_root(&root, path_in(store)) != IMGSIM_OK) fail_msg("%s: %s", store, imgsim_last_error());
    if (!want) {
        assert_null(root);
        return;
    }
    assert_non_null(root);
    if (strcmp(root, want)) fail_msg("%s: root %s, want %s", store, root, want);
    imgsim_free(root);
}

static void test_store_root(void **state) {
    (void)state;
    python("metas roots");
    char ds[4700], odd[4700];
    snprintf(ds, sizeof ds, "%s", path_in("ds"));
    snprintf(odd, sizeof odd, "%s", path_in("ds-\xff"));
    root_is("roots/s1", ds);  /* a folder */
    root_is("roots/s2", ds);  /* a list: its folder */
    root_is("roots/s3", "."); /* a bare list name */
    root_is("roots/s4", "/");
    root_is("roots/s5", NULL); /* no input recorded */
    root_is("roots/s8", odd);  /* \udcff in meta.json is the byte 0xff of the name */
    char *root = (char *)1;
    assert_int_equal(imgsim_store_dataset_root(&root, path_in("roots/s6")), IMGSIM_ERR_IO);
    assert_null(root);
    assert_non_null(strstr(imgsim_last_error(), "roots/s6/meta.json"));
    assert_int_equal(imgsim_store_dataset_root(&root, path_in("roots/s7")), IMGSIM_ERR_FORMAT);
    assert_null(root);
    assert_non_null(strstr(imgsim_last_error(), "roots/s7/meta.json"));
}

/* ---- folder locks ------------------------------------------------------------------------- */

/* In a child process: takes the lock on dir; exits 0 when the outcome is the wanted one (want_ok:
 * taken; else IMGSIM_ERR_IO with a message naming dir and "pid HOLDER"). Returns the child's
 * exit status. */
static int child_take(const char *dir, int want_ok, long holder) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        imgsim_dir_lock *l = NULL;
        imgsim_status st = imgsim_dir_lock_take(&l, dir);
        int ok;
        if (want_ok) {
            ok = st == IMGSIM_OK && l;
        } else {
            char pidtxt[32];
            snprintf(pidtxt, sizeof pidtxt, "pid %ld", holder);
            ok = st == IMGSIM_ERR_IO && !l && strstr(imgsim_last_error(), dir) &&
                 strstr(imgsim_last_error(), pidtxt);
        }
        if (!ok) fprintf(stderr, "child: status %d, message: %s\n", st, imgsim_last_error());
        imgsim_dir_lock_release(l);
        _exit(ok ? 0 : 1);
    }
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 100;
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static void test_dir_lock(void **state) {
    (void)state;
    const char *dir = path_in("locked/out"); /* created by the take, parents too */
    imgsim_dir_lock *l = NULL;
    assert_int_equal(imgsim_dir_lock_take(&l, dir), IMGSIM_OK);
    assert_non_null(l);
    assert_int_equal(child_take(dir, 0, (long)getpid()), 0);
    assert_int_equal(child_take(dir, 0, (long)getpid()), 0); /* still refused: nothing left behind */
    imgsim_dir_lock_release(l);
    imgsim_dir_lock_release(NULL);
    assert_int_equal(child_take(dir, 1, 0), 0); /* free again (and the child's lock went with it) */

    /* leftovers of a killed writer go when the lock is taken; other names stay */
    char p[5][4700];
    const char *names[5] = {"features.npy.tmp.4242", "manifest.tsv.tmp.7", "keep.tmp.x", "keep.tmp.", "keep.tsv"};
    for (int i = 0; i < 5; i++) {
        snprintf(p[i], sizeof p[i], "%s/%s", dir, names[i]);
        touch(p[i]);
    }
    char sub[4700];
    snprintf(sub, sizeof sub, "%s/sub.tmp.9", dir);
    mkdir(sub, 0777);
    assert_int_equal(imgsim_dir_lock_take(&l, dir), IMGSIM_OK);
    assert_false(exists(p[0]));
    assert_false(exists(p[1]));
    for (int i = 2; i < 5; i++)
        if (!exists(p[i])) fail_msg("%s was removed", p[i]);
    assert_true(exists(sub));
    imgsim_dir_lock_release(l);

    l = (imgsim_dir_lock *)1;
    assert_int_not_equal(imgsim_dir_lock_take(&l, "/proc/no/such/dir"), IMGSIM_OK);
    assert_null(l);
    if (!strstr(imgsim_last_error(), "/proc/no")) fail_msg("message: %s", imgsim_last_error());
}

int main(int argc, char **argv) {
    const char *base = getenv("IMGSIM_TEST_DIR");
    g_python = getenv("IMGSIM_PYTHON");
    if (!g_python || !*g_python) g_python = "/usr/bin/python3";
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0]; /* test and _asan apart */
    snprintf(g_dir, sizeof g_dir, "%s/%s", base && *base ? base : "/tmp", name);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    if (system(cmd) != 0) return 1;
    FILE *f = fopen(path_in("ref.py"), "w");
    if (!f || fputs(k_ref_py, f) < 0 || fclose(f)) return 1;
    (void)argc;
    imgsim_set_log_level(IMGSIM_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listing),     cmocka_unit_test(test_fingerprint), cmocka_unit_test(test_split_and_tsv),
        cmocka_unit_test(test_npy),         cmocka_unit_test(test_store_root),  cmocka_unit_test(test_dir_lock),
    };
    return cmocka_run_group_tests(tests, setup_tree, NULL);
}
