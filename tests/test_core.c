/* test_core.c: core helpers: thread pool, .npy round trips and float16 conversion, SHA-256 against
 * the FIPS 180-2 example vectors, atomic files, allocation fault injection, error messages, the
 * tuning knobs and the cache folder from the environment. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"

static void add_fn(void *ctx, int64_t i, int worker) {
    int64_t *slots = ctx;
    __atomic_fetch_add(&slots[i], i + 1, __ATOMIC_RELAXED);
    (void)worker;
}

static void test_pool(void **state) {
    ims_pool *p;
    assert_int_equal(ims_pool_create(&p, 4, NULL), IMGSIM_OK);
    assert_int_equal(ims_pool_size(p), 4);
    for (int round = 0; round < 50; round++) {
        int64_t n = 1 + round * 37;
        int64_t *slots = calloc((size_t)n, sizeof *slots);
        ims_pool_for(p, n, add_fn, slots);
        for (int64_t i = 0; i < n; i++) assert_int_equal(slots[i], i + 1); /* each index exactly once */
        free(slots);
    }
    ims_pool_destroy(p);
    ims_pool_destroy(NULL);
}

static char *tmpfile_path(const char *name) {
    const char *d = getenv("IMGSIM_TEST_DIR");
    static char buf[4096];
    if (!d) d = "/tmp";
    ims_mkdir_p(d, NULL);
    /* per process: the plain and sanitizer builds of this test run in parallel */
    snprintf(buf, sizeof buf, "%s/%ld_%s", d, (long)getpid(), name);
    return buf;
}

static void test_f16(void **state) {
    /* every finite half converts to float and back unchanged */
    for (uint32_t h = 0; h < 65536; h++) {
        if (((h >> 10) & 0x1f) == 0x1f) continue;
        assert_int_equal(ims_f32_to_f16(ims_f16_to_f32((uint16_t)h)), h);
    }
    /* rounding: halfway cases go to even, overflow to inf */
    assert_int_equal(ims_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);          /* tie -> even (1.0) */
    assert_int_equal(ims_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);          /* tie -> even (up) */
    assert_int_equal(ims_f32_to_f16(65520.0f), 0x7c00);                    /* rounds to inf */
    assert_true(fabsf(ims_f16_to_f32(ims_f32_to_f16(0.1f)) - 0.1f) < 1e-4f);
}

static void test_npy_roundtrip(void **state) {
    const char *path = tmpfile_path("core_rt.npy");
    for (int dt = 0; dt < 2; dt++) {
        ims_npy_writer w;
        assert_int_equal(ims_npy_begin(&w, path, (imgsim_dtype)dt, 5, NULL), IMGSIM_OK);
        float rows[15];
        for (int i = 0; i < 15; i++) rows[i] = (float)i * 0.25f - 1.0f;
        assert_int_equal(ims_npy_append_f32(&w, rows, 2, NULL), IMGSIM_OK);
        assert_int_equal(ims_npy_append_f32(&w, rows + 10, 1, NULL), IMGSIM_OK);
        assert_false(ims_path_exists(path) && dt == 0 && 0);
        assert_int_equal(ims_npy_finish(&w, NULL), IMGSIM_OK);
        void *data;
        imgsim_dtype got;
        int64_t r, c;
        assert_int_equal(ims_npy_read(&data, &got, &r, &c, path, NULL), IMGSIM_OK);
        assert_int_equal(got, dt);
        assert_int_equal(r, 3);
        assert_int_equal(c, 5);
        for (int i = 0; i < 15; i++) {
            float want = rows[i < 10 ? i : i];
            float v = dt == IMGSIM_F32 ? ((float *)data)[i] : ims_f16_to_f32(((uint16_t *)data)[i]);
            assert_true(v == want); /* all values exactly representable */
        }
        free(data);
    }
}

static void test_npy_bad(void **state) {
    char path[4096]; /* a copy: tmpfile_path reuses one buffer */
    snprintf(path, sizeof path, "%s", tmpfile_path("core_bad.npy"));
    ims_err e;
    void *data;
    imgsim_dtype dt;
    int64_t r, c;
    FILE *f = fopen(path, "wb");
    fputs("hello", f);
    fclose(f);
    assert_int_equal(ims_npy_read(&data, &dt, &r, &c, path, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "core_bad.npy"));
    /* a header claiming more data than the file holds */
    f = fopen(path, "wb");
    const char hdr[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }";
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, sizeof hdr - 1, 0};
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, sizeof hdr - 1, f);
    fclose(f);
    assert_int_equal(ims_npy_read(&data, &dt, &r, &c, path, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "shorter"));
    assert_int_equal(ims_npy_read(&data, &dt, &r, &c, tmpfile_path("does-not-exist.npy"), &e), IMGSIM_ERR_IO);
    /* float64 is named in the refusal */
    f = fopen(path, "wb");
    const char h8[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }";
    unsigned char pre8[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, sizeof h8 - 1, 0};
    fwrite(pre8, 1, 10, f);
    fwrite(h8, 1, sizeof h8 - 1, f);
    fwrite("0123456789abcdef", 1, 16, f);
    fclose(f);
    assert_int_equal(ims_npy_read(&data, &dt, &r, &c, path, &e), IMGSIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "element type '<f8' is not"));
}

