/*
 * test_gpusearch_api.c: the CUDA exact top-k (ims_search_cuda and the ims_gsearch handle) against
 * a plain float64 reference written here (every score, full sort by (score desc, row asc)) and
 * against the CPU exact search (identical rows and bit-identical float32 scores), on random and
 * adversarial data: odd sizes, k > n, q = 1 with k = 1024, duplicated rows, integer data with
 * massive exact ties, float16 and float32, resident and streamed galleries (small gpu_memory),
 * several query blocks and super-batches. Exits 77 (skipped) without a CUDA build or GPU.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "search/search.h"
#ifdef IMGSIM_HAVE_CUDA
#include "search/cuda/search_cuda.h"
#endif

static uint64_t rng_state = 0x1234567887654321ull;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static double rng_unif(void) { return (double)(rng_next() >> 11) * 0x1p-52 - 1.0; }

/* A matrix [rows, dim] in float32 storage (values already representable in dtype). */
typedef enum { GEN_NORMAL, GEN_INT } gen_kind;

static float *gen_rows(int64_t rows, int dim, gen_kind kind, imgsim_dtype dt) {
    float *x = malloc((size_t)(rows ? rows : 1) * (size_t)dim * sizeof(float));
    assert_non_null(x);
    for (int64_t r = 0; r < rows; r++) {
        float *p = x + (size_t)r * (size_t)dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) {
            if (kind == GEN_INT) {
                p[i] = (float)((int)(rng_next() % 5) - 2);
            } else {
                p[i] = (float)rng_unif();
                ss += (double)p[i] * p[i];
            }
        }
        if (kind == GEN_NORMAL && ss > 0)
            for (int i = 0; i < dim; i++) p[i] = (float)(p[i] / sqrt(ss));
        if (dt == IMGSIM_F16)
            for (int i = 0; i < dim; i++) p[i] = ims_f16_to_f32(ims_f32_to_f16(p[i]));
    }
    return x;
}

/* The matrix in the element type dt (float16 bits or a float32 copy). */
static void *as_dtype(const float *x, size_t count, imgsim_dtype dt) {
    if (dt == IMGSIM_F32) {
        float *y = malloc((count ? count : 1) * sizeof(float));
        assert_non_null(y);
        memcpy(y, x, count * sizeof(float));
        return y;
    }
    uint16_t *h = malloc((count ? count : 1) * sizeof(uint16_t));
    assert_non_null(h);
    for (size_t i = 0; i < count; i++) h[i] = ims_f32_to_f16(x[i]);
    return h;
}

typedef struct ref_item {
    double s;
    int64_t i;
} ref_item;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_item *a = pa, *b = pb;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return a->i < b->i ? -1 : (a->i > b->i);
}

/* Plain float64 reference: all n scores per query, sorted. */
static void reference(int64_t *idx, float *score, const float *g, int64_t n, const float *q, int64_t nq, int dim,
                      int k) {
    ref_item *it = malloc((size_t)(n ? n : 1) * sizeof *it);
    assert_non_null(it);
    for (int64_t j = 0; j < nq; j++) {
        for (int64_t r = 0; r < n; r++) {
            double s = 0;
            for (int i = 0; i < dim; i++) s += (double)q[j * dim + i] * (double)g[r * dim + i];
            it[r].s = s;
            it[r].i = r;
        }
        qsort(it, (size_t)n, sizeof *it, ref_cmp);
        for (int c = 0; c < k; c++) {
            idx[j * k + c] = c < n ? it[c].i : -1;
            score[j * k + c] = c < n ? (float)it[c].s : -INFINITY;
        }
    }
    free(it);
}

/* Runs one case through the GPU (ims_search_cuda, or the handle when counts is non-NULL) and
 * checks it against the reference and the CPU search. */
