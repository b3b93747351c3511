/*
 * test_cpu_ops.c: every operator of the CPU (oneDNN) backend on small hand-built graphs, against
 * naive C references written here (double accumulation), with odd shapes: 7x5 spatial, 3
 * channels, stride 2 with asymmetric pads, dilation 2, groups 3, depthwise, ceil_mode pooling,
 * count_include_pad, broadcasting, fused conv + residual + ReLU (in place and copied), partial
 * batches (the smaller plans), bf16 where the CPU has it, L2 normalisation and refusals.
 *
 * Tolerance: max |got - ref| <= 1e-5 * max(1, max |ref|) in fp32 (2e-2 in bf16).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "model/graph.h"

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define IN(...) ((const int[]){__VA_ARGS__})

/* ---- deterministic data (an LCG) ---- */

static uint32_t lcg = 2024u;
static float frand(float lo, float hi) {
    lcg = lcg * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(lcg >> 8) / 16777216.0f;
}
static float *rnd(int64_t n, float lo, float hi) {
    float *p = malloc((size_t)n * sizeof(float));
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = frand(lo, hi);
    return p;
}

/* ---- graph building ---- */

static ims_graph *new_graph(int c, int h, int w) {
    ims_graph *g = NULL;
    assert_int_equal(ims_graph_new(&g, NULL), IMGSIM_OK);
    g->input = ims_graph_add_value(g, "x", 4, DIMS(-1, c, h, w), NULL);
    assert_true(g->input >= 0);
    g->in_c = c;
    g->in_h = h;
    g->in_w = w;
    g->output = -1;
    return g;
}

/* An activation value [-1, dims...] of rank r (dims without the batch). */
static int act(ims_graph *g, const char *name, int r, const int64_t *dims) {
    int64_t d[IS_MAX_RANK];
    d[0] = -1;
    for (int k = 1; k < r; k++) d[k] = dims[k - 1];
    int v = ims_graph_add_value(g, name, r, d, NULL);
    assert_true(v >= 0);
    return v;
}
#define ACT4(g, name, c, h, w) act(g, name, 4, DIMS(c, h, w))

static int cnst(ims_graph *g, const char *name, int r, const int64_t *dims, const float *data) {
    int v = ims_graph_add_value(g, name, r, dims, data);
    assert_true(v >= 0);
    return v;
}

static ims_node *node(ims_graph *g, ims_op op, const char *name, int n_in, const int *in, int out) {
    ims_node *n = ims_graph_add_node(g, op, name, n_in, in, out);
    assert_non_null(n);
    return n;
}

static void set_output(ims_graph *g, int v) {
    g->output = v;
    g->dim = ims_value_numel(&g->vals[v]);
}

/* Runs g on x [n, C, H, W] into y [n, dim] with a backend planned for max_batch. */
static imgsim_status run_graph(ims_graph *g, imgsim_precision prec, int max_batch, int normalize, const float *x,
                               int n, float *y, ims_err *e) {
    ims_backend *b = NULL;
    imgsim_status s = ims_backend_cpu_new(&b, e);
    if (s) return s;
    ims_backend_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.precision = prec;
    cfg.max_batch = max_batch;
    cfg.threads = 2;
    cfg.normalize = normalize;
    s = b->ops->prepare(b, g, &cfg, e);
    if (!s) {
        assert_int_equal(b->dim, g->dim);
        s = b->ops->run(b, x, n, y, e);
    }
    b->ops->destroy(b);
    return s;
}

static void expect_close(const float *got, const double *ref, int64_t n, double tol) {
    double scale = 1, err = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= err)) {
            err = d;
            at = i;
        }
    }
    if (!(err <= tol * scale)) {
        print_error("max error %.3g at %lld (got %.7g, want %.7g), allowed %.3g\n", err, (long long)at,
                    (double)got[at], ref[at], tol * scale);
        fail();
    }
}

/* Runs g in fp32 (max_batch = n) and compares with ref [n, dim]. */
static void check_graph(ims_graph *g, const float *x, int n, const double *ref) {
    float *y = malloc((size_t)(n * g->dim) * sizeof(float));
    assert_non_null(y);
    ims_err e;
    imgsim_status s = run_graph(g, IMGSIM_PREC_FP32, n, 0, x, n, y, &e);
    if (s) print_error("%s\n", e.msg);
    assert_int_equal(s, IMGSIM_OK);
    expect_close(y, ref, n * g->dim, 1e-5);
    free(y);
}

/* ---- naive references (NCHW, double accumulation) ---- */

typedef struct convp {
    int N, C, H, W, OC, KH, KW, OH, OW, sh, sw, dh, dw, pt, pl, grp;
} convp;

