/*
 * passes.c: ims_graph_optimize, the load-time rewrites that make a graph cheap to execute.
 *
 * In order, each followed by ims_graph_link (which drops dead nodes, re-sorts and recounts):
 *   1. Identity nodes are removed, their readers rewired to the Identity's input.
 *   2. Nodes the chosen output (g->output) does not need are removed (e.g. the classifier head).
 *   2b. GELU written out in erf form, 0.5 * x * (1 + erf(x / sqrt(2))) (torch.onnx's export of
 *      nn.GELU: Div or Mul by a constant, Erf, Add 1, Mul, Mul 0.5, in either order of the two
 *      Muls), becomes one Gelu node when its intermediate values have no other reader.
 *   2c. Transformer token rewrites (fuse_tokens.c): LayerNorm, quick GELU, MatMul epilogues.
 *   3. BatchNormalization is folded into the Conv before it when that Conv's output has no other
 *      reader:  s = gamma / sqrt(var + eps),  W'[oc] = W[oc] * s[oc],
 *      b'[oc] = (b[oc] - mean[oc]) * s[oc] + beta[oc]  (computed in double, stored as float).
 *      Weights shared with another node are copied first. A BN elsewhere stays (backends run it as
 *      a per-channel scale and shift).
 *   4. The residual Add(x, conv(...)) is fused into the Conv (conv.residual = x) when the Conv's
 *      output has no other reader and x has the same shape; of two eligible Convs the one later
 *      in the order is chosen, so x is already computed (otherwise link re-sorts).
 *   5. Relu and Clip after a Conv (sole reader) become the Conv's act, so a Conv computes
 *      act(conv(x, W) + b + residual).
 *   6. Values no node references any more are removed and indices compacted.
 * The result is linked and shape-checked again before it is returned.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"

static const char *node_label(const ims_node *n) {
    return (n->name && n->name[0]) ? n->name : ims_op_name(n->op);
}

/* The live producer of v, or NULL. Valid right after ims_graph_link. */
static ims_node *live_producer(ims_graph *g, int v) {
    if (v < 0 || v >= g->n_vals) return NULL;
    int p = g->vals[v].producer;
    if (p < 0 || p >= g->n_nodes) return NULL;
    ims_node *n = &g->nodes[p];
    return (n->dead || n->out != v) ? NULL : n;
}

/* A Conv whose output v may be rewritten: v is read by exactly one node, is not the chosen
 * output, and nothing has been fused into the Conv yet. */
static ims_node *fusable_conv(ims_graph *g, int v) {
    ims_node *c = live_producer(g, v);
    if (!c || c->op != IS_OP_CONV || c->act != IS_ACT_NONE || c->residual != -1) return NULL;
    if (g->vals[v].n_consumers != 1 || v == g->output) return NULL;
    return c;
}

/* 1. Identity removal: in topological order, each Identity's output is mapped to what its input
 * maps to (so chains collapse), then every reference is rewritten once. Returns the number
 * removed, or -1 when out of memory. */
static int remove_identities(ims_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == IS_OP_IDENTITY) count++;
    if (!count) return 0;
    int *map = ims_malloc_array((size_t)g->n_vals + 1, sizeof(int));
    if (!map) return -1;
    for (int v = 0; v < g->n_vals; v++)
        map[v] = v;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead || n->op != IS_OP_IDENTITY) continue;
        map[n->out] = map[n->in[0]];
        n->dead = 1;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) n->in[k] = map[n->in[k]];
        if (n->residual >= 0) n->residual = map[n->residual];
    }
    g->output = map[g->output];
    free(map);
    return count;
}

/* 2. Marks dead every node whose output the chosen output does not need (nodes are in
 * topological order, so one backward sweep suffices). */
static imgsim_status remove_unneeded(ims_graph *g, ims_err *e) {
    char *need = ims_calloc((size_t)g->n_vals + 1, 1);
    if (!need) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory optimising");
    need[g->output] = 1;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        if (!need[n->out]) {
            n->dead = 1;
            continue;
        }
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) need[n->in[k]] = 1;
        if (n->residual >= 0) need[n->residual] = 1;
    }
    free(need);
    return IMGSIM_OK;
}

/* A value name not yet in the graph: base + suffix, or with a counter appended. Returns 0 on
 * success. */
