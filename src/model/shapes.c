/*
 * shapes.c: ims_graph_infer_shapes, which gives every activation its dims and checks each
 * operator's shape rules before any backend sees the graph.
 *
 * The graph input is [-1, C, H, W] (a batch axis stored as -1); every activation keeps the batch
 * as dims[0] and has concrete positive dims elsewhere. Nodes are visited in order (ims_graph_link
 * must have sorted them). auto_pad is resolved into pad[] as the ONNX spec says (SAME_UPPER puts
 * the odd pixel at the end, SAME_LOWER at the beginning) and auto_pad is then reset to NOTSET.
 * Pooling with ceil_mode follows PyTorch (a window that would start inside the right padding is
 * dropped), which is what PyTorch-exported models expect.
 *
 * Shape nodes, and nodes whose inputs are all constants (the shape arithmetic exporters write for
 * a dynamic batch), are evaluated when they are reached (fold.c) and become constants.
 *
 * All arithmetic is 64-bit; a dim over INT32_MAX or a per-image tensor over 2^32 elements is
 * refused as TOO_LARGE. Errors name the node and the reason.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"

#define SH_MAX_DIM ((int64_t)INT32_MAX)
#define SH_MAX_NUMEL ((int64_t)1 << 32) /* elements of one image's tensor */

static const char *node_label(const ims_node *n) {
    return (n->name && n->name[0]) ? n->name : ims_op_name(n->op);
}

static const char *value_label(const ims_value *v) {
    return (v->name && v->name[0]) ? v->name : "(unnamed)";
}

/* Shape-inference context: the graph and which values have dims by now. */
typedef struct sh_ctx {
    ims_graph *g;
    char *known; /* per value: 1 once its dims are valid */
    ims_err *e;
} sh_ctx;

/* Writes "[d0, d1, ...]" into buf (batch shown as N). */
static const char *dims_str(char *buf, size_t cap, int rank, const int64_t *d) {
    size_t at = 0;
    at += (size_t)snprintf(buf + at, cap - at, "[");
    for (int i = 0; i < rank && at < cap; i++) {
        if (d[i] < 0)
            at += (size_t)snprintf(buf + at, cap - at, "%sN", i ? ", " : "");
        else
            at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)d[i]);
    }
    if (at < cap) snprintf(buf + at, cap - at, "]");
    return buf;
}

/* Checks a constant's dims: rank 0..8, every dim >= 1, element count within limits. */
static imgsim_status check_constant(sh_ctx *c, int vi) {
    const ims_value *v = &c->g->vals[vi];
    if (v->rank < 0 || v->rank > IS_MAX_RANK)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "constant '%s' has rank %d", value_label(v), v->rank);
    int64_t n = 1;
    for (int i = 0; i < v->rank; i++) {
        if (v->dims[i] < 1)
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "constant '%s' has dim %d = %lld", value_label(v), i,
                           (long long)v->dims[i]);
        if (v->dims[i] > SH_MAX_DIM || n > SH_MAX_NUMEL / v->dims[i])
            return ims_fail(c->e, IMGSIM_ERR_TOO_LARGE, "constant '%s' is too large", value_label(v));
        n *= v->dims[i];
    }
    return IMGSIM_OK;
}

/* Validates an activation shape (dims[0] = -1, others in [1, SH_MAX_DIM], element count bounded)
 * and stores it as the node's output. */
static imgsim_status set_out(sh_ctx *c, const ims_node *n, int rank, const int64_t *d) {
    ims_value *v = &c->g->vals[n->out];
    if (rank < 1 || rank > IS_MAX_RANK)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED, "node '%s' (%s): output rank %d is unsupported",
                       node_label(n), ims_op_name(n->op), rank);
    if (d[0] != -1)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                       "node '%s' (%s): output would not keep the batch as its first axis", node_label(n),
                       ims_op_name(n->op));
    int64_t numel = 1;
    for (int i = 1; i < rank; i++) {
        if (d[i] < 1)
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (%s): output dim %d would be %lld",
                           node_label(n), ims_op_name(n->op), i, (long long)d[i]);
        if (d[i] > SH_MAX_DIM || numel > SH_MAX_NUMEL / d[i])
            return ims_fail(c->e, IMGSIM_ERR_TOO_LARGE, "node '%s' (%s): output tensor is too large",
                           node_label(n), ims_op_name(n->op));
        numel *= d[i];
    }
    v->rank = rank;
    for (int i = 0; i < IS_MAX_RANK; i++)
        v->dims[i] = i < rank ? d[i] : 0;
    c->known[n->out] = 1;
    return IMGSIM_OK;
}

/* Input k of node n, which must be an activation whose dims are known. */
static imgsim_status need_act(sh_ctx *c, const ims_node *n, int k, const ims_value **out) {
    int vi = n->in[k];
    const ims_value *v = &c->g->vals[vi];
    if (v->data)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                       "node '%s' (%s): input %d ('%s') is a constant; an activation is expected",
                       node_label(n), ims_op_name(n->op), k, value_label(v));
    if (!c->known[vi])
        return ims_fail(c->e, IMGSIM_ERR_INTERNAL,
                       "node '%s' (%s) reads '%s' before it is computed (graph not linked?)", node_label(n),
                       ims_op_name(n->op), value_label(v));
    *out = v;
    return IMGSIM_OK;
}

/* Input k of node n, which must be a constant (weights, BN statistics, shapes). */
static imgsim_status need_const(sh_ctx *c, const ims_node *n, int k, const ims_value **out) {
    int vi = n->in[k];
    const ims_value *v = &c->g->vals[vi];
    if (!v->data)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED, "node '%s' (%s): input %d ('%s') must be a constant",
                       node_label(n), ims_op_name(n->op), k, value_label(v));
    imgsim_status st = check_constant(c, vi);
    if (st != IMGSIM_OK) return st;
    *out = v;
    return IMGSIM_OK;
}