/* y [N, OC, OH, OW] = conv(x [N, C, H, W], w [OC, C/grp, KH, KW]) + b [OC] */
static void ref_conv(double *y, const double *x, const float *w, const float *b, const convp *p) {
    int icg = p->C / p->grp, ocg = p->OC / p->grp;
    for (int n = 0; n < p->N; n++)
        for (int oc = 0; oc < p->OC; oc++)
            for (int oh = 0; oh < p->OH; oh++)
                for (int ow = 0; ow < p->OW; ow++) {
                    int gi = oc / ocg;
                    double s = b ? b[oc] : 0;
                    for (int ic = 0; ic < icg; ic++)
                        for (int kh = 0; kh < p->KH; kh++)
                            for (int kw = 0; kw < p->KW; kw++) {
                                int ih = oh * p->sh - p->pt + kh * p->dh, iw = ow * p->sw - p->pl + kw * p->dw;
                                if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;
                                s += x[(((size_t)n * p->C + gi * icg + ic) * p->H + ih) * p->W + iw] *
                                     w[(((size_t)oc * icg + ic) * p->KH + kh) * p->KW + kw];
                            }
                    y[(((size_t)n * p->OC + oc) * p->OH + oh) * p->OW + ow] = s;
                }
}

/* PyTorch's pooling: windows clipped to the padded input for the divisor (include_pad), to the
 * input for max and exclude_pad. */
static void ref_pool(double *y, const double *x, int N, int C, int H, int W, int OH, int OW, int kh, int kw,
                     int sh, int sw, int pt, int pl, int pb, int pr, int is_max, int include_pad) {
    for (int nc = 0; nc < N * C; nc++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int hs = oh * sh - pt, ws = ow * sw - pl;
                int he = hs + kh < H + pb ? hs + kh : H + pb, we = ws + kw < W + pr ? ws + kw : W + pr;
                int psize = (he - hs) * (we - ws);
                int h0 = hs > 0 ? hs : 0, w0 = ws > 0 ? ws : 0, h1 = he < H ? he : H, w1 = we < W ? we : W;
                double acc = is_max ? -INFINITY : 0;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) {
                        double v = x[((size_t)nc * H + ih) * W + iw];
                        if (is_max) acc = v > acc ? v : acc;
                        else acc += v;
                    }
                if (!is_max) acc /= include_pad ? psize : (h1 - h0) * (w1 - w0);
                y[((size_t)nc * OH + oh) * OW + ow] = acc;
            }
}

static double *to_double(const float *x, int64_t n) {
    double *d = malloc((size_t)n * sizeof(double));
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}
static double *dalloc(int64_t n) {
    double *d = calloc((size_t)n, sizeof(double));
    assert_non_null(d);
    return d;
}

/* ---- tests ---- */

/* One Conv on [2, C, H, W] with the given geometry (and optional fused clip). */
static void conv_case(convp p, int pb, int pr, ims_act a, float lo, float hi) {
    ims_graph *g = new_graph(p.C, p.H, p.W);
    int64_t wn = (int64_t)p.OC * (p.C / p.grp) * p.KH * p.KW;
    float *w = rnd(wn, -1, 1), *b = rnd(p.OC, -1, 1), *x = rnd((int64_t)p.N * p.C * p.H * p.W, -2, 2);
    int wv = cnst(g, "w", 4, DIMS(p.OC, p.C / p.grp, p.KH, p.KW), w);
    int bv = cnst(g, "b", 1, DIMS(p.OC), b);
    int y = ACT4(g, "y", p.OC, p.OH, p.OW);
    ims_node *n = node(g, IS_OP_CONV, "conv", 3, IN(g->input, wv, bv), y);
    n->stride[0] = p.sh;
    n->stride[1] = p.sw;
    n->dilation[0] = p.dh;
    n->dilation[1] = p.dw;
    n->pad[0] = p.pt;
    n->pad[1] = p.pl;
    n->pad[2] = pb;
    n->pad[3] = pr;
    n->group = p.grp;
    n->kernel[0] = p.KH;
    n->kernel[1] = p.KW;
    n->act = a;
    n->act_min = lo;
    n->act_max = hi;
    set_output(g, y);
    int64_t yn = (int64_t)p.N * p.OC * p.OH * p.OW;
    double *xd = to_double(x, (int64_t)p.N * p.C * p.H * p.W), *ref = dalloc(yn);
    ref_conv(ref, xd, w, b, &p);
    if (a == IS_ACT_CLIP)
        for (int64_t i = 0; i < yn; i++) ref[i] = ref[i] < lo ? lo : ref[i] > hi ? hi : ref[i];
    check_graph(g, x, p.N, ref);
    free(w);
    free(b);
    free(x);
    free(xd);
    free(ref);
    ims_graph_free(g);
}

