/*
 * dedup_cuda.c: near-duplicate pairs on the GPU (search.h ims_dedup_cuda), from the exact CUDA
 * top-k: every row is a query against the whole set (uploaded once, ims_gsearch), with K
 * neighbours; a row whose K-th score is below the threshold has all its pairs in its list, and
 * a row whose list is full of pairs is asked again with 8 x K, up to K = n. Pairs (i, j) are
 * reported from row i's list when j > i, so each pair once, and the set is exactly the pairs at
 * or above the threshold (the scores are the exact search's). Memory: one block of queries x K
 * results, bounded by DEDUP_MAX_RESULTS.
 */
#include <stdlib.h>
#include <string.h>

#include "search/cuda/search_cuda.h"
#include "search/search.h"

#define DEDUP_K0 32
#define DEDUP_MAX_RESULTS ((int64_t)1 << 24)

imgsim_status ims_dedup_cuda(const void *x, int64_t n, int dim, imgsim_dtype dtype, float threshold,
                            int device_index, size_t gpu_memory, ims_pair_fn fn, void *ctx, ims_err *e) {
    if (n <= 1) return IMGSIM_OK;
    ims_gsearch *g = NULL;
    imgsim_status st = ims_gsearch_create(&g, x, n, dim, dtype, device_index, gpu_memory, e);
    if (st) return st;
    size_t esz = dtype == IMGSIM_F16 ? 2 : 4, row_bytes = esz * (size_t)dim;
    int64_t *list = ims_malloc_array((size_t)n, sizeof(int64_t)), *next = ims_malloc_array((size_t)n, sizeof(int64_t));
    int64_t cap = DEDUP_MAX_RESULTS / DEDUP_K0;
    uint8_t *q = ims_malloc_array((size_t)(cap < n ? cap : n), row_bytes);
    int64_t *idx = ims_malloc_array((size_t)DEDUP_MAX_RESULTS, sizeof(int64_t));
    float *score = ims_malloc_array((size_t)DEDUP_MAX_RESULTS, sizeof(float));
    if (!list || !next || !q || !idx || !score) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "dedup: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) list[i] = i;
    int64_t m = n, k = DEDUP_K0 < n ? DEDUP_K0 : n;
    while (m > 0 && !st) {
        int64_t nn = 0, block = DEDUP_MAX_RESULTS / k;
        if (block < 1) block = 1;
        for (int64_t b0 = 0; b0 < m && !st; b0 += block) {
            int64_t bm = m - b0 < block ? m - b0 : block;
            for (int64_t t = 0; t < bm; t++)
                memcpy(q + (size_t)t * row_bytes, (const uint8_t *)x + (size_t)list[b0 + t] * row_bytes, row_bytes);
            if ((st = ims_gsearch_run(g, idx, score, q, bm, (int)k, e))) break;
            for (int64_t t = 0; t < bm; t++) {
                int64_t r = list[b0 + t];
                const int64_t *ix = idx + t * k;
                const float *sc = score + t * k;
                if (k < n && sc[k - 1] >= threshold) { /* possibly more pairs than K: ask again */
                    next[nn++] = r;
                    continue;
                }
                for (int64_t j = 0; j < k && ix[j] >= 0 && sc[j] >= threshold; j++)
                    if (ix[j] > r) fn(ctx, r, ix[j], sc[j]);
            }
        }
        int64_t *tmp = list;
        list = next;
        next = tmp;
        m = nn;
        k = k * 8 < n ? k * 8 : n;
    }
done:
    free(list);
    free(next);
    free(q);
    free(idx);
    free(score);
    ims_gsearch_free(g);
    return st;
}
