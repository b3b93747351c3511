/*
 * search_cpu.c: exact top-k inner-product search on the CPU.
 *
 * Shapes: gallery G [n, dim], queries Q [q, dim] (float32 or float16), outputs idx/score [q, k].
 *
 * Queries are taken in blocks of up to QBLOCK rows (converted to float32: [qb, dim]). Within a
 * block the work items are gallery tiles of TILE_G rows (times, when there are too few tiles to
 * keep every thread busy, a split of the block's queries). An item converts its tile to float32
 * if needed (a per-thread buffer [TILE_G, dim]), multiplies it with TILE_Q queries at a time
 * (one-thread oneDNN sgemm, C [TILE_Q, TILE_G] in a per-thread buffer) and, while C is in cache,
 * folds each row of C into that thread's bounded candidate list for the query (best k + MARGIN by
 * float32 score; a "compare with the current last, skip" test rejects nearly every score). The
 * q x n score matrix never exists; memory is O(threads * (qb * (k + MARGIN) + tile)).
 *
 * Each query's candidates (from every thread) are then re-scored in float64 and ranked by
 * (score desc, row asc); the float32 error bound proves the result equals the exact float64
 * top-k, or the query is recomputed by a float64 scan of the whole gallery (topk.h). Scores
 * returned are the float64 scores rounded to float32. Rows past n (k > n) get idx -1 and score
 * -inf. Non-finite feature values give unspecified (but memory-safe) results.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "search/search.h"
#include "search/topk.h"

enum {
    TILE_G = 512,  /* gallery rows per tile */
    TILE_Q = 256,  /* queries per sgemm */
    QBLOCK = 4096, /* queries per block (bounds per-thread candidate memory) */
    MARGIN = 16    /* extra float32 candidates kept per query beyond k */
};

/* Per-thread state. */
typedef struct worker {
    float *cs;       /* [qb, kc] candidate float32 scores */
    int64_t *ci;     /* [qb, kc] candidate rows */
    int *cn;         /* [qb] candidates held */
    float *c;        /* [TILE_Q, TILE_G] GEMM tile */
    float *g;        /* [TILE_G, dim] float32 copy of a float16 tile (NULL for float32) */
    is_cand64 *cand; /* [threads * kc] merge scratch (also the fallback's best-k list) */
} worker;

typedef struct search_ctx {
    const void *gallery;
    int64_t n;
    int dim;
    imgsim_dtype dt;
    int k, kc, nw;
    worker *w;
    /* current query block */
    const float *qf; /* [qb, dim] float32 */
    int64_t qb, q0;
    int64_t ntiles, nsplit, qper;
    double *tilemax; /* [ntiles] max row norm per tile (filled during the first block) */
    int want_norms;
    double gmax; /* max gallery row norm */
    /* outputs */
    int64_t *idx;
    float *score;
    unsigned char *fallback; /* [qb] */
    volatile int failed;
    is_err err;
} search_ctx;