static void test_conv_stride2_asym_pads(void **st) {
    (void)st;
    /* OH = (7 + 1 + 2 - 3) / 2 + 1 = 4, OW = (5 + 0 + 1 - 3) / 2 + 1 = 2 */
    convp p = {.N = 2, .C = 3, .H = 7, .W = 5, .OC = 4, .KH = 3, .KW = 3, .OH = 4, .OW = 2,
               .sh = 2, .sw = 2, .dh = 1, .dw = 1, .pt = 1, .pl = 0, .grp = 1};
    conv_case(p, 2, 1, IS_ACT_NONE, 0, 0);
}

static void test_conv_dilation2_groups3(void **st) {
    (void)st;
    /* 6 -> 6 channels in 3 groups, dilation 2, pads 2: OH = 9 + 4 - 5 + 1 = 9, OW = 7 */
    convp p = {.N = 2, .C = 6, .H = 9, .W = 7, .OC = 6, .KH = 3, .KW = 3, .OH = 9, .OW = 7,
               .sh = 1, .sw = 1, .dh = 2, .dw = 2, .pt = 2, .pl = 2, .grp = 3};
    conv_case(p, 2, 2, IS_ACT_NONE, 0, 0);
}

static void test_conv_depthwise_relu6(void **st) {
    (void)st;
    /* depthwise 8 channels, stride 2, pad 1: OH = (7 + 2 - 3) / 2 + 1 = 4, OW = 3; fused ReLU6 */
    convp p = {.N = 2, .C = 8, .H = 7, .W = 5, .OC = 8, .KH = 3, .KW = 3, .OH = 4, .OW = 3,
               .sh = 2, .sw = 2, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .grp = 8};
    conv_case(p, 1, 1, IS_ACT_CLIP, 0.0f, 6.0f);
}

static void test_conv_rect_kernel(void **st) {
    (void)st;
    /* 1x3 kernel, stride (1, 2), no padding: OH = 7, OW = (5 - 3) / 2 + 1 = 2; 3 -> 17 channels */
    convp p = {.N = 3, .C = 3, .H = 7, .W = 5, .OC = 17, .KH = 1, .KW = 3, .OH = 7, .OW = 2,
               .sh = 1, .sw = 2, .dh = 1, .dw = 1, .pt = 0, .pl = 0, .grp = 1};
    conv_case(p, 0, 0, IS_ACT_NONE, 0, 0);
}

/* Residual block shapes: r = conv1x1(x) [2, 4, 7, 5]; y = relu(conv3x3(src) + b + r).
 * mode 0: src = x and r dies at y (in place); mode 1: r is read again after y (copied):
 * out = y + r; mode 2: src = r itself (must not be overwritten while read). */
static void residual_case(int mode) {
    ims_graph *g = new_graph(3, 7, 5);
    float *w1 = rnd(4 * 3, -1, 1), *w2 = rnd(mode == 2 ? 4 * 4 * 9 : 4 * 3 * 9, -0.5f, 0.5f), *b2 = rnd(4, -1, 1);
    float *x = rnd(2 * 3 * 35, -2, 2);
    int w1v = cnst(g, "w1", 4, DIMS(4, 3, 1, 1), w1);
    int w2v = mode == 2 ? cnst(g, "w2", 4, DIMS(4, 4, 3, 3), w2) : cnst(g, "w2", 4, DIMS(4, 3, 3, 3), w2);
    int b2v = cnst(g, "b2", 1, DIMS(4), b2);
    int r = ACT4(g, "r", 4, 7, 5), y = ACT4(g, "y", 4, 7, 5), z = ACT4(g, "z", 4, 7, 5);
    node(g, IS_OP_CONV, "c1", 2, IN(g->input, w1v), r);
    ims_node *n = node(g, IS_OP_CONV, "c2", 3, IN(mode == 2 ? r : g->input, w2v, b2v), y);
    n->pad[0] = n->pad[1] = n->pad[2] = n->pad[3] = 1;
    n->kernel[0] = n->kernel[1] = 3;
    n->residual = r;
    n->act = IS_ACT_RELU;
    if (mode == 1) {
        node(g, IS_OP_ADD, "add", 2, IN(y, r), z);
        set_output(g, z);
    } else {
        set_output(g, y);
    }
    double *xd = to_double(x, 2 * 3 * 35), *rd = dalloc(2 * 4 * 35), *yd = dalloc(2 * 4 * 35);
    convp p1 = {.N = 2, .C = 3, .H = 7, .W = 5, .OC = 4, .KH = 1, .KW = 1, .OH = 7, .OW = 5,
                .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 0, .pl = 0, .grp = 1};
    ref_conv(rd, xd, w1, NULL, &p1);
    convp p2 = p1;
    p2.C = mode == 2 ? 4 : 3;
    p2.KH = p2.KW = 3;
    p2.pt = p2.pl = 1;
    ref_conv(yd, mode == 2 ? rd : xd, w2, b2, &p2);
    for (int i = 0; i < 2 * 4 * 35; i++) {
        yd[i] += rd[i];
        if (yd[i] < 0) yd[i] = 0;
        if (mode == 1) yd[i] += rd[i];
    }
    check_graph(g, x, 2, yd);
    free(w1);
    free(w2);
    free(b2);
    free(x);
    free(xd);
    free(rd);
    free(yd);
    ims_graph_free(g);
}

