/*
 * topk.h: private helpers of the exact search (search_cpu.c, dedup.c, and the CUDA search, which
 * may reuse the candidate lists and the float64 re-ranking): single-threaded float32 GEMM tiles,
 * a bf16 matmul plan, float16/bfloat16 conversion, bounded candidate lists, float64 re-scoring
 * and the error bounds that prove an approximate candidate set complete.
 *
 * How search stays exact: scores are first computed approximately (float32 GEMM, or bfloat16
 * inputs with float32 accumulation), and each query keeps its best k + margin candidates by
 * approximate score. An approximate dot product differs from the exact one by at most delta:
 *   float32: gamma(d) * sum|q_i g_i| <= gamma(d) |q| max|g|, gamma(d) = d u / (1 - d u),
 *            u = 2^-24, whatever the summation order (Higham 3.1);
 *   bf16:    (2 u' + u'^2) |q| max|g| + the float32 bound, u' = 2^-8 (both inputs rounded).
 * The candidates are re-scored in float64 (float64 sums of the exact products of the original
 * rows, compensated), best approximate score first, stopping once the next approximate score + delta is below
 * the current k-th exact score, and ranked by (score desc, row asc). Every row that was not kept
 * has an approximate score <= the lowest kept one, s_cut, so its exact score is <= s_cut + delta.
 * When s_cut + delta < the k-th exact score, no dropped row can enter (or tie into) the top k and
 * the answer equals the exact top-k. Otherwise (many near-ties, e.g. duplicated rows) the query
 * is redone by the next, more exact pass: bf16 -> float32 -> a float64 scan of the gallery.
 */
#ifndef IMGSIM_SEARCH_TOPK_H
#define IMGSIM_SEARCH_TOPK_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* C[m, n] = A[m, k] * B[n, k]^T (all row-major, float32), on the calling thread only (oneDNN's
 * OpenMP team is limited to 1 thread for the call and restored afterwards). ldc is C's row
 * stride. */
imgsim_status ims_sgemm_nt(float *c, int64_t ldc, const float *a, int64_t m, const float *b, int64_t n,
                          int64_t k, ims_err *e);

/* A planned bfloat16 x bfloat16 -> float32 product C[m, n] = A[m, k] * B[n, k]^T (row-major, fixed
 * shape; oneDNN matmul, user scratchpad), run from up to `workers` threads at once, each with its
 * own worker index. Created only where oneDNN has a native bf16 kernel (AVX512-BF16 or AMX):
 * otherwise IMGSIM_ERR_UNSUPPORTED, and callers use the float32 path. */
typedef struct ims_bf16_gemm ims_bf16_gemm;
imgsim_status ims_bf16_gemm_create(ims_bf16_gemm **out, int64_t m, int64_t n, int64_t k, int workers,
                                  ims_err *e);
/* c [m, n] (row stride n); a [m, k], b [n, k] bfloat16 bits; on the calling thread only. */
imgsim_status ims_bf16_gemm_run(ims_bf16_gemm *g, int worker, float *c, const uint16_t *a, const uint16_t *b,
                               ims_err *e);
void ims_bf16_gemm_destroy(ims_bf16_gemm *g);
/* dst[count] = bfloat16 (round to nearest even) of src[count]. */
void ims_f32_to_bf16_n(uint16_t *dst, const float *src, size_t count);
/* The bound on |bf16 product of (q, g) rounded to bfloat16, accumulated in float32 - exact dot|:
 * (2 u + u^2) with u = 2^-8 for the rounding of both inputs, plus the float32 bound. */
double ims_dot_error_bound_bf16(int dim, double norm_a, double norm_b);

/* An upper bound of the Euclidean norm of the bf16 rounding error of a row, |x - float(xb)|,
 * xb the bf16 of x. */
double ims_bf16_error_norm(const float *x, const uint16_t *xb, int dim);
/* The bound for bf16 inputs from the actual rounding errors (a posteriori, ~2.5x tighter than
 * ims_dot_error_bound_bf16 on typical data): with q = q~ + e_q, g = g~ + e_g,
 *   |q.g - fl(q~.g~)| <= |e_q||g| + |q~||e_g| + gamma(d)|q~||g~| (+ flushed underflows),
 * with nq = |q|, eq = |e_q|, ng = max |g|, eg = max |e_g| over the rows that were dropped. */
double ims_dot_error_bound_bf16_rows(int dim, double nq, double eq, double ng, double eg);

/* dst[count] = float32 of the IEEE binary16 values src[count] (exact); F16C when available. */
void ims_f16_to_f32_n(float *dst, const uint16_t *src, size_t count);

/* Row r of x ([*, dim] of dtype) as float32 into buf when x is float16, else a pointer into x. */
const float *ims_row_f32(const void *x, int64_t r, int dim, imgsim_dtype dt, float *buf);

/* Float64 dot product (Neumaier-compensated sum of the exact products, in index order) of a
 * float32 row and a row of dtype dt. Identical rows give bit-identical results; the CUDA
 * rescoring kernel mirrors it bit for bit. */
double ims_dot64(const float *q, const void *g, int dim, imgsim_dtype dt);

/* An upper bound (within ~dim 2^-23 relative) of the Euclidean norm of dim float32 values. */
double ims_norm64(const float *x, int dim);

/* The bound on |float32 dot - exact dot| for vectors of these norms (with a 2x safety factor
 * covering the rounding of the norms themselves); +inf when dim is too large for the bound. */
double ims_dot_error_bound(int dim, double norm_a, double norm_b);

/* A bounded list of the best candidates by float32 score, best first (cap entries). */
static inline void ims_cand_insert(float *sc, int64_t *ix, int *cnt, int cap, float s, int64_t id) {
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

/* Folds crow[0, gn) (approximate scores of gallery rows g0 .. g0 + gn - 1) into the bounded list
 * (sc, ix, *cnt, cap): rows are offered in ascending order; AVX-512 compares 16 at a time
 * against the list's current last score where available. */
void ims_fold_row(float *sc, int64_t *ix, int *cnt, int cap, const float *crow, int64_t g0, int64_t gn);

/* A re-scored candidate. */
typedef struct ims_cand64 {
    double s;
    int64_t i;
} ims_cand64;

/* Sorts by score descending, then row ascending; removes duplicate rows. Returns the new count. */
int64_t ims_cand64_sort_unique(ims_cand64 *c, int64_t n);

#endif /* IMGSIM_SEARCH_TOPK_H */
