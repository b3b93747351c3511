/* graph.c: building and querying the graph IR (see graph.h): values, nodes, names. */
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"

const char *ims_op_name(ims_op op) {
    static const char *names[IS_OP_COUNT] = {
        "Conv",    "BatchNormalization", "Relu",    "Clip", "Add",    "Mul",      "Sigmoid",  "MaxPool",
        "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Gemm", "MatMul", "Concat", "Identity",
        "HardSigmoid", "HardSwish", "Sub", "Div", "Transpose", "Slice", "ReduceMean", "Pow", "Sqrt", "Erf", "Gelu",
        "LayerNormalization", "Shape", "Gather", "Unsqueeze",
        "Squeeze", "Cast", "Softmax", "Attention", "Swish", "Expand", "ConstantOfShape", "Equal", "Where", "Mod"};
    return (unsigned)op < IS_OP_COUNT ? names[op] : "?";
}

imgsim_status ims_graph_new(ims_graph **out, ims_err *e) {
    *out = ims_calloc(1, sizeof(ims_graph));
    if (!*out) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory creating a graph");
    (*out)->input = -1;
    (*out)->output = -1;
    return IMGSIM_OK;
}

void ims_graph_free(ims_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_vals; i++) {
        free(g->vals[i].name);
        free(g->vals[i].data);
        free(g->vals[i].w_scale);
    }
    for (int i = 0; i < g->n_nodes; i++) free(g->nodes[i].name);
    free(g->vals);
    free(g->nodes);
    free(g);
}

int ims_graph_add_value(ims_graph *g, const char *name, int rank, const int64_t *dims, const float *data) {
    if (rank < 0 || rank > IS_MAX_RANK) return -1;
    if (g->n_vals == g->cap_vals) {
        int cap = g->cap_vals ? g->cap_vals * 2 : 64;
        ims_value *nv = ims_realloc(g->vals, (size_t)cap * sizeof *nv);
        if (!nv) return -1;
        g->vals = nv;
        g->cap_vals = cap;
    }
    ims_value *v = &g->vals[g->n_vals];
    memset(v, 0, sizeof *v);
    v->name = ims_strdup(name ? name : "");
    if (!v->name) return -1;
    v->rank = rank;
    for (int i = 0; i < rank; i++) v->dims[i] = dims ? dims[i] : 0;
    v->producer = -1;
    if (data) {
        int64_t n = ims_value_numel(v);
        if (n < 0 || (uint64_t)n > SIZE_MAX / sizeof(float)) {
            free(v->name);
            return -1;
        }
        v->data = ims_malloc((size_t)n * sizeof(float));
        if (!v->data) {
            free(v->name);
            return -1;
        }
        memcpy(v->data, data, (size_t)n * sizeof(float));
    }
    return g->n_vals++;
}

ims_node *ims_graph_add_node(ims_graph *g, ims_op op, const char *name, int n_in, const int *in, int out) {
    if (n_in < 0 || n_in > IS_MAX_INPUTS) return NULL;
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        ims_node *nn = ims_realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return NULL;
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    ims_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->name = ims_strdup(name ? name : "");
    if (!n->name) return NULL;
    n->op = op;
    n->n_in = n_in;
    for (int i = 0; i < IS_MAX_INPUTS; i++) n->in[i] = i < n_in ? in[i] : -1;
    n->out = out;
    n->kernel[0] = n->kernel[1] = 1;
    n->stride[0] = n->stride[1] = 1;
    n->dilation[0] = n->dilation[1] = 1;
    n->group = 1;
    n->epsilon = 1e-5f;
    n->alpha = n->beta = 1.0f;
    n->clip_min = -3.402823466e38f;
    n->clip_max = 3.402823466e38f;
    n->axis = 1;
    n->residual = -1;
    n->act = IS_ACT_NONE;
    g->n_nodes++;
    return n;
}

int ims_graph_find_value(const ims_graph *g, const char *name) {
    for (int i = 0; i < g->n_vals; i++)
        if (strcmp(g->vals[i].name, name) == 0) return i;
    return -1;
}

int64_t ims_value_numel(const ims_value *v) {
    int64_t n = 1;
    for (int i = 0; i < v->rank; i++) {
        int64_t d = v->dims[i] < 0 ? 1 : v->dims[i];
        if (d && n > INT64_MAX / d) return -1;
        n *= d;
    }
    return n;
}
