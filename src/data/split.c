/*
 * split.c: the stratified train/test split (see dataset.h).
 *
 * Rule, per label with `count` items:
 *   n_test = round(test_size * count), rounding half to even exactly like Python's round() on the
 *            same double (C's rint() in the default rounding mode), then clamped to
 *            [0, count - 1] so that every class keeps at least one training image; a class with a
 *            single item therefore always stays in train.
 * Which items go to test: the class's items are sorted bytewise by rel path, then shuffled by a
 * partial Fisher-Yates with xoshiro256** seeded from splitmix64(seed, FNV-1a(label)); the first
 * n_test are test. The result depends only on (seed, test_size, the set of (rel, label) pairs),
 * never on the order the items were listed in, and one class's split does not change when other
 * classes are added or removed.
 */
#include "data/dataset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- PRNG ------------------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct xoshiro {
    uint64_t s[4];
} xoshiro;

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(xoshiro *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform integer in [0, bound) without modulo bias (rejection of the short top range). */
static uint64_t xoshiro_below(xoshiro *r, uint64_t bound) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound; /* multiples of bound below this are fair */
    uint64_t x;
    do
        x = xoshiro_next(r);
    while (x >= limit);
    return x % bound;
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001B3ull;
    }
    return h;
}

/* The per-class stream: seeded from the user's seed and the label's hash. */
static void class_stream(xoshiro *r, uint64_t seed, const char *label) {
    uint64_t x = seed;
    uint64_t a = splitmix64(&x);
    x = a ^ fnv1a64(label);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

/* ---- split ----------------------------------------------------------------------------------- */

/* One item as the sort sees it (pointers into the dataset, so the sort needs no context). */
typedef struct sort_key {
    const char *label, *rel;
    size_t idx;
} sort_key;

/* Orders items by (label, rel, index). */
static int cmp_label_rel(const void *a, const void *b) {
    const sort_key *x = a, *y = b;
    int c = strcmp(x->label, y->label);
    if (c) return c;
    c = strcmp(x->rel, y->rel);
    if (c) return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* n_test for one class (see the rule at the top of the file). */
static size_t class_test_count(double test_size, size_t count) {
    if (count <= 1) return 0;
    double t = rint(test_size * (double)count); /* half to even, like Python's round() */
    if (!(t > 0)) return 0;
    if (t > (double)(count - 1)) return count - 1;
    return (size_t)t;
}

imgsim_status ims_split(uint8_t *is_test, const ims_dataset *d, double test_size, uint64_t seed, ims_err *e) {
    if (!(test_size > 0.0 && test_size < 1.0))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "test size %g: expected a number in (0, 1)", test_size);
    if (d->n == 0) return IMGSIM_OK;
    sort_key *order = ims_malloc_array(d->n, sizeof(sort_key));
    if (!order) return ims_fail(e, IMGSIM_ERR_NOMEM, "split: out of memory for %zu items", d->n);
    for (size_t i = 0; i < d->n; i++) {
        order[i].label = d->items[i].label;
        order[i].rel = d->items[i].rel;
        order[i].idx = i;
        is_test[i] = 0;
    }
    qsort(order, d->n, sizeof(sort_key), cmp_label_rel);

    /* order is now grouped by label, each group sorted by rel: [start, end) per class */
    for (size_t start = 0; start < d->n;) {
        const char *label = order[start].label;
        size_t end = start + 1;
        while (end < d->n && strcmp(order[end].label, label) == 0)
            end++;
        size_t count = end - start, n_test = class_test_count(test_size, count);
        xoshiro r;
        class_stream(&r, seed, label);
        sort_key *cls = order + start;
        /* partial Fisher-Yates: positions [0, n_test) receive a uniform random sample */
        for (size_t i = 0; i < n_test; i++) {
            size_t j = i + (size_t)xoshiro_below(&r, (uint64_t)(count - i));
            sort_key t = cls[i];
            cls[i] = cls[j];
            cls[j] = t;
            is_test[cls[i].idx] = 1;
        }
        start = end;
    }
    free(order);
    return IMGSIM_OK;
}
