/*
 * attention.c: ims_graph_fuse_mha, which recognises scaled dot-product attention as exported by
 * torch.onnx (the TorchScript exporter of torch 1.13 and later) from nn.MultiheadAttention
 * (batch_first, as torchvision's VisionTransformer uses it) and rewrites it into one Attention
 * node, before shape inference.
 *
 * The export works sequence-first, with the batch merged into the heads, which the IR (the batch
 * is always axis 0 and symbolic) cannot express; the whole block is therefore matched on its
 * structure, while the graph is only linked:
 *
 *   xT  = Transpose(x [N, L, E], perm 1,0,2)                                   [L, N, E]
 *   qkv = Add(bias [3E], MatMul(xT, W [E, 3E]))     (either order of the Add)   [L, N, 3E]
 *   q, k, v = Slice(qkv, 0:E | E:2E | 2E:3E on the last axis)  (chunk(3, -1))
 *   q' = Transpose(Reshape(q, [L, N*H, E/H]), 1,0,2) scaled by Div(c) or Mul(c)
 *   k' = Transpose(Reshape(k, ...), 1,2,0);  v' = Transpose(Reshape(v, ...), 1,0,2)
 *   o  = MatMul(Softmax(MatMul(q', k')), v')    (the scale may also follow the first MatMul)
 *   y  = Transpose(Reshape(Gemm(Reshape(Transpose(o, 1,0,2), [L*N, E]), Wo, bo, transB), [L, N, E]),
 *                  1,0,2)                                                       [N, L, E]
 *
 * becomes
 *
 *   qkv = Add(bias, MatMul(x, W))             [N, L, 3E]   (the same two nodes, reading x)
 *   a   = Attention(qkv; heads H, alpha c)    [N, L, E]    (the Softmax node, rewritten)
 *   y   = Add(MatMul(a, Wo^T), bo)            [N, L, E]    (the Gemm and the last Transpose)
 *
 * and every node only the old block needed (the shape subgraphs of its Reshapes included) is
 * dropped. torch 2.x's TorchScript exporter writes the same module differently (match_v2): the
 * packed projection split by unflatten (Reshape to [L, N, 3, E], Unsqueeze, Transpose, Squeeze,
 * Gather 0/1/2), the heads as [N, H, L, D], and the core as its scaled_dot_product_attention
 * (q and k^T each multiplied by Sqrt(scale), the scale 1 / sqrt(D) computed from q's shape); it
 * becomes the same three nodes. The head count comes from the Reshape's shape subgraph (Div(E, H)), else from the
 * scale (c = 1 / sqrt(E / H)). A Softmax that reads an attention MatMul through an Add or a Where
 * (an attention mask) is refused, as is a Softmax of a product of two activations in another
 * form, naming the node.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"

static const char *label(const ims_node *n) {
    return (n->name && n->name[0]) ? n->name : ims_op_name(n->op);
}

/* The live producer of v of operator op (any when op < 0), or NULL. */
static ims_node *prod(ims_graph *g, int v, int op) {
    if (v < 0 || v >= g->n_vals) return NULL;
    int p = g->vals[v].producer;
    if (p < 0 || p >= g->n_nodes) return NULL;
    ims_node *n = &g->nodes[p];
    if (n->dead || n->out != v || (op >= 0 && (int)n->op != op)) return NULL;
    return n;
}

/* How many times live nodes other than Shape read v (the export reads the block's values' shapes
 * for its Reshape targets; those subgraphs go with the block). */
static int nreaders(const ims_graph *g, int v) {
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *n = &g->nodes[i];
        if (n->dead || n->op == IS_OP_SHAPE) continue;
        for (int j = 0; j < n->n_in; j++) c += n->in[j] == v;
        c += n->residual == v;
    }
    return c;
}

