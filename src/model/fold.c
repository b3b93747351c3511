/*
 * fold.c: evaluation of constant nodes during shape inference (ims_graph_fold_node).
 *
 * Exporters compute reshape targets and slice bounds in the graph for a dynamic batch:
 * Shape -> Gather -> Unsqueeze -> Concat -> Reshape (ShuffleNet's channel shuffle), Shape ->
 * Gather -> Add/Div/Mul -> Slice (its chunk). Every size there is fixed except the batch, so
 * shape inference, which knows every activation's dims when it reaches such a node, evaluates
 * it: the output becomes a constant, the node is marked dead (ims_graph_link drops it) and no
 * backend ever sees it. The batch is IS_BATCH_DIM in those constants (see graph.h): arithmetic
 * that would change it is refused, so a reshape target that depends on the batch other than by
 * keeping it cannot slip through as a wrong fixed size.
 *
 * Integers are held as float32 (exact up to 2^24, the same limit as every other constant);
 * is_int marks integer results so that Div truncates as ONNX's integer Div does.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"

#define FOLD_MAX_ELEMS ((int64_t)1 << 20) /* a folded constant is a shape, not a weight */

static const char *nlabel(const ims_node *n) {
    return (n->name && n->name[0]) ? n->name : ims_op_name(n->op);
}

static imgsim_status fail(ims_err *e, const ims_node *n, const char *why) {
    return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "node '%s' (%s): %s", nlabel(n), ims_op_name(n->op), why);
}

int ims_graph_foldable(const ims_graph *g, const ims_node *n) {
    switch (n->op) {
    case IS_OP_SHAPE:
        return 1;
    case IS_OP_GATHER:
    case IS_OP_UNSQUEEZE:
    case IS_OP_SQUEEZE:
    case IS_OP_CAST:
    case IS_OP_CONCAT:
    case IS_OP_ADD:
    case IS_OP_SUB:
    case IS_OP_MUL:
    case IS_OP_DIV:
    case IS_OP_SLICE:
    case IS_OP_TRANSPOSE:
    case IS_OP_IDENTITY:
    case IS_OP_RESHAPE:
    case IS_OP_CONSTANTOFSHAPE:
    case IS_OP_EQUAL:
    case IS_OP_WHERE:
    case IS_OP_MOD:
        break;
    default:
        return 0;
    }
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && !g->vals[n->in[k]].data) return 0;
    if (n->op == IS_OP_CONSTANTOFSHAPE) { /* one as large as the batch is an activation (shapes.c) */
        const ims_value *s = &g->vals[n->in[0]];
        for (int64_t k = 0; k < ims_value_numel(s); k++)
            if (s->data[k] == IS_BATCH_DIM) return 0;
    }
    return n->n_in > 0;
}

/* Row-major strides of dims[rank]. */
static void strides_of(int rank, const int64_t *dims, int64_t *st) {
    int64_t s = 1;
    for (int k = rank - 1; k >= 0; k--) {
        st[k] = s;
        s *= dims[k];
    }
}

/* out[i] for every output index, from input linear index via a per-axis map: the output of
 * rank r and dims od takes element sum_k idx[k] * mul[k] + base of src. */
static void gather_strided(float *out, const float *src, int r, const int64_t *od, const int64_t *mul, int64_t base) {
    int64_t n = 1, idx[IS_MAX_RANK] = {0};
    for (int k = 0; k < r; k++)
        n *= od[k];
    for (int64_t i = 0; i < n; i++) {
        int64_t at = base;
        for (int k = 0; k < r; k++)
            at += idx[k] * mul[k];
        out[i] = src[at];
        for (int k = r - 1; k >= 0; k--) {
            if (++idx[k] < od[k]) break;
            idx[k] = 0;
        }
    }
}

static int is_batch(float v) {
    return v == IS_BATCH_DIM;
}

/* a (op) b for Add/Sub/Mul/Div/Mod (fmod: Mod's attribute); *bad set when the batch sentinel
 * would change (Mod never keeps it) or an integer b is 0. */