/* Resolves padding for spatial axis a (0 = H, 1 = W) of a Conv or pooling node and computes the
 * output size: out = floor((in + pb + pe - ((k-1)*d + 1)) / s) + 1, or with ceil_mode the ceiling,
 * less one when the last window would start inside the end padding (PyTorch's rule). */
static imgsim_status spatial_out(sh_ctx *c, ims_node *n, int a, int64_t in, int ceil_mode, int64_t *out) {
    const char *axn = a == 0 ? "height" : "width";
    int64_t k = n->kernel[a], s = n->stride[a], d = n->dilation[a];
    if (k < 1 || s < 1 || d < 1)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                       "node '%s' (%s): kernel %lld, stride %lld, dilation %lld along %s must be >= 1",
                       node_label(n), ims_op_name(n->op), (long long)k, (long long)s, (long long)d, axn);
    int64_t ek = (k - 1) * d + 1; /* effective kernel extent */
    int64_t pb, pe;
    switch (n->auto_pad) {
    case 0:
        pb = n->pad[a];
        pe = n->pad[a + 2];
        if (pb < 0 || pe < 0)
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (%s): negative padding along %s",
                           node_label(n), ims_op_name(n->op), axn);
        break;
    case 1: /* SAME_UPPER */
    case 2: /* SAME_LOWER */
    {
        int64_t o = (in + s - 1) / s;
        int64_t total = (o - 1) * s + ek - in;
        if (total < 0) total = 0;
        if (total > SH_MAX_DIM)
            return ims_fail(c->e, IMGSIM_ERR_TOO_LARGE, "node '%s' (%s): padding along %s is too large",
                           node_label(n), ims_op_name(n->op), axn);
        if (n->auto_pad == 1) {
            pb = total / 2;
            pe = total - pb;
        } else {
            pe = total / 2;
            pb = total - pe;
        }
        ceil_mode = 0;
        break;
    }
    case 3: /* VALID */
        pb = pe = 0;
        break;
    default:
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (%s): invalid auto_pad code %d", node_label(n),
                       ims_op_name(n->op), n->auto_pad);
    }
    int pooling = n->op == IS_OP_MAXPOOL || n->op == IS_OP_AVGPOOL;
    if (pooling && (pb >= ek || pe >= ek))
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                       "node '%s' (%s): padding %lld/%lld along %s is not smaller than the kernel %lld",
                       node_label(n), ims_op_name(n->op), (long long)pb, (long long)pe, axn, (long long)ek);
    if (pb > SH_MAX_DIM || pe > SH_MAX_DIM)
        return ims_fail(c->e, IMGSIM_ERR_TOO_LARGE, "node '%s' (%s): padding along %s is too large",
                       node_label(n), ims_op_name(n->op), axn);
    int64_t span = in + pb + pe - ek;
    if (span < 0)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                       "node '%s' (%s): kernel extent %lld is larger than the padded input %s %lld",
                       node_label(n), ims_op_name(n->op), (long long)ek, axn, (long long)(in + pb + pe));
    int64_t o;
    if (ceil_mode) {
        o = (span + s - 1) / s + 1;
        if ((o - 1) * s >= in + pb) o--;
    } else {
        o = span / s + 1;
    }
    if (o < 1)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (%s): output %s would be %lld", node_label(n),
                       ims_op_name(n->op), axn, (long long)o);
    n->pad[a] = (int)pb;
    n->pad[a + 2] = (int)pe;
    *out = o;
    return IMGSIM_OK;
}

/* Conv: X [N, C, H, W], W [OC, C/group, KH, KW], B [OC] -> [N, OC, OH, OW]. */
static imgsim_status infer_conv(sh_ctx *c, ims_node *n) {
    const ims_value *x, *w, *b = NULL;
    imgsim_status st;
    char b1[128], b2[128];
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if ((st = need_const(c, n, 1, &w)) != IMGSIM_OK) return st;
    if (n->n_in > 2 && n->in[2] >= 0 && (st = need_const(c, n, 2, &b)) != IMGSIM_OK) return st;
    if (x->rank != 4)
        return ims_fail(
            c->e, IMGSIM_ERR_UNSUPPORTED,
            "node '%s' (Conv): input '%s' is %s; only 2-D convolution on [N, C, H, W] is supported",
            node_label(n), value_label(x), dims_str(b1, sizeof b1, x->rank, x->dims));
    if (w->rank != 4)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                       "node '%s' (Conv): weight '%s' is %s, expected [OC, IC/group, KH, KW]", node_label(n),
                       value_label(w), dims_str(b1, sizeof b1, w->rank, w->dims));
    int64_t C = x->dims[1], OC = w->dims[0];
    if (n->group < 1 || n->group > C)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Conv): group %d is not in [1, %lld]",
                       node_label(n), n->group, (long long)C);
    if (C % n->group != 0 || OC % n->group != 0)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                       "node '%s' (Conv): %lld input and %lld output channels are not divisible by group %d",
                       node_label(n), (long long)C, (long long)OC, n->group);
    if (w->dims[1] != C / n->group)
        return ims_fail(
            c->e, IMGSIM_ERR_FORMAT,
            "node '%s' (Conv): weight %s does not fit input %s with group %d (expected dim 1 = %lld)",
            node_label(n), dims_str(b1, sizeof b1, w->rank, w->dims),
            dims_str(b2, sizeof b2, x->rank, x->dims), n->group, (long long)(C / n->group));
    if (w->dims[2] > SH_MAX_DIM || w->dims[3] > SH_MAX_DIM)
        return ims_fail(c->e, IMGSIM_ERR_TOO_LARGE, "node '%s' (Conv): kernel too large", node_label(n));
    /* kernel_shape is optional in ONNX: unset (0x0) or the builder's default 1x1 takes the
     * weight's; anything else must agree with it. */
    if ((n->kernel[0] == 0 && n->kernel[1] == 0) || (n->kernel[0] == 1 && n->kernel[1] == 1)) {
        n->kernel[0] = (int)w->dims[2];
        n->kernel[1] = (int)w->dims[3];
    } else if (n->kernel[0] != w->dims[2] || n->kernel[1] != w->dims[3]) {
        return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                       "node '%s' (Conv): kernel_shape %dx%d does not match weight %s", node_label(n),
                       n->kernel[0], n->kernel[1], dims_str(b1, sizeof b1, w->rank, w->dims));
    }
    if (b && (b->rank != 1 || b->dims[0] != OC))
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Conv): bias '%s' is %s, expected [%lld]",
                       node_label(n), value_label(b), dims_str(b1, sizeof b1, b->rank, b->dims),
                       (long long)OC);
    int64_t d[4] = {-1, OC, 0, 0};
    if ((st = spatial_out(c, n, 0, x->dims[2], 0, &d[2])) != IMGSIM_OK) return st;
    if ((st = spatial_out(c, n, 1, x->dims[3], 0, &d[3])) != IMGSIM_OK) return st;
    n->auto_pad = 0;
    return set_out(c, n, 4, d);
}

