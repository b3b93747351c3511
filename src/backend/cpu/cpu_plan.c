/*
 * cpu_plan.c: turns an optimised ims_graph into one plan (a list of oneDNN primitives with bound
 * arguments) for one batch size. See cpu_priv.h for the vocabulary (plan, step, tensor, buffer).
 *
 * Layouts: convolutions, inner products and pooling are created with format_tag_any so oneDNN
 * picks its blocked layouts (nChw16c, ...); element-wise ops, BN and binary ops take whatever
 * layout their input has; Flatten/Reshape/Gemm/MatMul need plain row-major tensors. When a
 * consumer needs another layout or data type than its input has, a reorder step converts it (and
 * the conversion is shared by later consumers of the same tensor).
 *
 * Fusion: a Conv/Gemm/MatMul node's fused residual and activation (set by the graph passes)
 * become oneDNN post-ops (sum, then eltwise). The sum post-op accumulates into dst, so the
 * residual must already be in the destination: when the residual value dies at this node, the
 * destination IS the residual's buffer (in place); otherwise a reorder copies it there first.
 * Element-wise and binary ops also run in place when their input dies with them.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "cpu_priv.h"

#define TRY(x)                                                                                  \
    do {                                                                                        \
        imgsim_status st_ = (x);                                                                \
        if (st_ != IMGSIM_OK) return st_;                                                       \
    } while (0)

/* Grows an array of elem-sized items so that it holds at least need items. */
static int grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *n = ims_realloc(*arr, (size_t)nc * elem);
    if (!n) return -1;
    *arr = n;
    *cap = nc;
    return 0;
}

imgsim_status ims_cpu_dnnl_fail(cpu_impl *c, ims_err *e, dnnl_status_t st, const char *what) {
    imgsim_status s = st == dnnl_unimplemented ? IMGSIM_ERR_UNSUPPORTED
                      : st == dnnl_out_of_memory ? IMGSIM_ERR_NOMEM
                                                 : IMGSIM_ERR_BACKEND;
    if (c && c->g && c->cur_node >= 0 && c->cur_node < c->g->n_nodes) {
        const ims_node *nd = &c->g->nodes[c->cur_node];
        return ims_fail(e, s, "cpu backend: node '%s' (%s): %s: oneDNN says %s",
                       nd->name ? nd->name : "?", ims_op_name(nd->op), what, dnnl_status2str(st));
    }
    return ims_fail(e, s, "cpu backend: %s: oneDNN says %s", what, dnnl_status2str(st));
}

#define DN(call, what)                                                                          \
    do {                                                                                        \
        dnnl_status_t d_ = (call);                                                              \
        if (d_ != dnnl_success) return ims_cpu_dnnl_fail(c, e, d_, what);                          \
    } while (0)

/* Fails with UNSUPPORTED naming the current node. */
static imgsim_status unsupported(cpu_impl *c, ims_err *e, const char *why) {
    const ims_node *nd = &c->g->nodes[c->cur_node];
    return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "cpu backend: node '%s' (%s, opset %d): %s",
                   nd->name ? nd->name : "?", ims_op_name(nd->op), c->g->opset, why);
}

/* A plain (row-major) memory descriptor: dims[rank], element type dt. */
static dnnl_status_t md_plain(dnnl_memory_desc_t *md, int rank, const int64_t *dims,
                              dnnl_data_type_t dt) {
    dnnl_dims_t d, s;
    int64_t stride = 1;
    for (int k = rank - 1; k >= 0; k--) {
        d[k] = dims[k];
        s[k] = stride;
        stride *= dims[k];
    }
    return dnnl_memory_desc_init_by_strides(md, rank, d, dt, s);
}

/* A descriptor that lets the primitive choose the layout. */
static dnnl_status_t md_any(dnnl_memory_desc_t *md, int rank, const int64_t *dims,
                            dnnl_data_type_t dt) {
    dnnl_dims_t d;
    for (int k = 0; k < rank; k++) d[k] = dims[k];
    return dnnl_memory_desc_init_by_tag(md, rank, d, dt, dnnl_format_tag_any);
}

/* The dims of value v with the symbolic batch replaced by batch. */
static void val_dims(const ims_value *v, int batch, int64_t *d) {
    for (int k = 0; k < v->rank; k++) d[k] = v->dims[k] < 0 ? batch : v->dims[k];
}

static int md_eq(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b) {
    return dnnl_memory_desc_equal(a, b);
}

/* ---- buffers, tensors, steps ------------------------------------------------------------ */

/* A new arena buffer of size bytes, first written by the next step. */
static int new_buf(cpu_plan *p, size_t size) {
    if (grow((void **)&p->bufs, &p->cap_bufs, p->n_bufs + 1, sizeof(cpu_buf))) return -1;
    cpu_buf *b = &p->bufs[p->n_bufs];
    b->size = (size + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    if (b->size == 0) b->size = CPU_ALIGN;
    b->first = b->last = p->n_steps;
    b->offset = 0;
    return p->n_bufs++;
}

/* A new tensor with descriptor md on buffer buf; mem (if non-NULL) is a borrowed memory object
 * (constants), else one is created with no handle yet. *out is its id. */
static imgsim_status new_tensor(cpu_impl *c, cpu_plan *p, const dnnl_memory_desc_t *md, int buf,
                                dnnl_memory_t mem, int *out, ims_err *e) {
    if (grow((void **)&p->tens, &p->cap_tens, p->n_tens + 1, sizeof(cpu_tensor)))
        return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    cpu_tensor *t = &p->tens[p->n_tens];
    t->md = *md;
    t->buf = buf;
    t->mem = mem;
    t->scale = 1.0f;
    t->zp = 0;
    if (!mem) DN(dnnl_memory_create(&t->mem, md, c->eng, DNNL_MEMORY_NONE), "memory_create");
    *out = p->n_tens++;
    return IMGSIM_OK;
}

/* A tensor with descriptor md on a new arena buffer sized for md. */
static imgsim_status new_act(cpu_impl *c, cpu_plan *p, const dnnl_memory_desc_t *md, int *out,
                             ims_err *e) {
    int b = new_buf(p, dnnl_memory_desc_get_size(md));
    if (b < 0) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    return new_tensor(c, p, md, b, NULL, out, e);
}

/* Arguments of a step being built: (DNNL_ARG_*, tensor id, read?) triples. */
typedef struct sargs {
    int n;
    int arg[CPU_MAX_ARGS], t[CPU_MAX_ARGS], rd[CPU_MAX_ARGS];
} sargs;

static void sa_in(sargs *a, int arg, int t) {
    a->arg[a->n] = arg;
    a->t[a->n] = t;
    a->rd[a->n++] = 1;
}
static void sa_out(sargs *a, int arg, int t) {
    a->arg[a->n] = arg;
    a->t[a->n] = t;
    a->rd[a->n++] = 0;
}

/* Creates pd's primitive and appends a step running it with args (plus the shared scratchpad
 * when pd needs one). Marks the buffers read by the step as live until it. pd stays owned by
 * the caller. */
static imgsim_status push_step(cpu_impl *c, cpu_plan *p, const_dnnl_primitive_desc_t pd,
                               sargs *a, ims_err *e) {
    if (grow((void **)&p->steps, &p->cap_steps, p->n_steps + 1, sizeof(cpu_step)))
        return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    int idx = p->n_steps;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t ssize = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (ssize > 0) {
        int ts;
        TRY(new_tensor(c, p, smd, CPU_BUF_SCRATCH, NULL, &ts, e));
        if (ssize > c->scratch_size) c->scratch_size = ssize;
        sa_out(a, DNNL_ARG_SCRATCHPAD, ts);
    }
    cpu_step *s = &p->steps[idx];
    memset(s, 0, sizeof *s);
    DN(dnnl_primitive_create(&s->prim, pd), "primitive_create");
    s->nargs = a->n;
    for (int k = 0; k < a->n; k++) {
        const cpu_tensor *t = &p->tens[a->t[k]];
        s->args[k].arg = a->arg[k];
        s->args[k].memory = t->mem;
        /* read or written by this step: live at least until it */
        if (t->buf >= 0 && p->bufs[t->buf].last < idx) p->bufs[t->buf].last = idx;
    }
    p->n_steps++;
    return IMGSIM_OK;
}

/* A primitive attribute with the user scratchpad and the post-ops: sum (when sum is set) then
 * the activation act (relu, or clip to [lo, hi]). */
static imgsim_status make_attr_epi(cpu_impl *c, dnnl_primitive_attr_t *attr, int sum, ims_act act, float lo,
                                   float hi, int epi, ims_err *e) {
    *attr = NULL;
    DN(dnnl_primitive_attr_create(attr), "primitive_attr_create");
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && (sum || act != IS_ACT_NONE || epi)) {
        dnnl_post_ops_t po = NULL;
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success && sum) st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success && act == IS_ACT_GELU)
            st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_gelu_erf, 0.0f, 0.0f);
        if (st == dnnl_success && act == IS_ACT_RELU)
            st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
        if (st == dnnl_success && act == IS_ACT_CLIP) {
            float a = isfinite(lo) ? lo : (lo < 0 ? -FLT_MAX : FLT_MAX);
            float b = isfinite(hi) ? hi : (hi < 0 ? -FLT_MAX : FLT_MAX);
            st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, a, b);
        }
        /* then a plan-time epilogue (find_epilogues, an eltwise alg): swish with alpha 1 is SiLU */
        if (st == dnnl_success && epi)
            st = dnnl_post_ops_append_eltwise(po, 1.0f, (dnnl_alg_kind_t)epi,
                                              epi == (int)dnnl_eltwise_swish ? 1.0f : 0.0f, 0.0f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, po);
        if (po) dnnl_post_ops_destroy(po);
    }
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
        return ims_cpu_dnnl_fail(c, e, st, "post-ops");
    }
    return IMGSIM_OK;
}

