/*
 * cpu_backend.c: the CPU backend's ims_backend_ops on oneDNN (C API): prepare (plans for the
 * batch sizes, arena and scratchpad), run, info, destroy.
 *
 * Batches: plans are built for max_batch and for every power of two below it. A run of n images
 * is split greedily into the largest planned batches that fit (n = 13 with max_batch 16: 8 + 4 +
 * 1), so a partial last batch costs about what its images cost, not a full padded batch. The
 * smaller plans reuse the weights the largest plan converted (same layout where oneDNN accepts
 * it), so they add primitives, not weights.
 *
 * Threads: Debian's libdnnl is built with the OpenMP runtime (dnnl_version()->cpu_runtime ==
 * DNNL_RUNTIME_OMP), so the thread count is OpenMP's. libgomp comes with libdnnl, and
 * omp_set_num_threads is looked up at run time (no link-time dependency on OpenMP) and called
 * on the calling thread at prepare and at every run (the setting is per thread in OpenMP).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_priv.h"

typedef void (*omp_set_fn)(int);

/* omp_set_num_threads from the OpenMP runtime oneDNN uses, or NULL (sequential build). */
static omp_set_fn omp_setter(void) {
    omp_set_fn fn = NULL;
    void *sym = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    memcpy(&fn, &sym, sizeof fn);
    return fn;
}

static void set_threads(int n) {
    omp_set_fn fn = omp_setter();
    if (fn && n > 0) fn(n);
}

/* A readable name for oneDNN's effective ISA. */
static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

/* Whether oneDNN can run bf16 math natively here (AVX-512 BF16 or AMX). */
static int have_bf16(dnnl_cpu_isa_t isa) {
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
           (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

/* Union-find root with path halving. */
static int uf_find(int *par, int v) {
    while (par[v] != v) {
        par[v] = par[par[v]];
        v = par[v];
    }
    return v;
}

/* The live nodes reading value v (once per input slot or residual that names it): up to cap of
 * them in out[]; returns the count. */
static int readers_of(const ims_graph *g, int v, int *out, int cap) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *nd = &g->nodes[i];
        if (nd->dead) continue;
        for (int k = 0; k <= nd->n_in; k++) {
            int u = k < nd->n_in ? nd->in[k] : nd->residual;
            if (u != v) continue;
            if (n < cap) out[n] = i;
            n++;
        }
    }
    return n;
}

/* Plan-time epilogue fusion (fp32/bf16): the element-wise op that alone reads a Conv's or Gemm's
 * output (no activation fused into it yet) becomes an eltwise post-op of it, after its sum:
 * SiLU written as Sigmoid(y) and Mul(y, Sigmoid(y)) (EfficientNet, RegNetY: eltwise_swish,
 * alpha 1), a lone Sigmoid (the SE gate: eltwise_logistic), HardSwish (MobileNetV3; also
 * written as Mul(y, HardSigmoid(y)) with alpha 1/6, beta 1/2, as opset 13 exports it), Gelu. A
 * post-op runs in the primitive's own dst layout, so nothing is converted for it. The graph
 * stays as it is (the CUDA engine plans the same graph). Fills c->epi_alg, epi_out, absorbed;
 * counts the fusions in c->n_epi. */
