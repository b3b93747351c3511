/*
 * cuda_compile.c: turns the optimised graph (BN folded, bias/residual/activation fused into Conv,
 * dead nodes removed) into the CUDA engine's plan: NHWC tensors, a step per kernel, the weights
 * converted to device layout and precision, and the activation arena laid out from value
 * lifetimes. Plain C, no CUDA calls: the result is what the engine file stores, and the backend
 * adds the autotuned algorithms.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_plan.h"
#include "model/graph.h"

#define ALIGN_UP(x) (((x) + IS_CUDA_ALIGN - 1) / IS_CUDA_ALIGN * IS_CUDA_ALIGN)

typedef struct cc {
    ims_cuda_plan *p;
    const ims_graph *g;
    int elt;
    int *val2t; /* value -> tensor, -1 */
    int *vgroup; /* a 5-D value [N, G, C / G, H, W] viewing a tensor of C channels: G (else 0) */
    int s2d_node; /* node index of the stem conv rewritten on a space-to-depth input, or -1 */
    int cap_t, cap_s;
    size_t cap_w;
    ims_err *e;
} cc;

static int add_tensor(cc *c, int ch, int h, int w) {
    ims_cuda_plan *p = c->p;
    if (p->n_tensors == c->cap_t) {
        int cap = c->cap_t ? c->cap_t * 2 : 64;
        ims_cuda_tensor *t = ims_realloc(p->tensors, (size_t)cap * sizeof *t);
        if (!t) return -1;
        p->tensors = t;
        c->cap_t = cap;
    }
    ims_cuda_tensor *t = &p->tensors[p->n_tensors];
    memset(t, 0, sizeof *t);
    t->c = ch, t->h = h, t->w = w;
    t->size = ALIGN_UP((int64_t)ch * h * w * c->elt);
    return p->n_tensors++;
}

static ims_cuda_step *add_step(cc *c, int kind) {
    ims_cuda_plan *p = c->p;
    if (p->n_steps == c->cap_s) {
        int cap = c->cap_s ? c->cap_s * 2 : 64;
        ims_cuda_step *s = ims_realloc(p->steps, (size_t)cap * sizeof *s);
        if (!s) return NULL;
        p->steps = s;
        c->cap_s = cap;
    }
    ims_cuda_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->in[0] = s->in[1] = s->out = -1;
    s->w_off = s->b_off = s->bh_off = -1;
    s->group = 1;
    s->alpha = 1.f;
    s->sh = s->sw = s->dh = s->dw = 1;
    return s;
}

/* Reserves n bytes (256-aligned) in the weight blob; returns the offset or -1. */
static int64_t add_weights(cc *c, size_t n) {
    ims_cuda_plan *p = c->p;
    size_t off = (size_t)ALIGN_UP(p->weights_bytes);
    size_t need = off + n;
    if (need > c->cap_w) {
        size_t cap = c->cap_w ? c->cap_w : (1u << 20);
        while (cap < need) cap *= 2;
        uint8_t *q = ims_realloc(p->weights, cap);
        if (!q) return -1;
        p->weights = q;
        c->cap_w = cap;
    }
    memset(p->weights + p->weights_bytes, 0, need - (size_t)p->weights_bytes);
    p->weights_bytes = (int64_t)need;
    return (int64_t)off;
}

/* Stores v as the engine element type at element index i of the blob region at off. */
static void put_elt(cc *c, int64_t off, int64_t i, float v) {
    if (c->elt == 2) {
        uint16_t h = ims_f32_to_f16(v);
        memcpy(c->p->weights + off + i * 2, &h, 2);
    } else {
        memcpy(c->p->weights + off + i * 4, &v, 4);
    }
}

/* Adds bias[n] (NULL = zeros) scaled by scale: float32 copy at b_off and, for fp16, a half copy. */
static int add_bias(cc *c, ims_cuda_step *s, const float *bias, int64_t n, float scale) {
    int64_t off = add_weights(c, (size_t)n * 4);
    if (off < 0) return -1;
    float *b = (float *)(c->p->weights + off);
    for (int64_t i = 0; i < n; i++) b[i] = bias ? bias[i] * scale : 0.f;
    s->b_off = off;
    if (c->elt == 2) {
        int64_t hoff = add_weights(c, (size_t)n * 2);
        if (hoff < 0) return -1;
        b = (float *)(c->p->weights + off); /* the blob may have moved */
        for (int64_t i = 0; i < n; i++) put_elt(c, hoff, i, b[i]);
        s->bh_off = hoff;
    } else {
        s->bh_off = off;
    }
    return 0;
}