static float arith(ims_op op, float a, float b, int ints, int fmod_, int *bad) {
    double r;
    switch (op) {
    case IS_OP_ADD: r = (double)a + b; break;
    case IS_OP_SUB: r = (double)a - b; break;
    case IS_OP_MUL: r = (double)a * b; break;
    case IS_OP_MOD:
        if (b == 0) {
            *bad = 2;
            return 0;
        }
        r = fmod((double)a, b);
        if (!fmod_ && r != 0 && (r < 0) != (b < 0)) r += b; /* ONNX's integer Mod: the divisor's sign */
        if (is_batch(a) || is_batch(b)) *bad = 1;
        break;
    default:
        if (b == 0 && ints) {
            *bad = 2;
            return 0;
        }
        r = (double)a / b;
        if (ints) r = trunc(r);
        break;
    }
    float f = (float)r;
    if ((is_batch(a) || is_batch(b)) && !(is_batch(f) && (is_batch(a) != is_batch(b)))) *bad = 1;
    return f;
}

/* Sets the folded output: rank, dims, data (taken over), is_int; marks the node dead. */
static imgsim_status set_const(ims_graph *g, ims_node *n, int rank, const int64_t *dims, float *data, int is_int,
                               ims_err *e) {
    ims_value *v = &g->vals[n->out];
    int64_t cnt = 1;
    for (int k = 0; k < rank; k++) {
        if (dims[k] < 1) {
            free(data);
            return fail(e, n, "the constant it computes would be empty");
        }
        cnt *= dims[k];
    }
    (void)cnt;
    v->rank = rank;
    for (int k = 0; k < IS_MAX_RANK; k++)
        v->dims[k] = k < rank ? dims[k] : 0;
    free(v->data);
    v->data = data;
    v->is_int = is_int;
    n->dead = 1;
    return IMGSIM_OK;
}

static float *alloc_elems(int rank, const int64_t *dims, int64_t *count) {
    int64_t c = 1;
    for (int k = 0; k < rank; k++) {
        if (dims[k] < 0 || dims[k] > FOLD_MAX_ELEMS) return NULL;
        c *= dims[k];
        if (c > FOLD_MAX_ELEMS) return NULL;
    }
    *count = c;
    return ims_malloc_array((size_t)(c ? c : 1), sizeof(float));
}

static imgsim_status nomem(ims_err *e, const ims_node *n) {
    return ims_fail(e, IMGSIM_ERR_NOMEM, "node '%s' (%s): out of memory or too large a constant to fold", nlabel(n),
                    ims_op_name(n->op));
}

static imgsim_status fold_shape(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]];
    int64_t d = x->rank, cnt;
    float *o = alloc_elems(1, &d, &cnt);
    if (!o) return nomem(e, n);
    for (int k = 0; k < x->rank; k++)
        o[k] = x->dims[k] < 0 ? IS_BATCH_DIM : (float)x->dims[k];
    if (x->rank == 0) return set_const(g, n, 1, &d, o, 1, e); /* refused there: empty */
    return set_const(g, n, 1, &d, o, 1, e);
}

static imgsim_status fold_gather(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]], *ix = &g->vals[n->in[1]];
    int ax = n->axis;
    if (ax < 0 || ax >= x->rank) return fail(e, n, "axis out of range");
    int r = x->rank - 1 + ix->rank;
    if (r > IS_MAX_RANK) return fail(e, n, "output rank too large");
    int64_t od[IS_MAX_RANK], cnt, ni = ims_value_numel(ix);
    int k = 0;
    for (int i = 0; i < ax; i++) od[k++] = x->dims[i];
    for (int i = 0; i < ix->rank; i++) od[k++] = ix->dims[i];
    for (int i = ax + 1; i < x->rank; i++) od[k++] = x->dims[i];
    float *o = alloc_elems(r, od, &cnt);
    if (!o) return nomem(e, n);
    int64_t outer = 1, inner = 1, A = x->dims[ax];
    for (int i = 0; i < ax; i++) outer *= x->dims[i];
    for (int i = ax + 1; i < x->rank; i++) inner *= x->dims[i];
    for (int64_t j = 0; j < ni; j++) {
        float f = ix->data[j];
        int64_t id = (int64_t)f;
        if (f != floorf(f) || id < -A || id >= A) {
            free(o);
            return fail(e, n, "index out of range");
        }
        if (id < 0) id += A;
        for (int64_t a = 0; a < outer; a++)
            for (int64_t b = 0; b < inner; b++)
                o[(a * ni + j) * inner + b] = x->data[(a * A + id) * inner + b];
    }
    return set_const(g, n, r, od, o, x->is_int, e);
}

