/*
 * api.c: the public search entry points (imgsim_search_opts_init, imgsim_search, imgsim_dedup):
 * argument checks and dispatch to the CPU search (search_cpu.c, dedup.c) or the CUDA one
 * (search/cuda/).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "imgsim.h"
#include "search/search.h"
#include "search/topk.h"

void imgsim_search_opts_init(imgsim_search_opts *opt) {
    if (!opt) return;
    opt->threads = 0;
    opt->device = IMGSIM_DEVICE_CPU;
    opt->device_index = 0;
    opt->gpu_memory = 0;
    opt->part = 0;
    opt->parts = 0;
    opt->devices = NULL;
    opt->n_devices = 0;
}

/* ---- one search over several GPUs: a row range of the gallery each, top-k merged ---- */

typedef struct dev_part {
    const void *gallery;
    int64_t lo, n;
    const void *queries;
    int64_t q;
    int dim, k, device;
    imgsim_dtype dtype;
    size_t gpu_memory;
    int64_t *idx;
    float *score;
    imgsim_status st;
    ims_err err;
} dev_part;

static void *dev_part_main(void *arg) {
    dev_part *d = arg;
    size_t esz = d->dtype == IMGSIM_F16 ? 2 : 4;
    ims_err_clear(&d->err);
    d->st = ims_search_cuda(d->idx, d->score, (const char *)d->gallery + (size_t)d->lo * (size_t)d->dim * esz, d->n,
                            d->queries, d->q, d->dim, d->dtype, d->k, d->device, d->gpu_memory, &d->err);
    return NULL;
}

