/*
 * test_graph_shapes.c: ims_graph_infer_shapes on one small graph per operator. Expected sizes come
 * from the formulas in the ONNX operator spec and from PyTorch's pooling rule (checked by hand
 * with torch.nn.MaxPool2d / AvgPool2d: e.g. MaxPool2d(2, 2, padding=1, ceil_mode=True) maps 5 to
 * 3, MaxPool2d(3, 2, ceil_mode=True) maps 8 to 4), never from imgsim's own output.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "model/graph.h"

/* ---- small builders ---- */

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

/* A constant of the given dims, filled with fill (or with the values in init when given). */
static int cst(ims_graph *g, const char *name, int rank, const int64_t *dims, const float *init, float fill) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    float *buf = test_malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        buf[i] = init ? init[i] : fill;
    int v = ims_graph_add_value(g, name, rank, dims, buf);
    test_free(buf);
    assert_true(v >= 0);
    return v;
}

static ims_node *node(ims_graph *g, ims_op op, const char *name, int n_in, const int *in, int out) {
    ims_node *n = ims_graph_add_node(g, op, name, n_in, in, out);
    assert_non_null(n);
    return n;
}

/* Links and infers; returns the status and leaves the message in *e. */
static imgsim_status infer(ims_graph *g, ims_err *e) {
    imgsim_status st = ims_graph_link(g, e);
    if (st != IMGSIM_OK) return st;
    return ims_graph_infer_shapes(g, e);
}

/* Asserts value v has dims d (the batch as -1). */
static void expect_dims(const ims_graph *g, int v, int rank, const int64_t *d) {
    assert_int_equal(g->vals[v].rank, rank);
    for (int i = 0; i < rank; i++)
        assert_int_equal(g->vals[v].dims[i], d[i]);
}

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define IN(...) ((const int[]){__VA_ARGS__})

/* ---- Conv ---- */

static void test_conv_pads_strides_dilations(void **state) {
    (void)state;
    ims_graph *g = new_graph(3, 8, 8);
    int w = cst(g, "w", 4, DIMS(4, 3, 3, 3), NULL, 1.0f);
    int b = cst(g, "b", 1, DIMS(4), NULL, 0.0f);
    int y1 = act(g, "y1"), y2 = act(g, "y2"), y3 = act(g, "y3");
    /* pad 1, stride 2: floor((8 + 2 - 3) / 2) + 1 = 4 */
    ims_node *n = node(g, IS_OP_CONV, "c1", 3, IN(g->input, w, b), y1);
    n->pad[0] = n->pad[1] = n->pad[2] = n->pad[3] = 1;
    n->stride[0] = n->stride[1] = 2;
    /* dilation 2, no pad: effective kernel 5, 8 - 5 + 1 = 4; asymmetric pads on H: 8+0+2-5+1 = 6 */
    n = node(g, IS_OP_CONV, "c2", 2, IN(g->input, w), y2);
    n->dilation[0] = n->dilation[1] = 2;
    n->pad[2] = 2;
    /* stride 3 along W only: H 8-3+1 = 6, W floor(5/3)+1 = 2 */
    n = node(g, IS_OP_CONV, "c3", 2, IN(g->input, w), y3);
    n->stride[1] = 3;
    g->output = y1;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, y1, 4, DIMS(-1, 4, 4, 4));
    expect_dims(g, y2, 4, DIMS(-1, 4, 6, 4));
    expect_dims(g, y3, 4, DIMS(-1, 4, 6, 2));
    assert_int_equal(g->nodes[0].kernel[0], 3);
    assert_int_equal(g->nodes[0].kernel[1], 3);
    assert_int_equal(g->in_c, 3);
    assert_int_equal(g->in_h, 8);
    assert_int_equal(g->dim, 4 * 4 * 4);
    ims_graph_free(g);
}

static void test_conv_groups(void **state) {
    (void)state;
    ims_graph *g = new_graph(4, 6, 6);
    int w = cst(g, "w", 4, DIMS(8, 2, 1, 1), NULL, 1.0f);
    int y = act(g, "y");
    ims_node *n = node(g, IS_OP_CONV, "gconv", 2, IN(g->input, w), y);
    n->group = 2;
    g->output = y;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, y, 4, DIMS(-1, 8, 6, 6));
    /* IC/group must equal the weight's dim 1 */
    g->nodes[0].group = 4;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "node 'gconv' (Conv)"));
    /* input channels not divisible by the group */
    g->nodes[0].group = 3;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "not divisible by group 3"));
    ims_graph_free(g);
}