static int unique_name(const ims_graph *g, char *buf, size_t cap, const char *base, const char *suffix) {
    snprintf(buf, cap, "%.400s%s", base, suffix);
    for (int k = 1; ims_graph_find_value(g, buf) >= 0; k++) {
        if (k > 100000) return -1;
        snprintf(buf, cap, "%.400s%s_%d", base, suffix, k);
    }
    return 0;
}

/* Makes value v private to one reader: returns v when nothing else reads it, else a new copy
 * (a constant). -1 on allocation failure. Note: may move g->vals. */
static int private_constant(ims_graph *g, int v, const char *suffix) {
    if (g->vals[v].n_consumers <= 1) return v;
    char name[512];
    if (unique_name(g, name, sizeof name, g->vals[v].name, suffix) != 0) return -1;
    int64_t dims[IS_MAX_RANK];
    memcpy(dims, g->vals[v].dims, sizeof dims);
    int rank = g->vals[v].rank;
    const float *data = g->vals[v].data;
    int nv = ims_graph_add_value(g, name, rank, dims, data);
    if (nv < 0) return -1;
    g->vals[v].n_consumers--;
    g->vals[nv].n_consumers = 1;
    return nv;
}

/* 3. Folds each BatchNormalization that directly follows a fusable Conv. *changed counts folds. */
static imgsim_status fold_batchnorms(ims_graph *g, int *changed, ims_err *e) {
    *changed = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *bn = &g->nodes[i];
        if (bn->dead || bn->op != IS_OP_BATCHNORM) continue;
        ims_node *conv = fusable_conv(g, bn->in[0]);
        if (!conv) continue;
        int64_t oc = g->vals[conv->in[1]].dims[0];
        const ims_value *gv = &g->vals[bn->in[1]];
        if (gv->rank != 1 || gv->dims[0] != oc)
            return ims_fail(e, IMGSIM_ERR_INTERNAL,
                           "node '%s': BN size does not match the Conv (shapes not inferred?)",
                           node_label(bn));
        /* Scale per output channel, checked before anything is modified. */
        double *s = ims_malloc_array((size_t)oc, sizeof(double));
        if (!s) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory folding '%s'", node_label(bn));
        for (int64_t c = 0; c < oc; c++) {
            double var = g->vals[bn->in[4]].data[c], gamma = g->vals[bn->in[1]].data[c];
            double den = var + (double)bn->epsilon;
            if (!(den > 0.0) || !isfinite(den) || !isfinite(gamma)) {
                free(s);
                return ims_fail(e, IMGSIM_ERR_FORMAT,
                               "node '%s' (BatchNormalization): variance + epsilon is %g at channel %lld",
                               node_label(bn), den, (long long)c);
            }
            s[c] = gamma / sqrt(den);
        }
        /* Private weight and bias (a new zero bias when the Conv has none). */
        int w = private_constant(g, conv->in[1], ".bn_folded");
        int b = conv->n_in > 2 ? conv->in[2] : -1;
        if (w >= 0 && b >= 0) b = private_constant(g, b, ".bn_folded");
        if (w >= 0 && b < 0 && (conv->n_in < 3 || conv->in[2] < 0)) {
            char name[512];
            float *zeros = ims_calloc((size_t)oc, sizeof(float));
            int64_t bd[1] = {oc};
            if (zeros && unique_name(g, name, sizeof name, g->vals[bn->in[2]].name, "_folded") == 0)
                b = ims_graph_add_value(g, name, 1, bd, zeros);
            free(zeros);
            if (b >= 0) g->vals[b].n_consumers = 1;
        }
        if (w < 0 || b < 0) {
            free(s);
            return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory folding '%s'", node_label(bn));
        }
        /* W [OC, IC/group, KH, KW]: each output channel's block scaled by s[oc]. */
        ims_value *wv = &g->vals[w];
        int64_t per = ims_value_numel(wv) / oc;
        for (int64_t c = 0; c < oc; c++)
            for (int64_t k = 0; k < per; k++)
                wv->data[c * per + k] = (float)((double)wv->data[c * per + k] * s[c]);
        free(wv->w_scale); /* no longer q * scale: the int8 engine chooses the weights' scales */
        wv->w_scale = NULL;
        float *bias = g->vals[b].data;
        const float *beta = g->vals[bn->in[2]].data, *mean = g->vals[bn->in[3]].data;
        for (int64_t c = 0; c < oc; c++)
            bias[c] = (float)(((double)bias[c] - (double)mean[c]) * s[c] + (double)beta[c]);
        free(s);
        conv->in[1] = w;
        conv->in[2] = b;
        conv->n_in = 3;
        conv->out = bn->out;
        g->vals[bn->out].producer = (int)(conv - g->nodes); /* a BN after this one sees the Conv */
        bn->dead = 1;
        (*changed)++;
    }
    return IMGSIM_OK;
}