/* One work item: gallery tile (i / nsplit) against query split (i % nsplit). */
static void tile_item(void *vctx, int64_t item, int wi) {
    search_ctx *x = vctx;
    worker *w = &x->w[wi];
    if (x->failed) return;
    int64_t tile = item / x->nsplit, split = item % x->nsplit;
    int64_t g0 = tile * TILE_G, gn = x->n - g0 < TILE_G ? x->n - g0 : TILE_G;
    const int dim = x->dim;
    const float *gt;
    if (x->dt == IMGSIM_F32) {
        gt = (const float *)x->gallery + (size_t)g0 * (size_t)dim;
    } else {
        is_f16_to_f32_n(w->g, (const uint16_t *)x->gallery + (size_t)g0 * (size_t)dim, (size_t)(gn * dim));
        gt = w->g;
    }
    if (x->want_norms && split == 0) {
        double mx = 0.0;
        for (int64_t r = 0; r < gn; r++) {
            double nr = is_norm64(gt + (size_t)r * (size_t)dim, dim);
            if (nr > mx || nr != nr) mx = nr;
        }
        x->tilemax[tile] = mx;
    }
    int64_t qa = split * x->qper, qe = qa + x->qper < x->qb ? qa + x->qper : x->qb;
    const int kc = x->kc;
    for (int64_t qs = qa; qs < qe; qs += TILE_Q) {
        int64_t qn = qe - qs < TILE_Q ? qe - qs : TILE_Q;
        is_err e;
        if (is_sgemm_nt(w->c, TILE_G, x->qf + (size_t)qs * (size_t)dim, qn, gt, gn, dim, &e) != IMGSIM_OK) {
            if (!x->failed) {
                x->err = e;
                x->failed = 1;
            }
            return;
        }
        for (int64_t r = 0; r < qn; r++) {
            const float *crow = w->c + (size_t)r * TILE_G;
            float *sc = w->cs + (size_t)(qs + r) * (size_t)kc;
            int64_t *ix = w->ci + (size_t)(qs + r) * (size_t)kc;
            int *cnt = &w->cn[qs + r];
            float thr = *cnt == kc ? sc[kc - 1] : -INFINITY;
            for (int64_t j = 0; j < gn; j++) {
                if (crow[j] > thr) {
                    is_cand_insert(sc, ix, cnt, kc, crow[j], g0 + j);
                    thr = *cnt == kc ? sc[kc - 1] : -INFINITY;
                }
            }
        }
    }
}

/* Merges one query's candidates from every thread, re-scores them in float64 and writes the
 * top k, or marks the query for the float64 fallback when the bound cannot prove exactness. */
static void finish_query(void *vctx, int64_t r, int wi) {
    search_ctx *x = vctx;
    worker *w = &x->w[wi];
    const int kc = x->kc, k = x->k, dim = x->dim;
    const float *qrow = x->qf + (size_t)r * (size_t)dim;
    int64_t nc = 0;
    float s_cut = -INFINITY;
    int any_full = 0;
    for (int t = 0; t < x->nw; t++) {
        const worker *o = &x->w[t];
        int cnt = o->cn[r];
        const int64_t *ix = o->ci + (size_t)r * (size_t)kc;
        const float *sc = o->cs + (size_t)r * (size_t)kc;
        for (int j = 0; j < cnt; j++) {
            w->cand[nc].i = ix[j];
            w->cand[nc].s = is_dot64(qrow, (const char *)x->gallery + (size_t)ix[j] * (size_t)dim * (x->dt == IMGSIM_F32 ? 4 : 2), dim, x->dt);
            nc++;
        }
        if (cnt == kc) {
            /* this thread dropped rows: all of them scored <= its last kept float32 score */
            any_full = 1;
            if (sc[kc - 1] > s_cut || sc[kc - 1] != sc[kc - 1]) s_cut = sc[kc - 1];
        }
    }
    nc = is_cand64_sort_unique(w->cand, nc);
    int exact = 1;
    if (any_full) {
        if (nc < k) {
            exact = 0;
        } else {
            double delta = is_dot_error_bound(dim, is_norm64(qrow, dim), x->gmax);
            double kth = w->cand[k - 1].s;
            if (!(kth > (double)s_cut + delta)) exact = 0;
        }
    }
    if (!exact) {
        x->fallback[r] = 1;
        return;
    }
    int64_t *oi = x->idx + (size_t)(x->q0 + r) * (size_t)k;
    float *os = x->score + (size_t)(x->q0 + r) * (size_t)k;
    for (int j = 0; j < k; j++) {
        if (j < nc) {
            oi[j] = w->cand[j].i;
            os[j] = (float)w->cand[j].s;
        } else {
            oi[j] = -1;
            os[j] = -INFINITY;
        }
    }
}

/* The float64 fallback for one query of the block: scans the whole gallery, keeping the best k
 * by (float64 score desc, row asc). */
