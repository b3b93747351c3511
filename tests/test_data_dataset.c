/*
 * test_data_dataset.c: dataset listing and the split at the C level (src/data/dataset.c,
 * src/data/split.c), complementing the CLI-driven Python tests:
 *  - the split depends on the set of (rel, label), not on item order (items permuted in memory);
 *  - the sampler is unbiased: over many seeds each item of a class is drawn about equally often;
 *  - out-of-range test sizes are refused;
 *  - a written TSV reads back to the same files, with paths relative to the TSV's folder when it
 *    lies inside the dataset and absolute otherwise, and writing back what was read gives the same
 *    file (a fixed point, also for paths through a regular file);
 *  - every allocation failure in listing (folder and TSV), writing and splitting fails cleanly
 *    (no crash, no leak under ASan).
 */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "data/dataset.h"

static char g_dir[4096];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* rm -rf of the scratch folder, so every run starts clean */
static void rm_rf(const char *path) {
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A small folder: 2 classes (one nested), a root-level image, a non-image. Only magic bytes
 * matter for listing. */
static const char *make_folder(void) {
    static char root[4200];
    snprintf(root, sizeof root, "%s/ds", g_dir);
    char p[4400];
    snprintf(p, sizeof p, "%s/b/sub", root);
    assert_int_equal(ims_mkdir_p(p, NULL), IMGSIM_OK);
    snprintf(p, sizeof p, "%s/a", root);
    assert_int_equal(ims_mkdir_p(p, NULL), IMGSIM_OK);
    static const uint8_t jpg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'};
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13};
    static const uint8_t webp[] = {'R', 'I', 'F', 'F', 30, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'L'};
    const char *files[] = {"a/1.jpg", "a/2.png", "a/3.webp", "b/x.jpg", "b/sub/y.jpg", "top.jpg"};
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%s", root, files[i]);
        if (i % 3 == 0) write_bytes(p, jpg, sizeof jpg);
        if (i % 3 == 1) write_bytes(p, png, sizeof png);
        if (i % 3 == 2) write_bytes(p, webp, sizeof webp);
    }
    snprintf(p, sizeof p, "%s/a/notes.jpg", root);
    write_bytes(p, "hello", 5);
    return root;
}

static void test_folder_listing(void **state) {
    (void)state;
    const char *root = make_folder();
    ims_dataset *d = NULL;
    assert_int_equal(ims_dataset_open(&d, root, NULL), IMGSIM_OK);
    static const char *rel[] = {"a/1.jpg", "a/2.png", "a/3.webp", "b/sub/y.jpg", "b/x.jpg", "top.jpg"};
    static const char *lab[] = {"a", "a", "a", "b", "b", ""};
    assert_int_equal(d->n, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(d->items[i].rel, rel[i]);
        assert_string_equal(d->items[i].label, lab[i]);
        char want[4400];
        snprintf(want, sizeof want, "%s/%s", root, rel[i]);
        assert_string_equal(d->items[i].path, want);
    }
    assert_int_equal(d->n_skipped, 1);
    assert_non_null(strstr(d->skipped[0].path, "notes.jpg"));
    assert_string_equal(d->skipped[0].reason, "not an image (unrecognised content)");
    ims_dataset_free(d);
    ims_dataset_free(NULL);
}

/* An in-memory dataset of n items over n_cls classes, item i = "c<k>/img<i>". */
static ims_dataset *fake_dataset(size_t n, int n_cls) {
    ims_dataset *d = calloc(1, sizeof *d);
    d->items = calloc(n, sizeof(ims_item));
    d->n = n;
    d->root = strdup("/nowhere");
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        int k = (int)((i * 7919u) % (size_t)n_cls);
        snprintf(buf, sizeof buf, "c%d", k);
        d->items[i].label = strdup(buf);
        snprintf(buf, sizeof buf, "c%d/img%05zu.jpg", k, i);
        d->items[i].rel = strdup(buf);
        d->items[i].path = strdup(buf);
    }
    return d;
}

