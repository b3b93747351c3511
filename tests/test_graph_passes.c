/*
 * test_graph_passes.c: ims_graph_optimize and ims_graph_select_output.
 *
 * Numeric checks use a naive interpreter written here (textbook Conv with groups/strides/pads/
 * dilations, BatchNormalization as (x - mean) / sqrt(var + eps) * gamma + beta in double, Relu,
 * Clip, Add, Identity): the unoptimised graph, run op by op, is the reference for the optimised
 * graph with folded BN and fused bias/residual/activation. Tolerance: 1e-5 relative to the
 * output's magnitude.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "synth/model.h"

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define IN(...) ((const int[]){__VA_ARGS__})

/* ---- deterministic test data (an LCG, independent of imgsim's PRNG) ---- */

static uint32_t lcg_state = 12345u;
static float frand(float lo, float hi) {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(lcg_state >> 8) / 16777216.0f;
}

/* ---- builders ---- */

static ims_graph *new_graph(int64_t c, int64_t h, int64_t w) {
    ims_graph *g = NULL;
    assert_int_equal(ims_graph_new(&g, NULL), IMGSIM_OK);
    int64_t d[4] = {-1, c, h, w};
    g->input = ims_graph_add_value(g, "x", 4, d, NULL);
    assert_true(g->input >= 0);
    return g;
}

static int act(ims_graph *g, const char *name) {
    int v = ims_graph_add_value(g, name, 0, NULL, NULL);
    assert_true(v >= 0);
    return v;
}

/* A constant with values uniform in [lo, hi). */
static int rnd_const(ims_graph *g, const char *name, int rank, const int64_t *dims, float lo, float hi) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    float *buf = malloc((size_t)n * sizeof(float));
    assert_non_null(buf);
    for (int64_t i = 0; i < n; i++)
        buf[i] = frand(lo, hi);
    int v = ims_graph_add_value(g, name, rank, dims, buf);
    free(buf);
    assert_true(v >= 0);
    return v;
}

static ims_node *node(ims_graph *g, ims_op op, const char *name, int n_in, const int *in, int out) {
    ims_node *n = ims_graph_add_node(g, op, name, n_in, in, out);
    assert_non_null(n);
    return n;
}

/* BN over c channels with random statistics (var in [0.2, 2)). */
static ims_node *rnd_bn(ims_graph *g, const char *name, int x, int c, int out) {
    char nm[64];
    int p[4];
    const char *sfx[4] = {"gamma", "beta", "mean", "var"};
    for (int k = 0; k < 4; k++) {
        snprintf(nm, sizeof nm, "%s.%s", name, sfx[k]);
        p[k] = rnd_const(g, nm, 1, DIMS(c), k == 3 ? 0.2f : -1.5f, k == 3 ? 2.0f : 1.5f);
    }
    ims_node *n = node(g, IS_OP_BATCHNORM, name, 5, IN(x, p[0], p[1], p[2], p[3]), out);
    n->epsilon = 1e-3f;
    return n;
}

static int count_op(const ims_graph *g, ims_op op) {
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == op) c++;
    return c;
}

/* ---- a naive interpreter (batch nb, float32 storage, double accumulation) ---- */

static int64_t per_image(const ims_value *v) {
    int64_t n = 1;
    for (int i = 1; i < v->rank; i++)
        n *= v->dims[i];
    return n;
}

static float apply_act(const ims_node *n, double v) {
    if (n->act == IS_ACT_RELU) return (float)(v > 0 ? v : 0);
    if (n->act == IS_ACT_CLIP) return (float)(v < n->act_min ? n->act_min : v > n->act_max ? n->act_max : v);
    return (float)v;
}

/* y = act(conv(x, W) + b + residual): x [nb, C, H, W], W [OC, C/G, KH, KW], y [nb, OC, OH, OW]. */
static void ref_conv(const ims_graph *g, const ims_node *n, float **buf, int nb) {
    const ims_value *xv = &g->vals[n->in[0]], *wv = &g->vals[n->in[1]], *yv = &g->vals[n->out];
    const float *x = buf[n->in[0]], *w = wv->data;
    const float *b = (n->n_in > 2 && n->in[2] >= 0) ? g->vals[n->in[2]].data : NULL;
    const float *r = n->residual >= 0 ? buf[n->residual] : NULL;
    float *y = buf[n->out];
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3];
    int64_t OC = yv->dims[1], OH = yv->dims[2], OW = yv->dims[3];
    int64_t G = n->group, icg = C / G, ocg = OC / G, KH = wv->dims[2], KW = wv->dims[3];
    for (int i = 0; i < nb; i++)
        for (int64_t oc = 0; oc < OC; oc++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double s = b ? b[oc] : 0.0;
                    int64_t grp = oc / ocg;
                    for (int64_t ic = 0; ic < icg; ic++)
                        for (int64_t kh = 0; kh < KH; kh++)
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t ih = oh * n->stride[0] - n->pad[0] + kh * n->dilation[0];
                                int64_t iw = ow * n->stride[1] - n->pad[1] + kw * n->dilation[1];
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                s += (double)x[((i * C + grp * icg + ic) * H + ih) * W + iw] *
                                     w[((oc * icg + ic) * KH + kh) * KW + kw];
                            }
                    int64_t o = ((i * OC + oc) * OH + oh) * OW + ow;
                    if (r) s += r[o];
                    y[o] = apply_act(n, s);
                }
}