/* The only live reader (Shape nodes aside) of v, of operator op, reading it as input k, or NULL. */
static ims_node *only_reader(ims_graph *g, int v, int op, int k) {
    if (v < 0 || v == g->output || nreaders(g, v) != 1) return NULL;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead || n->op == IS_OP_SHAPE) continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == v) return ((int)n->op == op && j == k) ? n : NULL;
    }
    return NULL;
}

static int is_const(const ims_graph *g, int v) {
    return v >= 0 && v < g->n_vals && g->vals[v].data != NULL;
}

/* A constant scalar's value into *out. */
static int const_scalar(const ims_graph *g, int v, double *out) {
    if (!is_const(g, v) || ims_value_numel(&g->vals[v]) != 1) return 0;
    *out = g->vals[v].data[0];
    return 1;
}

/* Transpose node of value v with perm p0 p1 p2, read once, or NULL. */
static ims_node *transpose_of(ims_graph *g, int v, int p0, int p1, int p2) {
    ims_node *t = prod(g, v, IS_OP_TRANSPOSE);
    if (!t || t->n_perm != 3 || t->perm[0] != p0 || t->perm[1] != p1 || t->perm[2] != p2) return NULL;
    return t;
}

/* Whether node n is Transpose perm p0 p1 p2. */
static int is_transpose(const ims_node *n, int p0, int p1, int p2) {
    return n && n->op == IS_OP_TRANSPOSE && n->n_perm == 3 && n->perm[0] == p0 && n->perm[1] == p1 &&
           n->perm[2] == p2;
}

/* Follows head plumbing back from v: Transpose(p) of Reshape of Slice; returns the Slice. */
static ims_node *head_slice(ims_graph *g, int v, int p0, int p1, int p2, ims_node **reshape) {
    ims_node *t = transpose_of(g, v, p0, p1, p2);
    if (!t || nreaders(g, v) != 1) return NULL;
    ims_node *r = prod(g, t->in[0], IS_OP_RESHAPE);
    if (!r || nreaders(g, t->in[0]) != 1) return NULL;
    ims_node *s = prod(g, r->in[0], IS_OP_SLICE);
    if (!s || nreaders(g, r->in[0]) != 1) return NULL;
    *reshape = r;
    return s;
}

/* A Slice over the last axis (axes -1 or 2), step 1. */
static int last_axis_slice(const ims_graph *g, const ims_node *s) {
    double a, st = 1;
    if (s->n_in < 4 || !const_scalar(g, s->in[3], &a) || (a != -1 && a != 2)) return 0;
    if (s->n_in > 4 && s->in[4] >= 0 && (!const_scalar(g, s->in[4], &st) || st != 1)) return 0;
    return 1;
}

/* The head count written in a head Reshape's shape subgraph: Concat(.., .., Unsqueeze(Cast*(Div(E,
 * H)))), or -1. */
static int heads_from_shape(ims_graph *g, const ims_node *reshape) {
    ims_node *c = prod(g, reshape->in[1], IS_OP_CONCAT);
    if (!c || c->n_in != 3) return -1;
    ims_node *u = prod(g, c->in[2], IS_OP_UNSQUEEZE);
    if (!u) return -1;
    int v = u->in[0];
    for (ims_node *k; (k = prod(g, v, IS_OP_CAST)) != NULL;) v = k->in[0];
    ims_node *d = prod(g, v, IS_OP_DIV);
    double h;
    if (!d || !const_scalar(g, d->in[1], &h) || h < 1 || h > 65536 || h != floor(h)) return -1;
    return (int)h;
}

/* Marks dead every node the graph's output does not need (nodes in topological order). */
static imgsim_status sweep(ims_graph *g, ims_err *e) {
    char *need = ims_calloc((size_t)g->n_vals + 1, 1);
    if (!need) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory recognising attention");
    if (g->output >= 0) need[g->output] = 1;
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
    return ims_graph_link(g, e);
}

