/*
 * test_cuda_engine_file.c: the CUDA engine file and plan without a GPU (runs in CI): serialise /
 * parse round trip, every single corrupted byte rejected by the checksum, truncation rejected,
 * key comparison naming the differing field, cache file names, atomic save/load; and the plan
 * compiled from a ResNet-18 graph (one conv step per live Conv node, fused GAP output, no
 * step's output overlapping its inputs in the arena, weights in OHWI layout).
 */
#define _XOPEN_SOURCE 700
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/cuda/cuda_plan.h"
#include "core/core.h"
#include "synth/model.h"

static void fill_key(ims_cuda_key *k) {
    memset(k, 0, sizeof *k);
    k->format_version = IS_CUDA_ENGINE_VERSION;
    strcpy(k->model_sha256, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    strcpy(k->layer, "flatten_out");
    k->in_c = 3, k->in_h = 8, k->in_w = 8;
    strcpy(k->gpu_name, "NVIDIA H100 80GB HBM3");
    k->cc_major = 9, k->cc_minor = 0;
    k->driver_version = 13000, k->runtime_version = 13000;
    k->cudnn_version = 91400, k->cublas_version = 130000;
    k->precision = IMGSIM_PREC_FP16;
    k->max_batch = 256;
}

/* A small hand-made plan: input -> conv -> output, with 1000 bytes of weights. */
static void small_plan(ims_cuda_plan *p) {
    memset(p, 0, sizeof *p);
    fill_key(&p->key);
    p->in_c = 3, p->in_h = 8, p->in_w = 8, p->dim = 16, p->elt = 2;
    p->n_tensors = 2;
    p->tensors = calloc(2, sizeof *p->tensors);
    p->tensors[0] = (ims_cuda_tensor){8, 8, 8, 0, 1024};
    p->tensors[1] = (ims_cuda_tensor){16, 1, 1, 1024, 256};
    p->arena_per_image = 1280;
    p->n_steps = 3;
    p->steps = calloc(3, sizeof *p->steps);
    for (int i = 0; i < 3; i++) {
        p->steps[i].in[0] = p->steps[i].in[1] = p->steps[i].out = -1;
        p->steps[i].w_off = p->steps[i].b_off = p->steps[i].bh_off = -1;
    }
    p->steps[0].kind = IS_CS_INPUT, p->steps[0].out = 0;
    p->steps[1] = (ims_cuda_step){.kind = IS_CS_CONV, .in = {0, -1}, .out = 1, .kh = 8, .kw = 8, .sh = 1, .sw = 1,
                                 .dh = 1, .dw = 1, .group = 1, .act = 1, .w_off = 0, .w_bytes = 512, .b_off = 512,
                                 .bh_off = 768, .algo = 1, .math = 1, .fused = 1, .ws_bytes = 4096, .tuned_ms = 0.5f};
    p->steps[2].kind = IS_CS_OUTPUT, p->steps[2].in[0] = 1, p->steps[2].gap = 1;
    p->ws_bytes = 4096;
    p->weights_bytes = 1000;
    p->weights = malloc(1000);
    for (int i = 0; i < 1000; i++) p->weights[i] = (uint8_t)(i * 7 + 3);
}

static void test_round_trip(void **state) {
    (void)state;
    ims_cuda_plan p, q;
    small_plan(&p);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(ims_cuda_plan_serialize(&p, &buf, &len, NULL), IMGSIM_OK);
    assert_int_equal(ims_cuda_plan_deserialize(&q, buf, len, "mem", NULL), IMGSIM_OK);
    char why[256];
    assert_true(ims_cuda_key_equal(&q.key, &p.key, why, sizeof why));
    assert_int_equal(q.n_tensors, 2);
    assert_int_equal(q.n_steps, 3);
    assert_memory_equal(q.tensors, p.tensors, 2 * sizeof *p.tensors);
    assert_int_equal(q.steps[1].algo, 1);
    assert_int_equal(q.steps[1].fused, 1);
    assert_int_equal(q.steps[1].kh, 8);
    assert_int_equal(q.steps[1].act, 1);
    assert_true(q.steps[1].tuned_ms == 0.5f);
    assert_int_equal(q.steps[2].gap, 1);
    assert_int_equal(q.weights_bytes, 1000);
    assert_memory_equal(q.weights, p.weights, 1000);
    assert_int_equal(q.arena_per_image, 1280);
    /* serialising the parsed plan gives the same bytes */
    uint8_t *buf2 = NULL;
    size_t len2 = 0;
    assert_int_equal(ims_cuda_plan_serialize(&q, &buf2, &len2, NULL), IMGSIM_OK);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    free(buf2);
    free(buf);
    ims_cuda_plan_free(&p);
    ims_cuda_plan_free(&q);
}

static void test_corruption_rejected(void **state) {
    (void)state;
    ims_cuda_plan p, q;
    small_plan(&p);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(ims_cuda_plan_serialize(&p, &buf, &len, NULL), IMGSIM_OK);
    /* flipping any single byte (header, key, plan, weights or the checksum) is detected */
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x40;
        ims_err e;
        imgsim_status st = ims_cuda_plan_deserialize(&q, buf, len, "f.engine", &e);
        assert_int_not_equal(st, IMGSIM_OK);
        assert_non_null(strstr(e.msg, "f.engine"));
        buf[i] ^= 0x40;
    }
    /* every truncation is detected */
    for (size_t n = 0; n < len; n += (n < 64 ? 1 : 97)) {
        ims_err e;
        assert_int_not_equal(ims_cuda_plan_deserialize(&q, buf, n, "t.engine", &e), IMGSIM_OK);
    }
    /* trailing garbage too */
    uint8_t *big = malloc(len + 5);
    memcpy(big, buf, len);
    memset(big + len, 0, 5);
    assert_int_not_equal(ims_cuda_plan_deserialize(&q, big, len + 5, "g.engine", NULL), IMGSIM_OK);
    free(big);
    free(buf);
    ims_cuda_plan_free(&p);
}

