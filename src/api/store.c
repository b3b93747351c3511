/*
 * store.c: the public store calls of imgsim.h (imgsim_store_*): opening a store for reading
 * (data/store.c), what its meta.json says (data/meta.c), and whether stores and engines belong
 * together.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "data/meta.h"
#include "data/store.h"

imgsim_status imgsim_store_open(imgsim_store **out, const char *dir) {
    if (!out || !dir) {
        if (out) *out = NULL;
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_store_open: NULL argument");
    }
    ims_err e;
    ims_err_clear(&e);
    imgsim_status st = ims_store_open(out, dir, &e);
    if (st) ims_fail_copy(NULL, &e, st);
    return st;
}

struct imgsim_dir_lock {
    ims_dir_lock *l;
};

imgsim_status imgsim_dir_lock_take(imgsim_dir_lock **out, const char *dir) {
    if (!out || !dir) {
        if (out) *out = NULL;
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_dir_lock_take: NULL argument");
    }
    *out = NULL;
    imgsim_dir_lock *h = ims_calloc(1, sizeof *h);
    if (!h) return ims_fail(NULL, IMGSIM_ERR_NOMEM, "%s: out of memory", dir);
    ims_err e;
    ims_err_clear(&e);
    imgsim_status st = ims_dir_lock_take(&h->l, dir, &e);
    if (st) {
        free(h);
        return ims_fail_copy(NULL, &e, st);
    }
    *out = h;
    return IMGSIM_OK;
}

void imgsim_dir_lock_release(imgsim_dir_lock *l) {
    if (!l) return;
    ims_dir_lock_release(l->l);
    free(l);
}

void imgsim_store_close(imgsim_store *s) {
    ims_store_free(s);
}

imgsim_status imgsim_store_dataset_root(char **root, const char *dir) {
    if (!root || !dir) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_store_dataset_root: NULL argument");
    *root = NULL;
    char *path = ims_path_join(dir, "meta.json");
    if (!path) return ims_fail(NULL, IMGSIM_ERR_NOMEM, "%s: out of memory", dir);
    imgsim_store_meta m;
    cJSON *doc = NULL;
    imgsim_status st = ims_meta_read(&m, &doc, path, -1, 0, IMGSIM_F32, NULL);
    free(path);
    const char *in = st == IMGSIM_OK ? m.input : NULL;
    if (in && *in) {
        struct stat sb;
        if (stat(in, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            *root = ims_strdup(in);
        } else {
            const char *sl = strrchr(in, '/'); /* the list's or image's folder */
            size_t n = sl ? (sl == in ? 1 : (size_t)(sl - in)) : 1;
            if ((*root = ims_malloc(n + 1))) {
                memcpy(*root, sl ? in : ".", n);
                (*root)[n] = 0;
            }
        }
        if (!*root) st = ims_fail(NULL, IMGSIM_ERR_NOMEM, "%s: out of memory", dir);
    }
    cJSON_Delete(doc);
    return st;
}

int imgsim_store_exists(const char *path) {
    return ims_store_exists(path);
}

imgsim_status imgsim_store_get_info(const imgsim_store *s, imgsim_store_info *info) {
    if (!s || !info) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_store_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    info->dir = s->dir;
    info->n = s->n;
    info->dim = s->dim;
    info->dtype = s->dtype;
    info->features = s->features;
    info->paths = (const char *const *)s->paths;
    info->labels = (const char *const *)s->labels;
    info->n_failed = s->n_failed;
    info->unit_norm = !ims_store_needs_normalizing(s);
    return IMGSIM_OK;
}

imgsim_status imgsim_store_get_meta(const imgsim_store *s, imgsim_store_meta *meta) {
    if (!s || !meta) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_store_get_meta: NULL argument");
    *meta = s->m;
    return IMGSIM_OK;
}

imgsim_status imgsim_store_features_f32(float *out, const imgsim_store *s, int unit) {
    if (!s || !out) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_store_features_f32: NULL argument");
    ims_store_copy_f32(out, s);
    if (unit) ims_store_unit_rows(out, s);
    return IMGSIM_OK;
}

/* Why the query store q does not belong with the gallery g (into buf), or NULL. */
static const char *store_mismatch(const ims_store *g, const ims_store *q, char *buf, size_t n) {
    if (strcmp(g->m.model_sha256, q->m.model_sha256) != 0) return "were extracted with different models (sha256 differs)";
    if (strcmp(g->m.layer, q->m.layer) != 0) return "use different layers";
    const char *f = ims_meta_preprocessing_differs(&g->m, &q->m);
    if (f) {
        char a[128], b[128];
        imgsim_preprocess_opts_describe(a, sizeof a, &g->m.pre);
        imgsim_preprocess_opts_describe(b, sizeof b, &q->m.pre);
        snprintf(buf, n, "use different preprocessing (%s differs: gallery %s, query %s)", f, a, b);
        return buf;
    }
    if (g->dim != q->dim) return "have different feature dimensions";
    int g8 = !strcmp(g->m.precision, "int8"), q8 = !strcmp(q->m.precision, "int8");
    if (g8 != q8) return "were extracted at different precisions (precision differs: one is int8)";
    if (strcmp(g->m.calib_sha256, q->m.calib_sha256) != 0)
        return "were extracted with different int8 calibration files (calib_sha256 differs)";
    return NULL;
}