/* Unsqueeze, Squeeze, Reshape, Identity, Cast: the same elements with other dims. */
static imgsim_status fold_same_data(ims_graph *g, ims_node *n, int r, const int64_t *od, int is_int, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]];
    int64_t cnt;
    float *o = alloc_elems(r, od, &cnt);
    if (!o) return nomem(e, n);
    if (cnt != ims_value_numel(x)) {
        free(o);
        return fail(e, n, "element count changes");
    }
    for (int64_t i = 0; i < cnt; i++)
        o[i] = is_int && !x->is_int && !is_batch(x->data[i]) ? truncf(x->data[i]) : x->data[i];
    return set_const(g, n, r, od, o, is_int, e);
}

static imgsim_status fold_unsqueeze(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]];
    int r = x->rank + n->n_perm;
    if (r > IS_MAX_RANK) return fail(e, n, "output rank too large");
    unsigned mask = 0;
    for (int i = 0; i < n->n_perm; i++) {
        if (n->perm[i] < 0 || n->perm[i] >= r) return fail(e, n, "axis out of range");
        mask |= 1u << n->perm[i];
    }
    int64_t od[IS_MAX_RANK];
    for (int k = 0, j = 0; k < r; k++)
        od[k] = mask >> k & 1 ? 1 : x->dims[j++];
    return fold_same_data(g, n, r, od, x->is_int, e);
}

static imgsim_status fold_squeeze(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]];
    unsigned mask = 0;
    for (int i = 0; i < n->n_perm; i++) {
        if (n->perm[i] < 0 || n->perm[i] >= x->rank || x->dims[n->perm[i]] != 1)
            return fail(e, n, "a squeezed axis is not of size 1");
        mask |= 1u << n->perm[i];
    }
    int64_t od[IS_MAX_RANK];
    int r = 0;
    for (int k = 0; k < x->rank; k++)
        if (!(n->n_perm ? mask >> k & 1 : x->dims[k] == 1)) od[r++] = x->dims[k];
    return fold_same_data(g, n, r, od, x->is_int, e);
}

static imgsim_status fold_reshape(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]], *s = &g->vals[n->in[1]];
    int64_t r = ims_value_numel(s), od[IS_MAX_RANK], known = 1;
    int at = -1;
    if (s->rank != 1 || r > IS_MAX_RANK) return fail(e, n, "shape must be 1-D with at most 8 entries");
    for (int k = 0; k < r; k++) {
        float f = s->data[k];
        if (f != floorf(f) || f < -1) return fail(e, n, "invalid shape entry");
        od[k] = f == 0 && k < x->rank ? x->dims[k] : (int64_t)f;
        if (od[k] == -1) {
            if (at >= 0) return fail(e, n, "more than one -1");
            at = k;
        } else {
            known *= od[k];
        }
    }
    if (at >= 0) od[at] = known ? ims_value_numel(x) / known : 0;
    return fold_same_data(g, n, (int)r, od, x->is_int, e);
}

