/*
 * fuse_tokens.c: ims_graph_fuse_tokens, the transformer rewrites of ims_graph_optimize (after the
 * Erf GELU is fused; shapes inferred, graph linked). Each applies to token tensors (rank >= 3:
 * [N, L, C]; the LayerNorm also to [N, C] rows, as CLIP's ln_post) only, so the CNN graphs the
 * CUDA engine runs see none of them (ConvNeXt's written-out LayerNorms, over [N, H, W, C], fuse).
 *
 *   1. LayerNorm written out over the last axis (torch.onnx below opset 17):
 *        m = ReduceMean(x), d = Sub(x, m), v = ReduceMean(Pow(d, 2)), s = Sqrt(Add(v, eps)),
 *        y = Add(Mul(Div(d, s), gamma), beta)      (the Add of beta optional)
 *      becomes LayerNormalization(x, gamma[, beta], eps) when the values between have no other
 *      reader.
 *   2. Quick GELU x * Sigmoid(x * c) (c != 1: CLIP's 1.702) becomes Swish(x, alpha c).
 *   3. MatMul(A, const W [K, M]) followed by Add of a constant [M] (either operand order) takes
 *      it as its bias input.
 *   4. LayerScale: Mul(MatMul with a constant W [+ bias], const gamma [M]) folds gamma into W's
 *      columns and the bias (W' = W diag(gamma), b' = b * gamma, in double; copies when W is
 *      shared).
 *   5. GELU (erf form) after such a MatMul becomes its activation (an eltwise post-op on the
 *      CPU engine); Add(x, MatMul(...)) of equal shapes its residual (a sum post-op).
 * Returns the number of rewrites in *changed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"

static ims_node *prod(ims_graph *g, int v, int op) {
    if (v < 0 || v >= g->n_vals) return NULL;
    int p = g->vals[v].producer;
    if (p < 0 || p >= g->n_nodes) return NULL;
    ims_node *n = &g->nodes[p];
    if (n->dead || n->out != v || (op >= 0 && (int)n->op != op)) return NULL;
    return n;
}

/* The only live reader of v (v not the output), of operator op, or NULL. */
static ims_node *reader(ims_graph *g, int v, int op) {
    if (v < 0 || g->vals[v].n_consumers != 1 || v == g->output) return NULL;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] == v) return (int)n->op == op && n->residual != v ? n : NULL;
        if (n->residual == v) return NULL;
    }
    return NULL;
}

static int is_const(const ims_graph *g, int v) {
    return v >= 0 && v < g->n_vals && g->vals[v].data != NULL;
}

static int plain_node(const ims_node *n) {
    return n && n->residual < 0 && n->act == IS_ACT_NONE;
}

/* The other input of a binary node than v, or -1. */
static int other(const ims_node *n, int v) {
    return n->in[0] == v ? n->in[1] : n->in[1] == v ? n->in[0] : -1;
}

/* A constant broadcasting along the last axis only: numel m, every dim 1 but the last. */
static int row_const(const ims_graph *g, int v, int64_t m) {
    if (!is_const(g, v)) return 0;
    const ims_value *c = &g->vals[v];
    if (ims_value_numel(c) != m) return 0;
    for (int k = 0; k + 1 < c->rank; k++)
        if (c->dims[k] != 1) return 0;
    return 1;
}

static int scalar(const ims_graph *g, int v, double *out) {
    if (!is_const(g, v) || ims_value_numel(&g->vals[v]) != 1) return 0;
    *out = g->vals[v].data[0];
    return 1;
}

/* ReduceMean over the last axis only, keepdims, of x. */
static int mean_last(const ims_graph *g, const ims_node *n, int x) {
    const ims_value *v = &g->vals[x];
    return n && n->op == IS_OP_REDUCEMEAN && n->in[0] == x && n->keepdims && n->n_perm == 1 &&
           n->perm[0] == v->rank - 1 && plain_node(n);
}

