/*
 * cpu_int8.c: int8 convolutions on oneDNN (imgsim_precision INT8, scales from a calibration file or
 * a QDQ model's QuantizeLinear/DequantizeLinear pairs, both as per-value activation scales).
 *
 * Which nodes: a convolution runs in int8 when its input, its output and its residual (if any)
 * were calibrated (cfg->act_scale > 0). Its output stays s8/u8 (u8 where the calibration saw no
 * negative value, i.e. after a ReLU) when every reader is an int8 convolution (as input or
 * residual) or a max pooling, and it is not the embedding; otherwise it is written as float32.
 * Every other operator reads float32 (cpu_plan.c dequantises its int8 inputs first), and any
 * conversion between an int8 tensor and another scale or float32 is a reorder with output scales
 * (cpu_tensor.scale says what an int8 tensor's units are).
 *
 * The arithmetic, for x at scale sx and zero point zx, weights at sw[oc] (symmetric), y at sy, zy:
 *   acc[oc] = sum (q_x - zx) * q_w                       (s32; u8 or s8 x, s8 w; padding is real 0)
 *   y_q = sat(round(act(sx sw[oc] / sy * (acc + b[oc] / (sx sw[oc])) + sr / sy * (r_q - zr))) + zy),
 *   the activation being ReLU or clip at lo / sy, hi / sy, in oneDNN's order: output scales, sum
 *   post-op (the residual r_q at its scale sr and zero point zr, read in place from dst,
 *   reinterpreted as its own 8-bit type when that differs from y's), eltwise post-op, dst zero
 *   point; rounding half to even, saturating. Zero points are u8 only, non-zero for a QDQ model's
 *   asymmetric pairs (cfg->act_zero; a calibration's scales are symmetric) and set as oneDNN
 *   attributes only where non-zero. The bias is given in the accumulator's units, as oneDNN 2.x
 *   adds it before the output scales. A float32 output uses sy = 1, zy = 0. Weights are quantised
 *   by src/quant (per output channel, max |w| / 127).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_priv.h"
#include "quant/quant.h"

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

static int is8(dnnl_data_type_t dt) { return dt == dnnl_s8 || dt == dnnl_u8; }

/* Whether node j, reading value v, takes it in int8 (an int8 convolution's input or residual, or
 * a max pooling). */
static int reader_takes_int8(const cpu_impl *c, int j, int v) {
    const ims_node *nd = &c->g->nodes[j];
    if (nd->op == IS_OP_MAXPOOL) return nd->in[0] == v;
    if (nd->op != IS_OP_CONV || !c->conv_int8[j]) return 0;
    for (int k = 1; k < nd->n_in; k++)
        if (nd->in[k] == v) return 0;
    return nd->in[0] == v || nd->residual == v;
}

imgsim_status ims_cpu_int8_prepare(cpu_impl *c, ims_err *e) {
    const ims_graph *g = c->g;
    c->conv_int8 = ims_calloc((size_t)g->n_nodes + 1, 1);
    c->out_int8 = ims_calloc((size_t)g->n_vals + 1, 1);
    if (!c->conv_int8 || !c->out_int8) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    const float *s = c->act_scale;
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *nd = &g->nodes[i];
        if (nd->dead || nd->op != IS_OP_CONV || nd->n_in < 2 || nd->in[0] < 0 || nd->in[1] < 0) continue;
        const ims_value *w = &g->vals[nd->in[1]];
        if (!w->data || w->rank != 4 || g->vals[nd->in[0]].data) continue;
        if (!(s[nd->in[0]] > 0) || !(s[nd->out] > 0) || (nd->residual >= 0 && !(s[nd->residual] > 0))) continue;
        c->conv_int8[i] = 1;
        n++;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        if (!c->conv_int8[i]) continue;
        int v = g->nodes[i].out, ok = v != g->output;
        for (int j = 0; ok && j < g->n_nodes; j++) {
            const ims_node *nd = &g->nodes[j];
            if (nd->dead || j == i) continue;
            int reads = nd->residual == v;
            for (int k = 0; k < nd->n_in; k++) reads |= nd->in[k] == v;
            if (reads && !reader_takes_int8(c, j, v)) ok = 0;
        }
        c->out_int8[v] = (uint8_t)ok;
    }
    if (n == 0)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                        "cpu backend: int8: the calibration (or the QDQ model's scales) names none of the "
                        "model's convolution tensors");
    return IMGSIM_OK;
}