static void test_conv_errors(void **state) {
    (void)state;
    ims_graph *g = new_graph(3, 8, 8);
    int w = cst(g, "w", 4, DIMS(4, 3, 9, 9), NULL, 1.0f);
    int bad_b = cst(g, "bad_b", 1, DIMS(5), NULL, 0.0f);
    int y = act(g, "y");
    node(g, IS_OP_CONV, "big_kernel", 2, IN(g->input, w), y);
    g->output = y;
    ims_err e;
    /* 9x9 kernel on 8x8 without padding: no output pixel */
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(
        strstr(e.msg, "node 'big_kernel' (Conv): kernel extent 9 is larger than the padded input"));
    /* with pad 1 it fits: 8 + 2 - 9 + 1 = 2 */
    for (int i = 0; i < 4; i++)
        g->nodes[0].pad[i] = 1;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, y, 4, DIMS(-1, 4, 2, 2));
    /* a kernel_shape that disagrees with the weight */
    g->nodes[0].kernel[0] = 3;
    g->nodes[0].kernel[1] = 3;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "kernel_shape 3x3 does not match"));
    g->nodes[0].kernel[0] = g->nodes[0].kernel[1] = 9;
    /* a bias of the wrong length */
    g->nodes[0].n_in = 3;
    g->nodes[0].in[2] = bad_b;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "bias 'bad_b'"));
    g->nodes[0].in[2] = -1;
    /* negative padding, zero stride */
    g->nodes[0].pad[0] = -1;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    g->nodes[0].pad[0] = 1;
    g->nodes[0].stride[1] = 0;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    g->nodes[0].stride[1] = 1;
    /* the weight must be a constant */
    g->nodes[0].in[1] = g->input;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
    ims_graph_free(g);
}

/* SAME_UPPER / SAME_LOWER / VALID: in 7, kernel 4, stride 2: out = ceil(7/2) = 4, total padding
 * (4-1)*2 + 4 - 7 = 3, split 1+2 (UPPER: extra at the end) or 2+1 (LOWER). VALID: (7-4)/2+1 = 2.
 * Along W (in 8, kernel 3, stride 1): out 8, total pad 2, split 1+1 either way. */
static void test_conv_auto_pad(void **state) {
    (void)state;
    ims_graph *g = new_graph(2, 7, 8);
    int w = cst(g, "w", 4, DIMS(3, 2, 4, 3), NULL, 1.0f);
    int yu = act(g, "yu"), yl = act(g, "yl"), yv = act(g, "yv");
    ims_node *n = node(g, IS_OP_CONV, "upper", 2, IN(g->input, w), yu);
    n->auto_pad = 1;
    n->stride[0] = 2;
    n = node(g, IS_OP_CONV, "lower", 2, IN(g->input, w), yl);
    n->auto_pad = 2;
    n->stride[0] = 2;
    n = node(g, IS_OP_CONV, "valid", 2, IN(g->input, w), yv);
    n->auto_pad = 3;
    n->stride[0] = 2;
    n->pad[0] = 5; /* ignored by VALID */
    g->output = yu;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, yu, 4, DIMS(-1, 3, 4, 8));
    expect_dims(g, yl, 4, DIMS(-1, 3, 4, 8));
    expect_dims(g, yv, 4, DIMS(-1, 3, 2, 6));
    const ims_node *u = &g->nodes[0], *l = &g->nodes[1], *v = &g->nodes[2];
    /* pad[] = top, left, bottom, right */
    assert_int_equal(u->pad[0], 1);
    assert_int_equal(u->pad[2], 2);
    assert_int_equal(u->pad[1], 1);
    assert_int_equal(u->pad[3], 1);
    assert_int_equal(l->pad[0], 2);
    assert_int_equal(l->pad[2], 1);
    assert_int_equal(l->pad[1], 1);
    assert_int_equal(l->pad[3], 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(v->pad[i], 0);
    /* resolved: a second inference gives the same result */
    assert_int_equal(u->auto_pad, 0);
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, yu, 4, DIMS(-1, 3, 4, 8));
    assert_int_equal(g->nodes[0].pad[2], 2);
    ims_graph_free(g);
}