/* MaxPool / AveragePool: X [N, C, H, W] -> [N, C, OH, OW]. */
static imgsim_status infer_pool(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    char b1[128];
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if (x->rank != 4)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                       "node '%s' (%s): input '%s' is %s; only 2-D pooling on [N, C, H, W] is supported",
                       node_label(n), ims_op_name(n->op), value_label(x),
                       dims_str(b1, sizeof b1, x->rank, x->dims));
    int64_t d[4] = {-1, x->dims[1], 0, 0};
    if ((st = spatial_out(c, n, 0, x->dims[2], n->ceil_mode, &d[2])) != IMGSIM_OK) return st;
    if ((st = spatial_out(c, n, 1, x->dims[3], n->ceil_mode, &d[3])) != IMGSIM_OK) return st;
    n->auto_pad = 0;
    return set_out(c, n, 4, d);
}

/* GlobalAveragePool: [N, C, spatial...] -> [N, C, 1, ...]. */
static imgsim_status infer_gap(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if (x->rank < 3)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                       "node '%s' (GlobalAveragePool): input '%s' has rank %d, expected >= 3", node_label(n),
                       value_label(x), x->rank);
    int64_t d[IS_MAX_RANK];
    d[0] = -1;
    d[1] = x->dims[1];
    for (int i = 2; i < x->rank; i++)
        d[i] = 1;
    return set_out(c, n, x->rank, d);
}

/* BatchNormalization: X [N, C, ...], scale/B/mean/var [C] -> X's shape. */
static imgsim_status infer_bn(sh_ctx *c, ims_node *n) {
    const ims_value *x, *p;
    imgsim_status st;
    char b1[128];
    static const char *pname[5] = {"X", "scale", "B", "mean", "var"};
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if (x->rank < 2)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                       "node '%s' (BatchNormalization): input '%s' has rank %d, expected >= 2", node_label(n),
                       value_label(x), x->rank);
    for (int k = 1; k < 5; k++) {
        if ((st = need_const(c, n, k, &p)) != IMGSIM_OK) return st;
        if (p->rank != 1 || p->dims[0] != x->dims[1])
            return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                           "node '%s' (BatchNormalization): %s '%s' is %s, expected [%lld]", node_label(n),
                           pname[k], value_label(p), dims_str(b1, sizeof b1, p->rank, p->dims),
                           (long long)x->dims[1]);
    }
    if (!(n->epsilon >= 0.0f) || !isfinite(n->epsilon))
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (BatchNormalization): epsilon %g is invalid",
                       node_label(n), (double)n->epsilon);
    return set_out(c, n, x->rank, x->dims);
}

/* Relu, Sigmoid, Identity, Clip, HardSigmoid, HardSwish, Cast to float: the output has the input's
 * shape. Clip takes its bounds from constant inputs when they are present (opset >= 11). */
static imgsim_status infer_unary(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if (n->op == IS_OP_CLIP) {
        for (int k = 1; k < n->n_in && k < 3; k++) {
            const ims_value *b;
            if (n->in[k] < 0) continue;
            if ((st = need_const(c, n, k, &b)) != IMGSIM_OK) return st;
            if (ims_value_numel(b) != 1)
                return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Clip): %s '%s' is not a scalar",
                               node_label(n), k == 1 ? "min" : "max", value_label(b));
            if (k == 1)
                n->clip_min = b->data[0];
            else
                n->clip_max = b->data[0];
        }
        if (isnan(n->clip_min) || isnan(n->clip_max))
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Clip): NaN bound", node_label(n));
    }
    return set_out(c, n, x->rank, x->dims);
}

/* Add / Mul / Sub / Div: numpy broadcasting; -1 (batch) broadcasts only with 1 or itself. At least one input
 * is an activation, and the output keeps the batch as dims[0]. */
static imgsim_status infer_binary(sh_ctx *c, ims_node *n) {
    const ims_value *a = &c->g->vals[n->in[0]], *b = &c->g->vals[n->in[1]];
    imgsim_status st;
    char b1[128], b2[128];
    if (a->data && b->data)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED, "node '%s' (%s) computes only on constants",
                       node_label(n), ims_op_name(n->op));
    if (!a->data && (st = need_act(c, n, 0, &a)) != IMGSIM_OK) return st;
    if (!b->data && (st = need_act(c, n, 1, &b)) != IMGSIM_OK) return st;
    if (a->data && (st = need_const(c, n, 0, &a)) != IMGSIM_OK) return st;
    if (b->data && (st = need_const(c, n, 1, &b)) != IMGSIM_OK) return st;
    int r = a->rank > b->rank ? a->rank : b->rank;
    int64_t d[IS_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da == db)
            d[i] = da;
        else if (da == 1)
            d[i] = db;
        else if (db == 1)
            d[i] = da;
        else
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (%s): shapes %s and %s do not broadcast",
                           node_label(n), ims_op_name(n->op), dims_str(b1, sizeof b1, a->rank, a->dims),
                           dims_str(b2, sizeof b2, b->rank, b->dims));
    }
    for (int i = 1; i < r; i++)
        if (d[i] < 0)
            return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                           "node '%s' (%s): shapes %s and %s would move the batch axis", node_label(n),
                           ims_op_name(n->op), dims_str(b1, sizeof b1, a->rank, a->dims),
                           dims_str(b2, sizeof b2, b->rank, b->dims));
    return set_out(c, n, r, d);
}

