/*
 * link.c: ims_graph_link, the structural check every graph passes before anything else reads it.
 *
 * It verifies that each node has a valid operator and input count, that every reference names an
 * existing value (-1 only for optional inputs: Conv bias, Gemm C, Clip min/max), that each
 * activation is written by exactly one node (or is the graph input), and that constants and the
 * graph input are never written. It then puts the nodes in topological order with a stable Kahn
 * sort (already-ordered graphs keep their order exactly; otherwise the smallest ready index goes
 * first), refusing cycles, drops nodes marked dead, and fills ims_value.producer and n_consumers.
 *
 * n_consumers counts node inputs and fused residual references (a node reading a value twice
 * counts twice); being the graph output is not counted.
 */
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"

/* A node's printable name: its own, or its operator when unnamed. */
static const char *node_label(const ims_node *n) {
    return (n->name && n->name[0]) ? n->name : ims_op_name(n->op);
}

static const char *value_label(const ims_value *v) {
    return (v->name && v->name[0]) ? v->name : "(unnamed)";
}

/* Allowed input counts per operator, and which positions may be -1 (absent optional input). */
static void op_arity(ims_op op, int *min_in, int *max_in, int *first_optional) {
    *first_optional = 99;
    switch (op) {
    case IS_OP_CONV:
        *min_in = 2;
        *max_in = 3;
        *first_optional = 2;
        break;
    case IS_OP_BATCHNORM:
        *min_in = 5;
        *max_in = 5;
        break;
    case IS_OP_CLIP:
        *min_in = 1;
        *max_in = 3;
        *first_optional = 1;
        break;
    case IS_OP_ADD:
    case IS_OP_MUL:
    case IS_OP_SUB:
    case IS_OP_DIV:
    case IS_OP_POW:
    case IS_OP_GATHER:
    case IS_OP_RESHAPE:
    case IS_OP_EXPAND:
    case IS_OP_EQUAL:
    case IS_OP_MOD:
        *min_in = 2;
        *max_in = 2;
        break;
    case IS_OP_MATMUL: /* A, B[, bias: a fused Add of a constant [M]] */
        *min_in = 2;
        *max_in = 3;
        *first_optional = 2;
        break;
    case IS_OP_WHERE:
        *min_in = 3;
        *max_in = 3;
        break;
    case IS_OP_LAYERNORM: /* X, scale[, bias] */
        *min_in = 2;
        *max_in = 3;
        *first_optional = 2;
        break;
    case IS_OP_SLICE: /* data, starts, ends[, axes[, steps]] */
        *min_in = 3;
        *max_in = 5;
        *first_optional = 3;
        break;
    case IS_OP_GEMM:
        *min_in = 2;
        *max_in = 3;
        *first_optional = 2;
        break;
    case IS_OP_CONCAT:
        *min_in = 1;
        *max_in = IS_MAX_INPUTS;
        break;
    default:
        *min_in = 1;
        *max_in = 1;
        break;
    }
}

/* Checks one node's operator, input count and reference ranges. */
static imgsim_status check_node_refs(const ims_graph *g, int i, ims_err *e) {
    const ims_node *n = &g->nodes[i];
    if ((int)n->op < 0 || n->op >= IS_OP_COUNT)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "node %d has an invalid operator code %d", i, (int)n->op);
    int min_in, max_in, first_opt;
    op_arity(n->op, &min_in, &max_in, &first_opt);
    if (n->n_in < min_in || n->n_in > max_in) {
        if (min_in == max_in)
            return ims_fail(e, IMGSIM_ERR_FORMAT, "node '%s' (%s) has %d inputs, expected %d", node_label(n),
                           ims_op_name(n->op), n->n_in, min_in);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "node '%s' (%s) has %d inputs, expected %d to %d", node_label(n),
                       ims_op_name(n->op), n->n_in, min_in, max_in);
    }
    for (int k = 0; k < n->n_in; k++) {
        int v = n->in[k];
        if (v == -1) {
            if (k < first_opt)
                return ims_fail(e, IMGSIM_ERR_FORMAT, "node '%s' (%s): required input %d is missing",
                               node_label(n), ims_op_name(n->op), k);
            continue;
        }
        if (v < 0 || v >= g->n_vals)
            return ims_fail(e, IMGSIM_ERR_FORMAT, "node '%s' reads undefined value #%d", node_label(n), v);
    }
    if (n->out < 0 || n->out >= g->n_vals)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "node '%s' writes undefined value #%d", node_label(n), n->out);
    if (n->residual != -1 && (n->residual < 0 || n->residual >= g->n_vals))
        return ims_fail(e, IMGSIM_ERR_FORMAT, "node '%s' has an undefined residual value #%d", node_label(n),
                       n->residual);
    return IMGSIM_OK;
}

/* ---- a binary min-heap of node indices (the stable Kahn order) ---- */

