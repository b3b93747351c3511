/*
 * test_onnx_import.c: the ONNX importer on a model written here with protobuf-c:
 *   - tensor conversions to float32 from each storage the importer accepts (DOUBLE double_data,
 *     FLOAT16 raw_data and int32_data, BFLOAT16 int32_data, INT64 int64_data, INT32 raw_data,
 *     BOOL raw_data,
 *     FLOAT float_data, Constant value_floats), checked against values written by hand;
 *   - Clip bounds taken from constant inputs, Reshape keeping its shape constant, Conv's kernel
 *     from its weight, the input shape;
 *   - every truncation of the file is refused, every single-bit corruption is either refused or
 *     loaded, never a crash (run under ASan+UBSan as test_onnx_import_asan);
 *   - every allocation failure (ims_alloc_fail_after) is reported as an error, without leaks;
 *   - ims_onnx_save -> ims_onnx_load keeps the weights bit for bit, and fused nodes are written
 *     back as Conv -> Add -> Relu / Clip.
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

#include "synth/model.h"
#include "model/onnx/onnx.pb-c.h"

static char g_dir[512];

static const char *tmp_path(const char *name) {
    static char buf[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* ---- the model ---------------------------------------------------------------------------- */

static ImsOnnx__AttributeProto attr_ints(const char *name, int64_t *v, size_t n) {
    ImsOnnx__AttributeProto a = IMS_ONNX__ATTRIBUTE_PROTO__INIT;
    a.name = (char *)name;
    a.has_type = 1;
    a.type = IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a.ints = v;
    a.n_ints = n;
    return a;
}

static ImsOnnx__TensorProto tensor(const char *name, int dt, int64_t *dims, size_t rank) {
    ImsOnnx__TensorProto t = IMS_ONNX__TENSOR_PROTO__INIT;
    t.name = (char *)name;
    t.has_data_type = 1;
    t.data_type = dt;
    t.dims = dims;
    t.n_dims = rank;
    return t;
}

/* x [N, 2, 4, 4] -> Conv(W 1x1, B) -> Add(K) -> Clip(lo, hi) -> Reshape(S) -> y [N, 32], plus
 * unused constants of other storages. Packs it into *out (malloc'ed). */
