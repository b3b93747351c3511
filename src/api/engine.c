/*
 * engine.c: the public engine handle: picks a backend, plans it once, runs batches.
 *
 * imgsim_engine_load is the fast path for CUDA engine files: a small index in the engine cache
 * folder (model-index.tsv) maps a model file, recognised by real path, device, inode, size and
 * modification/change times, and the layer asked for, to what an engine file's key needs (sha256,
 * resolved layer, input size, dim). With that, the CUDA backend can find and load the engine file
 * from a stub graph, so neither the model's bytes nor its ONNX import are touched. The index is
 * written whenever a CUDA engine is created from a loaded model.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"

/* What an engine needs to know of its model. */
typedef struct model_id {
    char sha256[65];
    char layer[256];
    int in_c, in_h, in_w;
    int64_t dim;
} model_id;

/* Plans the backend for graph g (a full graph, or with cached_only a stub) with the resolved
 * configuration (ims_engine_config). */
static imgsim_status engine_build(imgsim_engine **out, const ims_graph *g, const model_id *id, const char *path,
                                  const ims_backend_cfg *resolved, const imgsim_engine_opts *opt, int cached_only) {
    *out = NULL;
    imgsim_engine *e = ims_calloc(1, sizeof *e);
    if (!e) return ims_fail(NULL, IMGSIM_ERR_NOMEM, "out of memory");
    double t0 = ims_now();
    imgsim_status st;
    ims_backend_cfg cfg = *resolved;
    char calib_sha[65] = "";
    cfg.cached_only = cached_only;
    if (opt->device == IMGSIM_DEVICE_CUDA)
        st = ims_backend_cuda_new(&e->b, &e->err);
    else
        st = ims_backend_cpu_new(&e->b, &e->err);
    if (st) goto fail;
    e->b->dim = id->dim;
    e->b->in_c = id->in_c;
    e->b->in_h = id->in_h;
    e->b->in_w = id->in_w;
    if (cfg.precision == IMGSIM_PREC_INT8) {
        float *q_scale = NULL;
        uint8_t *q_uns = NULL;
        int32_t *q_zero = NULL;
        if (g->qdq) /* a QDQ model: the scales it carries (onnx/import.c folded them onto the values) */
            st = ims_qdq_resolve(&q_scale, &q_uns, &q_zero, opt->calib_file, g, path, &e->err);
        else
            st = ims_calib_resolve(&q_scale, &q_uns, calib_sha, opt->calib_file, g, id->sha256, id->layer, path,
                                   &e->err);
        if (st) goto fail;
        cfg.act_scale = q_scale;
        cfg.act_unsigned = q_uns;
        cfg.act_zero = q_zero;
        st = e->b->ops->prepare(e->b, g, &cfg, &e->err);
        free(q_scale);
        free(q_uns);
        free(q_zero);
        if (st) goto fail;
    } else if ((st = e->b->ops->prepare(e->b, g, &cfg, &e->err))) {
        goto fail;
    }
    snprintf(e->sha256, sizeof e->sha256, "%s", id->sha256);
    snprintf(e->layer, sizeof e->layer, "%s", id->layer);
    e->model_path = path ? ims_strdup(path) : NULL;
    e->normalize = opt->normalize != 0;
    imgsim_engine_info *in = &e->info;
    in->dim = (int)e->b->dim;
    in->in_channels = e->b->in_c;
    in->in_height = e->b->in_h;
    in->in_width = e->b->in_w;
    in->device = opt->device;
    in->precision = cfg.precision;
    in->model_imported = !cached_only;
    snprintf(in->layer, sizeof in->layer, "%s", id->layer);
    snprintf(in->model_sha256, sizeof in->model_sha256, "%s", id->sha256);
    snprintf(in->calib_sha256, sizeof in->calib_sha256, "%s", calib_sha);
    snprintf(in->device_name, sizeof in->device_name, "%s", e->b->ops->name);
    in->max_batch = cfg.max_batch; /* what was asked for; the backend reports what it chose */
    e->b->ops->info(e->b, in);
    in->build_seconds = ims_now() - t0;
    *out = e;
    return IMGSIM_OK;
fail:
    if (path && strncmp(e->err.msg, path, strlen(path)) != 0) ims_fail_prefix(&e->err, st, path); /* name the model */
    ims_fail_copy(NULL, &e->err, st);
    imgsim_engine_destroy(e);
    return st;
}