static void run_case(const char *name, int64_t n, int dim, int64_t nq, int k, imgsim_dtype dt, gen_kind kind,
                     int dup_base, size_t gpu_memory, int64_t *counts) {
#ifndef IMGSIM_HAVE_CUDA
    (void)counts;
#endif
    float *g = gen_rows(n, dim, kind, dt);
    if (dup_base > 0)
        for (int64_t r = dup_base; r < n; r++) memcpy(g + r * dim, g + (r % dup_base) * dim, (size_t)dim * sizeof(float));
    float *q = gen_rows(nq, dim, kind, dt);
    void *gd = as_dtype(g, (size_t)n * (size_t)dim, dt), *qd = as_dtype(q, (size_t)nq * (size_t)dim, dt);
    size_t rk = (size_t)(nq ? nq : 1) * (size_t)k;
    int64_t *ri = malloc(rk * sizeof(int64_t)), *gi = malloc(rk * sizeof(int64_t)), *ci = malloc(rk * sizeof(int64_t));
    float *rs = malloc(rk * sizeof(float)), *gs = malloc(rk * sizeof(float)), *cs = malloc(rk * sizeof(float));
    assert_true(ri && gi && ci && rs && gs && cs);
    for (size_t i = 0; i < rk; i++) {
        gi[i] = 123456789;
        gs[i] = NAN;
    }
    reference(ri, rs, g, n, q, nq, dim, k);
    ims_err e;
    memset(&e, 0, sizeof e);
    imgsim_status st;
#ifdef IMGSIM_HAVE_CUDA
    if (counts) {
        ims_gsearch *h = NULL;
        st = ims_gsearch_create(&h, gd, n, dim, dt, 0, gpu_memory, &e);
        if (st == IMGSIM_OK) st = ims_gsearch_run(h, gi, gs, qd, nq, k, &e);
        if (st == IMGSIM_OK) ims_gsearch_counts(h, &counts[0], &counts[1], &counts[2]);
        if (h) counts[3] = ims_gsearch_resident(h);
        ims_gsearch_free(h);
    } else
#endif
    {
        st = ims_search_cuda(gi, gs, gd, n, qd, nq, dim, dt, k, 0, gpu_memory, &e);
    }
    if (st != IMGSIM_OK) fprintf(stderr, "%s: %s\n", name, e.msg);
    assert_int_equal(st, IMGSIM_OK);
    st = ims_search_cpu(ci, cs, gd, n, qd, nq, dim, dt, k, 2, &e);
    assert_int_equal(st, IMGSIM_OK);
    int64_t bad_ref = 0, bad_cpu = 0;
    for (size_t i = 0; i < (size_t)nq * (size_t)k; i++) {
        int ok_ref = gi[i] == ri[i] && (ri[i] < 0 ? gs[i] == -INFINITY : fabsf(gs[i] - rs[i]) <= 1e-5f * fmaxf(1.0f, fabsf(rs[i])));
        int ok_cpu = gi[i] == ci[i] && memcmp(&gs[i], &cs[i], sizeof(float)) == 0;
        if (!ok_ref && bad_ref++ < 5)
            fprintf(stderr, "%s: [%zu] gpu (%lld, %.9g) reference (%lld, %.9g)\n", name, i, (long long)gi[i],
                    (double)gs[i], (long long)ri[i], (double)rs[i]);
        if (!ok_cpu && bad_cpu++ < 5)
            fprintf(stderr, "%s: [%zu] gpu (%lld, %.9g) cpu (%lld, %.9g)\n", name, i, (long long)gi[i], (double)gs[i],
                    (long long)ci[i], (double)cs[i]);
    }
    fprintf(stderr, "%s: n %lld dim %d q %lld k %d %s: %lld mismatches vs float64, %lld vs CPU\n", name,
            (long long)n, dim, (long long)nq, k, dt == IMGSIM_F16 ? "f16" : "f32", (long long)bad_ref,
            (long long)bad_cpu);
    assert_int_equal(bad_ref, 0);
    assert_int_equal(bad_cpu, 0);
    free(g), free(q), free(gd), free(qd), free(ri), free(gi), free(ci), free(rs), free(gs), free(cs);
}

static void random_f16(void **s) {
    (void)s;
    run_case("random_f16", 3001, 67, 37, 10, IMGSIM_F16, GEN_NORMAL, 0, 0, NULL);
}

static void random_f32(void **s) {
    (void)s;
    run_case("random_f32", 3001, 67, 37, 10, IMGSIM_F32, GEN_NORMAL, 0, 0, NULL);
}

static void k_over_n(void **s) {
    (void)s;
    run_case("k_over_n_f32", 50, 24, 5, 64, IMGSIM_F32, GEN_NORMAL, 0, 0, NULL);
    run_case("k_over_n_f16", 1, 8, 3, 5, IMGSIM_F16, GEN_NORMAL, 0, 0, NULL);
}

static void one_query_k1024(void **s) {
    (void)s;
    run_case("q1_k1024", 5000, 32, 1, 1024, IMGSIM_F16, GEN_NORMAL, 0, 0, NULL);
    run_case("q1_k1", 20011, 40, 1, 1, IMGSIM_F32, GEN_NORMAL, 0, 0, NULL);
}

#ifdef IMGSIM_HAVE_CUDA
/* 4 distinct rows repeated 1000 times: the best group alone is longer than all of the first
 * pass's lists together (splits x (k + 64)), so that pass cannot prove the top k, and the wider
 * pass (one list of 2048) must. */