static imgsim_status nomem(cc *c) { return ims_fail(c->e, IMGSIM_ERR_NOMEM, "cuda: out of memory planning the engine"); }

static imgsim_status unsupported(cc *c, const ims_node *n, const char *why) {
    return ims_fail(c->e, IMGSIM_ERR_UNSUPPORTED, "cuda: node '%s' (%s, opset %d): %s", n->name ? n->name : "?",
                   ims_op_name(n->op), c->g->opset, why);
}

/* Tensor of an activation value, or -1 (constants and unknown values). */
static int tensor_of(cc *c, int v) { return v >= 0 ? c->val2t[v] : -1; }

/* Tensor for a new activation value v from its inferred dims (rank 2 [N,K] -> (K,1,1); rank 4). */
static int new_value_tensor(cc *c, int v) {
    const ims_value *val = &c->g->vals[v];
    int ch, h = 1, w = 1;
    if (val->rank == 4) {
        ch = (int)val->dims[1], h = (int)val->dims[2], w = (int)val->dims[3];
    } else if (val->rank == 2) {
        ch = (int)val->dims[1];
    } else {
        return -2;
    }
    if (ch <= 0 || h <= 0 || w <= 0) return -2;
    int t = add_tensor(c, ch, h, w);
    if (t >= 0) c->val2t[v] = t;
    return t;
}

static void set_act(ims_cuda_step *s, const ims_node *n) {
    s->act = n->act;
    s->act_min = n->act_min;
    s->act_max = n->act_max;
}

/* Conv: weights [OC, IC/g, KH, KW] float32 -> [OC, KH, KW, ICp/g] engine dtype (ICp: the input
 * tensor's possibly zero-padded channel count). */
static imgsim_status compile_conv(cc *c, const ims_node *n) {
    const ims_graph *g = c->g;
    int x = tensor_of(c, n->in[0]);
    if (x < 0) return unsupported(c, n, "input is not an activation");
    if (n->n_in < 2 || n->in[1] < 0 || !g->vals[n->in[1]].data) return unsupported(c, n, "weights are not constant");
    const ims_value *W = &g->vals[n->in[1]];
    if (W->rank != 4) return unsupported(c, n, "weights are not 4-D");
    if (n->pad[0] != n->pad[2] || n->pad[1] != n->pad[3]) return unsupported(c, n, "asymmetric padding");
    int oc = (int)W->dims[0], icg = (int)W->dims[1], kh = (int)W->dims[2], kw = (int)W->dims[3];
    int s2d = c->s2d_node >= 0 && n == &g->nodes[c->s2d_node]; /* the rewritten stem conv */
    int grp = n->group > 0 ? n->group : 1;
    int icp = c->p->tensors[x].c / grp;
    if (icp < (s2d ? 4 * icg : icg) || c->p->tensors[x].c % grp)
        return unsupported(c, n, "channel count does not match the input");
    const float *B = n->n_in > 2 && n->in[2] >= 0 ? g->vals[n->in[2]].data : NULL;
    int z = -1;
    if (n->residual >= 0) {
        z = tensor_of(c, n->residual);
        if (z < 0) return unsupported(c, n, "residual is not an activation");
    }
    int y = new_value_tensor(c, n->out);
    if (y == -1) return nomem(c);
    if (y < 0 || c->p->tensors[y].c != oc) return unsupported(c, n, "unexpected output shape");
    if (z >= 0) {
        const ims_cuda_tensor *tz = &c->p->tensors[z], *ty = &c->p->tensors[y];
        if (tz->c != ty->c || tz->h != ty->h || tz->w != ty->w) return unsupported(c, n, "residual shape differs");
    }
    ims_cuda_step *s = add_step(c, IS_CS_CONV);
    if (!s) return nomem(c);
    int si = c->p->n_steps - 1;
    s->in[0] = x, s->in[1] = z, s->out = y;
    s->kh = kh, s->kw = kw, s->sh = n->stride[0], s->sw = n->stride[1];
    s->dh = n->dilation[0], s->dw = n->dilation[1];
    s->pt = n->pad[0], s->pl = n->pad[1], s->pb = n->pad[2], s->pr = n->pad[3];
    s->group = grp;
    set_act(s, n);
    int kh2 = s2d ? (kh + 1) / 2 : kh, kw2 = s2d ? (kw + 1) / 2 : kw;
    if (s2d) { /* stride-1, unpadded conv over the space-to-depth input */
        s->kh = kh2, s->kw = kw2, s->sh = s->sw = 1;
        s->pt = s->pl = s->pb = s->pr = 0;
    }
    size_t count = (size_t)oc * kh2 * kw2 * icp;
    int64_t off = add_weights(c, count * (size_t)c->elt);
    if (off < 0) return nomem(c);
    for (int o = 0; o < oc; o++)
        for (int ky = 0; ky < kh; ky++)
            for (int kx = 0; kx < kw; kx++)
                for (int i = 0; i < icg; i++) {
                    float v = W->data[(((size_t)o * icg + i) * kh + ky) * kw + kx];
                    int64_t at;
                    if (s2d) /* W'[o][ky/2][kx/2][((ky%2)*2 + kx%2)*C + i] */
                        at = (((int64_t)o * kh2 + ky / 2) * kw2 + kx / 2) * icp + ((ky % 2) * 2 + kx % 2) * icg + i;
                    else
                        at = (((int64_t)o * kh + ky) * kw + kx) * icp + i;
                    put_elt(c, off, at, v);
                }
    s = &c->p->steps[si];
    s->w_off = off;
    s->w_bytes = (int64_t)(count * (size_t)c->elt);
    if (add_bias(c, &c->p->steps[si], B, oc, 1.f)) return nomem(c);
    return IMGSIM_OK;
}