/* ---- pooling ---- */

static void test_pooling_ceil_mode(void **state) {
    (void)state;
    ims_graph *g = new_graph(2, 8, 5);
    int y1 = act(g, "y1"), y2 = act(g, "y2"), y3 = act(g, "y3"), y4 = act(g, "y4");
    /* MaxPool 3x3 stride 2: H 8 -> floor 3, W 5 -> 2 */
    ims_node *n = node(g, IS_OP_MAXPOOL, "floor", 1, IN(g->input), y1);
    n->kernel[0] = n->kernel[1] = 3;
    n->stride[0] = n->stride[1] = 2;
    /* ceil_mode: H 8 -> 4 (torch), W 5 -> ceil(2/2)+1 = 2 */
    n = node(g, IS_OP_MAXPOOL, "ceil", 1, IN(g->input), y2);
    n->kernel[0] = n->kernel[1] = 3;
    n->stride[0] = n->stride[1] = 2;
    n->ceil_mode = 1;
    /* kernel 2 stride 2 pad 1 ceil: W 5 -> 3 (the 4th window would start in the padding: torch
     * drops it); H 8 -> span 8, ceil(8/2)+1 = 5, (5-1)*2 = 8 >= 8+1? no -> 5 */
    n = node(g, IS_OP_MAXPOOL, "ceil_pad", 1, IN(g->input), y3);
    n->kernel[0] = n->kernel[1] = 2;
    n->stride[0] = n->stride[1] = 2;
    for (int i = 0; i < 4; i++)
        n->pad[i] = 1;
    n->ceil_mode = 1;
    /* AveragePool 3 stride 2 pad 1 ceil, count_include_pad: H 8 -> ceil(7/2)+1 = 5, (5-1)*2 = 8 >=
     * 8+1? no -> 5; W 5 -> ceil(4/2)+1 = 3 */
    n = node(g, IS_OP_AVGPOOL, "avg", 1, IN(g->input), y4);
    n->kernel[0] = n->kernel[1] = 3;
    n->stride[0] = n->stride[1] = 2;
    for (int i = 0; i < 4; i++)
        n->pad[i] = 1;
    n->ceil_mode = 1;
    n->count_include_pad = 1;
    g->output = y4;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, y1, 4, DIMS(-1, 2, 3, 2));
    expect_dims(g, y2, 4, DIMS(-1, 2, 4, 2));
    expect_dims(g, y3, 4, DIMS(-1, 2, 5, 3));
    expect_dims(g, y4, 4, DIMS(-1, 2, 5, 3));
    /* a pad as large as the kernel leaves windows with no input: refused */
    g->nodes[2].pad[0] = 2;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "node 'ceil_pad' (MaxPool)"));
    ims_graph_free(g);
}

static void test_pool_same_upper(void **state) {
    (void)state;
    /* MaxPool kernel 3 stride 2 SAME_UPPER on 7x6: out ceil(7/2) = 4, ceil(6/2) = 3; total pad
     * H: (4-1)*2 + 3 - 7 = 2 -> 1+1; W: (3-1)*2 + 3 - 6 = 1 -> 0+1 */
    ims_graph *g = new_graph(1, 7, 6);
    int y = act(g, "y");
    ims_node *n = node(g, IS_OP_MAXPOOL, "p", 1, IN(g->input), y);
    n->kernel[0] = n->kernel[1] = 3;
    n->stride[0] = n->stride[1] = 2;
    n->auto_pad = 1;
    n->ceil_mode = 1; /* ignored with SAME */
    g->output = y;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, y, 4, DIMS(-1, 1, 4, 3));
    assert_int_equal(g->nodes[0].pad[0], 1);
    assert_int_equal(g->nodes[0].pad[2], 1);
    assert_int_equal(g->nodes[0].pad[1], 0);
    assert_int_equal(g->nodes[0].pad[3], 1);
    ims_graph_free(g);
}