/* Files over several 4 MiB checksum chunks: a flipped byte in any chunk is caught. */
static void test_multichunk(void **state) {
    (void)state;
    ims_cuda_plan p, q;
    small_plan(&p);
    free(p.weights);
    p.weights_bytes = (int64_t)9 << 20;
    p.weights = malloc((size_t)p.weights_bytes);
    for (int64_t i = 0; i < p.weights_bytes; i++) p.weights[i] = (uint8_t)(i * 131 + (i >> 12));
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(ims_cuda_plan_serialize(&p, &buf, &len, NULL), IMGSIM_OK);
    assert_int_equal(ims_cuda_plan_deserialize(&q, buf, len, "big", NULL), IMGSIM_OK);
    assert_memory_equal(q.weights, p.weights, (size_t)p.weights_bytes);
    ims_cuda_plan_free(&q);
    size_t at[5] = {100, ((size_t)4 << 20) - 1, (size_t)4 << 20, ((size_t)8 << 20) + 12345, len - 33};
    for (int k = 0; k < 5; k++) {
        buf[at[k]] ^= 1;
        assert_int_equal(ims_cuda_plan_deserialize(&q, buf, len, "big", NULL), IMGSIM_ERR_FORMAT);
        buf[at[k]] ^= 1;
    }
    free(buf);
    ims_cuda_plan_free(&p);
}

