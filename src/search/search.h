/*
 * search.h: exact top-k inner-product search (CPU), a blocked matrix product fused with a
 * per-query top-k selection; memory bounded by the tile size.
 */
#ifndef IMGSIM_SEARCH_H
#define IMGSIM_SEARCH_H

#include <stdint.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* gallery [n, dim], queries [q, dim], element type dtype; idx/score [q, k]; see imgsim_search. */
imgsim_status ims_search_cpu(int64_t *idx, float *score, const void *gallery, int64_t n, const void *queries,
                            int64_t q, int dim, imgsim_dtype dtype, int k, int threads, ims_err *e);

/* CUDA implementation (search/cuda); NO_DEVICE where not built or no GPU. */
imgsim_status ims_search_cuda(int64_t *idx, float *score, const void *gallery, int64_t n, const void *queries,
                             int64_t q, int dim, imgsim_dtype dtype, int k, int device_index,
                             size_t gpu_memory, ims_err *e);

/* Near-duplicate pairs within one set: calls fn(ctx, i, j, score) for every i < j with
 * score >= threshold, blockwise (no n x n matrix). With parts > 1 only the tile pairs u of the
 * upper triangle (row-major) with u % parts == part are done: one share of the work. */
typedef imgsim_pair_fn ims_pair_fn; /* fn(ctx, i, j, score) */
imgsim_status ims_dedup_cpu(const void *x, int64_t n, int dim, imgsim_dtype dtype, float threshold, int threads,
                           int part, int parts, ims_pair_fn fn, void *ctx, ims_err *e);

/* The same on a CUDA device, from the exact GPU top-k (search/cuda/dedup_cuda.c); NO_DEVICE
 * where not built or no GPU. gpu_memory caps the device memory for the set (0 = no cap). */
imgsim_status ims_dedup_cuda(const void *x, int64_t n, int dim, imgsim_dtype dtype, float threshold,
                            int device_index, size_t gpu_memory, ims_pair_fn fn, void *ctx, ims_err *e);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_SEARCH_H */