/* the portable code against the same vectors (the library may use libcrypto's) */
static void test_sha256_portable(void **state) {
    static const char *msgs[] = {"abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"};
    for (int m = 0; m < 2; m++) {
        uint8_t a[32], b[32];
        ims_sha256 s;
        ims_sha256_init_portable(&s);
        ims_sha256_update(&s, msgs[m], strlen(msgs[m]));
        ims_sha256_final(&s, a);
        ims_sha256_init(&s);
        ims_sha256_update(&s, msgs[m], strlen(msgs[m]));
        ims_sha256_final(&s, b);
        assert_memory_equal(a, b, 32);
    }
    /* every length 0..300 in pieces: both implementations agree (padding edges at 55, 56, 64) */
    uint8_t buf[300];
    for (int i = 0; i < 300; i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t n = 0; n <= sizeof buf; n++) {
        uint8_t a[32], b[32];
        ims_sha256 s;
        ims_sha256_init_portable(&s);
        for (size_t o = 0; o < n; o += 17) ims_sha256_update(&s, buf + o, n - o < 17 ? n - o : 17);
        ims_sha256_final(&s, a);
        ims_sha256_init(&s);
        ims_sha256_update(&s, buf, n);
        ims_sha256_final(&s, b);
        assert_memory_equal(a, b, 32);
    }
    (void)state;
}