/* value v's zero point (0 for s8 and for a calibration's scales) */
static int32_t act_zp(const cpu_impl *c, int v) { return c->act_zero && c->act_unsigned[v] ? c->act_zero[v] : 0; }

/* *out = a tensor holding tensor t's data in descriptor md at int8 scale scale and zero point zp:
 * t itself, an earlier conversion, or a new (requantising) reorder. */
static imgsim_status ensure_q(cpu_impl *c, cpu_plan *p, int t, const dnnl_memory_desc_t *md, float scale,
                              int32_t zp, int *out, ims_err *e) {
    if (dnnl_memory_desc_equal(&p->tens[t].md, md) && p->tens[t].scale == scale && p->tens[t].zp == zp) {
        *out = t;
        return IMGSIM_OK;
    }
    for (int k = 0; k < p->n_convs; k++) {
        int d = p->convs[k].dst;
        if (p->convs[k].src == t && dnnl_memory_desc_equal(&p->tens[d].md, md) && p->tens[d].scale == scale &&
            p->tens[d].zp == zp) {
            *out = d;
            return IMGSIM_OK;
        }
    }
    int d;
    TRY(ims_cpu_new_act(c, p, md, &d, e));
    p->tens[d].scale = scale;
    p->tens[d].zp = zp;
    TRY(ims_cpu_push_reorder(c, p, t, d, e));
    if (p->n_convs == p->cap_convs) {
        int nc = p->cap_convs ? p->cap_convs * 2 : 16;
        cpu_conv *nv = ims_realloc(p->convs, (size_t)nc * sizeof *nv);
        if (!nv) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
        p->convs = nv;
        p->cap_convs = nc;
    }
    p->convs[p->n_convs].src = t;
    p->convs[p->n_convs].dst = d;
    p->n_convs++;
    *out = d;
    return IMGSIM_OK;
}

/* The primitive attribute of an int8 convolution: user scratchpad, per-channel output scales,
 * src and dst zero points (where non-zero), sum post-op (scale, zero point, type;
 * dnnl_data_type_undef = dst's) and the activation. */
static imgsim_status int8_attr(cpu_impl *c, dnnl_primitive_attr_t *attr, const float *oscale, int64_t oc,
                               int32_t zx, int32_t zy, int sum, float sum_scale, int32_t sum_zp,
                               dnnl_data_type_t sum_dt, const ims_node *nd, float sy, ims_err *e) {
    TRY(ims_cpu_make_attr(c, attr, 0, IS_ACT_NONE, 0, 0, e));
    dnnl_status_t st = dnnl_primitive_attr_set_output_scales(*attr, oc, 1 << 1, oscale);
    if (st == dnnl_success && zx) st = dnnl_primitive_attr_set_zero_points(*attr, DNNL_ARG_SRC, 1, 0, &zx);
    if (st == dnnl_success && zy) st = dnnl_primitive_attr_set_zero_points(*attr, DNNL_ARG_DST, 1, 0, &zy);
    dnnl_post_ops_t po = NULL;
    if (st == dnnl_success && (sum || nd->act != IS_ACT_NONE)) {
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success && sum)
            st = sum_zp ? dnnl_post_ops_append_sum_v3(po, sum_scale, sum_zp, sum_dt)
                        : dnnl_post_ops_append_sum_v2(po, sum_scale, sum_dt);
        if (st == dnnl_success && nd->act == IS_ACT_RELU)
            st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
        if (st == dnnl_success && nd->act == IS_ACT_CLIP) {
            float lo = isfinite(nd->act_min) ? nd->act_min / sy : -3.0e38f;
            float hi = isfinite(nd->act_max) ? nd->act_max / sy : 3.0e38f;
            st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, lo, hi);
        }
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, po);
        if (po) dnnl_post_ops_destroy(po);
    }
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
        return ims_cpu_dnnl_fail(c, e, st, "int8 attributes");
    }
    return IMGSIM_OK;
}

/* The int8 form of a Conv node: y = act(conv(x, w) + b + residual), x [N, C, H, W] s8/u8,
 * w [OC, C/group, KH, KW] s8, y [N, OC, OH, OW] s8/u8 or float32 (see the file comment). */
