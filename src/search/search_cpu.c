/*
 * search_cpu.c: exact top-k inner-product search on the CPU.
 *
 * Shapes: gallery G [n, dim], queries Q [q, dim] (float32 or float16), outputs idx/score [q, k].
 *
 * Queries are taken in blocks of up to QBLOCK rows (as float32 [qb, dim]). Within a block the
 * work items are gallery tiles of TILE_G rows (times, when there are too few tiles to keep every
 * thread busy, a split of the block's queries). An item converts its tile if needed (per-thread
 * buffers), multiplies it with a sub-block of the queries (C [rows, TILE_G] in a per-thread
 * buffer) and, while C is in cache, folds each row of C into that thread's bounded candidate list
 * for the query (the best k + margin by approximate score; a "compare with the current last, skip"
 * test rejects nearly every score). The q x n score matrix never exists; memory is
 * O(threads * (qb * (k + margin) + tile)).
 *
 * Two screening passes, both exact in the end:
 *  - bf16: where oneDNN has a native bfloat16 kernel (AVX512-BF16, AMX), queries and gallery
 *    tiles are rounded to bfloat16 and multiplied at about twice the float32 rate. The rounding
 *    error is bounded (topk.h: ims_dot_error_bound_bf16_rows, from the actual rounding-error norms of the
 * query and the worst gallery row: typically ~0.3% of |q||g|), so the candidates are proven complete or the
 * query is retried in float32. Used for >= BF16_MIN_Q queries. Data whose top scores are dense within that
 * bound (non-negative CNN features: most queries unproven) would pay bf16 + float32, so the first PROBE
 * queries are screened alone and bf16 is dropped for the rest when over a quarter of them needed the retry.
 *  - float32: one-thread oneDNN sgemm tiles; the bound is gamma(dim) |q| max|g|.
 * Each query's candidates are re-scored in float64 in order of approximate score until no
 * remaining candidate can reach the current k-th exact score, ranked by (score desc, row asc),
 * and the dropped rows are proven unable to enter the top k (topk.h); a query that the float32
 * pass cannot prove (many near-ties, e.g. duplicated rows) is recomputed by a float64 scan of
 * the gallery. So the result equals the exact float64 top-k with ties broken by lower row.
 * Scores returned are the float64 scores rounded to float32. Rows past n (k > n) get idx -1 and
 * score -inf. Non-finite feature values give unspecified (but memory-safe) results.
 *
 * IMGSIM_SEARCH_SCREEN=f32|bf16 in the environment forces a screening pass (tests, benchmarks).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "search/search.h"
#include "search/topk.h"

enum {
    TILE_G = 512,     /* gallery rows per tile */
    TILE_Q = 1024,    /* queries per float32 sgemm */
    BF_M = 512,       /* queries per bf16 matmul (the primitive's fixed m) */
    QBLOCK = 4096,    /* queries per block (bounds per-thread candidate memory) */
    MARGIN_F32 = 16,  /* extra candidates per query beyond k, float32 pass */
    MARGIN_BF16 = 128, /* the same, bf16 pass (its error bound is wider) */
    BF16_MIN_Q = 32,  /* fewer queries: float32 only (bf16 conversions would not pay) */
    PROBE = 64        /* queries screened in bf16 first, to see whether bf16 pays on this data */
};

typedef enum pass_mode { PASS_F32 = 0, PASS_BF16 = 1 } pass_mode;

/* Query status after a pass. */
enum { Q_DONE = 0, Q_RETRY_F32 = 1, Q_FALLBACK = 2 };

/* Per-thread state. */
typedef struct worker {
    float *cs;       /* [qb, kc] candidate approximate scores, best first */
    int64_t *ci;     /* [qb, kc] candidate rows */
    int *cn;         /* [qb] candidates held */
    float *c;        /* [max(TILE_Q, BF_M), TILE_G] product tile */
    float *g;        /* [TILE_G, dim] float32 copy of a float16 tile (NULL for float32) */
    uint16_t *gb;    /* [TILE_G, dim] bf16 tile (bf16 pass only) */
    ims_cand64 *cand; /* [k] exact top-k being built (also the fallback's list) */
    struct approx {
        float a;
        int64_t i;
    } * ca; /* [threads * kc] merge scratch */
} worker;