static size_t build_model(uint8_t **out) {
    /* W: DOUBLE double_data */
    int64_t w_dims[] = {2, 2, 1, 1};
    double w_data[] = {0.5, -1.25, 3.0, 1e40};
    ImsOnnx__TensorProto W = tensor("W", 11, w_dims, 4);
    W.double_data = w_data;
    W.n_double_data = 4;
    /* B: FLOAT16 raw_data, little-endian 1.0, -2.0 */
    int64_t b_dims[] = {2};
    uint8_t b_raw[] = {0x00, 0x3C, 0x00, 0xC0};
    ImsOnnx__TensorProto B = tensor("B", 10, b_dims, 1);
    B.has_raw_data = 1;
    B.raw_data.data = b_raw;
    B.raw_data.len = 4;
    /* K: BFLOAT16 int32_data 1.0, -3.0 */
    int64_t k_dims[] = {1, 2, 1, 1};
    int32_t k_data[] = {0x3F80, 0xC040};
    ImsOnnx__TensorProto K = tensor("K", 16, k_dims, 4);
    K.int32_data = k_data;
    K.n_int32_data = 2;
    /* lo, hi: FLOAT scalars */
    float lo_v = 0.0f, hi_v = 6.0f;
    ImsOnnx__TensorProto LO = tensor("lo", 1, NULL, 0), HI = tensor("hi", 1, NULL, 0);
    LO.float_data = &lo_v;
    LO.n_float_data = 1;
    HI.float_data = &hi_v;
    HI.n_float_data = 1;
    /* S: INT64 int64_data -1, 32 */
    int64_t s_dims[] = {2}, s_data[] = {-1, 32};
    ImsOnnx__TensorProto S = tensor("S", 7, s_dims, 1);
    S.int64_data = s_data;
    S.n_int64_data = 2;
    /* S32: INT32 raw_data -1, 32 (unused) */
    uint8_t s32_raw[] = {0xff, 0xff, 0xff, 0xff, 0x20, 0, 0, 0};
    ImsOnnx__TensorProto S32 = tensor("S32", 6, s_dims, 1);
    S32.has_raw_data = 1;
    S32.raw_data.data = s32_raw;
    S32.raw_data.len = 8;
    /* H: FLOAT16 int32_data 0x3555, 0x7BFF (unused) */
    int32_t h_data[] = {0x3555, 0x7BFF};
    ImsOnnx__TensorProto H = tensor("H", 10, b_dims, 1);
    H.int32_data = h_data;
    H.n_int32_data = 2;
    /* BL: BOOL raw_data 0, 1, 2 (unused) */
    int64_t bl_dims[] = {3};
    uint8_t bl_raw[] = {0, 1, 2};
    ImsOnnx__TensorProto BL = tensor("BL", 9, bl_dims, 1);
    BL.has_raw_data = 1;
    BL.raw_data.data = bl_raw;
    BL.raw_data.len = 3;
    ImsOnnx__TensorProto *inits[] = {&W, &B, &K, &LO, &HI, &S, &S32, &H, &BL};

    int64_t ks[] = {1, 1}, pads[] = {0, 0, 0, 0};
    ImsOnnx__AttributeProto a_k = attr_ints("kernel_shape", ks, 2), a_p = attr_ints("pads", pads, 4);
    ImsOnnx__AttributeProto *conv_attrs[] = {&a_k, &a_p};
    char *conv_in[] = {"x", "W", "B"}, *conv_out[] = {"c"};
    char *add_in[] = {"c", "K"}, *add_out[] = {"a"};
    char *clip_in[] = {"a", "lo", "hi"}, *clip_out[] = {"cl"};
    char *rs_in[] = {"cl", "S"}, *rs_out[] = {"y"};
    char *cf_out[] = {"CF"};
    ImsOnnx__NodeProto conv = IMS_ONNX__NODE_PROTO__INIT, add = IMS_ONNX__NODE_PROTO__INIT,
                    clip = IMS_ONNX__NODE_PROTO__INIT, rs = IMS_ONNX__NODE_PROTO__INIT, cf = IMS_ONNX__NODE_PROTO__INIT;
    conv.op_type = "Conv", conv.name = "conv", conv.input = conv_in, conv.n_input = 3, conv.output = conv_out;
    conv.n_output = 1, conv.attribute = conv_attrs, conv.n_attribute = 2;
    add.op_type = "Add", add.name = "add", add.input = add_in, add.n_input = 2, add.output = add_out,
    add.n_output = 1;
    clip.op_type = "Clip", clip.name = "clip", clip.input = clip_in, clip.n_input = 3, clip.output = clip_out;
    clip.n_output = 1;
    rs.op_type = "Reshape", rs.name = "reshape", rs.input = rs_in, rs.n_input = 2, rs.output = rs_out;
    rs.n_output = 1;
    /* Constant value_floats {1.5, 2.5} */
    float cf_v[] = {1.5f, 2.5f};
    ImsOnnx__AttributeProto a_cf = IMS_ONNX__ATTRIBUTE_PROTO__INIT;
    a_cf.name = "value_floats", a_cf.has_type = 1, a_cf.type = IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
    a_cf.floats = cf_v, a_cf.n_floats = 2;
    ImsOnnx__AttributeProto *cf_attrs[] = {&a_cf};
    cf.op_type = "Constant", cf.name = "cf", cf.output = cf_out, cf.n_output = 1, cf.attribute = cf_attrs;
    cf.n_attribute = 1;
    ImsOnnx__NodeProto *nodes[] = {&cf, &conv, &add, &clip, &rs};

    ImsOnnx__TensorShapeProto__Dimension d[4], *dp[4];
    for (int i = 0; i < 4; i++) {
        ims_onnx__tensor_shape_proto__dimension__init(&d[i]);
        dp[i] = &d[i];
        d[i].value_case = IMS_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    }
    d[0].value_case = IMS_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM, d[0].dim_param = "N";
    d[1].dim_value = 2, d[2].dim_value = 4, d[3].dim_value = 4;
    ImsOnnx__TensorShapeProto shape = IMS_ONNX__TENSOR_SHAPE_PROTO__INIT;
    shape.dim = dp, shape.n_dim = 4;
    ImsOnnx__TypeProto__Tensor tt = IMS_ONNX__TYPE_PROTO__TENSOR__INIT;
    tt.has_elem_type = 1, tt.elem_type = 1, tt.shape = &shape;
    ImsOnnx__TypeProto tp = IMS_ONNX__TYPE_PROTO__INIT;
    tp.value_case = IMS_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp.tensor_type = &tt;
    ImsOnnx__ValueInfoProto in = IMS_ONNX__VALUE_INFO_PROTO__INIT, outv = IMS_ONNX__VALUE_INFO_PROTO__INIT;
    in.name = "x", in.type = &tp, outv.name = "y";
    ImsOnnx__ValueInfoProto *ins[] = {&in}, *outs[] = {&outv};

    ImsOnnx__GraphProto g = IMS_ONNX__GRAPH_PROTO__INIT;
    g.name = "t", g.node = nodes, g.n_node = 5, g.initializer = inits, g.n_initializer = 9;
    g.input = ins, g.n_input = 1, g.output = outs, g.n_output = 1;
    ImsOnnx__OperatorSetIdProto os = IMS_ONNX__OPERATOR_SET_ID_PROTO__INIT, *osp[] = {&os};
    os.domain = "", os.has_version = 1, os.version = 13;
    ImsOnnx__ModelProto m = IMS_ONNX__MODEL_PROTO__INIT;
    m.has_ir_version = 1, m.ir_version = 7, m.opset_import = osp, m.n_opset_import = 1, m.graph = &g;

    size_t n = ims_onnx__model_proto__get_packed_size(&m);
    *out = malloc(n);
    assert_non_null(*out);
    assert_int_equal(ims_onnx__model_proto__pack(&m, *out), n);
    return n;
}

