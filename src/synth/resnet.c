/*
 * resnet.c: ims_graph_build_resnet, a torchvision-layout ResNet built in memory with random
 * weights, for `imgsim model init`, demos and tests that need no PyTorch.
 *
 * Layout (torchvision.models.resnet, v1.5: the stride sits in the 3x3 conv of a Bottleneck):
 *   conv1 7x7/2 (64) -> bn1 -> relu -> maxpool 3x3/2 pad 1 -> layer1..layer4 -> avgpool (global)
 *   -> flatten -> fc (Gemm, transB = 1, 1000 classes)
 *   BasicBlock (resnet18/34):  conv3x3(stride) bn relu conv3x3 bn (+ downsample) add relu
 *   Bottleneck (resnet50/101/152): conv1x1 bn relu conv3x3(stride) bn relu conv1x1(x4) bn
 *                                   (+ downsample) add relu
 *   downsample = conv1x1(stride) bn, where the stride or the width changes.
 * Initialisation as torchvision's: conv weights Kaiming-normal (mode fan_out, gain sqrt(2):
 * std = sqrt(2 / (OC * KH * KW))); BN gamma 1, beta 0, running mean 0, var 1, eps 1e-5; fc weight
 * uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) as torch.nn.Linear's default; fc bias 0.
 * Random numbers: splitmix64 from the seed, normals by Box-Muller; deterministic for a seed.
 * Names follow torch.onnx.export (torch 1.13): nodes "/layer1/layer1.0/conv1/Conv", values
 * "<node>_output_0", weights "layer1.0.conv1.weight", graph input "input", output "output".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth/model.h"

#define RN_TWO_PI 6.283185307179586476925286766559

typedef struct rn_builder {
    ims_graph *g;
    uint64_t rng;   /* splitmix64 state */
    int have_spare; /* Box-Muller's second normal */
    double spare;
    int failed; /* an allocation failed */
} rn_builder;

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(rn_builder *b) {
    return (double)(splitmix64(&b->rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller, both values used). */
static double normal(rn_builder *b) {
    if (b->have_spare) {
        b->have_spare = 0;
        return b->spare;
    }
    double u1 = 1.0 - uniform01(b); /* (0, 1]: log is finite */
    double u2 = uniform01(b);
    double r = sqrt(-2.0 * log(u1));
    b->spare = r * sin(RN_TWO_PI * u2);
    b->have_spare = 1;
    return r * cos(RN_TWO_PI * u2);
}

/* A constant value; returns its index or -1 (failed set). */
static int add_const(rn_builder *b, const char *name, int rank, const int64_t *dims, const float *data) {
    if (b->failed) return -1;
    int v = ims_graph_add_value(b->g, name, rank, dims, data);
    if (v < 0) b->failed = 1;
    return v;
}

/* Adds node op "<scope>/<opname>" reading in[] and writing a new activation
 * "<scope>/<opname>_output_0" (or out_name when given). Returns the node or NULL. */
static ims_node *add_op(rn_builder *b, ims_op op, const char *scope, int n_in, const int *in,
                       const char *out_name) {
    if (b->failed) return NULL;
    for (int k = 0; k < n_in; k++)
        if (in[k] < 0) return NULL;
    char node_name[256], val_name[280];
    snprintf(node_name, sizeof node_name, "%s/%s", scope, ims_op_name(op));
    snprintf(val_name, sizeof val_name, "%s_output_0", node_name);
    int out = ims_graph_add_value(b->g, out_name ? out_name : val_name, 0, NULL, NULL);
    ims_node *n = out >= 0 ? ims_graph_add_node(b->g, op, node_name, n_in, in, out) : NULL;
    if (!n) b->failed = 1;
    return n;
}

static int out_of(ims_node *n) {
    return n ? n->out : -1;
}

/* Conv without bias: x [N, ic, H, W] -> [N, oc, H', W'], weight "<param>.weight" [oc, ic, k, k]
 * drawn from N(0, 2 / (oc * k * k)). */
static int conv(rn_builder *b, int x, const char *scope, const char *param, int ic, int oc, int k, int stride,
                int pad) {
    if (b->failed || x < 0) return -1;
    size_t n = (size_t)oc * (size_t)ic * (size_t)k * (size_t)k;
    float *w = ims_malloc_array(n, sizeof(float));
    if (!w) {
        b->failed = 1;
        return -1;
    }
    double std = sqrt(2.0 / ((double)oc * k * k));
    for (size_t i = 0; i < n; i++)
        w[i] = (float)(normal(b) * std);
    char name[256];
    snprintf(name, sizeof name, "%s.weight", param);
    int64_t dims[4] = {oc, ic, k, k};
    int wv = add_const(b, name, 4, dims, w);
    free(w);
    if (wv < 0) return -1;
    ims_node *nd = add_op(b, IS_OP_CONV, scope, 2, (int[]){x, wv}, NULL);
    if (!nd) return -1;
    nd->kernel[0] = nd->kernel[1] = k;
    nd->stride[0] = nd->stride[1] = stride;
    for (int i = 0; i < 4; i++)
        nd->pad[i] = pad;
    return nd->out;
}

/* BatchNormalization over c channels with torchvision's initial parameters. */
static int batchnorm(rn_builder *b, int x, const char *scope, const char *param, int c) {
    if (b->failed || x < 0) return -1;
    float *ones = ims_malloc_array((size_t)c, sizeof(float)), *zeros = ims_calloc((size_t)c, sizeof(float));
    if (!ones || !zeros) {
        free(ones);
        free(zeros);
        b->failed = 1;
        return -1;
    }
    for (int i = 0; i < c; i++)
        ones[i] = 1.0f;
    static const char *suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    int in[5] = {x, -1, -1, -1, -1};
    int64_t dims[1] = {c};
    for (int k = 0; k < 4; k++) {
        char name[256];
        snprintf(name, sizeof name, "%s.%s", param, suffix[k]);
        in[k + 1] = add_const(b, name, 1, dims, (k == 0 || k == 3) ? ones : zeros);
    }
    free(ones);
    free(zeros);
    ims_node *nd = add_op(b, IS_OP_BATCHNORM, scope, 5, in, NULL);
    if (!nd) return -1;
    nd->epsilon = 1e-5f;
    return nd->out;
}

static int relu(rn_builder *b, int x, const char *scope) {
    return out_of(add_op(b, IS_OP_RELU, scope, 1, (int[]){x}, NULL));
}

/* One residual block (torchvision BasicBlock or Bottleneck) of layer li, index bi. */
static int block(rn_builder *b, int x, int li, int bi, int bottleneck, int inplanes, int planes, int stride) {
    char sc[128], pa[128], bs[96], bp[96];
    snprintf(bs, sizeof bs, "/layer%d/layer%d.%d", li, li, bi);
    snprintf(bp, sizeof bp, "layer%d.%d", li, bi);
    int expansion = bottleneck ? 4 : 1, outc = planes * expansion;
    int y;
#define SC(s) (snprintf(sc, sizeof sc, "%s/%s", bs, s), sc)
#define PA(s) (snprintf(pa, sizeof pa, "%s.%s", bp, s), pa)
    if (bottleneck) {
        y = conv(b, x, SC("conv1"), PA("conv1"), inplanes, planes, 1, 1, 0);
        y = batchnorm(b, y, SC("bn1"), PA("bn1"), planes);
        y = relu(b, y, SC("relu"));
        y = conv(b, y, SC("conv2"), PA("conv2"), planes, planes, 3, stride, 1);
        y = batchnorm(b, y, SC("bn2"), PA("bn2"), planes);
        y = relu(b, y, SC("relu_1"));
        y = conv(b, y, SC("conv3"), PA("conv3"), planes, outc, 1, 1, 0);
        y = batchnorm(b, y, SC("bn3"), PA("bn3"), outc);
    } else {
        y = conv(b, x, SC("conv1"), PA("conv1"), inplanes, planes, 3, stride, 1);
        y = batchnorm(b, y, SC("bn1"), PA("bn1"), planes);
        y = relu(b, y, SC("relu"));
        y = conv(b, y, SC("conv2"), PA("conv2"), planes, planes, 3, 1, 1);
        y = batchnorm(b, y, SC("bn2"), PA("bn2"), planes);
    }
    int identity = x;
    if (stride != 1 || inplanes != outc) {
        identity =
            conv(b, x, SC("downsample/downsample.0"), PA("downsample.0"), inplanes, outc, 1, stride, 0);
        identity = batchnorm(b, identity, SC("downsample/downsample.1"), PA("downsample.1"), outc);
    }
    y = out_of(add_op(b, IS_OP_ADD, bs, 2, (int[]){y, identity}, NULL));
    y = relu(b, y, SC(bottleneck ? "relu_2" : "relu_1"));
#undef SC
#undef PA
    return y;
}

imgsim_status ims_graph_build_resnet(ims_graph **out, const char *arch, uint64_t seed, ims_err *e) {
    static const struct {
        const char *name;
        int bottleneck;
        int blocks[4];
    } archs[] = {
        {"resnet18", 0, {2, 2, 2, 2}},   {"resnet34", 0, {3, 4, 6, 3}},   {"resnet50", 1, {3, 4, 6, 3}},
        {"resnet101", 1, {3, 4, 23, 3}}, {"resnet152", 1, {3, 8, 36, 3}},
    };
    *out = NULL;
    int ai = -1;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (arch && strcmp(arch, archs[i].name) == 0) ai = (int)i;
    if (ai < 0)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                       "unknown architecture '%.100s' (resnet18, resnet34, resnet50, resnet101, resnet152)",
                       arch ? arch : "(null)");
    rn_builder b = {0};
    b.rng = seed;
    imgsim_status st = ims_graph_new(&b.g, e);
    if (st != IMGSIM_OK) return st;
    ims_graph *g = b.g;
    g->opset = 13;

    int64_t in_dims[4] = {-1, 3, 224, 224};
    g->input = ims_graph_add_value(g, "input", 4, in_dims, NULL);
    if (g->input < 0) b.failed = 1;

    /* stem: [N, 3, 224, 224] -> [N, 64, 56, 56] */
    int x = conv(&b, g->input, "/conv1", "conv1", 3, 64, 7, 2, 3);
    x = batchnorm(&b, x, "/bn1", "bn1", 64);
    x = relu(&b, x, "/relu");
    ims_node *mp = add_op(&b, IS_OP_MAXPOOL, "/maxpool", 1, (int[]){x}, NULL);
    if (mp) {
        mp->kernel[0] = mp->kernel[1] = 3;
        mp->stride[0] = mp->stride[1] = 2;
        for (int i = 0; i < 4; i++)
            mp->pad[i] = 1;
    }
    x = out_of(mp);

    /* layer1..4: widths 64, 128, 256, 512 (x4 for bottlenecks), strides 1, 2, 2, 2 */
    int bottleneck = archs[ai].bottleneck, expansion = bottleneck ? 4 : 1, inplanes = 64;
    for (int li = 0; li < 4; li++) {
        int planes = 64 << li;
        for (int bi = 0; bi < archs[ai].blocks[li]; bi++) {
            int stride = (li > 0 && bi == 0) ? 2 : 1;
            x = block(&b, x, li + 1, bi, bottleneck, inplanes, planes, stride);
            inplanes = planes * expansion;
        }
    }

    /* head: [N, C, 7, 7] -> GlobalAveragePool -> Flatten -> Gemm [N, 1000] */
    x = out_of(add_op(&b, IS_OP_GLOBALAVGPOOL, "/avgpool", 1, (int[]){x}, NULL));
    ims_node *fl = add_op(&b, IS_OP_FLATTEN, "", 1, (int[]){x}, NULL);
    if (fl) fl->axis = 1;
    x = out_of(fl);
    int fan_in = inplanes, classes = 1000;
    float *fw = ims_malloc_array((size_t)classes * (size_t)fan_in, sizeof(float));
    float *fb = ims_calloc((size_t)classes, sizeof(float));
    int wv = -1, bv = -1;
    if (fw && fb) {
        double bound = 1.0 / sqrt((double)fan_in);
        for (size_t i = 0; i < (size_t)classes * (size_t)fan_in; i++)
            fw[i] = (float)((2.0 * uniform01(&b) - 1.0) * bound);
        wv = add_const(&b, "fc.weight", 2, (int64_t[]){classes, fan_in}, fw);
        bv = add_const(&b, "fc.bias", 1, (int64_t[]){classes}, fb);
    } else {
        b.failed = 1;
    }
    free(fw);
    free(fb);
    ims_node *fc = add_op(&b, IS_OP_GEMM, "/fc", 3, (int[]){x, wv, bv}, "output");
    if (fc) {
        fc->trans_b = 1;
        fc->alpha = fc->beta = 1.0f;
    }
    if (b.failed || !fc) {
        ims_graph_free(g);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory building %s", archs[ai].name);
    }
    g->output = fc->out;
    if ((st = ims_graph_link(g, e)) != IMGSIM_OK || (st = ims_graph_infer_shapes(g, e)) != IMGSIM_OK) {
        ims_graph_free(g);
        return st;
    }
    *out = g;
    return IMGSIM_OK;
}