static imgsim_status make_attr(cpu_impl *c, dnnl_primitive_attr_t *attr, int sum, ims_act act, float lo, float hi,
                               ims_err *e) {
    return make_attr_epi(c, attr, sum, act, lo, hi, 0, e);
}

/* The plan-time epilogue of node i (an eltwise alg kind), 0 for none. */
static int node_epi(const cpu_impl *c, int i) { return c->epi_alg ? c->epi_alg[i] : 0; }

/* Appends a reorder step src tensor -> dst tensor (requantising when their int8 scales or zero
 * points differ: dst = (src - src.zp) * src.scale / dst.scale + dst.zp, rounded half to even and
 * saturated for s8/u8). */
static imgsim_status push_reorder(cpu_impl *c, cpu_plan *p, int src, int dst, ims_err *e) {
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_success;
    if (p->tens[src].scale != p->tens[dst].scale) {
        float r = p->tens[src].scale / p->tens[dst].scale;
        st = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &r);
    }
    if (st == dnnl_success && p->tens[src].zp)
        st = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &p->tens[src].zp);
    if (st == dnnl_success && p->tens[dst].zp)
        st = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &p->tens[dst].zp);
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&pd, &p->tens[src].md, c->eng, &p->tens[dst].md, c->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "reorder");
    sargs a = {0};
    sa_in(&a, DNNL_ARG_SRC, src);
    sa_out(&a, DNNL_ARG_DST, dst);
    imgsim_status s = push_step(c, p, pd, &a, e);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

/* *out = a tensor holding tensor t's data with descriptor md: t itself, an earlier conversion,
 * or a new reorder step into a new buffer. */
static imgsim_status ensure(cpu_impl *c, cpu_plan *p, int t, const dnnl_memory_desc_t *md,
                            int *out, ims_err *e) {
    if (md_eq(&p->tens[t].md, md)) {
        *out = t;
        return IMGSIM_OK;
    }
    for (int k = 0; k < p->n_convs; k++) {
        if (p->convs[k].src == t && md_eq(&p->tens[p->convs[k].dst].md, md)) {
            *out = p->convs[k].dst;
            return IMGSIM_OK;
        }
    }
    int d;
    TRY(new_act(c, p, md, &d, e));
    /* an int8 copy keeps the scale; a float one is dequantised */
    if (md->data_type == dnnl_s8 || md->data_type == dnnl_u8) {
        p->tens[d].scale = p->tens[t].scale;
        p->tens[d].zp = p->tens[t].zp;
    }
    TRY(push_reorder(c, p, t, d, e));
    if (grow((void **)&p->convs, &p->cap_convs, p->n_convs + 1, sizeof(cpu_conv)))
        return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    p->convs[p->n_convs].src = t;
    p->convs[p->n_convs].dst = d;
    p->n_convs++;
    *out = d;
    return IMGSIM_OK;
}

/* The tensor of activation value v converted to a plain row-major layout of type dt. */
static imgsim_status ensure_plain(cpu_impl *c, cpu_plan *p, int v, dnnl_data_type_t dt, int *out,
                                  ims_err *e) {
    const ims_value *val = &c->g->vals[v];
    int64_t d[IS_MAX_RANK];
    val_dims(val, p->batch, d);
    dnnl_memory_desc_t md;
    DN(md_plain(&md, val->rank, d, dt), "memory_desc_init");
    return ensure(c, p, p->val_tensor[v], &md, out, e);
}

/* Whether node i may overwrite the buffer holding value v: v (and every alias of it) is last
 * read by node i, and v lives in the arena (not the caller's input). */
static int can_inplace(cpu_impl *c, cpu_plan *p, int v, int i) {
    int t = p->val_tensor[v];
    return t >= 0 && p->tens[t].buf >= 0 && c->group_last[v] == i;
}

/* ---- constants ---------------------------------------------------------------------------- */

/* Index of the constant (value, tag) converted to md, creating it from src (float32 data laid
 * out as src_md) when absent. Conversion runs once here, at prepare. */
static imgsim_status get_const(cpu_impl *c, int value, int tag, const void *src,
                               const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *md,
                               int *out, ims_err *e) {
    for (int k = 0; k < c->n_consts; k++) {
        const cpu_const *q = &c->consts[k];
        if (q->value == value && q->tag == tag && md_eq(&q->md, md)) {
            *out = k;
            return IMGSIM_OK;
        }
    }
    if (grow((void **)&c->consts, &c->cap_consts, c->n_consts + 1, sizeof(cpu_const)))
        return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    cpu_const *q = &c->consts[c->n_consts];
    memset(q, 0, sizeof *q);
    q->value = value;
    q->tag = tag;
    q->md = *md;
    size_t size = dnnl_memory_desc_get_size(md);
    q->raw = ims_malloc(size + CPU_ALIGN);
    if (!q->raw) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory for weights");
    q->data = (void *)(((uintptr_t)q->raw + CPU_ALIGN - 1) & ~(uintptr_t)(CPU_ALIGN - 1));
    memset(q->data, 0, size);
    c->n_consts++; /* owned from here on: freed by ims_cpu_const_free_all */
    DN(dnnl_memory_create(&q->mem, md, c->eng, q->data), "memory_create");
    c->const_bytes += size;

    dnnl_memory_t sm = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_status_t st = dnnl_memory_create(&sm, src_md, c->eng, (void *)src);
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&pd, src_md, c->eng, md, c->eng, NULL);
    if (st == dnnl_success) st = dnnl_primitive_create(&prim, pd);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, sm}, {DNNL_ARG_DST, q->mem}};
        st = dnnl_primitive_execute(prim, c->stream, 2, args);
    }
    if (st == dnnl_success) st = dnnl_stream_wait(c->stream);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (sm) dnnl_memory_destroy(sm);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "converting weights");
    *out = c->n_consts - 1;
    return IMGSIM_OK;
}

/* The descriptor an earlier plan chose for constant (value, tag), or NULL. */
static const dnnl_memory_desc_t *find_const_md(cpu_impl *c, int value, int tag) {
    for (int k = 0; k < c->n_consts; k++)
        if (c->consts[k].value == value && c->consts[k].tag == tag) return &c->consts[k].md;
    return NULL;
}

/* Makes a weighted operator's primitive descriptor with weights descriptor w (ctx: the rest). */
typedef dnnl_status_t (*pd_maker)(dnnl_primitive_desc_t *pd, const dnnl_memory_desc_t *w, void *ctx);

static const char *impl_name(const_dnnl_primitive_desc_t pd) {
    const char *s = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s) return "";
    return s;
}

/* A weighted operator's primitive descriptor for this plan: with the weights layout oneDNN prefers
 * for this batch (w_any), or with prev, the layout an earlier, larger-batch plan chose, when
 * oneDNN runs it with the same implementation. Sharing saves a copy of the weights, but a layout
 * chosen for batch 32 can force batch 1 onto a far slower kernel (with AMX: ResNet-50 at batch 1
 * took 7 s instead of 9 ms), so it is shared only where the implementation does not change. */
static dnnl_status_t make_pd_sharing(dnnl_primitive_desc_t *out, const dnnl_memory_desc_t *prev,
                                     const dnnl_memory_desc_t *w_any, pd_maker make, void *ctx) {
    dnnl_primitive_desc_t own = NULL, shared = NULL;
    *out = NULL;
    dnnl_status_t st = make(&own, w_any, ctx);
    if (!prev) {
        *out = own;
        return st;
    }
    dnnl_status_t st_shared = make(&shared, prev, ctx);
    if (st != dnnl_success) { /* only the shared layout is implemented */
        *out = shared;
        return st_shared;
    }
    if (st_shared == dnnl_success && !strcmp(impl_name(own), impl_name(shared))) {
        dnnl_primitive_desc_destroy(own);
        *out = shared;
    } else {
        if (shared) dnnl_primitive_desc_destroy(shared);
        *out = own;
    }
    return dnnl_success;
}

/* A plan tensor referring to constant k. */
static imgsim_status const_tensor(cpu_impl *c, cpu_plan *p, int k, int *out, ims_err *e) {
    return new_tensor(c, p, &c->consts[k].md, CPU_BUF_CONST, c->consts[k].mem, out, e);
}

void ims_cpu_const_free_all(cpu_impl *c) {
    for (int k = 0; k < c->n_consts; k++) {
        if (c->consts[k].mem) dnnl_memory_destroy(c->consts[k].mem);
        free(c->consts[k].raw);
    }
    free(c->consts);
    c->consts = NULL;
    c->n_consts = c->cap_consts = 0;
}

/* ---- destination with a fused residual ------------------------------------------------------ */

/* The destination tensor of a node with descriptor dst_md. With a residual (sum post-op) the
 * residual's data must be in it before the primitive runs: the residual's own buffer when it
 * dies here and no input of the node (src_bufs) shares it, else a copy made by a reorder. */