/* A plan whose checksum is right but whose indices point outside the plan is refused too. */
static void test_bad_indices_rejected(void **state) {
    (void)state;
    ims_cuda_plan p, q;
    small_plan(&p);
    p.steps[1].in[0] = 5; /* no such tensor */
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(ims_cuda_plan_serialize(&p, &buf, &len, NULL), IMGSIM_OK);
    assert_int_equal(ims_cuda_plan_deserialize(&q, buf, len, "x", NULL), IMGSIM_ERR_FORMAT);
    free(buf);
    p.steps[1].in[0] = 0;
    p.steps[1].w_bytes = 5000; /* past the weights */
    assert_int_equal(ims_cuda_plan_serialize(&p, &buf, &len, NULL), IMGSIM_OK);
    assert_int_equal(ims_cuda_plan_deserialize(&q, buf, len, "x", NULL), IMGSIM_ERR_FORMAT);
    free(buf);
    ims_cuda_plan_free(&p);
}

static void test_key_mismatch(void **state) {
    (void)state;
    ims_cuda_key a, b;
    char why[256];
    fill_key(&a);
    fill_key(&b);
    assert_true(ims_cuda_key_equal(&a, &b, why, sizeof why));
    b.cc_minor = 9;
    strcpy(b.gpu_name, "NVIDIA L4");
    assert_false(ims_cuda_key_equal(&a, &b, why, sizeof why));
    assert_non_null(strstr(why, "NVIDIA L4"));
    assert_non_null(strstr(why, "sm_90"));
    fill_key(&b);
    b.precision = IMGSIM_PREC_TF32;
    assert_false(ims_cuda_key_equal(&a, &b, why, sizeof why));
    assert_non_null(strstr(why, "precision"));
    fill_key(&b);
    b.model_sha256[0] = 'f';
    assert_false(ims_cuda_key_equal(&a, &b, why, sizeof why));
    assert_non_null(strstr(why, "model"));
    fill_key(&b);
    b.cudnn_version = 91900;
    assert_false(ims_cuda_key_equal(&a, &b, why, sizeof why));
    assert_non_null(strstr(why, "cuDNN"));
    fill_key(&b);
    b.max_batch = 32;
    assert_false(ims_cuda_key_equal(&a, &b, why, sizeof why));
    fill_key(&b);
    b.in_h = 16;
    assert_false(ims_cuda_key_equal(&a, &b, why, sizeof why));
    assert_non_null(strstr(why, "input"));
    fill_key(&b);
    strcpy(b.layer, "other");
    assert_false(ims_cuda_key_equal(&a, &b, why, sizeof why));
    /* the cache file name depends on every key field */
    char *p1 = ims_cuda_cache_path("/c", &a);
    char *p2 = ims_cuda_cache_path("/c", &b);
    char *p3 = ims_cuda_cache_path("/c", &a);
    assert_string_not_equal(p1, p2);
    assert_string_equal(p1, p3);
    assert_non_null(strstr(p1, ".engine"));
    free(p1), free(p2), free(p3);
}

static void test_save_load_file(void **state) {
    (void)state;
    const char *dir = getenv("IMGSIM_TEST_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/cuda_engine_file/sub/a.engine", dir ? dir : "/tmp");
    ims_cuda_plan p, q;
    small_plan(&p);
    assert_int_equal(ims_cuda_plan_save(&p, path, NULL), IMGSIM_OK);
    assert_int_equal(ims_cuda_plan_load(&q, path, NULL), IMGSIM_OK);
    assert_memory_equal(q.weights, p.weights, 1000);
    ims_cuda_plan_free(&q);
    /* corrupt one byte in the middle of the file on disk */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 200, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(ch ^ 1, f);
    fclose(f);
    ims_err e;
    assert_int_equal(ims_cuda_plan_load(&q, path, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "checksum"));
    /* truncate it */
    assert_int_equal(ims_cuda_plan_save(&p, path, NULL), IMGSIM_OK);
    assert_int_equal(truncate(path, 100), 0);
    assert_int_not_equal(ims_cuda_plan_load(&q, path, NULL), IMGSIM_OK);
    unlink(path);
    ims_cuda_plan_free(&p);
}

/* Ranges [a, a+as) and [b, b+bs) overlap. */
static int overlap(int64_t a, int64_t as, int64_t b, int64_t bs) { return a < b + bs && b < a + as; }