/* MaxPool: x [nb, C, H, W] -> y [nb, C, OH, OW]; padding never wins the max. */
static void ref_maxpool(const ims_graph *g, const ims_node *n, float **buf, int nb) {
    const ims_value *xv = &g->vals[n->in[0]], *yv = &g->vals[n->out];
    const float *x = buf[n->in[0]];
    float *y = buf[n->out];
    int64_t C = xv->dims[1], H = xv->dims[2], W = xv->dims[3], OH = yv->dims[2], OW = yv->dims[3];
    for (int64_t i = 0; i < nb * C; i++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float m = -INFINITY;
                for (int64_t kh = 0; kh < n->kernel[0]; kh++)
                    for (int64_t kw = 0; kw < n->kernel[1]; kw++) {
                        int64_t ih = oh * n->stride[0] - n->pad[0] + kh * n->dilation[0];
                        int64_t iw = ow * n->stride[1] - n->pad[1] + kw * n->dilation[1];
                        if (ih >= 0 && ih < H && iw >= 0 && iw < W && x[(i * H + ih) * W + iw] > m)
                            m = x[(i * H + ih) * W + iw];
                    }
                y[(i * OH + oh) * OW + ow] = m;
            }
}

/* Runs g on input x [nb, ...]; returns a malloc'ed copy of the output [nb, dim]. */
static float *run_naive(const ims_graph *g, const float *x, int nb) {
    float **buf = calloc((size_t)g->n_vals, sizeof(float *));
    assert_non_null(buf);
    int64_t nin = per_image(&g->vals[g->input]) * nb;
    buf[g->input] = malloc((size_t)nin * sizeof(float));
    memcpy(buf[g->input], x, (size_t)nin * sizeof(float));
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        const ims_value *yv = &g->vals[n->out];
        int64_t ny = per_image(yv) * nb;
        buf[n->out] = malloc((size_t)ny * sizeof(float));
        float *y = buf[n->out];
        const float *a = buf[n->in[0]];
        switch (n->op) {
        case IS_OP_CONV:
            ref_conv(g, n, buf, nb);
            break;
        case IS_OP_BATCHNORM: {
            const ims_value *xv = &g->vals[n->in[0]];
            int64_t C = xv->dims[1], hw = per_image(xv) / C;
            const float *ga = g->vals[n->in[1]].data, *be = g->vals[n->in[2]].data;
            const float *me = g->vals[n->in[3]].data, *va = g->vals[n->in[4]].data;
            for (int64_t j = 0; j < ny; j++) {
                int64_t c = (j / hw) % C;
                y[j] = (float)(((double)a[j] - me[c]) / sqrt((double)va[c] + n->epsilon) * ga[c] + be[c]);
            }
            break;
        }
        case IS_OP_RELU:
            for (int64_t j = 0; j < ny; j++)
                y[j] = a[j] > 0 ? a[j] : 0;
            break;
        case IS_OP_CLIP:
            for (int64_t j = 0; j < ny; j++)
                y[j] = a[j] < n->clip_min ? n->clip_min : a[j] > n->clip_max ? n->clip_max : a[j];
            break;
        case IS_OP_ADD: {
            const float *b = buf[n->in[1]];
            assert_true(per_image(&g->vals[n->in[0]]) * nb == ny && per_image(&g->vals[n->in[1]]) * nb == ny);
            for (int64_t j = 0; j < ny; j++)
                y[j] = a[j] + b[j];
            break;
        }
        case IS_OP_IDENTITY:
        case IS_OP_FLATTEN:
            memcpy(y, a, (size_t)ny * sizeof(float));
            break;
        case IS_OP_MAXPOOL:
            ref_maxpool(g, n, buf, nb);
            break;
        case IS_OP_GLOBALAVGPOOL: {
            int64_t hw = per_image(&g->vals[n->in[0]]) / g->vals[n->in[0]].dims[1];
            for (int64_t j = 0; j < ny; j++) {
                double s = 0;
                for (int64_t k = 0; k < hw; k++)
                    s += a[j * hw + k];
                y[j] = (float)(s / (double)hw);
            }
            break;
        }
        case IS_OP_GEMM: { /* y [nb, M] = a [nb, K] * B^T ([M, K]) + C [M] */
            const ims_value *bv = &g->vals[n->in[1]];
            assert_true(n->trans_b);
            int64_t M = bv->dims[0], K = bv->dims[1];
            const float *cv = n->n_in > 2 && n->in[2] >= 0 ? g->vals[n->in[2]].data : NULL;
            for (int i = 0; i < nb; i++)
                for (int64_t m = 0; m < M; m++) {
                    double s = cv ? cv[m] : 0.0;
                    for (int64_t k = 0; k < K; k++)
                        s += (double)a[i * K + k] * bv->data[m * K + k];
                    y[i * M + m] = (float)s;
                }
            break;
        }
        default:
            fail_msg("naive interpreter: op %s", ims_op_name(n->op));
        }
    }
    int64_t no = per_image(&g->vals[g->output]) * nb;
    float *out = malloc((size_t)no * sizeof(float));
    memcpy(out, buf[g->output], (size_t)no * sizeof(float));
    for (int v = 0; v < g->n_vals; v++)
        free(buf[v]);
    free(buf);
    return out;
}

/* A deep copy of a graph (values with data, nodes), so both versions can run. */
static ims_graph *clone(const ims_graph *g) {
    ims_graph *c = NULL;
    assert_int_equal(ims_graph_new(&c, NULL), IMGSIM_OK);
    for (int v = 0; v < g->n_vals; v++)
        assert_int_equal(
            ims_graph_add_value(c, g->vals[v].name, g->vals[v].rank, g->vals[v].dims, g->vals[v].data), v);
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *n = &g->nodes[i];
        ims_node *m = ims_graph_add_node(c, n->op, n->name, n->n_in, n->in, n->out);
        assert_non_null(m);
        char *name = m->name;
        *m = *n;
        m->name = name;
    }
    c->input = g->input;
    c->output = g->output;
    assert_int_equal(ims_graph_link(c, NULL), IMGSIM_OK);
    assert_int_equal(ims_graph_infer_shapes(c, NULL), IMGSIM_OK);
    return c;
}