static void fallback_query(void *vctx, int64_t r, int wi) {
    search_ctx *x = vctx;
    if (!x->fallback[r]) return;
    worker *w = &x->w[wi];
    const int k = x->k, dim = x->dim;
    const float *qrow = x->qf + (size_t)r * (size_t)dim;
    is_cand64 *best = w->cand; /* capacity nw * kc >= k */
    int cnt = 0;
    size_t esz = x->dt == IMGSIM_F32 ? 4 : 2;
    for (int64_t g = 0; g < x->n; g++) {
        double s = is_dot64(qrow, (const char *)x->gallery + (size_t)g * (size_t)dim * esz, dim, x->dt);
        if (cnt == k && !(s > best[k - 1].s)) continue;
        int pos = cnt < k ? cnt++ : k - 1;
        while (pos > 0 && best[pos - 1].s < s) {
            best[pos] = best[pos - 1];
            pos--;
        }
        best[pos].s = s;
        best[pos].i = g;
    }
    int64_t *oi = x->idx + (size_t)(x->q0 + r) * (size_t)k;
    float *os = x->score + (size_t)(x->q0 + r) * (size_t)k;
    for (int j = 0; j < k; j++) {
        oi[j] = j < cnt ? best[j].i : -1;
        os[j] = j < cnt ? (float)best[j].s : -INFINITY;
    }
}

static void workers_free(worker *w, int nw) {
    if (!w) return;
    for (int t = 0; t < nw; t++) {
        free(w[t].cs);
        free(w[t].ci);
        free(w[t].cn);
        free(w[t].c);
        free(w[t].g);
        free(w[t].cand);
    }
    free(w);
}