static void test_global_pool_flatten(void **state) {
    (void)state;
    ims_graph *g = new_graph(4, 5, 7);
    int p = act(g, "p"), f = act(g, "f"), f2 = act(g, "f2"), f3 = act(g, "f3");
    node(g, IS_OP_GLOBALAVGPOOL, "gap", 1, IN(g->input), p);
    node(g, IS_OP_FLATTEN, "flat", 1, IN(p), f);
    node(g, IS_OP_FLATTEN, "flat_x", 1, IN(g->input), f2);
    node(g, IS_OP_FLATTEN, "flat_ax2", 1, IN(p), f3)->axis = 2; /* dim 1 is 4: would merge the batch */
    g->output = f;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "node 'flat_ax2' (Flatten)"));
    g->nodes[3].axis = 1;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, p, 4, DIMS(-1, 4, 1, 1));
    expect_dims(g, f, 2, DIMS(-1, 4));
    expect_dims(g, f2, 2, DIMS(-1, 4 * 5 * 7));
    assert_int_equal(g->dim, 4);
    g->nodes[3].axis = 0;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
    ims_graph_free(g);
}

/* ---- Reshape ---- */

/* Runs Reshape(x [-1, 4, 5, 6], shape) and returns the status; dims in *out. */
static imgsim_status reshape_case(int r, const float *shape, int *out_rank, int64_t *out_dims, ims_err *e) {
    ims_graph *g = new_graph(4, 5, 6);
    int s = cst(g, "shape", 1, DIMS(r), shape, 0);
    int y = act(g, "y");
    node(g, IS_OP_RESHAPE, "rs", 2, IN(g->input, s), y);
    g->output = y;
    imgsim_status st = infer(g, e);
    *out_rank = g->vals[y].rank;
    memcpy(out_dims, g->vals[y].dims, sizeof(int64_t) * IS_MAX_RANK);
    ims_graph_free(g);
    return st;
}

static void test_reshape(void **state) {
    (void)state;
    ims_err e;
    int r;
    int64_t d[IS_MAX_RANK];
    assert_int_equal(reshape_case(2, (float[]){0, -1}, &r, d, &e), IMGSIM_OK);
    assert_int_equal(r, 2);
    assert_int_equal(d[0], -1);
    assert_int_equal(d[1], 120);
    assert_int_equal(reshape_case(2, (float[]){-1, 120}, &r, d, &e), IMGSIM_OK);
    assert_int_equal(d[1], 120);
    assert_int_equal(reshape_case(3, (float[]){0, 0, -1}, &r, d, &e), IMGSIM_OK);
    assert_int_equal(r, 3);
    assert_int_equal(d[1], 4);
    assert_int_equal(d[2], 30);
    /* a model exported with batch 1 */
    assert_int_equal(reshape_case(3, (float[]){1, -1, 10}, &r, d, &e), IMGSIM_OK);
    assert_int_equal(d[0], -1);
    assert_int_equal(d[1], 12);
    assert_int_equal(d[2], 10);
    /* [-1, 60] on 120 elements per image would double the batch */
    assert_int_equal(reshape_case(2, (float[]){-1, 60}, &r, d, &e), IMGSIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "node 'rs' (Reshape)"));
    assert_int_equal(reshape_case(3, (float[]){0, 7, -1}, &r, d, &e), IMGSIM_ERR_FORMAT);
    assert_int_equal(reshape_case(3, (float[]){0, -1, -1}, &r, d, &e), IMGSIM_ERR_FORMAT);
    assert_int_equal(reshape_case(3, (float[]){-1, -1, 4}, &r, d, &e), IMGSIM_ERR_FORMAT);
    assert_int_equal(reshape_case(2, (float[]){2, -1}, &r, d, &e), IMGSIM_ERR_UNSUPPORTED);
    assert_int_equal(reshape_case(5, (float[]){0, 0, 0, 0, 0}, &r, d, &e), IMGSIM_ERR_FORMAT);
    assert_int_equal(reshape_case(2, (float[]){0, 119}, &r, d, &e), IMGSIM_ERR_FORMAT);
    assert_int_equal(reshape_case(2, (float[]){0, 2.5f}, &r, d, &e), IMGSIM_ERR_FORMAT);
    assert_int_equal(reshape_case(2, (float[]){0, -3}, &r, d, &e), IMGSIM_ERR_FORMAT);
}

/* ---- Gemm, MatMul, Concat ---- */