static void duplicates(void **s) {
    (void)s;
    int64_t c[4] = {0};
    run_case("duplicates_f16", 4000, 48, 20, 150, IMGSIM_F16, GEN_NORMAL, 4, 0, c);
    fprintf(stderr, "duplicates_f16: first %lld second %lld cpu %lld\n", (long long)c[0], (long long)c[1],
            (long long)c[2]);
    assert_int_equal(c[0], 0);
    assert_true(c[1] > 0);
    assert_int_equal(c[0] + c[1] + c[2], 20);
    /* 2 rows repeated 3000 times: more ties than the longest device list, so the CPU decides */
    run_case("massive_dups", 6000, 16, 4, 10, IMGSIM_F16, GEN_NORMAL, 2, 0, c);
    assert_int_equal(c[2], 4);
}

/* Small-integer vectors: scores are small integers, thousands of exact ties. */
static void integer_ties(void **s) {
    (void)s;
    int64_t c[4] = {0};
    run_case("ties_f32", 6000, 16, 30, 20, IMGSIM_F32, GEN_INT, 0, 0, c);
    run_case("ties_f16", 6000, 16, 30, 7, IMGSIM_F16, GEN_INT, 0, 0, c);
}

/* Gallery four times the device-memory cap: streamed in segments. */
static void streamed(void **s) {
    (void)s;
    int64_t c[4] = {0};
    run_case("streamed_f16", 20000, 64, 300, 10, IMGSIM_F16, GEN_NORMAL, 0, (size_t)20000 * 64 * 2 / 4, c);
    assert_int_equal(c[3], 0);
    run_case("streamed_f32", 20000, 64, 300, 10, IMGSIM_F32, GEN_NORMAL, 0, (size_t)20000 * 64 * 4 / 4, c);
    assert_int_equal(c[3], 0);
    run_case("streamed_dups", 6000, 32, 10, 100, IMGSIM_F16, GEN_NORMAL, 30, (size_t)6000 * 32 * 2 / 5, c);
    assert_int_equal(c[3], 0);
}

/* Several query blocks (two streams) and super-batches, resident and streamed. */
static void blocks_and_batches(void **s) {
    (void)s;
    int64_t c[4] = {0};
    setenv("IMGSIM_GS_QB", "16", 1);
    setenv("IMGSIM_GS_QS", "50", 1);
    ims_tuning_reload(); /* the knobs are read once */
    run_case("blocks_resident", 9000, 40, 130, 12, IMGSIM_F16, GEN_NORMAL, 0, 0, c);
    assert_int_equal(c[3], 1);
    run_case("blocks_streamed", 9000, 40, 130, 12, IMGSIM_F32, GEN_NORMAL, 0, (size_t)9000 * 40 * 4 / 3, c);
    assert_int_equal(c[3], 0);
    unsetenv("IMGSIM_GS_QB");
    unsetenv("IMGSIM_GS_QS");
    ims_tuning_reload(); /* the knobs are read once */
    run_case("two_blocks", 3000, 64, 2100, 5, IMGSIM_F16, GEN_NORMAL, 0, 0, c);
}
#endif

/* n = 0 and q = 0. */
static void empty(void **s) {
    (void)s;
    int64_t idx[6];
    float sc[6];
    uint16_t qv[4] = {0x3c00, 0, 0, 0};
    assert_int_equal(ims_search_cuda(idx, sc, qv, 0, qv, 2, 2, IMGSIM_F16, 3, 0, 0, NULL), IMGSIM_OK);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(idx[i], -1);
        assert_true(sc[i] == -INFINITY);
    }
    assert_int_equal(ims_search_cuda(idx, sc, qv, 2, qv, 0, 2, IMGSIM_F16, 3, 0, 0, NULL), IMGSIM_OK);
    assert_int_not_equal(ims_search_cuda(idx, sc, qv, 2, qv, 1, 2, IMGSIM_F16, 0, 0, 0, NULL), IMGSIM_OK);
}

int main(void) {
    int64_t idx[1];
    float sc[1];
    uint16_t one = 0x3c00;
    imgsim_status st = ims_search_cuda(idx, sc, &one, 1, &one, 1, 1, IMGSIM_F16, 1, 0, 0, NULL);
    if (st == IMGSIM_ERR_NO_DEVICE) {
        fprintf(stderr, "test_gpusearch_api: no CUDA device or no CUDA build: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_f16),      cmocka_unit_test(random_f32), cmocka_unit_test(k_over_n),
        cmocka_unit_test(one_query_k1024), cmocka_unit_test(empty),
#ifdef IMGSIM_HAVE_CUDA
        cmocka_unit_test(duplicates),      cmocka_unit_test(integer_ties), cmocka_unit_test(streamed),
        cmocka_unit_test(blocks_and_batches),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