/* Flatten(axis): [N, d1, ..., dk] -> [N, d_axis * ... * dk]; the dims between the batch and the
 * axis must be 1 so that the batch stays the first axis. */
static imgsim_status infer_flatten(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if (n->axis < 0 || n->axis > x->rank)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Flatten): axis %d is out of range for rank %d",
                       node_label(n), n->axis, x->rank);
    if (n->axis == 0)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED, "node '%s' (Flatten): axis 0 would merge the batch axis",
                       node_label(n));
    for (int i = 1; i < n->axis; i++)
        if (x->dims[i] != 1)
            return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                           "node '%s' (Flatten): axis %d would merge the batch axis", node_label(n), n->axis);
    int64_t p = 1;
    for (int i = n->axis; i < x->rank; i++)
        p *= x->dims[i]; /* bounded: x passed set_out */
    int64_t d[2] = {-1, p};
    return set_out(c, n, 2, d);
}

/* Reshape with a constant shape (float32 holding integers): 0 copies the input dim, -1 is
 * inferred. The first entry is the batch and must be 0, -1, 1 (a model exported with batch 1) or
 * IS_BATCH_DIM (a shape computed from the input's, folded). */
static imgsim_status infer_reshape(sh_ctx *c, ims_node *n) {
    const ims_value *x, *s;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if ((st = need_const(c, n, 1, &s)) != IMGSIM_OK) return st;
    int64_t r = ims_value_numel(s);
    if (s->rank != 1 || r < 1 || r > IS_MAX_RANK)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                       "node '%s' (Reshape): shape '%s' must be 1-D with 1 to %d entries", node_label(n),
                       value_label(s), IS_MAX_RANK);
    int64_t per = 1; /* elements per image */
    for (int i = 1; i < x->rank; i++)
        per *= x->dims[i];
    int64_t d[IS_MAX_RANK];
    int infer_at = -1;
    int64_t known = 1;
    for (int i = 0; i < r; i++) {
        float f = s->data[i];
        if (f == IS_BATCH_DIM && i == 0) f = 0.0f; /* a shape computed from the batch: keep it */
        if (f == IS_BATCH_DIM)
            return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                           "node '%s' (Reshape): shape entry %d is the batch size; only the first may be",
                           node_label(n), i);
        if (!(f == floorf(f)) || f < -1.0f || f > (float)SH_MAX_DIM)
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Reshape): shape entry %d (%g) is invalid",
                           node_label(n), i, (double)f);
        int64_t v = (int64_t)f;
        if (i == 0) {
            if (v != 0 && v != -1 && v != 1)
                return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                               "node '%s' (Reshape): first dim %lld would change the batch axis",
                               node_label(n), (long long)v);
            d[0] = -1;
            continue;
        }
        if (v == 0) {
            if (i >= x->rank)
                return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                               "node '%s' (Reshape): entry %d is 0 but the input has rank %d", node_label(n),
                               i, x->rank);
            v = x->dims[i];
        }
        if (v == -1) {
            if (infer_at >= 0)
                return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Reshape): more than one -1 in the shape",
                               node_label(n));
            infer_at = i;
            d[i] = -1;
            continue;
        }
        d[i] = v;
        if (known > SH_MAX_NUMEL / v)
            return ims_fail(c->e, IMGSIM_ERR_TOO_LARGE, "node '%s' (Reshape): shape is too large",
                           node_label(n));
        known *= v;
    }
    float f0 = s->data[0];
    if (f0 == -1.0f && infer_at >= 0)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Reshape): more than one -1 in the shape",
                       node_label(n));
    if (infer_at >= 0) {
        if (per % known != 0)
            return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                           "node '%s' (Reshape): %lld elements per image cannot be split by %lld",
                           node_label(n), (long long)per, (long long)known);
        d[infer_at] = per / known;
    } else if (known != per) {
        if (f0 == -1.0f)
            return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                           "node '%s' (Reshape): %lld elements per image into %lld would mix the batch axis",
                           node_label(n), (long long)per, (long long)known);
        return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                       "node '%s' (Reshape): %lld elements per image cannot become %lld", node_label(n),
                       (long long)per, (long long)known);
    }
    return set_out(c, n, (int)r, d);
}

/* Gemm: A [N, K] (no transA: the batch stays the rows), B constant [K, M] or [M, K] with transB,
 * C optional constant broadcastable to [N, M] without depending on N ([M], [1, M] or a scalar). */