static void test_conv_residual_relu_inplace(void **st) {
    (void)st;
    residual_case(0);
}
static void test_conv_residual_relu_copied(void **st) {
    (void)st;
    residual_case(1);
}
static void test_conv_residual_is_src(void **st) {
    (void)st;
    residual_case(2);
}

/* Unfused BatchNormalization on [2, 3, 7, 5]. */
static void test_batchnorm(void **st) {
    (void)st;
    ims_graph *g = new_graph(3, 7, 5);
    float *x = rnd(2 * 3 * 35, -2, 2), *ga = rnd(3, 0.5f, 1.5f), *be = rnd(3, -1, 1), *mu = rnd(3, -1, 1),
          *va = rnd(3, 0.2f, 2.0f);
    int p[4] = {cnst(g, "g", 1, DIMS(3), ga), cnst(g, "b", 1, DIMS(3), be), cnst(g, "m", 1, DIMS(3), mu),
                cnst(g, "v", 1, DIMS(3), va)};
    int y = ACT4(g, "y", 3, 7, 5);
    ims_node *n = node(g, IS_OP_BATCHNORM, "bn", 5, IN(g->input, p[0], p[1], p[2], p[3]), y);
    n->epsilon = 1e-3f;
    set_output(g, y);
    double ref[2 * 3 * 35];
    for (int i = 0; i < 2 * 3 * 35; i++) {
        int c = (i / 35) % 3;
        ref[i] = ((double)x[i] - mu[c]) / sqrt((double)va[c] + (double)1e-3f) * ga[c] + be[c];
    }
    check_graph(g, x, 2, ref);
    free(x);
    free(ga);
    free(be);
    free(mu);
    free(va);
    ims_graph_free(g);
}

/* Sigmoid, Clip, Relu and an Add of two activations: out = clip(sigmoid(x), .3, .6) + relu(x). */
static void test_eltwise(void **st) {
    (void)st;
    ims_graph *g = new_graph(3, 7, 5);
    float *x = rnd(2 * 3 * 35, -3, 3);
    int a = ACT4(g, "a", 3, 7, 5), b = ACT4(g, "b", 3, 7, 5), c = ACT4(g, "c", 3, 7, 5), d = ACT4(g, "d", 3, 7, 5);
    node(g, IS_OP_SIGMOID, "sig", 1, IN(g->input), a);
    ims_node *n = node(g, IS_OP_CLIP, "clip", 1, IN(a), b);
    n->clip_min = 0.3f;
    n->clip_max = 0.6f;
    node(g, IS_OP_RELU, "relu", 1, IN(g->input), c);
    node(g, IS_OP_ADD, "add", 2, IN(b, c), d);
    set_output(g, d);
    double ref[2 * 3 * 35];
    for (int i = 0; i < 2 * 3 * 35; i++) {
        double s = 1 / (1 + exp(-(double)x[i]));
        s = s < 0.3f ? 0.3f : s > 0.6f ? 0.6f : s;
        ref[i] = s + (x[i] > 0 ? x[i] : 0);
    }
    check_graph(g, x, 2, ref);
    free(x);
    ims_graph_free(g);
}

/* Broadcasting: a = x + k [3, 1, 1] (constant); s = GAP(x) [N, 3, 1, 1];
 * out = s * a (the first operand broadcast: swapped), then Mul by a constant scalar [1]. */
static void test_binary_broadcast(void **st) {
    (void)st;
    ims_graph *g = new_graph(3, 7, 5);
    float *x = rnd(2 * 3 * 35, -2, 2), k[3] = {0.5f, -1.25f, 2.0f}, sc[1] = {-0.75f};
    int kv = cnst(g, "k", 3, DIMS(3, 1, 1), k), scv = cnst(g, "sc", 1, DIMS(1), sc);
    int a = ACT4(g, "a", 3, 7, 5), s = ACT4(g, "s", 3, 1, 1), m = ACT4(g, "m", 3, 7, 5), o = ACT4(g, "o", 3, 7, 5);
    node(g, IS_OP_ADD, "addk", 2, IN(g->input, kv), a);
    node(g, IS_OP_GLOBALAVGPOOL, "gap", 1, IN(g->input), s);
    node(g, IS_OP_MUL, "mul", 2, IN(s, a), m);
    node(g, IS_OP_MUL, "mulsc", 2, IN(scv, m), o);
    set_output(g, o);
    double ref[2 * 3 * 35];
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++) {
            double mean = 0;
            for (int i = 0; i < 35; i++) mean += x[(n * 3 + c) * 35 + i];
            mean /= 35;
            for (int i = 0; i < 35; i++) ref[(n * 3 + c) * 35 + i] = mean * ((double)x[(n * 3 + c) * 35 + i] + k[c]) * sc[0];
        }
    check_graph(g, x, 2, ref);
    free(x);
    ims_graph_free(g);
}