static imgsim_status search_devices(int64_t *idx, float *score, const void *gallery, int64_t n, const void *queries,
                                    int64_t q, int dim, imgsim_dtype dtype, int k, const imgsim_search_opts *opt) {
    int nd = opt->n_devices;
    size_t lk = (size_t)q * (size_t)k;
    dev_part *parts = ims_calloc((size_t)nd, sizeof *parts);
    pthread_t *th = ims_calloc((size_t)nd, sizeof *th);
    int64_t *cand = ims_malloc_array(lk * (size_t)nd + 1, sizeof *cand);
    imgsim_status st = parts && th && cand ? IMGSIM_OK : ims_fail(NULL, IMGSIM_ERR_NOMEM, "search: out of memory");
    int started = 0;
    for (int i = 0; !st && i < nd; i++) {
        dev_part *d = &parts[i];
        *d = (dev_part){.gallery = gallery, .lo = n * i / nd, .queries = queries, .q = q, .dim = dim, .dtype = dtype,
                        .device = opt->devices[i], .gpu_memory = opt->gpu_memory};
        d->n = n * (i + 1) / nd - d->lo;
        d->k = d->n < k ? (int)d->n : k; /* (a part with fewer rows than k: all of them) */
        d->idx = ims_malloc_array(lk + 1, sizeof *d->idx);
        d->score = ims_malloc_array(lk + 1, sizeof *d->score);
        if (!d->idx || !d->score) st = ims_fail(NULL, IMGSIM_ERR_NOMEM, "search: out of memory");
    }
    for (; !st && started < nd; started++)
        if (parts[started].n > 0 && pthread_create(&th[started], NULL, dev_part_main, &parts[started]) != 0)
            st = ims_fail(NULL, IMGSIM_ERR_INTERNAL, "search: cannot start a thread for GPU %d", started);
    for (int i = 0; i < started; i++)
        if (parts[i].n > 0) pthread_join(th[i], NULL);
    for (int i = 0; !st && i < nd; i++)
        if (parts[i].n > 0 && parts[i].st)
            st = ims_fail(NULL, parts[i].st, "search of rows %lld..%lld on GPU %d: %s", (long long)parts[i].lo,
                          (long long)(parts[i].lo + parts[i].n), parts[i].device, parts[i].err.msg);
    if (!st) { /* [query][part * k] candidates, rows made global */
        for (int64_t i = 0; i < q; i++)
            for (int p = 0; p < nd; p++)
                for (int j = 0; j < k; j++) {
                    const dev_part *d = &parts[p];
                    int64_t r = j < d->k && d->n > 0 ? d->idx[i * d->k + j] : -1;
                    cand[((size_t)i * (size_t)nd + (size_t)p) * (size_t)k + (size_t)j] = r >= 0 ? r + d->lo : -1;
                }
        st = imgsim_search_merge(idx, score, cand, nd * k, gallery, n, queries, q, dim, dtype, k);
    }
    for (int i = 0; parts && i < nd; i++) free(parts[i].idx), free(parts[i].score);
    free(parts), free(th), free(cand);
    return st;
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
    if (opt->device == IMGSIM_DEVICE_CUDA && opt->n_devices > 1) {
        if (!opt->devices) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "search: n_devices %d but no devices", opt->n_devices);
        if (k < 1) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "search: k must be >= 1 (got %d)", k);
        return search_devices(idx, score, gallery, n, queries, q, dim, dtype, k, opt);
    }
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
    int parts = opt->parts > 1 ? opt->parts : 1;
    if (opt->part < 0 || (opt->parts > 1 && opt->part >= opt->parts))
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "dedup: part %d of %d", opt->part, opt->parts);
    if (parts > 1 && opt->device != IMGSIM_DEVICE_CPU)
        return ims_fail(NULL, IMGSIM_ERR_UNSUPPORTED, "dedup: a share of the work (parts > 1) runs on the CPU only");
    switch (opt->device) {
    case IMGSIM_DEVICE_CPU:
        return ims_dedup_cpu(x, n, dim, dtype, threshold, opt->threads, parts > 1 ? opt->part : 0, parts, fn, user,
                             NULL);
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

/* (score desc, row asc), the order imgsim_search ranks by */
typedef struct merge_cand {
    double s;
    int64_t row;
} merge_cand;

static int merge_cmp(const void *a, const void *b) {
    const merge_cand *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

imgsim_status imgsim_search_merge(int64_t *idx, float *score, const int64_t *cand, int m, const void *gallery,
                                  int64_t n, const void *queries, int64_t q, int dim, imgsim_dtype dtype, int k) {
    if (k < 1 || m < 0 || dim < 1 || n < 0 || q < 0)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "search merge: k %d, m %d, dim %d, n %lld, q %lld out of range",
                        k, m, dim, (long long)n, (long long)q);
    if (dtype != IMGSIM_F32 && dtype != IMGSIM_F16)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "search merge: unknown element type %d", (int)dtype);
    if (q == 0) return IMGSIM_OK;
    if (!idx || !score || !queries || (m > 0 && (!cand || (n > 0 && !gallery))))
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "search merge: NULL buffer");
    size_t esz = dtype == IMGSIM_F16 ? 2 : 4;
    merge_cand *c = ims_malloc_array((size_t)(m ? m : 1), sizeof *c);
    float *qrow = ims_malloc_array((size_t)dim, sizeof *qrow);
    if (!c || !qrow) {
        free(c), free(qrow);
        return ims_fail(NULL, IMGSIM_ERR_NOMEM, "search merge: out of memory");
    }
    for (int64_t i = 0; i < q; i++) {
        const void *qr = (const char *)queries + (size_t)i * (size_t)dim * esz;
        if (dtype == IMGSIM_F16)
            for (int j = 0; j < dim; j++) qrow[j] = ims_f16_to_f32(((const uint16_t *)qr)[j]);
        else
            memcpy(qrow, qr, (size_t)dim * sizeof *qrow);
        int nc = 0;
        for (int j = 0; j < m; j++) {
            int64_t r = cand[i * m + j];
            if (r < 0) continue;
            if (r >= n) {
                free(c), free(qrow);
                return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "search merge: candidate row %lld of query %lld is "
                                "outside the gallery's %lld rows", (long long)r, (long long)i, (long long)n);
            }
            c[nc].row = r;
            c[nc++].s = ims_dot64(qrow, (const char *)gallery + (size_t)r * (size_t)dim * esz, dim, dtype);
        }
        qsort(c, (size_t)nc, sizeof *c, merge_cmp);
        int out = 0;
        for (int j = 0; j < nc && out < k; j++) {
            if (out > 0 && c[j].row == idx[i * k + out - 1]) continue; /* a repeated candidate */
            idx[i * k + out] = c[j].row;
            score[i * k + out++] = (float)c[j].s;
        }
        for (; out < k; out++) idx[i * k + out] = -1, score[i * k + out] = -INFINITY;
    }
    free(c);
    free(qrow);
    return IMGSIM_OK;
}
