/*
 * test_graph_link.c: ims_graph_link on small hand-built graphs: stable topological sorting,
 * producers and consumer counts, and each structural error (cycle, undefined value, two writers,
 * missing required input, bad index, writing a constant, wrong input count).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "model/graph.h"

/* An activation value with unknown dims. */
static int act(ims_graph *g, const char *name) {
    int v = ims_graph_add_value(g, name, 0, NULL, NULL);
    assert_true(v >= 0);
    return v;
}

/* A constant filled with 0.5. */
static int cst(ims_graph *g, const char *name, int rank, const int64_t *dims) {
    float buf[4096];
    for (int i = 0; i < 4096; i++)
        buf[i] = 0.5f;
    int v = ims_graph_add_value(g, name, rank, dims, buf);
    assert_true(v >= 0);
    return v;
}

static ims_node *node(ims_graph *g, ims_op op, const char *name, int n_in, const int *in, int out) {
    ims_node *n = ims_graph_add_node(g, op, name, n_in, in, out);
    assert_non_null(n);
    return n;
}

/* A graph with the input "x" [-1, 3, 8, 8] set. */
static ims_graph *new_graph(void) {
    ims_graph *g = NULL;
    assert_int_equal(ims_graph_new(&g, NULL), IMGSIM_OK);
    int64_t d[4] = {-1, 3, 8, 8};
    g->input = ims_graph_add_value(g, "x", 4, d, NULL);
    assert_int_equal(g->input, 0);
    return g;
}

/* Index of the node named name, or -1. */
static int node_index(const ims_graph *g, const char *name) {
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    return -1;
}

static void test_sorted_graph_keeps_order(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int a = act(g, "a"), b = act(g, "b"), c = act(g, "c");
    node(g, IS_OP_RELU, "r1", 1, (int[]){g->input}, a);
    node(g, IS_OP_SIGMOID, "s1", 1, (int[]){g->input}, b);
    node(g, IS_OP_ADD, "add", 2, (int[]){a, b}, c);
    g->output = c;
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
    assert_int_equal(node_index(g, "r1"), 0);
    assert_int_equal(node_index(g, "s1"), 1);
    assert_int_equal(node_index(g, "add"), 2);
    assert_int_equal(g->vals[g->input].n_consumers, 2);
    assert_int_equal(g->vals[g->input].producer, -1);
    assert_int_equal(g->vals[a].producer, 0);
    assert_int_equal(g->vals[b].producer, 1);
    assert_int_equal(g->vals[c].producer, 2);
    assert_int_equal(g->vals[a].n_consumers, 1);
    assert_int_equal(g->vals[c].n_consumers, 0);
    ims_graph_free(g);
}

static void test_unsorted_graph_is_sorted_stably(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int a = act(g, "a"), b = act(g, "b"), c = act(g, "c"), d = act(g, "d");
    /* Listed out of order: add(a, b) comes before its producers. Stable Kahn takes the smallest
     * ready index first: ready at start = {relu_a(1), sig_b(2), z(3)} -> relu_a, sig_b; then
     * add(0) is ready and smaller than z(3) -> add, z. */
    node(g, IS_OP_ADD, "add", 2, (int[]){a, b}, c);
    node(g, IS_OP_RELU, "relu_a", 1, (int[]){g->input}, a);
    node(g, IS_OP_SIGMOID, "sig_b", 1, (int[]){g->input}, b);
    node(g, IS_OP_RELU, "z", 1, (int[]){g->input}, d);
    g->output = c;
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
    assert_int_equal(g->n_nodes, 4);
    assert_int_equal(node_index(g, "relu_a"), 0);
    assert_int_equal(node_index(g, "sig_b"), 1);
    assert_int_equal(node_index(g, "add"), 2);
    assert_int_equal(node_index(g, "z"), 3);
    assert_int_equal(g->vals[c].producer, 2);
    assert_int_equal(g->vals[a].producer, 0);
    /* every node's inputs are produced before it */
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            assert_true(g->vals[v].producer < i);
        }
    ims_graph_free(g);
}

static void test_cycle_is_refused(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int a = act(g, "a"), b = act(g, "b"), c = act(g, "c"), d = act(g, "d");
    node(g, IS_OP_RELU, "head", 1, (int[]){g->input}, d);
    node(g, IS_OP_ADD, "loop_add", 2, (int[]){d, b}, a); /* a = d + b */
    node(g, IS_OP_RELU, "loop_relu", 1, (int[]){a}, b);  /* b = relu(a): cycle a <-> b */
    node(g, IS_OP_RELU, "tail", 1, (int[]){b}, c);
    g->output = c;
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "graph is cyclic at node 'loop_"));
    ims_graph_free(g);
}