static int same_dims(const ims_value *a, const ims_value *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

/* The only live node reading v (v read once), or NULL; v must not be the chosen output. */
static ims_node *sole_reader(ims_graph *g, int v) {
    if (v < 0 || g->vals[v].n_consumers != 1 || v == g->output) return NULL;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] == v) return n->residual == v ? NULL : n;
    }
    return NULL;
}

/* Whether node n is op(act, c) or op(c, act) with c a constant scalar within tol of want (any
 * order only when commutative); *act gets the activation input. */
static int op_with_scalar(const ims_graph *g, const ims_node *n, ims_op op, double want, double tol, int *act) {
    if (!n || n->op != op || n->n_in != 2 || n->residual >= 0 || n->act != IS_ACT_NONE) return 0;
    for (int k = 0; k < 2; k++) {
        const ims_value *c = &g->vals[n->in[1 - k]], *a = &g->vals[n->in[k]];
        if (k == 1 && op == IS_OP_DIV) break;
        if (a->data || !c->data || ims_value_numel(c) != 1) continue;
        if (fabs((double)c->data[0] - want) <= tol) {
            *act = n->in[k];
            return 1;
        }
    }
    return 0;
}

/* 2b. Fuses the erf form of GELU into one Gelu node. Returns the number fused. */
static int fuse_gelu(ims_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *erf = &g->nodes[i];
        if (erf->dead || erf->op != IS_OP_ERF) continue;
        ims_node *scale = live_producer(g, erf->in[0]);
        int x = -1, t, o;
        if (!scale || g->vals[erf->in[0]].n_consumers != 1 || erf->in[0] == g->output) continue;
        if (!op_with_scalar(g, scale, IS_OP_DIV, 1.4142135623730951, 1e-6, &x) &&
            !op_with_scalar(g, scale, IS_OP_MUL, 0.7071067811865476, 1e-6, &x))
            continue;
        ims_node *add = sole_reader(g, erf->out);
        if (!op_with_scalar(g, add, IS_OP_ADD, 1.0, 0.0, &t) || t != erf->out) continue;
        ims_node *m1 = sole_reader(g, add->out), *fin = NULL, *half = NULL;
        if (!m1 || m1->op != IS_OP_MUL || m1->residual >= 0 || m1->act != IS_ACT_NONE) continue;
        o = m1->in[0] == add->out ? m1->in[1] : m1->in[0];
        if (o == x) { /* (x * (1 + erf)) * 0.5 */
            ims_node *m2 = sole_reader(g, m1->out);
            if (op_with_scalar(g, m2, IS_OP_MUL, 0.5, 0.0, &t) && t == m1->out) {
                fin = m2;
                half = m1;
            }
        } else { /* (x * 0.5) * (1 + erf) */
            ims_node *h = live_producer(g, o);
            if (h && g->vals[o].n_consumers == 1 && o != g->output && op_with_scalar(g, h, IS_OP_MUL, 0.5, 0.0, &t) &&
                t == x) {
                fin = m1;
                half = h;
            }
        }
        if (!fin) continue;
        scale->dead = erf->dead = add->dead = half->dead = 1;
        fin->op = IS_OP_GELU;
        fin->n_in = 1;
        fin->in[0] = x;
        fin->in[1] = -1;
        count++;
    }
    return count;
}