static void test_gemm_matmul(void **state) {
    (void)state;
    ims_graph *g = new_graph(4, 2, 3);
    int s = cst(g, "shape", 1, DIMS(2), (float[]){0, -1}, 0);
    int bt = cst(g, "bt", 2, DIMS(10, 24), NULL, 0.1f);
    int bn = cst(g, "bn", 2, DIMS(24, 10), NULL, 0.1f);
    int c = cst(g, "c", 1, DIMS(10), NULL, 0.0f);
    int m = cst(g, "m", 2, DIMS(24, 7), NULL, 0.1f);
    int f = act(g, "f"), y1 = act(g, "y1"), y2 = act(g, "y2"), y3 = act(g, "y3");
    node(g, IS_OP_RESHAPE, "rs", 2, IN(g->input, s), f);
    node(g, IS_OP_GEMM, "fc_t", 3, IN(f, bt, c), y1)->trans_b = 1;
    node(g, IS_OP_GEMM, "fc_n", 2, IN(f, bn), y2);
    node(g, IS_OP_MATMUL, "mm", 2, IN(f, m), y3);
    g->output = y1;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, y1, 2, DIMS(-1, 10));
    expect_dims(g, y2, 2, DIMS(-1, 10));
    expect_dims(g, y3, 2, DIMS(-1, 7));
    assert_int_equal(g->dim, 10);
    /* transB off with a [10, 24] weight: K disagrees */
    g->nodes[1].trans_b = 0;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "node 'fc_t' (Gemm)"));
    g->nodes[1].trans_b = 1;
    g->nodes[1].trans_a = 1;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
    g->nodes[1].trans_a = 0;
    /* MatMul with K mismatch */
    g->nodes[3].in[1] = bt;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "node 'mm' (MatMul)"));
    ims_graph_free(g);

    /* a Gemm C that depends on the batch is refused */
    g = new_graph(4, 1, 1);
    s = cst(g, "shape", 1, DIMS(2), (float[]){0, -1}, 0);
    bt = cst(g, "bt", 2, DIMS(3, 4), NULL, 0.1f);
    c = cst(g, "c", 2, DIMS(5, 3), NULL, 0.0f);
    f = act(g, "f");
    y1 = act(g, "y1");
    node(g, IS_OP_RESHAPE, "rs", 2, IN(g->input, s), f);
    node(g, IS_OP_GEMM, "fc", 3, IN(f, bt, c), y1)->trans_b = 1;
    g->output = y1;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
    ims_graph_free(g);
}

static void test_concat(void **state) {
    (void)state;
    ims_graph *g = new_graph(3, 5, 6);
    int w = cst(g, "w", 4, DIMS(4, 3, 1, 1), NULL, 1.0f);
    int a = act(g, "a"), y = act(g, "y"), y2 = act(g, "y2");
    node(g, IS_OP_CONV, "c", 2, IN(g->input, w), a);
    node(g, IS_OP_CONCAT, "cat", 3, IN(g->input, a, g->input), y)->axis = 1;
    node(g, IS_OP_CONCAT, "cat_w", 2, IN(g->input, g->input), y2)->axis = 3;
    g->output = y;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, y, 4, DIMS(-1, 10, 5, 6));
    expect_dims(g, y2, 4, DIMS(-1, 3, 5, 12));
    /* channels differ, concat on H: refused */
    g->nodes[1].axis = 2;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "node 'cat' (Concat)"));
    g->nodes[1].axis = 0;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
    ims_graph_free(g);
}

/* ---- broadcasting, BN, unary ---- */