static void test_sha256(void **state) {
    char hex[65];
    /* FIPS 180-2 appendix B examples */
    ims_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ims_sha256_hex(m2, strlen(m2), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a', fed in odd-sized pieces */
    ims_sha256 s;
    ims_sha256_init(&s);
    char buf[997];
    memset(buf, 'a', sizeof buf);
    size_t left = 1000000;
    while (left) {
        size_t n = left < sizeof buf ? left : sizeof buf;
        ims_sha256_update(&s, buf, n);
        left -= n;
    }
    uint8_t d[32];
    ims_sha256_final(&s, d);
    assert_int_equal(d[0], 0xcd);
    assert_int_equal(d[1], 0xc7);
    assert_int_equal(d[31], 0xd0);
}

static void test_atomic(void **state) {
    const char *path = tmpfile_path("core_atomic.txt");
    unlink(path);
    ims_atomic_file af;
    assert_int_equal(ims_atomic_open(&af, path, NULL), IMGSIM_OK);
    fputs("partial", af.f);
    fflush(af.f);
    assert_false(ims_path_exists(path)); /* nothing under the final name before commit */
    ims_atomic_abort(&af);
    assert_false(ims_path_exists(path));
    assert_int_equal(ims_write_file_atomic(path, "done\n", 5, NULL), IMGSIM_OK);
    uint8_t *b;
    size_t n;
    assert_int_equal(ims_read_file(&b, &n, path, 0, NULL), IMGSIM_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(b, "done\n", 5);
    free(b);
    ims_err e;
    assert_int_equal(ims_read_file(&b, &n, path, 3, &e), IMGSIM_ERR_TOO_LARGE);
    assert_non_null(strstr(e.msg, "core_atomic.txt"));
}

static void test_alloc_faults(void **state) {
    ims_alloc_fail_after(0);
    assert_null(ims_malloc(16));
    ims_alloc_fail_after(1);
    void *p = ims_malloc(16);
    assert_non_null(p);
    assert_null(ims_malloc(16));
    ims_alloc_fail_after(-1);
    free(p);
    assert_null(ims_malloc_array(SIZE_MAX / 2, 4)); /* overflow refused */
    uint64_t out;
    assert_int_equal(ims_mul_overflow_u64(UINT64_MAX / 2, 3, &out), -1);
    assert_int_equal(ims_mul_overflow_u64(1u << 20, 1u << 20, &out), 0);
    assert_true(out == (uint64_t)1 << 40);
}

static void test_errors(void **state) {
    ims_err e;
    assert_int_equal(ims_fail(&e, IMGSIM_ERR_IO, "%s: cannot open", "x.jpg"), IMGSIM_ERR_IO);
    assert_string_equal(e.msg, "x.jpg: cannot open");
    assert_string_equal(imgsim_last_error(), "x.jpg: cannot open");
    ims_fail_prefix(&e, IMGSIM_ERR_IO, "job");
    assert_string_equal(e.msg, "job: x.jpg: cannot open");
    assert_string_equal(imgsim_status_str(IMGSIM_ERR_FORMAT), "corrupt or malformed input");
    char *j = ims_path_join("a/b/", "c.txt");
    assert_string_equal(j, "a/b/c.txt");
    free(j);
    j = ims_path_dirname("a/b/c.txt");
    assert_string_equal(j, "a/b");
    free(j);
}

static const char *const knobs[] = {"IMGSIM_CUDA_GRAPHS", "IMGSIM_SEARCH_SCREEN", "IMGSIM_GS_TILE", "IMGSIM_GS_QB",
                                    "IMGSIM_GS_QS", "IMGSIM_GPU_RING", "IMGSIM_GPU_INIT_SYNC"};

/* The tuning knobs as README "Tuning knobs" documents them: defaults, valid values, invalid
 * values ignored, and read once (until ims_tuning_reload). */
static void test_tuning(void **state) {
    for (size_t i = 0; i < sizeof knobs / sizeof *knobs; i++) unsetenv(knobs[i]);
    ims_tuning_reload();
    const ims_tuning *t = ims_tuning_get();
    assert_int_equal(t->cuda_graphs, 1);
    assert_int_equal(t->search_screen, IMS_SCREEN_AUTO);
    assert_true(t->gs_tile == 0 && t->gs_qb == 0 && t->gs_qs == 0 && t->gpu_ring == 0 && t->gpu_init_sync == 0);

    setenv("IMGSIM_CUDA_GRAPHS", "0", 1);
    setenv("IMGSIM_SEARCH_SCREEN", "bf16", 1);
    setenv("IMGSIM_GS_TILE", "131072", 1);
    setenv("IMGSIM_GS_QB", "16", 1);
    setenv("IMGSIM_GS_QS", "50", 1);
    setenv("IMGSIM_GPU_RING", "16", 1);
    setenv("IMGSIM_GPU_INIT_SYNC", "1", 1);
    assert_int_equal(ims_tuning_get()->cuda_graphs, 1); /* read once: not yet */
    ims_tuning_reload();
    t = ims_tuning_get();
    assert_int_equal(t->cuda_graphs, 0);
    assert_int_equal(t->search_screen, IMS_SCREEN_BF16);
    assert_true(t->gs_tile == 131072 && t->gs_qb == 16 && t->gs_qs == 50);
    assert_int_equal(t->gpu_ring, 16);
    assert_int_equal(t->gpu_init_sync, 1);
    setenv("IMGSIM_SEARCH_SCREEN", "f32", 1);
    setenv("IMGSIM_GPU_RING", "2", 1);
    ims_tuning_reload();
    assert_int_equal(t->search_screen, IMS_SCREEN_F32);
    assert_int_equal(t->gpu_ring, 2);

    /* out of range or not a value: ignored (a warning), as if unset */
    const char *bad[][2] = {{"IMGSIM_GPU_RING", "1"},  {"IMGSIM_GPU_RING", "17"},       {"IMGSIM_GPU_RING", "4x"},
                            {"IMGSIM_GS_TILE", "65535"}, {"IMGSIM_GS_QB", "0"},        {"IMGSIM_GS_QS", "-3"},
                            {"IMGSIM_CUDA_GRAPHS", "no"}, {"IMGSIM_SEARCH_SCREEN", "fast"}, {"IMGSIM_GPU_INIT_SYNC", ""}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) setenv(bad[i][0], bad[i][1], 1);
    ims_tuning_reload();
    assert_int_equal(t->cuda_graphs, 1);
    assert_int_equal(t->search_screen, IMS_SCREEN_AUTO);
    assert_true(t->gs_tile == 0 && t->gs_qb == 0 && t->gs_qs == 0 && t->gpu_ring == 0 && t->gpu_init_sync == 0);
    for (size_t i = 0; i < sizeof knobs / sizeof *knobs; i++) unsetenv(knobs[i]);
    ims_tuning_reload();
}

/* The default engine-cache folder: $XDG_CACHE_HOME/imgsim, else $HOME/.cache/imgsim, else none. */
static void test_cache_dir(void **state) {
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    char *xdg = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    setenv("HOME", "/h", 1);
    char *d = ims_cache_dir();
    assert_string_equal(d, "/x/cache/imgsim");
    free(d);
    setenv("XDG_CACHE_HOME", "", 1);
    d = ims_cache_dir();
    assert_string_equal(d, "/h/.cache/imgsim");
    free(d);
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    assert_null(ims_cache_dir());
    if (home) setenv("HOME", home, 1);
    if (xdg) setenv("XDG_CACHE_HOME", xdg, 1);
    free(home);
    free(xdg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool),        cmocka_unit_test(test_f16),    cmocka_unit_test(test_npy_roundtrip),
        cmocka_unit_test(test_npy_bad),     cmocka_unit_test(test_sha256), cmocka_unit_test(test_sha256_portable), cmocka_unit_test(test_atomic),
        cmocka_unit_test(test_alloc_faults), cmocka_unit_test(test_errors), cmocka_unit_test(test_tuning),
        cmocka_unit_test(test_cache_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
