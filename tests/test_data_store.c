/*
 * test_data_store.c: reading feature stores (src/data/store.c). The .npy files are written byte
 * by byte here (format spec v1.0), independent of core's writer. A good store in float32 and in
 * float16 is read back exactly; each malformed variant (manifest, features, meta) fails with a
 * message naming the file at fault; allocation failures at every step fail cleanly (run under
 * ASan too).
 */
#define _XOPEN_SOURCE 700
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "data/store.h"

static char g_dir[4096];

/* Writes a file (test helper; asserts on failure). */
static void write_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[4600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text) {
    write_file(dir, name, text, strlen(text));
}

/* A .npy v1.0 file: magic, header length, the dict padded with spaces to a multiple of 64. */
static void write_npy(const char *dir, const char *descr, int64_t rows, int64_t cols, const void *data,
                      size_t elem) {
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
                     descr, (long long)rows, (long long)cols);
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    size_t dbytes = (size_t)(rows * cols) * elem;
    uint8_t *buf = malloc(10 + hlen + dbytes);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hlen & 0xFF);
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    memcpy(buf + 10 + hlen, data, dbytes);
    write_file(dir, "features.npy", buf, 10 + hlen + dbytes);
    free(buf);
}

static const float k_feat[3 * 4] = {1, 2, 3, 4, -1, 0.5f, 0.25f, 8, 100, -7, 0, 1.5f};

static const char k_manifest[] = "row\tpath\tlabel\tstatus\terror\n"
                                 "1\timgs/b.jpg\tdog\tok\t\n"
                                 "-1\timgs/bad.jpg\tdog\tfailed\timgs/bad.jpg: truncated JPEG\n"
                                 "0\timgs/a.jpg\tcat\tok\t\n"
                                 "2\timgs/c.png\t\tok\t\n";

static const char k_meta[] =
    "{\"dim\": 4, \"rows\": 3, \"dtype\": \"float32\", \"model_sha256\": \"abc123\", "
    "\"layer\": \"flatten\"}";

/* Makes a fresh store folder named name holding the good files; returns its path (static). */
static const char *good_store(const char *name) {
    static char dir[4600];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    assert_int_equal(ims_mkdir_p(dir, NULL), IMGSIM_OK);
    write_npy(dir, "<f4", 3, 4, k_feat, 4);
    write_text(dir, "manifest.tsv", k_manifest);
    write_text(dir, "meta.json", k_meta);
    return dir;
}

static void test_good_f32(void **state) {
    (void)state;
    ims_store *s = NULL;
    ims_err e;
    ims_err_clear(&e);
    assert_int_equal(ims_store_open(&s, good_store("good32"), &e), IMGSIM_OK);
    assert_int_equal(s->n, 3);
    assert_int_equal(s->dim, 4);
    assert_int_equal(s->dtype, IMGSIM_F32);
    assert_int_equal(s->n_failed, 1);
    assert_string_equal(s->paths[0], "imgs/a.jpg");
    assert_string_equal(s->labels[0], "cat");
    assert_string_equal(s->paths[1], "imgs/b.jpg");
    assert_string_equal(s->labels[1], "dog");
    assert_string_equal(s->paths[2], "imgs/c.png");
    assert_string_equal(s->labels[2], "");
    assert_string_equal(ims_store_meta_str(s, "model_sha256"), "abc123");
    assert_null(ims_store_meta_str(s, "absent"));
    assert_null(ims_store_meta_str(s, "dim")); /* a number, not a string */
    assert_true(ims_store_meta_num(s, "dim", -1) == 4.0);
    assert_true(ims_store_meta_num(s, "absent", -1) == -1.0);
    float *f = ims_store_features_f32(s);
    assert_non_null(f);
    assert_memory_equal(f, k_feat, sizeof k_feat);
    free(f);
    ims_store_free(s);
    ims_store_free(NULL);
}