/* Gemm / MatMul with a constant B: W stored [N, K] in the engine dtype, bias = beta * C. */
static imgsim_status compile_gemm(cc *c, const ims_node *n) {
    const ims_graph *g = c->g;
    int x = tensor_of(c, n->in[0]);
    if (x < 0) return unsupported(c, n, "input A is not an activation");
    const ims_cuda_tensor *tx = &c->p->tensors[x];
    if (tx->h != 1 || tx->w != 1) return unsupported(c, n, "input A is not 2-D");
    if (n->op == IS_OP_GEMM && n->trans_a) return unsupported(c, n, "transA");
    if (n->in[1] < 0 || !g->vals[n->in[1]].data || g->vals[n->in[1]].rank != 2)
        return unsupported(c, n, "B is not a constant matrix");
    const ims_value *Bv = &g->vals[n->in[1]];
    int tb = n->op == IS_OP_GEMM && n->trans_b;
    int K = (int)(tb ? Bv->dims[1] : Bv->dims[0]), N = (int)(tb ? Bv->dims[0] : Bv->dims[1]);
    if (K != tx->c) return unsupported(c, n, "inner dimensions differ");
    const float *C = NULL;
    int64_t cn = 0;
    if (n->op == IS_OP_GEMM && n->n_in > 2 && n->in[2] >= 0) {
        const ims_value *Cv = &g->vals[n->in[2]];
        if (!Cv->data) return unsupported(c, n, "C is not constant");
        cn = ims_value_numel(Cv);
        if (cn != N && cn != 1) return unsupported(c, n, "C is not a row vector");
        C = Cv->data;
    }
    int z = -1;
    if (n->residual >= 0 && (z = tensor_of(c, n->residual)) < 0) return unsupported(c, n, "residual");
    int y = new_value_tensor(c, n->out);
    if (y == -1) return nomem(c);
    if (y < 0 || c->p->tensors[y].c != N || c->p->tensors[y].h != 1) return unsupported(c, n, "unexpected output");
    ims_cuda_step *s = add_step(c, IS_CS_GEMM);
    if (!s) return nomem(c);
    int si = c->p->n_steps - 1;
    s->in[0] = x, s->in[1] = z, s->out = y;
    s->alpha = n->op == IS_OP_GEMM ? n->alpha : 1.f;
    set_act(s, n);
    int64_t off = add_weights(c, (size_t)N * K * (size_t)c->elt);
    if (off < 0) return nomem(c);
    for (int o = 0; o < N; o++)
        for (int k = 0; k < K; k++)
            put_elt(c, off, (int64_t)o * K + k, tb ? Bv->data[(size_t)o * K + k] : Bv->data[(size_t)k * N + o]);
    c->p->steps[si].w_off = off;
    c->p->steps[si].w_bytes = (int64_t)N * K * c->elt;
    float *bias = NULL;
    if (C) {
        bias = ims_malloc_array((size_t)N, sizeof *bias);
        if (!bias) return nomem(c);
        for (int o = 0; o < N; o++) bias[o] = C[cn == 1 ? 0 : o];
    }
    int r = add_bias(c, &c->p->steps[si], bias, N, n->op == IS_OP_GEMM ? n->beta : 1.f);
    free(bias);
    return r ? nomem(c) : IMGSIM_OK;
}