static imgsim_status find_epilogues(cpu_impl *c, ims_err *e) {
    const ims_graph *g = c->g;
    c->epi_alg = ims_malloc_array((size_t)g->n_nodes + 1, sizeof(int));
    c->epi_out = ims_malloc_array((size_t)g->n_nodes + 1, sizeof(int));
    c->absorbed = ims_calloc((size_t)g->n_nodes + 1, 1);
    if (!c->epi_alg || !c->epi_out || !c->absorbed) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        c->epi_alg[i] = 0;
        c->epi_out[i] = -1;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *p = &g->nodes[i];
        if (p->dead || (p->op != IS_OP_CONV && p->op != IS_OP_GEMM) || p->act != IS_ACT_NONE) continue;
        int y = p->out, r[3];
        if (y == g->output) continue;
        int nr = readers_of(g, y, r, 3);
        const ims_node *a = nr >= 1 ? &g->nodes[r[0]] : NULL;
        if (!a || a->residual >= 0 || a->act != IS_ACT_NONE || a->in[0] != y) continue;
        if (nr == 1 && (a->op == IS_OP_SIGMOID || a->op == IS_OP_HARDSWISH || a->op == IS_OP_GELU)) {
            c->epi_alg[i] = a->op == IS_OP_SIGMOID     ? (int)dnnl_eltwise_logistic
                            : a->op == IS_OP_HARDSWISH ? (int)dnnl_eltwise_hardswish
                                                       : (int)dnnl_eltwise_gelu_erf;
            c->epi_out[i] = a->out;
            c->absorbed[r[0]] = 1;
            c->n_epi++;
            continue;
        }
        /* x * HardSigmoid(x) with alpha 1/6, beta 1/2 is HardSwish (opset 13's export of it) */
        int hsig = a->op == IS_OP_HARDSIGMOID && fabsf(a->alpha - 1.0f / 6.0f) < 1e-6f && a->beta == 0.5f;
        if (nr != 2 || (a->op != IS_OP_SIGMOID && !hsig) || a->out == g->output) continue;
        const ims_node *m = &g->nodes[r[1]];
        int sr[2];
        if (m->op != IS_OP_MUL || m->n_in != 2 || m->residual >= 0 || m->act != IS_ACT_NONE) continue;
        if (!((m->in[0] == y && m->in[1] == a->out) || (m->in[1] == y && m->in[0] == a->out))) continue;
        if (readers_of(g, a->out, sr, 2) != 1) continue;
        c->epi_alg[i] = hsig ? (int)dnnl_eltwise_hardswish : (int)dnnl_eltwise_swish;
        c->epi_out[i] = m->out;
        c->absorbed[r[0]] = c->absorbed[r[1]] = 1;
        c->n_epi++;
    }
    return IMGSIM_OK;
}

/* c->group_last[v]: the last live node that reads v or any value sharing its storage through
 * Identity/Flatten/Reshape/Unsqueeze/Squeeze/Cast views; INT_MAX for the chosen output. */