/* Whether v is (through at most one Mul/Div by a constant) a MatMul of two activations. */
static int from_act_matmul(ims_graph *g, int v) {
    ims_node *p = prod(g, v, -1);
    if (p && (p->op == IS_OP_MUL || p->op == IS_OP_DIV))
        p = prod(g, is_const(g, p->in[1]) ? p->in[0] : p->in[1], -1);
    return p && p->op == IS_OP_MATMUL && !is_const(g, p->in[0]) && !is_const(g, p->in[1]);
}

/* What a matcher found of one attention block: the pieces the rewrite needs. */
typedef struct mha_match {
    int qkv;      /* the packed projection Add(bias, MatMul(xT, W)) [L, N, 3E] */
    ims_node *o2; /* the Reshape to [L*N, E] that the output projection's Gemm reads */
    ims_node *qr; /* the q head Reshape to [L, N*H, E/H] (its shape subgraph holds H) */
    int heads;    /* the head count written elsewhere (torch 2.x's [N, H, L, D] Reshape), or -1 */
    double scale; /* the factor of q k^T, or 0 when only written as Div(c)/Mul(c) (c below) */
    double c;     /* torch 1.13: the constant of the Div or Mul */
    int scale_op; /* torch 1.13: IS_OP_DIV or IS_OP_MUL */
} mha_match;

/* torch 1.13's block: q, k, v Slices of qkv, heads through Reshape/Transpose of rank 3, the scale
 * a constant Div or Mul before or after the first product. */
static int match_v1(ims_graph *g, ims_node *S, mha_match *mt) {
    double c = 0;
    int scale_op = -1; /* IS_OP_MUL or IS_OP_DIV */
    ims_node *mm1 = prod(g, S->in[0], -1);
    if (mm1 && (mm1->op == IS_OP_DIV || mm1->op == IS_OP_MUL) && const_scalar(g, mm1->in[1], &c) &&
        nreaders(g, S->in[0]) == 1) { /* scale after the product */
        scale_op = mm1->op;
        int t = mm1->in[0];
        mm1 = prod(g, t, IS_OP_MATMUL);
        if (mm1 && nreaders(g, t) != 1) mm1 = NULL;
    } else if (mm1 && (mm1->op != IS_OP_MATMUL || nreaders(g, S->in[0]) != 1)) {
        mm1 = NULL;
    }
    if (!mm1) return 0;
    /* q side: the scale before the product, or none */
    int qv = mm1->in[0];
    ims_node *qs = prod(g, qv, -1);
    if (scale_op < 0 && qs && (qs->op == IS_OP_DIV || qs->op == IS_OP_MUL) &&
        const_scalar(g, qs->in[1], &c) && nreaders(g, qv) == 1) {
        scale_op = qs->op;
        qv = qs->in[0];
    }
    if (scale_op < 0 || !(c > 0) || !isfinite(c)) return 0;
    ims_node *qr, *kr, *vr;
    ims_node *qsl = head_slice(g, qv, 1, 0, 2, &qr);
    ims_node *ksl = head_slice(g, mm1->in[1], 1, 2, 0, &kr);
    ims_node *mm2 = only_reader(g, S->out, IS_OP_MATMUL, 0);
    if (!qsl || !ksl || !mm2) return 0;
    ims_node *vsl = head_slice(g, mm2->in[1], 1, 0, 2, &vr);
    if (!vsl) return 0;
    int qkv = qsl->in[0];
    if (ksl->in[0] != qkv || vsl->in[0] != qkv || nreaders(g, qkv) != 3) return 0;
    if (!last_axis_slice(g, qsl) || !last_axis_slice(g, ksl) || !last_axis_slice(g, vsl)) return 0;
    double z;
    if (!const_scalar(g, qsl->in[1], &z) || z != 0 || qsl->in[2] != ksl->in[1] || ksl->in[2] != vsl->in[1])
        return 0;
    ims_node *oT = only_reader(g, mm2->out, IS_OP_TRANSPOSE, 0);
    if (!is_transpose(oT, 1, 0, 2)) return 0;
    mt->o2 = only_reader(g, oT->out, IS_OP_RESHAPE, 0);
    if (!mt->o2) return 0;
    mt->qkv = qkv;
    mt->qr = qr;
    mt->heads = -1;
    mt->scale = 0;
    mt->c = c;
    mt->scale_op = scale_op;
    return 1;
}