static imgsim_status fold_concat(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *x0 = &g->vals[n->in[0]];
    int ax = n->axis, r = x0->rank, is_int = 1;
    if (ax < 0 || ax >= r) return fail(e, n, "axis out of range");
    int64_t od[IS_MAX_RANK], cnt;
    memcpy(od, x0->dims, sizeof od);
    od[ax] = 0;
    for (int k = 0; k < n->n_in; k++) {
        const ims_value *x = &g->vals[n->in[k]];
        if (x->rank != r) return fail(e, n, "inputs of different ranks");
        for (int i = 0; i < r; i++)
            if (i != ax && x->dims[i] != x0->dims[i]) return fail(e, n, "inputs differ off the axis");
        od[ax] += x->dims[ax];
        is_int &= x->is_int;
    }
    float *o = alloc_elems(r, od, &cnt);
    if (!o) return nomem(e, n);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < ax; i++) outer *= od[i];
    for (int i = ax + 1; i < r; i++) inner *= od[i];
    int64_t off = 0;
    for (int k = 0; k < n->n_in; k++) {
        const ims_value *x = &g->vals[n->in[k]];
        int64_t w = x->dims[ax] * inner;
        for (int64_t a = 0; a < outer; a++)
            memcpy(o + a * od[ax] * inner + off, x->data + a * w, (size_t)w * sizeof(float));
        off += w;
    }
    return set_const(g, n, r, od, o, is_int, e);
}

static imgsim_status fold_binary(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *a = &g->vals[n->in[0]], *b = &g->vals[n->in[1]];
    int r = a->rank > b->rank ? a->rank : b->rank;
    int64_t od[IS_MAX_RANK] = {0}, ad[IS_MAX_RANK] = {0}, bd[IS_MAX_RANK] = {0}, as[IS_MAX_RANK], bs[IS_MAX_RANK], cnt;
    for (int k = 0; k < r; k++) {
        ad[k] = k - (r - a->rank) >= 0 ? a->dims[k - (r - a->rank)] : 1;
        bd[k] = k - (r - b->rank) >= 0 ? b->dims[k - (r - b->rank)] : 1;
        if (ad[k] != bd[k] && ad[k] != 1 && bd[k] != 1) return fail(e, n, "shapes do not broadcast");
        od[k] = ad[k] > bd[k] ? ad[k] : bd[k];
    }
    strides_of(r, ad, as);
    strides_of(r, bd, bs);
    for (int k = 0; k < r; k++) {
        if (ad[k] == 1) as[k] = 0;
        if (bd[k] == 1) bs[k] = 0;
    }
    float *o = alloc_elems(r, od, &cnt);
    if (!o) return nomem(e, n);
    int ints = a->is_int && b->is_int, bad = 0;
    int64_t idx[IS_MAX_RANK] = {0};
    for (int64_t i = 0; i < cnt; i++) {
        int64_t ia = 0, ib = 0;
        for (int k = 0; k < r; k++) {
            ia += idx[k] * as[k];
            ib += idx[k] * bs[k];
        }
        o[i] = arith(n->op, a->data[ia], b->data[ib], ints, n->fmod, &bad);
        for (int k = r - 1; k >= 0; k--) {
            if (++idx[k] < od[k]) break;
            idx[k] = 0;
        }
    }
    if (bad) {
        free(o);
        return fail(e, n, bad == 2 ? "integer division (or Mod) by zero"
                                   : "shape arithmetic on the batch size (only keeping it as it is is supported)");
    }
    return set_const(g, n, r, od, o, ints, e);
}

/* ConstantOfShape: dims from the (integer) input, every element alpha. */
static imgsim_status fold_constantofshape(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *s = &g->vals[n->in[0]];
    int64_t r = ims_value_numel(s), od[IS_MAX_RANK], cnt;
    if (s->rank != 1 || r > IS_MAX_RANK) return fail(e, n, "shape must be 1-D with at most 8 entries");
    for (int k = 0; k < r; k++) {
        if (is_batch(s->data[k])) return fail(e, n, "a constant as large as the batch is not supported");
        if (s->data[k] != floorf(s->data[k]) || s->data[k] < 1) return fail(e, n, "invalid shape entry");
        od[k] = (int64_t)s->data[k];
    }
    float *o = alloc_elems((int)r, od, &cnt);
    if (!o) return nomem(e, n);
    for (int64_t i = 0; i < cnt; i++) o[i] = n->alpha;
    return set_const(g, n, (int)r, od, o, !n->cast_to, e);
}

/* Equal (1 where a == b, else 0) and Where (cond ? a : b), numpy broadcasting. The batch size
 * compared with a positive size is refused (the answer would depend on it). */
