/*
 * test_search_unit.c: ims_search_cpu, imgsim_search and ims_dedup_cpu called directly (also built
 * with ASan+UBSan), against a plain brute-force reference in this file: long double dot products
 * of the float values, ranked by (score desc, row asc). Data are multiples of 1/8 with small
 * magnitudes, so every reference score is exact and ties are exact ties. Also argument errors,
 * the CUDA stub and allocation-failure injection (no leaks, a NOMEM status).
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "search/search.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) { /* xorshift64 */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* values in {-1, -7/8, ..., 1}; a few rows copied over others to make duplicates */
static float *make_rows(int64_t n, int dim, int dups) {
    float *x = malloc((size_t)(n ? n : 1) * (size_t)dim * sizeof(float));
    for (int64_t i = 0; i < n * dim; i++)
        x[i] = (float)((int)(rnd() % 17) - 8) / 8.0f;
    for (int d = 0; d < dups && n > 1; d++) {
        int64_t a = (int64_t)(rnd() % (uint64_t)n), b = (int64_t)(rnd() % (uint64_t)n);
        memcpy(x + b * dim, x + a * dim, (size_t)dim * sizeof(float));
    }
    return x;
}

static long double dotl(const float *a, const float *b, int dim) {
    long double s = 0;
    for (int i = 0; i < dim; i++)
        s += (long double)a[i] * b[i];
    return s;
}

/* brute-force reference top-k of one query */
static void ref_topk(int64_t *idx, long double *sc, const float *g, int64_t n, const float *q, int dim,
                     int k) {
    for (int j = 0; j < k; j++)
        idx[j] = -1, sc[j] = -INFINITY;
    for (int64_t r = 0; r < n; r++) {
        long double s = dotl(q, g + r * dim, dim);
        int pos = k;
        while (pos > 0 && (idx[pos - 1] < 0 || sc[pos - 1] < s))
            pos--;
        if (pos >= k) continue;
        memmove(idx + pos + 1, idx + pos, (size_t)(k - pos - 1) * sizeof *idx);
        memmove(sc + pos + 1, sc + pos, (size_t)(k - pos - 1) * sizeof *sc);
        idx[pos] = r;
        sc[pos] = s;
    }
}

static uint16_t *to_f16(const float *x, size_t n) {
    uint16_t *h = malloc((n ? n : 1) * sizeof *h);
    for (size_t i = 0; i < n; i++)
        h[i] = ims_f32_to_f16(x[i]); /* exact: multiples of 1/8 */
    return h;
}

static void check_search(int64_t n, int64_t q, int dim, int k, int threads, int dups, imgsim_dtype dt) {
    float *g = make_rows(n, dim, dups), *qq = make_rows(q, dim, 0);
    /* queries that equal gallery rows produce ties at the top */
    for (int64_t i = 0; i < q && n > 0; i += 2)
        memcpy(qq + i * dim, g + (int64_t)(rnd() % (uint64_t)n) * dim, (size_t)dim * 4);
    int64_t *idx = malloc((size_t)(q ? q : 1) * (size_t)k * sizeof *idx);
    float *score = malloc((size_t)(q ? q : 1) * (size_t)k * sizeof *score);
    const void *gp = g, *qp = qq;
    uint16_t *gh = NULL, *qh = NULL;
    if (dt == IMGSIM_F16) {
        gh = to_f16(g, (size_t)(n * dim));
        qh = to_f16(qq, (size_t)(q * dim));
        gp = gh;
        qp = qh;
    }
    ims_err e;
    assert_int_equal(ims_search_cpu(idx, score, gp, n, qp, q, dim, dt, k, threads, &e), IMGSIM_OK);
    int64_t *ri = malloc((size_t)k * sizeof *ri);
    long double *rs = malloc((size_t)k * sizeof *rs);
    for (int64_t i = 0; i < q; i++) {
        ref_topk(ri, rs, g, n, qq + i * dim, dim, k);
        for (int j = 0; j < k; j++) {
            assert_int_equal(idx[i * k + j], ri[j]);
            if (ri[j] < 0)
                assert_true(isinf(score[i * k + j]) && score[i * k + j] < 0);
            else
                assert_true(score[i * k + j] == (float)rs[j]);
        }
    }
    free(ri);
    free(rs);
    free(g);
    free(qq);
    free(gh);
    free(qh);
    free(idx);
    free(score);
}