/* One pooling node on [2, 3, 7, 5]. */
static void pool_case(ims_op op, int kh, int kw, int s, int pt, int pl, int pb, int pr, int ceil_mode, int incl,
                      int OH, int OW) {
    ims_graph *g = new_graph(3, 7, 5);
    float *x = rnd(2 * 3 * 35, -2, 2);
    int y = ACT4(g, "y", 3, OH, OW);
    ims_node *n = node(g, op, "pool", 1, IN(g->input), y);
    n->kernel[0] = kh;
    n->kernel[1] = kw;
    n->stride[0] = n->stride[1] = s;
    n->pad[0] = pt;
    n->pad[1] = pl;
    n->pad[2] = pb;
    n->pad[3] = pr;
    n->ceil_mode = ceil_mode;
    n->count_include_pad = incl;
    set_output(g, y);
    double *xd = to_double(x, 2 * 3 * 35), *ref = dalloc(2 * 3 * OH * OW);
    ref_pool(ref, xd, 2, 3, 7, 5, OH, OW, kh, kw, s, s, pt, pl, pb, pr, op == IS_OP_MAXPOOL, incl);
    check_graph(g, x, 2, ref);
    free(x);
    free(xd);
    free(ref);
    ims_graph_free(g);
}

static void test_maxpool(void **st) {
    (void)st;
    pool_case(IS_OP_MAXPOOL, 3, 3, 2, 1, 1, 1, 1, 0, 0, 4, 3); /* ResNet's stem pool */
    pool_case(IS_OP_MAXPOOL, 2, 3, 2, 0, 1, 1, 0, 0, 0, 4, 2); /* asymmetric pads, 2x3 */
    /* ceil_mode: k2 s2 on 7x5: OH = ceil(5 / 2) + 1 = 4, OW = ceil(3 / 2) + 1 = 3 */
    pool_case(IS_OP_MAXPOOL, 2, 2, 2, 0, 0, 0, 0, 1, 0, 4, 3);
}

static void test_avgpool(void **st) {
    (void)st;
    pool_case(IS_OP_AVGPOOL, 3, 3, 2, 1, 1, 1, 1, 0, 1, 4, 3); /* count_include_pad = 1 */
    pool_case(IS_OP_AVGPOOL, 3, 3, 2, 1, 1, 1, 1, 0, 0, 4, 3); /* count_include_pad = 0 */
    pool_case(IS_OP_AVGPOOL, 2, 2, 2, 0, 0, 0, 0, 1, 0, 4, 3); /* ceil_mode, exclude pad */
    pool_case(IS_OP_AVGPOOL, 3, 2, 1, 0, 0, 0, 0, 0, 1, 5, 4); /* no padding, stride 1 */
}

/* GAP -> Flatten -> Gemm (transB, alpha, beta, C) -> Gemm (B [K, N], fused ReLU). */
static void test_gap_flatten_gemm(void **st) {
    (void)st;
    ims_graph *g = new_graph(3, 7, 5);
    float *x = rnd(2 * 3 * 35, -2, 2), *B1 = rnd(5 * 3, -1, 1), *C1 = rnd(5, -1, 1), *B2 = rnd(5 * 4, -1, 1);
    int b1 = cnst(g, "B1", 2, DIMS(5, 3), B1), c1 = cnst(g, "C1", 1, DIMS(5), C1), b2 = cnst(g, "B2", 2, DIMS(5, 4), B2);
    int s = ACT4(g, "s", 3, 1, 1), f = act(g, "f", 2, DIMS(3)), h = act(g, "h", 2, DIMS(5)), o = act(g, "o", 2, DIMS(4));
    node(g, IS_OP_GLOBALAVGPOOL, "gap", 1, IN(g->input), s);
    node(g, IS_OP_FLATTEN, "flat", 1, IN(s), f);
    ims_node *n = node(g, IS_OP_GEMM, "fc1", 3, IN(f, b1, c1), h);
    n->trans_b = 1;
    n->alpha = 0.5f;
    n->beta = 2.0f;
    n = node(g, IS_OP_GEMM, "fc2", 2, IN(h, b2), o);
    n->act = IS_ACT_RELU;
    set_output(g, o);
    double ref[2 * 4];
    for (int b = 0; b < 2; b++) {
        double m[3], hh[5];
        for (int c = 0; c < 3; c++) {
            m[c] = 0;
            for (int i = 0; i < 35; i++) m[c] += x[(b * 3 + c) * 35 + i];
            m[c] /= 35;
        }
        for (int j = 0; j < 5; j++) {
            double acc = 0;
            for (int c = 0; c < 3; c++) acc += m[c] * B1[j * 3 + c];
            hh[j] = 0.5 * acc + 2.0 * C1[j];
        }
        for (int j = 0; j < 4; j++) {
            double acc = 0;
            for (int k = 0; k < 5; k++) acc += hh[k] * B2[k * 4 + j];
            ref[b * 4 + j] = acc > 0 ? acc : 0;
        }
    }
    check_graph(g, x, 2, ref);
    free(x);
    free(B1);
    free(C1);
    free(B2);
    ims_graph_free(g);
}