static imgsim_status fold_select(ims_graph *g, ims_node *n, ims_err *e) {
    int k_in = n->op == IS_OP_WHERE ? 3 : 2, r = 0;
    const ims_value *x[3];
    int64_t od[IS_MAX_RANK], xs[3][IS_MAX_RANK], cnt;
    for (int j = 0; j < k_in; j++) {
        x[j] = &g->vals[n->in[j]];
        if (x[j]->rank > r) r = x[j]->rank;
    }
    for (int k = 0; k < r; k++) od[k] = 1;
    for (int j = 0; j < k_in; j++) {
        int64_t d[IS_MAX_RANK];
        for (int k = 0; k < r; k++) {
            d[k] = k - (r - x[j]->rank) >= 0 ? x[j]->dims[k - (r - x[j]->rank)] : 1;
            if (d[k] != od[k] && d[k] != 1 && od[k] != 1) return fail(e, n, "shapes do not broadcast");
            if (d[k] > od[k]) od[k] = d[k];
        }
        strides_of(r, d, xs[j]);
        for (int k = 0; k < r; k++)
            if (d[k] == 1) xs[j][k] = 0;
    }
    float *o = alloc_elems(r, od, &cnt);
    if (!o) return nomem(e, n);
    int64_t idx[IS_MAX_RANK] = {0};
    for (int64_t i = 0; i < cnt; i++) {
        float v[3];
        for (int j = 0; j < k_in; j++) {
            int64_t at = 0;
            for (int k = 0; k < r; k++) at += idx[k] * xs[j][k];
            v[j] = x[j]->data[at];
        }
        if (n->op == IS_OP_WHERE) {
            o[i] = v[0] != 0 ? v[1] : v[2];
        } else {
            if (is_batch(v[0]) != is_batch(v[1]) && (is_batch(v[0]) ? v[1] : v[0]) > 0) {
                free(o);
                return fail(e, n, "compares the batch size with a size");
            }
            o[i] = v[0] == v[1] ? 1.0f : 0.0f;
        }
        for (int k = r - 1; k >= 0; k--) {
            if (++idx[k] < od[k]) break;
            idx[k] = 0;
        }
    }
    int is_int = n->op == IS_OP_EQUAL || (x[1]->is_int && x[2]->is_int);
    return set_const(g, n, r, od, o, is_int, e);
}

/* Slice bounds of one axis (ONNX: negative from the end, clamped; step != 0). */
static void slice_axis(int64_t dim, double st, double en, int64_t step, int64_t *start, int64_t *count) {
    if (st < 0) st += (double)dim;
    if (en < 0) en += (double)dim;
    double lo = step > 0 ? 0 : -1, hi = step > 0 ? (double)dim : (double)dim - 1;
    if (st < lo) st = lo;
    if (st > hi) st = hi;
    if (en < lo) en = lo;
    if (en > hi) en = hi;
    int64_t s = (int64_t)st, c = step > 0 ? ((int64_t)en - s + step - 1) / step : (s - (int64_t)en - step - 1) / -step;
    *start = s;
    *count = c > 0 ? c : 0;
}

imgsim_status ims_graph_slice_bounds(const ims_graph *g, const ims_node *n, int64_t *start, int64_t *count,
                                     int64_t *step, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]];
    const ims_value *sv = &g->vals[n->in[1]], *ev = &g->vals[n->in[2]];
    const ims_value *av = n->n_in > 3 && n->in[3] >= 0 ? &g->vals[n->in[3]] : NULL;
    const ims_value *pv = n->n_in > 4 && n->in[4] >= 0 ? &g->vals[n->in[4]] : NULL;
    for (int k = 1; k < n->n_in; k++)
        if (n->in[k] >= 0 && !g->vals[n->in[k]].data) return fail(e, n, "starts, ends, axes and steps must be constants");
    int64_t m = ims_value_numel(sv);
    if (sv->rank != 1 || ims_value_numel(ev) != m || (av && ims_value_numel(av) != m) || (pv && ims_value_numel(pv) != m))
        return fail(e, n, "starts, ends, axes and steps must be 1-D of one length");
    for (int k = 0; k < x->rank; k++) {
        start[k] = 0;
        count[k] = x->dims[k];
        step[k] = 1;
    }
    unsigned seen = 0;
    for (int64_t i = 0; i < m; i++) {
        int64_t ax = av ? (int64_t)av->data[i] : i;
        if (ax < 0) ax += x->rank;
        if (ax < 0 || ax >= x->rank || (seen >> ax & 1)) return fail(e, n, "axis out of range or repeated");
        seen |= 1u << ax;
        int64_t sp = pv ? (int64_t)pv->data[i] : 1;
        if (sp == 0) return fail(e, n, "step 0");
        double st = sv->data[i], en = ev->data[i];
        if (is_batch(sv->data[i]) || is_batch(ev->data[i])) return fail(e, n, "slice bounds depend on the batch size");
        if (x->dims[ax] < 0) { /* the batch: only the whole of it */
            if (st != 0 || sp != 1 || en < 2147483647.0)
                return fail(e, n, "slicing the batch axis is not supported");
            continue;
        }
        slice_axis(x->dims[ax], st, en, sp, &start[ax], &count[ax]);
        step[ax] = sp;
    }
    return IMGSIM_OK;
}

