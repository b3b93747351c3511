/* engine.c: the public engine handle: picks a backend, plans it once, runs batches. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

void imgsim_engine_opts_init(imgsim_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = IMGSIM_DEVICE_CPU;
    o->precision = IMGSIM_PREC_FP32;
    o->max_batch = 32;
    o->normalize = 1;
}

imgsim_status imgsim_engine_create(imgsim_engine **out, const imgsim_model *m, const imgsim_engine_opts *opt) {
    if (!out || !m) return is_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_engine_create: NULL argument");
    *out = NULL;
    imgsim_engine_opts def;
    if (!opt) {
        imgsim_engine_opts_init(&def);
        opt = &def;
    }
    imgsim_engine *e = is_calloc(1, sizeof *e);
    if (!e) return is_fail(NULL, IMGSIM_ERR_NOMEM, "out of memory");
    double t0 = is_now();
    imgsim_status st;
    is_backend_cfg cfg = {0};
    cfg.precision = opt->precision_set ? opt->precision
                                       : (opt->device == IMGSIM_DEVICE_CUDA ? IMGSIM_PREC_FP16 : IMGSIM_PREC_FP32);
    cfg.batch_auto = opt->max_batch <= 0;
    cfg.max_batch = opt->max_batch > 0 ? opt->max_batch : (opt->device == IMGSIM_DEVICE_CUDA ? 256 : 32);
    cfg.threads = opt->threads;
    cfg.device_index = opt->device_index;
    cfg.normalize = opt->normalize;
    cfg.engine_cache = opt->engine_cache;
    cfg.engine_file = opt->engine_file;
    if (opt->device == IMGSIM_DEVICE_CUDA) {
        st = is_backend_cuda_new(&e->b, &e->err);
    } else {
        if (cfg.precision == IMGSIM_PREC_FP16 || cfg.precision == IMGSIM_PREC_TF32) {
            st = is_fail(&e->err, IMGSIM_ERR_UNSUPPORTED, "precision %s is for --device=cuda; the CPU supports fp32 and bf16",
                         imgsim_precision_str(cfg.precision));
            goto fail;
        }
        st = is_backend_cpu_new(&e->b, &e->err);
    }
    if (st) goto fail;
    e->b->dim = m->g->dim;
    e->b->in_c = m->g->in_c;
    e->b->in_h = m->g->in_h;
    e->b->in_w = m->g->in_w;
    e->b->max_batch = cfg.max_batch;
    if ((st = e->b->ops->prepare(e->b, m->g, &cfg, &e->err))) goto fail;
    snprintf(e->sha256, sizeof e->sha256, "%s", m->g->sha256);
    snprintf(e->layer, sizeof e->layer, "%s", m->layer);
    e->model_path = is_strdup(m->path);
    imgsim_engine_info *in = &e->info;
    in->dim = (int)m->g->dim;
    in->in_channels = m->g->in_c;
    in->in_height = m->g->in_h;
    in->in_width = m->g->in_w;
    in->max_batch = e->b->max_batch;
    in->device = opt->device;
    in->precision = cfg.precision;
    snprintf(in->device_name, sizeof in->device_name, "%s", e->b->ops->name);
    if (e->b->ops->info) e->b->ops->info(e->b, in);
    in->max_batch = e->b->max_batch;
    in->build_seconds = is_now() - t0;
    *out = e;
    return IMGSIM_OK;
fail:
    is_fail_copy(NULL, &e->err, st);
    imgsim_engine_destroy(e);
    return st;
}

void imgsim_engine_destroy(imgsim_engine *e) {
    if (!e) return;
    if (e->b && e->b->ops && e->b->ops->destroy) e->b->ops->destroy(e->b);
    free(e->model_path);
    free(e);
}

const char *imgsim_engine_errmsg(const imgsim_engine *e) {
    return e ? e->err.msg : "no engine";
}

imgsim_status imgsim_engine_run(imgsim_engine *e, const float *input, int n, float *out) {
    if (!e || !input || !out) return is_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_engine_run: NULL argument");
    if (n < 1 || n > e->b->max_batch)
        return is_fail(&e->err, IMGSIM_ERR_INVALID_ARG, "batch of %d images: the engine takes 1 to %d", n,
                       e->b->max_batch);
    imgsim_status st = e->b->ops->run(e->b, input, n, out, &e->err);
    if (st) is_fail_copy(NULL, &e->err, st);
    return st;
}

imgsim_status imgsim_engine_get_info(const imgsim_engine *e, imgsim_engine_info *info) {
    if (!e || !info) return is_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_engine_get_info: NULL argument");
    *info = e->info;
    return IMGSIM_OK;
}
