/*
 * onnx_save.c: writes an ims_graph as an ONNX model (opset 13, IR version 7) through protobuf-c.
 *
 * The file looks like what torch.onnx.export writes for a torchvision model: one input "input"
 * [batch_size, C, H, W] and one output "output" [batch_size, ...] with the batch axis named
 * "batch_size", weights as float32 raw_data initializers, one ONNX node per IR node. Nodes carrying
 * fusion results (residual, activation) are written back as Conv/Gemm -> Add -> Relu/Clip, so an
 * optimised graph exports too. Clip bounds become scalar initializers and Reshape shapes int64
 * initializers, as opset 13 wants. The file is written atomically (temporary name, rename).
 *
 * Every protobuf-c structure is allocated from a list freed in one go at the end; the weights are
 * not copied: raw_data points at the graph's float data (little-endian hosts; others convert).
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth/model.h"
#include "model/onnx/onnx.pb-c.h"

#define EXPORT_OPSET 13
#define EXPORT_IR 7

enum { DT_FLOAT = 1, DT_INT64 = 7 };

typedef struct ex {
    const ims_graph *g;
    const char *path;
    ims_err *e;
    int failed;    /* an allocation failed: checked once before packing */
    void **allocs; /* everything allocated for the message, freed by ex_free */
    size_t n_allocs, cap_allocs;
    ImsOnnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    ImsOnnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    char **vname;           /* per value: its name in the file */
    unsigned char *use_f32; /* per value: a float initializer is needed */
    unsigned char *use_i64; /* per value: an int64 initializer is needed (Reshape shape) */
} ex;

/* Records p for ex_free; on NULL marks the export failed. Returns p. */
static void *track(ex *x, void *p) {
    if (!p) {
        x->failed = 1;
        return NULL;
    }
    if (x->n_allocs == x->cap_allocs) {
        size_t cap = x->cap_allocs ? 2 * x->cap_allocs : 256;
        void **na = ims_realloc(x->allocs, cap * sizeof *na);
        if (!na) {
            free(p);
            x->failed = 1;
            return NULL;
        }
        x->allocs = na;
        x->cap_allocs = cap;
    }
    x->allocs[x->n_allocs++] = p;
    return p;
}

static void *ex_alloc(ex *x, size_t count, size_t size) {
    return track(x, ims_calloc(count ? count : 1, size));
}