/* A BatchNormalization no Conv folded: per-channel scale and shift (gamma / sqrt(var + eps),
 * beta - mean * scale) as float32 in the blob. */
static imgsim_status compile_bn(cc *c, const ims_node *n) {
    const ims_graph *g = c->g;
    int x = tensor_of(c, n->in[0]);
    if (x < 0) return unsupported(c, n, "input is not an activation");
    for (int k = 1; k < 5; k++)
        if (n->n_in <= k || n->in[k] < 0 || !g->vals[n->in[k]].data) return unsupported(c, n, "parameters are not constant");
    const ims_value *gv = &g->vals[n->in[1]];
    int64_t ch = gv->rank == 1 ? gv->dims[0] : -1;
    const ims_value *o = &g->vals[n->out];
    if (o->rank != 4 || o->dims[1] != ch) return unsupported(c, n, "not over the channels of a 4-D tensor");
    for (int k = 2; k < 5; k++)
        if (g->vals[n->in[k]].rank != 1 || g->vals[n->in[k]].dims[0] != ch) return unsupported(c, n, "parameter sizes differ");
    int y = new_value_tensor(c, n->out);
    if (y == -1) return nomem(c);
    if (y < 0) return unsupported(c, n, "unexpected output shape");
    int tc = c->p->tensors[y].c; /* (>= ch where the tensor's channels are padded) */
    int64_t off = add_weights(c, (size_t)tc * 8);
    if (off < 0) return nomem(c);
    float *scale = (float *)(c->p->weights + off), *shift = scale + tc;
    for (int64_t k = 0; k < ch && k < tc; k++) {
        double den = (double)g->vals[n->in[4]].data[k] + (double)n->epsilon;
        if (!(den > 0.0) || !isfinite(den))
            return ims_fail(c->e, IMGSIM_ERR_FORMAT, "node '%s' (BatchNormalization): variance + epsilon is %g at "
                            "channel %lld", n->name ? n->name : "?", den, (long long)k);
        double sc = (double)g->vals[n->in[1]].data[k] / sqrt(den);
        scale[k] = (float)sc;
        shift[k] = (float)((double)g->vals[n->in[2]].data[k] - (double)g->vals[n->in[3]].data[k] * sc);
    }
    ims_cuda_step *s = add_step(c, IS_CS_AFFINE);
    if (!s) return nomem(c);
    s->in[0] = x, s->out = y;
    s->w_off = off, s->w_bytes = (int64_t)tc * 4, s->b_off = off + (int64_t)tc * 4;
    set_act(s, n);
    return IMGSIM_OK;
}

/* ShuffleNet's channel shuffle, x.view(N, G, C / G, H, W).transpose(1, 2).view(N, C, H, W), and
 * its chunk (Slice on the channels). The 5-D values are views of NHWC tensors: [.., G, C / G] is
 * the channel index g * (C / G) + j, so the Reshapes are aliases and the Transpose is one channel
 * permutation. *done: 1 when n was one of these. */
