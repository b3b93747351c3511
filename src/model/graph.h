/*
 * graph.h: imgsim's graph IR, what ONNX import produces, the passes optimise and every backend
 * executes.
 *
 * A graph is a list of values (tensors) and a list of nodes in topological order. Each node has
 * one output value. Activation values have the batch as dims[0], stored as -1 (symbolic); all
 * other dims are concrete after ims_graph_infer_shapes. Constant values (initializers, Constant
 * nodes) hold float32 data; their dims are all concrete.
 *
 * Layout: activations are NCHW in the IR (ONNX's convention); backends choose their own layouts.
 * Conv weights are [OC, IC/group, KH, KW]; Gemm B is as in ONNX ([K, N], or [N, K] with transB).
 */
#ifndef IMGSIM_GRAPH_H
#define IMGSIM_GRAPH_H

#include <stdint.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IS_MAX_RANK 8
#define IS_MAX_INPUTS 16 /* inputs per node; a longer ONNX Concat is imported as a chain of Concats */
/* In a constant computed from shapes (IS_OP_SHAPE and the arithmetic after it), the batch size,
 * which is known only at run time: -2^24, a float that shape arithmetic cannot produce from real
 * sizes without being refused (an operation on it must give it back unchanged, as * 1 or / 1
 * do). Reshape takes it as its first entry: keep the batch. */
#define IS_BATCH_DIM (-16777216.0f)

typedef enum ims_op {
    IS_OP_CONV = 0,
    IS_OP_BATCHNORM,
    IS_OP_RELU,
    IS_OP_CLIP,
    IS_OP_ADD,
    IS_OP_MUL,
    IS_OP_SIGMOID,
    IS_OP_MAXPOOL,
    IS_OP_AVGPOOL,
    IS_OP_GLOBALAVGPOOL,
    IS_OP_FLATTEN,
    IS_OP_RESHAPE,
    IS_OP_GEMM,
    IS_OP_MATMUL,
    IS_OP_CONCAT,
    IS_OP_IDENTITY,
    IS_OP_HARDSIGMOID, /* max(0, min(1, alpha * x + beta)) (alpha, beta in the node's fields) */
    IS_OP_HARDSWISH,   /* x * max(0, min(1, x / 6 + 1 / 2)) */
    IS_OP_SUB,         /* a - b, numpy broadcasting (like Add) */
    IS_OP_DIV,         /* a / b; on integer constants (shapes) truncating, as ONNX's int64 Div */
    IS_OP_TRANSPOSE,   /* output axis k is input axis perm[k]; perm[0] = 0 for activations */
    IS_OP_SLICE,       /* inputs data, starts, ends[, axes[, steps]] (constants by shape inference);
                          on an activation: step 1, the batch whole; offset[] holds the starts */
    IS_OP_REDUCEMEAN,  /* mean over axes perm[0 .. n_perm - 1] (never the batch), keepdims */
    IS_OP_POW,         /* a ^ b, b a constant scalar on activations */
    IS_OP_SQRT,
    IS_OP_ERF,         /* only inside GELU (ims_graph_optimize fuses x * 0.5 * (1 + erf(x / sqrt 2))) */
    IS_OP_GELU,        /* x * Phi(x), the erf form */
    IS_OP_LAYERNORM,   /* over the last axis: (x - mean) / sqrt(var + epsilon) * scale + bias */
    /* Shape arithmetic: evaluated by shape inference on constants (the node is then marked dead
     * and its output becomes a constant, see ims_graph_infer_shapes); never given to a backend. */
    IS_OP_SHAPE,       /* the input's dims as integers, the batch as IS_BATCH_DIM */
    IS_OP_GATHER,      /* constant data, constant indices, on axis */
    IS_OP_UNSQUEEZE,   /* axes in perm[0 .. n_perm - 1] (non-negative in the output) */
    IS_OP_SQUEEZE,     /* axes in perm[0 .. n_perm - 1]; n_perm 0: every axis of size 1 */
    IS_OP_CAST,        /* to: 1 float (float16/double too), 0 an integer type (truncates) */
    /* Transformers (attention.c, passes.c). */
    IS_OP_SOFTMAX,     /* softmax over the last axis (axis) */
    IS_OP_ATTENTION,   /* packed qkv [N, L, 3E] -> [N, L, E]: per head h (heads of E / heads channels,
                          q, k, v at channel offsets 0, E, 2E), softmax(alpha * q k^T) v, the heads
                          side by side in the output's channels (nn.MultiheadAttention's layout) */
    IS_OP_SWISH,       /* x * sigmoid(alpha * x) (alpha 1.702: CLIP's quick GELU) */
    IS_OP_EXPAND,      /* a constant [1, ...] repeated over the batch: [N, ...] (class tokens) */
    IS_OP_CONSTANTOFSHAPE, /* shape arithmetic: a constant of shape in[0] filled with alpha */
    IS_OP_EQUAL,       /* shape arithmetic: a == b (1 or 0) */
    IS_OP_WHERE,       /* shape arithmetic: cond ? a : b */
    IS_OP_MOD,         /* shape arithmetic: a mod b (fmod: C's fmod; else the divisor's sign, integers) */
    IS_OP_COUNT
} ims_op;