/* Reshape [N, 3, 7, 5] -> [N, 105] -> MatMul by a constant [105, 6]; and Reshape to rank 3. */
static void test_reshape_matmul(void **st) {
    (void)st;
    ims_graph *g = new_graph(3, 7, 5);
    float *x = rnd(2 * 105, -2, 2), *Bm = rnd(105 * 6, -1, 1);
    int bv = cnst(g, "B", 2, DIMS(105, 6), Bm);
    int r = act(g, "r", 2, DIMS(105)), o = act(g, "o", 2, DIMS(6));
    node(g, IS_OP_RESHAPE, "reshape", 1, IN(g->input), r);
    node(g, IS_OP_MATMUL, "mm", 2, IN(r, bv), o);
    set_output(g, o);
    double ref[2 * 6];
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 6; j++) {
            double acc = 0;
            for (int k = 0; k < 105; k++) acc += (double)x[b * 105 + k] * Bm[k * 6 + j];
            ref[b * 6 + j] = acc;
        }
    check_graph(g, x, 2, ref);
    free(Bm);
    ims_graph_free(g);

    /* the output may itself be a view: relu(x) reshaped to [N, 3, 35] */
    g = new_graph(3, 7, 5);
    int a = ACT4(g, "a", 3, 7, 5), v = act(g, "v", 3, DIMS(3, 35));
    node(g, IS_OP_RELU, "relu", 1, IN(g->input), a);
    node(g, IS_OP_RESHAPE, "reshape", 1, IN(a), v);
    set_output(g, v);
    double ref2[2 * 105];
    for (int i = 0; i < 2 * 105; i++) ref2[i] = x[i] > 0 ? x[i] : 0;
    check_graph(g, x, 2, ref2);
    free(x);
    ims_graph_free(g);
}

/* Concat along channels of a 5-channel conv and an Identity of a 3-channel conv (counts that are
 * not multiples of the blocking), and along H of x with itself. */
static void test_concat_identity(void **st) {
    (void)st;
    ims_graph *g = new_graph(3, 7, 5);
    float *x = rnd(2 * 105, -2, 2), *w1 = rnd(5 * 3, -1, 1), *w2 = rnd(3 * 3, -1, 1);
    int w1v = cnst(g, "w1", 4, DIMS(5, 3, 1, 1), w1), w2v = cnst(g, "w2", 4, DIMS(3, 3, 1, 1), w2);
    int a = ACT4(g, "a", 5, 7, 5), b = ACT4(g, "b", 3, 7, 5), bi = ACT4(g, "bi", 3, 7, 5), c = ACT4(g, "c", 8, 7, 5);
    node(g, IS_OP_CONV, "c1", 2, IN(g->input, w1v), a);
    node(g, IS_OP_CONV, "c2", 2, IN(g->input, w2v), b);
    node(g, IS_OP_IDENTITY, "id", 1, IN(b), bi);
    node(g, IS_OP_CONCAT, "cat", 2, IN(a, bi), c)->axis = 1;
    set_output(g, c);
    double *xd = to_double(x, 2 * 105), ra[2 * 5 * 35], rb[2 * 3 * 35], ref[2 * 8 * 35];
    convp p = {.N = 2, .C = 3, .H = 7, .W = 5, .OC = 5, .KH = 1, .KW = 1, .OH = 7, .OW = 5,
               .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 0, .pl = 0, .grp = 1};
    ref_conv(ra, xd, w1, NULL, &p);
    p.OC = 3;
    ref_conv(rb, xd, w2, NULL, &p);
    for (int n = 0; n < 2; n++) {
        memcpy(ref + n * 8 * 35, ra + n * 5 * 35, 5 * 35 * sizeof(double));
        memcpy(ref + n * 8 * 35 + 5 * 35, rb + n * 3 * 35, 3 * 35 * sizeof(double));
    }
    check_graph(g, x, 2, ref);
    ims_graph_free(g);

    g = new_graph(3, 7, 5);
    int h = ACT4(g, "h", 3, 14, 5);
    node(g, IS_OP_CONCAT, "cath", 2, IN(g->input, g->input), h)->axis = 2;
    set_output(g, h);
    double ref2[2 * 3 * 14 * 5];
    for (int n = 0; n < 2; n++)
        for (int ch = 0; ch < 3; ch++)
            for (int r = 0; r < 14; r++)
                for (int col = 0; col < 5; col++)
                    ref2[((n * 3 + ch) * 14 + r) * 5 + col] = x[((n * 3 + ch) * 7 + r % 7) * 5 + col];
    check_graph(g, x, 2, ref2);
    free(x);
    free(xd);
    free(w1);
    free(w2);
    ims_graph_free(g);
}