static imgsim_status infer_gemm(sh_ctx *c, ims_node *n) {
    const ims_value *a, *b, *cc = NULL;
    imgsim_status st;
    char b1[128], b2[128];
    if ((st = need_act(c, n, 0, &a)) != IMGSIM_OK) return st;
    if ((st = need_const(c, n, 1, &b)) != IMGSIM_OK) return st;
    if (n->n_in > 2 && n->in[2] >= 0 && (st = need_const(c, n, 2, &cc)) != IMGSIM_OK) return st;
    if (a->rank != 2)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Gemm): input '%s' is %s, expected 2-D",
                       node_label(n), value_label(a), dims_str(b1, sizeof b1, a->rank, a->dims));
    if (n->trans_a)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                       "node '%s' (Gemm): transA on the activation is unsupported", node_label(n));
    if (b->rank != 2)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Gemm): B '%s' is %s, expected 2-D", node_label(n),
                       value_label(b), dims_str(b1, sizeof b1, b->rank, b->dims));
    int64_t K = n->trans_b ? b->dims[1] : b->dims[0], M = n->trans_b ? b->dims[0] : b->dims[1];
    if (K != a->dims[1])
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Gemm): A %s and B %s%s do not agree on K",
                       node_label(n), dims_str(b1, sizeof b1, a->rank, a->dims),
                       dims_str(b2, sizeof b2, b->rank, b->dims), n->trans_b ? " (transposed)" : "");
    if (cc) {
        int ok = (cc->rank == 0) || (cc->rank == 1 && (cc->dims[0] == M || cc->dims[0] == 1)) ||
                 (cc->rank == 2 && cc->dims[0] == 1 && (cc->dims[1] == M || cc->dims[1] == 1));
        if (!ok)
            return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                           "node '%s' (Gemm): C '%s' is %s; expected [%lld], [1, %lld] or a scalar",
                           node_label(n), value_label(cc), dims_str(b1, sizeof b1, cc->rank, cc->dims),
                           (long long)M, (long long)M);
    }
    int64_t d[2] = {-1, M};
    return set_out(c, n, 2, d);
}

/* MatMul: A [N, ..., K] activation, B constant [K, M] -> [N, ..., M]. */
static imgsim_status infer_matmul(sh_ctx *c, ims_node *n) {
    const ims_value *a, *b;
    imgsim_status st;
    char b1[128], b2[128];
    if ((st = need_act(c, n, 0, &a)) != IMGSIM_OK) return st;
    if ((st = need_const(c, n, 1, &b)) != IMGSIM_OK) return st;
    if (a->rank < 2 || b->rank != 2)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                       "node '%s' (MatMul): %s x %s is unsupported (need [N, ..., K] x [K, M])",
                       node_label(n), dims_str(b1, sizeof b1, a->rank, a->dims),
                       dims_str(b2, sizeof b2, b->rank, b->dims));
    if (a->dims[a->rank - 1] != b->dims[0])
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (MatMul): %s x %s do not agree on K",
                       node_label(n), dims_str(b1, sizeof b1, a->rank, a->dims),
                       dims_str(b2, sizeof b2, b->rank, b->dims));
    if (n->n_in > 2 && n->in[2] >= 0) { /* a fused bias */
        const ims_value *bb;
        if ((st = need_const(c, n, 2, &bb)) != IMGSIM_OK) return st;
        if (ims_value_numel(bb) != b->dims[1])
            return ims_fail(c->e, IMGSIM_ERR_INTERNAL, "node '%s' (MatMul): bias '%s' is not of %lld values",
                            node_label(n), value_label(bb), (long long)b->dims[1]);
    }
    int64_t d[IS_MAX_RANK];
    memcpy(d, a->dims, sizeof d);
    d[a->rank - 1] = b->dims[1];
    return set_out(c, n, a->rank, d);
}

/* Concat on axis >= 1: activations of equal rank and equal dims except along axis. */
static imgsim_status infer_concat(sh_ctx *c, ims_node *n) {
    const ims_value *x0, *x;
    imgsim_status st;
    char b1[128], b2[128];
    if ((st = need_act(c, n, 0, &x0)) != IMGSIM_OK) return st;
    if (n->axis < 0 || n->axis >= x0->rank)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Concat): axis %d is out of range for rank %d",
                       node_label(n), n->axis, x0->rank);
    if (n->axis == 0)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                       "node '%s' (Concat): concatenating along the batch axis is unsupported",
                       node_label(n));
    int64_t d[IS_MAX_RANK];
    memcpy(d, x0->dims, sizeof d);
    for (int k = 1; k < n->n_in; k++) {
        if ((st = need_act(c, n, k, &x)) != IMGSIM_OK) return st;
        int same = x->rank == x0->rank;
        for (int i = 1; same && i < x0->rank; i++)
            if (i != n->axis && x->dims[i] != x0->dims[i]) same = 0;
        if (!same)
            return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                           "node '%s' (Concat): input %d %s does not match %s except on axis %d",
                           node_label(n), k, dims_str(b1, sizeof b1, x->rank, x->dims),
                           dims_str(b2, sizeof b2, x0->rank, x0->dims), n->axis);
        d[n->axis] += x->dims[n->axis];
        if (d[n->axis] > SH_MAX_DIM)
            return ims_fail(c->e, IMGSIM_ERR_TOO_LARGE, "node '%s' (Concat): output is too large",
                           node_label(n));
    }
    return set_out(c, n, x0->rank, d);
}

/* Transpose of an activation: the batch stays axis 0. */
static imgsim_status infer_transpose(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if (n->n_perm != x->rank)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Transpose): perm has %d entries for rank %d",
                        node_label(n), n->n_perm, x->rank);
    if (n->perm[0] != 0)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED, "node '%s' (Transpose): perm would move the batch axis",
                        node_label(n));
    int64_t d[IS_MAX_RANK];
    for (int k = 0; k < x->rank; k++)
        d[k] = x->dims[n->perm[k]];
    return set_out(c, n, x->rank, d);
}

/* Slice of an activation: constant bounds, step 1, the batch whole; the starts go to offset[]. */
static imgsim_status infer_slice(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    int64_t start[IS_MAX_RANK], count[IS_MAX_RANK], step[IS_MAX_RANK];
    if ((st = ims_graph_slice_bounds(c->g, n, start, count, step, c->e)) != IMGSIM_OK) return st;
    for (int k = 0; k < x->rank; k++) {
        if (step[k] != 1)
            return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                            "node '%s' (Slice): step %lld on an activation is not supported", node_label(n),
                            (long long)step[k]);
        n->offset[k] = start[k];
    }
    return set_out(c, n, x->rank, count);
}