static void test_split_order_independent(void **state) {
    (void)state;
    size_t n = 997;
    ims_dataset *d = fake_dataset(n, 7);
    uint8_t *t1 = malloc(n), *t2 = malloc(n);
    assert_int_equal(ims_split(t1, d, 0.3, 1234, NULL), IMGSIM_OK);
    /* permute the items (a seeded Fisher-Yates with rand_r, unrelated to the split's PRNG) */
    size_t *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    unsigned rs = 99;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand_r(&rs) % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    ims_item *orig = d->items, *shuffled = malloc(n * sizeof(ims_item));
    for (size_t i = 0; i < n; i++)
        shuffled[i] = orig[perm[i]];
    d->items = shuffled;
    assert_int_equal(ims_split(t2, d, 0.3, 1234, NULL), IMGSIM_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(t2[i], t1[perm[i]]);
    d->items = orig;
    /* a different seed changes the choice but not the per-class counts */
    assert_int_equal(ims_split(t2, d, 0.3, 1235, NULL), IMGSIM_OK);
    size_t same = 0, c1 = 0, c2 = 0;
    for (size_t i = 0; i < n; i++) {
        same += t1[i] == t2[i];
        c1 += t1[i];
        c2 += t2[i];
    }
    assert_true(same < n);
    assert_int_equal(c1, c2);
    free(shuffled);
    free(perm);
    free(t1);
    free(t2);
    ims_dataset_free(d);
}

static void test_split_unbiased(void **state) {
    (void)state;
    /* one class of 10: n_test = 3 (round(0.3 * 10)); over 3000 seeds each item is drawn ~900 times
     * (binomial sd ~25); anything outside +-125 (5 sd) means a biased sampler */
    ims_dataset *d = fake_dataset(10, 1);
    uint8_t t[10];
    int hits[10] = {0};
    for (uint64_t seed = 0; seed < 3000; seed++) {
        assert_int_equal(ims_split(t, d, 0.3, seed, NULL), IMGSIM_OK);
        int c = 0;
        for (int i = 0; i < 10; i++) {
            hits[i] += t[i];
            c += t[i];
        }
        assert_int_equal(c, 3);
    }
    for (int i = 0; i < 10; i++)
        if (hits[i] < 775 || hits[i] > 1025)
            fail_msg("item %d drawn %d times of 3000 (expected ~900)", i, hits[i]);
    ims_dataset_free(d);
}

static void test_split_bad_sizes(void **state) {
    (void)state;
    ims_dataset *d = fake_dataset(10, 2);
    uint8_t t[10];
    ims_err e;
    assert_int_equal(ims_split(t, d, 0.0, 1, &e), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(ims_split(t, d, 1.0, 1, &e), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(ims_split(t, d, -0.5, 1, &e), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(ims_split(t, d, NAN, 1, &e), IMGSIM_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "test size"));
    /* 0.99 of a class of 5 would be 5: clamped to 4, one stays in train */
    assert_int_equal(ims_split(t, d, 0.99, 1, &e), IMGSIM_OK);
    int c = 0;
    for (int i = 0; i < 10; i++)
        c += t[i];
    assert_int_equal(c, 8);
    ims_dataset_free(d);
}

static void test_write_tsv_roundtrip(void **state) {
    (void)state;
    const char *root = make_folder();
    ims_dataset *d = NULL;
    assert_int_equal(ims_dataset_open(&d, root, NULL), IMGSIM_OK);
    size_t idx[6] = {5, 0, 1, 2, 3, 4};
    char inside[4400], outside[4400];
    snprintf(inside, sizeof inside, "%s/a/in.tsv", root);     /* inside class folder "a" */
    snprintf(outside, sizeof outside, "%s/elsewhere", g_dir); /* a sibling of the dataset */
    assert_int_equal(ims_mkdir_p(outside, NULL), IMGSIM_OK);
    strcat(outside, "/out.tsv");
    const char *lists[2] = {inside, outside};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ims_dataset_write_tsv(d, idx, 6, lists[k], NULL), IMGSIM_OK);
        ims_dataset *r = NULL;
        assert_int_equal(ims_dataset_open(&r, lists[k], NULL), IMGSIM_OK);
        assert_int_equal(r->n, 6);
        for (int i = 0; i < 6; i++) {
            const ims_item *a = &d->items[idx[i]], *b = &r->items[i];
            assert_string_equal(a->label, b->label);
            char *ra = realpath(a->path, NULL), *rb = realpath(b->path, NULL);
            assert_non_null(ra);
            assert_non_null(rb);
            assert_string_equal(ra, rb);
            free(ra);
            free(rb);
            if (k == 0 && strncmp(a->rel, "a/", 2) == 0)
                assert_string_equal(b->rel, a->rel + 2); /* under the TSV's folder: relative */
            else
                assert_true(b->rel[0] == '/'); /* elsewhere: absolute */
        }
        ims_dataset_free(r);
    }
    unlink(inside);
    /* a TSV at the dataset root holds the dataset-relative paths */
    char atroot[4400];
    snprintf(atroot, sizeof atroot, "%s/split.tsv", root);
    assert_int_equal(ims_dataset_write_tsv(d, idx, 6, atroot, NULL), IMGSIM_OK);
    ims_dataset *r = NULL;
    assert_int_equal(ims_dataset_open(&r, atroot, NULL), IMGSIM_OK);
    for (int i = 0; i < 6; i++)
        assert_string_equal(r->items[i].rel, d->items[idx[i]].rel);
    ims_dataset_free(r);
    unlink(atroot);
    ims_dataset_free(d);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *b = calloc(1, 1 << 16);
    assert_non_null(b);
    *n = fread(b, 1, (1 << 16) - 1, f);
    fclose(f);
    return b;
}

/* Writing back a list that was read is a fixed point, also for paths that run through a regular
 * file (never openable, but a list may name them): spelled with ".." and repeated slashes, such a
 * path was first written lexically, then resolved through the file on the second write (found by
 * fuzz_tsv). */
static void test_write_tsv_fixed_point(void **state) {
    (void)state;
    char list[4400], w1[4400], w2[4400], sub[4400];
    snprintf(list, sizeof list, "%s/fp.tsv", g_dir);
    snprintf(sub, sizeof sub, "%s/fpsub", g_dir);
    assert_int_equal(ims_mkdir_p(sub, NULL), IMGSIM_OK);
    snprintf(w1, sizeof w1, "%s/w1.tsv", sub);
    snprintf(w2, sizeof w2, "%s/w2.tsv", sub);
    char text[9000];
    snprintf(text, sizeof text, "path\tlabel\n/..%s///x.jpg\ta\nfp.tsv//y.jpg\tb\nfp.tsv/../z.jpg\tc\n", list);
    write_bytes(list, text, strlen(text));
    ims_dataset *d = NULL, *d1 = NULL;
    assert_int_equal(ims_dataset_open(&d, list, NULL), IMGSIM_OK);
    assert_int_equal(d->n, 3);
    size_t idx[3] = {0, 1, 2};
    assert_int_equal(ims_dataset_write_tsv(d, idx, 3, w1, NULL), IMGSIM_OK);
    assert_int_equal(ims_dataset_open(&d1, w1, NULL), IMGSIM_OK);
    assert_int_equal(d1->n, 3);
    assert_int_equal(ims_dataset_write_tsv(d1, idx, 3, w2, NULL), IMGSIM_OK);
    size_t n1 = 0, n2 = 0;
    char *b1 = slurp(w1, &n1), *b2 = slurp(w2, &n2);
    assert_string_equal(b1, b2);
    free(b1);
    free(b2);
    ims_dataset_free(d1);
    ims_dataset_free(d);
    unlink(w1);
    unlink(w2);
    unlink(list);
}

static void test_tsv_errors(void **state) {
    (void)state;
    char p[4400];
    snprintf(p, sizeof p, "%s/bad.tsv", g_dir);
    static const struct {
        const char *body;
        const char *needle;
    } cases[] = {
        {"path\tlabel\nx.jpg\ta\tb\n", "bad.tsv:2: expected 2"},
        {"path\tlabel\r\nx.jpg\ta\r\n\r\n\tb\r\n", "bad.tsv:4: empty path"},
        {"path\tlabel\nx.jpg\ta\0b\n", "NUL"},
        {"path,label\nx.jpg,a\n", "not a TSV list"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].body);
        if (!strcmp(cases[i].needle, "NUL")) len = sizeof "path\tlabel\nx.jpg\ta\0b\n" - 1;
        write_bytes(p, cases[i].body, len);
        ims_dataset *d = (ims_dataset *)1;
        ims_err e;
        ims_err_clear(&e);
        assert_int_not_equal(ims_dataset_open(&d, p, &e), IMGSIM_OK);
        assert_null(d);
        if (!strstr(e.msg, cases[i].needle)) fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, cases[i].needle);
    }
    /* a CRLF list with a UTF-8 byte-order mark (as spreadsheets save it): labels without the CR */
    static const char crlf[] = "\xEF\xBB\xBFpath\tlabel\r\nx.jpg\tcat\r\n/abs/y.png\r\n";
    write_bytes(p, crlf, strlen(crlf));
    ims_dataset *d = NULL;
    assert_int_equal(ims_dataset_open(&d, p, NULL), IMGSIM_OK);
    assert_int_equal(d->n, 2);
    assert_string_equal(d->items[0].label, "cat");
    assert_string_equal(d->items[0].rel, "x.jpg");
    assert_string_equal(d->items[1].path, "/abs/y.png");
    assert_string_equal(d->items[1].label, "");
    ims_dataset_free(d);
}