/* Optimises a copy of g and checks that it computes what g computes on random input. */
static ims_graph *optimize_and_compare_tol(ims_graph *g, int nb, double tol) {
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_OK);
    ims_graph *o = clone(g);
    if (ims_graph_optimize(o, &e) != IMGSIM_OK) fail_msg("optimize: %s", e.msg);
    int64_t nin = per_image(&g->vals[g->input]) * nb;
    float *x = malloc((size_t)nin * sizeof(float));
    for (int64_t i = 0; i < nin; i++)
        x[i] = frand(-2.0f, 2.0f);
    float *ref = run_naive(g, x, nb), *got = run_naive(o, x, nb);
    int64_t no = per_image(&g->vals[g->output]) * nb;
    assert_int_equal(per_image(&o->vals[o->output]) * nb, no);
    double mag = 1.0;
    for (int64_t i = 0; i < no; i++)
        mag = fmax(mag, fabs(ref[i]));
    double worst = 0;
    for (int64_t i = 0; i < no; i++)
        worst = fmax(worst, fabs((double)ref[i] - got[i]) / mag);
    print_message("optimised vs reference: max |diff| / scale = %.3g (tolerance %.1g)\n", worst, tol);
    for (int64_t i = 0; i < no; i++)
        if (fabs((double)ref[i] - got[i]) > tol * mag)
            fail_msg("output %lld: optimised %.9g vs reference %.9g (scale %g)", (long long)i, got[i], ref[i],
                     mag);
    free(x);
    free(ref);
    free(got);
    return o;
}

static ims_graph *optimize_and_compare(ims_graph *g, int nb) {
    return optimize_and_compare_tol(g, nb, 1e-5);
}

/* ---- BN folding and fusion, numerically ---- */

static void test_fold_bn_conv_bias_relu(void **state) {
    (void)state;
    /* x [N, 3, 7, 6] -> Conv 3x3 pad 1 stride 2 with bias -> BN -> Relu */
    ims_graph *g = new_graph(3, 7, 6);
    int w = rnd_const(g, "w", 4, DIMS(5, 3, 3, 3), -0.5f, 0.5f),
        b = rnd_const(g, "b", 1, DIMS(5), -1.0f, 1.0f);
    int c = act(g, "c"), y = act(g, "y"), r = act(g, "r");
    ims_node *n = node(g, IS_OP_CONV, "conv", 3, IN(g->input, w, b), c);
    for (int i = 0; i < 4; i++)
        n->pad[i] = 1;
    n->stride[0] = n->stride[1] = 2;
    rnd_bn(g, "bn", c, 5, y);
    node(g, IS_OP_RELU, "relu", 1, IN(y), r);
    g->output = r;
    ims_graph *o = optimize_and_compare(g, 2);
    assert_int_equal(o->n_nodes, 1);
    assert_int_equal(o->nodes[0].op, IS_OP_CONV);
    assert_int_equal(o->nodes[0].act, IS_ACT_RELU);
    assert_string_equal(o->vals[o->output].name, "r");
    ims_graph_free(o);
    ims_graph_free(g);
}

static void test_fold_bn_grouped_dilated_no_bias_clip(void **state) {
    (void)state;
    /* x [N, 4, 9, 8] -> Conv 3x3 group 2 dilation 2 pad 2, no bias -> BN -> Clip(0, 6) */
    ims_graph *g = new_graph(4, 9, 8);
    int w = rnd_const(g, "w", 4, DIMS(6, 2, 3, 3), -0.5f, 0.5f);
    int c = act(g, "c"), y = act(g, "y"), r = act(g, "r");
    ims_node *n = node(g, IS_OP_CONV, "conv", 2, IN(g->input, w), c);
    n->group = 2;
    n->dilation[0] = n->dilation[1] = 2;
    for (int i = 0; i < 4; i++)
        n->pad[i] = 2;
    rnd_bn(g, "bn", c, 6, y);
    ims_node *cl = node(g, IS_OP_CLIP, "relu6", 1, IN(y), r);
    cl->clip_min = 0.0f;
    cl->clip_max = 0.75f; /* low enough that the clip bites */
    g->output = r;
    ims_graph *o = optimize_and_compare(g, 2);
    assert_int_equal(o->n_nodes, 1);
    assert_int_equal(o->nodes[0].act, IS_ACT_CLIP);
    assert_true(o->nodes[0].n_in == 3 && o->nodes[0].in[2] >= 0); /* a bias was created */
    ims_graph_free(o);
    ims_graph_free(g);
}

