/*
 * dedup.c: near-duplicate pairs within one set of rows: every i < j with x_i . x_j >= threshold.
 *
 * Shapes: x [n, dim] (float32 or float16). The upper triangle of the n x n similarity matrix is
 * covered by tile pairs (bi <= bj) of TILE rows each; a work item multiplies the two tiles
 * (one-thread oneDNN sgemm, C [TILE, TILE] per thread) and keeps the entries above the diagonal
 * whose float32 score is >= threshold - delta, where delta bounds the float32 error for the
 * tiles' largest row norms (topk.h). Those candidates are re-scored in float64 and kept when the
 * float64 score is >= threshold, so the pair set equals the exact (float64) one; the reported
 * score is the float64 score rounded to float32. No n x n matrix exists: memory is the tiles plus
 * the pairs found. Pairs are delivered to the callback on the calling thread, sorted by (i, j).
 *
 * Where oneDNN has a native bf16 kernel (and dim >= 64), the tiles are multiplied in bfloat16
 * (about twice the float32 rate) with the a-posteriori bf16 bound as delta (from the tiles'
 * largest rounding-error norms, topk.h): the pair set stays exact, only pairs within that bound
 * below the threshold cost a float64 re-score.
 * IMGSIM_SEARCH_SCREEN=f32|bf16 forces the choice.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "search/search.h"
#include "search/topk.h"

enum { TILE = 512 };

typedef struct pair {
    int64_t i, j;
    float s;
} pair;

typedef struct dworker {
    float *a, *b;      /* [TILE, dim] float32 copies of float16 tiles */
    uint16_t *ab, *bb; /* [TILE, dim] bf16 tiles (bf16 products only) */
    float *c;          /* [TILE, TILE] */
    pair *pairs;       /* found pairs */
    size_t np, cap;
} dworker;

typedef struct dedup_ctx {
    const void *x;
    int64_t n, nb;
    int part, parts; /* this call's share of the tile pairs */
    int dim;
    imgsim_dtype dt;
    float threshold;
    double *tilemax;  /* [nb] max row norm per tile */
    ims_bf16_gemm *bf; /* bf16 products [TILE, TILE], or NULL for float32 */
    dworker *w;
    atomic_int failed; /* the first failing item claims fst and err */
    imgsim_status fst;
    ims_err err;
} dedup_ctx;

/* Tile t as float32 rows (a pointer into x, or converted into buf); *rows gets its row count. */
static const float *tile_rows(const dedup_ctx *x, int64_t t, float *buf, int64_t *rows) {
    int64_t r0 = t * TILE;
    *rows = x->n - r0 < TILE ? x->n - r0 : TILE;
    if (x->dt == IMGSIM_F32) return (const float *)x->x + (size_t)r0 * (size_t)x->dim;
    ims_f16_to_f32_n(buf, (const uint16_t *)x->x + (size_t)r0 * (size_t)x->dim, (size_t)(*rows * x->dim));
    return buf;
}

/* Pre-pass item: the largest row norm of tile t. */
static void norm_item(void *vctx, int64_t t, int wi) {
    dedup_ctx *x = vctx;
    int64_t rows;
    const float *a = tile_rows(x, t, x->w[wi].a, &rows);
    double mx = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        double nr = ims_norm64(a + (size_t)r * (size_t)x->dim, x->dim);
        if (nr > mx || nr != nr) mx = nr;
    }
    x->tilemax[t] = mx;
}

static int push_pair(dworker *w, int64_t i, int64_t j, float s) {
    if (w->np == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 1024;
        pair *p = ims_realloc(w->pairs, nc * sizeof *p);
        if (!p) return -1;
        w->pairs = p;
        w->cap = nc;
    }
    w->pairs[w->np].i = i;
    w->pairs[w->np].j = j;
    w->pairs[w->np].s = s;
    w->np++;
    return 0;
}

