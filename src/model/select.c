/*
 * select.c: ims_graph_select_output, which picks the value whose per-image vector is the
 * embedding.
 *
 * With no layer named, a graph that ends in a linear classifier (Gemm, or MatMul [+ Add of a
 * constant bias], with constant weights) gives that layer's input: the pooled features for a
 * GlobalAveragePool -> Flatten -> Gemm head (512-d for ResNet-18, 2048-d for ResNet-50), the last
 * hidden activation for an MLP head (VGG, AlexNet: the 4096-d output of the ReLU [and Dropout]
 * before the last Linear, as torchvision's model.classifier[:-1] gives). Identity nodes (Dropout
 * in eval exports) before it are skipped. Any other graph gives its own output. A named layer may be any activation computed by the graph. Shapes must have been
 * inferred: g->dim becomes the product of the chosen value's non-batch dims.
 */
#include <stdio.h>
#include <string.h>

#include "model/graph.h"

/* The producer node of value v, or NULL (graph input, constant, or not produced). */
static const ims_node *producer_of(const ims_graph *g, int v) {
    if (v < 0 || v >= g->n_vals) return NULL;
    int p = g->vals[v].producer;
    if (p < 0 || p >= g->n_nodes || g->nodes[p].dead || g->nodes[p].out != v) return NULL;
    return &g->nodes[p];
}

static int is_const(const ims_graph *g, int v) {
    return v >= 0 && v < g->n_vals && g->vals[v].data != NULL;
}

/* Follows Identity nodes backwards from v. */
static int skip_identity(const ims_graph *g, int v) {
    for (int guard = 0; guard < g->n_nodes; guard++) {
        const ims_node *n = producer_of(g, v);
        if (!n || n->op != IS_OP_IDENTITY) break;
        v = n->in[0];
    }
    return v;
}

/* If out is the result of a final linear layer, returns that layer's data input; else -1.
 * Recognised: Gemm(A, const B[, const C]); MatMul(A, const B); Add(MatMul(A, const B), const)
 * in either operand order. */
static int classifier_input(const ims_graph *g, int out) {
    const ims_node *n = producer_of(g, skip_identity(g, out));
    if (!n) return -1;
    if (n->op == IS_OP_ADD) {
        int a = n->in[0], b = n->in[1];
        const ims_node *mm = NULL;
        if (is_const(g, b))
            mm = producer_of(g, a);
        else if (is_const(g, a))
            mm = producer_of(g, b);
        if (!mm || mm->op != IS_OP_MATMUL) return -1;
        n = mm;
    }
    if ((n->op == IS_OP_GEMM || n->op == IS_OP_MATMUL) && is_const(g, n->in[1]) && !is_const(g, n->in[0]))
        return n->in[0];
    return -1;
}

/* Formats up to 8 of the graph's layer names (the last ones computed, where embeddings usually
 * are) into buf. */
static void list_layers(const ims_graph *g, char *buf, size_t cap) {
    size_t at = 0;
    int shown = 0, total = 0;
    buf[0] = '\0';
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead) total++;
    for (int i = g->n_nodes - 1; i >= 0 && shown < 8; i--) {
        const ims_node *n = &g->nodes[i];
        if (n->dead || n->out < 0 || n->out >= g->n_vals) continue;
        int w = snprintf(buf + at, cap - at, "%s'%.80s'", shown ? ", " : "", g->vals[n->out].name);
        if (w < 0 || (size_t)w >= cap - at) break;
        at += (size_t)w;
        shown++;
    }
    if (total > shown) snprintf(buf + at, cap - at, ", ... (%d layers)", total);
}

/* Whether the graph has an Attention node (a transformer). */
static int has_attention(const ims_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == IS_OP_ATTENTION) return 1;
    return 0;
}

/* The class-token Gather: the last live Gather of index 0 on axis 1 of an [N, L, C] activation. */
static const ims_node *class_token_gather(const ims_graph *g) {
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const ims_node *n = &g->nodes[i];
        if (n->dead || n->op != IS_OP_GATHER || n->axis != 1 || n->offset[1] != 0) continue;
        const ims_value *x = &g->vals[n->in[0]];
        if (!x->data && x->rank == 3 && x->dims[1] >= 2) return n;
    }
    return NULL;
}

/* Whether v is a LayerNorm's output: LayerNormalization, or its written-out form (Add/Mul of
 * constants after a Div by a Sqrt). */
static int layernorm_output(const ims_graph *g, int v) {
    for (int k = 0; k < 3; k++) {
        const ims_node *n = producer_of(g, v);
        if (!n) return 0;
        if (n->op == IS_OP_LAYERNORM) return 1;
        if (n->op == IS_OP_DIV) {
            const ims_node *s = producer_of(g, n->in[1]);
            return s && s->op == IS_OP_SQRT;
        }
        if ((n->op != IS_OP_ADD && n->op != IS_OP_MUL) || n->n_in != 2) return 0;
        v = is_const(g, n->in[1]) ? n->in[0] : is_const(g, n->in[0]) ? n->in[1] : -1;
    }
    return 0;
}

/* Adds the constant [v] (1-D, one integer) and returns its index, or -1. */
static int int_const(ims_graph *g, const char *name, int64_t v) {
    int64_t d[1] = {1};
    float f = (float)v;
    int k = ims_graph_add_value(g, name, 1, d, &f);
    if (k >= 0) g->vals[k].is_int = 1;
    return k;
}