static void test_fold_shared_weights(void **state) {
    (void)state;
    /* two convs share one weight, each with its own BN: folding must not fold twice into it */
    ims_graph *g = new_graph(3, 5, 5);
    int w = rnd_const(g, "w", 4, DIMS(3, 3, 3, 3), -0.5f, 0.5f);
    int c1 = act(g, "c1"), c2 = act(g, "c2"), y1 = act(g, "y1"), y2 = act(g, "y2"), s = act(g, "s");
    node(g, IS_OP_CONV, "conv1", 2, IN(g->input, w), c1)->pad[0] = 1;
    rnd_bn(g, "bn1", c1, 3, y1);
    node(g, IS_OP_CONV, "conv2", 2, IN(y1, w), c2)->pad[2] = 1;
    rnd_bn(g, "bn2", c2, 3, y2);
    node(g, IS_OP_ADD, "sum", 2, IN(y2, y2), s);
    g->output = s;
    ims_graph *o = optimize_and_compare(g, 2);
    assert_int_equal(count_op(o, IS_OP_BATCHNORM), 0);
    assert_int_equal(count_op(o, IS_OP_CONV), 2);
    assert_true(o->nodes[0].in[1] != o->nodes[1].in[1]);
    ims_graph_free(o);
    ims_graph_free(g);
}

static void test_residual_fusion_numeric(void **state) {
    (void)state;
    /* x [N, 4, 6, 5]:
     *   a = relu(bnA(convA(x)));  b = bnB(convB(a));  d = bnD(convD(x))   (convD after convB)
     *   out = relu(b + d);  out2 = relu(x + bnE(convE(out)))  (the skip is the graph input)      */
    ims_graph *g = new_graph(4, 6, 5);
    int wa = rnd_const(g, "wa", 4, DIMS(4, 4, 3, 3), -0.4f, 0.4f);
    int wb = rnd_const(g, "wb", 4, DIMS(4, 2, 3, 3), -0.4f, 0.4f);
    int wd = rnd_const(g, "wd", 4, DIMS(4, 4, 1, 1), -0.4f, 0.4f);
    int we = rnd_const(g, "we", 4, DIMS(4, 4, 3, 3), -0.4f, 0.4f);
    int ca = act(g, "ca"), ba = act(g, "ba"), ra = act(g, "ra"), cb = act(g, "cb"), bb = act(g, "bb");
    int cd = act(g, "cd"), bd = act(g, "bd"), s = act(g, "s"), out = act(g, "out");
    int ce = act(g, "ce"), be = act(g, "be"), s2 = act(g, "s2"), out2 = act(g, "out2");
    ims_node *n = node(g, IS_OP_CONV, "convA", 2, IN(g->input, wa), ca);
    for (int i = 0; i < 4; i++)
        n->pad[i] = 1;
    rnd_bn(g, "bnA", ca, 4, ba);
    node(g, IS_OP_RELU, "reluA", 1, IN(ba), ra);
    n = node(g, IS_OP_CONV, "convB", 2, IN(ra, wb), cb);
    n->group = 2;
    for (int i = 0; i < 4; i++)
        n->pad[i] = 1;
    rnd_bn(g, "bnB", cb, 4, bb);
    node(g, IS_OP_CONV, "convD", 2, IN(g->input, wd), cd);
    rnd_bn(g, "bnD", cd, 4, bd);
    node(g, IS_OP_ADD, "add", 2, IN(bb, bd), s);
    node(g, IS_OP_RELU, "relu", 1, IN(s), out);
    n = node(g, IS_OP_CONV, "convE", 2, IN(out, we), ce);
    for (int i = 0; i < 4; i++)
        n->pad[i] = 1;
    rnd_bn(g, "bnE", ce, 4, be);
    node(g, IS_OP_ADD, "add2", 2, IN(g->input, be), s2);
    node(g, IS_OP_RELU, "relu2", 1, IN(s2), out2);
    g->output = out2;
    ims_graph *o = optimize_and_compare(g, 2);
    assert_int_equal(o->n_nodes, 4);
    assert_int_equal(count_op(o, IS_OP_CONV), 4);
    /* convD (later) took the first Add with convB's output as its residual; convE the second */
    int d = -1, e2 = -1;
    for (int i = 0; i < o->n_nodes; i++) {
        if (!strcmp(o->nodes[i].name, "convD")) d = i;
        if (!strcmp(o->nodes[i].name, "convE")) e2 = i;
    }
    assert_true(d >= 0 && e2 >= 0);
    assert_true(o->nodes[d].residual >= 0);
    assert_int_equal(o->nodes[d].act, IS_ACT_RELU);
    assert_string_equal(o->vals[o->nodes[d].out].name, "out");
    assert_int_equal(o->nodes[e2].residual, o->input);
    ims_graph_free(o);
    ims_graph_free(g);
}

static void test_residual_needs_reordering(void **state) {
    (void)state;
    /* Add(conv1_out, relu_out) where the Relu branch is listed after conv1: conv1 takes the Add and
     * must be moved behind the Relu so its residual exists when it runs. */
    ims_graph *g = new_graph(2, 4, 4);
    int w1 = rnd_const(g, "w1", 4, DIMS(2, 2, 1, 1), -1.0f, 1.0f);
    int w2 = rnd_const(g, "w2", 4, DIMS(2, 2, 1, 1), -1.0f, 1.0f);
    int c1 = act(g, "c1"), c2 = act(g, "c2"), m = act(g, "m"), r = act(g, "r"), s = act(g, "s");
    node(g, IS_OP_CONV, "conv1", 2, IN(g->input, w1), c1);
    node(g, IS_OP_CONV, "conv2", 2, IN(g->input, w2), c2);
    node(g, IS_OP_ADD, "mix", 2, IN(c2, c2), m); /* conv2's output read twice: not fusable */
    node(g, IS_OP_RELU, "relu", 1, IN(m), r);
    node(g, IS_OP_ADD, "add", 2, IN(c1, r), s);
    g->output = s;
    ims_graph *o = optimize_and_compare(g, 3);
    int i1 = -1, ir = -1;
    for (int i = 0; i < o->n_nodes; i++) {
        if (!strcmp(o->nodes[i].name, "conv1")) i1 = i;
        if (!strcmp(o->nodes[i].name, "relu")) ir = i;
    }
    assert_true(i1 >= 0 && ir >= 0);
    assert_true(o->nodes[i1].residual >= 0);
    assert_true(ir < i1);
    ims_graph_free(o);
    ims_graph_free(g);
}