static imgsim_status compile_shuffle(cc *c, const ims_node *n, int *done) {
    const ims_graph *g = c->g;
    const ims_value *o = &g->vals[n->out];
    int x = n->n_in > 0 ? tensor_of(c, n->in[0]) : -1;
    *done = 0;
    if (x < 0) return IMGSIM_OK;
    const ims_cuda_tensor *t = &c->p->tensors[x];
    const ims_value *iv = &g->vals[n->in[0]];
    if (n->op == IS_OP_RESHAPE && o->rank == 5 && iv->rank == 4 && o->dims[1] > 0 && o->dims[2] > 0 &&
        o->dims[1] * o->dims[2] == t->c && o->dims[3] == t->h && o->dims[4] == t->w && iv->dims[1] == t->c) {
        c->val2t[n->out] = x, c->vgroup[n->out] = (int)o->dims[1];
        *done = 1;
        return IMGSIM_OK;
    }
    if (n->op == IS_OP_RESHAPE && iv->rank == 5 && c->vgroup[n->in[0]] && o->rank == 4 && o->dims[1] == t->c &&
        o->dims[2] == t->h && o->dims[3] == t->w) {
        c->val2t[n->out] = x;
        *done = 1;
        return IMGSIM_OK;
    }
    if (n->op == IS_OP_TRANSPOSE && c->vgroup[n->in[0]]) {
        static const int perm[5] = {0, 2, 1, 3, 4};
        if (n->n_perm != 5 || memcmp(n->perm, perm, sizeof perm) != 0)
            return unsupported(c, n, "a transpose of a channel-group view other than the shuffle (0, 2, 1, 3, 4)");
        int groups = c->vgroup[n->in[0]], ch = t->c, h = t->h, w = t->w;
        int y = add_tensor(c, ch, h, w);
        if (y < 0) return nomem(c);
        c->val2t[n->out] = y, c->vgroup[n->out] = ch / groups;
        ims_cuda_step *s = add_step(c, IS_CS_SHUFFLE);
        if (!s) return nomem(c);
        s->in[0] = x, s->out = y, s->group = groups;
        *done = 1;
        return IMGSIM_OK;
    }
    if (n->op == IS_OP_SLICE && iv->rank == 4 && o->rank == 4 && iv->dims[1] == t->c && o->dims[2] == t->h &&
        o->dims[3] == t->w && n->offset[2] == 0 && n->offset[3] == 0 && n->offset[1] >= 0 && o->dims[1] > 0 &&
        n->offset[1] + o->dims[1] <= t->c) {
        int y = new_value_tensor(c, n->out);
        if (y == -1) return nomem(c);
        if (y < 0) return unsupported(c, n, "unexpected output shape");
        ims_cuda_step *s = add_step(c, IS_CS_CSLICE);
        if (!s) return nomem(c);
        s->in[0] = x, s->out = y, s->coff = (int32_t)n->offset[1];
        *done = 1;
    }
    return IMGSIM_OK;
}