imgsim_status ims_cpu_plan_conv_int8(cpu_impl *c, cpu_plan *p, int i, ims_err *e) {
    const ims_graph *g = c->g;
    const ims_node *nd = &g->nodes[i];
    const ims_value *xv = &g->vals[nd->in[0]], *wv = &g->vals[nd->in[1]], *yv = &g->vals[nd->out];
    int bias_v = nd->n_in > 2 ? nd->in[2] : -1;
    int xt = p->val_tensor[nd->in[0]];
    int grp = nd->group > 0 ? nd->group : 1;
    int64_t oc = wv->dims[0], kk = wv->dims[1] * wv->dims[2] * wv->dims[3];
    if (xt < 0 || xv->rank != 4 || yv->rank != 4 || oc % grp)
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "cpu backend: node '%s': not an int8 convolution",
                        nd->name ? nd->name : "?");
    int64_t xd[4], yd[4], wd[5];
    for (int k = 0; k < 4; k++) {
        xd[k] = xv->dims[k] < 0 ? p->batch : xv->dims[k];
        yd[k] = yv->dims[k] < 0 ? p->batch : yv->dims[k];
    }
    int wrank = grp > 1 ? 5 : 4;
    if (grp > 1) {
        wd[0] = grp;
        wd[1] = oc / grp;
        for (int k = 1; k < 4; k++) wd[k + 1] = wv->dims[k];
    } else {
        for (int k = 0; k < 4; k++) wd[k] = wv->dims[k];
    }

    /* scales and types */
    const cpu_tensor *xsrc = &p->tens[xt];
    float sx = is8(xsrc->md.data_type) ? xsrc->scale : c->act_scale[nd->in[0]];
    dnnl_data_type_t dtx = is8(xsrc->md.data_type) ? xsrc->md.data_type
                           : c->act_unsigned[nd->in[0]] ? dnnl_u8 : dnnl_s8;
    int32_t zx = is8(xsrc->md.data_type) ? xsrc->zp : act_zp(c, nd->in[0]);
    int y8 = c->out_int8[nd->out];
    dnnl_data_type_t dty = !y8 ? dnnl_f32 : c->act_unsigned[nd->out] ? dnnl_u8 : dnnl_s8;
    float sy = y8 ? c->act_scale[nd->out] : 1.0f;
    int32_t zy = y8 ? act_zp(c, nd->out) : 0;
    int rt = nd->residual >= 0 ? p->val_tensor[nd->residual] : -1;
    if (nd->residual >= 0 && rt < 0)
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "cpu backend: node '%s': residual input is not an activation",
                        nd->name ? nd->name : "?");
    dnnl_data_type_t dtr = dnnl_f32;
    float sr = 1.0f;
    int32_t zr = 0;
    if (rt >= 0 && y8) {
        int r8 = is8(p->tens[rt].md.data_type);
        dtr = r8 ? p->tens[rt].md.data_type : c->act_unsigned[nd->residual] ? dnnl_u8 : dnnl_s8;
        sr = r8 ? p->tens[rt].scale : c->act_scale[nd->residual];
        zr = r8 ? p->tens[rt].zp : act_zp(c, nd->residual);
    }

    /* weights and bias, quantised once (the first plan) */
    float *ws = ims_malloc_array((size_t)oc, sizeof(float));
    float *osc = ims_malloc_array((size_t)oc, sizeof(float));
    float *bq = ims_malloc_array((size_t)oc, sizeof(float));
    int8_t *wq = ims_malloc_array((size_t)(oc * kk), 1);
    imgsim_status s = ws && osc && bq && wq ? IMGSIM_OK : ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    if (!s && wv->w_scale) { /* a QDQ model's weights: its own scales, its integers back exactly */
        memcpy(ws, wv->w_scale, (size_t)oc * sizeof(float));
        for (int64_t o = 0; o < oc; o++)
            for (int64_t j = 0; j < kk; j++) wq[o * kk + j] = ims_quant_s8(wv->data[o * kk + j], ws[o]);
    } else if (!s) {
        ims_quant_weight_scales(ws, wv->data, oc, kk);
        ims_quant_weights(wq, wv->data, ws, oc, kk);
    }
    if (!s) {
        for (int64_t o = 0; o < oc; o++) {
            osc[o] = sx * ws[o] / sy;
            bq[o] = bias_v >= 0 ? g->vals[bias_v].data[o] / (sx * ws[o]) : 0.0f;
        }
    }

    dnnl_memory_desc_t src_md, w_md, w_plain, b_md, dst_md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_success;
    if (!s) {
        dnnl_dims_t d;
        for (int k = 0; k < 4; k++) d[k] = xd[k];
        st = dnnl_memory_desc_init_by_tag(&src_md, 4, d, dtx, dnnl_format_tag_any);
        for (int k = 0; k < 4 && st == dnnl_success; k++) d[k] = yd[k];
        if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&dst_md, 4, d, dty, dnnl_format_tag_any);
        for (int k = 0; k < wrank; k++) d[k] = wd[k];
        if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&w_md, wrank, d, dnnl_s8, dnnl_format_tag_any);
        if (st == dnnl_success)
            st = dnnl_memory_desc_init_by_tag(&w_plain, wrank, d, dnnl_s8, grp > 1 ? dnnl_goihw : dnnl_oihw);
        d[0] = oc;
        if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&b_md, 1, d, dnnl_f32, dnnl_x);
        if (st != dnnl_success) s = ims_cpu_dnnl_fail(c, e, st, "memory_desc_init");
    }
    if (!s)
        s = int8_attr(c, &attr, osc, oc, zx, zy, rt >= 0, sr / sy, zr, dtr == dty ? dnnl_data_type_undef : dtr, nd, sy,
                      e);
    if (!s) {
        dnnl_dims_t strides = {nd->stride[0], nd->stride[1]};
        dnnl_dims_t dil = {nd->dilation[0] - 1, nd->dilation[1] - 1};
        dnnl_dims_t pl = {nd->pad[0], nd->pad[1]}, pr = {nd->pad[2], nd->pad[3]};
        const dnnl_memory_desc_t *prev = ims_cpu_find_const_md(c, nd->in[1], CPU_CT_INT8_W);
        st = dnnl_unimplemented;
        for (int attempt = prev ? 0 : 1; attempt < 2 && st != dnnl_success; attempt++) {
            dnnl_convolution_desc_t cd;
            st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                            &src_md, attempt == 0 ? prev : &w_md, &b_md, &dst_md,
                                                            strides, dil, pl, pr);
            if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &cd, attr, c->eng, NULL);
        }
        if (st != dnnl_success) s = ims_cpu_dnnl_fail(c, e, st, "int8 convolution");
    }
    if (attr) dnnl_primitive_attr_destroy(attr);

    int xs = -1, wt = -1, bt = -1, yt = -1, wk, bk;
    if (!s) s = ensure_q(c, p, xt, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), sx, zx, &xs, e);
    if (!s) s = ims_cpu_get_const(c, nd->in[1], CPU_CT_INT8_W, wq, &w_plain,
                                  dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &wk, e);
    if (!s) s = ims_cpu_const_tensor(c, p, wk, &wt, e);
    if (!s) s = ims_cpu_get_const(c, bias_v >= 0 ? bias_v : nd->in[1], CPU_CT_INT8_BIAS, bq, &b_md, &b_md, &bk, e);
    if (!s) s = ims_cpu_const_tensor(c, p, bk, &bt, e);
    free(ws);
    free(osc);
    free(bq);
    free(wq);
    if (!s) {
        const dnnl_memory_desc_t *q_dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        if (rt < 0) {
            s = ims_cpu_new_act(c, p, q_dst, &yt, e);
        } else {
            /* the residual in dst's layout, at its own type and scale: in place when it dies here */
            dnnl_memory_desc_t rmd = *q_dst;
            rmd.data_type = dtr;
            int in_place = ims_cpu_can_inplace(c, p, nd->residual, i) &&
                           dnnl_memory_desc_equal(&p->tens[rt].md, &rmd) && p->tens[rt].scale == sr &&
                           p->tens[rt].zp == zr &&
                           p->tens[rt].buf != p->tens[xs].buf;
            int ct = rt;
            if (!in_place) {
                s = ims_cpu_new_act(c, p, &rmd, &ct, e);
                if (!s) {
                    p->tens[ct].scale = sr;
                    p->tens[ct].zp = zr;
                    s = ims_cpu_push_reorder(c, p, rt, ct, e);
                }
            }
            if (!s) s = ims_cpu_new_tensor(c, p, q_dst, p->tens[ct].buf, NULL, &yt, e);
        }
    }
    if (!s) {
        p->tens[yt].scale = sy;
        p->tens[yt].zp = zy;
        int arg[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
        int ten[4] = {xs, wt, bt, yt};
        int rd[4] = {1, 1, 1, rt >= 0}; /* dst is read by the sum post-op */
        s = ims_cpu_push_step(c, p, pd, 4, arg, ten, rd, e);
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (!s) {
        p->val_tensor[nd->out] = yt;
        c->n_conv_int8++;
    }
    return s;
}