static const float *vals(const ims_graph *g, const char *name, int64_t numel) {
    int v = ims_graph_find_value(g, name);
    assert_true(v >= 0);
    assert_non_null(g->vals[v].data);
    assert_int_equal(ims_value_numel(&g->vals[v]), numel);
    return g->vals[v].data;
}

static const ims_node *find_node(const ims_graph *g, ims_op op) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == op) return &g->nodes[i];
    fail_msg("no %s node", ims_op_name(op));
    return NULL;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_conversions_and_nodes(void **state) {
    (void)state;
    uint8_t *buf;
    size_t n = build_model(&buf);
    const char *path = tmp_path("conv.onnx");
    write_bytes(path, buf, n);
    ims_graph *g = NULL;
    ims_err e;
    imgsim_status s = ims_onnx_load(&g, path, &e);
    if (s != IMGSIM_OK) fail_msg("load: %s", e.msg);

    const float *w = vals(g, "W", 4);
    assert_true(w[0] == 0.5f && w[1] == -1.25f && w[2] == 3.0f && isinf(w[3]) && w[3] > 0);
    const float *b = vals(g, "B", 2);
    assert_true(b[0] == 1.0f && b[1] == -2.0f);
    const float *k = vals(g, "K", 2);
    assert_true(k[0] == 1.0f && k[1] == -3.0f);
    const float *sh = vals(g, "S", 2);
    assert_true(sh[0] == -1.0f && sh[1] == 32.0f);
    const float *s32 = vals(g, "S32", 2);
    assert_true(s32[0] == -1.0f && s32[1] == 32.0f);
    const float *h = vals(g, "H", 2);
    assert_true(h[0] == 0.333251953125f && h[1] == 65504.0f);
    const float *bl = vals(g, "BL", 3);
    assert_true(bl[0] == 0.0f && bl[1] == 1.0f && bl[2] == 1.0f);
    const float *cf = vals(g, "CF", 2);
    assert_true(cf[0] == 1.5f && cf[1] == 2.5f);

    assert_int_equal(g->n_nodes, 4); /* the Constant is a value, not a node */
    assert_int_equal(g->opset, 13);
    assert_int_equal(g->in_c, 2);
    assert_int_equal(g->in_h, 4);
    assert_int_equal(g->in_w, 4);
    assert_int_equal(g->vals[g->input].dims[0], -1);
    assert_string_equal(g->vals[g->output].name, "y");
    assert_int_equal(strlen(g->sha256), 64);
    const ims_node *conv = find_node(g, IS_OP_CONV);
    assert_int_equal(conv->kernel[0], 1);
    assert_int_equal(conv->kernel[1], 1);
    assert_int_equal(conv->n_in, 3);
    const ims_node *clip = find_node(g, IS_OP_CLIP);
    assert_int_equal(clip->n_in, 1);
    assert_true(clip->clip_min == 0.0f && clip->clip_max == 6.0f);
    const ims_node *rs = find_node(g, IS_OP_RESHAPE);
    assert_int_equal(rs->n_in, 2);
    assert_int_equal(rs->in[1], ims_graph_find_value(g, "S"));
    ims_graph_free(g);
    free(buf);
}