/* Unsqueeze / Squeeze of an activation (a reshape): the batch stays axis 0. */
static imgsim_status infer_squeeze(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    int64_t d[IS_MAX_RANK];
    int r = 0;
    unsigned mask = 0;
    for (int i = 0; i < n->n_perm; i++)
        mask |= 1u << n->perm[i];
    if (n->op == IS_OP_UNSQUEEZE) {
        r = x->rank + n->n_perm;
        if (r > IS_MAX_RANK || (mask & 1) || mask >> r)
            return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED, "node '%s' (Unsqueeze): axes out of range or before the batch",
                            node_label(n));
        for (int k = 0, j = 0; k < r; k++)
            d[k] = mask >> k & 1 ? 1 : x->dims[j++];
    } else {
        for (int k = 0; k < x->rank; k++) {
            int sq = n->n_perm ? (int)(mask >> k & 1) : x->dims[k] == 1;
            if (sq && (k == 0 || x->dims[k] != 1))
                return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Squeeze): axis %d is not of size 1",
                                node_label(n), k);
            if (!sq) d[r++] = x->dims[k];
        }
    }
    return set_out(c, n, r, d);
}

/* Cast of an activation: to float is the identity; to an integer type is not supported. */
static imgsim_status infer_cast(sh_ctx *c, ims_node *n) {
    if (!n->cast_to)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                        "node '%s' (Cast): casting an activation to an integer type is not supported", node_label(n));
    return infer_unary(c, n);
}

/* ReduceMean over perm[] (not the batch): those axes become 1, or go with keepdims 0. */
static imgsim_status infer_reducemean(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    unsigned mask = 0;
    for (int i = 0; i < n->n_perm; i++) {
        if (n->perm[i] < 1 || n->perm[i] >= x->rank)
            return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED, "node '%s' (ReduceMean): axis %d is out of range or the batch",
                            node_label(n), n->perm[i]);
        mask |= 1u << n->perm[i];
    }
    int64_t d[IS_MAX_RANK];
    int r = 0;
    for (int k = 0; k < x->rank; k++) {
        if (!(mask >> k & 1))
            d[r++] = x->dims[k];
        else if (n->keepdims)
            d[r++] = 1;
    }
    return set_out(c, n, r, d);
}

/* LayerNormalization over the last axis: scale (and bias) constants of its size. */
static imgsim_status infer_layernorm(sh_ctx *c, ims_node *n) {
    const ims_value *x, *p;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if (n->axis != x->rank - 1 || x->rank < 2)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                        "node '%s' (LayerNormalization): only the last axis is supported", node_label(n));
    for (int k = 1; k < n->n_in && k < 3; k++) {
        if (n->in[k] < 0) continue;
        if ((st = need_const(c, n, k, &p)) != IMGSIM_OK) return st;
        if (ims_value_numel(p) != x->dims[x->rank - 1])
            return ims_fail(c->e, IMGSIM_ERR_FORMAT,
                            "node '%s' (LayerNormalization): %s '%s' must have %lld values", node_label(n),
                            k == 1 ? "scale" : "bias", value_label(p), (long long)x->dims[x->rank - 1]);
    }
    if (!(n->epsilon >= 0.0f) || !isfinite(n->epsilon))
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (LayerNormalization): epsilon %g is invalid",
                        node_label(n), (double)n->epsilon);
    return set_out(c, n, x->rank, x->dims);
}

/* Pow: x ^ b with b a constant scalar. */
static imgsim_status infer_pow(sh_ctx *c, ims_node *n) {
    const ims_value *b;
    imgsim_status st;
    if ((st = need_const(c, n, 1, &b)) != IMGSIM_OK) return st;
    if (ims_value_numel(b) != 1 || !isfinite(b->data[0]))
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                        "node '%s' (Pow): the exponent must be a finite constant scalar", node_label(n));
    return infer_binary(c, n);
}

static imgsim_status infer_shape_only(sh_ctx *c, ims_node *n);

/* Softmax over the last axis (a negative axis counts from the end). */
static imgsim_status infer_softmax(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    int ax = n->axis < 0 ? n->axis + x->rank : n->axis;
    if (ax != x->rank - 1 || ax < 1)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                        "node '%s' (Softmax): only the last axis of an activation is supported (axis %d of rank %d)",
                        node_label(n), n->axis, x->rank);
    n->axis = ax;
    return set_out(c, n, x->rank, x->dims);
}

/* Attention: packed qkv [N, L, 3E] -> [N, L, E], E a multiple of heads. */
static imgsim_status infer_attention(sh_ctx *c, ims_node *n) {
    const ims_value *x;
    imgsim_status st;
    char b1[128];
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if (x->rank != 3 || x->dims[2] % 3 || n->heads < 1 || (x->dims[2] / 3) % n->heads)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                        "node '%s' (Attention): input %s is not [N, L, 3E] with E a multiple of %d heads",
                        node_label(n), dims_str(b1, sizeof b1, x->rank, x->dims), n->heads);
    int64_t d[3] = {-1, x->dims[1], x->dims[2] / 3};
    return set_out(c, n, 3, d);
}

/* Expand of a constant [1, ...] by a shape whose first entry is the batch: [N, ...] (numpy
 * broadcasting of the rest). */