/* A small conv net: conv(3->16, s2) + relu -> maxpool -> conv(16->16) + residual + relu -> GAP ->
 * flatten. Used for batches, precision and normalisation. Returns the graph; ref_small computes
 * its output [n, 16]. */
static float *sw1, *sb1, *sw2, *sb2;
static ims_graph *small_net(void) {
    ims_graph *g = new_graph(3, 15, 13);
    if (!sw1) {
        sw1 = rnd(16 * 3 * 9, -0.5f, 0.5f);
        sb1 = rnd(16, -0.5f, 0.5f);
        sw2 = rnd(16 * 16 * 9, -0.2f, 0.2f);
        sb2 = rnd(16, -0.5f, 0.5f);
    }
    int w1 = cnst(g, "w1", 4, DIMS(16, 3, 3, 3), sw1), b1 = cnst(g, "b1", 1, DIMS(16), sb1);
    int w2 = cnst(g, "w2", 4, DIMS(16, 16, 3, 3), sw2), b2 = cnst(g, "b2", 1, DIMS(16), sb2);
    int a = ACT4(g, "a", 16, 8, 7), p = ACT4(g, "p", 16, 4, 4), c = ACT4(g, "c", 16, 4, 4),
        s = ACT4(g, "s", 16, 1, 1), f = act(g, "f", 2, DIMS(16));
    ims_node *n = node(g, IS_OP_CONV, "c1", 3, IN(g->input, w1, b1), a);
    n->stride[0] = n->stride[1] = 2;
    n->pad[0] = n->pad[1] = n->pad[2] = n->pad[3] = 1;
    n->act = IS_ACT_RELU;
    n = node(g, IS_OP_MAXPOOL, "pool", 1, IN(a), p);
    n->kernel[0] = n->kernel[1] = 3;
    n->stride[0] = n->stride[1] = 2;
    n->pad[0] = n->pad[1] = n->pad[2] = n->pad[3] = 1;
    n = node(g, IS_OP_CONV, "c2", 3, IN(p, w2, b2), c);
    n->pad[0] = n->pad[1] = n->pad[2] = n->pad[3] = 1;
    n->residual = p;
    n->act = IS_ACT_RELU;
    node(g, IS_OP_GLOBALAVGPOOL, "gap", 1, IN(c), s);
    node(g, IS_OP_FLATTEN, "flat", 1, IN(s), f);
    set_output(g, f);
    return g;
}

static void ref_small(double *out, const float *x, int n) {
    size_t in = 3 * 15 * 13;
    for (int b = 0; b < n; b++) {
        double *xd = to_double(x + b * in, (int64_t)in), a[16 * 8 * 7], p[16 * 4 * 4], c[16 * 4 * 4];
        convp p1 = {.N = 1, .C = 3, .H = 15, .W = 13, .OC = 16, .KH = 3, .KW = 3, .OH = 8, .OW = 7,
                    .sh = 2, .sw = 2, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .grp = 1};
        ref_conv(a, xd, sw1, sb1, &p1);
        for (int i = 0; i < 16 * 56; i++) a[i] = a[i] > 0 ? a[i] : 0;
        ref_pool(p, a, 1, 16, 8, 7, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0);
        convp p2 = {.N = 1, .C = 16, .H = 4, .W = 4, .OC = 16, .KH = 3, .KW = 3, .OH = 4, .OW = 4,
                    .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .grp = 1};
        ref_conv(c, p, sw2, sb2, &p2);
        for (int ch = 0; ch < 16; ch++) {
            double m = 0;
            for (int i = 0; i < 16; i++) {
                double v = c[ch * 16 + i] + p[ch * 16 + i];
                m += v > 0 ? v : 0;
            }
            out[b * 16 + ch] = m / 16;
        }
        free(xd);
    }
}