/* Every proper prefix of the file is refused with a message naming the file. */
static void test_truncations_refused(void **state) {
    (void)state;
    uint8_t *buf;
    size_t n = build_model(&buf);
    const char *path = tmp_path("trunc.onnx");
    for (size_t len = 0; len < n; len++) {
        write_bytes(path, buf, len);
        ims_graph *g = NULL;
        ims_err e;
        imgsim_status s = ims_onnx_load(&g, path, &e);
        if (s == IMGSIM_OK) fail_msg("prefix of %zu of %zu bytes loaded", len, n);
        assert_null(g);
        assert_non_null(strstr(e.msg, path));
    }
    write_bytes(path, buf, n);
    ims_graph *g = NULL;
    assert_int_equal(ims_onnx_load(&g, path, NULL), IMGSIM_OK);
    ims_graph_free(g);
    free(buf);
}

/* Every single-bit flip loads or is refused; neither crashes nor leaks (see the ASan build). */
static void test_bit_flips_never_crash(void **state) {
    (void)state;
    uint8_t *buf;
    size_t n = build_model(&buf);
    const char *path = tmp_path("flip.onnx");
    int refused = 0, loaded = 0;
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            write_bytes(path, buf, n);
            buf[i] ^= (uint8_t)(1u << bit);
            ims_graph *g = NULL;
            ims_err e;
            e.msg[0] = 0;
            if (ims_onnx_load(&g, path, &e) == IMGSIM_OK) {
                loaded++;
                ims_graph_free(g);
            } else {
                refused++;
                assert_null(g);
                assert_true(e.msg[0] != 0);
            }
        }
    }
    assert_true(refused > 0);
    assert_true(loaded > 0); /* flips inside weight values are still valid models */
    free(buf);
}

/* The n-th allocation failing gives an error, never a crash or a leak, for every n. */
static void test_allocation_failures(void **state) {
    (void)state;
    uint8_t *buf;
    size_t n = build_model(&buf);
    const char *path = tmp_path("alloc.onnx");
    write_bytes(path, buf, n);
    int ok = 0;
    for (long k = 0; k < 10000 && !ok; k++) {
        ims_alloc_fail_after(k);
        ims_graph *g = NULL;
        ims_err e;
        imgsim_status s = ims_onnx_load(&g, path, &e);
        ims_alloc_fail_after(-1);
        if (s == IMGSIM_OK) {
            ok = 1;
            ims_graph_free(g);
        } else {
            assert_null(g);
        }
    }
    assert_true(ok);
    free(buf);
}