static imgsim_status compute_lifetimes(cpu_impl *c, ims_err *e) {
    const ims_graph *g = c->g;
    int *par = ims_malloc_array((size_t)g->n_vals, sizeof(int));
    int *last = ims_malloc_array((size_t)g->n_vals, sizeof(int));
    c->group_last = ims_malloc_array((size_t)g->n_vals, sizeof(int));
    if (!par || !last || !c->group_last) {
        free(par);
        free(last);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    }
    for (int v = 0; v < g->n_vals; v++) {
        par[v] = v;
        last[v] = -1;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *nd = &g->nodes[i];
        if (nd->dead) continue;
        int alias = nd->op == IS_OP_IDENTITY || nd->op == IS_OP_FLATTEN || nd->op == IS_OP_RESHAPE ||
                    nd->op == IS_OP_UNSQUEEZE || nd->op == IS_OP_SQUEEZE || nd->op == IS_OP_CAST;
        if (alias && nd->in[0] >= 0) {
            int a = uf_find(par, nd->in[0]), b = uf_find(par, nd->out);
            if (a != b) par[b] = a;
        }
        if (c->epi_out && c->epi_out[i] >= 0) { /* a fused epilogue's output is the producer's tensor */
            int a = uf_find(par, nd->out), b = uf_find(par, c->epi_out[i]);
            if (a != b) par[b] = a;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *nd = &g->nodes[i];
        if (nd->dead || (c->absorbed && c->absorbed[i])) continue;
        for (int k = 0; k <= nd->n_in; k++) {
            int v = k < nd->n_in ? nd->in[k] : nd->residual;
            if (v < 0 || v >= g->n_vals) continue;
            int r = uf_find(par, v);
            if (last[r] < i) last[r] = i;
        }
    }
    last[uf_find(par, g->output)] = 0x7fffffff;
    for (int v = 0; v < g->n_vals; v++) c->group_last[v] = last[uf_find(par, v)];
    free(par);
    free(last);
    return IMGSIM_OK;
}

static void *aligned_alloc_raw(size_t size, void **raw) {
    *raw = ims_malloc(size + CPU_ALIGN);
    if (!*raw) return NULL;
    return (void *)(((uintptr_t)*raw + CPU_ALIGN - 1) & ~(uintptr_t)(CPU_ALIGN - 1));
}

static void impl_free(cpu_impl *c) {
    if (!c) return;
    for (int k = 0; k < c->n_plans; k++) ims_cpu_plan_free(&c->plans[k]);
    free(c->plans);
    ims_cpu_const_free_all(c);
    free(c->arena_raw);
    free(c->scratch_raw);
    free(c->group_last);
    free(c->epi_alg);
    free(c->epi_out);
    free(c->absorbed);
    if (c->stream) dnnl_stream_destroy(c->stream);
    if (c->eng) dnnl_engine_destroy(c->eng);
    free(c);
}

/* Plans g for cfg: validates precision, creates the oneDNN engine and stream, builds the plans
 * (largest batch first), allocates the arena and scratchpad, and binds every tensor. */
static imgsim_status cpu_prepare(ims_backend *b, const ims_graph *g, const ims_backend_cfg *cfg, ims_err *e) {
    if (b->impl) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cpu backend: already prepared");
    if (cfg->max_batch < 1 || cfg->max_batch > 65536)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cpu backend: batch size %d out of range 1..65536", cfg->max_batch);
    if (cfg->precision != IMGSIM_PREC_FP32 && cfg->precision != IMGSIM_PREC_BF16 && cfg->precision != IMGSIM_PREC_INT8)
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "cpu backend: precision %s is not available on the CPU (use fp32, bf16 or int8)",
                       imgsim_precision_str(cfg->precision));
    if (cfg->precision == IMGSIM_PREC_INT8 && (!cfg->act_scale || !cfg->act_unsigned))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cpu backend: int8 needs a calibration (--calib=FILE)");
    if (g->input < 0 || g->output < 0 || g->input >= g->n_vals || g->output >= g->n_vals)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cpu backend: graph has no input or output");
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (cfg->precision == IMGSIM_PREC_BF16 && !have_bf16(isa))
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                       "cpu backend: bf16 needs a CPU with AVX-512 BF16 or AMX; oneDNN reports ISA %s here",
                       isa_name(isa));
    double t0 = ims_now();
    cpu_impl *c = ims_calloc(1, sizeof *c);
    if (!c) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    c->g = g;
    c->cur_node = -1;
    c->precision = cfg->precision;
    c->act_dt = cfg->precision == IMGSIM_PREC_BF16 ? dnnl_bf16 : dnnl_f32;
    c->normalize = cfg->normalize;
    c->observe = cfg->observe;
    if (cfg->precision == IMGSIM_PREC_INT8) {
        c->act_scale = cfg->act_scale;
        c->act_unsigned = cfg->act_unsigned;
        c->act_zero = cfg->act_zero;
    }
    c->max_batch = cfg->max_batch;
    c->threads = cfg->threads > 0 ? ims_threads_cap(cfg->threads, "threads") : ims_num_cores();
    c->dim = g->dim;
    c->in_c = g->in_c;
    c->in_h = g->in_h;
    c->in_w = g->in_w;
    snprintf(c->isa, sizeof c->isa, "%s", isa_name(isa));
    set_threads(c->threads);

    imgsim_status s = IMGSIM_OK;
    dnnl_status_t st = dnnl_engine_create(&c->eng, dnnl_cpu, 0);
    if (st == dnnl_success) st = dnnl_stream_create(&c->stream, c->eng, dnnl_stream_default_flags);
    if (st != dnnl_success) s = ims_cpu_dnnl_fail(c, e, st, "engine/stream");
    if (!s && c->precision != IMGSIM_PREC_INT8 && !c->observe) s = find_epilogues(c, e);
    if (!s) s = compute_lifetimes(c, e);
    if (!s && c->precision == IMGSIM_PREC_INT8) s = ims_cpu_int8_prepare(c, e);

    /* plans: max_batch, then the powers of two below it */
    int batches[32], nb = 0;
    batches[nb++] = c->max_batch;
    int pw = 1;
    while (pw * 2 < c->max_batch) pw *= 2;
    for (; pw >= 1 && c->max_batch > 1; pw /= 2)
        if (pw < c->max_batch) batches[nb++] = pw;
    if (!s) {
        c->plans = ims_calloc((size_t)nb, sizeof(cpu_plan));
        if (!c->plans) s = ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    }
    int int8_convs = 0;
    for (int k = 0; !s && k < nb; k++) {
        c->plans[k].batch = batches[k];
        c->n_plans = k + 1;
        c->n_conv_int8 = 0;
        s = ims_cpu_plan_build(c, &c->plans[k], e);
        if (k == 0) int8_convs = c->n_conv_int8;
        if (!s && c->plans[k].arena_size > c->arena_size) c->arena_size = c->plans[k].arena_size;
    }
    if (!s) {
        c->arena = aligned_alloc_raw(c->arena_size, &c->arena_raw);
        c->scratch = aligned_alloc_raw(c->scratch_size, &c->scratch_raw);
        if (!c->arena || !c->scratch)
            s = ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes of activations",
                        c->arena_size + c->scratch_size);
    }
    for (int k = 0; !s && k < c->n_plans; k++) s = ims_cpu_plan_bind(c, &c->plans[k], e);
    free(c->group_last);
    c->group_last = NULL;
    free(c->conv_int8);
    free(c->out_int8);
    c->conv_int8 = c->out_int8 = NULL;
    c->observe = c->act_unsigned = NULL;
    c->act_scale = NULL;
    c->act_zero = NULL;
    c->g = NULL;
    if (s) {
        impl_free(c);
        return s;
    }
    b->impl = c;
    b->dim = c->dim;
    b->in_c = c->in_c;
    b->in_h = c->in_h;
    b->in_w = c->in_w;
    int steps = 0;
    for (int k = 0; k < c->n_plans; k++) steps += c->plans[k].n_steps;
    ims_log_debug("cpu backend: %s %s, %d threads, %d plans (%d steps), weights %.1f MB, arena %.1f MB, "
                 "scratchpad %.1f MB, prepared in %.2f s",
                 c->isa, imgsim_precision_str(c->precision), c->threads, c->n_plans, steps,
                 c->const_bytes / 1e6, c->arena_size / 1e6, c->scratch_size / 1e6, ims_now() - t0);
    if (c->precision == IMGSIM_PREC_INT8) ims_log_debug("cpu backend: int8: %d convolutions in int8", int8_convs);
    c->int8_convs = int8_convs;
    return IMGSIM_OK;
}