static void test_chains(void **state) {
    (void)state;
    /* x -> Identity -> Identity -> Conv -> BN -> BN -> Relu -> Clip -> Identity (output):
     * both BNs fold (one pass), Relu fuses, Clip stays (the Conv already has an act), the
     * Identities vanish and the output becomes the Clip's. */
    ims_graph *g = new_graph(3, 5, 4);
    int w = rnd_const(g, "w", 4, DIMS(4, 3, 3, 3), -0.5f, 0.5f);
    int i1 = act(g, "i1"), i2 = act(g, "i2"), c = act(g, "c"), y1 = act(g, "y1"), y2 = act(g, "y2");
    int r = act(g, "r"), cl = act(g, "cl"), i3 = act(g, "i3");
    node(g, IS_OP_IDENTITY, "id1", 1, IN(g->input), i1);
    node(g, IS_OP_IDENTITY, "id2", 1, IN(i1), i2);
    ims_node *n = node(g, IS_OP_CONV, "conv", 2, IN(i2, w), c);
    for (int i = 0; i < 4; i++)
        n->pad[i] = 1;
    rnd_bn(g, "bn1", c, 4, y1);
    rnd_bn(g, "bn2", y1, 4, y2);
    node(g, IS_OP_RELU, "relu", 1, IN(y2), r);
    n = node(g, IS_OP_CLIP, "clip", 1, IN(r), cl);
    n->clip_min = 0.1f;
    n->clip_max = 0.8f;
    node(g, IS_OP_IDENTITY, "id3", 1, IN(cl), i3);
    g->output = i3;
    ims_graph *o = optimize_and_compare(g, 2);
    assert_int_equal(o->n_nodes, 2);
    assert_int_equal(o->nodes[0].op, IS_OP_CONV);
    assert_int_equal(o->nodes[0].act, IS_ACT_RELU);
    assert_int_equal(o->nodes[0].in[0], o->input);
    assert_int_equal(o->nodes[1].op, IS_OP_CLIP);
    assert_string_equal(o->vals[o->output].name, "cl");
    ims_graph_free(o);
    ims_graph_free(g);
}

static void test_unfusable_cases_stay(void **state) {
    (void)state;
    /* BN after a Relu (not a Conv) stays; a Conv whose output is also read elsewhere keeps its BN;
     * Identity disappears. */
    ims_graph *g = new_graph(3, 4, 4);
    int w = rnd_const(g, "w", 4, DIMS(3, 3, 1, 1), -1.0f, 1.0f);
    int r = act(g, "r"), id = act(g, "id"), y = act(g, "y"), c = act(g, "c"), y2 = act(g, "y2"),
        s = act(g, "s");
    node(g, IS_OP_RELU, "relu", 1, IN(g->input), r);
    node(g, IS_OP_IDENTITY, "ident", 1, IN(r), id);
    rnd_bn(g, "bn_alone", id, 3, y);
    node(g, IS_OP_CONV, "conv", 2, IN(y, w), c);
    rnd_bn(g, "bn_shared", c, 3, y2);
    node(g, IS_OP_ADD, "add", 2, IN(y2, c), s); /* c is read twice */
    g->output = s;
    ims_graph *o = optimize_and_compare(g, 2);
    assert_int_equal(count_op(o, IS_OP_IDENTITY), 0);
    assert_int_equal(count_op(o, IS_OP_BATCHNORM), 2);
    assert_int_equal(count_op(o, IS_OP_ADD), 1);
    assert_int_equal(o->n_nodes, 5);
    ims_graph_free(o);
    ims_graph_free(g);
}

static void test_selected_conv_output_not_fused(void **state) {
    (void)state;
    /* The chosen layer is the Conv's raw output: BN and Relu after it are dropped, not folded. */
    ims_graph *g = new_graph(3, 4, 4);
    int w = rnd_const(g, "w", 4, DIMS(3, 3, 1, 1), -1.0f, 1.0f);
    int c = act(g, "c"), y = act(g, "y"), r = act(g, "r");
    node(g, IS_OP_CONV, "conv", 2, IN(g->input, w), c);
    rnd_bn(g, "bn", c, 3, y);
    node(g, IS_OP_RELU, "relu", 1, IN(y), r);
    g->output = r;
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_select_output(g, "c", &e), IMGSIM_OK);
    ims_graph *o = optimize_and_compare(g, 2);
    assert_int_equal(o->n_nodes, 1);
    assert_int_equal(o->nodes[0].act, IS_ACT_NONE);
    assert_string_equal(o->vals[o->output].name, "c");
    ims_graph_free(o);
    ims_graph_free(g);
}

/* ---- select_output ---- */