static imgsim_status make_dst(cpu_impl *c, cpu_plan *p, int i, int residual,
                              const dnnl_memory_desc_t *dst_md, const int *src_bufs, int n_src,
                              int *out, ims_err *e) {
    if (residual < 0) return new_act(c, p, dst_md, out, e);
    int rt = p->val_tensor[residual];
    if (rt < 0) return unsupported(c, e, "residual input is not an activation");
    int ok = can_inplace(c, p, residual, i) && md_eq(&p->tens[rt].md, dst_md);
    for (int k = 0; ok && k < n_src; k++)
        if (src_bufs[k] == p->tens[rt].buf) ok = 0;
    if (ok) return new_tensor(c, p, dst_md, p->tens[rt].buf, NULL, out, e);
    TRY(new_act(c, p, dst_md, out, e));
    return push_reorder(c, p, rt, *out, e);
}

/* ---- operators ------------------------------------------------------------------------------ */

/* The end of planning a weighted step (Conv, Gemm, MatMul) once its tensors exist (s: the status
 * so far): the step with its arguments (DST is read too when the sum post-op adds a residual
 * into it), and the output value's tensor. Destroys pd. */
static imgsim_status push_weighted(cpu_impl *c, cpu_plan *p, const ims_node *nd, dnnl_primitive_desc_t pd,
                                   imgsim_status s, int src, int wt, int bt, int yt, ims_err *e) {
    if (!s) {
        sargs a = {0};
        sa_in(&a, DNNL_ARG_SRC, src);
        sa_in(&a, DNNL_ARG_WEIGHTS, wt);
        if (bt >= 0) sa_in(&a, DNNL_ARG_BIAS, bt);
        if (nd->residual >= 0) sa_in(&a, DNNL_ARG_DST, yt); /* read by the sum post-op */
        else sa_out(&a, DNNL_ARG_DST, yt);
        s = push_step(c, p, pd, &a, e);
    }
    dnnl_primitive_desc_destroy(pd);
    if (!s) p->val_tensor[nd->out] = yt;
    return s;
}

/* Conv: y = act(conv(x, w) + b + residual). x [N, C, H, W], w [OC, C/group, KH, KW],
 * b [OC], y [N, OC, OH, OW]. */
/* The convolution's descriptors but its weights (make_pd_sharing's ctx). */
typedef struct conv_ctx {
    cpu_impl *c;
    const_dnnl_primitive_attr_t attr;
    const dnnl_memory_desc_t *src, *bias, *dst;
    const int64_t *strides, *dil, *pl, *pr;
} conv_ctx;

static dnnl_status_t make_conv_pd(dnnl_primitive_desc_t *pd, const dnnl_memory_desc_t *w, void *ctx) {
    const conv_ctx *x = ctx;
    dnnl_convolution_desc_t cd;
    dnnl_status_t st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                                  x->src, w, x->bias, x->dst, x->strides, x->dil,
                                                                  x->pl, x->pr);
    return st == dnnl_success ? dnnl_primitive_desc_create(pd, &cd, x->attr, x->c->eng, NULL) : st;
}

static imgsim_status plan_conv(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    const ims_value *xv = &g->vals[nd->in[0]], *wv = &g->vals[nd->in[1]], *yv = &g->vals[nd->out];
    if (p->val_tensor[nd->in[0]] < 0) return unsupported(c, e, "input is not an activation");
    if (!wv->data || wv->rank != 4) return unsupported(c, e, "weights must be a constant [OC, C/group, KH, KW]");
    if (xv->rank != 4 || yv->rank != 4) return unsupported(c, e, "only 2-D convolutions are supported");
    int bias_v = nd->n_in > 2 ? nd->in[2] : -1;
    if (bias_v >= 0 && (!g->vals[bias_v].data || ims_value_numel(&g->vals[bias_v]) != wv->dims[0]))
        return unsupported(c, e, "bias must be a constant of OC elements");
    if (c->conv_int8 && c->conv_int8[i]) return ims_cpu_plan_conv_int8(c, p, i, e);
    int grp = nd->group > 0 ? nd->group : 1;
    int64_t xd[4], yd[4], wd[5];
    val_dims(xv, p->batch, xd);
    val_dims(yv, p->batch, yd);
    int wrank = 4;
    if (grp > 1) {
        if (wv->dims[0] % grp) return unsupported(c, e, "output channels not divisible by group");
        wrank = 5;
        wd[0] = grp;
        wd[1] = wv->dims[0] / grp;
        wd[2] = wv->dims[1];
        wd[3] = wv->dims[2];
        wd[4] = wv->dims[3];
    } else {
        for (int k = 0; k < 4; k++) wd[k] = wv->dims[k];
    }
    dnnl_data_type_t dt = c->act_dt;
    dnnl_memory_desc_t src_md, w_md, b_md, dst_md, w_plain;
    DN(md_any(&src_md, 4, xd, dt), "memory_desc_init");
    DN(md_any(&dst_md, 4, yd, dt), "memory_desc_init");
    DN(md_any(&w_md, wrank, wd, dt), "memory_desc_init");
    DN(md_plain(&w_plain, wrank, wd, dnnl_f32), "memory_desc_init");
    int64_t oc = wv->dims[0];
    DN(md_plain(&b_md, 1, &oc, dnnl_f32), "memory_desc_init");
    dnnl_dims_t strides = {nd->stride[0], nd->stride[1]};
    dnnl_dims_t dil = {nd->dilation[0] - 1, nd->dilation[1] - 1};
    dnnl_dims_t pl = {nd->pad[0], nd->pad[1]}, pr = {nd->pad[2], nd->pad[3]};

    dnnl_primitive_attr_t attr;
    TRY(make_attr_epi(c, &attr, nd->residual >= 0, nd->act, nd->act_min, nd->act_max, node_epi(c, i), e));
    dnnl_primitive_desc_t pd = NULL;
    conv_ctx cx = {c, attr, &src_md, bias_v >= 0 ? &b_md : NULL, &dst_md, strides, dil, pl, pr};
    /* smaller-batch plans share the weights layout the first plan chose where that costs nothing */
    dnnl_status_t st = make_pd_sharing(&pd, find_const_md(c, nd->in[1], CPU_CT_PLAIN), &w_md, make_conv_pd, &cx);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "convolution");

    imgsim_status s = IMGSIM_OK;
    int xs = -1, wk = -1, wt = -1, bt = -1, yt = -1;
    const dnnl_memory_desc_t *q_src = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *q_w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *q_dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    s = ensure(c, p, p->val_tensor[nd->in[0]], q_src, &xs, e);
    if (!s) s = get_const(c, nd->in[1], CPU_CT_PLAIN, wv->data, &w_plain, q_w, &wk, e);
    if (!s) s = const_tensor(c, p, wk, &wt, e);
    if (!s && bias_v >= 0) {
        int bk;
        s = get_const(c, bias_v, CPU_CT_PLAIN, g->vals[bias_v].data, &b_md, &b_md, &bk, e);
        if (!s) s = const_tensor(c, p, bk, &bt, e);
    }
    if (!s) {
        int sb = p->tens[xs].buf;
        s = make_dst(c, p, i, nd->residual, q_dst, &sb, 1, &yt, e);
    }
    return push_weighted(c, p, nd, pd, s, xs, wt, bt, yt, e);
}

/* Element-wise y = f(x) with x's layout: alg with alpha/beta (relu: 0; clip: lo, hi). Runs in
 * place when x dies here. */
static imgsim_status plan_eltwise(cpu_impl *c, cpu_plan *p, int i, int xval, int yval,
                                  dnnl_alg_kind_t alg, float alpha, float beta, ims_err *e) {
    int xt = p->val_tensor[xval];
    if (xt < 0) return unsupported(c, e, "input is not an activation");
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_unimplemented;
    imgsim_status s = IMGSIM_OK;
    for (int attempt = 0; attempt < 2 && st != dnnl_success; attempt++) {
        if (attempt == 1) {
            s = ensure_plain(c, p, xval, p->tens[xt].md.data_type, &xt, e);
            if (s) break;
        }
        dnnl_eltwise_desc_t d;
        st = dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, alg, &p->tens[xt].md, alpha, beta);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, c->eng, NULL);
    }
    dnnl_primitive_attr_destroy(attr);
    if (s) return s;
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "eltwise");
    int yt;
    if (xt == p->val_tensor[xval] && can_inplace(c, p, xval, i))
        s = new_tensor(c, p, &p->tens[xt].md, p->tens[xt].buf, NULL, &yt, e);
    else
        s = new_act(c, p, &p->tens[xt].md, &yt, e);
    if (!s) {
        sargs a = {0};
        sa_in(&a, DNNL_ARG_SRC, xt);
        sa_out(&a, DNNL_ARG_DST, yt);
        s = push_step(c, p, pd, &a, e);
    }
    dnnl_primitive_desc_destroy(pd);
    if (!s) p->val_tensor[yval] = yt;
    return s;
}

/* Applies a node's activation as its own eltwise step (for ops that do not fuse it). */
static imgsim_status plan_act_step(cpu_impl *c, cpu_plan *p, int i, int yval, ims_act act,
                                   float lo, float hi, ims_err *e) {
    if (act == IS_ACT_NONE) return IMGSIM_OK;
    float a = act == IS_ACT_RELU ? 0.0f : (isfinite(lo) ? lo : -FLT_MAX);
    float b = act == IS_ACT_RELU ? 0.0f : (isfinite(hi) ? hi : FLT_MAX);
    /* y's readers come after node i, so this writes a new tensor and rebinds y to it */
    return plan_eltwise(c, p, i, yval, yval, act == IS_ACT_RELU ? dnnl_eltwise_relu : dnnl_eltwise_clip,
                        a, b, e);
}

/* BatchNormalization (inference): y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel
 * (axis 1), in x's layout. */