/* the bf16 screening pass (where oneDNN has native bf16; elsewhere this is float32 again) */
static void test_bf16_screen(void **st) {
    (void)st;
    setenv("IMGSIM_SEARCH_SCREEN", "bf16", 1);
    ims_tuning_reload(); /* the knobs are read once */
    check_search(1300, 70, 64, 10, 2, 30, IMGSIM_F32);
    check_search(700, 40, 72, 5, 2, 300, IMGSIM_F32); /* mostly duplicates: bf16 -> f32 -> f64 */
    check_search(900, 33, 64, 6, 2, 10, IMGSIM_F16);
    check_search(5, 3, 64, 9, 2, 0, IMGSIM_F32);
    unsetenv("IMGSIM_SEARCH_SCREEN");
    ims_tuning_reload(); /* the knobs are read once */
}

static void test_random_ties(void **st) {
    (void)st;
    check_search(1300, 40, 24, 10, 2, 30, IMGSIM_F32); /* n not a multiple of the tile */
    check_search(1300, 40, 24, 10, 1, 30, IMGSIM_F32);
    check_search(600, 9, 8, 40, 3, 200, IMGSIM_F32); /* many duplicates: the float64 fallback */
}

static void test_f16(void **st) {
    (void)st;
    check_search(900, 17, 20, 6, 2, 10, IMGSIM_F16);
}

static void test_sizes(void **st) {
    (void)st;
    check_search(5, 3, 4, 9, 2, 0, IMGSIM_F32);     /* k > n */
    check_search(1, 2, 4, 2, 2, 0, IMGSIM_F32);     /* n = 1 */
    check_search(0, 2, 4, 3, 2, 0, IMGSIM_F32);     /* n = 0 */
    check_search(50, 0, 4, 3, 2, 0, IMGSIM_F32);    /* q = 0 */
    check_search(3000, 1, 16, 5, 2, 0, IMGSIM_F32); /* q = 1: parallel over gallery tiles */
}

static void test_errors(void **st) {
    (void)st;
    float g[8] = {0}, q[8] = {0};
    int64_t idx[4];
    float sc[4];
    ims_err e;
    assert_int_equal(ims_search_cpu(idx, sc, g, 2, q, 2, 4, IMGSIM_F32, 0, 1, &e), IMGSIM_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "k must be"));
    assert_int_equal(ims_search_cpu(idx, sc, g, 2, q, 2, 0, IMGSIM_F32, 1, 1, &e), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(ims_search_cpu(NULL, sc, g, 2, q, 2, 4, IMGSIM_F32, 1, 1, &e), IMGSIM_ERR_INVALID_ARG);
    imgsim_search_opts o;
    imgsim_search_opts_init(&o);
    assert_int_equal(o.threads, 0);
    assert_int_equal(o.device, IMGSIM_DEVICE_CPU);
    assert_int_equal(imgsim_search(idx, sc, g, 2, q, 2, 4, IMGSIM_F32, 2, &o), IMGSIM_OK);
    assert_int_equal(imgsim_search(idx, sc, g, 2, q, 2, 4, IMGSIM_F32, 2, NULL), IMGSIM_OK);
    o.threads = -1;
    assert_int_equal(imgsim_search(idx, sc, g, 2, q, 2, 4, IMGSIM_F32, 2, &o), IMGSIM_ERR_INVALID_ARG);
#ifndef IMGSIM_HAVE_CUDA
    o.threads = 0;
    o.device = IMGSIM_DEVICE_CUDA;
    assert_int_equal(imgsim_search(idx, sc, g, 2, q, 2, 4, IMGSIM_F32, 2, &o), IMGSIM_ERR_NO_DEVICE);
    assert_non_null(strstr(imgsim_last_error(), "without CUDA"));
#endif
}

/* Allocation failures at every point of a search and a dedup: a NOMEM status, nothing leaked
 * (the ASan build checks leaks). */
static void count_pair(void *ctx, int64_t i, int64_t j, float s) {
    (void)i, (void)j, (void)s;
    (*(int64_t *)ctx)++;
}