/* One node -> zero or more steps. */
static imgsim_status compile_node(cc *c, const ims_node *n) {
    const ims_graph *g = c->g;
    ims_cuda_step *s;
    int x = n->n_in > 0 ? tensor_of(c, n->in[0]) : -1;
    if (n->op == IS_OP_RESHAPE || n->op == IS_OP_TRANSPOSE || n->op == IS_OP_SLICE) {
        int done;
        imgsim_status st = compile_shuffle(c, n, &done);
        if (st || done) return st;
    }
    switch (n->op) {
    case IS_OP_CONV:
        return compile_conv(c, n);
    case IS_OP_GEMM:
    case IS_OP_MATMUL:
        return compile_gemm(c, n);
    case IS_OP_BATCHNORM:
        return compile_bn(c, n);
    case IS_OP_IDENTITY:
    case IS_OP_FLATTEN:
    case IS_OP_RESHAPE: {
        if (x < 0) return unsupported(c, n, "input is not an activation");
        const ims_value *o = &g->vals[n->out];
        const ims_cuda_tensor *t = &c->p->tensors[x];
        int64_t numel = ims_value_numel(o);
        if (numel != (int64_t)t->c * t->h * t->w) return unsupported(c, n, "element count changes");
        if (n->op == IS_OP_IDENTITY || (t->h == 1 && t->w == 1 && (o->rank == 2 || (o->rank == 4 && o->dims[1] == t->c)))) {
            c->val2t[n->out] = x; /* same bytes: alias */
            return IMGSIM_OK;
        }
        if (o->rank != 2) return unsupported(c, n, "reshape to other than [N, K]");
        int y = new_value_tensor(c, n->out);
        if (y == -1) return nomem(c);
        if (!(s = add_step(c, IS_CS_FLATTEN))) return nomem(c);
        s->in[0] = x, s->out = y;
        return IMGSIM_OK;
    }
    default:
        break;
    }
    if (x < 0) return unsupported(c, n, "input is not an activation");
    int kind;
    switch (n->op) {
    case IS_OP_MAXPOOL: kind = IS_CS_MAXPOOL; break;
    case IS_OP_AVGPOOL: kind = IS_CS_AVGPOOL; break;
    case IS_OP_GLOBALAVGPOOL: kind = IS_CS_GAP; break;
    case IS_OP_ADD: kind = IS_CS_ADD; break;
    case IS_OP_MUL: kind = IS_CS_MUL; break;
    case IS_OP_SIGMOID: kind = IS_CS_SIGMOID; break;
    case IS_OP_HARDSIGMOID: kind = IS_CS_HARDSIGMOID; break;
    case IS_OP_HARDSWISH: kind = IS_CS_HARDSWISH; break;
    case IS_OP_RELU:
    case IS_OP_CLIP: kind = IS_CS_ACT; break;
    case IS_OP_CONCAT: kind = IS_CS_CONCAT; break;
    default: return unsupported(c, n, "operator not supported by the CUDA engine");
    }
    int x1 = -1;
    if (kind == IS_CS_ADD || kind == IS_CS_MUL) {
        x1 = tensor_of(c, n->in[1]);
        if (x1 < 0) return unsupported(c, n, "second input is not an activation");
        const ims_cuda_tensor *a = &c->p->tensors[x], *b = &c->p->tensors[x1];
        if (a->h * a->w == 1 && b->h * b->w > 1) { /* broadcast operand second */
            int t = x; x = x1; x1 = t;
            a = &c->p->tensors[x], b = &c->p->tensors[x1];
        }
        if (a->c != b->c || !((b->h == a->h && b->w == a->w) || (b->h == 1 && b->w == 1)))
            return unsupported(c, n, "broadcast other than per channel");
    }
    if (kind == IS_CS_MAXPOOL || kind == IS_CS_AVGPOOL) {
        if (n->dilation[0] > 1 || n->dilation[1] > 1) return unsupported(c, n, "dilated pooling");
    }
    if (kind == IS_CS_CONCAT) {
        const ims_value *o = &g->vals[n->out];
        if (o->rank != 4 || n->axis != 1) return unsupported(c, n, "concat other than on channels of 4-D");
    }
    int y = new_value_tensor(c, n->out);
    if (y == -1) return nomem(c);
    if (y < 0) return unsupported(c, n, "output is not 2-D or 4-D");
    if (kind == IS_CS_CONCAT) {
        int coff = 0;
        for (int i = 0; i < n->n_in; i++) {
            int xi = tensor_of(c, n->in[i]);
            if (xi < 0 || i >= IS_MAX_INPUTS) return unsupported(c, n, "input is not an activation");
            const ims_cuda_tensor *ti = &c->p->tensors[xi], *to = &c->p->tensors[y];
            if (ti->h != to->h || ti->w != to->w) return unsupported(c, n, "spatial sizes differ");
            if (!(s = add_step(c, IS_CS_CONCAT))) return nomem(c);
            s->in[0] = xi, s->out = y, s->coff = coff;
            coff += c->p->tensors[xi].c;
        }
        if (coff != c->p->tensors[y].c) return unsupported(c, n, "channel counts do not add up");
        return IMGSIM_OK;
    }
    if (!(s = add_step(c, kind))) return nomem(c);
    s->in[0] = x, s->in[1] = x1, s->out = y;
    if (kind == IS_CS_HARDSIGMOID) s->alpha = n->alpha, s->beta = n->beta;
    if (kind == IS_CS_MAXPOOL || kind == IS_CS_AVGPOOL) {
        s->kh = n->kernel[0], s->kw = n->kernel[1], s->sh = n->stride[0], s->sw = n->stride[1];
        s->pt = n->pad[0], s->pl = n->pad[1], s->pb = n->pad[2], s->pr = n->pad[3];
        s->count_include_pad = n->count_include_pad;
    }
    if (n->op == IS_OP_RELU) {
        s->act = IS_ACT_RELU;
    } else if (n->op == IS_OP_CLIP) {
        s->act = IS_ACT_CLIP, s->act_min = n->clip_min, s->act_max = n->clip_max;
    } else {
        set_act(s, n);
    }
    return IMGSIM_OK;
}