static imgsim_status plan_bn(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int xv = nd->in[0];
    int xt = p->val_tensor[xv];
    if (xt < 0) return unsupported(c, e, "input is not an activation");
    if (g->vals[xv].rank < 2) return unsupported(c, e, "input rank < 2");
    int64_t ch = g->vals[xv].dims[1];
    for (int k = 1; k <= 4; k++) {
        int v = nd->n_in > k ? nd->in[k] : -1;
        if (v < 0 || !g->vals[v].data || ims_value_numel(&g->vals[v]) != ch)
            return unsupported(c, e, "scale, bias, mean and variance must be constants of C elements");
    }
    dnnl_memory_desc_t cmd;
    DN(md_plain(&cmd, 1, &ch, dnnl_f32), "memory_desc_init");
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_unimplemented;
    imgsim_status s = IMGSIM_OK;
    unsigned flags = dnnl_use_global_stats | dnnl_use_scale | dnnl_use_shift;
    for (int attempt = 0; attempt < 2 && st != dnnl_success; attempt++) {
        if (attempt == 1) {
            s = ensure_plain(c, p, xv, p->tens[xt].md.data_type, &xt, e);
            if (s) break;
        }
        dnnl_batch_normalization_desc_t d;
        st = dnnl_batch_normalization_forward_desc_init(&d, dnnl_forward_inference, &p->tens[xt].md,
                                                        nd->epsilon, flags);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, c->eng, NULL);
    }
    dnnl_primitive_attr_destroy(attr);
    if (s) return s;
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "batch_normalization");
    int ct[4], yt = -1;
    static const int which[4] = {DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
    for (int k = 0; k < 4 && !s; k++) {
        int ck;
        s = get_const(c, nd->in[k + 1], CPU_CT_PLAIN, g->vals[nd->in[k + 1]].data, &cmd, &cmd, &ck, e);
        if (!s) s = const_tensor(c, p, ck, &ct[k], e);
    }
    if (!s) s = new_act(c, p, &p->tens[xt].md, &yt, e);
    if (!s) {
        sargs a = {0};
        sa_in(&a, DNNL_ARG_SRC, xt);
        for (int k = 0; k < 4; k++) sa_in(&a, which[k], ct[k]);
        sa_out(&a, DNNL_ARG_DST, yt);
        s = push_step(c, p, pd, &a, e);
    }
    dnnl_primitive_desc_destroy(pd);
    if (!s) p->val_tensor[nd->out] = yt;
    return s;
}

/* Add / Mul / Sub / Div with numpy broadcasting of the second operand: y [dims of the first] =
 * x0 (op) x1, x1's dims equal to y's or 1. One operand may be a constant (for Sub and Div the
 * second). Fuses the node's activation as a post-op. */
static imgsim_status plan_binary(cpu_impl *c, cpu_plan *p, int i, int *fused_act, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int a = nd->in[0], b = nd->in[1];
    const ims_value *yv = &g->vals[nd->out];
    int r = yv->rank;
    int64_t yd[IS_MAX_RANK];
    val_dims(yv, p->batch, yd);
    if (g->vals[a].data && g->vals[b].data) return unsupported(c, e, "both operands are constants");
    int swapped = 0;
    if (g->vals[a].data) {
        int t = a;
        a = b;
        b = t;
        swapped = !swapped;
    }
    /* a is an activation; it must have the output's dims (else try the other way around) */
    int64_t ad[IS_MAX_RANK], bd[IS_MAX_RANK];
    int same = g->vals[a].rank == r;
    if (same) {
        val_dims(&g->vals[a], p->batch, ad);
        for (int k = 0; k < r; k++) same &= ad[k] == yd[k];
    }
    if (!same && !g->vals[b].data) {
        int t = a;
        a = b;
        b = t;
        swapped = !swapped;
        same = g->vals[a].rank == r;
        if (same) {
            val_dims(&g->vals[a], p->batch, ad);
            for (int k = 0; k < r; k++) same &= ad[k] == yd[k];
        }
    }
    if (!same) return unsupported(c, e, "broadcasting both operands is not supported");
    if (swapped && (nd->op == IS_OP_SUB || nd->op == IS_OP_DIV))
        return unsupported(c, e, "the first operand must be the activation of the output's shape");
    const ims_value *bv = &g->vals[b];
    if (bv->rank > r) return unsupported(c, e, "operand rank above the output's");
    for (int k = 0; k < r; k++) bd[k] = 1;
    int64_t tmp[IS_MAX_RANK];
    val_dims(bv, p->batch, tmp);
    for (int k = 0; k < bv->rank; k++) bd[r - bv->rank + k] = tmp[k];
    for (int k = 0; k < r; k++)
        if (bd[k] != yd[k] && bd[k] != 1) return unsupported(c, e, "operand dims do not broadcast");
    if (bv->data && bv->rank == r && bd[0] != 1) return unsupported(c, e, "constant operand spans the batch axis");

    int at = p->val_tensor[a], bt = -1;
    if (at < 0 || (!bv->data && p->val_tensor[b] < 0)) return unsupported(c, e, "input is not available");
    dnnl_data_type_t dt = p->tens[at].md.data_type;
    imgsim_status s = IMGSIM_OK;
    if (bv->data) {
        dnnl_memory_desc_t smd, dmd;
        DN(md_plain(&smd, r, bd, dnnl_f32), "memory_desc_init");
        DN(md_plain(&dmd, r, bd, dt), "memory_desc_init");
        int ck;
        TRY(get_const(c, b, CPU_CT_BCAST, bv->data, &smd, &dmd, &ck, e));
        TRY(const_tensor(c, p, ck, &bt, e));
    } else {
        bt = p->val_tensor[b];
    }
    dnnl_alg_kind_t alg = nd->op == IS_OP_ADD   ? dnnl_binary_add
                          : nd->op == IS_OP_SUB ? dnnl_binary_sub
                          : nd->op == IS_OP_DIV ? dnnl_binary_div
                                                : dnnl_binary_mul;
    /* two activations of the same dims in different layouts (a block's plain output and a blocked
     * residual: ConvNeXt's first block of each stage) run only on oneDNN's reference binary kernel,
     * many times slower than one jit reorder of the second into the first's layout */
    int full = !bv->data;
    for (int k = 0; k < r; k++) full &= bd[k] == yd[k];
    if (full && !md_eq(&p->tens[at].md, &p->tens[bt].md)) TRY(ensure(c, p, bt, &p->tens[at].md, &bt, e));
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, 0, nd->act, nd->act_min, nd->act_max, e));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_unimplemented;
    /* attempts: as they are; second operand plain; both plain */
    for (int attempt = 0; attempt < 3 && st != dnnl_success; attempt++) {
        if (attempt == 1) {
            if (bv->data) continue;
            dnnl_memory_desc_t m;
            DN(md_plain(&m, r, bd, dt), "memory_desc_init");
            s = ensure(c, p, bt, &m, &bt, e);
        }
        if (attempt == 2) {
            s = ensure_plain(c, p, a, dt, &at, e);
            if (!s && !bv->data) {
                dnnl_memory_desc_t m;
                DN(md_plain(&m, r, bd, dt), "memory_desc_init");
                s = ensure(c, p, bt, &m, &bt, e);
            }
        }
        if (s) break;
        dnnl_binary_desc_t d;
        st = dnnl_binary_desc_init(&d, alg, &p->tens[at].md, &p->tens[bt].md, &p->tens[at].md);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, c->eng, NULL);
    }
    dnnl_primitive_attr_destroy(attr);
    if (s) return s;
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "binary");
    int yt = -1;
    if (at == p->val_tensor[a] && can_inplace(c, p, a, i) && p->tens[bt].buf != p->tens[at].buf)
        s = new_tensor(c, p, &p->tens[at].md, p->tens[at].buf, NULL, &yt, e);
    else
        s = new_act(c, p, &p->tens[at].md, &yt, e);
    if (!s) {
        sargs sa = {0};
        sa_in(&sa, DNNL_ARG_SRC_0, at);
        sa_in(&sa, DNNL_ARG_SRC_1, bt);
        sa_out(&sa, DNNL_ARG_DST, yt);
        s = push_step(c, p, pd, &sa, e);
    }
    dnnl_primitive_desc_destroy(pd);
    if (!s) {
        p->val_tensor[nd->out] = yt;
        *fused_act = 1;
    }
    return s;
}

/* MaxPool / AveragePool / GlobalAveragePool: x [N, C, H, W] -> y [N, C, OH, OW] (OH, OW from
 * shape inference, which applied ceil_mode; the right/bottom padding is extended to match, as
 * oneDNN wants the floor formula to hold). */