typedef struct search_ctx {
    const void *gallery;
    int64_t n;
    int dim;
    imgsim_dtype dt;
    int k, nw;
    worker *w;
    /* the current pass */
    pass_mode mode;
    int kc, sub;         /* candidates per query; queries per product */
    const float *qf;     /* [qb, dim] float32 queries */
    const uint16_t *qbf; /* [qb rounded up to BF_M, dim] bf16 queries (bf16 pass) */
    const int64_t *qmap; /* [qb] output row of each block row */
    double *qnorm;       /* [qb] */
    unsigned char *qst;  /* [qb] Q_* */
    int64_t qb;
    int64_t ntiles, nsplit, qper;
    double *tilemax; /* [ntiles] max row norm per tile (filled during the first pass) */
    double *tileerr; /* [ntiles] max bf16 rounding-error norm per tile (first bf16 pass) */
    double *qerr;    /* [qb] bf16 rounding-error norm of each query (bf16 pass) */
    int want_norms, want_errs;
    double gmax;            /* max gallery row norm */
    double gerr;            /* max bf16 rounding-error norm of a gallery row */
    ims_bf16_gemm *bf;       /* the bf16 plan of the current pass */
    ims_bf16_gemm *bf_main;  /* m = BF_M */
    ims_bf16_gemm *bf_probe; /* m = PROBE */
    /* outputs */
    int64_t *idx;
    float *score;
    atomic_int failed; /* the first failing item claims err */
    ims_err err;
} search_ctx;

static const void *grow_ptr(const search_ctx *x, int64_t row) {
    return (const char *)x->gallery + (size_t)row * (size_t)x->dim * (x->dt == IMGSIM_F32 ? 4 : 2);
}

static void set_failed(search_ctx *x, const ims_err *e) {
    if (!atomic_exchange(&x->failed, 1)) x->err = *e;
}

/* One work item: gallery tile (i / nsplit) against query split (i % nsplit). */
static void tile_item(void *vctx, int64_t item, int wi) {
    search_ctx *x = vctx;
    worker *w = &x->w[wi];
    if (atomic_load_explicit(&x->failed, memory_order_relaxed)) return;
    int64_t tile = item / x->nsplit, split = item % x->nsplit;
    int64_t g0 = tile * TILE_G, gn = x->n - g0 < TILE_G ? x->n - g0 : TILE_G;
    const int dim = x->dim, kc = x->kc;
    const float *gt;
    if (x->dt == IMGSIM_F32) {
        gt = (const float *)x->gallery + (size_t)g0 * (size_t)dim;
    } else {
        ims_f16_to_f32_n(w->g, (const uint16_t *)x->gallery + (size_t)g0 * (size_t)dim, (size_t)(gn * dim));
        gt = w->g;
    }
    if (x->want_norms && split == 0) {
        double mx = 0.0;
        for (int64_t r = 0; r < gn; r++) {
            double nr = ims_norm64(gt + (size_t)r * (size_t)dim, dim);
            if (nr > mx || nr != nr) mx = nr;
        }
        x->tilemax[tile] = mx;
    }
    if (x->mode == PASS_BF16) {
        ims_f32_to_bf16_n(w->gb, gt, (size_t)(gn * dim)); /* rows >= gn: ignored */
        if (x->want_errs && split == 0) {
            double mx = 0.0;
            for (int64_t r = 0; r < gn; r++) {
                double er =
                    ims_bf16_error_norm(gt + (size_t)r * (size_t)dim, w->gb + (size_t)r * (size_t)dim, dim);
                if (er > mx || er != er) mx = er;
            }
            x->tileerr[tile] = mx;
        }
    }
    int64_t qa = split * x->qper, qe = qa + x->qper < x->qb ? qa + x->qper : x->qb;
    for (int64_t qs = qa; qs < qe; qs += x->sub) {
        int64_t qn = qe - qs < x->sub ? qe - qs : x->sub;
        ims_err e;
        imgsim_status st;
        if (x->mode == PASS_BF16)
            st = ims_bf16_gemm_run(x->bf, wi, w->c, x->qbf + (size_t)qs * (size_t)dim, w->gb, &e);
        else
            st = ims_sgemm_nt(w->c, TILE_G, x->qf + (size_t)qs * (size_t)dim, qn, gt, gn, dim, &e);
        if (st != IMGSIM_OK) {
            set_failed(x, &e);
            return;
        }
        for (int64_t r = 0; r < qn; r++)
            ims_fold_row(w->cs + (size_t)(qs + r) * (size_t)kc, w->ci + (size_t)(qs + r) * (size_t)kc,
                        &w->cn[qs + r], kc, w->c + (size_t)r * TILE_G, g0, gn);
    }
}

