/*
 * api.c: the public search entry points (imgsim_search_opts_init, imgsim_search, imgsim_dedup):
 * argument checks and dispatch to the CPU search (search_cpu.c, dedup.c) or the CUDA one
 * (search/cuda/).
 */
#include <math.h>
#include <string.h>

#include "imgsim.h"
#include "search/search.h"

void imgsim_search_opts_init(imgsim_search_opts *opt) {
    if (!opt) return;
    opt->threads = 0;
    opt->device = IMGSIM_DEVICE_CPU;
    opt->device_index = 0;
    opt->gpu_memory = 0;
}

imgsim_status imgsim_search(int64_t *idx, float *score, const void *gallery, int64_t n, const void *queries,
                            int64_t q, int dim, imgsim_dtype dtype, int k, const imgsim_search_opts *opt) {
    imgsim_search_opts def;
    if (!opt) {
        imgsim_search_opts_init(&def);
        opt = &def;
    }
    if (opt->threads < 0)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "search: threads must be >= 0 (got %d)", opt->threads);
    if (opt->device != IMGSIM_DEVICE_CPU && opt->device != IMGSIM_DEVICE_CUDA)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "search: unknown device %d", (int)opt->device);
    /* k past the gallery: search for the n that exist (the working memory grows with k), then
     * spread the [q, n] results out to [q, k] in place, -1 / -inf past n */
    int kk = n > 0 && k > n ? (int)n : k;
    imgsim_status st = opt->device == IMGSIM_DEVICE_CPU
                           ? ims_search_cpu(idx, score, gallery, n, queries, q, dim, dtype, kk, opt->threads, NULL)
                           : ims_search_cuda(idx, score, gallery, n, queries, q, dim, dtype, kk, opt->device_index,
                                             opt->gpu_memory, NULL);
    if (st != IMGSIM_OK || kk == k) return st;
    for (int64_t i = q - 1; i >= 0; i--) { /* last row first: a row only moves to higher addresses */
        memmove(idx + i * k, idx + i * kk, (size_t)kk * sizeof *idx);
        memmove(score + i * k, score + i * kk, (size_t)kk * sizeof *score);
        for (int j = kk; j < k; j++) idx[i * k + j] = -1, score[i * k + j] = -INFINITY;
    }
    return IMGSIM_OK;
}

imgsim_status imgsim_dedup(const void *x, int64_t n, int dim, imgsim_dtype dtype, float threshold,
                           const imgsim_search_opts *opt, imgsim_pair_fn fn, void *user) {
    imgsim_search_opts def;
    if (!opt) {
        imgsim_search_opts_init(&def);
        opt = &def;
    }
    if (!fn) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "dedup: no pair callback");
    if (opt->threads < 0)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "dedup: threads must be >= 0 (got %d)", opt->threads);
    switch (opt->device) {
    case IMGSIM_DEVICE_CPU:
        return ims_dedup_cpu(x, n, dim, dtype, threshold, opt->threads, fn, user, NULL);
    case IMGSIM_DEVICE_CUDA:
        return ims_dedup_cuda(x, n, dim, dtype, threshold, opt->device_index, opt->gpu_memory, fn, user, NULL);
    }
    return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "dedup: unknown device %d", (int)opt->device);
}

#ifndef IMGSIM_HAVE_CUDA
/* Without CUDA, the CUDA search is absent. */
imgsim_status ims_search_cuda(int64_t *idx, float *score, const void *gallery, int64_t n, const void *queries,
                             int64_t q, int dim, imgsim_dtype dtype, int k, int device_index,
                             size_t gpu_memory, ims_err *e) {
    (void)idx, (void)score, (void)gallery, (void)n, (void)queries, (void)q, (void)dim, (void)dtype, (void)k;
    (void)device_index, (void)gpu_memory;
    return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "imgsim was built without CUDA");
}

imgsim_status ims_dedup_cuda(const void *x, int64_t n, int dim, imgsim_dtype dtype, float threshold,
                            int device_index, size_t gpu_memory, ims_pair_fn fn, void *ctx, ims_err *e) {
    (void)x, (void)n, (void)dim, (void)dtype, (void)threshold, (void)device_index, (void)gpu_memory, (void)fn;
    (void)ctx;
    return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "imgsim was built without CUDA");
}
#endif