static imgsim_status infer_expand(sh_ctx *c, ims_node *n) {
    const ims_value *x, *s;
    imgsim_status st;
    char b1[128];
    if ((st = need_const(c, n, 0, &x)) != IMGSIM_OK) return st;
    if ((st = need_const(c, n, 1, &s)) != IMGSIM_OK) return st;
    int64_t r = ims_value_numel(s);
    if (s->rank != 1 || r < 1 || r > IS_MAX_RANK || s->data[0] != IS_BATCH_DIM)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                        "node '%s' (Expand): only a constant repeated over the batch is supported", node_label(n));
    int rr = (int)(r > x->rank ? r : x->rank);
    int64_t d[IS_MAX_RANK];
    for (int i = 0; i < rr; i++) {
        int is = i - (rr - (int)r), ix = i - (rr - x->rank);
        int64_t ds = is >= 0 ? (is == 0 ? -1 : (int64_t)s->data[is]) : 1, dx = ix >= 0 ? x->dims[ix] : 1;
        if (is > 0 && (s->data[is] != floorf(s->data[is]) || s->data[is] < 1))
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Expand): invalid shape entry", node_label(n));
        if (ds == -1 && dx != 1)
            return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED, "node '%s' (Expand): constant %s spans the batch axis",
                            node_label(n), dims_str(b1, sizeof b1, x->rank, x->dims));
        d[i] = ds == -1 ? -1 : ds == 1 ? dx : dx == 1 || dx == ds ? ds : 0;
        if (d[i] == 0)
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Expand): shapes do not broadcast", node_label(n));
    }
    if (rr != x->rank || d[0] != -1)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                        "node '%s' (Expand): the constant must have the output's rank, the batch first",
                        node_label(n));
    return set_out(c, n, rr, d);
}

/* ConstantOfShape whose shape starts with the batch (CLIP's torch.zeros(N, 1, width)): an
 * activation [N, ...] of alpha. */
static imgsim_status infer_constantofshape(sh_ctx *c, ims_node *n) {
    const ims_value *s;
    imgsim_status st;
    if ((st = need_const(c, n, 0, &s)) != IMGSIM_OK) return st;
    int64_t r = ims_value_numel(s), d[IS_MAX_RANK];
    if (s->rank != 1 || r < 1 || r > IS_MAX_RANK || s->data[0] != IS_BATCH_DIM)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                        "node '%s' (ConstantOfShape): only the batch as its first dim is supported", node_label(n));
    d[0] = -1;
    for (int k = 1; k < r; k++) {
        if (s->data[k] != floorf(s->data[k]) || s->data[k] < 1)
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (ConstantOfShape): invalid shape entry", node_label(n));
        d[k] = (int64_t)s->data[k];
    }
    return set_out(c, n, (int)r, d);
}

/* Gather of an activation: one constant index on an axis after the batch (the class token); a
 * scalar index drops the axis, a one-element index keeps it. */
static imgsim_status infer_gather(sh_ctx *c, ims_node *n) {
    const ims_value *x, *ix;
    imgsim_status st;
    if (c->g->vals[n->in[0]].data) return infer_shape_only(c, n);
    if ((st = need_act(c, n, 0, &x)) != IMGSIM_OK) return st;
    if ((st = need_const(c, n, 1, &ix)) != IMGSIM_OK) return st;
    if (ims_value_numel(ix) != 1 || ix->rank > 1 || n->axis < 1 || n->axis >= x->rank)
        return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                        "node '%s' (Gather): more than one index, or the batch axis, on an activation is not supported "
                        "(one index of an axis after the batch is)",
                        node_label(n));
    int64_t A = x->dims[n->axis];
    float f = ix->data[0];
    if (f != floorf(f) || f < -(float)A || f >= (float)A)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (Gather): index %g is out of range for %lld",
                        node_label(n), (double)f, (long long)A);
    memset(n->offset, 0, sizeof n->offset);
    n->offset[n->axis] = f < 0 ? (int64_t)f + A : (int64_t)f;
    int64_t d[IS_MAX_RANK];
    int r = 0;
    for (int k = 0; k < x->rank; k++) {
        if (k != n->axis)
            d[r++] = x->dims[k];
        else if (ix->rank == 1)
            d[r++] = 1;
    }
    return set_out(c, n, r, d);
}

/* Shape arithmetic left unfolded: its input is an activation. */
static imgsim_status infer_shape_only(sh_ctx *c, ims_node *n) {
    return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED,
                    "node '%s' (%s) on an activation is not supported (only on shapes and constants)", node_label(n),
                    ims_op_name(n->op));
}

/* A fused residual (set by ims_graph_optimize) must match the node's output exactly. */
static imgsim_status check_residual(sh_ctx *c, const ims_node *n) {
    if (n->residual < 0) return IMGSIM_OK;
    const ims_value *r = &c->g->vals[n->residual], *o = &c->g->vals[n->out];
    char b1[128], b2[128];
    if (n->op != IS_OP_CONV && n->op != IS_OP_GEMM && n->op != IS_OP_MATMUL)
        return ims_fail(c->e, IMGSIM_ERR_INTERNAL, "node '%s' (%s) has a residual", node_label(n),
                       ims_op_name(n->op));
    if (r->data || !c->known[n->residual])
        return ims_fail(c->e, IMGSIM_ERR_INTERNAL, "node '%s': residual '%s' is not a computed activation",
                       node_label(n), value_label(r));
    int same = r->rank == o->rank;
    for (int i = 0; same && i < r->rank; i++)
        if (r->dims[i] != o->dims[i]) same = 0;
    if (!same)
        return ims_fail(c->e, IMGSIM_ERR_INTERNAL, "node '%s': residual %s does not match output %s",
                       node_label(n), dims_str(b1, sizeof b1, r->rank, r->dims),
                       dims_str(b2, sizeof b2, o->rank, o->dims));
    return IMGSIM_OK;
}

/* Each operator's shape rule; NULL: not one shape inference knows. Adding an operator is its
 * infer_* function and its row here. */