/* Runs plan p on one batch: input [p->batch, C, H, W] float32, out [p->batch, dim] float32. */
static imgsim_status run_plan(cpu_impl *c, cpu_plan *p, const float *input, float *out, ims_err *e) {
    for (int k = 0; k < p->n_tens; k++) {
        cpu_tensor *t = &p->tens[k];
        void *h;
        if (t->buf == CPU_BUF_INPUT) h = (void *)input;
        else if (t->buf == CPU_BUF_OUTPUT) h = out;
        else continue;
        dnnl_status_t st = dnnl_memory_set_data_handle(t->mem, h);
        if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "memory_set_data_handle");
    }
    for (int k = 0; k < p->n_steps; k++) {
        const cpu_step *s = &p->steps[k];
        dnnl_status_t st = dnnl_primitive_execute(s->prim, c->stream, s->nargs, s->args);
        if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "execute");
    }
    dnnl_status_t st = dnnl_stream_wait(c->stream);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "stream_wait");
    return IMGSIM_OK;
}

/* run_plan with the observed values handed to fn after their steps. */
static imgsim_status run_plan_observe(cpu_impl *c, cpu_plan *p, const float *input, float *out, ims_observe_fn fn,
                                      void *user, ims_err *e) {
    for (int k = 0; k < p->n_tens; k++) {
        cpu_tensor *t = &p->tens[k];
        void *h;
        if (t->buf == CPU_BUF_INPUT) h = (void *)input;
        else if (t->buf == CPU_BUF_OUTPUT) h = out;
        else continue;
        dnnl_status_t st = dnnl_memory_set_data_handle(t->mem, h);
        if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "memory_set_data_handle");
    }
    int o = 0;
    for (int k = -1; k < p->n_steps; k++) {
        if (k >= 0) {
            const cpu_step *s = &p->steps[k];
            dnnl_status_t st = dnnl_primitive_execute(s->prim, c->stream, s->nargs, s->args);
            if (st == dnnl_success && o < p->n_obs && p->obs[o].step == k) st = dnnl_stream_wait(c->stream);
            if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "execute");
        }
        for (; o < p->n_obs && p->obs[o].step == k; o++) {
            void *h = NULL;
            dnnl_status_t st = dnnl_memory_get_data_handle(p->tens[p->obs[o].tensor].mem, &h);
            if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "memory_get_data_handle");
            fn(user, p->obs[o].value, h, p->obs[o].count);
        }
    }
    dnnl_status_t st = dnnl_stream_wait(c->stream);
    if (st != dnnl_success) return ims_cpu_dnnl_fail(c, e, st, "stream_wait");
    return IMGSIM_OK;
}