static void test_broadcasting(void **state) {
    (void)state;
    ims_graph *g = new_graph(4, 5, 6);
    int pc = cst(g, "per_channel", 3, DIMS(4, 1, 1), NULL, 2.0f);
    int row = cst(g, "row", 1, DIMS(6), NULL, 2.0f);
    int b1 = cst(g, "b1", 4, DIMS(1, 4, 1, 1), NULL, 2.0f);
    int p = act(g, "p"), y1 = act(g, "y1"), y2 = act(g, "y2"), y3 = act(g, "y3"), y4 = act(g, "y4");
    node(g, IS_OP_GLOBALAVGPOOL, "gap", 1, IN(g->input), p);
    node(g, IS_OP_MUL, "scale", 2, IN(g->input, pc), y1);    /* [N,4,5,6] * [4,1,1] */
    node(g, IS_OP_ADD, "row_add", 2, IN(row, g->input), y2); /* [6] + [N,4,5,6] */
    node(g, IS_OP_MUL, "se", 2, IN(g->input, p), y3);        /* [N,4,5,6] * [N,4,1,1] */
    node(g, IS_OP_ADD, "b1_add", 2, IN(p, b1), y4);          /* [N,4,1,1] + [1,4,1,1] */
    g->output = y1;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    expect_dims(g, y1, 4, DIMS(-1, 4, 5, 6));
    expect_dims(g, y2, 4, DIMS(-1, 4, 5, 6));
    expect_dims(g, y3, 4, DIMS(-1, 4, 5, 6));
    expect_dims(g, y4, 4, DIMS(-1, 4, 1, 1));
    ims_graph_free(g);

    /* [N,4,5,6] + [4,5]: 4 vs 5 and 5 vs 6 do not broadcast */
    g = new_graph(4, 5, 6);
    int bad = cst(g, "bad", 2, DIMS(4, 5), NULL, 1.0f);
    y1 = act(g, "y1");
    node(g, IS_OP_ADD, "bad_add", 2, IN(g->input, bad), y1);
    g->output = y1;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "node 'bad_add' (Add): shapes [N, 4, 5, 6] and [4, 5] do not broadcast"));
    ims_graph_free(g);

    /* a constant with a batch-position dim of 2 */
    g = new_graph(4, 5, 6);
    bad = cst(g, "b2", 4, DIMS(2, 4, 1, 1), NULL, 1.0f);
    y1 = act(g, "y1");
    node(g, IS_OP_ADD, "batchy", 2, IN(g->input, bad), y1);
    g->output = y1;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    ims_graph_free(g);

    /* [N, 4, 5, 6] + [1, 1, 1, 1, 6]: the batch would move to axis 1 */
    g = new_graph(4, 5, 6);
    bad = cst(g, "r5", 5, DIMS(1, 1, 1, 1, 6), NULL, 1.0f);
    y1 = act(g, "y1");
    node(g, IS_OP_ADD, "mover", 2, IN(g->input, bad), y1);
    g->output = y1;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
    ims_graph_free(g);

    /* two constants: folded into a constant (1 + 1 = 2, the node dead), which as the graph's
     * output is nothing to compute per image */
    g = new_graph(4, 5, 6);
    int k1 = cst(g, "k1", 1, DIMS(3), NULL, 1.0f), k2 = cst(g, "k2", 1, DIMS(3), NULL, 1.0f);
    y1 = act(g, "y1");
    node(g, IS_OP_ADD, "consts", 2, IN(k1, k2), y1);
    g->output = y1;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "not computed by the graph"));
    assert_non_null(g->vals[y1].data);
    assert_true(g->vals[y1].rank == 1 && g->vals[y1].dims[0] == 3 && g->vals[y1].data[2] == 2.0f);
    assert_true(g->nodes[g->n_nodes - 1].dead);
    ims_graph_free(g);
}

/* Shape arithmetic is evaluated (ONNX's integer Div truncates, float Div does not) and the batch
 * survives as IS_BATCH_DIM into a Reshape, which keeps it; arithmetic on the batch is refused. */