static void test_select_classifier_head(void **state) {
    (void)state;
    /* x -> Relu -> GAP -> Flatten -> Identity -> Gemm: the default is the Flatten's output; with
     * MatMul + Add instead of Gemm, the same; with a Relu after the Gemm, the graph output. (MLP
     * heads: test_select_mlp_head.) */
    for (int variant = 0; variant < 3; variant++) {
        ims_graph *g = new_graph(6, 3, 3);
        int r = act(g, "r"), p = act(g, "p"), f = act(g, "f"), i = act(g, "fi"), y = act(g, "logits");
        node(g, IS_OP_RELU, "relu", 1, IN(g->input), r);
        node(g, IS_OP_GLOBALAVGPOOL, "gap", 1, IN(r), p);
        node(g, IS_OP_FLATTEN, "flat", 1, IN(p), f);
        node(g, IS_OP_IDENTITY, "dropout", 1, IN(f), i);
        if (variant == 1) {
            int m = rnd_const(g, "m", 2, DIMS(6, 10), -1, 1), bias = rnd_const(g, "bias", 1, DIMS(10), -1, 1);
            int mm = act(g, "mm");
            node(g, IS_OP_MATMUL, "matmul", 2, IN(i, m), mm);
            node(g, IS_OP_ADD, "bias_add", 2, IN(bias, mm), y);
        } else {
            int wt = rnd_const(g, "fc.weight", 2, DIMS(10, 6), -1, 1);
            node(g, IS_OP_GEMM, "fc", 2, IN(i, wt), y)->trans_b = 1;
        }
        int final = y;
        if (variant == 2) {
            final = act(g, "post");
            node(g, IS_OP_RELU, "post_relu", 1, IN(y), final);
        }
        g->output = final;
        ims_err e;
        assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
        assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_OK);
        assert_int_equal(ims_graph_select_output(g, NULL, &e), IMGSIM_OK);
        if (variant == 2) {
            assert_int_equal(g->output, final);
            assert_int_equal(g->dim, 10);
        } else {
            assert_int_equal(g->output, f); /* through the Identity (Dropout) to the Flatten */
            assert_int_equal(g->dim, 6);
            assert_int_equal(ims_graph_optimize(g, &e), IMGSIM_OK);
            /* the head and the Identity are gone; the output is the Flatten's */
            assert_int_equal(count_op(g, IS_OP_GEMM) + count_op(g, IS_OP_MATMUL) + count_op(g, IS_OP_ADD), 0);
            assert_int_equal(count_op(g, IS_OP_IDENTITY), 0);
            assert_string_equal(g->vals[g->output].name, "f");
            assert_int_equal(g->dim, 6);
            assert_int_equal(g->n_nodes, 3);
            assert_int_equal(ims_graph_find_value(g, "fc.weight"), -1); /* unused weights dropped */
        }
        ims_graph_free(g);
    }
}

/* An MLP head, as in VGG/AlexNet: GAP -> Flatten -> Gemm -> Relu -> Identity (Dropout) -> Gemm:
 * the default is the last hidden activation (the Relu's output, through the Identity), not the
 * logits; the last Gemm is removed. */
static void test_select_mlp_head(void **state) {
    (void)state;
    ims_graph *g = new_graph(6, 3, 3);
    int r = act(g, "r"), p = act(g, "p"), f = act(g, "f"), h = act(g, "h"), hr = act(g, "hr"), d = act(g, "hd");
    int y = act(g, "logits");
    node(g, IS_OP_RELU, "relu", 1, IN(g->input), r);
    node(g, IS_OP_GLOBALAVGPOOL, "gap", 1, IN(r), p);
    node(g, IS_OP_FLATTEN, "flat", 1, IN(p), f);
    int w1 = rnd_const(g, "fc1.weight", 2, DIMS(8, 6), -1, 1), w2 = rnd_const(g, "fc2.weight", 2, DIMS(10, 8), -1, 1);
    node(g, IS_OP_GEMM, "fc1", 2, IN(f, w1), h)->trans_b = 1;
    node(g, IS_OP_RELU, "fc1_relu", 1, IN(h), hr);
    node(g, IS_OP_IDENTITY, "dropout", 1, IN(hr), d);
    node(g, IS_OP_GEMM, "fc2", 2, IN(d, w2), y)->trans_b = 1;
    g->output = y;
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_select_output(g, NULL, &e), IMGSIM_OK);
    assert_int_equal(g->output, hr);
    assert_int_equal(g->dim, 8);
    assert_int_equal(ims_graph_optimize(g, &e), IMGSIM_OK);
    assert_int_equal(count_op(g, IS_OP_GEMM), 1);
    assert_int_equal(ims_graph_find_value(g, "fc2.weight"), -1);
    assert_int_equal(g->dim, 8);
    ims_graph_free(g);
}

static void test_select_named_and_unknown(void **state) {
    (void)state;
    ims_graph *g = new_graph(6, 3, 3);
    int w = rnd_const(g, "w", 4, DIMS(4, 6, 1, 1), -1, 1);
    int c = act(g, "c"), r = act(g, "r");
    node(g, IS_OP_CONV, "conv", 2, IN(g->input, w), c);
    node(g, IS_OP_RELU, "relu", 1, IN(c), r);
    g->output = r;
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_select_output(g, "c", &e), IMGSIM_OK);
    assert_int_equal(g->output, c);
    assert_int_equal(g->dim, 4 * 3 * 3);
    assert_int_equal(ims_graph_select_output(g, "nope", &e), IMGSIM_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "unknown layer 'nope'"));
    assert_non_null(strstr(e.msg, "'r'"));
    assert_non_null(strstr(e.msg, "'c'"));
    assert_int_equal(ims_graph_select_output(g, "w", &e), IMGSIM_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "constant"));
    assert_int_equal(ims_graph_select_output(g, "x", &e), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(g->output, c); /* unchanged by the failures */
    ims_graph_free(g);
}

/* ---- the ResNet builder ---- */

static double sample_std(const float *x, int64_t n, double *mean) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++)
        s2 += (x[i] - *mean) * (x[i] - *mean);
    return sqrt(s2 / (double)n);
}