static imgsim_status plan_pool(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int xv = nd->in[0];
    int xt = p->val_tensor[xv];
    if (xt < 0) return unsupported(c, e, "input is not an activation");
    const ims_value *x = &g->vals[xv], *y = &g->vals[nd->out];
    if (x->rank != 4 || y->rank != 4) return unsupported(c, e, "only 2-D pooling is supported");
    int64_t xd[4], yd[4];
    val_dims(x, p->batch, xd);
    val_dims(y, p->batch, yd);
    dnnl_dims_t ker, str, dil, pl, pr;
    dnnl_alg_kind_t alg;
    if (nd->op == IS_OP_GLOBALAVGPOOL) {
        ker[0] = xd[2];
        ker[1] = xd[3];
        str[0] = str[1] = 1;
        dil[0] = dil[1] = 0;
        pl[0] = pl[1] = pr[0] = pr[1] = 0;
        alg = dnnl_pooling_avg_exclude_padding;
    } else {
        int is_max = nd->op == IS_OP_MAXPOOL;
        alg = is_max ? dnnl_pooling_max
              : nd->count_include_pad ? dnnl_pooling_avg_include_padding
                                      : dnnl_pooling_avg_exclude_padding;
        for (int k = 0; k < 2; k++) {
            ker[k] = nd->kernel[k];
            str[k] = nd->stride[k] > 0 ? nd->stride[k] : 1;
            int d = is_max && nd->dilation[k] > 0 ? nd->dilation[k] : 1;
            dil[k] = d - 1;
            int64_t ext = (ker[k] - 1) * d + 1;
            pl[k] = nd->pad[k];
            pr[k] = nd->pad[2 + k];
            int64_t need = (yd[2 + k] - 1) * str[k] + ext - xd[2 + k] - pl[k];
            if (need > pr[k]) {
                if (alg == dnnl_pooling_avg_include_padding)
                    return unsupported(c, e, "ceil_mode with count_include_pad where a window passes the padding");
                pr[k] = need;
            }
        }
    }
    dnnl_memory_desc_t dst_any;
    DN(md_any(&dst_any, 4, yd, p->tens[xt].md.data_type), "memory_desc_init");
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_unimplemented;
    imgsim_status s = IMGSIM_OK;
    for (int attempt = 0; attempt < 2 && st != dnnl_success; attempt++) {
        if (attempt == 1) {
            s = ensure_plain(c, p, xv, p->tens[xt].md.data_type, &xt, e);
            if (s) break;
        }
        dnnl_pooling_v2_desc_t d;
        st = dnnl_pooling_v2_forward_desc_init(&d, dnnl_forward_inference, alg, &p->tens[xt].md,
                                               &dst_any, str, ker, dil, pl, pr);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, c->eng, NULL);
    }
    dnnl_primitive_attr_destroy(attr);
    if (s) return s;
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "pooling");
    int yt = -1;
    s = new_act(c, p, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), &yt, e);
    if (!s) {
        sargs a = {0};
        sa_in(&a, DNNL_ARG_SRC, xt);
        sa_out(&a, DNNL_ARG_DST, yt);
        s = push_step(c, p, pd, &a, e);
    }
    dnnl_primitive_desc_destroy(pd);
    if (!s) p->val_tensor[nd->out] = yt;
    return s;
}

/* Flatten / Reshape: a view of x in plain layout with y's dims (x converted to plain first if
 * it is blocked). The batch axis must stay the first axis. */
static imgsim_status plan_reshape(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int xv = nd->in[0];
    const ims_value *x = &g->vals[xv], *y = &g->vals[nd->out];
    if (p->val_tensor[xv] < 0) return unsupported(c, e, "input is not an activation");
    if (x->dims[0] >= 0 || y->dims[0] >= 0) return unsupported(c, e, "reshape must keep the batch axis first");
    if (ims_value_numel(x) != ims_value_numel(y)) return unsupported(c, e, "element counts differ");
    int xt;
    TRY(ensure_plain(c, p, xv, p->tens[p->val_tensor[xv]].md.data_type, &xt, e));
    int64_t yd[IS_MAX_RANK];
    val_dims(y, p->batch, yd);
    dnnl_memory_desc_t md;
    DN(md_plain(&md, y->rank, yd, p->tens[xt].md.data_type), "memory_desc_init");
    int yt;
    TRY(new_tensor(c, p, &md, p->tens[xt].buf, NULL, &yt, e));
    p->val_tensor[nd->out] = yt;
    return IMGSIM_OK;
}

/* Transpose (batch axis kept) and Slice (step 1): a reorder from a view of the plain input (its
 * strides permuted, or a sub-memory at the starts) into a plain output. */
static imgsim_status plan_view_copy(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int xv = nd->in[0];
    const ims_value *x = &g->vals[xv], *y = &g->vals[nd->out];
    if (p->val_tensor[xv] < 0) return unsupported(c, e, "input is not an activation");
    int xt;
    TRY(ensure_plain(c, p, xv, p->tens[p->val_tensor[xv]].md.data_type, &xt, e));
    dnnl_data_type_t dt = p->tens[xt].md.data_type;
    int64_t xd[IS_MAX_RANK], yd[IS_MAX_RANK];
    val_dims(x, p->batch, xd);
    val_dims(y, p->batch, yd);
    dnnl_memory_desc_t view, ymd;
    if (nd->op == IS_OP_TRANSPOSE) {
        if (nd->n_perm != x->rank || x->rank != y->rank) return unsupported(c, e, "perm does not match the rank");
        int64_t xs[IS_MAX_RANK], st = 1;
        for (int k = x->rank - 1; k >= 0; k--) {
            xs[k] = st;
            st *= xd[k];
        }
        dnnl_dims_t vd, vs;
        for (int k = 0; k < x->rank; k++) {
            vd[k] = xd[nd->perm[k]];
            vs[k] = xs[nd->perm[k]];
        }
        DN(dnnl_memory_desc_init_by_strides(&view, x->rank, vd, dt, vs), "memory_desc_init");
    } else {
        dnnl_dims_t vd, off;
        for (int k = 0; k < x->rank; k++) {
            vd[k] = yd[k];
            off[k] = k == 0 ? 0 : nd->offset[k];
        }
        DN(dnnl_memory_desc_init_submemory(&view, &p->tens[xt].md, vd, off), "memory_desc_init_submemory");
    }
    DN(md_plain(&ymd, y->rank, yd, dt), "memory_desc_init");
    int vt, yt;
    TRY(new_tensor(c, p, &view, p->tens[xt].buf, NULL, &vt, e));
    TRY(new_act(c, p, &ymd, &yt, e));
    TRY(push_reorder(c, p, vt, yt, e));
    p->val_tensor[nd->out] = yt;
    return IMGSIM_OK;
}

/* ReduceMean: a oneDNN mean reduction of the plain input into the kept-dims shape (1 on the
 * reduced axes); without keepdims the output is a view of that buffer. */
static imgsim_status plan_reducemean(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int xv = nd->in[0];
    const ims_value *x = &g->vals[xv], *y = &g->vals[nd->out];
    if (p->val_tensor[xv] < 0) return unsupported(c, e, "input is not an activation");
    int xt;
    TRY(ensure_plain(c, p, xv, p->tens[p->val_tensor[xv]].md.data_type, &xt, e));
    dnnl_data_type_t dt = p->tens[xt].md.data_type;
    int64_t kd[IS_MAX_RANK], yd[IS_MAX_RANK];
    val_dims(x, p->batch, kd);
    for (int k = 0; k < nd->n_perm; k++) kd[nd->perm[k]] = 1;
    val_dims(y, p->batch, yd);
    dnnl_memory_desc_t kmd, ymd;
    DN(md_plain(&kmd, x->rank, kd, dt), "memory_desc_init");
    DN(md_plain(&ymd, y->rank, yd, dt), "memory_desc_init");
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_reduction_desc_t d;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reduction_desc_init(&d, dnnl_reduction_mean, &p->tens[xt].md, &kmd, 0.0f, 0.0f);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, c->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "reduction");
    int kt = -1, yt = -1;
    imgsim_status s = new_act(c, p, &kmd, &kt, e);
    if (!s) {
        sargs a = {0};
        sa_in(&a, DNNL_ARG_SRC, xt);
        sa_out(&a, DNNL_ARG_DST, kt);
        s = push_step(c, p, pd, &a, e);
    }
    dnnl_primitive_desc_destroy(pd);
    if (!s && !nd->keepdims) s = new_tensor(c, p, &ymd, p->tens[kt].buf, NULL, &yt, e);
    if (!s) p->val_tensor[nd->out] = nd->keepdims ? kt : yt;
    return s;
}

/* LayerNormalization over the last axis of the plain input, scale and shift as [C] constants
 * (shift 0 without a bias). */
static imgsim_status plan_layernorm(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int xv = nd->in[0];
    const ims_value *x = &g->vals[xv];
    if (p->val_tensor[xv] < 0) return unsupported(c, e, "input is not an activation");
    int64_t ch = x->dims[x->rank - 1];
    int sv = nd->in[1], bv = nd->n_in > 2 ? nd->in[2] : -1;
    if (sv < 0 || !g->vals[sv].data || ims_value_numel(&g->vals[sv]) != ch ||
        (bv >= 0 && (!g->vals[bv].data || ims_value_numel(&g->vals[bv]) != ch)))
        return unsupported(c, e, "scale and bias must be constants of the last axis' size");
    int xt;
    TRY(ensure_plain(c, p, xv, p->tens[p->val_tensor[xv]].md.data_type, &xt, e));
    dnnl_memory_desc_t cmd;
    DN(md_plain(&cmd, 1, &ch, dnnl_f32), "memory_desc_init");
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_layer_normalization_desc_t d;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_layer_normalization_forward_desc_init(&d, dnnl_forward_inference, &p->tens[xt].md, NULL,
                                                                  nd->epsilon, dnnl_use_scale | dnnl_use_shift);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, c->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "layer_normalization");
    int ct[2], yt = -1;
    imgsim_status s = IMGSIM_OK;
    float *zero = NULL;
    for (int k = 0; k < 2 && !s; k++) {
        int v = k == 0 ? sv : bv, ck;
        const float *src = v >= 0 ? g->vals[v].data : NULL;
        if (!src) {
            zero = ims_calloc((size_t)ch, sizeof(float));
            if (!zero) s = ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
            src = zero;
            v = sv; /* keyed apart from the scale by its tag */
        }
        if (!s) s = get_const(c, v, src == zero ? CPU_CT_ZEROS : CPU_CT_PLAIN, src, &cmd, &cmd, &ck, e);
        if (!s) s = const_tensor(c, p, ck, &ct[k], e);
    }
    free(zero);
    if (!s) s = new_act(c, p, &p->tens[xt].md, &yt, e);
    if (!s) {
        sargs a = {0};
        sa_in(&a, DNNL_ARG_SRC, xt);
        sa_in(&a, DNNL_ARG_SCALE, ct[0]);
        sa_in(&a, DNNL_ARG_SHIFT, ct[1]);
        sa_out(&a, DNNL_ARG_DST, yt);
        s = push_step(c, p, pd, &a, e);
    }
    dnnl_primitive_desc_destroy(pd);
    if (!s) p->val_tensor[nd->out] = yt;
    return s;
}