static void test_alloc_failures(void **st) {
    (void)st;
    float *g = make_rows(700, 8, 5), *q = make_rows(5, 8, 0);
    int64_t idx[15];
    float sc[15];
    int saw_nomem = 0;
    /* from 2: the first two allocations are the thread pool's own (core tests its failures) */
    for (long fail = 2; fail < 200; fail++) {
        ims_alloc_fail_after(fail);
        ims_err e;
        imgsim_status s = ims_search_cpu(idx, sc, g, 700, q, 5, 8, IMGSIM_F32, 3, 2, &e);
        ims_alloc_fail_after(-1);
        assert_true(s == IMGSIM_OK || s == IMGSIM_ERR_NOMEM);
        if (s == IMGSIM_OK) break;
        saw_nomem = 1;
    }
    assert_true(saw_nomem);
    for (long fail = 2; fail < 200; fail++) {
        ims_alloc_fail_after(fail);
        ims_err e;
        int64_t cnt = 0;
        imgsim_status s = ims_dedup_cpu(g, 700, 8, IMGSIM_F32, 0.5f, 2, 0, 1, count_pair, &cnt, &e);
        ims_alloc_fail_after(-1);
        assert_true(s == IMGSIM_OK || s == IMGSIM_ERR_NOMEM);
        if (s == IMGSIM_OK) break;
    }
    free(g);
    free(q);
}

/* dedup against all pairs by brute force */
typedef struct pairs {
    int64_t n;
    int64_t *ij;
    float *s;
} pairs;

static void add_pair(void *ctx, int64_t i, int64_t j, float s) {
    pairs *p = ctx;
    p->ij = realloc(p->ij, (size_t)(p->n + 1) * 2 * sizeof *p->ij);
    p->s = realloc(p->s, (size_t)(p->n + 1) * sizeof *p->s);
    p->ij[2 * p->n] = i;
    p->ij[2 * p->n + 1] = j;
    p->s[p->n] = s;
    p->n++;
}

static void check_dedup(int64_t n, int dim, float thr, imgsim_dtype dt) {
    float *x = make_rows(n, dim, 40);
    uint16_t *xh = dt == IMGSIM_F16 ? to_f16(x, (size_t)(n * dim)) : NULL;
    pairs p = {0};
    ims_err e;
    assert_int_equal(ims_dedup_cpu(xh ? (const void *)xh : x, n, dim, dt, thr, 2, 0, 1, add_pair, &p, &e),
                     IMGSIM_OK);
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            long double s = dotl(x + i * dim, x + j * dim, dim);
            if (s >= thr) {
                assert_true(k < p.n);
                assert_int_equal(p.ij[2 * k], i); /* delivered sorted by (i, j) */
                assert_int_equal(p.ij[2 * k + 1], j);
                assert_true(p.s[k] == (float)s);
                k++;
            }
        }
    assert_int_equal(k, p.n);
    assert_true(p.n > 0);
    free(p.ij);
    free(p.s);
    free(x);
    free(xh);
}

static void test_dedup(void **st) {
    (void)st;
    check_dedup(1100, 6, 2.0f, IMGSIM_F32); /* crosses tiles; exact threshold hits (multiples of 1/64) */
    check_dedup(300, 5, 1.5f, IMGSIM_F16);
    setenv("IMGSIM_SEARCH_SCREEN", "bf16", 1); /* bf16 tile products (float32 where not native) */
    ims_tuning_reload(); /* the knobs are read once */
    check_dedup(1100, 64, 9.0f, IMGSIM_F32);
    check_dedup(600, 64, 9.0f, IMGSIM_F16);
    unsetenv("IMGSIM_SEARCH_SCREEN");
    ims_tuning_reload(); /* the knobs are read once */
    int64_t cnt = 0;
    ims_err e;
    float one[4] = {1, 0, 0, 0};
    assert_int_equal(ims_dedup_cpu(one, 1, 4, IMGSIM_F32, 0.5f, 2, 0, 1, count_pair, &cnt, &e), IMGSIM_OK);
    assert_int_equal(cnt, 0);
    assert_int_equal(ims_dedup_cpu(one, 1, 4, IMGSIM_F32, NAN, 2, 0, 1, count_pair, &cnt, &e),
                     IMGSIM_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_ties), cmocka_unit_test(test_f16),
        cmocka_unit_test(test_sizes),       cmocka_unit_test(test_bf16_screen),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_dedup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