static imgsim_status fold_slice(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]];
    int64_t start[IS_MAX_RANK], count[IS_MAX_RANK], step[IS_MAX_RANK], xs[IS_MAX_RANK], mul[IS_MAX_RANK], cnt;
    imgsim_status st = ims_graph_slice_bounds(g, n, start, count, step, e);
    if (st != IMGSIM_OK) return st;
    strides_of(x->rank, x->dims, xs);
    int64_t base = 0;
    for (int k = 0; k < x->rank; k++) {
        base += start[k] * xs[k];
        mul[k] = step[k] * xs[k];
    }
    float *o = alloc_elems(x->rank, count, &cnt);
    if (!o) return nomem(e, n);
    if (cnt) gather_strided(o, x->data, x->rank, count, mul, base);
    return set_const(g, n, x->rank, count, o, x->is_int, e);
}

static imgsim_status fold_transpose(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]];
    if (n->n_perm != x->rank) return fail(e, n, "perm does not match the rank");
    int64_t xs[IS_MAX_RANK], od[IS_MAX_RANK], mul[IS_MAX_RANK], cnt;
    strides_of(x->rank, x->dims, xs);
    for (int k = 0; k < x->rank; k++) {
        od[k] = x->dims[n->perm[k]];
        mul[k] = xs[n->perm[k]];
    }
    float *o = alloc_elems(x->rank, od, &cnt);
    if (!o) return nomem(e, n);
    gather_strided(o, x->data, x->rank, od, mul, 0);
    return set_const(g, n, x->rank, od, o, x->is_int, e);
}

imgsim_status ims_graph_fold_node(ims_graph *g, ims_node *n, ims_err *e) {
    const ims_value *x = &g->vals[n->in[0]];
    switch (n->op) {
    case IS_OP_SHAPE: return fold_shape(g, n, e);
    case IS_OP_GATHER: return fold_gather(g, n, e);
    case IS_OP_UNSQUEEZE: return fold_unsqueeze(g, n, e);
    case IS_OP_SQUEEZE: return fold_squeeze(g, n, e);
    case IS_OP_RESHAPE: return fold_reshape(g, n, e);
    case IS_OP_IDENTITY: return fold_same_data(g, n, x->rank, x->dims, x->is_int, e);
    case IS_OP_CAST: return fold_same_data(g, n, x->rank, x->dims, !n->cast_to, e);
    case IS_OP_CONCAT: return fold_concat(g, n, e);
    case IS_OP_ADD:
    case IS_OP_SUB:
    case IS_OP_MUL:
    case IS_OP_DIV:
    case IS_OP_MOD: return fold_binary(g, n, e);
    case IS_OP_SLICE: return fold_slice(g, n, e);
    case IS_OP_TRANSPOSE: return fold_transpose(g, n, e);
    case IS_OP_CONSTANTOFSHAPE: return fold_constantofshape(g, n, e);
    case IS_OP_EQUAL:
    case IS_OP_WHERE: return fold_select(g, n, e);
    default: return fail(e, n, "cannot be evaluated on constants");
    }
}