/* Gemm: y [N, M] = act(alpha * a [N, K] * B' + beta * C + residual) as an inner product;
 * B' = B ([K, M]) or B^T (B [M, K] with transB), C a constant of 1 or M elements. alpha and
 * beta are folded into the weights and bias once. */
/* The inner product's descriptors but its weights (make_pd_sharing's ctx). */
typedef struct ip_ctx {
    cpu_impl *c;
    const_dnnl_primitive_attr_t attr;
    const dnnl_memory_desc_t *src, *bias, *dst;
} ip_ctx;

static dnnl_status_t make_ip_pd(dnnl_primitive_desc_t *pd, const dnnl_memory_desc_t *w, void *ctx) {
    const ip_ctx *x = ctx;
    dnnl_inner_product_desc_t d;
    dnnl_status_t st = dnnl_inner_product_forward_desc_init(&d, dnnl_forward_inference, x->src, w, x->bias, x->dst);
    return st == dnnl_success ? dnnl_primitive_desc_create(pd, &d, x->attr, x->c->eng, NULL) : st;
}

static imgsim_status plan_gemm(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int av = nd->in[0], bv = nd->in[1], cv = nd->n_in > 2 ? nd->in[2] : -1;
    const ims_value *A = &g->vals[av], *B = &g->vals[bv];
    if (p->val_tensor[av] < 0 || A->rank != 2 || nd->trans_a)
        return unsupported(c, e, "A must be an activation [N, K] (transA unsupported)");
    if (!B->data || B->rank != 2) return unsupported(c, e, "B must be a constant matrix");
    int64_t K = A->dims[1];
    int64_t M = nd->trans_b ? B->dims[0] : B->dims[1];
    if ((nd->trans_b ? B->dims[1] : B->dims[0]) != K) return unsupported(c, e, "inner dimensions differ");
    if (cv >= 0) {
        int64_t cn = ims_value_numel(&g->vals[cv]);
        if (!g->vals[cv].data || (cn != 1 && cn != M)) return unsupported(c, e, "C must be a constant of 1 or N elements");
    }
    dnnl_data_type_t dt = c->act_dt;
    int64_t sd[2] = {p->batch, K}, wd[2] = {M, K}, dd[2] = {p->batch, M};
    dnnl_memory_desc_t src_md, w_any, w_plain, b_md, dst_any;
    DN(md_plain(&src_md, 2, sd, dt), "memory_desc_init");
    DN(md_any(&w_any, 2, wd, dt), "memory_desc_init");
    DN(md_plain(&w_plain, 2, wd, dnnl_f32), "memory_desc_init");
    DN(md_plain(&b_md, 1, &M, dnnl_f32), "memory_desc_init");
    DN(md_any(&dst_any, 2, dd, dt), "memory_desc_init");
    dnnl_primitive_attr_t attr;
    TRY(make_attr_epi(c, &attr, nd->residual >= 0, nd->act, nd->act_min, nd->act_max, node_epi(c, i), e));
    dnnl_primitive_desc_t pd = NULL;
    ip_ctx ix = {c, attr, &src_md, cv >= 0 ? &b_md : NULL, &dst_any};
    dnnl_status_t st = make_pd_sharing(&pd, find_const_md(c, bv, CPU_CT_GEMM_W), &w_any, make_ip_pd, &ix);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "inner_product");

    imgsim_status s = IMGSIM_OK;
    int xs = -1, wt = -1, bt = -1, yt = -1;
    s = ensure(c, p, p->val_tensor[av], dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), &xs, e);
    if (!s) {
        /* W [M, K] = alpha * B' in float32, converted to the chosen layout. With alpha 1 the
         * reorder reads B where it is (transB: [M, K] row-major; else [K, M], the same matrix
         * with the strides of the "ba" tag), so no temporary copy of the weights exists (VGG-16's
         * first classifier layer is 411 MB); otherwise a scaled float32 copy is made first. */
        float *w = NULL;
        const float *wsrc = B->data;
        dnnl_memory_desc_t w_src = w_plain;
        if (nd->alpha != 1.0f) {
            w = ims_malloc_array((size_t)(M * K), sizeof(float));
            if (!w) s = ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
            for (int64_t m = 0; !s && m < M; m++)
                for (int64_t k = 0; k < K; k++)
                    w[m * K + k] = nd->alpha * (nd->trans_b ? B->data[m * K + k] : B->data[k * M + m]);
            wsrc = w;
        } else if (!nd->trans_b) {
            dnnl_dims_t d2 = {M, K}, s2 = {1, M}; /* element (m, k) at k * M + m */
            if (dnnl_memory_desc_init_by_strides(&w_src, 2, d2, dnnl_f32, s2) != dnnl_success)
                s = ims_fail(e, IMGSIM_ERR_INTERNAL, "cpu backend: memory_desc_init failed");
        }
        int wk;
        if (!s) s = get_const(c, bv, CPU_CT_GEMM_W, wsrc, &w_src,
                              dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &wk, e);
        free(w);
        if (!s) s = const_tensor(c, p, wk, &wt, e);
    }
    if (!s && cv >= 0) {
        float *bb = ims_malloc_array((size_t)M, sizeof(float));
        if (!bb) s = ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
        int64_t cn = ims_value_numel(&g->vals[cv]);
        for (int64_t m = 0; !s && m < M; m++) bb[m] = nd->beta * g->vals[cv].data[cn == 1 ? 0 : m];
        int bk;
        if (!s) s = get_const(c, cv, CPU_CT_GEMM_BIAS, bb, &b_md, &b_md, &bk, e);
        free(bb);
        if (!s) s = const_tensor(c, p, bk, &bt, e);
    }
    if (!s) {
        int sb = p->tens[xs].buf;
        s = make_dst(c, p, i, nd->residual, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), &sb, 1,
                     &yt, e);
    }
    return push_weighted(c, p, nd, pd, s, xs, wt, bt, yt, e);
}

/* MatMul (numpy semantics, plain layouts): y [..., M, N] = act(a [..., M, K] * b [..., K, N] +
 * residual); a is an activation, b a constant (broadcast over leading axes) or an activation of
 * the same rank. */
static imgsim_status plan_matmul(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int av = nd->in[0], bv = nd->in[1];
    const ims_value *A = &g->vals[av], *B = &g->vals[bv], *Y = &g->vals[nd->out];
    int r = Y->rank;
    if (p->val_tensor[av] < 0 || A->rank != r || r < 2)
        return unsupported(c, e, "A must be an activation of the output's rank (>= 2)");
    if (B->rank > r || B->rank < 2 || (!B->data && (B->rank != r || p->val_tensor[bv] < 0)))
        return unsupported(c, e, "B must be a constant or an activation of the same rank");
    dnnl_data_type_t dt = c->act_dt;
    int64_t ad[IS_MAX_RANK], bd[IS_MAX_RANK], yd[IS_MAX_RANK], tmp[IS_MAX_RANK];
    val_dims(A, p->batch, ad);
    val_dims(Y, p->batch, yd);
    val_dims(B, p->batch, tmp);
    for (int k = 0; k < r; k++) bd[k] = 1;
    for (int k = 0; k < B->rank; k++) bd[r - B->rank + k] = tmp[k];
    dnnl_memory_desc_t a_md, b_md, b_f32, y_md;
    DN(md_plain(&a_md, r, ad, dt), "memory_desc_init");
    DN(md_plain(&b_md, r, bd, dt), "memory_desc_init");
    DN(md_plain(&b_f32, r, bd, dnnl_f32), "memory_desc_init");
    DN(md_plain(&y_md, r, yd, dt), "memory_desc_init");
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, nd->residual >= 0, nd->act, nd->act_min, nd->act_max, e));
    int bias_v = nd->n_in > 2 ? nd->in[2] : -1;
    int64_t bias_d[IS_MAX_RANK];
    dnnl_memory_desc_t bias_md;
    if (bias_v >= 0) {
        if (!g->vals[bias_v].data || ims_value_numel(&g->vals[bias_v]) != yd[r - 1]) {
            dnnl_primitive_attr_destroy(attr);
            return unsupported(c, e, "bias must be a constant of the output's last dim");
        }
        for (int k = 0; k < r; k++) bias_d[k] = k == r - 1 ? yd[r - 1] : 1;
        DN(md_plain(&bias_md, r, bias_d, dnnl_f32), "memory_desc_init");
    }
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t d;
    dnnl_status_t st = dnnl_matmul_desc_init(&d, &a_md, &b_md, bias_v >= 0 ? &bias_md : NULL, &y_md);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, c->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "matmul");
    imgsim_status s;
    int at = -1, bt = -1, yt = -1;
    s = ensure(c, p, p->val_tensor[av], &a_md, &at, e);
    if (!s && B->data) {
        int bk;
        s = get_const(c, bv, CPU_CT_PLAIN, B->data, &b_f32, &b_md, &bk, e);
        if (!s) s = const_tensor(c, p, bk, &bt, e);
    } else if (!s) {
        s = ensure(c, p, p->val_tensor[bv], &b_md, &bt, e);
    }
    int biast = -1;
    if (!s && bias_v >= 0) {
        int bk;
        s = get_const(c, bias_v, CPU_CT_MATMUL_BIAS, g->vals[bias_v].data, &bias_md, &bias_md, &bk, e);
        if (!s) s = const_tensor(c, p, bk, &biast, e);
    }
    if (!s) {
        int sb[2] = {p->tens[at].buf, p->tens[bt].buf};
        s = make_dst(c, p, i, nd->residual, &y_md, sb, 2, &yt, e);
    }
    return push_weighted(c, p, nd, pd, s, at, bt, biast, yt, e);
}