/* Item (bi, bj) with bi <= bj (items with bi > bj do nothing). */
static void pair_item(void *vctx, int64_t item, int wi) {
    dedup_ctx *x = vctx;
    if (atomic_load_explicit(&x->failed, memory_order_relaxed)) return;
    int64_t bi = item / x->nb, bj = item % x->nb;
    if (bi > bj) return;
    if (x->parts > 1 && (bi * x->nb - bi * (bi - 1) / 2 + (bj - bi)) % x->parts != x->part) return; /* not ours */
    dworker *w = &x->w[wi];
    const int dim = x->dim;
    int64_t ra, rb;
    const float *a = tile_rows(x, bi, w->a, &ra);
    const float *b = bi == bj ? a : tile_rows(x, bj, w->b, &rb);
    if (bi == bj) rb = ra;
    ims_err e;
    imgsim_status gst;
    double ea = 0.0, eb = 0.0;
    if (x->bf) {
        ims_f32_to_bf16_n(w->ab, a, (size_t)(ra * dim)); /* rows >= ra: stale, their scores are ignored */
        if (bi != bj) ims_f32_to_bf16_n(w->bb, b, (size_t)(rb * dim));
        /* the tiles' largest bf16 rounding-error norms, for the a-posteriori bound */
        ea = eb = 0.0;
        for (int64_t r = 0; r < ra; r++) {
            double er = ims_bf16_error_norm(a + (size_t)r * (size_t)dim, w->ab + (size_t)r * (size_t)dim, dim);
            if (er > ea || er != er) ea = er;
        }
        if (bi == bj) {
            eb = ea;
        } else {
            for (int64_t r = 0; r < rb; r++) {
                double er =
                    ims_bf16_error_norm(b + (size_t)r * (size_t)dim, w->bb + (size_t)r * (size_t)dim, dim);
                if (er > eb || er != er) eb = er;
            }
        }
        gst = ims_bf16_gemm_run(x->bf, wi, w->c, w->ab, bi == bj ? w->ab : w->bb, &e);
    } else {
        gst = ims_sgemm_nt(w->c, TILE, a, ra, b, rb, dim, &e);
    }
    if (gst != IMGSIM_OK) {
        if (!atomic_exchange(&x->failed, 1)) {
            x->err = e;
            x->fst = IMGSIM_ERR_BACKEND;
        }
        return;
    }
    double delta = x->bf ? ims_dot_error_bound_bf16_rows(dim, x->tilemax[bi], ea, x->tilemax[bj], eb)
                         : ims_dot_error_bound(dim, x->tilemax[bi], x->tilemax[bj]);
    float cut = (float)((double)x->threshold - delta);
    if (cut > -INFINITY) cut = nextafterf(cut, -INFINITY); /* the float rounding of the cut */
    size_t esz = x->dt == IMGSIM_F32 ? 4 : 2;
    for (int64_t r = 0; r < ra; r++) {
        const float *crow = w->c + (size_t)r * TILE;
        int64_t i = bi * TILE + r;
        for (int64_t cidx = bi == bj ? r + 1 : 0; cidx < rb; cidx++) {
            if (!(crow[cidx] >= cut)) continue;
            int64_t j = bj * TILE + cidx;
            double s = ims_dot64(a + (size_t)r * (size_t)dim,
                                (const char *)x->x + (size_t)j * (size_t)dim * esz, dim, x->dt);
            if (s >= (double)x->threshold && push_pair(w, i, j, (float)s) != 0) {
                if (!atomic_exchange(&x->failed, 1))
                    x->fst =
                        ims_fail(&x->err, IMGSIM_ERR_NOMEM, "dedup: out of memory holding %zu pairs", w->np);
                return;
            }
        }
    }
}

static int pair_cmp(const void *pa, const void *pb) {
    const pair *a = pa, *b = pb;
    if (a->i != b->i) return a->i < b->i ? -1 : 1;
    if (a->j != b->j) return a->j < b->j ? -1 : 1;
    return 0;
}