static void test_self_loop_is_refused(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int a = act(g, "a");
    node(g, IS_OP_ADD, "selfish", 2, (int[]){g->input, a}, a);
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "graph is cyclic at node 'selfish'"));
    ims_graph_free(g);
}

static void test_undefined_value_is_refused(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int a = act(g, "a"), ghost = act(g, "ghost");
    node(g, IS_OP_ADD, "adder", 2, (int[]){g->input, ghost}, a);
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_string_equal(e.msg, "node 'adder' reads undefined value 'ghost'");
    ims_graph_free(g);
}

static void test_bad_index_is_refused(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int a = act(g, "a");
    node(g, IS_OP_RELU, "r", 1, (int[]){57}, a);
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "node 'r' reads undefined value"));
    g->nodes[0].in[0] = g->input;
    g->nodes[0].out = -3;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "writes undefined value"));
    ims_graph_free(g);
}

static void test_two_writers_are_refused(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int a = act(g, "a");
    node(g, IS_OP_RELU, "first", 1, (int[]){g->input}, a);
    node(g, IS_OP_SIGMOID, "second", 1, (int[]){g->input}, a);
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_string_equal(e.msg, "value 'a' is written by both node 'first' and node 'second'");
    ims_graph_free(g);
}

static void test_writing_constant_or_input_is_refused(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int64_t d1[1] = {3};
    int k = cst(g, "k", 1, d1);
    node(g, IS_OP_RELU, "w", 1, (int[]){g->input}, k);
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_string_equal(e.msg, "node 'w' writes constant 'k'");
    g->nodes[0].out = g->input;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "writes the graph input"));
    ims_graph_free(g);
}

static void test_optional_inputs(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int64_t wd[4] = {4, 3, 3, 3};
    int w = cst(g, "w", 4, wd);
    int a = act(g, "a"), b = act(g, "b");
    /* Conv bias absent: fine. */
    node(g, IS_OP_CONV, "conv", 3, (int[]){g->input, w, -1}, a);
    /* Clip with min and max absent: fine. */
    node(g, IS_OP_CLIP, "clip", 3, (int[]){a, -1, -1}, b);
    g->output = b;
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
    assert_int_equal(g->vals[w].n_consumers, 1);
    /* Conv weight absent: refused. */
    g->nodes[0].in[1] = -1;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "node 'conv' (Conv): required input 1 is missing"));
    ims_graph_free(g);
}

static void test_input_count_checked(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int a = act(g, "a");
    node(g, IS_OP_ADD, "lonely_add", 1, (int[]){g->input}, a);
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_string_equal(e.msg, "node 'lonely_add' (Add) has 1 inputs, expected 2");
    g->nodes[0].op = (ims_op)99;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "invalid operator"));
    ims_graph_free(g);
}

static void test_dead_nodes_dropped_and_residual_counted(void **state) {
    (void)state;
    ims_graph *g = new_graph();
    int a = act(g, "a"), b = act(g, "b"), c = act(g, "c");
    node(g, IS_OP_RELU, "r", 1, (int[]){g->input}, a);
    node(g, IS_OP_SIGMOID, "gone", 1, (int[]){a}, c)->dead = 1;
    /* b = relu(x) with residual a: a must come first, and counts as a consumer of a */
    ims_node *n = node(g, IS_OP_RELU, "res", 1, (int[]){g->input}, b);
    n->residual = a;
    g->output = b;
    /* put the residual user first to check that residual is a sort dependency */
    ims_node tmp = g->nodes[0];
    g->nodes[0] = g->nodes[2];
    g->nodes[2] = tmp;
    ims_err e;
    assert_int_equal(ims_graph_link(g, &e), IMGSIM_OK);
    assert_int_equal(g->n_nodes, 2);
    assert_int_equal(node_index(g, "gone"), -1);
    assert_int_equal(node_index(g, "r"), 0);
    assert_int_equal(node_index(g, "res"), 1);
    assert_int_equal(g->vals[a].n_consumers, 1);
    assert_int_equal(g->vals[c].producer, -1);
    ims_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sorted_graph_keeps_order),
        cmocka_unit_test(test_unsorted_graph_is_sorted_stably),
        cmocka_unit_test(test_cycle_is_refused),
        cmocka_unit_test(test_self_loop_is_refused),
        cmocka_unit_test(test_undefined_value_is_refused),
        cmocka_unit_test(test_bad_index_is_refused),
        cmocka_unit_test(test_two_writers_are_refused),
        cmocka_unit_test(test_writing_constant_or_input_is_refused),
        cmocka_unit_test(test_optional_inputs),
        cmocka_unit_test(test_input_count_checked),
        cmocka_unit_test(test_dead_nodes_dropped_and_residual_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