static void test_fold_shapes(void **state) {
    (void)state;
    ims_err e;
    ims_graph *g = new_graph(5, 4, 6);
    int i0 = cst(g, "i0", 0, NULL, NULL, 0.0f), i1 = cst(g, "i1", 0, NULL, NULL, 1.0f);
    int two = cst(g, "two", 0, NULL, NULL, 2.0f), twof = cst(g, "twof", 0, NULL, NULL, 2.0f);
    int m1 = cst(g, "m1", 1, DIMS(1), NULL, -1.0f);
    g->vals[i0].is_int = g->vals[i1].is_int = g->vals[two].is_int = g->vals[m1].is_int = 1;
    int sh = act(g, "sh"), ch = act(g, "c"), q = act(g, "q"), qf = act(g, "qf"), n = act(g, "n"),
        nu = act(g, "nu"), shp = act(g, "shp"), y = act(g, "y");
    node(g, IS_OP_SHAPE, "shape", 1, IN(g->input), sh);
    node(g, IS_OP_GATHER, "gc", 2, IN(sh, i1), ch)->axis = 0;
    node(g, IS_OP_DIV, "div", 2, IN(ch, two), q);
    node(g, IS_OP_DIV, "divf", 2, IN(ch, twof), qf);
    node(g, IS_OP_GATHER, "gn", 2, IN(sh, i0), n)->axis = 0;
    ims_node *u = node(g, IS_OP_UNSQUEEZE, "unsq", 1, IN(n), nu);
    u->perm[0] = 0;
    u->n_perm = 1;
    node(g, IS_OP_CONCAT, "cat", 2, IN(nu, m1), shp)->axis = 0;
    node(g, IS_OP_RESHAPE, "reshape", 2, IN(g->input, shp), y);
    g->output = y;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    assert_true(g->vals[q].data && g->vals[q].data[0] == 2.0f && g->vals[q].is_int);
    assert_true(g->vals[qf].data && g->vals[qf].data[0] == 2.5f && !g->vals[qf].is_int);
    assert_true(g->vals[shp].data && g->vals[shp].data[0] == IS_BATCH_DIM && g->vals[shp].data[1] == -1.0f);
    expect_dims(g, y, 2, DIMS(-1, 120));
    assert_true(g->nodes[0].dead && !g->nodes[g->n_nodes - 1].dead);
    ims_graph_free(g);

    g = new_graph(5, 4, 6);
    i0 = cst(g, "i0", 0, NULL, NULL, 0.0f);
    two = cst(g, "two", 0, NULL, NULL, 2.0f);
    g->vals[i0].is_int = g->vals[two].is_int = 1;
    sh = act(g, "sh"), n = act(g, "n"), q = act(g, "q"), y = act(g, "y");
    node(g, IS_OP_SHAPE, "shape", 1, IN(g->input), sh);
    node(g, IS_OP_GATHER, "gn", 2, IN(sh, i0), n)->axis = 0;
    node(g, IS_OP_MUL, "twice", 2, IN(n, two), q);
    node(g, IS_OP_RELU, "relu", 1, IN(g->input), y);
    g->output = y;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "'twice'"));
    assert_non_null(strstr(e.msg, "batch size"));
    ims_graph_free(g);
}

/* Mod on constants (torch 2.x's unflatten computes Mod(dim, rank)): integers take the divisor's
 * sign (numpy.mod: -7 % 3 = 2, 7 % -3 = -2), fmod = 1 the dividend's (math.fmod(-7, 3) = -1);
 * the batch size and a zero divisor are refused, naming the node. */
static void test_fold_mod(void **state) {
    (void)state;
    ims_err e;
    ims_graph *g = new_graph(5, 4, 6);
    int a = cst(g, "a", 1, DIMS(4), (const float[]){-7, 7, -1, 2}, 0),
        b = cst(g, "b", 1, DIMS(4), (const float[]){3, -3, 3, 3}, 0);
    g->vals[a].is_int = g->vals[b].is_int = 1;
    int af = cst(g, "af", 1, DIMS(2), (const float[]){-7, 7}, 0),
        bf = cst(g, "bf", 1, DIMS(2), (const float[]){3, -3}, 0);
    int r = act(g, "r"), rf = act(g, "rf"), y = act(g, "y");
    node(g, IS_OP_MOD, "mod", 2, IN(a, b), r);
    node(g, IS_OP_MOD, "fmod", 2, IN(af, bf), rf)->fmod = 1;
    node(g, IS_OP_RELU, "relu", 1, IN(g->input), y);
    g->output = y;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    const float *o = g->vals[r].data, *of = g->vals[rf].data;
    assert_true(o && g->vals[r].is_int && o[0] == 2.0f && o[1] == -2.0f && o[2] == 2.0f && o[3] == 2.0f);
    assert_true(of && of[0] == -1.0f && of[1] == 1.0f);
    ims_graph_free(g);

    for (int bad = 0; bad < 2; bad++) {
        g = new_graph(5, 4, 6);
        int i0 = cst(g, "i0", 0, NULL, NULL, 0.0f), k = cst(g, "k", 0, NULL, NULL, bad ? 0.0f : 3.0f);
        g->vals[i0].is_int = g->vals[k].is_int = 1;
        int sh = act(g, "sh"), n = act(g, "n"), q = act(g, "q");
        y = act(g, "y");
        node(g, IS_OP_SHAPE, "shape", 1, IN(g->input), sh);
        node(g, IS_OP_GATHER, "gn", 2, IN(sh, i0), n)->axis = 0;
        node(g, IS_OP_MOD, "modn", 2, IN(bad ? k : n, k), q); /* batch mod 3; 0 mod 0 */
        node(g, IS_OP_RELU, "relu", 1, IN(g->input), y);
        g->output = y;
        assert_int_equal(infer(g, &e), IMGSIM_ERR_UNSUPPORTED);
        assert_non_null(strstr(e.msg, "'modn'"));
        assert_non_null(strstr(e.msg, bad ? "by zero" : "batch size"));
        ims_graph_free(g);
    }
}