static void check_resnet(const char *arch, int64_t dim, int convs, int blocks) {
    ims_graph *g = NULL;
    ims_err e;
    if (ims_graph_build_resnet(&g, arch, 7, &e) != IMGSIM_OK) fail_msg("%s: %s", arch, e.msg);
    /* the full model: [N, 3, 224, 224] -> [N, 1000] */
    assert_int_equal(g->in_c, 3);
    assert_int_equal(g->in_h, 224);
    assert_string_equal(g->vals[g->input].name, "input");
    assert_string_equal(g->vals[g->output].name, "output");
    assert_int_equal(g->vals[g->output].dims[1], 1000);
    assert_int_equal(count_op(g, IS_OP_BATCHNORM), convs);
    assert_int_equal(count_op(g, IS_OP_ADD), blocks);

    /* torchvision's init: conv1 ~ N(0, 2 / (64 * 7 * 7)); fc ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    int w1 = ims_graph_find_value(g, "conv1.weight"), fc = ims_graph_find_value(g, "fc.weight");
    assert_true(w1 >= 0 && fc >= 0);
    double mean, sd = sample_std(g->vals[w1].data, ims_value_numel(&g->vals[w1]), &mean);
    double want = sqrt(2.0 / (64 * 49));
    assert_true(fabs(sd / want - 1.0) < 0.03); /* 9408 samples: the std's error is ~0.7% */
    assert_true(fabs(mean) < 4 * want / sqrt(9408.0));
    int64_t nfc = ims_value_numel(&g->vals[fc]);
    double bound = 1.0 / sqrt((double)dim);
    sd = sample_std(g->vals[fc].data, nfc, &mean);
    assert_true(fabs(sd / (bound / sqrt(3.0)) - 1.0) < 0.01);
    for (int64_t i = 0; i < nfc; i++)
        assert_true(fabs(g->vals[fc].data[i]) <= bound);

    /* default layer = the pooled features, then the optimised graph */
    assert_int_equal(ims_graph_select_output(g, NULL, &e), IMGSIM_OK);
    assert_int_equal(g->dim, dim);
    assert_string_equal(g->vals[g->output].name, "/Flatten_output_0");
    if (ims_graph_optimize(g, &e) != IMGSIM_OK) fail_msg("%s optimize: %s", arch, e.msg);
    assert_int_equal(g->dim, dim);
    assert_int_equal(count_op(g, IS_OP_BATCHNORM), 0);
    assert_int_equal(count_op(g, IS_OP_RELU), 0);
    assert_int_equal(count_op(g, IS_OP_ADD), 0);
    assert_int_equal(count_op(g, IS_OP_GEMM), 0);
    assert_int_equal(count_op(g, IS_OP_CONV), convs);
    assert_int_equal(g->n_nodes, convs + 3); /* + MaxPool, GlobalAveragePool, Flatten */
    int residuals = 0, with_bias = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != IS_OP_CONV) continue;
        if (g->nodes[i].residual >= 0) {
            residuals++;
            assert_int_equal(g->nodes[i].act, IS_ACT_RELU);
        }
        if (g->nodes[i].n_in == 3 && g->nodes[i].in[2] >= 0) with_bias++;
    }
    assert_int_equal(residuals, blocks);
    assert_int_equal(with_bias, convs);
    assert_int_equal(g->vals[g->output].rank, 2);
    assert_int_equal(g->vals[g->output].dims[1], dim);
    ims_graph_free(g);
}

static void test_resnet18(void **state) {
    (void)state;
    check_resnet("resnet18", 512, 20, 8);
}

static void test_resnet50(void **state) {
    (void)state;
    check_resnet("resnet50", 2048, 53, 16);
}

static void test_resnet_seeds_and_layers(void **state) {
    (void)state;
    ims_graph *a = NULL, *b = NULL, *c = NULL;
    ims_err e;
    assert_int_equal(ims_graph_build_resnet(&a, "resnet18", 1, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_build_resnet(&b, "resnet18", 1, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_build_resnet(&c, "resnet18", 2, &e), IMGSIM_OK);
    assert_int_equal(a->n_vals, b->n_vals);
    int64_t differ = 0;
    for (int v = 0; v < a->n_vals; v++) {
        if (!a->vals[v].data) continue;
        int64_t n = ims_value_numel(&a->vals[v]);
        assert_memory_equal(a->vals[v].data, b->vals[v].data, (size_t)n * sizeof(float));
        if (memcmp(a->vals[v].data, c->vals[v].data, (size_t)n * sizeof(float))) differ++;
    }
    assert_int_equal(differ, 21); /* 20 conv weights + fc weight; BN parameters and fc bias are fixed */

    /* a named layer inside layer3: layer4 and the head go away */
    const char *layer = "/layer3/layer3.1/relu_1/Relu_output_0";
    assert_int_equal(ims_graph_select_output(a, layer, &e), IMGSIM_OK);
    assert_int_equal(a->dim, 256 * 14 * 14);
    assert_int_equal(ims_graph_optimize(a, &e), IMGSIM_OK);
    assert_string_equal(a->vals[a->output].name, layer);
    assert_int_equal(a->dim, 256 * 14 * 14);
    assert_int_equal(count_op(a, IS_OP_GLOBALAVGPOOL), 0);
    assert_int_equal(count_op(a, IS_OP_CONV),
                     1 + 4 + (4 + 1) + (4 + 1)); /* stem, layer1, layer2/3 with downsample */
    assert_int_equal(ims_graph_select_output(b, "layer3.1.relu", &e), IMGSIM_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "'output'"));
    ims_graph *bad = a;
    assert_int_equal(ims_graph_build_resnet(&bad, "resnet19", 1, &e), IMGSIM_ERR_INVALID_ARG);
    assert_null(bad);
    ims_graph_free(a);
    ims_graph_free(b);
    ims_graph_free(c);
}

/* ResNet-18 at 64x64 with random BN statistics: the optimised graph (20 fused Convs) computes the
 * same features as the unoptimised one (BN, Relu, Add nodes) in the naive interpreter, within
 * 1e-5 of the features' scale (measured: about 1e-7). */
static void test_resnet18_optimised_equals_reference(void **state) {
    (void)state;
    ims_graph *g = NULL;
    ims_err e;
    assert_int_equal(ims_graph_build_resnet(&g, "resnet18", 11, &e), IMGSIM_OK);
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *n = &g->nodes[i];
        if (n->op != IS_OP_BATCHNORM) continue;
        int64_t c = g->vals[n->in[1]].dims[0];
        for (int64_t k = 0; k < c; k++) {
            g->vals[n->in[1]].data[k] = frand(0.5f, 1.5f);  /* gamma */
            g->vals[n->in[2]].data[k] = frand(-0.5f, 0.5f); /* beta */
            g->vals[n->in[3]].data[k] = frand(-0.5f, 0.5f); /* mean */
            g->vals[n->in[4]].data[k] = frand(0.5f, 1.5f);  /* var */
        }
    }
    g->vals[g->input].dims[2] = g->vals[g->input].dims[3] = 64;
    assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_select_output(g, NULL, &e), IMGSIM_OK);
    assert_int_equal(g->dim, 512);
    ims_graph *o = optimize_and_compare(g, 2);
    assert_int_equal(o->n_nodes, 23);
    ims_graph_free(o);
    ims_graph_free(g);
}

