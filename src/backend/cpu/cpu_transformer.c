/*
 * cpu_transformer.c: the CPU backend's transformer operators (oneDNN), planned like the others
 * in cpu_plan.c (see cpu_priv.h).
 *
 *   Softmax    oneDNN softmax over the last axis of the plain input, in place when it dies here.
 *   Attention  qkv [N, L, 3E] plain (heads of D = E / H channels; q, k, v at channel offsets 0,
 *              E, 2E) -> y [N, L, E]:
 *                s [N, H, L, L] = alpha * q k^T   matmul; q and k^T are strided views of qkv
 *                                                 ([N, H, L, D], strides L*3E, D, 3E, 1), alpha
 *                                                 an output scale
 *                p = softmax(s)                   oneDNN softmax in place
 *                y [N, H, L, D] = p v             matmul into a strided view of y (strides L*E,
 *                                                 D, E, 1): the heads side by side, no copy
 *   Expand     a constant [1, ...] repeated for the plan's batch once, at prepare (a constant);
 *              ConstantOfShape [N, ...] the same way.
 *   Gather     one index of an axis of an activation: a reorder of that sub-memory.
 */
#include <stdlib.h>
#include <string.h>

#include "cpu_priv.h"

#define TRY(x)                                                                                  \
    do {                                                                                        \
        imgsim_status st_ = (x);                                                                \
        if (st_ != IMGSIM_OK) return st_;                                                       \
    } while (0)

#define DN(call, what)                                                                          \
    do {                                                                                        \
        dnnl_status_t d_ = (call);                                                              \
        if (d_ != dnnl_success) return ims_cpu_dnnl_fail(c, e, d_, what);                       \
    } while (0)

static void val_dims(const ims_value *v, int batch, int64_t *d) {
    for (int k = 0; k < v->rank; k++) d[k] = v->dims[k] < 0 ? batch : v->dims[k];
}

static dnnl_status_t md_plain(dnnl_memory_desc_t *md, int rank, const int64_t *dims, dnnl_data_type_t dt) {
    dnnl_dims_t d, s;
    int64_t stride = 1;
    for (int k = rank - 1; k >= 0; k--) {
        d[k] = dims[k];
        s[k] = stride;
        stride *= dims[k];
    }
    return dnnl_memory_desc_init_by_strides(md, rank, d, dt, s);
}

/* A 4-D strided view: dims d, strides s, first element at offset (elements). */
static dnnl_status_t md_view4(dnnl_memory_desc_t *md, const int64_t *d, const int64_t *s, int64_t offset,
                              dnnl_data_type_t dt) {
    dnnl_dims_t dd, ss;
    for (int k = 0; k < 4; k++) {
        dd[k] = d[k];
        ss[k] = s[k];
    }
    dnnl_status_t st = dnnl_memory_desc_init_by_strides(md, 4, dd, dt, ss);
    if (st == dnnl_success) md->offset0 = offset;
    return st;
}

/* Creates the primitive of op descriptor op_desc (attr with the user scratchpad, and output scale
 * when scale != 1). */
