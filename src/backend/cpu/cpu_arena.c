/*
 * cpu_arena.c: places a plan's activation buffers in one arena.
 *
 * Each buffer lives from the step that first writes it to the step that last reads it. Two
 * buffers whose lifetimes overlap must not overlap in memory. Buffers are placed largest first;
 * each goes into the smallest gap between already-placed, lifetime-overlapping buffers that fits
 * it (best fit), or above them all. This is the usual greedy heuristic for static memory planning
 * (as in TFLite's and ONNX Runtime's planners); for a ResNet it lands close to the lower bound,
 * the largest total of simultaneously live buffers.
 */
#include <stdlib.h>
#include <string.h>

#include "cpu_priv.h"

typedef struct span {
    size_t lo, hi;
} span;

/* A buffer to place: sorted by decreasing size, then first use, then id. */
typedef struct key {
    size_t size;
    int first, id;
} key;

static int cmp_key(const void *a, const void *b) {
    const key *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->id - y->id;
}

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
    return 0;
}

/* Assigns p->bufs[i].offset for every buffer and sets p->arena_size (bytes). O(n^2) in the
 * number of buffers, which is a few hundred at most. */
imgsim_status ims_cpu_arena_assign(cpu_plan *p, ims_err *e) {
    int n = p->n_bufs;
    p->arena_size = 0;
    if (n == 0) return IMGSIM_OK;
    key *order = ims_malloc_array((size_t)n, sizeof(key));
    int *placed = ims_malloc_array((size_t)n, sizeof(int));
    span *sp = ims_malloc_array((size_t)n, sizeof(span));
    if (!order || !placed || !sp) {
        free(order);
        free(placed);
        free(sp);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory planning the arena");
    }
    for (int i = 0; i < n; i++) {
        order[i].size = p->bufs[i].size;
        order[i].first = p->bufs[i].first;
        order[i].id = i;
    }
    qsort(order, (size_t)n, sizeof(key), cmp_key);
    int n_placed = 0;
    for (int oi = 0; oi < n; oi++) {
        cpu_buf *b = &p->bufs[order[oi].id];
        int ns = 0;
        for (int k = 0; k < n_placed; k++) {
            const cpu_buf *o = &p->bufs[placed[k]];
            if (o->first <= b->last && b->first <= o->last) {
                sp[ns].lo = o->offset;
                sp[ns].hi = o->offset + o->size;
                ns++;
            }
        }
        qsort(sp, (size_t)ns, sizeof(span), cmp_span);
        size_t best = (size_t)-1, best_gap = (size_t)-1, cur = 0;
        for (int k = 0; k < ns; k++) {
            if (sp[k].lo > cur) {
                size_t gap = sp[k].lo - cur;
                if (gap >= b->size && gap < best_gap) {
                    best_gap = gap;
                    best = cur;
                }
            }
            if (sp[k].hi > cur) cur = sp[k].hi;
        }
        b->offset = best != (size_t)-1 ? best : cur;
        if (b->offset + b->size > p->arena_size) p->arena_size = b->offset + b->size;
        placed[n_placed++] = order[oi].id;
    }
    free(order);
    free(placed);
    free(sp);
    return IMGSIM_OK;
}