/* 1. */
static int fuse_layernorm(ims_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *m = &g->nodes[i];
        if (m->dead || m->op != IS_OP_REDUCEMEAN) continue;
        int x = m->in[0];
        if (g->vals[x].rank < 2 || !mean_last(g, m, x)) continue;
        ims_node *d = reader(g, m->out, IS_OP_SUB);
        if (!plain_node(d) || d->in[0] != x || d->in[1] != m->out || g->vals[d->out].n_consumers != 2) continue;
        ims_node *pw = NULL, *dv = NULL;
        for (int j = 0; j < g->n_nodes; j++) { /* d's two readers: Pow(d, 2) and Div(d, s) */
            ims_node *n = &g->nodes[j];
            if (n->dead || n->in[0] != d->out) continue;
            if (n->op == IS_OP_POW) pw = n;
            if (n->op == IS_OP_DIV) dv = n;
        }
        double two, eps;
        if (!pw || !dv || !scalar(g, pw->in[1], &two) || two != 2.0) continue;
        ims_node *v = reader(g, pw->out, IS_OP_REDUCEMEAN);
        if (!v || !mean_last(g, v, pw->out)) continue;
        ims_node *a = reader(g, v->out, IS_OP_ADD);
        if (!plain_node(a) || !scalar(g, other(a, v->out), &eps) || !(eps >= 0)) continue;
        ims_node *s = reader(g, a->out, IS_OP_SQRT);
        if (!s || dv->in[1] != s->out || g->vals[s->out].n_consumers != 1) continue;
        int64_t C = g->vals[x].dims[g->vals[x].rank - 1];
        ims_node *mu = reader(g, dv->out, IS_OP_MUL);
        if (!plain_node(mu) || !row_const(g, other(mu, dv->out), C)) continue;
        ims_node *ad = reader(g, mu->out, IS_OP_ADD), *fin = mu;
        int beta = -1;
        if (plain_node(ad) && row_const(g, other(ad, mu->out), C)) {
            beta = other(ad, mu->out);
            fin = ad;
        }
        int gamma = other(mu, dv->out);
        m->dead = d->dead = pw->dead = v->dead = a->dead = s->dead = dv->dead = 1;
        if (fin != mu) mu->dead = 1;
        fin->op = IS_OP_LAYERNORM;
        fin->in[0] = x;
        fin->in[1] = gamma;
        fin->in[2] = beta;
        fin->n_in = beta >= 0 ? 3 : 2;
        fin->axis = g->vals[x].rank - 1;
        fin->epsilon = (float)eps;
        count++;
    }
    return count;
}

/* 2. */
static int fuse_quick_gelu(ims_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *sg = &g->nodes[i];
        if (sg->dead || sg->op != IS_OP_SIGMOID) continue;
        ims_node *t = prod(g, sg->in[0], IS_OP_MUL);
        double c;
        if (!plain_node(t) || g->vals[t->out].n_consumers != 1 || t->out == g->output) continue;
        int x = is_const(g, t->in[1]) ? t->in[0] : t->in[1];
        if (g->vals[x].rank < 3 || !scalar(g, other(t, x), &c) || c == 1.0 || !isfinite(c)) continue;
        ims_node *y = reader(g, sg->out, IS_OP_MUL);
        if (!plain_node(y) || other(y, sg->out) != x) continue;
        t->dead = sg->dead = 1;
        y->op = IS_OP_SWISH;
        y->in[0] = x;
        y->in[1] = -1;
        y->n_in = 1;
        y->alpha = (float)c;
        count++;
    }
    return count;
}

/* A token MatMul with a constant [K, M] weight, nothing fused after it yet. */
static int token_matmul(const ims_graph *g, const ims_node *n) {
    return n && n->op == IS_OP_MATMUL && plain_node(n) && g->vals[n->in[0]].rank >= 3 && is_const(g, n->in[1]) &&
           g->vals[n->in[1]].rank == 2;
}

/* 3. */
static int fuse_matmul_bias(ims_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *mm = &g->nodes[i];
        if (mm->dead || !token_matmul(g, mm) || (mm->n_in > 2 && mm->in[2] >= 0)) continue;
        ims_node *ad = reader(g, mm->out, IS_OP_ADD);
        int64_t M = g->vals[mm->in[1]].dims[1];
        if (!plain_node(ad) || !row_const(g, other(ad, mm->out), M)) continue;
        mm->in[2] = other(ad, mm->out);
        mm->n_in = 3;
        mm->out = ad->out;
        g->vals[ad->out].producer = (int)(mm - g->nodes);
        ad->dead = 1;
        count++;
    }
    return count;
}

/* A value name not in the graph: base + suffix (+ a counter). */
static void fresh_name(const ims_graph *g, char *buf, size_t cap, const char *base, const char *suffix) {
    snprintf(buf, cap, "%.400s%s", base, suffix);
    for (int k = 1; ims_graph_find_value(g, buf) >= 0 && k < 100000; k++)
        snprintf(buf, cap, "%.400s%s_%d", base, suffix, k);
}