/* Whether node n is a Transpose of rank r with perm p. */
static int has_perm(const ims_node *n, int r, const int *p) {
    if (!n || n->op != IS_OP_TRANSPOSE || n->n_perm != r) return 0;
    for (int k = 0; k < r; k++)
        if (n->perm[k] != p[k]) return 0;
    return 1;
}

/* torch 2.x's heads of q, k or v: Reshape(Transpose(Reshape(Gather(sq, idx, axis 0), [L, N*H, D]),
 * 1,0,2), [N, H, L, D]) = v, each read once. Returns the outer Reshape; *sq and *inner set. */
static ims_node *head4(ims_graph *g, int v, int idx, int *sq, ims_node **inner) {
    ims_node *r4 = prod(g, v, IS_OP_RESHAPE);
    if (!r4 || nreaders(g, v) != 1) return NULL;
    ims_node *t = transpose_of(g, r4->in[0], 1, 0, 2);
    if (!t || nreaders(g, r4->in[0]) != 1) return NULL;
    ims_node *r3 = prod(g, t->in[0], IS_OP_RESHAPE);
    if (!r3 || nreaders(g, t->in[0]) != 1) return NULL;
    ims_node *ga = prod(g, r3->in[0], IS_OP_GATHER);
    double i;
    if (!ga || nreaders(g, r3->in[0]) != 1 || ga->axis != 0 || !const_scalar(g, ga->in[1], &i) || i != idx)
        return NULL;
    *sq = ga->in[0];
    *inner = r3;
    return r4;
}

/* The head count H of a [N, H, L, D] Reshape's shape subgraph: Concat(N, const H, L, D), or -1. */
static int heads_from_shape4(ims_graph *g, const ims_node *reshape) {
    ims_node *c = prod(g, reshape->in[1], IS_OP_CONCAT);
    double h;
    if (!c || c->n_in != 4 || !const_scalar(g, c->in[1], &h) || h < 1 || h > 65536 || h != floor(h))
        return -1;
    return (int)h;
}

/* The value of a scale computed in the graph into *out: constants, Cast, Sqrt, Mul and Div of such,
 * and Slice(Shape(q), -1:), the head size d (torch 2.x's default scale of scaled_dot_product_attention,
 * Sqrt(Cast(Div(1, Sqrt(Cast(Slice(Shape(q), -1)))))), read from q's shape). Returns 0 for
 * anything else. */
static int eval_scale(ims_graph *g, int v, int q, double d, int depth, double *out) {
    double a, b;
    if (const_scalar(g, v, out)) return 1;
    ims_node *n = prod(g, v, -1);
    if (!n || depth > 8) return 0;
    switch (n->op) {
    case IS_OP_CAST:
        return n->cast_to && eval_scale(g, n->in[0], q, d, depth + 1, out);
    case IS_OP_SQRT:
        if (!eval_scale(g, n->in[0], q, d, depth + 1, &a) || !(a >= 0)) return 0;
        *out = sqrt(a);
        return 1;
    case IS_OP_MUL:
    case IS_OP_DIV:
        if (!eval_scale(g, n->in[0], q, d, depth + 1, &a) || !eval_scale(g, n->in[1], q, d, depth + 1, &b))
            return 0;
        if (n->op == IS_OP_DIV && b == 0) return 0;
        *out = n->op == IS_OP_MUL ? a * b : a / b;
        return 1;
    case IS_OP_SLICE: {
        ims_node *sh = prod(g, n->in[0], IS_OP_SHAPE);
        double st, en, ax = 0;
        if (!sh || sh->in[0] != q || !const_scalar(g, n->in[1], &st) || st != -1 ||
            !const_scalar(g, n->in[2], &en) || en < 2147483647.0 ||
            (n->n_in > 3 && n->in[3] >= 0 && (!const_scalar(g, n->in[3], &ax) || ax != 0)) ||
            (n->n_in > 4 && n->in[4] >= 0))
            return 0;
        *out = d;
        return 1;
    }
    default:
        return 0;
    }
}