static char *ex_printf(ex *x, const char *fmt, ...) IS_PRINTF(2, 3);
static char *ex_printf(ex *x, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        x->failed = 1;
        return NULL;
    }
    char *s = ex_alloc(x, (size_t)n + 1, 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void ex_free(ex *x) {
    for (size_t i = 0; i < x->n_allocs; i++)
        free(x->allocs[i]);
    free(x->allocs);
}

/* Appends p to a growing pointer array. */
static void push(ex *x, void ***arr, size_t *n, size_t *cap, void *p) {
    if (!p) {
        x->failed = 1;
        return;
    }
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        void **na = ex_alloc(x, nc, sizeof *na);
        if (!na) return;
        if (*n) memcpy(na, *arr, *n * sizeof *na);
        *arr = na; /* the old array stays on the alloc list */
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
}

/* ---- attributes ------------------------------------------------------------------------- */

static ImsOnnx__AttributeProto *attr_new(ex *x, const char *name, ImsOnnx__AttributeProto__AttributeType type) {
    ImsOnnx__AttributeProto *a = ex_alloc(x, 1, sizeof *a);
    if (!a) return NULL;
    ims_onnx__attribute_proto__init(a);
    a->name = (char *)name; /* string literals only; protobuf-c never writes through them */
    a->has_type = 1;
    a->type = type;
    return a;
}

static ImsOnnx__AttributeProto *attr_int(ex *x, const char *name, int64_t v) {
    ImsOnnx__AttributeProto *a = attr_new(x, name, IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = 1;
        a->i = v;
    }
    return a;
}

static ImsOnnx__AttributeProto *attr_float(ex *x, const char *name, float v) {
    ImsOnnx__AttributeProto *a = attr_new(x, name, IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = 1;
        a->f = v;
    }
    return a;
}

static ImsOnnx__AttributeProto *attr_ints(ex *x, const char *name, const int *v, size_t n) {
    ImsOnnx__AttributeProto *a = attr_new(x, name, IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    if (!a) return NULL;
    a->ints = ex_alloc(x, n, sizeof *a->ints);
    if (!a->ints) return NULL;
    for (size_t i = 0; i < n; i++)
        a->ints[i] = v[i];
    a->n_ints = n;
    return a;
}

static ImsOnnx__AttributeProto *attr_str(ex *x, const char *name, const char *s) {
    ImsOnnx__AttributeProto *a = attr_new(x, name, IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    if (a) {
        a->has_s = 1;
        a->s.data = (uint8_t *)s;
        a->s.len = strlen(s);
    }
    return a;
}

/* ---- nodes ------------------------------------------------------------------------------ */

/* Starts a node with inputs (NULL entries: absent optional inputs) and one output. */
static ImsOnnx__NodeProto *node_new(ex *x, const char *op, const char *name, const char *const *in, int n_in,
                                 const char *out) {
    ImsOnnx__NodeProto *n = ex_alloc(x, 1, sizeof *n);
    if (!n) return NULL;
    ims_onnx__node_proto__init(n);
    n->op_type = (char *)op;
    n->name = (char *)name;
    n->input = ex_alloc(x, (size_t)n_in, sizeof *n->input);
    n->output = ex_alloc(x, 1, sizeof *n->output);
    n->attribute = ex_alloc(x, 8, sizeof *n->attribute);
    if (!n->input || !n->output || !n->attribute) return NULL;
    for (int i = 0; i < n_in; i++)
        n->input[i] = (char *)(in[i] ? in[i] : "");
    n->n_input = (size_t)n_in;
    while (n->n_input > 0 && !n->input[n->n_input - 1][0])
        n->n_input--; /* trailing absent inputs */
    n->output[0] = (char *)out;
    n->n_output = 1;
    push(x, (void ***)&x->nodes, &x->n_nodes, &x->cap_nodes, n);
    return n;
}

static void node_attr(ex *x, ImsOnnx__NodeProto *n, ImsOnnx__AttributeProto *a) {
    if (!n || !a) {
        x->failed = 1;
        return;
    }
    if (n->n_attribute < 8) n->attribute[n->n_attribute++] = a; /* no op has more than 8 */
}

/* The spatial attributes of Conv and the pools. */
static void spatial_attrs(ex *x, ImsOnnx__NodeProto *o, const ims_node *n, int with_dilations) {
    static const char *const modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    int any_pad = n->pad[0] || n->pad[1] || n->pad[2] || n->pad[3];
    node_attr(x, o, attr_ints(x, "kernel_shape", n->kernel, 2));
    node_attr(x, o, attr_ints(x, "strides", n->stride, 2));
    /* resolved pads win; an unresolved auto_pad is written as such */
    if (!any_pad && n->auto_pad > 0 && n->auto_pad < 4)
        node_attr(x, o, attr_str(x, "auto_pad", modes[n->auto_pad]));
    else
        node_attr(x, o, attr_ints(x, "pads", n->pad, 4));
    if (with_dilations) node_attr(x, o, attr_ints(x, "dilations", n->dilation, 2));
}

/* ---- tensors and value infos ------------------------------------------------------------ */

static ImsOnnx__TensorProto *tensor_new(ex *x, const char *name, int rank, const int64_t *dims) {
    ImsOnnx__TensorProto *t = ex_alloc(x, 1, sizeof *t);
    if (!t) return NULL;
    ims_onnx__tensor_proto__init(t);
    t->name = (char *)name;
    t->dims = ex_alloc(x, (size_t)rank, sizeof *t->dims);
    if (!t->dims) return NULL;
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    t->n_dims = (size_t)rank;
    t->has_data_type = 1;
    push(x, (void ***)&x->inits, &x->n_inits, &x->cap_inits, t);
    return t;
}

/* A float32 initializer; raw_data borrows data on little-endian hosts. */
static void init_f32(ex *x, const char *name, int rank, const int64_t *dims, const float *data, int64_t n) {
    ImsOnnx__TensorProto *t = tensor_new(x, name, rank, dims);
    if (!t) return;
    t->data_type = DT_FLOAT;
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * 4;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    t->raw_data.data = (uint8_t *)data;
#else
    uint8_t *b = ex_alloc(x, (size_t)n, 4);
    if (!b) return;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        for (int k = 0; k < 4; k++)
            b[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    t->raw_data.data = b;
#endif
}

/* An int64 initializer from float values that hold integers (Reshape shapes). */
static void init_i64(ex *x, const char *name, int rank, const int64_t *dims, const float *data, int64_t n) {
    ImsOnnx__TensorProto *t = tensor_new(x, name, rank, dims);
    if (!t) return;
    t->data_type = DT_INT64;
    t->int64_data = ex_alloc(x, (size_t)n, sizeof *t->int64_data);
    if (!t->int64_data) return;
    for (int64_t i = 0; i < n; i++)
        t->int64_data[i] = (int64_t)data[i];
    t->n_int64_data = (size_t)n;
}

/* A float tensor ValueInfo; dims[0] == -1 becomes the "batch_size" parameter; rank 0: no shape. */
static ImsOnnx__ValueInfoProto *value_info(ex *x, const char *name, int rank, const int64_t *dims) {
    ImsOnnx__ValueInfoProto *vi = ex_alloc(x, 1, sizeof *vi);
    ImsOnnx__TypeProto *tp = ex_alloc(x, 1, sizeof *tp);
    ImsOnnx__TypeProto__Tensor *tt = ex_alloc(x, 1, sizeof *tt);
    if (!vi || !tp || !tt) return NULL;
    ims_onnx__value_info_proto__init(vi);
    ims_onnx__type_proto__init(tp);
    ims_onnx__type_proto__tensor__init(tt);
    vi->name = (char *)name;
    vi->type = tp;
    tp->value_case = IMS_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = DT_FLOAT;
    if (rank <= 0) return vi;
    ImsOnnx__TensorShapeProto *sh = ex_alloc(x, 1, sizeof *sh);
    ImsOnnx__TensorShapeProto__Dimension **dv = ex_alloc(x, (size_t)rank, sizeof *dv);
    if (!sh || !dv) return NULL;
    ims_onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < rank; i++) {
        ImsOnnx__TensorShapeProto__Dimension *d = ex_alloc(x, 1, sizeof *d);
        if (!d) return NULL;
        ims_onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] > 0) {
            d->value_case = IMS_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        } else if (i == 0) {
            d->value_case = IMS_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = (char *)"batch_size";
        } /* else: an unknown dimension */
        dv[i] = d;
    }
    sh->dim = dv;
    sh->n_dim = (size_t)rank;
    tt->shape = sh;
    return vi;
}

/* ---- the graph -------------------------------------------------------------------------- */

static const char *onnx_op(ims_op op) {
    switch (op) {
    case IS_OP_CONV:
        return "Conv";
    case IS_OP_BATCHNORM:
        return "BatchNormalization";
    case IS_OP_RELU:
        return "Relu";
    case IS_OP_CLIP:
        return "Clip";
    case IS_OP_ADD:
        return "Add";
    case IS_OP_MUL:
        return "Mul";
    case IS_OP_SIGMOID:
        return "Sigmoid";
    case IS_OP_HARDSIGMOID:
        return "HardSigmoid";
    case IS_OP_HARDSWISH:
        return "HardSwish";
    case IS_OP_MAXPOOL:
        return "MaxPool";
    case IS_OP_AVGPOOL:
        return "AveragePool";
    case IS_OP_GLOBALAVGPOOL:
        return "GlobalAveragePool";
    case IS_OP_FLATTEN:
        return "Flatten";
    case IS_OP_RESHAPE:
        return "Reshape";
    case IS_OP_GEMM:
        return "Gemm";
    case IS_OP_MATMUL:
        return "MatMul";
    case IS_OP_CONCAT:
        return "Concat";
    case IS_OP_IDENTITY:
        return "Identity";
    default:
        return NULL;
    }
}

/* A scalar float initializer for a Clip bound; NULL (absent input) for an unbounded side
 * (+-FLT_MAX or infinite, ONNX's default). */
static const char *clip_bound(ex *x, const char *node, const char *which, float v) {
    if (!(fabsf(v) < FLT_MAX)) return NULL;
    const char *name = ex_printf(x, "%s_%s", node, which);
    float *d = ex_alloc(x, 1, sizeof *d);
    if (!name || !d) return NULL;
    *d = v;
    init_f32(x, name, 0, NULL, d, 1);
    return name;
}

/* Writes one IR node as one to three ONNX nodes. */
static imgsim_status emit_node(ex *x, const ims_node *n, int idx) {
    const char *op = onnx_op(n->op);
    if (!op) return ims_fail(x->e, IMGSIM_ERR_INTERNAL, "%s: node %d has an unknown op", x->path, idx);
    const char *name = n->name && n->name[0] ? n->name : ex_printf(x, "%s_%d", op, idx);
    const char *in[IS_MAX_INPUTS + 2];
    int n_in = n->n_in;
    for (int i = 0; i < n->n_in; i++)
        in[i] = n->in[i] >= 0 ? x->vname[n->in[i]] : NULL;
    if (n->op == IS_OP_RESHAPE && n->in[1] >= 0 && x->use_f32[n->in[1]])
        in[1] = ex_printf(x, "%s_int64", x->vname[n->in[1]]);
    if (n->op == IS_OP_CLIP) {
        in[1] = clip_bound(x, name, "min", n->clip_min);
        in[2] = clip_bound(x, name, "max", n->clip_max);
        n_in = 3;
    }
    int fused = (n->op == IS_OP_CONV || n->op == IS_OP_GEMM) && (n->residual >= 0 || n->act != IS_ACT_NONE);
    const char *out = x->vname[n->out];
    const char *main_out = fused ? ex_printf(x, "%s_pre", out) : out;

    ImsOnnx__NodeProto *o = node_new(x, op, name, in, n_in, main_out);
    switch (n->op) {
    case IS_OP_CONV:
        spatial_attrs(x, o, n, 1);
        node_attr(x, o, attr_int(x, "group", n->group));
        break;
    case IS_OP_BATCHNORM:
        node_attr(x, o, attr_float(x, "epsilon", n->epsilon));
        break;
    case IS_OP_MAXPOOL:
        spatial_attrs(x, o, n, n->dilation[0] != 1 || n->dilation[1] != 1);
        if (n->ceil_mode) node_attr(x, o, attr_int(x, "ceil_mode", 1));
        break;
    case IS_OP_AVGPOOL:
        spatial_attrs(x, o, n, 0);
        if (n->ceil_mode) node_attr(x, o, attr_int(x, "ceil_mode", 1));
        if (n->count_include_pad) node_attr(x, o, attr_int(x, "count_include_pad", 1));
        break;
    case IS_OP_FLATTEN:
    case IS_OP_CONCAT:
        node_attr(x, o, attr_int(x, "axis", n->axis));
        break;
    case IS_OP_GEMM:
        node_attr(x, o, attr_float(x, "alpha", n->alpha));
        node_attr(x, o, attr_float(x, "beta", n->beta));
        node_attr(x, o, attr_int(x, "transA", n->trans_a));
        node_attr(x, o, attr_int(x, "transB", n->trans_b));
        break;
    case IS_OP_HARDSIGMOID:
        node_attr(x, o, attr_float(x, "alpha", n->alpha));
        node_attr(x, o, attr_float(x, "beta", n->beta));
        break;
    default:
        break;
    }
    if (!fused) return IMGSIM_OK;
    const char *cur = main_out;
    if (n->residual >= 0) {
        const char *add_in[2] = {cur, x->vname[n->residual]};
        const char *add_out = n->act != IS_ACT_NONE ? ex_printf(x, "%s_sum", out) : out;
        node_new(x, "Add", ex_printf(x, "%s_add", name), add_in, 2, add_out);
        cur = add_out;
    }
    if (n->act == IS_ACT_RELU) {
        node_new(x, "Relu", ex_printf(x, "%s_relu", name), &cur, 1, out);
    } else if (n->act == IS_ACT_CLIP) {
        const char *clip_in[3] = {cur, clip_bound(x, name, "act_min", n->act_min),
                                  clip_bound(x, name, "act_max", n->act_max)};
        node_new(x, "Clip", ex_printf(x, "%s_clip", name), clip_in, 3, out);
    }
    return IMGSIM_OK;
}

/* Builds the ModelProto into x's allocations; returns it through *out. */
static imgsim_status build_model(ex *x, ImsOnnx__ModelProto **out) {
    const ims_graph *g = x->g;
    if (g->input < 0 || g->input >= g->n_vals || g->output < 0 || g->output >= g->n_vals ||
        g->input == g->output)
        return ims_fail(x->e, IMGSIM_ERR_INVALID_ARG, "%s: the graph has no distinct input and output",
                       x->path);
    if (g->vals[g->input].rank != 4)
        return ims_fail(x->e, IMGSIM_ERR_INVALID_ARG, "%s: the graph input is not [N, C, H, W]", x->path);
    size_t nv = (size_t)g->n_vals;
    x->vname = ex_alloc(x, nv, sizeof *x->vname);
    x->use_f32 = ex_alloc(x, nv, 1);
    x->use_i64 = ex_alloc(x, nv, 1);
    if (!x->vname || !x->use_f32 || !x->use_i64)
        return ims_fail(x->e, IMGSIM_ERR_NOMEM, "%s: out of memory", x->path);

    /* names: the input and output get the torch.onnx.export names; clashes are renamed */
    for (int v = 0; v < g->n_vals; v++) {
        const char *nm = g->vals[v].name;
        if (v == g->input)
            x->vname[v] = "input";
        else if (v == g->output)
            x->vname[v] = "output";
        else if (!nm || !nm[0])
            x->vname[v] = ex_printf(x, "value_%d", v);
        else if (!strcmp(nm, "input") || !strcmp(nm, "output"))
            x->vname[v] = ex_printf(x, "%s_%d", nm, v);
        else
            x->vname[v] = (char *)nm;
    }

    /* which constants are used, and how */
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *n = &g->nodes[i];
        if (n->dead) continue;
        if (n->out < 0 || n->out >= g->n_vals || n->n_in < 0 || n->n_in > IS_MAX_INPUTS)
            return ims_fail(x->e, IMGSIM_ERR_INTERNAL, "%s: node %d is malformed", x->path, i);
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v >= g->n_vals)
                return ims_fail(x->e, IMGSIM_ERR_INTERNAL, "%s: node %d is malformed", x->path, i);
            if (v < 0 || !g->vals[v].data) continue;
            if (n->op == IS_OP_RESHAPE && k == 1)
                x->use_i64[v] = 1;
            else
                x->use_f32[v] = 1;
        }
        if (n->residual >= g->n_vals)
            return ims_fail(x->e, IMGSIM_ERR_INTERNAL, "%s: node %d is malformed", x->path, i);
    }
    for (int v = 0; v < g->n_vals; v++) {
        const ims_value *val = &g->vals[v];
        if (!x->use_f32[v] && !x->use_i64[v]) continue;
        int64_t numel = ims_value_numel(val);
        if (x->use_f32[v]) init_f32(x, x->vname[v], val->rank, val->dims, val->data, numel);
        if (x->use_i64[v])
            init_i64(x, x->use_f32[v] ? ex_printf(x, "%s_int64", x->vname[v]) : x->vname[v], val->rank,
                     val->dims, val->data, numel);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead) continue;
        imgsim_status s = emit_node(x, &g->nodes[i], i);
        if (s != IMGSIM_OK) return s;
    }

    ImsOnnx__GraphProto *gp = ex_alloc(x, 1, sizeof *gp);
    ImsOnnx__ModelProto *mp = ex_alloc(x, 1, sizeof *mp);
    ImsOnnx__OperatorSetIdProto *os = ex_alloc(x, 1, sizeof *os);
    ImsOnnx__OperatorSetIdProto **osv = ex_alloc(x, 1, sizeof *osv);
    ImsOnnx__ValueInfoProto **ins = ex_alloc(x, 1, sizeof *ins), **outs = ex_alloc(x, 1, sizeof *outs);
    if (x->failed || !gp || !mp || !os || !osv || !ins || !outs)
        return ims_fail(x->e, IMGSIM_ERR_NOMEM, "%s: out of memory", x->path);
    ims_onnx__graph_proto__init(gp);
    ims_onnx__model_proto__init(mp);
    ims_onnx__operator_set_id_proto__init(os);
    const ims_value *iv = &g->vals[g->input], *ov = &g->vals[g->output];
    int64_t in_dims[4] = {-1, iv->dims[1], iv->dims[2], iv->dims[3]};
    ins[0] = value_info(x, "input", 4, in_dims);
    int64_t out_dims[IS_MAX_RANK];
    int out_rank = ov->data ? 0 : ov->rank; /* activations only carry a batch axis */
    for (int i = 0; i < out_rank; i++)
        out_dims[i] = i == 0 ? -1 : ov->dims[i];
    outs[0] = value_info(x, "output", out_rank, out_dims);
    if (x->failed || !ins[0] || !outs[0])
        return ims_fail(x->e, IMGSIM_ERR_NOMEM, "%s: out of memory", x->path);
    gp->name = (char *)"imgsim";
    gp->node = x->nodes;
    gp->n_node = x->n_nodes;
    gp->initializer = x->inits;
    gp->n_initializer = x->n_inits;
    gp->input = ins;
    gp->n_input = 1;
    gp->output = outs;
    gp->n_output = 1;
    os->domain = (char *)"";
    os->has_version = 1;
    os->version = EXPORT_OPSET;
    osv[0] = os;
    mp->has_ir_version = 1;
    mp->ir_version = EXPORT_IR;
    mp->opset_import = osv;
    mp->n_opset_import = 1;
    mp->producer_name = (char *)"imgsim";
    mp->producer_version = (char *)imgsim_version();
    mp->graph = gp;
    *out = mp;
    return IMGSIM_OK;
}

imgsim_status ims_onnx_save(const ims_graph *g, const char *path, ims_err *e) {
    ex x;
    memset(&x, 0, sizeof x);
    x.g = g;
    x.path = path;
    x.e = e;
    ImsOnnx__ModelProto *mp = NULL;
    imgsim_status s = build_model(&x, &mp);
    if (s == IMGSIM_OK) {
        size_t size = ims_onnx__model_proto__get_packed_size(mp);
        if (size > ((size_t)2 << 30) - 1) {
            s = ims_fail(e, IMGSIM_ERR_TOO_LARGE, "%s: the model is over protobuf's 2 GiB limit", path);
        } else {
            uint8_t *buf = ims_malloc(size);
            if (!buf) {
                s = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, size);
            } else {
                size_t packed = ims_onnx__model_proto__pack(mp, buf);
                s = packed == size
                        ? ims_write_file_atomic(path, buf, size, e)
                        : ims_fail(e, IMGSIM_ERR_INTERNAL, "%s: protobuf packing size mismatch", path);
                free(buf);
            }
        }
    }
    ex_free(&x);
    return s;
}