static void heap_push(int *h, int *len, int x) {
    int i = (*len)++;
    h[i] = x;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (h[p] <= h[i]) break;
        int t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static int heap_pop(int *h, int *len) {
    int top = h[0];
    h[0] = h[--(*len)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *len && h[l] < h[m]) m = l;
        if (r < *len && h[r] < h[m]) m = r;
        if (m == i) break;
        int t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
    return top;
}

/* Finds a node that lies on a cycle, starting from a node that the sort could not place:
 * walking to an unplaced producer of one of its inputs must eventually repeat a node. */
static int find_cycle_node(const ims_graph *g, const int *placed, const int *producer, int start) {
    int n = g->n_nodes;
    int *seen = ims_calloc((size_t)n, sizeof *seen);
    if (!seen) return start;
    int cur = start;
    while (!seen[cur]) {
        seen[cur] = 1;
        const ims_node *nd = &g->nodes[cur];
        int next = -1;
        for (int k = 0; k < nd->n_in && next < 0; k++) {
            int v = nd->in[k];
            if (v >= 0 && producer[v] >= 0 && !placed[producer[v]]) next = producer[v];
        }
        if (next < 0 && nd->residual >= 0 && producer[nd->residual] >= 0 && !placed[producer[nd->residual]])
            next = producer[nd->residual];
        if (next < 0) break; /* cannot happen for an unplaced node; be safe */
        cur = next;
    }
    free(seen);
    return cur;
}

/* The graph-wide checks that come before the nodes': an input that is not a constant, an
 * output that is a value (or -1, none chosen yet). */
static imgsim_status check_ends(const ims_graph *g, ims_err *e) {
    if (!g) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "graph: NULL");
    if (g->n_vals < 0 || g->n_nodes < 0) return ims_fail(e, IMGSIM_ERR_INTERNAL, "graph: negative counts");
    if (g->input < 0 || g->input >= g->n_vals)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "graph has no input value");
    if (g->vals[g->input].data)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "graph input '%s' is a constant",
                        value_label(&g->vals[g->input]));
    if (g->output >= g->n_vals || g->output < -1)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "graph output #%d is not a value", g->output);
    return IMGSIM_OK;
}

/* Drops nodes marked dead (their names are owned by the graph), keeping the others' order. */
static void drop_dead(ims_graph *g) {
    int live = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead) {
            free(g->nodes[i].name);
            g->nodes[i].name = NULL;
            continue;
        }
        if (live != i) g->nodes[live] = g->nodes[i];
        live++;
    }
    g->n_nodes = live;
}

/* The working arrays of one link, for nn nodes and nv values. */
typedef struct linker {
    int nn, nv;
    int *producer;   /* per value: the node that writes it, or -1 */
    int *indeg;      /* per node: its reads of produced values not placed yet */
    int *heap;       /* the ready nodes (a min-heap of indices) */
    int *order;      /* the nodes in topological order */
    int *placed;     /* per node: 1 once in order */
    int *cons_start; /* CSR: the consumers of value v are cons[cons_start[v] .. cons_start[v + 1]) */
    int *cons;
} linker;

static imgsim_status linker_alloc(linker *L, const ims_graph *g, ims_err *e) {
    memset(L, 0, sizeof *L);
    int nn = L->nn = g->n_nodes, nv = L->nv = g->n_vals;
    L->producer = ims_malloc_array((size_t)nv + 1, sizeof(int));
    L->indeg = ims_malloc_array((size_t)nn + 1, sizeof(int));
    L->heap = ims_malloc_array((size_t)nn + 1, sizeof(int));
    L->order = ims_malloc_array((size_t)nn + 1, sizeof(int));
    L->placed = ims_calloc((size_t)nn + 1, sizeof(int));
    L->cons_start = ims_calloc((size_t)nv + 2, sizeof(int));
    if (!L->producer || !L->indeg || !L->heap || !L->order || !L->placed || !L->cons_start)
        return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory linking %d nodes", nn);
    return IMGSIM_OK;
}

static void linker_free(linker *L) {
    free(L->producer);
    free(L->indeg);
    free(L->heap);
    free(L->order);
    free(L->placed);
    free(L->cons_start);
    free(L->cons);
}

/* Producers: exactly one writer per activation; constants and the input are never written. */
static imgsim_status find_producers(const ims_graph *g, linker *L, ims_err *e) {
    int *producer = L->producer;
    for (int v = 0; v < L->nv; v++)
        producer[v] = -1;
    for (int i = 0; i < L->nn; i++) {
        const ims_node *n = &g->nodes[i];
        const ims_value *v = &g->vals[n->out];
        if (v->data)
            return ims_fail(e, IMGSIM_ERR_FORMAT, "node '%s' writes constant '%s'", node_label(n),
                            value_label(v));
        if (n->out == g->input)
            return ims_fail(e, IMGSIM_ERR_FORMAT, "node '%s' writes the graph input '%s'", node_label(n),
                            value_label(v));
        if (producer[n->out] >= 0)
            return ims_fail(e, IMGSIM_ERR_FORMAT, "value '%s' is written by both node '%s' and node '%s'",
                            value_label(v), node_label(&g->nodes[producer[n->out]]), node_label(n));
        producer[n->out] = i;
    }
    return IMGSIM_OK;
}

/* Every read names a constant, the graph input, or a produced value; the reads (inputs and
 * residuals) become the consumer lists L->cons_start / L->cons. */