/* Mul(a, b) with the operand head4() recognises as input 0 or 1: sets *head to it and returns the
 * other operand, or -1. */
static int mul_operand(ims_graph *g, int v, int *head, int want_head) {
    ims_node *m = prod(g, v, IS_OP_MUL);
    if (!m || nreaders(g, v) != 1) return -1;
    for (int k = 0; k < 2; k++) {
        ims_node *p = prod(g, m->in[k], -1);
        if (p && (int)p->op == want_head) {
            *head = m->in[k];
            return m->in[1 - k];
        }
    }
    return -1;
}

/* torch 2.x's block (its TorchScript exporter, nn.MultiheadAttention through
 * scaled_dot_product_attention):
 *   p   = Squeeze(Transpose(Unsqueeze(Reshape(qkv, [L, N, 3, E]), 0), 3,1,2,0,4), 3)    [3, L, N, E]
 *   q4, k4, v4 = head4(Gather(p, 0 | 1 | 2))                                          [N, H, L, D]
 *   o   = MatMul(Softmax(MatMul(Mul(q4, Sqrt(s)), Mul(Transpose(k4, 0,1,3,2), Sqrt(s)))), v4)
 *   Reshape(Transpose(o, 2,0,1,3), [L*N, E]) -> the output projection as in torch 1.13
 * with s the scale (1 / sqrt(D) computed from q4's shape unless given). */
static int match_v2(ims_graph *g, ims_node *S, mha_match *mt) {
    static const int pk[4] = {0, 1, 3, 2}, po[4] = {2, 0, 1, 3}, pp[5] = {3, 1, 2, 0, 4};
    ims_node *mm1 = prod(g, S->in[0], IS_OP_MATMUL);
    ims_node *mm2 = only_reader(g, S->out, IS_OP_MATMUL, 0);
    if (!mm1 || nreaders(g, S->in[0]) != 1 || !mm2) return 0;
    int q4, kT;
    int sqv = mul_operand(g, mm1->in[0], &q4, IS_OP_RESHAPE);
    int skv = mul_operand(g, mm1->in[1], &kT, IS_OP_TRANSPOSE);
    if (sqv < 0 || skv < 0) return 0;
    ims_node *kt = prod(g, kT, IS_OP_TRANSPOSE);
    if (!has_perm(kt, 4, pk) || nreaders(g, kT) != 1) return 0;
    int sq[3];
    ims_node *r3[3], *r4[3];
    r4[0] = head4(g, q4, 0, &sq[0], &r3[0]);
    r4[1] = head4(g, kt->in[0], 1, &sq[1], &r3[1]);
    r4[2] = head4(g, mm2->in[1], 2, &sq[2], &r3[2]);
    if (!r4[0] || !r4[1] || !r4[2] || sq[1] != sq[0] || sq[2] != sq[0] || nreaders(g, sq[0]) != 3) return 0;
    ims_node *s = prod(g, sq[0], IS_OP_SQUEEZE);
    if (!s || s->n_perm != 1 || s->perm[0] != 3) return 0;
    ims_node *t = prod(g, s->in[0], IS_OP_TRANSPOSE);
    if (!has_perm(t, 5, pp) || nreaders(g, s->in[0]) != 1) return 0;
    ims_node *u = prod(g, t->in[0], IS_OP_UNSQUEEZE);
    if (!u || u->n_perm != 1 || u->perm[0] != 0 || nreaders(g, t->in[0]) != 1) return 0;
    ims_node *r = prod(g, u->in[0], IS_OP_RESHAPE);
    if (!r || nreaders(g, u->in[0]) != 1 || nreaders(g, r->in[0]) != 1) return 0;
    ims_node *oT = only_reader(g, mm2->out, IS_OP_TRANSPOSE, 0);
    if (!has_perm(oT, 4, po)) return 0;
    mt->o2 = only_reader(g, oT->out, IS_OP_RESHAPE, 0);
    if (!mt->o2) return 0;
    mt->qkv = r->in[0];
    mt->qr = r3[0];
    mt->heads = heads_from_shape4(g, r4[0]);
    /* the scale: needs the head size, hence the heads (checked against the projection later) */
    int h = mt->heads > 0 ? mt->heads : heads_from_shape(g, r3[0]);
    ims_node *add = prod(g, mt->qkv, IS_OP_ADD);
    ims_node *mm0 = add ? prod(g, is_const(g, add->in[0]) ? add->in[1] : add->in[0], IS_OP_MATMUL) : NULL;
    if (h < 1 || !mm0 || !is_const(g, mm0->in[1]) || g->vals[mm0->in[1]].rank != 2) return 0;
    double d = (double)g->vals[mm0->in[1]].dims[0] / h, a, b;
    if (!eval_scale(g, sqv, q4, d, 0, &a) || !eval_scale(g, skv, q4, d, 0, &b)) return 0;
    mt->scale = a * b;
    if (!(mt->scale > 0) || !isfinite(mt->scale)) return 0;
    mt->c = 0;
    mt->scale_op = -1;
    return 1;
}