/* cpu_run, calling fn for the values the engine was planned to observe (cfg->observe). */
static imgsim_status cpu_run_observe(ims_backend *b, const float *input, int n, ims_observe_fn fn, void *user,
                                     ims_err *e) {
    cpu_impl *c = b->impl;
    if (!c) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cpu backend: not prepared");
    if (n < 1 || n > c->max_batch || !input || !fn)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cpu backend: bad observed run (%d images)", n);
    set_threads(c->threads);
    size_t in_row = (size_t)c->in_c * (size_t)c->in_h * (size_t)c->in_w;
    float *out = ims_malloc_array((size_t)c->max_batch * (size_t)c->dim, sizeof(float));
    if (!out) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    imgsim_status s = IMGSIM_OK;
    for (int off = 0; !s && off < n;) {
        int k = 0;
        while (c->plans[k].batch > n - off) k++;
        s = run_plan_observe(c, &c->plans[k], input + (size_t)off * in_row, out, fn, user, e);
        off += c->plans[k].batch;
    }
    free(out);
    return s;
}

/* input [n, C, H, W] float32 -> out [n, dim] float32 (L2-normalised rows when configured). */
static imgsim_status cpu_run(ims_backend *b, const float *input, int n, float *out, ims_err *e) {
    cpu_impl *c = b->impl;
    if (!c) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cpu backend: not prepared");
    if (n < 1 || n > c->max_batch)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cpu backend: batch of %d images outside 1..%d", n, c->max_batch);
    if (!input || !out) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cpu backend: NULL buffer");
    set_threads(c->threads);
    size_t in_row = (size_t)c->in_c * (size_t)c->in_h * (size_t)c->in_w;
    int off = 0;
    while (off < n) {
        int k = 0;
        while (c->plans[k].batch > n - off) k++; /* the last plan has batch 1 */
        imgsim_status s = run_plan(c, &c->plans[k], input + (size_t)off * in_row, out + (size_t)off * (size_t)c->dim, e);
        if (s) return s;
        off += c->plans[k].batch;
    }
    if (c->normalize) {
        for (int r = 0; r < n; r++) {
            float *row = out + (size_t)r * (size_t)c->dim;
            double ss = 0;
            for (int64_t j = 0; j < c->dim; j++) ss += (double)row[j] * row[j];
            if (ss > 0) {
                float inv = (float)(1.0 / sqrt(ss));
                for (int64_t j = 0; j < c->dim; j++) row[j] *= inv;
            }
        }
    }
    return IMGSIM_OK;
}

static void cpu_info(const ims_backend *b, imgsim_engine_info *info) {
    const cpu_impl *c = b->impl;
    const dnnl_version_t *v = dnnl_version();
    if (!c) {
        snprintf(info->device_name, sizeof info->device_name, "cpu (oneDNN %d.%d.%d)", v->major, v->minor, v->patch);
        return;
    }
    if (c->precision == IMGSIM_PREC_INT8)
        snprintf(info->device_name, sizeof info->device_name, "cpu (oneDNN %d.%d.%d, %s, %d threads, %d int8 convolutions)",
                 v->major, v->minor, v->patch, c->isa, c->threads, c->int8_convs);
    else
        snprintf(info->device_name, sizeof info->device_name, "cpu (oneDNN %d.%d.%d, %s, %d threads)", v->major,
                 v->minor, v->patch, c->isa, c->threads);
    info->device_bytes = c->const_bytes + c->arena_size + c->scratch_size;
    info->max_batch = c->max_batch;
    info->loaded_from_file = 0;
}

static void cpu_destroy(ims_backend *b) {
    if (!b) return;
    impl_free(b->impl);
    free(b);
}

static const ims_backend_ops cpu_ops = {
    .name = "cpu",
    .prepare = cpu_prepare,
    .run = cpu_run,
    .n_slots = 0,
    .input_buffer = NULL,
    .submit = NULL,
    .collect = NULL,
    .info = cpu_info,
    .destroy = cpu_destroy,
    .run_observe = cpu_run_observe,
};

imgsim_status ims_backend_cpu_new(ims_backend **out, ims_err *e) {
    *out = NULL;
    ims_backend *b = ims_calloc(1, sizeof *b);
    if (!b) return ims_fail(e, IMGSIM_ERR_NOMEM, "cpu backend: out of memory");
    b->ops = &cpu_ops;
    *out = b;
    return IMGSIM_OK;
}