/* 4. Fuses Add(x, conv_out) into the Conv as its residual. Returns the number fused. */
static int fuse_residuals(ims_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *add = &g->nodes[i];
        if (add->dead || add->op != IS_OP_ADD) continue;
        int a = add->in[0], b = add->in[1];
        if (a == b || g->vals[a].data || g->vals[b].data) continue;
        if (!same_dims(&g->vals[a], &g->vals[b]) || !same_dims(&g->vals[a], &g->vals[add->out])) continue;
        ims_node *ca = fusable_conv(g, a), *cb = fusable_conv(g, b);
        ims_node *conv;
        int other;
        if (ca && cb) { /* the later Conv takes the Add: the other branch is computed by then */
            int later_is_b = cb > ca;
            conv = later_is_b ? cb : ca;
            other = later_is_b ? a : b;
        } else if (ca) {
            conv = ca;
            other = b;
        } else if (cb) {
            conv = cb;
            other = a;
        } else {
            continue;
        }
        conv->residual = other;
        conv->out = add->out;
        g->vals[add->out].producer = (int)(conv - g->nodes);
        add->dead = 1;
        count++;
    }
    return count;
}

/* 5. Fuses Relu / Clip following a Conv into its act. Returns the number fused. */
static int fuse_activations(ims_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead || (n->op != IS_OP_RELU && n->op != IS_OP_CLIP)) continue;
        int x = n->in[0];
        ims_node *conv = live_producer(g, x);
        /* unlike fusable_conv, a fused residual is fine here: act applies after it */
        if (!conv || conv->op != IS_OP_CONV || conv->act != IS_ACT_NONE) continue;
        if (g->vals[x].n_consumers != 1 || x == g->output) continue;
        if (n->op == IS_OP_RELU) {
            conv->act = IS_ACT_RELU;
            conv->act_min = 0.0f;
            conv->act_max = INFINITY;
        } else {
            conv->act = IS_ACT_CLIP;
            conv->act_min = n->clip_min;
            conv->act_max = n->clip_max;
        }
        conv->out = n->out;
        g->vals[n->out].producer = (int)(conv - g->nodes);
        n->dead = 1;
        count++;
    }
    return count;
}

/* 6. Drops values no live node references (other than the input and output) and renumbers the
 * rest. */
static imgsim_status compact_values(ims_graph *g, ims_err *e) {
    int *map = ims_malloc_array((size_t)g->n_vals + 1, sizeof(int));
    if (!map) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory optimising");
    for (int v = 0; v < g->n_vals; v++)
        map[v] = -1;
    map[g->input] = 1;
    map[g->output] = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) map[n->in[k]] = 1;
        if (n->residual >= 0) map[n->residual] = 1;
        map[n->out] = 1;
    }
    int kept = 0;
    for (int v = 0; v < g->n_vals; v++) {
        if (map[v] < 0) {
            free(g->vals[v].name);
            free(g->vals[v].data);
            free(g->vals[v].w_scale);
            continue;
        }
        if (kept != v) g->vals[kept] = g->vals[v];
        map[v] = kept++;
    }
    g->n_vals = kept;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) n->in[k] = map[n->in[k]];
        if (n->residual >= 0) n->residual = map[n->residual];
        n->out = map[n->out];
    }
    g->input = map[g->input];
    g->output = map[g->output];
    free(map);
    return IMGSIM_OK;
}

imgsim_status ims_graph_optimize(ims_graph *g, ims_err *e) {
    if (!g) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "graph: NULL");
    imgsim_status st;
    if ((st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if ((st = ims_graph_infer_shapes(g, e)) != IMGSIM_OK) return st;
    if (g->output < 0 || g->output >= g->n_vals || g->vals[g->output].data)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "graph: no output selected before optimising");

    int removed = remove_identities(g);
    if (removed < 0) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory optimising");
    if (removed && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if ((st = remove_unneeded(g, e)) != IMGSIM_OK) return st;
    if ((st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if (fuse_gelu(g) && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if ((st = ims_graph_fuse_tokens(g, e)) != IMGSIM_OK) return st; /* fuse_tokens.c */
    /* Each fusion points the rewritten value's producer at the Conv, so one pass handles chains
     * (Conv -> BN -> BN); link then recounts. */
    int changed = 0;
    if ((st = fold_batchnorms(g, &changed, e)) != IMGSIM_OK) return st;
    if (changed && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if (fuse_residuals(g) && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if (fuse_activations(g) && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if ((st = compact_values(g, e)) != IMGSIM_OK) return st;
    if ((st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if ((st = ims_graph_infer_shapes(g, e)) != IMGSIM_OK) return st;
    int64_t dim = 1;
    for (int i = 1; i < g->vals[g->output].rank; i++)
        dim *= g->vals[g->output].dims[i];
    g->dim = dim;
    return IMGSIM_OK;
}