static void test_good_f16(void **state) {
    (void)state;
    const char *dir = good_store("good16");
    /* binary16 encodings of k_feat (all exactly representable) */
    static const uint16_t h[12] = {0x3C00, 0x4000, 0x4200, 0x4400, 0xBC00, 0x3800,
                                   0x3400, 0x4800, 0x5640, 0xC700, 0x0000, 0x3E00};
    write_npy(dir, "<f2", 3, 4, h, 2);
    write_text(dir, "meta.json", "{\"dim\": 4, \"dtype\": \"float16\"}");
    ims_store *s = NULL;
    assert_int_equal(ims_store_open(&s, dir, NULL), IMGSIM_OK);
    assert_int_equal(s->dtype, IMGSIM_F16);
    float *f = ims_store_features_f32(s);
    assert_non_null(f);
    for (int i = 0; i < 12; i++)
        assert_true(f[i] == k_feat[i]);
    free(f);
    ims_store_free(s);
}

/* Opens dir expecting failure with status st and a message containing each of the needles. */
static void expect_fail(const char *dir, imgsim_status st, const char *needle1, const char *needle2) {
    ims_store *s = (ims_store *)1;
    ims_err e;
    ims_err_clear(&e);
    imgsim_status got = ims_store_open(&s, dir, &e);
    if (got == IMGSIM_OK || !strstr(e.msg, needle1) || (needle2 && !strstr(e.msg, needle2)) ||
        (st != IMGSIM_OK && got != st))
        fail_msg("%s: status %d (want %d), message '%s' should contain '%s'%s%s", dir, got, st, e.msg,
                 needle1, needle2 ? " and " : "", needle2 ? needle2 : "");
    assert_null(s);
}

static void test_manifest_errors(void **state) {
    (void)state;
    static const struct {
        const char *body;
        imgsim_status st;
        const char *needle;
    } cases[] = {
        {"path\tlabel\n0\ta\tb\tok\t\n", IMGSIM_ERR_FORMAT, "manifest.tsv:1:"},
        {"row\tpath\tlabel\tstatus\terror\n0\ta\tcat\tok\t\n1\tb\tdog\tok\n2\tc\t\tok\t\n", IMGSIM_ERR_FORMAT,
         "manifest.tsv:3: expected 5"},
        {"row\tpath\tlabel\tstatus\terror\n0\ta\tcat\tok\t\t\n", IMGSIM_ERR_FORMAT,
         "manifest.tsv:2: expected 5"},
        {"row\tpath\tlabel\tstatus\terror\n0\ta\tcat\tok\t\nx1\tb\tdog\tok\t\n", IMGSIM_ERR_FORMAT,
         "manifest.tsv:3: row 'x1'"},
        {"row\tpath\tlabel\tstatus\terror\n0\ta\tcat\tok\t\n-2\tb\tdog\tok\t\n", IMGSIM_ERR_FORMAT,
         "manifest.tsv:3: row '-2'"},
        {"row\tpath\tlabel\tstatus\terror\n0\ta\tcat\tok\t\n0\tb\tdog\tok\t\n", IMGSIM_ERR_FORMAT,
         "manifest.tsv:3: row 0 appears twice"},
        {"row\tpath\tlabel\tstatus\terror\n0\ta\tcat\tok\t\n3\tb\tdog\tok\t\n", IMGSIM_ERR_MISMATCH,
         "manifest.tsv:3: row 3 is beyond"},
        {"row\tpath\tlabel\tstatus\terror\n0\ta\tcat\tok\t\n2\tc\tdog\tok\t\n", IMGSIM_ERR_MISMATCH,
         "row 1 is missing"},
        {"", IMGSIM_ERR_FORMAT, "manifest.tsv: empty"},
        {"row\tpath\tlabel\tstatus\terror\n0\ta\0b\tcat\tok\t\n", IMGSIM_ERR_FORMAT, "NUL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "man%zu", i);
        const char *dir = good_store(name);
        size_t len = strlen(cases[i].body);
        if (strstr(cases[i].needle, "NUL"))
            len = sizeof "row\tpath\tlabel\tstatus\terror\n0\ta\0b\tcat\tok\t\n" - 1;
        write_file(dir, "manifest.tsv", cases[i].body, len);
        expect_fail(dir, cases[i].st, cases[i].needle, NULL);
    }
    char path[4700];
    const char *dir = good_store("man_missing");
    snprintf(path, sizeof path, "%s/manifest.tsv", dir);
    unlink(path);
    expect_fail(dir, IMGSIM_ERR_IO, "manifest.tsv", NULL);
}

static void test_features_errors(void **state) {
    (void)state;
    char path[4700];
    const char *dir = good_store("npy_missing");
    snprintf(path, sizeof path, "%s/features.npy", dir);
    unlink(path);
    expect_fail(dir, IMGSIM_OK, "features.npy", NULL);

    dir = good_store("npy_magic");
    write_text(dir, "features.npy", "NOTNUMPY at all, just text that is long enough to be read");
    expect_fail(dir, IMGSIM_OK, "features.npy", NULL);

    dir = good_store("npy_trunc");
    write_npy(dir, "<f4", 3, 4, k_feat, 4);
    snprintf(path, sizeof path, "%s/features.npy", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size - 8), 0); /* header intact, data 2 floats short */
    expect_fail(dir, IMGSIM_OK, "features.npy", NULL);

    dir = good_store("npy_f8");
    static const double d8[12] = {0};
    write_npy(dir, "<f8", 3, 4, d8, 8);
    expect_fail(dir, IMGSIM_OK, "features.npy", NULL);

    /* features with 2 rows, manifest with 3: the manifest line for row 2 is beyond */
    dir = good_store("npy_rows");
    write_npy(dir, "<f4", 2, 4, k_feat, 4);
    write_text(dir, "meta.json", "{}");
    expect_fail(dir, IMGSIM_ERR_MISMATCH, "manifest.tsv", "row 2 is beyond");
}