/* ---- allocation failures ---- */

/* The residual test graph again (smaller), for fault injection. */
static ims_graph *small_block(void) {
    ims_graph *g = new_graph(2, 4, 4);
    int wa = rnd_const(g, "wa", 4, DIMS(2, 2, 3, 3), -0.4f, 0.4f);
    int wd = rnd_const(g, "wd", 4, DIMS(2, 2, 1, 1), -0.4f, 0.4f);
    int ca = act(g, "ca"), ba = act(g, "ba"), cd = act(g, "cd"), bd = act(g, "bd"), s = act(g, "s"),
        o = act(g, "o");
    int id = act(g, "id");
    node(g, IS_OP_IDENTITY, "ident", 1, IN(g->input), id);
    ims_node *n = node(g, IS_OP_CONV, "convA", 2, IN(id, wa), ca);
    for (int i = 0; i < 4; i++)
        n->pad[i] = 1;
    rnd_bn(g, "bnA", ca, 2, ba);
    node(g, IS_OP_CONV, "convD", 2, IN(g->input, wd), cd);
    node(g, IS_OP_CONV, "convD2", 2, IN(g->input, wd), act(g, "unused")); /* shares wd, then dead */
    rnd_bn(g, "bnD", cd, 2, bd);
    node(g, IS_OP_ADD, "add", 2, IN(ba, bd), s);
    node(g, IS_OP_RELU, "relu", 1, IN(s), o);
    g->output = o;
    return g;
}

/* Every allocation inside link + shapes + optimize fails in turn: each run returns NOMEM (or
 * succeeds once the budget suffices) and leaks nothing (ASan checks), and the graph can still be
 * freed. */
static void test_allocation_failures(void **state) {
    (void)state;
    int ok = 0;
    for (long k = 0; k < 400 && !ok; k++) {
        ims_graph *g = small_block();
        ims_err e;
        ims_alloc_fail_after(k);
        imgsim_status st = ims_graph_link(g, &e);
        if (st == IMGSIM_OK) st = ims_graph_infer_shapes(g, &e);
        if (st == IMGSIM_OK) st = ims_graph_optimize(g, &e);
        ims_alloc_fail_after(-1);
        if (st == IMGSIM_OK) {
            ok = 1;
            assert_int_equal(g->n_nodes, 2);
        } else {
            assert_int_equal(st, IMGSIM_ERR_NOMEM);
        }
        ims_graph_free(g);
    }
    assert_true(ok);
    /* the builder at a few failure points */
    static const long points[] = {0, 1, 3, 10, 57, 150, 301};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        ims_graph *g = (ims_graph *)1;
        ims_err e;
        ims_alloc_fail_after(points[i]);
        imgsim_status st = ims_graph_build_resnet(&g, "resnet18", 3, &e);
        ims_alloc_fail_after(-1);
        assert_int_equal(st, IMGSIM_ERR_NOMEM);
        assert_null(g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_bn_conv_bias_relu),
        cmocka_unit_test(test_fold_bn_grouped_dilated_no_bias_clip),
        cmocka_unit_test(test_fold_shared_weights),
        cmocka_unit_test(test_residual_fusion_numeric),
        cmocka_unit_test(test_residual_needs_reordering),
        cmocka_unit_test(test_chains),
        cmocka_unit_test(test_unfusable_cases_stay),
        cmocka_unit_test(test_selected_conv_output_not_fused),
        cmocka_unit_test(test_select_classifier_head),
        cmocka_unit_test(test_select_mlp_head),
        cmocka_unit_test(test_select_named_and_unknown),
        cmocka_unit_test(test_resnet18),
        cmocka_unit_test(test_resnet50),
        cmocka_unit_test(test_resnet_seeds_and_layers),
        cmocka_unit_test(test_resnet18_optimised_equals_reference),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