/* Removes a GAP step whose only reader is the output step and lets the output step pool. */
static void fuse_gap_into_output(ims_cuda_plan *p) {
    ims_cuda_step *out = &p->steps[p->n_steps - 1];
    int t = out->in[0];
    int prod = -1, readers = 0;
    for (int i = 0; i < p->n_steps; i++) {
        const ims_cuda_step *s = &p->steps[i];
        if (s->out == t) prod = i;
        if (s->in[0] == t || s->in[1] == t) readers++;
    }
    if (prod < 0 || p->steps[prod].kind != IS_CS_GAP || readers != 1) return;
    out->in[0] = p->steps[prod].in[0];
    out->gap = 1;
    memmove(&p->steps[prod], &p->steps[prod + 1], (size_t)(p->n_steps - prod - 1) * sizeof *p->steps);
    p->n_steps--;
}

/* Lays out the arena: tensor t lives from the step that first writes it to the last step that
 * reads it; each is placed first-fit among the tensors alive at its first write. */
static imgsim_status plan_arena(cc *c) {
    ims_cuda_plan *p = c->p;
    int nt = p->n_tensors;
    int *def = ims_malloc_array((size_t)nt + 1, sizeof *def), *last = ims_malloc_array((size_t)nt + 1, sizeof *last);
    int *placed = ims_calloc((size_t)nt + 1, sizeof *placed), *live = ims_malloc_array((size_t)nt + 1, sizeof *live);
    if (!def || !last || !placed || !live) {
        free(def), free(last), free(placed), free(live);
        return nomem(c);
    }
    for (int t = 0; t < nt; t++) def[t] = -1, last[t] = -1;
    for (int i = 0; i < p->n_steps; i++) {
        const ims_cuda_step *s = &p->steps[i];
        if (s->out >= 0 && def[s->out] < 0) def[s->out] = i;
        for (int j = 0; j < 2; j++)
            if (s->in[j] >= 0) last[s->in[j]] = i;
        if (s->out >= 0 && last[s->out] < i) last[s->out] = i;
    }
    int64_t top = 0;
    for (int i = 0; i < p->n_steps; i++) {
        int t = p->steps[i].out;
        if (t < 0 || def[t] != i) continue;
        /* tensors alive during step i, sorted by offset */
        int nl = 0;
        for (int u = 0; u < nt; u++)
            if (placed[u] && last[u] >= i) live[nl++] = u;
        for (int a = 1; a < nl; a++)
            for (int b = a; b > 0 && p->tensors[live[b]].offset < p->tensors[live[b - 1]].offset; b--) {
                int tmp = live[b]; live[b] = live[b - 1]; live[b - 1] = tmp;
            }
        int64_t off = 0, size = p->tensors[t].size;
        for (int k = 0; k < nl; k++) {
            const ims_cuda_tensor *u = &p->tensors[live[k]];
            if (u->offset - off >= size) break;
            if (u->offset + u->size > off) off = u->offset + u->size;
        }
        p->tensors[t].offset = off;
        placed[t] = 1;
        if (off + size > top) top = off + size;
    }
    for (int t = 0; t < nt; t++)
        if (!placed[t]) p->tensors[t].offset = 0, p->tensors[t].size = 0; /* never written (a fused-away GAP) */
    p->arena_per_image = top;
    free(def), free(last), free(placed), free(live);
    return IMGSIM_OK;
}

