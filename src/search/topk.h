/*
 * topk.h: private helpers of the exact search (search_cpu.c, dedup.c, and the CUDA search, which
 * may reuse the candidate merge and the float64 re-ranking): single-threaded float32 GEMM tiles,
 * float16 row conversion, bounded candidate lists, float64 re-scoring and the error bound that
 * proves a float32 candidate set is complete.
 *
 * How search stays exact: scores are first computed in float32 (GEMM), and each query keeps its
 * best k + margin candidates. The candidates are re-scored in float64 (compensated sums of the
 * original rows) and ranked by (score desc, row asc). A float32 dot product of length d differs
 * from the exact one by at most gamma(d) * sum|q_i g_i| <= gamma(d) * |q| * max|g| (= delta), with
 * gamma(d) = d u / (1 - d u), u = 2^-24, whatever the summation order. Every row that was not kept
 * has a float32 score <= the lowest kept float32 score s_cut, so its exact score is <= s_cut +
 * delta. When the k-th re-scored candidate is > s_cut + delta, no dropped row can enter (or tie
 * into) the top k and the answer equals the exact top-k. Otherwise (many near-ties, e.g.
 * duplicated rows) the query falls back to a float64 scan of the whole gallery.
 */
#ifndef IMGSIM_SEARCH_TOPK_H
#define IMGSIM_SEARCH_TOPK_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* C[m, n] = A[m, k] * B[n, k]^T (all row-major, float32), on the calling thread only (oneDNN's
 * OpenMP team is limited to 1 thread for the call and restored afterwards). ldc is C's row
 * stride. */
imgsim_status is_sgemm_nt(float *c, int64_t ldc, const float *a, int64_t m, const float *b, int64_t n,
                          int64_t k, is_err *e);

/* dst[count] = float32 of the IEEE binary16 values src[count] (exact); F16C when available. */
void is_f16_to_f32_n(float *dst, const uint16_t *src, size_t count);

/* Row r of x ([*, dim] of dtype) as float32 into buf when x is float16, else a pointer into x. */
const float *is_row_f32(const void *x, int64_t r, int dim, imgsim_dtype dt, float *buf);

/* Float64 dot product (compensated sum of exact products) of a float32 row and a row of dtype
 * dt. Identical rows give bit-identical results. */
double is_dot64(const float *q, const void *g, int dim, imgsim_dtype dt);

/* Euclidean norm of n float32 values, in float64. */
double is_norm64(const float *x, int dim);

/* The bound on |float32 dot - exact dot| for vectors of these norms (with a 2x safety factor
 * covering the rounding of the norms themselves); +inf when dim is too large for the bound. */
double is_dot_error_bound(int dim, double norm_a, double norm_b);

/* A bounded list of the best candidates by float32 score, best first (cap entries). */
static inline void is_cand_insert(float *sc, int64_t *ix, int *cnt, int cap, float s, int64_t id) {
    int pos = *cnt;
    if (pos < cap)
        (*cnt)++;
    else
        pos = cap - 1;
    while (pos > 0 && sc[pos - 1] < s) {
        sc[pos] = sc[pos - 1];
        ix[pos] = ix[pos - 1];
        pos--;
    }
    sc[pos] = s;
    ix[pos] = id;
}

/* A re-scored candidate. */
typedef struct is_cand64 {
    double s;
    int64_t i;
} is_cand64;

/* Sorts by score descending, then row ascending; removes duplicate rows. Returns the new count. */
int64_t is_cand64_sort_unique(is_cand64 *c, int64_t n);

#endif /* IMGSIM_SEARCH_TOPK_H */