/* Constant v scaled per last-axis element by gamma (M values) into a new value; -1 when out of
 * memory. */
static int scaled_copy(ims_graph *g, int v, const float *gamma, int64_t M) {
    char name[512];
    fresh_name(g, name, sizeof name, g->vals[v].name, ".scaled");
    int64_t n = ims_value_numel(&g->vals[v]);
    float *d = ims_malloc_array((size_t)n, sizeof(float));
    if (!d) return -1;
    for (int64_t k = 0; k < n; k++) d[k] = (float)((double)g->vals[v].data[k] * (double)gamma[k % M]);
    int64_t dims[IS_MAX_RANK];
    memcpy(dims, g->vals[v].dims, sizeof dims);
    int nv = ims_graph_add_value(g, name, g->vals[v].rank, dims, d);
    free(d);
    return nv;
}

/* 4. Returns the count, or -1 when out of memory. */
static int fold_layer_scale(ims_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *mm = &g->nodes[i];
        if (mm->dead || !token_matmul(g, mm)) continue;
        ims_node *mu = reader(g, mm->out, IS_OP_MUL);
        int64_t M = g->vals[mm->in[1]].dims[1];
        if (!plain_node(mu)) continue;
        int gv = other(mu, mm->out);
        if (!row_const(g, gv, M)) continue;
        int mi = (int)(mm - g->nodes), ui = (int)(mu - g->nodes);
        float *gamma = ims_malloc_array((size_t)M, sizeof(float));
        if (!gamma) return -1;
        memcpy(gamma, g->vals[gv].data, (size_t)M * sizeof(float));
        int w = scaled_copy(g, g->nodes[mi].in[1], gamma, M); /* new values: the old stay for others */
        int b = g->nodes[mi].n_in > 2 && g->nodes[mi].in[2] >= 0 ? scaled_copy(g, g->nodes[mi].in[2], gamma, M)
                                                                 : -2;
        free(gamma);
        if (w < 0 || b == -1) return -1;
        mm = &g->nodes[mi];
        mu = &g->nodes[ui];
        mm->in[1] = w;
        if (b >= 0) mm->in[2] = b;
        mm->out = mu->out;
        g->vals[mu->out].producer = mi;
        mu->dead = 1;
        count++;
    }
    return count;
}

static int same_dims(const ims_value *a, const ims_value *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

/* 5. */
static int fuse_matmul_epilogues(ims_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        if (n->op == IS_OP_GELU) {
            ims_node *mm = prod(g, n->in[0], IS_OP_MATMUL);
            if (!token_matmul(g, mm) || g->vals[mm->out].n_consumers != 1 || mm->out == g->output) continue;
            mm->act = IS_ACT_GELU;
            mm->out = n->out;
            g->vals[n->out].producer = (int)(mm - g->nodes);
            n->dead = 1;
            count++;
        } else if (n->op == IS_OP_ADD && plain_node(n)) {
            for (int k = 0; k < 2; k++) {
                int mv = n->in[k], xv = n->in[1 - k];
                ims_node *mm = prod(g, mv, IS_OP_MATMUL);
                if (mv == xv || !mm || mm->residual >= 0 || mm->act != IS_ACT_NONE || !is_const(g, mm->in[1]) ||
                    g->vals[mv].rank < 3 || is_const(g, xv) || g->vals[mv].n_consumers != 1 || mv == g->output)
                    continue;
                if (!same_dims(&g->vals[mv], &g->vals[xv]) || !same_dims(&g->vals[mv], &g->vals[n->out])) continue;
                mm->residual = xv;
                mm->out = n->out;
                g->vals[n->out].producer = (int)(mm - g->nodes);
                n->dead = 1;
                count++;
                break;
            }
        }
    }
    return count;
}

imgsim_status ims_graph_fuse_tokens(ims_graph *g, ims_err *e) {
    imgsim_status st;
    if (fuse_layernorm(g) && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if (fuse_quick_gelu(g) && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if (fuse_matmul_bias(g) && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    int r = fold_layer_scale(g);
    if (r < 0) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory folding layer scales");
    if (r && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    if (fuse_matmul_epilogues(g) && (st = ims_graph_link(g, e)) != IMGSIM_OK) return st;
    return IMGSIM_OK;
}