typedef imgsim_status (*infer_fn)(sh_ctx *c, ims_node *n);
/* clang-format off */
static const infer_fn infer_table[IS_OP_COUNT] = {
    [IS_OP_CONV] = infer_conv,
    [IS_OP_BATCHNORM] = infer_bn,
    [IS_OP_RELU] = infer_unary,
    [IS_OP_CLIP] = infer_unary,
    [IS_OP_ADD] = infer_binary,
    [IS_OP_MUL] = infer_binary,
    [IS_OP_SIGMOID] = infer_unary,
    [IS_OP_MAXPOOL] = infer_pool,
    [IS_OP_AVGPOOL] = infer_pool,
    [IS_OP_GLOBALAVGPOOL] = infer_gap,
    [IS_OP_FLATTEN] = infer_flatten,
    [IS_OP_RESHAPE] = infer_reshape,
    [IS_OP_GEMM] = infer_gemm,
    [IS_OP_MATMUL] = infer_matmul,
    [IS_OP_CONCAT] = infer_concat,
    [IS_OP_IDENTITY] = infer_unary,
    [IS_OP_HARDSIGMOID] = infer_unary,
    [IS_OP_HARDSWISH] = infer_unary,
    [IS_OP_SUB] = infer_binary,
    [IS_OP_DIV] = infer_binary,
    [IS_OP_TRANSPOSE] = infer_transpose,
    [IS_OP_SLICE] = infer_slice,
    [IS_OP_SHAPE] = infer_shape_only,
    [IS_OP_GATHER] = infer_gather,
    [IS_OP_UNSQUEEZE] = infer_squeeze,
    [IS_OP_SQUEEZE] = infer_squeeze,
    [IS_OP_CAST] = infer_cast,
    [IS_OP_REDUCEMEAN] = infer_reducemean,
    [IS_OP_POW] = infer_pow,
    [IS_OP_SQRT] = infer_unary,
    [IS_OP_ERF] = infer_unary,
    [IS_OP_GELU] = infer_unary,
    [IS_OP_LAYERNORM] = infer_layernorm,
    [IS_OP_SOFTMAX] = infer_softmax,
    [IS_OP_ATTENTION] = infer_attention,
    [IS_OP_SWISH] = infer_unary,
    [IS_OP_EXPAND] = infer_expand,
    [IS_OP_CONSTANTOFSHAPE] = infer_constantofshape,
    [IS_OP_EQUAL] = infer_shape_only,
    [IS_OP_WHERE] = infer_shape_only,
    [IS_OP_MOD] = infer_shape_only,
};
/* clang-format on */

/* The input: [N, C, H, W] with C, H, W fixed, positive and not too large; the batch is made
 * symbolic and the graph's in_c/in_h/in_w set. */
static imgsim_status infer_input(sh_ctx *c) {
    ims_graph *g = c->g;
    ims_err *e = c->e;
    char b1[128];
    ims_value *in = &g->vals[g->input];
    if (in->rank != 4)
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                        "graph input '%s' is %s; an image batch [N, C, H, W] is expected", value_label(in),
                        dims_str(b1, sizeof b1, in->rank, in->dims));
    for (int i = 1; i < 4; i++) {
        if (in->dims[i] < 1)
            return ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                            "graph input '%s' is %s; C, H and W must be fixed positive sizes",
                            value_label(in), dims_str(b1, sizeof b1, in->rank, in->dims));
        if (in->dims[i] > 65536)
            return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "graph input '%s' is %s: too large", value_label(in),
                            dims_str(b1, sizeof b1, in->rank, in->dims));
    }
    if (in->dims[1] * in->dims[2] * in->dims[3] > SH_MAX_NUMEL) /* each <= 65536: no overflow */
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "graph input '%s' is %s: too large", value_label(in),
                        dims_str(b1, sizeof b1, in->rank, in->dims));
    in->dims[0] = -1;
    g->in_c = (int)in->dims[1];
    g->in_h = (int)in->dims[2];
    g->in_w = (int)in->dims[3];
    c->known[g->input] = 1;
    return IMGSIM_OK;
}

/* The output, when chosen: computed by the graph; g->dim is the product of its non-batch dims. */
static imgsim_status check_output(sh_ctx *c) {
    ims_graph *g = c->g;
    if (g->output < 0 || g->output >= g->n_vals) return IMGSIM_OK;
    const ims_value *o = &g->vals[g->output];
    if (!c->known[g->output] || o->data)
        return ims_fail(c->e, IMGSIM_ERR_FORMAT, "graph output '%s' is not computed by the graph",
                        value_label(o));
    int64_t dim = 1;
    for (int i = 1; i < o->rank; i++)
        dim *= o->dims[i];
    g->dim = dim;
    return IMGSIM_OK;
}

imgsim_status ims_graph_infer_shapes(ims_graph *g, ims_err *e) {
    if (!g) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "graph: NULL");
    if (g->input < 0 || g->input >= g->n_vals)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "graph has no input value");
    sh_ctx c = {g, ims_calloc((size_t)g->n_vals + 1, 1), e};
    if (!c.known) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory inferring shapes");
    imgsim_status st = infer_input(&c);
    if (st == IMGSIM_OK)
        for (int v = 0; v < g->n_vals; v++)
            if (g->vals[v].data) c.known[v] = 1;
    for (int i = 0; i < g->n_nodes && st == IMGSIM_OK; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        if (ims_graph_foldable(g, n) && (n->op != IS_OP_SHAPE || c.known[n->in[0]])) {
            st = ims_graph_fold_node(g, n, e); /* a constant now; the node is dead */
            if (st == IMGSIM_OK) st = check_constant(&c, n->out);
            if (st == IMGSIM_OK) c.known[n->out] = 1;
            continue;
        }
        infer_fn fn = (int)n->op >= 0 && n->op < IS_OP_COUNT ? infer_table[n->op] : NULL;
        if (fn)
            st = fn(&c, n);
        else
            st = ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "node '%s': operator %d is unsupported", node_label(n),
                          (int)n->op);
        if (st == IMGSIM_OK) st = check_residual(&c, n);
    }
    if (st == IMGSIM_OK) st = check_output(&c);
    free(c.known);
    return st;
}