static imgsim_status list_consumers(const ims_graph *g, linker *L, ims_err *e) {
    int nn = L->nn, nv = L->nv, *cons_start = L->cons_start;
    int total_refs = 0;
    for (int i = 0; i < nn; i++) {
        const ims_node *n = &g->nodes[i];
        int refs[IS_MAX_INPUTS + 1], nr = 0;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) refs[nr++] = n->in[k];
        if (n->residual >= 0) refs[nr++] = n->residual;
        for (int k = 0; k < nr; k++) {
            const ims_value *v = &g->vals[refs[k]];
            if (!v->data && refs[k] != g->input && L->producer[refs[k]] < 0)
                return ims_fail(e, IMGSIM_ERR_FORMAT, "node '%s' reads undefined value '%s'", node_label(n),
                                value_label(v));
            cons_start[refs[k] + 1]++;
        }
        total_refs += nr;
    }
    for (int v = 0; v < nv; v++)
        cons_start[v + 1] += cons_start[v];
    int *cons = L->cons = ims_malloc_array((size_t)total_refs + 1, sizeof(int));
    if (!cons) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory linking %d nodes", nn);
    /* Fill the consumer lists (cons_start[v] advanced as a cursor, then restored). */
    for (int i = 0; i < nn; i++) {
        const ims_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) cons[cons_start[n->in[k]]++] = i;
        if (n->residual >= 0) cons[cons_start[n->residual]++] = i;
    }
    for (int v = nv; v > 0; v--)
        cons_start[v] = cons_start[v - 1];
    cons_start[0] = 0;
    return IMGSIM_OK;
}

/* Stable Kahn into L->order: in-degree counts references to produced values; the smallest ready
 * index goes first. Refuses a cycle, naming a node on it. */
static imgsim_status sort_nodes(const ims_graph *g, linker *L, ims_err *e) {
    int nn = L->nn, *indeg = L->indeg, *heap = L->heap, *producer = L->producer;
    int hl = 0, no = 0;
    for (int i = 0; i < nn; i++) {
        const ims_node *n = &g->nodes[i];
        int d = 0;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && producer[n->in[k]] >= 0) d++;
        if (n->residual >= 0 && producer[n->residual] >= 0) d++;
        indeg[i] = d;
        if (d == 0) heap_push(heap, &hl, i);
    }
    while (hl > 0) {
        int i = heap_pop(heap, &hl);
        L->order[no++] = i;
        L->placed[i] = 1;
        int v = g->nodes[i].out;
        for (int c = L->cons_start[v]; c < L->cons_start[v + 1]; c++) {
            int j = L->cons[c];
            if (--indeg[j] == 0) heap_push(heap, &hl, j);
        }
    }
    if (no < nn) {
        int first = 0;
        while (first < nn && L->placed[first])
            first++;
        int at = find_cycle_node(g, L->placed, producer, first);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "graph is cyclic at node '%s'", node_label(&g->nodes[at]));
    }
    return IMGSIM_OK;
}

/* Applies L->order when it differs (moving whole node structs). */
static imgsim_status apply_order(ims_graph *g, const linker *L, ims_err *e) {
    int nn = L->nn;
    int sorted = 1;
    for (int i = 0; i < nn; i++)
        if (L->order[i] != i) sorted = 0;
    if (sorted) return IMGSIM_OK;
    ims_node *tmp = ims_malloc_array((size_t)nn, sizeof(ims_node));
    if (!tmp) return ims_fail(e, IMGSIM_ERR_NOMEM, "graph: out of memory sorting %d nodes", nn);
    for (int i = 0; i < nn; i++)
        tmp[i] = g->nodes[L->order[i]];
    memcpy(g->nodes, tmp, (size_t)nn * sizeof(ims_node));
    free(tmp);
    return IMGSIM_OK;
}

/* Fills ims_value.producer and n_consumers from the (ordered) nodes. */
static void fill_links(ims_graph *g) {
    for (int v = 0; v < g->n_vals; v++) {
        g->vals[v].producer = -1;
        g->vals[v].n_consumers = 0;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        ims_node *n = &g->nodes[i];
        g->vals[n->out].producer = i;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) g->vals[n->in[k]].n_consumers++;
        if (n->residual >= 0) g->vals[n->residual].n_consumers++;
    }
}

imgsim_status ims_graph_link(ims_graph *g, ims_err *e) {
    imgsim_status st = check_ends(g, e);
    if (st != IMGSIM_OK) return st;
    drop_dead(g);
    for (int i = 0; i < g->n_nodes; i++)
        if ((st = check_node_refs(g, i, e)) != IMGSIM_OK) return st;
    linker L;
    st = linker_alloc(&L, g, e);
    if (st == IMGSIM_OK) st = find_producers(g, &L, e);
    if (st == IMGSIM_OK) st = list_consumers(g, &L, e);
    if (st == IMGSIM_OK) st = sort_nodes(g, &L, e);
    if (st == IMGSIM_OK) st = apply_order(g, &L, e);
    if (st == IMGSIM_OK) fill_links(g);
    linker_free(&L);
    return st;
}