/* ---- the model index (fast engine loading) -------------------------------------------------- */

/* The index file for these options, or NULL when there is no cache folder. */
static char *index_path(const imgsim_engine_opts *opt) {
    if (opt->engine_cache && !strcmp(opt->engine_cache, "off") && !(opt->engine_file && *opt->engine_file))
        return NULL;
    char *dir = NULL;
    if (opt->engine_cache && *opt->engine_cache && strcmp(opt->engine_cache, "off") != 0) {
        dir = ims_strdup(opt->engine_cache);
    } else {
        dir = ims_cache_dir();
    }
    if (!dir) return NULL;
    char *p = ims_path_join(dir, "model-index.tsv");
    free(dir);
    return p;
}

/* The identity of a model file: "realpath\tdev\tino\tsize\tmtime\tctime". 0 or -1. */
static int file_ident(char *buf, size_t n, const char *path) {
    char real[PATH_MAX];
    struct stat st;
    if (!realpath(path, real) || stat(real, &st) != 0 || strpbrk(real, "\t\n")) return -1;
    int k = snprintf(buf, n, "%s\t%llu\t%llu\t%lld\t%lld.%09ld\t%lld.%09ld", real, (unsigned long long)st.st_dev,
                     (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
    return k > 0 && (size_t)k < n ? 0 : -1;
}

/* Splits an index line into its identity (first 6 fields), the layer asked (7th) and the rest.
 * Returns 0, or -1 for a malformed line. The line is modified. */
static int split_line(char *line, char **ident, char **asked, char **rest) {
    char *p = line;
    for (int i = 0; i < 6; i++) {
        p = strchr(p, '\t');
        if (!p) return -1;
        if (i < 5) p++;
    }
    *p = 0;
    *ident = line;
    *asked = p + 1;
    char *t = strchr(*asked, '\t');
    if (!t) return -1;
    *t = 0;
    *rest = t + 1;
    return 0;
}

/* Looks the model up; fills id and returns 1 when found. */
static int index_lookup(const char *idx, const char *path, const char *layer, model_id *id) {
    char ident[PATH_MAX + 256];
    if (file_ident(ident, sizeof ident, path)) return 0;
    uint8_t *buf;
    size_t len;
    if (ims_read_file(&buf, &len, idx, (uint64_t)64 << 20, NULL)) return 0;
    int found = 0;
    char *p = (char *)buf, *line;
    while (!found && (line = ims_next_line(&p))) {
        char *li, *asked, *rest;
        if (!split_line(line, &li, &asked, &rest) && !strcmp(li, ident) && !strcmp(asked, layer ? layer : "")) {
            long long dim;
            int c, h, w;
            char sha[65], lay[256];
            if (sscanf(rest, "%64[0-9a-f]\t%255[^\t]\t%d\t%d\t%d\t%lld", sha, lay, &c, &h, &w, &dim) == 6 &&
                strlen(sha) == 64 && c > 0 && h > 0 && w > 0 && dim > 0) {
                snprintf(id->sha256, sizeof id->sha256, "%s", sha);
                snprintf(id->layer, sizeof id->layer, "%s", lay);
                id->in_c = c, id->in_h = h, id->in_w = w, id->dim = dim;
                found = 1;
            }
        }
    }
    free(buf);
    return found;
}

/* Adds (or replaces) the model's line, atomically; lines for an older state of the same file are
 * dropped, at most 1000 lines are kept. Best effort: the index only saves time. */
static void index_store(const char *idx, const char *path, const char *layer, const model_id *id) {
    char ident[PATH_MAX + 256];
    const char *asked = layer ? layer : "";
    if (file_ident(ident, sizeof ident, path) || strpbrk(asked, "\t\n") || strpbrk(id->layer, "\t\n")) return;
    char *dir = ims_path_dirname(idx);
    if (!dir || ims_mkdir_p(dir, NULL)) {
        free(dir);
        return;
    }
    free(dir);
    uint8_t *old = NULL;
    size_t len = 0;
    if (ims_read_file(&old, &len, idx, (uint64_t)64 << 20, NULL)) old = NULL;
    ims_atomic_file af;
    if (ims_atomic_open(&af, idx, NULL)) {
        free(old);
        return;
    }
    fprintf(af.f, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%lld\n", ident, asked, id->sha256, id->layer, id->in_c, id->in_h,
            id->in_w, (long long)id->dim);
    size_t pl = strcspn(ident, "\t"); /* the real path */
    int kept = 1;
    char *p = (char *)old, *line;
    while (kept < 1000 && (line = ims_next_line(&p))) {
        char *li, *la, *rest;
        if (!split_line(line, &li, &la, &rest)) {
            int same_path = !strncmp(li, ident, pl) && li[pl] == '\t';
            /* keep other files, and this file's other layers while the file is unchanged */
            if (!same_path || (!strcmp(li, ident) && strcmp(la, asked) != 0)) {
                fprintf(af.f, "%s\t%s\t%s\n", li, la, rest);
                kept++;
            }
        }
    }
    free(old);
    ims_atomic_commit(&af, NULL);
}

static void model_identity(const imgsim_model *m, model_id *id) {
    memset(id, 0, sizeof *id);
    snprintf(id->sha256, sizeof id->sha256, "%s", m->g->sha256);
    snprintf(id->layer, sizeof id->layer, "%s", m->layer);
    id->in_c = m->g->in_c, id->in_h = m->g->in_h, id->in_w = m->g->in_w;
    id->dim = m->g->dim;
}

/* CUDA: the engine's GPU decoder set (image/gpu_decode.h), for the engine's device and largest
 * batch; with opt->prepare_gpu_decode its decoders are made on a background thread while the
 * engine loads. NULL on the CPU, or where the set cannot be had (extraction then makes its own
 * decoders, or decodes on the CPU). */
static ims_gpu_decoders *decoders_start(const ims_backend_cfg *cfg, const imgsim_engine_opts *opt) {
    ims_gpu_decoders *s = NULL;
    if (opt->device != IMGSIM_DEVICE_CUDA || ims_gpu_decoders_new(&s, cfg->device_index, cfg->max_batch,
                                                                   ims_num_cores(), NULL) != IMGSIM_OK)
        return NULL;
    if (opt->prepare_gpu_decode) ims_gpu_decoders_prepare(s);
    return s;
}

/* Gives the decoder set to the engine just made, or drops it when that failed. */
static imgsim_status decoders_attach(imgsim_status st, imgsim_engine **out, ims_gpu_decoders *set) {
    if (st == IMGSIM_OK && *out)
        (*out)->gpu_dec = set;
    else
        ims_gpu_decoders_free(set);
    return st;
}

static imgsim_status engine_create(imgsim_engine **out, const imgsim_model *m, const ims_backend_cfg *cfg,
                                   const imgsim_engine_opts *opt);

imgsim_status imgsim_engine_create(imgsim_engine **out, const imgsim_model *m, const imgsim_engine_opts *opt) {
    if (!out || !m) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_engine_create: NULL argument");
    *out = NULL;
    imgsim_engine_opts def;
    if (!opt) {
        imgsim_engine_opts_init(&def);
        opt = &def;
    }
    ims_backend_cfg cfg;
    imgsim_status st = ims_engine_config(&cfg, opt, NULL);
    if (st) return st;
    ims_gpu_decoders *dec = decoders_start(&cfg, opt);
    return decoders_attach(engine_create(out, m, &cfg, opt), out, dec);
}

static imgsim_status engine_create(imgsim_engine **out, const imgsim_model *m, const ims_backend_cfg *cfg,
                                   const imgsim_engine_opts *opt) {
    model_id id;
    model_identity(m, &id);
    imgsim_status st = engine_build(out, m->g, &id, m->path, cfg, opt, 0);
    if (!st && opt->device == IMGSIM_DEVICE_CUDA && m->path) {
        char *idx = index_path(opt);
        if (idx) index_store(idx, m->path, m->layer_asked[0] ? m->layer_asked : NULL, &id);
        free(idx);
    }
    return st;
}

imgsim_status imgsim_engine_load(imgsim_engine **out, const char *model_path, const char *layer,
                                 const imgsim_engine_opts *opt) {
    if (!out || !model_path) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_engine_load: NULL argument");
    *out = NULL;
    imgsim_engine_opts def;
    if (!opt) {
        imgsim_engine_opts_init(&def);
        opt = &def;
    }
    ims_backend_cfg cfg;
    imgsim_status cst = ims_engine_config(&cfg, opt, NULL);
    if (cst) return cst;
    ims_gpu_decoders *dec = decoders_start(&cfg, opt); /* (its decoders on their own thread while the engine loads) */
    char *idx = opt->device == IMGSIM_DEVICE_CUDA ? index_path(opt) : NULL;
    model_id id;
    if (idx && index_lookup(idx, model_path, layer, &id)) {
        /* a stub graph: what the engine file's key needs, and nothing else */
        ims_graph *g = NULL;
        int64_t in_dims[4] = {-1, id.in_c, id.in_h, id.in_w}, out_dims[2] = {-1, id.dim};
        if (ims_graph_new(&g, NULL) == IMGSIM_OK) {
            g->input = ims_graph_add_value(g, "input", 4, in_dims, NULL);
            g->output = ims_graph_add_value(g, id.layer, 2, out_dims, NULL);
            g->in_c = id.in_c, g->in_h = id.in_h, g->in_w = id.in_w;
            g->dim = id.dim;
            snprintf(g->sha256, sizeof g->sha256, "%s", id.sha256);
            imgsim_status st = g->input >= 0 && g->output >= 0
                                   ? engine_build(out, g, &id, model_path, &cfg, opt, 1)
                                   : IMGSIM_ERR_NOMEM;
            ims_graph_free(g);
            if (st == IMGSIM_OK) {
                free(idx);
                ims_log_debug("engine for %s loaded without importing the model", model_path);
                return decoders_attach(IMGSIM_OK, out, dec);
            }
            ims_log_debug("no engine file for %s yet (%s): importing the model", model_path, imgsim_last_error());
        }
    }
    free(idx);
    imgsim_model *m = NULL;
    imgsim_status st = imgsim_model_load(&m, model_path, layer);
    if (st) return decoders_attach(st, out, dec);
    st = engine_create(out, m, &cfg, opt);
    imgsim_model_destroy(m);
    return decoders_attach(st, out, dec);
}

void imgsim_engine_destroy(imgsim_engine *e) {
    if (!e) return;
    ims_gpu_decoders_free(e->gpu_dec); /* before the backend: same device */
    if (e->b && e->b->ops && e->b->ops->destroy) e->b->ops->destroy(e->b);
    free(e->model_path);
    free(e);
}

const char *imgsim_engine_errmsg(const imgsim_engine *e) {
    return e ? e->err.msg : "no engine";
}

imgsim_status imgsim_engine_run(imgsim_engine *e, const float *input, int n, float *out) {
    if (!e || !input || !out) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_engine_run: NULL argument");
    if (n < 1 || n > e->info.max_batch)
        return ims_fail(&e->err, IMGSIM_ERR_INVALID_ARG, "batch of %d images: the engine takes 1 to %d", n,
                       e->info.max_batch);
    imgsim_status st = e->b->ops->run(e->b, input, n, out, &e->err);
    if (st) ims_fail_copy(NULL, &e->err, st);
    return st;
}

imgsim_status imgsim_engine_get_info(const imgsim_engine *e, imgsim_engine_info *info) {
    if (!e || !info) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_engine_get_info: NULL argument");
    *info = e->info;
    return IMGSIM_OK;
}

int imgsim_cuda_device_count(void) {
    return ims_cuda_available();
}