const char *ims_op_name(ims_op op);

/* Fused activation applied after a node's main computation (and after the fused residual add). */
typedef enum ims_act {
    IS_ACT_NONE = 0,
    IS_ACT_RELU,
    IS_ACT_CLIP, /* min(max(x, clip_min), clip_max); ReLU6 = CLIP(0, 6) */
    IS_ACT_GELU  /* x * Phi(x) (token MatMuls only, fuse_tokens.c) */
} ims_act;

typedef struct ims_value {
    char *name;
    int rank;
    int64_t dims[IS_MAX_RANK]; /* dims[0] == -1: the batch axis of an activation */
    float *data;               /* constants only: float32, row-major, owned; NULL for activations */
    int is_int;                /* constants only: integers (an integer tensor in the file, or shape
                                  arithmetic): Div truncates, Cast to float clears it */
    /* Explicit quantisation (a QDQ model, onnx/qdq.c): */
    float q_scale;             /* activations: the int8 scale its QuantizeLinear/DequantizeLinear pair
                                  gives it (real = q_scale * q), 0 where none */
    int q_unsigned;            /* with q_scale: the pair's range is [0, 255] q_scale (uint8, or int8
                                  with zero point -128) rather than [-128, 127] q_scale */
    int q_zero;                /* with q_unsigned: the uint8 zero point of an asymmetric pair (real =
                                  q_scale * (q - q_zero), q in [0, 255]; an int8 pair's zero point
                                  plus 128); 0 for the symmetric forms */
    float *w_scale;            /* constants: dims[0] per-output-channel scales of int8 weights, the
                                  data being exactly q * w_scale[o] (q integer in [-128, 127]); owned;
                                  NULL for other constants */
    int producer;              /* node index, -1 for graph inputs and constants */
    int n_consumers;           /* computed by ims_graph_link: node inputs + residuals reading it */
} ims_value;

typedef struct ims_node {
    ims_op op;
    char *name;
    int n_in;
    int in[IS_MAX_INPUTS]; /* value indices; -1 for an absent optional input */
    int out;               /* value index */

    /* Conv / pooling (2-D spatial only) */
    int kernel[2];   /* kh, kw */
    int stride[2];   /* sh, sw */
    int dilation[2]; /* dh, dw */
    int pad[4];      /* top, left, bottom, right (auto_pad resolved by shape inference) */
    int auto_pad;    /* 0 NOTSET, 1 SAME_UPPER, 2 SAME_LOWER, 3 VALID: resolved into pad[] */
    int group;
    int ceil_mode;
    int count_include_pad;

    /* BatchNormalization, LayerNormalization */
    float epsilon;

    /* Gemm: Y = alpha * A' * B' + beta * C; HardSigmoid: max(0, min(1, alpha * x + beta)) */
    float alpha, beta;
    int trans_a, trans_b;

    /* Clip bounds (from attributes in opset < 11, constant inputs from 11 on) */
    float clip_min, clip_max;

    /* Flatten / Concat / Gather / Softmax axis (non-negative after import); a Gather of an
     * activation takes index offset[axis] (shape inference) */
    int axis;

    /* Transpose perm, Unsqueeze/Squeeze axes (n_perm entries); Cast's target (cast_to) */
    int perm[IS_MAX_RANK];
    int n_perm;
    int cast_to;
    int keepdims; /* ReduceMean */
    int heads;    /* Attention: number of heads */
    int fmod;     /* Mod: 1 the result takes the dividend's sign (C's fmod), 0 the divisor's */
    /* Slice of an activation: the start of each output axis in the input (shape inference) */
    int64_t offset[IS_MAX_RANK];

    /* Fusion results, set by ims_graph_optimize (Conv and Gemm only):
     *   out = act(conv(x, w) + bias + residual)      */
    int residual;    /* value index added before act, or -1 */
    ims_act act;
    float act_min, act_max; /* for IS_ACT_CLIP */

    int dead;        /* removed by a pass; backends skip dead nodes */
} ims_node;