static int approx_cmp(const void *pa, const void *pb) {
    const struct approx *a = pa, *b = pb;
    if (a->a > b->a) return -1;
    if (a->a < b->a) return 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* Inserts (s, i) into an exact top-k list ordered by (s desc, i asc). */
static void exact_insert(ims_cand64 *best, int *cnt, int k, double s, int64_t i) {
    if (*cnt == k && !(s > best[k - 1].s || (s == best[k - 1].s && i < best[k - 1].i))) return;
    int pos = *cnt < k ? (*cnt)++ : k - 1;
    while (pos > 0 && (best[pos - 1].s < s || (best[pos - 1].s == s && best[pos - 1].i > i))) {
        best[pos] = best[pos - 1];
        pos--;
    }
    best[pos].s = s;
    best[pos].i = i;
}

/* Merges one query's candidates from every thread and re-scores them in float64, best
 * approximate score first, until no remaining candidate can reach the k-th exact score (its
 * approximate score + delta is below it). The result is exact when every row that no thread kept
 * is also unable to reach it (s_cut + delta < k-th exact score); otherwise the query is marked
 * for the next pass (bf16 -> float32 -> float64 scan). */
static void finish_query(void *vctx, int64_t r, int wi) {
    search_ctx *x = vctx;
    worker *w = &x->w[wi];
    const int kc = x->kc, k = x->k, dim = x->dim;
    const float *qrow = x->qf + (size_t)r * (size_t)dim;
    double delta = x->mode == PASS_BF16
                       ? ims_dot_error_bound_bf16_rows(dim, x->qnorm[r], x->qerr[r], x->gmax, x->gerr)
                       : ims_dot_error_bound(dim, x->qnorm[r], x->gmax);
    int64_t nc = 0;
    double s_cut = -INFINITY;
    int any_full = 0;
    for (int t = 0; t < x->nw; t++) {
        const worker *o = &x->w[t];
        int cnt = o->cn[r];
        const int64_t *ix = o->ci + (size_t)r * (size_t)kc;
        const float *sc = o->cs + (size_t)r * (size_t)kc;
        for (int j = 0; j < cnt; j++) {
            w->ca[nc].a = sc[j];
            w->ca[nc].i = ix[j];
            nc++;
        }
        if (cnt == kc) {
            /* this thread dropped rows: all of them scored <= its last kept approximate score */
            any_full = 1;
            if (sc[kc - 1] > s_cut || sc[kc - 1] != sc[kc - 1]) s_cut = sc[kc - 1];
        }
    }
    qsort(w->ca, (size_t)nc, sizeof *w->ca, approx_cmp);
    int cnt = 0;
    for (int64_t j = 0; j < nc; j++) {
        if (cnt == k && (double)w->ca[j].a + delta < w->cand[k - 1].s) break;
        exact_insert(w->cand, &cnt, k, ims_dot64(qrow, grow_ptr(x, w->ca[j].i), dim, x->dt), w->ca[j].i);
    }
    if (any_full && !(cnt == k && s_cut + delta < w->cand[k - 1].s)) {
        x->qst[r] = x->mode == PASS_BF16 ? Q_RETRY_F32 : Q_FALLBACK;
        return;
    }
    x->qst[r] = Q_DONE;
    int64_t *oi = x->idx + (size_t)x->qmap[r] * (size_t)k;
    float *os = x->score + (size_t)x->qmap[r] * (size_t)k;
    for (int j = 0; j < k; j++) {
        oi[j] = j < cnt ? w->cand[j].i : -1;
        os[j] = j < cnt ? (float)w->cand[j].s : -INFINITY;
    }
}

/* The float64 fallback for one query: scans the whole gallery, keeping the best k by (float64
 * score desc, row asc). */
static void fallback_query(void *vctx, int64_t r, int wi) {
    search_ctx *x = vctx;
    if (x->qst[r] != Q_FALLBACK) return;
    worker *w = &x->w[wi];
    const int k = x->k, dim = x->dim;
    const float *qrow = x->qf + (size_t)r * (size_t)dim;
    int cnt = 0;
    for (int64_t g = 0; g < x->n; g++)
        exact_insert(w->cand, &cnt, k, ims_dot64(qrow, grow_ptr(x, g), dim, x->dt), g);
    int64_t *oi = x->idx + (size_t)x->qmap[r] * (size_t)k;
    float *os = x->score + (size_t)x->qmap[r] * (size_t)k;
    for (int j = 0; j < k; j++) {
        oi[j] = j < cnt ? w->cand[j].i : -1;
        os[j] = j < cnt ? (float)w->cand[j].s : -INFINITY;
    }
    x->qst[r] = Q_DONE;
}

/* One screening pass over the whole gallery for the queries qf [qb, dim] (output rows qmap),
 * then the float64 re-ranking; leaves x->qst[r] = Q_RETRY_F32 for the queries a bf16 pass could
 * not prove, and runs the float64 scan for those a float32 pass could not. */
static imgsim_status run_pass(search_ctx *x, ims_pool *pool, pass_mode mode, ims_bf16_gemm *plan, int plan_m,
                              const float *qf, const uint16_t *qbf, int64_t qb, const int64_t *qmap,
                              ims_err *e) {
    x->mode = mode;
    x->bf = plan;
    x->kc = x->k + (mode == PASS_BF16 ? MARGIN_BF16 : MARGIN_F32);
    x->sub = mode == PASS_BF16 ? plan_m : TILE_Q;
    x->qf = qf;
    x->qbf = qbf;
    x->qb = qb;
    x->qmap = qmap;
    for (int64_t r = 0; r < qb; r++) {
        x->qnorm[r] = ims_norm64(qf + (size_t)r * (size_t)x->dim, x->dim);
        if (mode == PASS_BF16)
            x->qerr[r] =
                ims_bf16_error_norm(qf + (size_t)r * (size_t)x->dim, qbf + (size_t)r * (size_t)x->dim, x->dim);
    }
    for (int t = 0; t < x->nw; t++)
        memset(x->w[t].cn, 0, (size_t)qb * sizeof(int));
    /* split the queries when there are too few tiles to keep every thread busy */
    int64_t nsub = (qb + x->sub - 1) / x->sub;
    x->nsplit = 1;
    if (x->ntiles < 4 * (int64_t)x->nw) {
        x->nsplit = (4 * (int64_t)x->nw + x->ntiles - 1) / x->ntiles;
        if (x->nsplit > nsub) x->nsplit = nsub;
    }
    x->qper = ((nsub + x->nsplit - 1) / x->nsplit) * x->sub;
    x->nsplit = (qb + x->qper - 1) / x->qper;
    ims_pool_for(pool, x->ntiles * x->nsplit, tile_item, x);
    if (atomic_load(&x->failed)) return ims_fail_copy(e, &x->err, IMGSIM_ERR_BACKEND);
    if (x->want_norms) {
        x->gmax = 0.0;
        for (int64_t t = 0; t < x->ntiles; t++)
            if (x->tilemax[t] > x->gmax || x->tilemax[t] != x->tilemax[t]) x->gmax = x->tilemax[t];
        x->want_norms = 0;
    }
    if (mode == PASS_BF16 && x->want_errs) {
        x->gerr = 0.0;
        for (int64_t t = 0; t < x->ntiles; t++)
            if (x->tileerr[t] > x->gerr || x->tileerr[t] != x->tileerr[t]) x->gerr = x->tileerr[t];
        x->want_errs = 0;
    }
    ims_pool_for(pool, qb, finish_query, x);
    if (mode == PASS_F32) {
        int64_t nfb = 0;
        for (int64_t r = 0; r < qb; r++)
            nfb += x->qst[r] == Q_FALLBACK;
        if (nfb) {
            ims_log_debug("search: %lld of %lld queries re-ranked by a float64 scan (near-ties)",
                         (long long)nfb, (long long)qb);
            ims_pool_for(pool, qb, fallback_query, x);
        }
    }
    return IMGSIM_OK;
}

/* The bf16 pass for the queries qf [nq, dim] (output rows qmap), then float32 for those it could
 * not prove; *nretry gets their count. qbf, qretry, qmap_retry are scratch of >= nq rows (qbf
 * rounded up to plan_m). */
static imgsim_status screen_bf16(search_ctx *x, ims_pool *pool, ims_bf16_gemm *plan, int plan_m,
                                 const float *qf, int64_t nq, const int64_t *qmap, uint16_t *qbf,
                                 float *qretry, int64_t *qmap_retry, int64_t *nretry, ims_err *e) {
    const int dim = x->dim;
    int64_t padded = (nq + plan_m - 1) / plan_m * plan_m;
    ims_f32_to_bf16_n(qbf, qf, (size_t)(nq * dim));
    memset(qbf + (size_t)nq * (size_t)dim, 0, (size_t)(padded - nq) * (size_t)dim * sizeof(uint16_t));
    imgsim_status st = run_pass(x, pool, PASS_BF16, plan, plan_m, qf, qbf, nq, qmap, e);
    if (st != IMGSIM_OK) return st;
    int64_t nr = 0;
    for (int64_t r = 0; r < nq; r++) {
        if (x->qst[r] != Q_RETRY_F32) continue;
        memcpy(qretry + (size_t)nr * (size_t)dim, qf + (size_t)r * (size_t)dim, (size_t)dim * sizeof(float));
        qmap_retry[nr++] = qmap[r];
    }
    *nretry = nr;
    if (!nr) return IMGSIM_OK;
    ims_log_debug("search: %lld of %lld queries not proven by the bf16 pass, redone in float32", (long long)nr,
                 (long long)nq);
    return run_pass(x, pool, PASS_F32, NULL, 0, qretry, NULL, nr, qmap_retry, e);
}

static void workers_free(worker *w, int nw) {
    if (!w) return;
    for (int t = 0; t < nw; t++) {
        free(w[t].cs);
        free(w[t].ci);
        free(w[t].cn);
        free(w[t].c);
        free(w[t].g);
        free(w[t].gb);
        free(w[t].cand);
        free(w[t].ca);
    }
    free(w);
}

/* Whether to screen in bf16: IMGSIM_SEARCH_SCREEN=bf16|f32 forces it, else >= BF16_MIN_Q queries,
 * dim >= 64 and a gallery of at least half a tile (the product has a fixed TILE_G width); it is
 * then used only where oneDNN has a native bf16 kernel. */
static int want_bf16(int64_t q, int64_t n, int dim) {
    ims_screen screen = ims_tuning_get()->search_screen;
    if (screen != IMS_SCREEN_AUTO) return screen == IMS_SCREEN_BF16;
    return q >= BF16_MIN_Q && dim >= 64 && n >= TILE_G / 2;
}

/* Query-block scratch of one search. */
typedef struct qscratch {
    int64_t qb_cap;      /* queries per block */
    float *qf;           /* [qb_cap, dim] float32 copy of a float16 query block (float16 only) */
    uint16_t *qbf;       /* [qb_cap rounded up to BF_M, dim] bf16 queries (bf16 only) */
    float *qretry;       /* [qb_cap, dim] queries the bf16 pass could not prove (bf16 only) */
    int64_t *qmap;       /* [qb_cap] output row of each block row */
    int64_t *qmap_retry; /* [qb_cap] the same for qretry (bf16 only) */
} qscratch;

/* Plans bf16 screening where it is wanted and oneDNN has a native kernel (x->bf_main, and
 * x->bf_probe when it can be made); *use_bf says whether it is used. Fails only for NOMEM. */
static imgsim_status plan_bf16(search_ctx *x, int64_t q, int *use_bf, ims_err *e) {
    *use_bf = 0;
    if (!want_bf16(q, x->n, x->dim)) return IMGSIM_OK;
    ims_err be;
    imgsim_status bs = ims_bf16_gemm_create(&x->bf_main, BF_M, TILE_G, x->dim, x->nw, &be);
    if (bs == IMGSIM_OK) {
        *use_bf = 1;
        if (ims_bf16_gemm_create(&x->bf_probe, PROBE, TILE_G, x->dim, x->nw, &be) != IMGSIM_OK)
            x->bf_probe = NULL;
    } else if (bs == IMGSIM_ERR_NOMEM)
        return ims_fail_copy(e, &be, bs);
    else
        ims_log_debug("%s; searching in float32", be.msg);
    return IMGSIM_OK;
}

/* Allocates the search's tables, the query scratch s and each worker's buffers for blocks of
 * s->qb_cap queries and kc_max candidates per query. */
static imgsim_status search_alloc(search_ctx *x, qscratch *s, int use_bf, int kc_max, ims_err *e) {
    const int nw = x->nw, dim = x->dim, k = x->k;
    const imgsim_dtype dtype = x->dt;
    const int64_t qb_cap = s->qb_cap, qb_pad = (qb_cap + BF_M - 1) / BF_M * BF_M;
    x->tilemax = ims_calloc((size_t)x->ntiles, sizeof(double));
    x->tileerr = ims_calloc((size_t)x->ntiles, sizeof(double));
    x->qst = ims_malloc((size_t)qb_cap);
    x->qnorm = ims_malloc_array((size_t)qb_cap, sizeof(double));
    x->qerr = ims_calloc((size_t)qb_cap, sizeof(double));
    x->w = ims_calloc((size_t)nw, sizeof(worker));
    s->qmap = ims_malloc_array((size_t)qb_cap, sizeof(int64_t));
    if (dtype == IMGSIM_F16) s->qf = ims_malloc_array((size_t)qb_cap * (size_t)dim, sizeof(float));
    if (use_bf) {
        s->qbf = ims_calloc((size_t)qb_pad * (size_t)dim, sizeof(uint16_t));
        s->qretry = ims_malloc_array((size_t)qb_cap * (size_t)dim, sizeof(float));
        s->qmap_retry = ims_malloc_array((size_t)qb_cap, sizeof(int64_t));
    }
    int ok = x->tilemax && x->tileerr && x->qerr && x->qst && x->qnorm && x->w && s->qmap &&
             (dtype == IMGSIM_F32 || s->qf) && (!use_bf || (s->qbf && s->qretry && s->qmap_retry));
    const size_t cmax = (size_t)(TILE_Q > BF_M ? TILE_Q : BF_M) * TILE_G;
    for (int t = 0; ok && t < nw; t++) {
        worker *w = &x->w[t];
        w->cs = ims_malloc_array((size_t)qb_cap * (size_t)kc_max, sizeof(float));
        w->ci = ims_malloc_array((size_t)qb_cap * (size_t)kc_max, sizeof(int64_t));
        w->cn = ims_malloc_array((size_t)qb_cap, sizeof(int));
        w->c = ims_malloc_array(cmax, sizeof(float));
        w->g = dtype == IMGSIM_F16 ? ims_malloc_array((size_t)TILE_G * (size_t)dim, sizeof(float)) : NULL;
        w->gb = use_bf ? ims_calloc((size_t)TILE_G * (size_t)dim, sizeof(uint16_t)) : NULL;
        w->cand = ims_malloc_array((size_t)k, sizeof(ims_cand64));
        w->ca = ims_malloc_array((size_t)nw * (size_t)kc_max, sizeof *w->ca);
        ok = w->cs && w->ci && w->cn && w->c && w->cand && w->ca && (dtype == IMGSIM_F32 || w->g) &&
             (!use_bf || w->gb);
    }
    if (!ok)
        return ims_fail(e, IMGSIM_ERR_NOMEM,
                        "search: out of memory (%lld queries per block, %d threads, k = %d)",
                        (long long)qb_cap, nw, k);
    return IMGSIM_OK;
}

static void search_free(search_ctx *x, qscratch *s) {
    workers_free(x->w, x->nw);
    free(x->tilemax);
    free(x->tileerr);
    free(x->qerr);
    free(x->qst);
    free(x->qnorm);
    free(s->qf);
    free(s->qbf);
    free(s->qretry);
    free(s->qmap);
    free(s->qmap_retry);
    ims_bf16_gemm_destroy(x->bf_main);
    ims_bf16_gemm_destroy(x->bf_probe);
}

/* Searches the qb queries from row q0 on: the first block of at least 4 * PROBE queries probes
 * whether bf16 pays (*probed), then bf16 screening while *use_bf, else float32. */
static imgsim_status search_block(search_ctx *x, ims_pool *pool, qscratch *s, const void *queries, int64_t q0,
                                  int64_t qb, int *use_bf, int *probed, ims_err *e) {
    const int dim = x->dim;
    imgsim_status st;
    const float *qblock;
    if (x->dt == IMGSIM_F32) {
        qblock = (const float *)queries + (size_t)q0 * (size_t)dim;
    } else {
        ims_f16_to_f32_n(s->qf, (const uint16_t *)queries + (size_t)q0 * (size_t)dim, (size_t)(qb * dim));
        qblock = s->qf;
    }
    for (int64_t r = 0; r < qb; r++)
        s->qmap[r] = q0 + r;
    int64_t off = 0, nr = 0;
    if (*use_bf && x->bf_probe && !*probed && qb >= 4 * PROBE) {
        /* probe: if bf16 cannot prove over a quarter of these queries (dense near-ties, e.g.
         * non-negative CNN features), float32 is faster for the rest */
        *probed = 1;
        st = screen_bf16(x, pool, x->bf_probe, PROBE, qblock, PROBE, s->qmap, s->qbf, s->qretry,
                         s->qmap_retry, &nr, e);
        if (st != IMGSIM_OK) return st;
        if (4 * nr > PROBE) {
            *use_bf = 0;
            ims_log_debug("search: bf16 screening left %lld of %d probe queries unproven; float32 from here",
                          (long long)nr, PROBE);
        }
        off = PROBE;
    }
    if (*use_bf) {
        st = screen_bf16(x, pool, x->bf_main, BF_M, qblock + (size_t)off * (size_t)dim, qb - off,
                         s->qmap + off, s->qbf, s->qretry, s->qmap_retry, &nr, e);
        if (st != IMGSIM_OK) return st;
        if (2 * nr > qb - off) *use_bf = 0; /* near-ties everywhere: bf16 screening does not pay here */
        return IMGSIM_OK;
    }
    return run_pass(x, pool, PASS_F32, NULL, 0, qblock + (size_t)off * (size_t)dim, NULL, qb - off,
                    s->qmap + off, e);
}

imgsim_status ims_search_cpu(int64_t *idx, float *score, const void *gallery, int64_t n, const void *queries,
                             int64_t q, int dim, imgsim_dtype dtype, int k, int threads, ims_err *e) {
    if (k < 1) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "search: k must be >= 1 (got %d)", k);
    if (dim < 1) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "search: dim must be >= 1 (got %d)", dim);
    if (n < 0 || q < 0) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "search: negative row count");
    if (dtype != IMGSIM_F32 && dtype != IMGSIM_F16)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "search: unknown element type %d", (int)dtype);
    if (q == 0) return IMGSIM_OK;
    if (!idx || !score || !queries || (n > 0 && !gallery))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "search: NULL buffer");
    uint64_t tmp;
    if (ims_mul_overflow_u64((uint64_t)q, (uint64_t)k, &tmp) ||
        ims_mul_overflow_u64((uint64_t)n, (uint64_t)dim, &tmp) ||
        ims_mul_overflow_u64((uint64_t)q, (uint64_t)dim, &tmp))
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "search: sizes overflow");
    if (n == 0) {
        for (int64_t i = 0; i < q * (int64_t)k; i++)
            idx[i] = -1, score[i] = -INFINITY;
        return IMGSIM_OK;
    }
    if (k > 1 << 20) return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "search: k = %d is over the limit 1048576", k);

    ims_pool *pool = NULL;
    imgsim_status st = ims_pool_create(&pool, threads, e);
    if (st != IMGSIM_OK) return st;
    const int nw = ims_pool_size(pool);
    search_ctx x;
    memset(&x, 0, sizeof x);
    x.gallery = gallery;
    x.n = n;
    x.dim = dim;
    x.dt = dtype;
    x.k = k;
    x.nw = nw;
    x.idx = idx;
    x.score = score;
    x.ntiles = (n + TILE_G - 1) / TILE_G;
    const int kc_max = k + (MARGIN_BF16 > MARGIN_F32 ? MARGIN_BF16 : MARGIN_F32);

    /* query block: bounded by QBLOCK and by ~256 MiB of candidate lists over all threads */
    int64_t per_q = (int64_t)nw * kc_max * (int64_t)(sizeof(float) + sizeof(int64_t)) + (int64_t)sizeof(int);
    int64_t qb_max = ((int64_t)256 << 20) / per_q;
    if (qb_max > QBLOCK) qb_max = QBLOCK;
    if (qb_max < 1) qb_max = 1;
    qscratch s;
    memset(&s, 0, sizeof s);
    s.qb_cap = q < qb_max ? q : qb_max;

    int use_bf;
    st = plan_bf16(&x, q, &use_bf, e);
    if (st == IMGSIM_OK) st = search_alloc(&x, &s, use_bf, kc_max, e);
    x.want_norms = 1;
    x.want_errs = 1;
    int probed = 0;
    for (int64_t q0 = 0; st == IMGSIM_OK && q0 < q; q0 += s.qb_cap)
        st = search_block(&x, pool, &s, queries, q0, q - q0 < s.qb_cap ? q - q0 : s.qb_cap, &use_bf, &probed,
                          e);
    search_free(&x, &s);
    ims_pool_destroy(pool);
    return st;
}