imgsim_status ims_dedup_cpu(const void *xdata, int64_t n, int dim, imgsim_dtype dtype, float threshold,
                           int threads, int part, int parts, ims_pair_fn fn, void *ctx, ims_err *e) {
    if (dim < 1) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "dedup: dim must be >= 1 (got %d)", dim);
    if (n < 0) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "dedup: negative row count");
    if (threshold != threshold) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "dedup: threshold is NaN");
    if (dtype != IMGSIM_F32 && dtype != IMGSIM_F16)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "dedup: unknown element type %d", (int)dtype);
    if (n < 2) return IMGSIM_OK;
    if (!xdata || !fn) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "dedup: NULL argument");
    uint64_t tmp;
    if (ims_mul_overflow_u64((uint64_t)n, (uint64_t)dim, &tmp))
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "dedup: sizes overflow");

    ims_pool *pool = NULL;
    imgsim_status st = ims_pool_create(&pool, threads, e);
    if (st != IMGSIM_OK) return st;
    int nw = ims_pool_size(pool);
    dedup_ctx x;
    memset(&x, 0, sizeof x);
    x.x = xdata;
    x.n = n;
    x.part = part;
    x.parts = parts;
    x.dim = dim;
    x.dt = dtype;
    x.threshold = threshold;
    x.nb = (n + TILE - 1) / TILE;
    x.tilemax = ims_calloc((size_t)x.nb, sizeof(double));
    x.w = ims_calloc((size_t)nw, sizeof(dworker));
    pair *all = NULL;
    ims_screen screen = ims_tuning_get()->search_screen;
    if (screen == IMS_SCREEN_AUTO ? dim >= 64 : screen == IMS_SCREEN_BF16) {
        ims_err be;
        imgsim_status bs = ims_bf16_gemm_create(&x.bf, TILE, TILE, dim, nw, &be);
        if (bs == IMGSIM_ERR_NOMEM) {
            st = ims_fail_copy(e, &be, bs);
            goto done;
        }
        if (bs != IMGSIM_OK) ims_log_debug("%s; dedup in float32", be.msg);
    }
    int ok = x.tilemax && x.w;
    for (int t = 0; ok && t < nw; t++) {
        dworker *w = &x.w[t];
        w->c = ims_malloc_array((size_t)TILE * TILE, sizeof(float));
        if (dtype == IMGSIM_F16) {
            w->a = ims_malloc_array((size_t)TILE * (size_t)dim, sizeof(float));
            w->b = ims_malloc_array((size_t)TILE * (size_t)dim, sizeof(float));
        }
        if (x.bf) {
            w->ab = ims_calloc((size_t)TILE * (size_t)dim, sizeof(uint16_t));
            w->bb = ims_calloc((size_t)TILE * (size_t)dim, sizeof(uint16_t));
        }
        ok = w->c && (dtype == IMGSIM_F32 || (w->a && w->b)) && (!x.bf || (w->ab && w->bb));
    }
    if (!ok) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "dedup: out of memory (%d threads, dim %d)", nw, dim);
        goto done;
    }
    ims_pool_for(pool, x.nb, norm_item, &x);
    ims_pool_for(pool, x.nb * x.nb, pair_item, &x);
    if (atomic_load(&x.failed)) {
        st = ims_fail_copy(e, &x.err, x.fst);
        goto done;
    }
    size_t total = 0;
    for (int t = 0; t < nw; t++)
        total += x.w[t].np;
    if (total) {
        all = ims_malloc_array(total, sizeof *all);
        if (!all) {
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "dedup: out of memory sorting %zu pairs", total);
            goto done;
        }
        size_t o = 0;
        for (int t = 0; t < nw; t++) {
            if (x.w[t].np) memcpy(all + o, x.w[t].pairs, x.w[t].np * sizeof *all);
            o += x.w[t].np;
            free(x.w[t].pairs);
            x.w[t].pairs = NULL;
        }
        qsort(all, total, sizeof *all, pair_cmp);
        for (size_t p = 0; p < total; p++)
            fn(ctx, all[p].i, all[p].j, all[p].s);
    }

done:
    if (x.w)
        for (int t = 0; t < nw; t++) {
            free(x.w[t].a);
            free(x.w[t].b);
            free(x.w[t].c);
            free(x.w[t].ab);
            free(x.w[t].bb);
            free(x.w[t].pairs);
        }
    free(x.w);
    free(x.tilemax);
    free(all);
    ims_bf16_gemm_destroy(x.bf);
    ims_pool_destroy(pool);
    return st;
}