typedef struct ims_graph {
    ims_value *vals;
    int n_vals, cap_vals;
    ims_node *nodes;
    int n_nodes, cap_nodes;

    int input;   /* value index of the image input [N, C, H, W] */
    int output;  /* value index of the chosen embedding */
    int in_c, in_h, in_w;
    int64_t dim; /* product of the output's non-batch dims */
    int opset;
    char sha256[65]; /* of the model file ("" for graphs built in memory) */
    char embedding[96]; /* how ims_graph_select_output chose the output, in words */
    int qdq;            /* QuantizeLinear/DequantizeLinear nodes folded at import (onnx/qdq.c):
                           the scales are on the values (q_scale, w_scale) */
} ims_graph;

/* ---- building (used by the importer, model init and tests) ---- */

imgsim_status ims_graph_new(ims_graph **out, ims_err *e);
void ims_graph_free(ims_graph *g);
/* Adds a value; data (may be NULL) is copied when given. Returns the index or -1 (NOMEM). */
int ims_graph_add_value(ims_graph *g, const char *name, int rank, const int64_t *dims, const float *data);
/* Adds a node with defaults (stride/dilation 1, group 1, alpha/beta 1, residual -1, act NONE).
 * Returns a pointer valid until the next add, or NULL (NOMEM). */
ims_node *ims_graph_add_node(ims_graph *g, ims_op op, const char *name, int n_in, const int *in, int out);
/* Index of the value with this name, or -1. */
int ims_graph_find_value(const ims_graph *g, const char *name);
int64_t ims_value_numel(const ims_value *v); /* product of dims, with a -1 batch counted as 1 */

/* ---- analysis and passes ---- */

/* Checks references, topological order (sorting if needed; refusing cycles), and fills producers
 * and consumer counts. */
imgsim_status ims_graph_link(ims_graph *g, ims_err *e);
/* Infers every value's dims from the input [-1, C, H, W]; checks every op's shape rules. Nodes
 * computing only on constants and Shape nodes are evaluated (ims_graph_fold_node). */
imgsim_status ims_graph_infer_shapes(ims_graph *g, ims_err *e);
/* Constant folding inside shape inference (fold.c): whether node n can be evaluated now (Shape,
 * or a shape-arithmetic / Reshape / Concat / Add... node whose inputs are all constants), and the
 * evaluation: the output becomes a constant and the node is marked dead. */
int ims_graph_foldable(const ims_graph *g, const ims_node *n);
imgsim_status ims_graph_fold_node(ims_graph *g, ims_node *n, ims_err *e);
/* A Slice node's per-axis start, count and step over its input's dims (constant bounds, ONNX's
 * clamping; the batch axis only whole). */
imgsim_status ims_graph_slice_bounds(const ims_graph *g, const ims_node *n, int64_t *start, int64_t *count,
                                     int64_t *step, ims_err *e);
/* Picks the embedding: layer NULL = the input of the final classifier when the graph ends in a
 * linear layer (Gemm, MatMul [+ bias]: …→GlobalAveragePool→Flatten→Gemm gives the pooled features,
 * an MLP head its last hidden activation), else the graph's output; in a transformer (a graph
 * with Attention) a final bias-free MatMul is a projection (CLIP's) and stays. "pool:cls": the
 * class token (the classifier's input, the projection's too); "pool:mean": the mean of the patch
 * tokens (every token but the class token) of the tensor the class token is taken from (nodes
 * added: Slice, ReduceMean, output named "pool:mean"). g->embedding says which, in words. */
imgsim_status ims_graph_select_output(ims_graph *g, const char *layer, ims_err *e);
/* Folds BN into Conv, fuses bias/ReLU/Clip and the residual Add(+ReLU) into Conv, removes
 * Identity and nodes the chosen output does not need. Unused values are dropped, so value
 * indices change (g->input/g->output are updated; names are kept). Every Conv that had a BN
 * folded into it ends with a bias input; fusion is applied to Conv nodes only. */
imgsim_status ims_graph_optimize(ims_graph *g, ims_err *e);

/* Recognises nn.MultiheadAttention's export (attention.c) in a linked graph before shape
 * inference and rewrites each block into MatMul + Add, Attention, MatMul + Add; refuses masked
 * attention and attention in other forms, naming the node. */
imgsim_status ims_graph_fuse_mha(ims_graph *g, ims_err *e);

/* The transformer rewrites of ims_graph_optimize (fuse_tokens.c): written-out LayerNorm, quick
 * GELU, MatMul bias, LayerScale, GELU and residual into token MatMuls. */
imgsim_status ims_graph_fuse_tokens(ims_graph *g, ims_err *e);

/* ---- ONNX ---- */

/* Loads, validates and links an ONNX model (does not select or optimise). */
imgsim_status ims_onnx_load(ims_graph **out, const char *path, ims_err *e);


#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_GRAPH_H */