static void test_bn_unary_clip(void **state) {
    (void)state;
    ims_graph *g = new_graph(3, 4, 4);
    int s = cst(g, "s", 1, DIMS(3), NULL, 1.0f), b = cst(g, "b", 1, DIMS(3), NULL, 0.0f);
    int m = cst(g, "m", 1, DIMS(3), NULL, 0.0f), v = cst(g, "v", 1, DIMS(3), NULL, 1.0f);
    int lo = cst(g, "lo", 0, NULL, (float[]){0.0f}, 0), hi = cst(g, "hi", 1, DIMS(1), (float[]){6.0f}, 0);
    int y = act(g, "y"), r = act(g, "r"), c = act(g, "c"), sg = act(g, "sg"), id = act(g, "id");
    node(g, IS_OP_BATCHNORM, "bn", 5, IN(g->input, s, b, m, v), y);
    node(g, IS_OP_RELU, "relu", 1, IN(y), r);
    node(g, IS_OP_CLIP, "relu6", 3, IN(r, lo, hi), c);
    node(g, IS_OP_SIGMOID, "sig", 1, IN(c), sg);
    node(g, IS_OP_IDENTITY, "id", 1, IN(sg), id);
    g->output = id;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_OK);
    for (int k = 0; k < 5; k++)
        expect_dims(g, y + k, 4, DIMS(-1, 3, 4, 4));
    assert_true(g->nodes[2].clip_min == 0.0f);
    assert_true(g->nodes[2].clip_max == 6.0f);
    /* BN statistics of the wrong length */
    int bad = cst(g, "bad", 1, DIMS(4), NULL, 1.0f);
    g->nodes[0].in[3] = bad;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "node 'bn' (BatchNormalization): mean 'bad'"));
    g->nodes[0].in[3] = m;
    g->nodes[0].epsilon = -1.0f;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_FORMAT);
    ims_graph_free(g);
}

/* ---- limits ---- */

static void test_too_large(void **state) {
    (void)state;
    /* 1 x 65536 x 65536 = 2^32 elements per image is the limit; a 1x1 conv to 2 channels exceeds it */
    ims_graph *g = new_graph(1, 65536, 65536);
    int w = cst(g, "w", 4, DIMS(2, 1, 1, 1), NULL, 1.0f);
    int y = act(g, "y");
    node(g, IS_OP_CONV, "wide", 2, IN(g->input, w), y);
    g->output = y;
    ims_err e;
    assert_int_equal(infer(g, &e), IMGSIM_ERR_TOO_LARGE);
    assert_non_null(strstr(e.msg, "node 'wide' (Conv)"));
    ims_graph_free(g);

    g = new_graph(3, 65536, 65536);
    assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_ERR_TOO_LARGE);
    ims_graph_free(g);

    g = new_graph(3, 0, 8);
    assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_ERR_UNSUPPORTED);
    ims_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_pads_strides_dilations),
        cmocka_unit_test(test_conv_groups),
        cmocka_unit_test(test_conv_errors),
        cmocka_unit_test(test_conv_auto_pad),
        cmocka_unit_test(test_pooling_ceil_mode),
        cmocka_unit_test(test_pool_same_upper),
        cmocka_unit_test(test_global_pool_flatten),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_gemm_matmul),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_broadcasting),
        cmocka_unit_test(test_fold_shapes),
        cmocka_unit_test(test_fold_mod),
        cmocka_unit_test(test_bn_unary_clip),
        cmocka_unit_test(test_too_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