imgsim_status is_search_cpu(int64_t *idx, float *score, const void *gallery, int64_t n, const void *queries,
                            int64_t q, int dim, imgsim_dtype dtype, int k, int threads, is_err *e) {
    if (k < 1) return is_fail(e, IMGSIM_ERR_INVALID_ARG, "search: k must be >= 1 (got %d)", k);
    if (dim < 1) return is_fail(e, IMGSIM_ERR_INVALID_ARG, "search: dim must be >= 1 (got %d)", dim);
    if (n < 0 || q < 0) return is_fail(e, IMGSIM_ERR_INVALID_ARG, "search: negative row count");
    if (dtype != IMGSIM_F32 && dtype != IMGSIM_F16)
        return is_fail(e, IMGSIM_ERR_INVALID_ARG, "search: unknown element type %d", (int)dtype);
    if (q == 0) return IMGSIM_OK;
    if (!idx || !score || !queries || (n > 0 && !gallery))
        return is_fail(e, IMGSIM_ERR_INVALID_ARG, "search: NULL buffer");
    uint64_t tmp;
    if (is_mul_overflow_u64((uint64_t)q, (uint64_t)k, &tmp) || is_mul_overflow_u64((uint64_t)n, (uint64_t)dim, &tmp) ||
        is_mul_overflow_u64((uint64_t)q, (uint64_t)dim, &tmp))
        return is_fail(e, IMGSIM_ERR_TOO_LARGE, "search: sizes overflow");
    if (n == 0) {
        for (int64_t i = 0; i < q * (int64_t)k; i++) idx[i] = -1, score[i] = -INFINITY;
        return IMGSIM_OK;
    }
    if (k > 1 << 20) return is_fail(e, IMGSIM_ERR_TOO_LARGE, "search: k = %d is over the limit 1048576", k);

    is_pool *pool = NULL;
    imgsim_status st = is_pool_create(&pool, threads, e);
    if (st != IMGSIM_OK) return st;
    const int nw = is_pool_size(pool);
    search_ctx x;
    memset(&x, 0, sizeof x);
    x.gallery = gallery;
    x.n = n;
    x.dim = dim;
    x.dt = dtype;
    x.k = k;
    x.kc = k + MARGIN;
    x.nw = nw;
    x.idx = idx;
    x.score = score;
    x.ntiles = (n + TILE_G - 1) / TILE_G;

    /* query block: bounded by QBLOCK and by ~256 MiB of candidate lists over all threads */
    int64_t per_q = (int64_t)nw * x.kc * (int64_t)(sizeof(float) + sizeof(int64_t)) + (int64_t)sizeof(int);
    int64_t qb_max = ((int64_t)256 << 20) / per_q;
    if (qb_max > QBLOCK) qb_max = QBLOCK;
    if (qb_max < 1) qb_max = 1;
    int64_t qb_cap = q < qb_max ? q : qb_max;

    float *qf = NULL;
    x.tilemax = is_calloc((size_t)x.ntiles, sizeof(double));
    x.fallback = is_malloc((size_t)qb_cap);
    x.w = is_calloc((size_t)nw, sizeof(worker));
    if (dtype == IMGSIM_F16) qf = is_malloc_array((size_t)qb_cap * (size_t)dim, sizeof(float));
    int ok = x.tilemax && x.fallback && x.w && (dtype == IMGSIM_F32 || qf);
    for (int t = 0; ok && t < nw; t++) {
        worker *w = &x.w[t];
        w->cs = is_malloc_array((size_t)qb_cap * (size_t)x.kc, sizeof(float));
        w->ci = is_malloc_array((size_t)qb_cap * (size_t)x.kc, sizeof(int64_t));
        w->cn = is_malloc_array((size_t)qb_cap, sizeof(int));
        w->c = is_malloc_array((size_t)TILE_Q * TILE_G, sizeof(float));
        w->g = dtype == IMGSIM_F16 ? is_malloc_array((size_t)TILE_G * (size_t)dim, sizeof(float)) : NULL;
        w->cand = is_malloc_array((size_t)nw * (size_t)x.kc, sizeof(is_cand64));
        ok = w->cs && w->ci && w->cn && w->c && w->cand && (dtype == IMGSIM_F32 || w->g);
    }
    if (!ok) {
        st = is_fail(e, IMGSIM_ERR_NOMEM, "search: out of memory (%lld queries per block, %d threads, k = %d)",
                     (long long)qb_cap, nw, k);
        goto done;
    }

    x.want_norms = 1;
    for (int64_t q0 = 0; q0 < q; q0 += qb_cap) {
        int64_t qb = q - q0 < qb_cap ? q - q0 : qb_cap;
        x.q0 = q0;
        x.qb = qb;
        if (dtype == IMGSIM_F32) {
            x.qf = (const float *)queries + (size_t)q0 * (size_t)dim;
        } else {
            is_f16_to_f32_n(qf, (const uint16_t *)queries + (size_t)q0 * (size_t)dim, (size_t)(qb * dim));
            x.qf = qf;
        }
        for (int t = 0; t < nw; t++) memset(x.w[t].cn, 0, (size_t)qb * sizeof(int));
        memset(x.fallback, 0, (size_t)qb);
        /* split the queries when there are too few tiles to keep every thread busy */
        int64_t qsub = (qb + TILE_Q - 1) / TILE_Q;
        x.nsplit = 1;
        if (x.ntiles < 4 * (int64_t)nw) {
            x.nsplit = (4 * (int64_t)nw + x.ntiles - 1) / x.ntiles;
            if (x.nsplit > qsub) x.nsplit = qsub;
        }
        x.qper = ((qsub + x.nsplit - 1) / x.nsplit) * TILE_Q;
        x.nsplit = (qb + x.qper - 1) / x.qper;
        is_pool_for(pool, x.ntiles * x.nsplit, tile_item, &x);
        if (x.failed) {
            st = is_fail_copy(e, &x.err, IMGSIM_ERR_BACKEND);
            goto done;
        }
        if (x.want_norms) {
            x.gmax = 0.0;
            for (int64_t t = 0; t < x.ntiles; t++)
                if (x.tilemax[t] > x.gmax || x.tilemax[t] != x.tilemax[t]) x.gmax = x.tilemax[t];
            x.want_norms = 0;
        }
        is_pool_for(pool, qb, finish_query, &x);
        int64_t nfb = 0;
        for (int64_t r = 0; r < qb; r++) nfb += x.fallback[r];
        if (nfb) {
            is_log_debug("search: %lld of %lld queries re-ranked by a float64 scan (near-ties)", (long long)nfb,
                         (long long)qb);
            is_pool_for(pool, qb, fallback_query, &x);
        }
    }

done:
    workers_free(x.w, nw);
    free(x.tilemax);
    free(x.fallback);
    free(qf);
    is_pool_destroy(pool);
    return st;
}