/* Tries to rewrite the attention block around Softmax node si. Returns 1 when rewritten, 0 when
 * it is not one, -1 on error (*st and e set). */
static int fuse_one(ims_graph *g, int si, imgsim_status *st, ims_err *e) {
    ims_node *S = &g->nodes[si];
    mha_match mt;
    if (!match_v1(g, S, &mt) && !match_v2(g, S, &mt)) return 0;
    int qkv = mt.qkv;
    /* the packed projection */
    ims_node *add = prod(g, qkv, IS_OP_ADD);
    if (!add) return 0;
    int bias = is_const(g, add->in[0]) ? add->in[0] : add->in[1];
    int mmv = bias == add->in[0] ? add->in[1] : add->in[0];
    ims_node *mm0 = prod(g, mmv, IS_OP_MATMUL);
    if (!mm0 || !is_const(g, bias) || nreaders(g, mmv) != 1 || !is_const(g, mm0->in[1])) return 0;
    const ims_value *W = &g->vals[mm0->in[1]];
    if (W->rank != 2) return 0;
    int64_t E = W->dims[0];
    if (W->dims[1] != 3 * E || ims_value_numel(&g->vals[bias]) != 3 * E) return 0;
    ims_node *xT = transpose_of(g, mm0->in[0], 1, 0, 2);
    if (!xT) return 0;
    int x = xT->in[0];
    /* the output side */
    ims_node *gm = only_reader(g, mt.o2->out, IS_OP_GEMM, 0);
    if (!gm || gm->trans_a || !gm->trans_b || gm->alpha != 1.0f || gm->beta != 1.0f || gm->n_in < 3 ||
        !is_const(g, gm->in[1]) || !is_const(g, gm->in[2]))
        return 0;
    const ims_value *Wo = &g->vals[gm->in[1]];
    if (Wo->rank != 2 || Wo->dims[0] != E || Wo->dims[1] != E || ims_value_numel(&g->vals[gm->in[2]]) != E) return 0;
    ims_node *y3 = only_reader(g, gm->out, IS_OP_RESHAPE, 0);
    ims_node *yT = y3 ? only_reader(g, y3->out, IS_OP_TRANSPOSE, 0) : NULL;
    if (!is_transpose(yT, 1, 0, 2)) return 0;
    /* heads and scale */
    double scale = mt.scale > 0 ? mt.scale : mt.scale_op == IS_OP_DIV ? 1.0 / mt.c : mt.c;
    int heads = heads_from_shape(g, mt.qr);
    if (heads > 0 && mt.heads > 0 && heads != mt.heads) return 0;
    if (heads < 1) heads = mt.heads;
    if (heads < 1) {
        double hd = 1.0 / (scale * scale);
        heads = hd >= 1 ? (int)((double)E / floor(hd + 0.5) + 0.5) : -1;
    }
    if (heads < 1 || E % heads) {
        *st = ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                 "node '%s' (Softmax): attention over %lld channels with an unknown number of heads", label(S),
                 (long long)E);
        return -1;
    }
    /* the output projection's weight transposed: [E in, E out] for a MatMul */
    float *wt = ims_malloc_array((size_t)(E * E), sizeof(float));
    if (!wt) {
        *st = ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory recognising attention");
        return -1;
    }
    for (int64_t i = 0; i < E; i++)
        for (int64_t j = 0; j < E; j++)
            wt[j * E + i] = Wo->data[i * E + j];
    char name[512];
    snprintf(name, sizeof name, "%.400s.T", Wo->name);
    int64_t wd[2] = {E, E};
    int gi = (int)(gm - g->nodes), yi = (int)(yT - g->nodes), m0 = (int)(mm0 - g->nodes);
    int bo = gm->in[2];
    int wv = ims_graph_add_value(g, name, 2, wd, wt); /* may move g->vals, not g->nodes */
    free(wt);
    if (wv < 0) {
        *st = ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory recognising attention");
        return -1;
    }
    g->nodes[m0].in[0] = x;
    S = &g->nodes[si];
    S->op = IS_OP_ATTENTION;
    S->in[0] = qkv;
    S->n_in = 1;
    S->heads = heads;
    S->alpha = (float)scale;
    ims_node *mo = &g->nodes[gi];
    mo->op = IS_OP_MATMUL;
    mo->in[0] = S->out;
    mo->in[1] = wv;
    mo->in[2] = -1;
    mo->n_in = 2;
    mo->trans_b = 0;
    ims_node *ad = &g->nodes[yi];
    ad->op = IS_OP_ADD;
    ad->n_in = 2;
    ad->in[0] = mo->out;
    ad->in[1] = bo;
    ad->n_perm = 0;
    return 1;
}