static void test_compile_resnet18(void **state) {
    (void)state;
    ims_graph *g = NULL;
    ims_err e;
    assert_int_equal(ims_graph_build_resnet(&g, "resnet18", 1, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_select_output(g, NULL, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_optimize(g, &e), IMGSIM_OK);
    int convs = 0, residual = 0;
    const ims_node *first = NULL;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead || g->nodes[i].op != IS_OP_CONV) continue;
        if (!first) first = &g->nodes[i];
        convs++;
        residual += g->nodes[i].residual >= 0;
    }
    assert_int_equal(convs, 20);
    for (int elt = 2; elt <= 4; elt += 2) {
        ims_cuda_plan p;
        assert_int_equal(ims_cuda_compile(&p, g, elt, &e), IMGSIM_OK);
        int pconv = 0, pres = 0;
        for (int i = 0; i < p.n_steps; i++) {
            const ims_cuda_step *s = &p.steps[i];
            if (s->kind == IS_CS_CONV) {
                pconv++;
                pres += s->in[1] >= 0;
            }
            /* a step's output never shares arena bytes with its inputs */
            for (int j = 0; j < 2; j++) {
                if (s->in[j] < 0 || s->out < 0 || s->in[j] == s->out) continue;
                const ims_cuda_tensor *a = &p.tensors[s->in[j]], *b = &p.tensors[s->out];
                assert_false(overlap(a->offset, a->size, b->offset, b->size));
            }
        }
        assert_int_equal(pconv, convs);
        assert_int_equal(pres, residual);
        assert_int_equal(p.steps[p.n_steps - 1].kind, IS_CS_OUTPUT);
        assert_int_equal(p.steps[p.n_steps - 1].gap, 1); /* GAP fused into the output */
        assert_int_equal(p.dim, 512);
        /* the stem conv (7x7/2 on RGB) runs as a 4x4/1 conv over a space-to-depth input:
         * 4 * 3 = 12 channels (16 for fp16), 112 + 4 - 1 = 115 pixels a side */
        const ims_cuda_tensor *tin = &p.tensors[p.steps[0].out];
        int icp = elt == 2 ? 16 : 12;
        assert_int_equal(tin->c, icp);
        assert_int_equal(tin->h, 115);
        assert_int_equal(p.steps[0].sh, 2);
        assert_int_equal(p.steps[0].pt, 3);
        const ims_cuda_step *c1 = NULL;
        for (int i = 0; i < p.n_steps && !c1; i++)
            if (p.steps[i].kind == IS_CS_CONV) c1 = &p.steps[i];
        assert_int_equal(c1->kh, 4);
        assert_int_equal(c1->sh, 1);
        assert_int_equal(c1->pt, 0);
        /* W'[o][ay][ax][(by*2+bx)*3 + c] == W[o][c][2ay+by][2ax+bx]: o=1 ay=1 ax=1 by=0 bx=1 c=1 */
        const float *W = g->vals[first->in[1]].data;
        float want = W[((1 * 3 + 1) * 7 + 2) * 7 + 3];
        int64_t at[3] = {((1 * 4 + 1) * 4 + 1) * icp + (0 * 2 + 1) * 3 + 1, /* the entry above */
                         ((1 * 4 + 3) * 4 + 0) * icp + (1 * 2 + 0) * 3 + 0, /* ky = 7: zero */
                         ((1 * 4 + 1) * 4 + 1) * icp + 11};                  /* c=2 by=1 bx=1: W[1][2][3][3] */
        float got[3];
        for (int k = 0; k < 3; k++) {
            if (elt == 2) {
                uint16_t h;
                memcpy(&h, p.weights + c1->w_off + at[k] * 2, 2);
                got[k] = ims_f16_to_f32(h);
            } else {
                memcpy(&got[k], p.weights + c1->w_off + at[k] * 4, 4);
            }
        }
        float want2 = W[((1 * 3 + 2) * 7 + 3) * 7 + 3];
        assert_true(fabsf(got[0] - want) <= 1e-3f * (1 + fabsf(want)));
        assert_true(got[1] == 0.f);
        assert_true(fabsf(got[2] - want2) <= 1e-3f * (1 + fabsf(want2)));
        if (elt == 2) { /* padding channels 12..15 are zero */
            uint16_t h;
            memcpy(&h, p.weights + c1->w_off + (((1 * 4 + 1) * 4 + 1) * icp + 13) * 2, 2);
            assert_int_equal(h, 0);
        }
        /* the compiled plan survives the file format */
        uint8_t *buf = NULL;
        size_t len = 0;
        fill_key(&p.key);
        p.key.in_c = p.in_c, p.key.in_h = p.in_h, p.key.in_w = p.in_w;
        assert_int_equal(ims_cuda_plan_serialize(&p, &buf, &len, NULL), IMGSIM_OK);
        ims_cuda_plan q;
        assert_int_equal(ims_cuda_plan_deserialize(&q, buf, len, "mem", &e), IMGSIM_OK);
        assert_int_equal(q.n_steps, p.n_steps);
        free(buf);
        ims_cuda_plan_free(&q);
        ims_cuda_plan_free(&p);
    }
    ims_graph_free(g);
}