/* Concat along axis: inputs in their layouts (converted to one element type), output in the
 * layout oneDNN picks. */
static imgsim_status plan_concat(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    const ims_value *Y = &g->vals[nd->out];
    int n = nd->n_in;
    if (n < 1 || n > IS_MAX_INPUTS) return unsupported(c, e, "bad number of inputs");
    int ts[IS_MAX_INPUTS];
    int mixed = 0;
    for (int k = 0; k < n; k++) {
        int v = nd->in[k];
        if (v < 0 || p->val_tensor[v] < 0) return unsupported(c, e, "inputs must be activations");
        ts[k] = p->val_tensor[v];
        if (p->tens[ts[k]].md.data_type != p->tens[ts[0]].md.data_type) mixed = 1;
    }
    if (mixed)
        for (int k = 0; k < n; k++) TRY(ensure_plain(c, p, nd->in[k], c->act_dt, &ts[k], e));
    dnnl_memory_desc_t mds[IS_MAX_INPUTS], dst_any;
    for (int k = 0; k < n; k++) mds[k] = p->tens[ts[k]].md;
    int64_t yd[IS_MAX_RANK];
    val_dims(Y, p->batch, yd);
    /* images (rank 4): the layout oneDNN picks; tokens and rows plain (oneDNN may pick a
     * transposed one, which the binary ops after it run only in their reference code) */
    if (Y->rank == 4) DN(md_any(&dst_any, Y->rank, yd, mds[0].data_type), "memory_desc_init");
    else DN(md_plain(&dst_any, Y->rank, yd, mds[0].data_type), "memory_desc_init");
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_concat_primitive_desc_create(&pd, &dst_any, n, nd->axis, mds, attr, c->eng);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "concat");
    int yt = -1;
    imgsim_status s = new_act(c, p, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), &yt, e);
    if (!s) {
        sargs a = {0};
        for (int k = 0; k < n; k++) sa_in(&a, DNNL_ARG_MULTIPLE_SRC + k, ts[k]);
        sa_out(&a, DNNL_ARG_DST, yt);
        s = push_step(c, p, pd, &a, e);
    }
    dnnl_primitive_desc_destroy(pd);
    if (!s) p->val_tensor[nd->out] = yt;
    return s;
}

/* A residual add for ops that cannot fuse one: y = y + residual, as a binary step. */
static imgsim_status plan_residual_step(cpu_impl *c, cpu_plan *p, int i, int yval, int rval,
                                        ims_err *e) {
    int yt = p->val_tensor[yval], rt = p->val_tensor[rval];
    if (rt < 0) return unsupported(c, e, "residual input is not an activation");
    TRY(ensure(c, p, rt, &p->tens[yt].md, &rt, e));
    dnnl_primitive_attr_t attr;
    TRY(make_attr(c, &attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_binary_desc_t d;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_binary_desc_init(&d, dnnl_binary_add, &p->tens[yt].md, &p->tens[rt].md,
                                             &p->tens[yt].md);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, c->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "residual add");
    int ot;
    imgsim_status s = new_act(c, p, &p->tens[yt].md, &ot, e);
    if (!s) {
        sargs a = {0};
        sa_in(&a, DNNL_ARG_SRC_0, yt);
        sa_in(&a, DNNL_ARG_SRC_1, rt);
        sa_out(&a, DNNL_ARG_DST, ot);
        s = push_step(c, p, pd, &a, e);
    }
    dnnl_primitive_desc_destroy(pd);
    if (!s) p->val_tensor[yval] = ot;
    return s;
}

/* int8 precision: the s8/u8 inputs (and residual) of a node that is neither a convolution nor a
 * max pooling are dequantised to float32 first, in their layout (the node's value is rebound to
 * the float32 copy, which later readers share). */
static imgsim_status int8_inputs_to_float(cpu_impl *c, cpu_plan *p, const ims_node *nd, ims_err *e) {
    if (nd->op == IS_OP_CONV || nd->op == IS_OP_MAXPOOL || nd->op == IS_OP_IDENTITY) return IMGSIM_OK;
    for (int k = 0; k <= nd->n_in; k++) {
        int v = k < nd->n_in ? nd->in[k] : nd->residual;
        if (v < 0 || p->val_tensor[v] < 0) continue;
        const cpu_tensor *t = &p->tens[p->val_tensor[v]];
        if (t->md.data_type != dnnl_s8 && t->md.data_type != dnnl_u8) continue;
        dnnl_memory_desc_t md = t->md;
        md.data_type = dnnl_f32;
        int ft;
        TRY(ensure(c, p, p->val_tensor[v], &md, &ft, e));
        p->val_tensor[v] = ft;
    }
    return IMGSIM_OK;
}

/* Plans node i (not dead). */
static imgsim_status plan_node(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_node *nd = &c->g->nodes[i];
    int fused_res = 0, fused_act = 0;
    if (c->absorbed && c->absorbed[i]) return IMGSIM_OK; /* computed by its producer's post-op */
    for (int k = 0; k < nd->n_in; k++) {
        int v = nd->in[k];
        if (v >= 0 && !c->g->vals[v].data && p->val_tensor[v] < 0 && nd->op != IS_OP_CLIP)
            return unsupported(c, e, "an input has not been computed (graph not in topological order?)");
    }
    if (c->precision == IMGSIM_PREC_INT8) TRY(int8_inputs_to_float(c, p, nd, e));
    switch (nd->op) {
    case IS_OP_CONV:
        TRY(plan_conv(c, p, i, e));
        fused_res = fused_act = 1;
        break;
    case IS_OP_GEMM:
        TRY(plan_gemm(c, p, i, e));
        fused_res = fused_act = 1;
        break;
    case IS_OP_MATMUL:
        TRY(plan_matmul(c, p, i, e));
        fused_res = fused_act = 1;
        break;
    case IS_OP_BATCHNORM:
        TRY(plan_bn(c, p, i, e));
        break;
    case IS_OP_RELU:
        TRY(plan_eltwise(c, p, i, nd->in[0], nd->out, dnnl_eltwise_relu, 0.0f, 0.0f, e));
        break;
    case IS_OP_CLIP: {
        float lo = isfinite(nd->clip_min) ? nd->clip_min : -FLT_MAX;
        float hi = isfinite(nd->clip_max) ? nd->clip_max : FLT_MAX;
        TRY(plan_eltwise(c, p, i, nd->in[0], nd->out, dnnl_eltwise_clip, lo, hi, e));
        break;
    }
    case IS_OP_SIGMOID:
        TRY(plan_eltwise(c, p, i, nd->in[0], nd->out, dnnl_eltwise_logistic, 0.0f, 0.0f, e));
        break;
    case IS_OP_HARDSIGMOID: /* oneDNN 2.6 has no hardsigmoid: linear, then clip to [0, 1] */
        TRY(plan_eltwise(c, p, i, nd->in[0], nd->out, dnnl_eltwise_linear, nd->alpha, nd->beta, e));
        TRY(plan_eltwise(c, p, i, nd->out, nd->out, dnnl_eltwise_clip, 0.0f, 1.0f, e));
        break;
    case IS_OP_HARDSWISH: /* x * relu6(x + 3) / 6, ONNX's HardSwish exactly */
        TRY(plan_eltwise(c, p, i, nd->in[0], nd->out, dnnl_eltwise_hardswish, 0.0f, 0.0f, e));
        break;
    case IS_OP_ADD:
    case IS_OP_MUL:
    case IS_OP_SUB:
    case IS_OP_DIV:
        TRY(plan_binary(c, p, i, &fused_act, e));
        break;
    case IS_OP_TRANSPOSE:
    case IS_OP_SLICE:
        TRY(plan_view_copy(c, p, i, e));
        break;
    case IS_OP_REDUCEMEAN:
        TRY(plan_reducemean(c, p, i, e));
        break;
    case IS_OP_LAYERNORM:
        TRY(plan_layernorm(c, p, i, e));
        break;
    case IS_OP_POW: {
        const ims_value *b = &c->g->vals[nd->in[1]];
        if (!b->data || ims_value_numel(b) != 1) return unsupported(c, e, "the exponent must be a constant scalar");
        TRY(plan_eltwise(c, p, i, nd->in[0], nd->out, dnnl_eltwise_pow, 1.0f, b->data[0], e));
        break;
    }
    case IS_OP_SQRT:
        TRY(plan_eltwise(c, p, i, nd->in[0], nd->out, dnnl_eltwise_sqrt, 0.0f, 0.0f, e));
        break;
    case IS_OP_GELU:
        TRY(plan_eltwise(c, p, i, nd->in[0], nd->out, dnnl_eltwise_gelu_erf, 0.0f, 0.0f, e));
        break;
    case IS_OP_ERF:
        return unsupported(c, e, "Erf is supported only as part of GELU (0.5 * x * (1 + erf(x / sqrt(2))))");
    case IS_OP_MAXPOOL:
    case IS_OP_AVGPOOL:
    case IS_OP_GLOBALAVGPOOL:
        TRY(plan_pool(c, p, i, e));
        /* int8 max pooling: the maximum of the quantised values, at the input's scale and zero point */
        p->tens[p->val_tensor[nd->out]].scale = p->tens[p->val_tensor[nd->in[0]]].scale;
        p->tens[p->val_tensor[nd->out]].zp = p->tens[p->val_tensor[nd->in[0]]].zp;
        break;
    case IS_OP_FLATTEN:
    case IS_OP_RESHAPE:
    case IS_OP_UNSQUEEZE:
    case IS_OP_SQUEEZE:
        TRY(plan_reshape(c, p, i, e));
        break;
    case IS_OP_CONCAT:
        TRY(plan_concat(c, p, i, e));
        break;
    case IS_OP_SOFTMAX:
        TRY(ims_cpu_plan_softmax(c, p, i, e));
        break;
    case IS_OP_ATTENTION:
        TRY(ims_cpu_plan_attention(c, p, i, e));
        break;
    case IS_OP_SWISH:
        TRY(plan_eltwise(c, p, i, nd->in[0], nd->out, dnnl_eltwise_swish, nd->alpha, 0.0f, e));
        break;
    case IS_OP_EXPAND:
    case IS_OP_CONSTANTOFSHAPE:
        TRY(ims_cpu_plan_expand(c, p, i, e));
        break;
    case IS_OP_GATHER:
        TRY(ims_cpu_plan_gather(c, p, i, e));
        break;
    case IS_OP_IDENTITY:
    case IS_OP_CAST: /* to float (shape inference refused the others) */
        if (p->val_tensor[nd->in[0]] < 0) return unsupported(c, e, "input is not an activation");
        p->val_tensor[nd->out] = p->val_tensor[nd->in[0]];
        break;
    default:
        return unsupported(c, e, "operator not supported by the CPU backend");
    }
    if (c->epi_out && c->epi_out[i] >= 0) p->val_tensor[c->epi_out[i]] = p->val_tensor[nd->out];
    if (!fused_res && nd->residual >= 0) TRY(plan_residual_step(c, p, i, nd->out, nd->residual, e));
    if (!fused_act && nd->act != IS_ACT_NONE)
        TRY(plan_act_step(c, p, i, nd->out, nd->act, nd->act_min, nd->act_max, e));
    return IMGSIM_OK;
}

/* Calibration: value v, just computed, is handed to run_observe's callback after the last step
 * so far, as a plain float32 tensor (a copy when it is blocked). */
static imgsim_status observe_value(cpu_impl *c, cpu_plan *p, int v, ims_err *e) {
    int t;
    TRY(ensure_plain(c, p, v, dnnl_f32, &t, e));
    if (grow((void **)&p->obs, &p->cap_obs, p->n_obs + 1, sizeof(cpu_obs)))
        return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    cpu_obs *o = &p->obs[p->n_obs++];
    o->step = p->n_steps - 1;
    o->value = v;
    o->tensor = t;
    o->count = dnnl_memory_desc_get_size(&p->tens[t].md) / sizeof(float);
    if (p->tens[t].buf >= 0 && p->bufs[p->tens[t].buf].last < p->n_steps - 1)
        p->bufs[p->tens[t].buf].last = p->n_steps - 1;
    return IMGSIM_OK;
}

/* Builds plan p (p->batch set by the caller) for c->g: input tensor, every live node, and the
 * final reorder of the chosen output into the caller's float32 [n, dim] rows. */
imgsim_status ims_cpu_plan_build(cpu_impl *c, cpu_plan *p, ims_err *e) {
    const ims_graph *g = c->g;
    p->val_tensor = ims_malloc_array((size_t)g->n_vals, sizeof(int));
    if (!p->val_tensor) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    for (int v = 0; v < g->n_vals; v++) p->val_tensor[v] = -1;

    c->cur_node = -1;
    const ims_value *in = &g->vals[g->input];
    int64_t xd[IS_MAX_RANK];
    val_dims(in, p->batch, xd);
    dnnl_memory_desc_t md;
    DN(md_plain(&md, in->rank, xd, dnnl_f32), "memory_desc_init");
    int it;
    TRY(new_tensor(c, p, &md, CPU_BUF_INPUT, NULL, &it, e));
    p->val_tensor[g->input] = it;
    if (c->observe && c->observe[g->input]) TRY(observe_value(c, p, g->input, e));

    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead) continue;
        c->cur_node = i;
        TRY(plan_node(c, p, i, e));
        if (c->observe && c->observe[g->nodes[i].out]) TRY(observe_value(c, p, g->nodes[i].out, e));
    }
    c->cur_node = -1;

    int ot = p->val_tensor[g->output];
    if (ot < 0) return ims_fail(e, IMGSIM_ERR_INTERNAL, "cpu backend: the output value is not computed");
    const ims_value *out = &g->vals[g->output];
    int64_t od[IS_MAX_RANK];
    val_dims(out, p->batch, od);
    DN(md_plain(&md, out->rank, od, dnnl_f32), "memory_desc_init");
    int dt;
    TRY(new_tensor(c, p, &md, CPU_BUF_OUTPUT, NULL, &dt, e));
    TRY(push_reorder(c, p, ot, dt, e));
    return ims_cpu_arena_assign(p, e);
}