imgsim_status ims_cuda_compile(ims_cuda_plan *p, const ims_graph *g, int elt, ims_err *e) {
    memset(p, 0, sizeof *p);
    cc c = {.p = p, .g = g, .elt = elt, .s2d_node = -1, .e = e};
    c.val2t = ims_malloc_array((size_t)g->n_vals + 1, sizeof *c.val2t);
    c.vgroup = ims_calloc((size_t)g->n_vals + 1, sizeof *c.vgroup);
    if (!c.val2t || !c.vgroup) {
        free(c.val2t), free(c.vgroup);
        return nomem(&c);
    }
    for (int i = 0; i < g->n_vals; i++) c.val2t[i] = -1;
    imgsim_status st = IMGSIM_OK;
    p->elt = elt;
    p->in_c = g->in_c, p->in_h = g->in_h, p->in_w = g->in_w;
    p->dim = g->dim;
    if (g->input < 0 || g->output < 0 || g->in_c <= 0 || g->in_h <= 0 || g->in_w <= 0) {
        st = ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda: graph has no input/output shape (not optimised?)");
        goto done;
    }
    /* fp16 tensor-core convolutions want channels in multiples of 8: pad the image input with
     * zero channels when every consumer is an ungrouped convolution */
    int cp = g->in_c, consumers = 0, stem = -1;
    int ok = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int j = 0; j < n->n_in && j < IS_MAX_INPUTS; j++)
            if (n->in[j] == g->input) {
                consumers++;
                stem = i;
                if (!(n->op == IS_OP_CONV && j == 0 && n->group <= 1)) ok = 0;
            }
        if (n->residual == g->input) ok = 0;
    }
    if (g->output == g->input) ok = 0;
    if (elt == 2 && cp % 8 && ok) cp = (cp + 7) / 8 * 8;
    /* A stride-2 stem convolution on few channels (ResNet's 7x7/2 on RGB) keeps the tensor cores
     * nearly idle. Rewrite it as a ceil(k/2) x ceil(k/2) stride-1 convolution over a
     * space-to-depth input that the input kernel writes directly: S[j][i][(by*2+bx)*C + c] =
     * padded_in[2j+by][2i+bx][c], so out[oy][ox] = sum_a W'[a] S[oy+a][ox+a']. */
    int in_h = g->in_h, in_w = g->in_w;
    if (ok && consumers == 1 && stem >= 0 && g->in_c <= 4) {
        const ims_node *n = &g->nodes[stem];
        const ims_value *W = n->in[1] >= 0 ? &g->vals[n->in[1]] : NULL;
        const ims_value *o = &g->vals[n->out];
        if (W && W->data && W->rank == 4 && o->rank == 4 && n->stride[0] == 2 && n->stride[1] == 2 &&
            n->dilation[0] == 1 && n->dilation[1] == 1 && n->pad[0] == n->pad[2] && n->pad[1] == n->pad[3] &&
            W->dims[2] >= 3 && W->dims[3] >= 3) {
            int kh2 = (int)(W->dims[2] + 1) / 2, kw2 = (int)(W->dims[3] + 1) / 2;
            c.s2d_node = stem;
            in_h = (int)o->dims[2] + kh2 - 1;
            in_w = (int)o->dims[3] + kw2 - 1;
            cp = 4 * g->in_c;
            cp = elt == 2 ? (cp + 7) / 8 * 8 : (cp + 3) / 4 * 4;
        }
    }
    int tin = add_tensor(&c, cp, in_h, in_w);
    if (tin < 0) {
        st = nomem(&c);
        goto done;
    }
    c.val2t[g->input] = tin;
    ims_cuda_step *s = add_step(&c, IS_CS_INPUT);
    if (!s) {
        st = nomem(&c);
        goto done;
    }
    s->out = tin;
    if (c.s2d_node >= 0) {
        const ims_node *n = &g->nodes[c.s2d_node];
        s->sh = s->sw = 2; /* input step: space-to-depth by 2 with these pads */
        s->pt = n->pad[0], s->pl = n->pad[1];
    }
    for (int i = 0; i < g->n_nodes && !st; i++) {
        const ims_node *n = &g->nodes[i];
        if (n->dead || n->out < 0) continue;
        st = compile_node(&c, n);
    }
    if (st) goto done;
    int tout = c.val2t[g->output];
    if (tout < 0) {
        st = ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "cuda: output '%s' is not computed", g->vals[g->output].name);
        goto done;
    }
    const ims_cuda_tensor *to = &p->tensors[tout];
    if ((int64_t)to->c * to->h * to->w != g->dim) {
        st = ims_fail(e, IMGSIM_ERR_INTERNAL, "cuda: output '%s' has %lld elements, graph says dim %lld",
                     g->vals[g->output].name, (long long)to->c * to->h * to->w, (long long)g->dim);
        goto done;
    }
    if (!(s = add_step(&c, IS_CS_OUTPUT))) {
        st = nomem(&c);
        goto done;
    }
    s->in[0] = tout;
    fuse_gap_into_output(p);
    st = plan_arena(&c);
done:
    free(c.val2t);
    free(c.vgroup);
    if (st) ims_cuda_plan_free(p);
    return st;
}