/* "pool:mean": Slice(x, 1, L, axis 1) -> ReduceMean(axis 1, no keepdims), output "pool:mean". */
static imgsim_status add_mean_pool(ims_graph *g, const ims_node *gather, int *out, ims_err *e) {
    int x = gather->in[0];
    int64_t L = g->vals[x].dims[1], C = g->vals[x].dims[2];
    if (ims_graph_find_value(g, "pool:mean") >= 0)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "layer 'pool:mean': the graph already has a value of that name");
    int st = int_const(g, "pool:mean.starts", 1), en = int_const(g, "pool:mean.ends", L);
    int ax = int_const(g, "pool:mean.axes", 1);
    int64_t sd[3] = {-1, L - 1, C}, md[2] = {-1, C};
    int sv = ims_graph_add_value(g, "pool:mean.tokens", 3, sd, NULL);
    int mv = ims_graph_add_value(g, "pool:mean", 2, md, NULL);
    if (st < 0 || en < 0 || ax < 0 || sv < 0 || mv < 0) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory");
    ims_node *sl = ims_graph_add_node(g, IS_OP_SLICE, "pool:mean/Slice", 4, (int[]){x, st, en, ax}, sv);
    if (!sl) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory");
    ims_node *rm = ims_graph_add_node(g, IS_OP_REDUCEMEAN, "pool:mean/ReduceMean", 1, (int[]){sv}, mv);
    if (!rm) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory");
    rm->perm[0] = 1;
    rm->n_perm = 1;
    rm->keepdims = 0;
    imgsim_status s = ims_graph_link(g, e);
    if (s == IMGSIM_OK) s = ims_graph_infer_shapes(g, e);
    *out = ims_graph_find_value(g, "pool:mean");
    return s;
}

imgsim_status ims_graph_select_output(ims_graph *g, const char *layer, ims_err *e) {
    if (!g) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "graph: NULL");
    int chosen = -1;
    if (layer && (!strcmp(layer, "pool:cls") || !strcmp(layer, "pool:mean"))) {
        const ims_node *gt = class_token_gather(g);
        if (!gt)
            return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                            "layer '%s': the model takes no class token (a Gather of token 0 of [N, L, C])", layer);
        if (!strcmp(layer, "pool:mean")) {
            imgsim_status s = add_mean_pool(g, gt, &chosen, e);
            if (s != IMGSIM_OK) return s;
            snprintf(g->embedding, sizeof g->embedding, "mean of the patch tokens (pool:mean)");
        } else {
            chosen = g->output;
            int a = classifier_input(g, g->output);
            if (a >= 0) chosen = skip_identity(g, a);
            snprintf(g->embedding, sizeof g->embedding, "class token (pool:cls)");
        }
    } else if (layer && layer[0]) {
        chosen = ims_graph_find_value(g, layer);
        if (chosen < 0) {
            char names[600];
            list_layers(g, names, sizeof names);
            return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "unknown layer '%.200s'; layers include %s", layer,
                           names);
        }
        if (chosen == g->input)
            return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                           "layer '%.200s' is the graph input, not a computed layer", layer);
        if (g->vals[chosen].data)
            return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                           "layer '%.200s' is a constant (weights), not a computed layer", layer);
        if (!producer_of(g, chosen))
            return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "layer '%.200s' is not computed by the graph", layer);
    } else {
        if (g->output < 0 || g->output >= g->n_vals)
            return ims_fail(e, IMGSIM_ERR_FORMAT, "graph has no output");
        chosen = g->output;
        int a = classifier_input(g, g->output);
        const ims_node *last = producer_of(g, skip_identity(g, g->output));
        int projection = a >= 0 && has_attention(g) && last && last->op == IS_OP_MATMUL;
        if (a >= 0 && !projection) chosen = skip_identity(g, a); /* the Flatten or ReLU itself, not a Dropout after it */
        const ims_node *gt = has_attention(g) ? class_token_gather(g) : NULL;
        const char *tok = gt && layernorm_output(g, gt->in[0]) ? "class token after the final LayerNorm" : "class token";
        if (projection)
            snprintf(g->embedding, sizeof g->embedding, "projected class token (the graph's output)");
        else if (gt)
            snprintf(g->embedding, sizeof g->embedding, "%s, %s", tok,
                     a >= 0 ? "the classifier's input" : "the graph's output");
        else
            snprintf(g->embedding, sizeof g->embedding, "%s",
                     a >= 0 ? "the final linear layer's input" : "the graph's output");
    }
    if (layer && layer[0] && strncmp(layer, "pool:", 5) != 0)
        snprintf(g->embedding, sizeof g->embedding, "the layer named");
    const ims_value *v = &g->vals[chosen];
    if (v->rank < 1 || v->dims[0] != -1)
        return ims_fail(e, IMGSIM_ERR_INTERNAL, "layer '%.200s' has no inferred shape (infer shapes first)",
                       v->name);
    int64_t dim = 1;
    for (int i = 1; i < v->rank; i++)
        dim *= v->dims[i];
    g->output = chosen;
    g->dim = dim;
    return IMGSIM_OK;
}