/* save -> load keeps names, shapes and weights bit for bit. */
static void test_save_load_roundtrip(void **state) {
    (void)state;
    uint8_t *buf;
    size_t n = build_model(&buf);
    const char *p1 = tmp_path("rt1.onnx"), *p2 = tmp_path("rt2.onnx");
    write_bytes(p1, buf, n);
    ims_graph *a = NULL, *b = NULL;
    ims_err e;
    if (ims_onnx_load(&a, p1, &e) != IMGSIM_OK) fail_msg("%s", e.msg);
    if (ims_onnx_save(a, p2, &e) != IMGSIM_OK) fail_msg("%s", e.msg);
    if (ims_onnx_load(&b, p2, &e) != IMGSIM_OK) fail_msg("%s", e.msg);
    assert_int_equal(b->n_nodes, a->n_nodes);
    static const char *const names[] = {"W", "B", "K"};
    for (int i = 0; i < 3; i++) {
        int va = ims_graph_find_value(a, names[i]), vb = ims_graph_find_value(b, names[i]);
        assert_true(va >= 0 && vb >= 0);
        assert_int_equal(a->vals[va].rank, b->vals[vb].rank);
        int64_t ne = ims_value_numel(&a->vals[va]);
        assert_int_equal(ne, ims_value_numel(&b->vals[vb]));
        assert_memory_equal(a->vals[va].data, b->vals[vb].data, (size_t)ne * sizeof(float));
    }
    const ims_node *ca = find_node(a, IS_OP_CLIP), *cb = find_node(b, IS_OP_CLIP);
    assert_true(ca->clip_min == cb->clip_min && ca->clip_max == cb->clip_max);
    assert_int_equal(b->in_c, 2);
    assert_int_equal(b->vals[b->input].dims[0], -1);
    ims_graph_free(a);
    ims_graph_free(b);
    free(buf);
}

/* A graph carrying fusion results (residual + ReLU, Clip activation) is written back as plain
 * ONNX: Conv -> Add -> Relu and Conv -> Clip(min, max), which loads again as such. */
static void test_save_fused_graph(void **state) {
    (void)state;
    ims_graph *g = NULL;
    assert_int_equal(ims_graph_new(&g, NULL), IMGSIM_OK);
    int64_t xd[] = {-1, 2, 4, 4}, wd[] = {2, 2, 1, 1};
    float w[] = {1, 2, 3, 4};
    int x = ims_graph_add_value(g, "x", 4, xd, NULL);
    int wv = ims_graph_add_value(g, "W", 4, wd, w);
    int y = ims_graph_add_value(g, "y", 0, NULL, NULL), z = ims_graph_add_value(g, "z", 0, NULL, NULL);
    int in1[] = {x, wv}, in2[] = {y, wv};
    ims_node *n = ims_graph_add_node(g, IS_OP_CONV, "c1", 2, in1, y);
    assert_non_null(n);
    n->kernel[0] = n->kernel[1] = 1;
    n->residual = x;
    n->act = IS_ACT_RELU;
    n = ims_graph_add_node(g, IS_OP_CONV, "c2", 2, in2, z);
    assert_non_null(n);
    n->kernel[0] = n->kernel[1] = 1;
    n->act = IS_ACT_CLIP;
    n->act_min = 0.0f;
    n->act_max = 6.0f;
    g->input = x;
    g->output = z;
    const char *path = tmp_path("fused.onnx");
    ims_err e;
    if (ims_onnx_save(g, path, &e) != IMGSIM_OK) fail_msg("%s", e.msg);
    ims_graph_free(g);

    g = NULL;
    if (ims_onnx_load(&g, path, &e) != IMGSIM_OK) fail_msg("%s", e.msg);
    static const ims_op ops[] = {IS_OP_CONV, IS_OP_ADD, IS_OP_RELU, IS_OP_CONV, IS_OP_CLIP};
    assert_int_equal(g->n_nodes, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(g->nodes[i].op, ops[i]);
    const ims_node *add = &g->nodes[1];
    assert_int_equal(add->in[0], g->nodes[0].out);
    assert_int_equal(add->in[1], g->input);
    assert_int_equal(g->nodes[2].in[0], add->out);
    assert_int_equal(g->nodes[3].in[0], g->nodes[2].out);
    assert_true(g->nodes[4].clip_min == 0.0f && g->nodes[4].clip_max == 6.0f);
    assert_int_equal(g->output, g->nodes[4].out);
    assert_string_equal(g->vals[g->output].name, "output");
    assert_string_equal(g->vals[g->input].name, "input");
    ims_graph_free(g);
}

int main(void) {
    const char *d = getenv("IMGSIM_TEST_DIR");
    snprintf(g_dir, sizeof g_dir, "%s/onnx_import", d ? d : "/tmp");
    if (ims_mkdir_p(g_dir, NULL) != IMGSIM_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversions_and_nodes), cmocka_unit_test(test_truncations_refused),
        cmocka_unit_test(test_bit_flips_never_crash), cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_save_load_roundtrip),   cmocka_unit_test(test_save_fused_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