/* A constant filled with a deterministic pattern. */
static int cst(ims_graph *g, const char *name, int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    float *buf = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) buf[i] = (float)((i * 37) % 17) / 17.f - 0.5f;
    int v = ims_graph_add_value(g, name, rank, dims, buf);
    free(buf);
    assert_true(v >= 0);
    return v;
}

static int act_value(ims_graph *g, const char *name) {
    int v = ims_graph_add_value(g, name, 0, NULL, NULL);
    assert_true(v >= 0);
    return v;
}

/* The non-ResNet ops: squeeze-excitation (GAP, 1x1 conv, Sigmoid, broadcast Mul), channel Concat,
 * MaxPool, a Flatten of a spatial map (a real NCHW-order step) and a Gemm head. */
static void test_compile_other_ops(void **state) {
    (void)state;
    ims_graph *g = NULL;
    ims_err e;
    assert_int_equal(ims_graph_new(&g, &e), IMGSIM_OK);
    int64_t xd[4] = {-1, 3, 8, 8};
    g->input = ims_graph_add_value(g, "x", 4, xd, NULL);
    int64_t w1d[4] = {8, 3, 3, 3}, b1d[1] = {8}, w2d[4] = {8, 8, 1, 1}, fcd[2] = {10, 256}, fcb[1] = {10};
    int w1 = cst(g, "w1", 4, w1d), b1 = cst(g, "b1", 1, b1d), w2 = cst(g, "w2", 4, w2d);
    int fw = cst(g, "fcw", 2, fcd), fb = cst(g, "fcb", 1, fcb);
    int c1 = act_value(g, "c1"), r1 = act_value(g, "r1"), gp = act_value(g, "gap"), c2 = act_value(g, "c2");
    int sg = act_value(g, "sig"), ml = act_value(g, "mul"), ct = act_value(g, "cat"), mp = act_value(g, "mp");
    int fl = act_value(g, "flat"), out = act_value(g, "out");
    ims_node *n = ims_graph_add_node(g, IS_OP_CONV, "conv1", 3, (int[]){g->input, w1, b1}, c1);
    n->kernel[0] = n->kernel[1] = 3;
    n->pad[0] = n->pad[1] = n->pad[2] = n->pad[3] = 1;
    assert_non_null(ims_graph_add_node(g, IS_OP_RELU, "relu1", 1, (int[]){c1}, r1));
    assert_non_null(ims_graph_add_node(g, IS_OP_GLOBALAVGPOOL, "gap", 1, (int[]){r1}, gp));
    n = ims_graph_add_node(g, IS_OP_CONV, "conv2", 2, (int[]){gp, w2}, c2);
    n->kernel[0] = n->kernel[1] = 1;
    assert_non_null(ims_graph_add_node(g, IS_OP_SIGMOID, "sig", 1, (int[]){c2}, sg));
    assert_non_null(ims_graph_add_node(g, IS_OP_MUL, "mul", 2, (int[]){sg, r1}, ml)); /* broadcast first */
    assert_non_null(n = ims_graph_add_node(g, IS_OP_CONCAT, "cat", 2, (int[]){ml, r1}, ct));
    n->axis = 1;
    assert_non_null(n = ims_graph_add_node(g, IS_OP_MAXPOOL, "mp", 1, (int[]){ct}, mp));
    n->kernel[0] = n->kernel[1] = 2;
    n->stride[0] = n->stride[1] = 2;
    assert_non_null(n = ims_graph_add_node(g, IS_OP_FLATTEN, "flat", 1, (int[]){mp}, fl));
    n->axis = 1;
    assert_non_null(n = ims_graph_add_node(g, IS_OP_GEMM, "fc", 3, (int[]){fl, fw, fb}, out));
    n->trans_b = 1;
    g->output = out;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_infer_shapes(g, &e), IMGSIM_OK);
    assert_int_equal(ims_graph_select_output(g, "out", &e), IMGSIM_OK);
    assert_int_equal(ims_graph_optimize(g, &e), IMGSIM_OK);
    for (int elt = 2; elt <= 4; elt += 2) {
        ims_cuda_plan p;
        imgsim_status st = ims_cuda_compile(&p, g, elt, &e);
        if (st) fail_msg("compile: %s", e.msg);
        int count[IS_CS_COUNT] = {0};
        for (int i = 0; i < p.n_steps; i++) {
            const ims_cuda_step *s = &p.steps[i];
            count[s->kind]++;
            if (s->kind == IS_CS_MUL) { /* the broadcast operand is second */
                assert_int_equal(p.tensors[s->in[0]].h, 8);
                assert_int_equal(p.tensors[s->in[1]].h, 1);
            }
            if (s->kind == IS_CS_CONCAT) assert_true(s->coff == 0 || s->coff == 8);
            if (s->kind == IS_CS_FLATTEN) assert_int_equal(p.tensors[s->out].c, 256);
            for (int j = 0; j < 2; j++) {
                if (s->in[j] < 0 || s->out < 0 || s->in[j] == s->out) continue;
                const ims_cuda_tensor *a = &p.tensors[s->in[j]], *b = &p.tensors[s->out];
                assert_false(overlap(a->offset, a->size, b->offset, b->size));
            }
        }
        assert_int_equal(count[IS_CS_CONV], 2);
        assert_int_equal(count[IS_CS_GAP], 1); /* read by the conv, not fused into the output */
        assert_int_equal(count[IS_CS_SIGMOID], 1);
        assert_int_equal(count[IS_CS_MUL], 1);
        assert_int_equal(count[IS_CS_CONCAT], 2);
        assert_int_equal(count[IS_CS_MAXPOOL], 1);
        assert_int_equal(count[IS_CS_FLATTEN], 1);
        assert_int_equal(count[IS_CS_GEMM], 1);
        assert_int_equal(count[IS_CS_OUTPUT], 1);
        assert_int_equal(p.dim, 10);
        /* stride-1 stem: no space-to-depth; fp16 pads the 3 input channels to 8 */
        assert_int_equal(p.steps[0].sh, 1); /* 2 would mean space-to-depth */
        assert_int_equal(p.tensors[p.steps[0].out].c, elt == 2 ? 8 : 3);
        ims_cuda_plan_free(&p);
    }
    ims_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),          cmocka_unit_test(test_corruption_rejected),
        cmocka_unit_test(test_bad_indices_rejected), cmocka_unit_test(test_key_mismatch),
        cmocka_unit_test(test_save_load_file),      cmocka_unit_test(test_compile_resnet18),
        cmocka_unit_test(test_multichunk),         cmocka_unit_test(test_compile_other_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