/* One engine planned for max_batch 5 (plans 5, 4, 2, 1) runs n = 5, 4, 3, 1: every n matches. */
static void test_partial_batches(void **st) {
    (void)st;
    ims_graph *g = small_net();
    float *x = rnd(5 * 3 * 15 * 13, -2, 2), y[5 * 16];
    double ref[5 * 16];
    ref_small(ref, x, 5);
    ims_backend *b = NULL;
    ims_err e;
    assert_int_equal(ims_backend_cpu_new(&b, &e), IMGSIM_OK);
    ims_backend_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.precision = IMGSIM_PREC_FP32;
    cfg.max_batch = 5;
    cfg.threads = 2;
    assert_int_equal(b->ops->prepare(b, g, &cfg, &e), IMGSIM_OK);
    const int ns[4] = {5, 4, 3, 1};
    for (int k = 0; k < 4; k++) {
        memset(y, 0, sizeof y);
        assert_int_equal(b->ops->run(b, x, ns[k], y, &e), IMGSIM_OK);
        expect_close(y, ref, ns[k] * 16, 1e-5);
    }
    /* out of range */
    assert_int_equal(b->ops->run(b, x, 6, y, &e), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(b->ops->run(b, x, 0, y, &e), IMGSIM_ERR_INVALID_ARG);
    imgsim_engine_info info;
    memset(&info, 0, sizeof info);
    b->ops->info(b, &info);
    assert_true(strstr(info.device_name, "oneDNN") != NULL);
    assert_true(info.device_bytes > 0);
    b->ops->destroy(b);
    free(x);
    ims_graph_free(g);
}

/* normalize: rows have unit length and the direction of the reference. */
static void test_normalize(void **st) {
    (void)st;
    ims_graph *g = small_net();
    float *x = rnd(3 * 3 * 15 * 13, -2, 2), y[3 * 16];
    double ref[3 * 16];
    ref_small(ref, x, 3);
    for (int b = 0; b < 3; b++) {
        double s = 0;
        for (int j = 0; j < 16; j++) s += ref[b * 16 + j] * ref[b * 16 + j];
        for (int j = 0; j < 16; j++) ref[b * 16 + j] /= sqrt(s);
    }
    ims_err e;
    assert_int_equal(run_graph(g, IMGSIM_PREC_FP32, 4, 1, x, 3, y, &e), IMGSIM_OK);
    expect_close(y, ref, 3 * 16, 1e-5);
    free(x);
    ims_graph_free(g);
}

static int cpu_has_bf16(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5) && (strstr(line, " avx512_bf16") || strstr(line, " amx_bf16"))) found = 1;
    fclose(f);
    return found;
}

/* bf16: close to the fp32 reference (bf16 has 8 bits of mantissa); or refused cleanly. */
static void test_bf16(void **st) {
    (void)st;
    ims_graph *g = small_net();
    float *x = rnd(2 * 3 * 15 * 13, -2, 2), y[2 * 16];
    double ref[2 * 16];
    ref_small(ref, x, 2);
    ims_err e;
    imgsim_status s = run_graph(g, IMGSIM_PREC_BF16, 2, 0, x, 2, y, &e);
    if (cpu_has_bf16()) {
        if (s) print_error("%s\n", e.msg);
        assert_int_equal(s, IMGSIM_OK);
        expect_close(y, ref, 2 * 16, 2e-2);
    } else {
        assert_int_equal(s, IMGSIM_ERR_UNSUPPORTED);
        assert_non_null(strstr(e.msg, "bf16"));
    }
    free(x);
    ims_graph_free(g);
}

/* Refusals: a CUDA precision; a Gemm whose B is not a constant (the message names the node). */
static void test_refusals(void **st) {
    (void)st;
    ims_graph *g = small_net();
    float x[3 * 15 * 13] = {0}, y[16];
    ims_err e;
    assert_int_equal(run_graph(g, IMGSIM_PREC_FP16, 1, 0, x, 1, y, &e), IMGSIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "fp16"));
    ims_graph_free(g);

    g = new_graph(3, 7, 5);
    int f = act(g, "f", 2, DIMS(105)), o = act(g, "o", 2, DIMS(105));
    node(g, IS_OP_FLATTEN, "flat", 1, IN(g->input), f);
    node(g, IS_OP_GEMM, "fc_bad", 2, IN(f, f), o);
    set_output(g, o);
    float x2[105] = {0}, y2[105];
    assert_int_equal(run_graph(g, IMGSIM_PREC_FP32, 1, 0, x2, 1, y2, &e), IMGSIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "fc_bad"));
    ims_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_stride2_asym_pads),
        cmocka_unit_test(test_conv_dilation2_groups3),
        cmocka_unit_test(test_conv_depthwise_relu6),
        cmocka_unit_test(test_conv_rect_kernel),
        cmocka_unit_test(test_conv_residual_relu_inplace),
        cmocka_unit_test(test_conv_residual_relu_copied),
        cmocka_unit_test(test_conv_residual_is_src),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_eltwise),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_gap_flatten_gemm),
        cmocka_unit_test(test_reshape_matmul),
        cmocka_unit_test(test_concat_identity),
        cmocka_unit_test(test_partial_batches),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_refusals),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(sw1);
    free(sb1);
    free(sw2);
    free(sb2);
    return rc;
}