static imgsim_status make_pd(cpu_impl *c, dnnl_primitive_desc_t *pd, const void *op_desc, float scale, ims_err *e) {
    dnnl_primitive_attr_t attr;
    TRY(ims_cpu_make_attr(c, &attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_status_t st = dnnl_success;
    if (scale != 1.0f) st = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, op_desc, attr, c->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "primitive_desc_create");
    return IMGSIM_OK;
}

/* A step running pd on (arg, tensor, read) triples; destroys pd. */
static imgsim_status step(cpu_impl *c, cpu_plan *p, dnnl_primitive_desc_t pd, int n, const int *arg, const int *t,
                          const int *rd, ims_err *e) {
    imgsim_status s = ims_cpu_push_step(c, p, pd, n, arg, t, rd, e);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

/* Softmax over the last axis of tensor t (plain) into tensor y (may be t). */
static imgsim_status softmax_step(cpu_impl *c, cpu_plan *p, int t, int y, int axis, ims_err *e) {
    dnnl_softmax_desc_t d;
    DN(dnnl_softmax_forward_desc_init(&d, dnnl_forward_inference, &p->tens[t].md, axis), "softmax");
    dnnl_primitive_desc_t pd;
    TRY(make_pd(c, &pd, &d, 1.0f, e));
    int arg[2] = {DNNL_ARG_SRC, DNNL_ARG_DST}, ts[2] = {t, y}, rd[2] = {1, 0};
    return step(c, p, pd, 2, arg, ts, rd, e);
}

imgsim_status ims_cpu_plan_softmax(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_node *nd = &c->g->nodes[i];
    int xv = nd->in[0];
    if (p->val_tensor[xv] < 0) return ims_cpu_unsupported(c, e, "input is not an activation");
    int xt, yt;
    TRY(ims_cpu_ensure_plain(c, p, xv, p->tens[p->val_tensor[xv]].md.data_type, &xt, e));
    if (xt == p->val_tensor[xv] && ims_cpu_can_inplace(c, p, xv, i))
        TRY(ims_cpu_new_tensor(c, p, &p->tens[xt].md, p->tens[xt].buf, NULL, &yt, e));
    else
        TRY(ims_cpu_new_act(c, p, &p->tens[xt].md, &yt, e));
    TRY(softmax_step(c, p, xt, yt, nd->axis, e));
    p->val_tensor[nd->out] = yt;
    return IMGSIM_OK;
}

/* A matmul step a x b -> y (descriptors of the tensors as they are), times scale. */
static imgsim_status matmul_step(cpu_impl *c, cpu_plan *p, int a, int b, int y, float scale, ims_err *e) {
    dnnl_matmul_desc_t d;
    DN(dnnl_matmul_desc_init(&d, &p->tens[a].md, &p->tens[b].md, NULL, &p->tens[y].md), "matmul");
    dnnl_primitive_desc_t pd;
    TRY(make_pd(c, &pd, &d, scale, e));
    int arg[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST}, ts[3] = {a, b, y}, rd[3] = {1, 1, 0};
    return step(c, p, pd, 3, arg, ts, rd, e);
}

imgsim_status ims_cpu_plan_attention(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int xv = nd->in[0];
    const ims_value *x = &g->vals[xv];
    if (p->val_tensor[xv] < 0 || x->rank != 3) return ims_cpu_unsupported(c, e, "input is not a [N, L, 3E] activation");
    int qt;
    TRY(ims_cpu_ensure_plain(c, p, xv, p->tens[p->val_tensor[xv]].md.data_type, &qt, e));
    dnnl_data_type_t dt = p->tens[qt].md.data_type;
    int64_t N = p->batch, L = x->dims[1], E = x->dims[2] / 3, H = nd->heads, D = E / H;
    int buf = p->tens[qt].buf;
    dnnl_memory_desc_t qmd, kmd, vmd, smd, omd, ymd;
    int64_t hd[4] = {N, H, L, D}, hs[4] = {L * 3 * E, D, 3 * E, 1};
    int64_t kd[4] = {N, H, D, L}, ks[4] = {L * 3 * E, D, 1, 3 * E};
    int64_t sd[4] = {N, H, L, L}, os[4] = {L * E, D, E, 1}, yd[3] = {N, L, E};
    DN(md_view4(&qmd, hd, hs, 0, dt), "memory_desc_init");
    DN(md_view4(&kmd, kd, ks, E, dt), "memory_desc_init");
    DN(md_view4(&vmd, hd, hs, 2 * E, dt), "memory_desc_init");
    DN(md_plain(&smd, 4, sd, dt), "memory_desc_init");
    DN(md_plain(&ymd, 3, yd, dt), "memory_desc_init");
    DN(md_view4(&omd, hd, os, 0, dt), "memory_desc_init");
    int q, k, v, s, y, o;
    TRY(ims_cpu_new_tensor(c, p, &qmd, buf, NULL, &q, e));
    TRY(ims_cpu_new_tensor(c, p, &kmd, buf, NULL, &k, e));
    TRY(ims_cpu_new_tensor(c, p, &vmd, buf, NULL, &v, e));
    TRY(ims_cpu_new_act(c, p, &smd, &s, e));
    TRY(matmul_step(c, p, q, k, s, nd->alpha, e));
    TRY(softmax_step(c, p, s, s, 3, e));
    TRY(ims_cpu_new_act(c, p, &ymd, &y, e));
    TRY(ims_cpu_new_tensor(c, p, &omd, p->tens[y].buf, NULL, &o, e));
    TRY(matmul_step(c, p, s, v, o, 1.0f, e));
    p->val_tensor[nd->out] = y;
    return IMGSIM_OK;
}

imgsim_status ims_cpu_plan_expand(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int fill = nd->op == IS_OP_CONSTANTOFSHAPE; /* alpha everywhere, keyed by the output */
    const ims_value *x = &g->vals[nd->in[0]], *y = &g->vals[nd->out];
    int64_t yd[IS_MAX_RANK], per = ims_value_numel(y), xn = ims_value_numel(x);
    val_dims(y, p->batch, yd);
    /* y's per-image block from x by broadcasting (x has y's rank, dims 1 or y's) */
    float *data = ims_malloc_array((size_t)(per * p->batch), sizeof(float));
    if (!data) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    int64_t idx[IS_MAX_RANK] = {0};
    for (int64_t j = 0; j < per; j++) {
        int64_t at = 0, st = 1;
        for (int k = y->rank - 1; k >= 1 && !fill; k--) {
            at += (x->dims[k] == 1 ? 0 : idx[k]) * st;
            st *= x->dims[k];
        }
        data[j] = fill ? nd->alpha : at < xn ? x->data[at] : 0.0f;
        for (int k = y->rank - 1; k >= 1; k--) {
            if (++idx[k] < yd[k]) break;
            idx[k] = 0;
        }
    }
    for (int64_t b = 1; b < p->batch; b++) memcpy(data + b * per, data, (size_t)per * sizeof(float));
    dnnl_memory_desc_t smd, dmd;
    dnnl_status_t ds = md_plain(&smd, y->rank, yd, dnnl_f32);
    if (ds == dnnl_success) ds = md_plain(&dmd, y->rank, yd, c->act_dt);
    int ck = -1, t;
    imgsim_status s = ds == dnnl_success ? ims_cpu_get_const(c, fill ? nd->out : nd->in[0], CPU_CT_EXPAND, data, &smd, &dmd, &ck, e)
                                         : ims_cpu_dnnl_fail(c, e, ds, "memory_desc_init");
    free(data);
    TRY(s);
    TRY(ims_cpu_const_tensor(c, p, ck, &t, e));
    p->val_tensor[nd->out] = t;
    return IMGSIM_OK;
}

imgsim_status ims_cpu_plan_gather(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    int xv = nd->in[0];
    const ims_value *x = &g->vals[xv], *y = &g->vals[nd->out];
    if (p->val_tensor[xv] < 0 || nd->axis < 1 || nd->axis >= x->rank)
        return ims_cpu_unsupported(c, e, "input is not an activation");
    int xt;
    TRY(ims_cpu_ensure_plain(c, p, xv, p->tens[p->val_tensor[xv]].md.data_type, &xt, e));
    dnnl_data_type_t dt = p->tens[xt].md.data_type;
    int64_t xd[IS_MAX_RANK], kd[IS_MAX_RANK], yd[IS_MAX_RANK];
    val_dims(x, p->batch, xd);
    val_dims(y, p->batch, yd);
    dnnl_dims_t vd, off;
    for (int k = 0; k < x->rank; k++) {
        kd[k] = k == nd->axis ? 1 : xd[k];
        vd[k] = kd[k];
        off[k] = k == nd->axis ? nd->offset[k] : 0;
    }
    dnnl_memory_desc_t view, kmd, ymd;
    DN(dnnl_memory_desc_init_submemory(&view, &p->tens[xt].md, vd, off), "memory_desc_init_submemory");
    DN(md_plain(&kmd, x->rank, kd, dt), "memory_desc_init");
    DN(md_plain(&ymd, y->rank, yd, dt), "memory_desc_init");
    int vt, kt, yt;
    TRY(ims_cpu_new_tensor(c, p, &view, p->tens[xt].buf, NULL, &vt, e));
    TRY(ims_cpu_new_act(c, p, &kmd, &kt, e));
    TRY(ims_cpu_push_reorder(c, p, vt, kt, e));
    TRY(ims_cpu_new_tensor(c, p, &ymd, p->tens[kt].buf, NULL, &yt, e));
    p->val_tensor[nd->out] = yt;
    return IMGSIM_OK;
}