imgsim_status ims_graph_fuse_mha(ims_graph *g, ims_err *e) {
    int any = 0;
    for (int i = 0; i < g->n_nodes && !any; i++)
        any = !g->nodes[i].dead && g->nodes[i].op == IS_OP_SOFTMAX;
    if (!any) return IMGSIM_OK;
    imgsim_status st = sweep(g, e); /* consumer counts of what the output needs only */
    if (st != IMGSIM_OK) return st;
    int fused = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        if (n->dead || n->op != IS_OP_SOFTMAX) continue;
        ims_node *p = prod(g, n->in[0], -1);
        if (p && (p->op == IS_OP_ADD || p->op == IS_OP_WHERE)) {
            for (int k = 0; k < p->n_in; k++)
                if (from_act_matmul(g, p->in[k]))
                    return ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                                    "node '%s' (Softmax): attention with a mask (the %s '%s' before the Softmax) is "
                                    "not supported",
                                    label(n), ims_op_name(p->op), label(p));
        }
        int r = fuse_one(g, i, &st, e);
        if (r < 0) return st;
        if (r == 0 && from_act_matmul(g, n->in[0]))
            return ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                            "node '%s' (Softmax): attention in a form imgsim does not recognise (it reads "
                            "nn.MultiheadAttention's export, torch.onnx opsets 13 to 18)",
                            label(n));
        fused += r;
    }
    return fused ? sweep(g, e) : IMGSIM_OK;
}