imgsim_status imgsim_store_check_compatible(const imgsim_store *g, const imgsim_store *q, const imgsim_engine *e) {
    if (!g) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_store_check_compatible: no gallery");
    char buf[512];
    const char *why = q ? store_mismatch(g, q, buf, sizeof buf) : NULL;
    if (why)
        return ims_fail(NULL, IMGSIM_ERR_MISMATCH,
                       "gallery %s and query store %s %s; re-extract the queries with the gallery's settings", g->dir,
                       q->dir, why);
    if (!e) return IMGSIM_OK;
    const char *model = e->model_path ? e->model_path : "the engine's model";
    if (strcmp(e->info.model_sha256, g->m.model_sha256) != 0)
        return ims_fail(NULL, IMGSIM_ERR_MISMATCH,
                       "%s is not the model the gallery %s was extracted with (sha256 differs)", model, g->dir);
    if (*g->m.layer && strcmp(e->info.layer, g->m.layer) != 0)
        return ims_fail(NULL, IMGSIM_ERR_MISMATCH, "%s: the engine computes layer '%s', the gallery %s holds '%s'",
                       model, e->info.layer, g->dir, g->m.layer);
    if (e->info.dim != g->dim)
        return ims_fail(NULL, IMGSIM_ERR_MISMATCH, "%s: the engine computes %d-d features, the gallery %s holds %d-d",
                       model, e->info.dim, g->dir, g->dim);
    int g8 = !strcmp(g->m.precision, "int8"), e8 = e->info.precision == IMGSIM_PREC_INT8;
    if (g8 != e8)
        return ims_fail(NULL, IMGSIM_ERR_MISMATCH,
                        "%s: the engine runs at precision %s, the gallery %s was extracted "
                        "at %s (precision differs); give the gallery's --precision%s",
                        model, imgsim_precision_str(e->info.precision), g->dir,
                        *g->m.precision ? g->m.precision : "?", g8 ? " and --calib" : "");
    if (strcmp(e->info.calib_sha256, g->m.calib_sha256) != 0)
        return ims_fail(NULL, IMGSIM_ERR_MISMATCH,
                        "%s: the engine's int8 calibration file is not the one the gallery "
                        "%s was extracted with (calib_sha256 %.16s... against %.16s...)",
                        model, g->dir, e->info.calib_sha256, g->m.calib_sha256);
    return IMGSIM_OK;
}

imgsim_status imgsim_store_check_reusable(const char *dir, const imgsim_dataset *ds, const imgsim_model *m,
                                          const imgsim_engine_opts *eo, const imgsim_extract_opts *xo) {
    if (!dir || !ds || !m) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_store_check_reusable: NULL argument");
    imgsim_engine_opts edef;
    imgsim_extract_opts xdef;
    if (!eo) imgsim_engine_opts_init(&edef), eo = &edef;
    if (!xo) imgsim_extract_opts_init(&xdef), xo = &xdef;
    ims_backend_cfg cfg; /* the precision the engine would run at */
    ims_err e;
    imgsim_status st = ims_engine_config(&cfg, eo, &e);
    if (st) return ims_fail_copy(NULL, &e, st);
    char calib_sha[65] = ""; /* int8: of the calibration file the engine would read */
    if (cfg.precision == IMGSIM_PREC_INT8 && eo->calib_file && *eo->calib_file &&
        (st = ims_sha256_file(eo->calib_file, calib_sha, &e)))
        return ims_fail_copy(NULL, &e, st);
    ims_store *s = NULL;
    if ((st = imgsim_store_open(&s, dir))) return st;
    imgsim_model_info mi;
    imgsim_model_get_info(m, &mi);
    char fp[65];
    ims_dataset_fingerprint(ds->d, fp, NULL);
    imgsim_store_meta want;
    ims_meta_init(&want);
    want.has_preprocessing = 1;
    want.pre = xo->pre;
    want.interpolation = ims_meta_interpolation(xo->pre.interp);
    const char *why = NULL, *pf;
    char pbuf[128];
    if (strcmp(s->m.model_sha256, mi.sha256) != 0) why = "was extracted with another model (sha256 differs)";
    else if (strcmp(s->m.layer, mi.layer) != 0) why = "holds another layer";
    else if (strcmp(s->m.precision, imgsim_precision_str(cfg.precision)) != 0) why = "was extracted at another precision";
    else if (strcmp(s->m.calib_sha256, calib_sha) != 0)
        why = "was extracted with another int8 calibration file (calib_sha256 differs)";
    else if (strcmp(s->m.device, eo->device == IMGSIM_DEVICE_CUDA ? "cuda" : "cpu") != 0) why = "was extracted on another device";
    else if (strcmp(s->m.dtype, xo->dtype == IMGSIM_F16 ? "float16" : "float32") != 0) why = "holds another element type";
    else if ((pf = ims_meta_preprocessing_differs(&s->m, &want)))
        why = (snprintf(pbuf, sizeof pbuf, "was extracted with other preprocessing (%s differs)", pf), pbuf);
    else if (strcmp(s->m.inputs_fingerprint, fp) != 0) why = "was extracted from other images (or they changed since)";
    else if ((s->m.n_shards > 0) != (xo->layout == IMGSIM_LAYOUT_SHARDED))
        why = s->m.n_shards > 0 ? "is sharded, the single layout was asked for (--layout)"
                                : "is a single-file store, the sharded layout was asked for (--layout)";
    st = why ? ims_fail(NULL, IMGSIM_ERR_MISMATCH, "%s: the store %s", dir, why) : IMGSIM_OK;
    ims_store_free(s);
    return st;
}