/* Fault injection: the n-th allocation (and all after it) fails, for every n until success. */
static void test_alloc_failures(void **state) {
    (void)state;
    const char *root = make_folder();
    char tsv[4400], out[4400];
    snprintf(tsv, sizeof tsv, "%s/list.tsv", g_dir);
    write_bytes(tsv, "path\tlabel\nds/a/1.jpg\ta\nds/top.jpg\n",
                strlen("path\tlabel\nds/a/1.jpg\ta\nds/top.jpg\n"));
    snprintf(out, sizeof out, "%s/fault.tsv", g_dir);
    const char *inputs[2] = {root, tsv};
    for (int k = 0; k < 2; k++) {
        int ok = 0;
        for (long n = 0; n < 500 && !ok; n++) {
            ims_dataset *d = NULL;
            ims_alloc_fail_after(n);
            imgsim_status st = ims_dataset_open(&d, inputs[k], NULL);
            if (st == IMGSIM_OK) {
                uint8_t t[16];
                size_t idx[16];
                st = ims_split(t, d, 0.5, 7, NULL);
                for (size_t i = 0; i < d->n; i++)
                    idx[i] = i;
                if (st == IMGSIM_OK) st = ims_dataset_write_tsv(d, idx, d->n, out, NULL);
                ok = st == IMGSIM_OK;
            } else {
                assert_null(d);
            }
            ims_alloc_fail_after(-1);
            ims_dataset_free(d);
        }
        assert_true(ok);
    }
}

int main(void) {
    const char *base = getenv("IMGSIM_TEST_DIR");
    snprintf(g_dir, sizeof g_dir, "%s/test_data_dataset", base && *base ? base : "/tmp");
    rm_rf(g_dir);
    if (ims_mkdir_p(g_dir, NULL) != IMGSIM_OK) {
        fprintf(stderr, "cannot create %s\n", g_dir);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folder_listing),      cmocka_unit_test(test_split_order_independent),
        cmocka_unit_test(test_split_unbiased),      cmocka_unit_test(test_split_bad_sizes),
        cmocka_unit_test(test_write_tsv_roundtrip), cmocka_unit_test(test_write_tsv_fixed_point),
        cmocka_unit_test(test_tsv_errors),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