static void test_meta_errors(void **state) {
    (void)state;
    static const struct {
        const char *body;
        imgsim_status st;
        const char *needle;
    } cases[] = {
        {"{\"dim\": 4,", IMGSIM_ERR_FORMAT, "not valid JSON"},
        {"[1, 2]", IMGSIM_ERR_FORMAT, "expected a JSON object"},
        {"{\"dim\": 5}", IMGSIM_ERR_MISMATCH, "\"dim\""},
        {"{\"dim\": \"4\"}", IMGSIM_ERR_MISMATCH, "\"dim\""},
        {"{\"rows\": 4}", IMGSIM_ERR_MISMATCH, "\"rows\""},
        {"{\"dtype\": \"float16\"}", IMGSIM_ERR_MISMATCH, "\"dtype\""},
        {"", IMGSIM_ERR_FORMAT, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "meta%zu", i);
        const char *dir = good_store(name);
        write_text(dir, "meta.json", cases[i].body);
        expect_fail(dir, cases[i].st, "meta.json", cases[i].needle);
    }
    char path[4700];
    const char *dir = good_store("meta_missing");
    snprintf(path, sizeof path, "%s/meta.json", dir);
    unlink(path);
    expect_fail(dir, IMGSIM_ERR_IO, "meta.json", NULL);

    snprintf(path, sizeof path, "%s/no_such_store", g_dir);
    expect_fail(path, IMGSIM_OK, "no_such_store", NULL);
}

/* Every allocation on the way can fail: the call then fails cleanly (no leak, no crash). */
static void test_alloc_failures(void **state) {
    (void)state;
    const char *dir = good_store("alloc");
    int ok_seen = 0;
    for (long n = 0; n < 200 && !ok_seen; n++) {
        ims_store *s = NULL;
        ims_alloc_fail_after(n);
        imgsim_status st = ims_store_open(&s, dir, NULL);
        ims_alloc_fail_after(-1);
        if (st == IMGSIM_OK) {
            assert_non_null(s);
            ok_seen = 1;
        } else {
            assert_null(s);
        }
        ims_store_free(s);
    }
    assert_true(ok_seen);
}

int main(void) {
    const char *base = getenv("IMGSIM_TEST_DIR");
    snprintf(g_dir, sizeof g_dir, "%s/test_data_store", base && *base ? base : "/tmp");
    if (ims_mkdir_p(g_dir, NULL) != IMGSIM_OK) {
        fprintf(stderr, "cannot create %s\n", g_dir);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_f32),        cmocka_unit_test(test_good_f16),
        cmocka_unit_test(test_manifest_errors), cmocka_unit_test(test_features_errors),
        cmocka_unit_test(test_meta_errors),     cmocka_unit_test(test_alloc_failures),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    return rc;
}