/* Points every arena/scratchpad tensor of p at its place (after the arena is allocated). */
imgsim_status ims_cpu_plan_bind(cpu_impl *c, cpu_plan *p, ims_err *e) {
    for (int k = 0; k < p->n_tens; k++) {
        cpu_tensor *t = &p->tens[k];
        void *h = NULL;
        if (t->buf >= 0) h = (char *)c->arena + p->bufs[t->buf].offset;
        else if (t->buf == CPU_BUF_SCRATCH) h = c->scratch;
        else continue;
        DN(dnnl_memory_set_data_handle(t->mem, h), "memory_set_data_handle");
    }
    return IMGSIM_OK;
}

void ims_cpu_plan_free(cpu_plan *p) {
    for (int k = 0; k < p->n_steps; k++)
        if (p->steps[k].prim) dnnl_primitive_destroy(p->steps[k].prim);
    for (int k = 0; k < p->n_tens; k++)
        if (p->tens[k].buf != CPU_BUF_CONST && p->tens[k].mem) dnnl_memory_destroy(p->tens[k].mem);
    free(p->steps);
    free(p->tens);
    free(p->bufs);
    free(p->convs);
    free(p->obs);
    free(p->val_tensor);
    memset(p, 0, sizeof *p);
}

/* ---- what cpu_int8.c shares (cpu_priv.h) ---------------------------------------------------- */

imgsim_status ims_cpu_new_act(cpu_impl *c, cpu_plan *p, const dnnl_memory_desc_t *md, int *out, ims_err *e) {
    return new_act(c, p, md, out, e);
}

imgsim_status ims_cpu_new_tensor(cpu_impl *c, cpu_plan *p, const dnnl_memory_desc_t *md, int buf,
                                 dnnl_memory_t mem, int *out, ims_err *e) {
    return new_tensor(c, p, md, buf, mem, out, e);
}

imgsim_status ims_cpu_push_reorder(cpu_impl *c, cpu_plan *p, int src, int dst, ims_err *e) {
    return push_reorder(c, p, src, dst, e);
}

imgsim_status ims_cpu_get_const(cpu_impl *c, int value, int tag, const void *src, const dnnl_memory_desc_t *src_md,
                                const dnnl_memory_desc_t *md, int *out, ims_err *e) {
    return get_const(c, value, tag, src, src_md, md, out, e);
}

const dnnl_memory_desc_t *ims_cpu_find_const_md(cpu_impl *c, int value, int tag) {
    return find_const_md(c, value, tag);
}

imgsim_status ims_cpu_const_tensor(cpu_impl *c, cpu_plan *p, int k, int *out, ims_err *e) {
    return const_tensor(c, p, k, out, e);
}

imgsim_status ims_cpu_make_attr(cpu_impl *c, dnnl_primitive_attr_t *attr, int sum, ims_act act, float lo, float hi,
                                ims_err *e) {
    return make_attr(c, attr, sum, act, lo, hi, e);
}

imgsim_status ims_cpu_push_step(cpu_impl *c, cpu_plan *p, const_dnnl_primitive_desc_t pd, int nargs,
                                const int *arg, const int *tensor, const int *rd, ims_err *e) {
    sargs a = {0};
    if (nargs < 0 || nargs > CPU_MAX_ARGS - 1) return ims_fail(e, IMGSIM_ERR_INTERNAL, "cpu backend: too many arguments");
    for (int k = 0; k < nargs; k++) {
        if (rd[k]) sa_in(&a, arg[k], tensor[k]);
        else sa_out(&a, arg[k], tensor[k]);
    }
    return push_step(c, p, pd, &a, e);
}

int ims_cpu_can_inplace(cpu_impl *c, cpu_plan *p, int v, int i) { return can_inplace(c, p, v, i); }

imgsim_status ims_cpu_ensure_plain(cpu_impl *c, cpu_plan *p, int v, dnnl_data_type_t dt, int *out, ims_err *e) {
    return ensure_plain(c, p, v, dt, out, e);
}

imgsim_status ims_cpu_ensure(cpu_impl *c, cpu_plan *p, int t, const dnnl_memory_desc_t *md, int *out, ims_err *e) {
    return ensure(c, p, t, md, out, e);
}

imgsim_status ims_cpu_unsupported(cpu_impl *c, ims_err *e, const char *why) { return unsupported(c, e, why); }
