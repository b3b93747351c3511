/*
 * calib.c: int8 calibration (imgsim_calibrate), the calibration file (imgsim_calib_save/load) and
 * its use by an int8 engine (ims_calib_resolve); a QDQ model's own scales in the same form
 * (ims_qdq_resolve).
 *
 * Calibration plans the model's float32 CPU engine with an observation list: every value a
 * convolution reads (input, residual) or writes. Each batch of calibration images (decoded and
 * preprocessed by imgsim_preprocess_file, as extraction does) runs through it, and each observed
 * value's float32 contents go into its histogram of |x| (src/quant). At the end each value's
 * threshold comes from its histogram by the chosen method, and its scale from the threshold and
 * its sign (u8 when no negative value was seen).
 *
 * The file is JSON, written with keys in a fixed order and no time stamp, so the same
 * calibration gives the same bytes:
 *   {"format": "imgsim-calib-1", "imgsim_version", "model": {"path", "sha256", "layer"},
 *    "preprocessing": {"resize" | "resize_shorter", ["crop"], "mean", "std", "exif_rotate",
 *                      "dct_scaling", "interpolation"},
 *    "method", "percentile" (percentile only), "images", "images_requested", "input",
 *    "input_fingerprint" (imgsim_dataset_fingerprint of the input when it was calibrated),
 *    "tensors": [{"name", "scale", "threshold", "min", "max", "unsigned"}, ...]}
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/json.h"
#include "data/meta.h"
#include "image/image.h"
#include "quant/quant.h"

#define CALIB_FORMAT "imgsim-calib-1"
#define CALIB_MAX_BYTES ((uint64_t)64 << 20)

typedef struct calib_tensor {
    char *name;
    float scale;
    double threshold, min, max;
    int is_unsigned;
} calib_tensor;

struct imgsim_calib {
    char sha256[65];
    char *layer;
    char *model_path;
    char *input;
    char fingerprint[65]; /* of the input ("" when the file does not record it) */
    char file_sha256[65]; /* of the file's bytes, when read from one */
    int images_requested;
    imgsim_calib_method method;
    double percentile;
    int images;
    imgsim_preprocess_opts pre;
    calib_tensor *t;
    int n;
};

void imgsim_calib_opts_init(imgsim_calib_opts *o) {
    memset(o, 0, sizeof *o);
    o->method = IMGSIM_CALIB_ENTROPY;
    o->percentile = 99.99;
    o->images = 512;
    imgsim_preprocess_opts_init(&o->pre);
    o->batch_size = 32;
}

void imgsim_calib_destroy(imgsim_calib *c) {
    if (!c) return;
    for (int k = 0; k < c->n; k++) free(c->t[k].name);
    free(c->t);
    free(c->layer);
    free(c->model_path);
    free(c->input);
    free(c);
}

/* ---- calibration ------------------------------------------------------------------------- */

typedef struct observer {
    int *slot;      /* per graph value: its histogram, -1 if not observed */
    ims_hist *hist; /* [n] */
} observer;

static void on_value(void *user, int value, const float *data, size_t count) {
    observer *o = user;
    if (o->slot[value] >= 0) ims_hist_add(&o->hist[o->slot[value]], data, count);
}

/* Marks what an int8 convolution reads or writes: each live Conv's input, output and residual. */
static int mark_observed(const ims_graph *g, uint8_t *obs) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ims_node *nd = &g->nodes[i];
        if (nd->dead || nd->op != IS_OP_CONV) continue;
        int v[3] = {nd->in[0], nd->out, nd->residual};
        for (int k = 0; k < 3; k++)
            if (v[k] >= 0 && !g->vals[v[k]].data && !obs[v[k]]) {
                obs[v[k]] = 1;
                n++;
            }
    }
    return n;
}

imgsim_status imgsim_calibrate(imgsim_calib **out, const imgsim_model *m, const char *input,
                               const imgsim_calib_opts *opt) {
    ims_err err = {0};
    if (!out || !m || !input) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_calibrate: NULL argument");
    *out = NULL;
    imgsim_calib_opts dflt;
    if (!opt) {
        imgsim_calib_opts_init(&dflt);
        opt = &dflt;
    }
    if ((int)opt->method < 0 || (int)opt->method > IMGSIM_CALIB_MINMAX)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "calibrate: unknown method %d", (int)opt->method);
    if (opt->method == IMGSIM_CALIB_PERCENTILE && !(opt->percentile > 0 && opt->percentile <= 100))
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "calibrate: percentile %g: expected (0, 100]", opt->percentile);
    if (opt->images < 1) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "calibrate: %d images: expected 1 or more", opt->images);
    const ims_graph *g = m->g;
    int batch = opt->batch_size > 0 ? opt->batch_size : 32;
    if (batch > 1024) batch = 1024;

    imgsim_status st = IMGSIM_OK;
    uint8_t *obs = ims_calloc((size_t)g->n_vals, 1);
    observer o = {ims_malloc_array((size_t)g->n_vals, sizeof(int)), NULL};
    ims_backend *b = NULL;
    ims_dataset *ds = NULL;
    float *x = NULL;
    imgsim_calib *c = ims_calloc(1, sizeof *c);
    if (!obs || !o.slot || !c) {
        st = ims_fail(&err, IMGSIM_ERR_NOMEM, "calibrate: out of memory");
        goto done;
    }
    int nobs = mark_observed(g, obs);
    if (nobs == 0) {
        st = ims_fail(&err, IMGSIM_ERR_UNSUPPORTED, "%s: calibrate: the model has no convolution to run in int8", m->path);
        goto done;
    }
    o.hist = ims_malloc_array((size_t)nobs, sizeof(ims_hist));
    c->t = ims_calloc((size_t)nobs, sizeof(calib_tensor));
    if (!o.hist || !c->t) {
        st = ims_fail(&err, IMGSIM_ERR_NOMEM, "calibrate: out of memory");
        goto done;
    }
    for (int v = 0, k = 0; v < g->n_vals; v++) {
        o.slot[v] = obs[v] ? k++ : -1;
        if (obs[v]) ims_hist_init(&o.hist[o.slot[v]]);
    }

    ims_backend_cfg cfg = {0};
    cfg.precision = IMGSIM_PREC_FP32;
    cfg.max_batch = batch;
    cfg.threads = opt->threads > 0 ? ims_threads_cap(opt->threads, "threads") : ims_num_cores();
    cfg.observe = obs;
    if ((st = ims_backend_cpu_new(&b, &err))) goto done;
    if ((st = b->ops->prepare(b, g, &cfg, &err))) goto done;
    if ((st = ims_dataset_open(&ds, input, &err))) goto done;
    if ((st = ims_dataset_fingerprint(ds, c->fingerprint, &err))) goto done;
    if (ds->n == 0) {
        st = ims_fail(&err, IMGSIM_ERR_INVALID_ARG, "%s: calibrate: no images", input);
        goto done;
    }
    size_t want = (size_t)opt->images < ds->n ? (size_t)opt->images : ds->n;
    imgsim_preprocess_opts pre = opt->pre;
    pre.height = g->in_h;
    pre.width = g->in_w;
    if ((st = ims_preprocess_check(&pre, &err))) goto done;
    size_t row = (size_t)g->in_c * (size_t)g->in_h * (size_t)g->in_w;
    x = ims_malloc_array((size_t)batch * row, sizeof(float));
    if (!x) {
        st = ims_fail(&err, IMGSIM_ERR_NOMEM, "calibrate: out of memory for a batch");
        goto done;
    }
    int used = 0, failed = 0;
    double t0 = ims_now(), last = t0;
    for (size_t k = 0; k < want && !st;) {
        int nb = 0;
        for (; k < want && nb < batch; k++) {
            const ims_item *it = &ds->items[(size_t)((double)k * (double)ds->n / (double)want)];
            if (imgsim_preprocess_file(x + (size_t)nb * row, it->path, &pre) != IMGSIM_OK) {
                ims_log_warn("calibrate: skipping %s: %s", it->path, imgsim_last_error());
                failed++;
                continue;
            }
            nb++;
        }
        if (nb > 0) st = b->ops->run_observe(b, x, nb, on_value, &o, &err);
        used += nb;
        if (!opt->quiet && ims_now() - last > 2.0) {
            last = ims_now();
            ims_log_info("calibrate: %d of %zu images, %.1f images/s", used, want, used / (last - t0));
        }
    }
    if (st) goto done;
    if (used == 0) {
        st = ims_fail(&err, IMGSIM_ERR_FORMAT, "%s: calibrate: none of the %d images could be decoded", input, failed);
        goto done;
    }
    for (int v = 0; v < g->n_vals; v++) {
        if (o.slot[v] < 0) continue;
        const ims_hist *h = &o.hist[o.slot[v]];
        if (!isfinite(h->amax)) {
            st = ims_fail(&err, IMGSIM_ERR_FORMAT, "%s: calibrate: tensor '%s' holds a NaN or an infinity", m->path,
                          g->vals[v].name);
            goto done;
        }
        calib_tensor *t = &c->t[c->n];
        t->name = ims_strdup(g->vals[v].name);
        if (!t->name) {
            st = ims_fail(&err, IMGSIM_ERR_NOMEM, "calibrate: out of memory");
            goto done;
        }
        c->n++;
        t->threshold = ims_calib_threshold(h, (ims_calib_method)opt->method, opt->percentile);
        t->min = h->min;
        t->max = h->max;
        t->is_unsigned = h->min >= 0;
        t->scale = ims_quant_act_scale(t->threshold, t->is_unsigned);
    }
    snprintf(c->sha256, sizeof c->sha256, "%s", g->sha256);
    c->layer = ims_strdup(m->layer);
    c->model_path = ims_strdup(m->path ? m->path : "");
    c->input = ims_strdup(input);
    c->method = opt->method;
    c->percentile = opt->method == IMGSIM_CALIB_PERCENTILE ? opt->percentile : 0;
    c->images = used;
    c->images_requested = opt->images;
    c->pre = pre;
    if (!c->layer || !c->model_path || !c->input) st = ims_fail(&err, IMGSIM_ERR_NOMEM, "calibrate: out of memory");
    if (!st && !opt->quiet)
        ims_log_info("calibrate: %d images (%d failed), %d tensors, %s, in %.1f s", used, failed, c->n,
                     ims_calib_method_name((ims_calib_method)opt->method), ims_now() - t0);
done:
    free(x);
    if (ds) ims_dataset_free(ds);
    if (b) b->ops->destroy(b);
    free(o.hist);
    free(o.slot);
    free(obs);
    if (st) {
        imgsim_calib_destroy(c);
        return ims_fail_copy(NULL, &err, st);
    }
    *out = c;
    return IMGSIM_OK;
}

/* ---- the file ------------------------------------------------------------------------------ */

static cJSON *floats3(const float *v) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < 3; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[k]));
    return a;
}

imgsim_status imgsim_calib_save(const imgsim_calib *c, const char *path) {
    if (!c || !path) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_calib_save: NULL argument");
    cJSON *root = cJSON_CreateObject();
    if (!root) return ims_fail(NULL, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    cJSON_AddStringToObject(root, "format", CALIB_FORMAT);
    cJSON_AddStringToObject(root, "imgsim_version", imgsim_version());
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "path", c->model_path);
    cJSON_AddStringToObject(model, "sha256", c->sha256);
    cJSON_AddStringToObject(model, "layer", c->layer);
    cJSON *pre = cJSON_AddObjectToObject(root, "preprocessing");
    int shorter, rh, rw; /* the geometry as meta.json has it (crop only where there is one) */
    ims_pre_resize_of(&c->pre, &shorter, &rh, &rw);
    if (shorter) {
        cJSON_AddNumberToObject(pre, "resize_shorter", shorter);
    } else {
        cJSON *size = cJSON_AddArrayToObject(pre, "resize");
        cJSON_AddItemToArray(size, cJSON_CreateNumber(rh));
        cJSON_AddItemToArray(size, cJSON_CreateNumber(rw));
    }
    if (shorter || rh != c->pre.height || rw != c->pre.width) {
        cJSON *crop = cJSON_AddArrayToObject(pre, "crop");
        cJSON_AddItemToArray(crop, cJSON_CreateNumber(c->pre.height));
        cJSON_AddItemToArray(crop, cJSON_CreateNumber(c->pre.width));
    }
    cJSON_AddStringToObject(pre, "interpolation", ims_meta_interpolation(c->pre.interp));
    cJSON_AddItemToObject(pre, "mean", floats3(c->pre.mean));
    cJSON_AddItemToObject(pre, "std", floats3(c->pre.std));
    cJSON_AddBoolToObject(pre, "exif_rotate", c->pre.exif_rotate != 0);
    cJSON_AddBoolToObject(pre, "dct_scaling", c->pre.dct_scaling != 0);
    cJSON_AddStringToObject(root, "method", ims_calib_method_name((ims_calib_method)c->method));
    if (c->method == IMGSIM_CALIB_PERCENTILE) cJSON_AddNumberToObject(root, "percentile", c->percentile);
    cJSON_AddNumberToObject(root, "images", c->images);
    if (c->images_requested > 0) cJSON_AddNumberToObject(root, "images_requested", c->images_requested);
    cJSON_AddStringToObject(root, "input", c->input);
    if (c->fingerprint[0]) cJSON_AddStringToObject(root, "input_fingerprint", c->fingerprint);
    cJSON *ts = cJSON_AddArrayToObject(root, "tensors");
    for (int k = 0; k < c->n; k++) {
        const calib_tensor *t = &c->t[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(ts, o);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddNumberToObject(o, "scale", t->scale);
        cJSON_AddNumberToObject(o, "threshold", t->threshold);
        cJSON_AddNumberToObject(o, "min", t->min);
        cJSON_AddNumberToObject(o, "max", t->max);
        cJSON_AddBoolToObject(o, "unsigned", t->is_unsigned);
    }
    char *txt = ims_json_print(root, 1);
    cJSON_Delete(root);
    if (!txt) return ims_fail(NULL, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    size_t len = strlen(txt);
    ims_err err = {0};
    imgsim_status st = IMGSIM_OK;
    char *buf = ims_malloc(len + 2);
    if (!buf) st = ims_fail(&err, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    if (!st) {
        memcpy(buf, txt, len);
        buf[len] = '\n';
        st = ims_write_file_atomic(path, buf, len + 1, &err);
    }
    free(buf);
    free(txt);
    return st ? ims_fail_copy(NULL, &err, st) : IMGSIM_OK;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jnum(const cJSON *o, const char *k, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return -1;
    *out = v->valuedouble;
    return 0;
}

/* Reads path; with sha256 (may be NULL) the file must be for that model and layer. */
static imgsim_status calib_read(imgsim_calib **out, const char *path, const char *sha256, const char *layer,
                                const char *model_path, ims_err *e) {
    *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    imgsim_status st = ims_read_file(&buf, &len, path, CALIB_MAX_BYTES, e);
    if (st) return st;
    char file_sha[65];
    ims_sha256_hex(buf, len, file_sha);
    long at = -1;
    cJSON *root = ims_json_parse((const char *)buf, len, &at);
    free(buf);
    if (!root) return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: not a calibration file: not JSON (at byte %ld)", path, at);
    imgsim_calib *c = ims_calloc(1, sizeof *c);
    if (!c) {
        cJSON_Delete(root);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    }
    const char *fmt = jstr(root, "format");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    const char *msha = jstr(model, "sha256"), *mlayer = jstr(model, "layer"), *mpath = jstr(model, "path");
    const char *method = jstr(root, "method");
    double images = 0;
    if (!fmt || strncmp(fmt, "imgsim-calib-", 13) != 0) {
        st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s: not an imgsim calibration file (no \"format\": \"%s\")", path,
                      CALIB_FORMAT);
    } else if (strcmp(fmt, CALIB_FORMAT) != 0) {
        st = ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: calibration file format '%s' is not supported (this imgsim reads %s)",
                      path, fmt, CALIB_FORMAT);
    } else if (!msha || strlen(msha) != 64 || !mlayer || !method || ims_calib_method_parse(method) < 0 ||
               jnum(root, "images", &images) || !cJSON_IsArray(ts)) {
        st = ims_fail(e, IMGSIM_ERR_FORMAT,
                      "%s: calibration file lacks model.sha256, model.layer, a known method, images or tensors", path);
    } else if (sha256 && (strcmp(msha, sha256) != 0 || strcmp(mlayer, layer) != 0)) {
        st = ims_fail(e, IMGSIM_ERR_MISMATCH,
                      "%s: calibration file is for another model: it was made for %s (sha256 %.16s..., layer '%s'), "
                      "not for %s (sha256 %.16s..., layer '%s'); run imgsim calibrate for this model",
                      path, mpath ? mpath : "?", msha, mlayer, model_path ? model_path : "?", sha256, layer);
    }
    if (!st) {
        snprintf(c->sha256, sizeof c->sha256, "%s", msha);
        c->layer = ims_strdup(mlayer);
        c->model_path = ims_strdup(mpath ? mpath : "");
        c->input = ims_strdup(jstr(root, "input") ? jstr(root, "input") : "");
        c->method = (imgsim_calib_method)ims_calib_method_parse(method);
        if (jnum(root, "percentile", &c->percentile)) c->percentile = 0;
        c->images = (int)images;
        double req = 0;
        if (!jnum(root, "images_requested", &req) && req > 0 && req < 1e9) c->images_requested = (int)req;
        const char *fp = jstr(root, "input_fingerprint");
        snprintf(c->fingerprint, sizeof c->fingerprint, "%s", fp && strlen(fp) == 64 ? fp : "");
        snprintf(c->file_sha256, sizeof c->file_sha256, "%s", file_sha);
        imgsim_preprocess_opts_init(&c->pre);
        const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "preprocessing");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(pre, "resize");
        if (cJSON_GetArraySize(size) == 2) {
            c->pre.height = (int)cJSON_GetArrayItem(size, 0)->valuedouble;
            c->pre.width = (int)cJSON_GetArrayItem(size, 1)->valuedouble;
        }
        /* the geometry as calib_save writes it: resize_shorter or resize, then the crop */
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(pre, "resize_shorter");
        const cJSON *crop = cJSON_GetObjectItemCaseSensitive(pre, "crop");
        if (cJSON_IsNumber(rs)) c->pre.resize_shorter = (int)rs->valuedouble;
        if (cJSON_GetArraySize(crop) == 2) {
            if (!c->pre.resize_shorter) c->pre.resize_height = c->pre.height, c->pre.resize_width = c->pre.width;
            c->pre.height = (int)cJSON_GetArrayItem(crop, 0)->valuedouble;
            c->pre.width = (int)cJSON_GetArrayItem(crop, 1)->valuedouble;
        }
        const char *ip = jstr(pre, "interpolation");
        if (ip && !strcmp(ip, IMS_META_INTERPOLATION_BICUBIC)) c->pre.interp = IMGSIM_INTERP_BICUBIC;
        const char *key3[2] = {"mean", "std"};
        float *dst3[2] = {c->pre.mean, c->pre.std};
        for (int a = 0; a < 2; a++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(pre, key3[a]);
            for (int k = 0; k < 3 && cJSON_GetArraySize(v) == 3; k++)
                dst3[a][k] = (float)cJSON_GetNumberValue(cJSON_GetArrayItem(v, k));
        }
        const cJSON *ex = cJSON_GetObjectItemCaseSensitive(pre, "exif_rotate");
        const cJSON *dc = cJSON_GetObjectItemCaseSensitive(pre, "dct_scaling");
        if (cJSON_IsBool(ex)) c->pre.exif_rotate = cJSON_IsTrue(ex);
        if (cJSON_IsBool(dc)) c->pre.dct_scaling = cJSON_IsTrue(dc);
        int n = cJSON_GetArraySize(ts);
        c->t = ims_calloc((size_t)n + 1, sizeof(calib_tensor));
        if (!c->layer || !c->model_path || !c->input || !c->t) st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
        for (int k = 0; !st && k < n; k++) {
            const cJSON *o = cJSON_GetArrayItem(ts, k);
            const char *name = jstr(o, "name");
            double scale, thr = 0, mn = 0, mx = 0;
            const cJSON *uns = cJSON_GetObjectItemCaseSensitive(o, "unsigned");
            if (!name || jnum(o, "scale", &scale) || !(scale > 0) || !isfinite(scale) || !cJSON_IsBool(uns)) {
                st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s: tensors[%d]: needs a name, a positive scale and unsigned", path, k);
                break;
            }
            jnum(o, "threshold", &thr);
            jnum(o, "min", &mn);
            jnum(o, "max", &mx);
            calib_tensor *t = &c->t[c->n];
            t->name = ims_strdup(name);
            if (!t->name) {
                st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            c->n++;
            t->scale = (float)scale;
            t->threshold = thr;
            t->min = mn;
            t->max = mx;
            t->is_unsigned = cJSON_IsTrue(uns);
        }
    }
    cJSON_Delete(root);
    if (st) {
        imgsim_calib_destroy(c);
        return st;
    }
    *out = c;
    return IMGSIM_OK;
}

imgsim_status imgsim_calib_load(imgsim_calib **out, const char *path, const imgsim_model *m) {
    if (!out || !path) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_calib_load: NULL argument");
    ims_err err = {0};
    imgsim_status st = calib_read(out, path, m ? m->g->sha256 : NULL, m ? m->layer : NULL, m ? m->path : NULL, &err);
    return st ? ims_fail_copy(NULL, &err, st) : IMGSIM_OK;
}

imgsim_status imgsim_calib_get_info(const imgsim_calib *c, imgsim_calib_info *info) {
    if (!c || !info) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_calib_get_info: NULL argument");
    info->model_sha256 = c->sha256;
    info->layer = c->layer;
    info->method = c->method;
    info->percentile = c->percentile;
    info->images = c->images;
    info->n_tensors = c->n;
    info->images_requested = c->images_requested;
    info->input = c->input ? c->input : "";
    info->input_fingerprint = c->fingerprint;
    info->pre = c->pre;
    return IMGSIM_OK;
}

imgsim_status imgsim_calib_get_tensor(const imgsim_calib *c, int i, const char **name, float *scale) {
    if (!c || i < 0 || i >= c->n)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_calib_get_tensor: no tensor %d", i);
    if (name) *name = c->t[i].name;
    if (scale) *scale = c->t[i].scale;
    return IMGSIM_OK;
}

imgsim_status ims_calib_resolve(float **scale, uint8_t **is_unsigned, char calib_sha256[65], const char *path,
                                const ims_graph *g, const char *sha256, const char *layer,
                                const char *model_path, ims_err *e) {
    *scale = NULL;
    *is_unsigned = NULL;
    calib_sha256[0] = 0;
    if (!path || !*path)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                        "int8 needs a calibration file (--calib=FILE, made by imgsim calibrate) or a QDQ model "
                        "(QuantizeLinear/DequantizeLinear pairs)");
    imgsim_calib *c;
    imgsim_status st = calib_read(&c, path, sha256, layer, model_path, e);
    if (st) return st;
    float *s = ims_calloc((size_t)g->n_vals + 1, sizeof(float));
    uint8_t *u = ims_calloc((size_t)g->n_vals + 1, 1);
    if (!s || !u) st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    for (int k = 0; !st && k < c->n; k++) {
        int v = ims_graph_find_value(g, c->t[k].name);
        if (v < 0) {
            st = ims_fail(e, IMGSIM_ERR_MISMATCH, "%s: tensor '%s' is not in the model %s", path, c->t[k].name,
                          model_path ? model_path : "");
            break;
        }
        s[v] = c->t[k].scale;
        u[v] = (uint8_t)c->t[k].is_unsigned;
    }
    if (!st) snprintf(calib_sha256, 65, "%s", c->file_sha256);
    imgsim_calib_destroy(c);
    if (st) {
        free(s);
        free(u);
        return st;
    }
    *scale = s;
    *is_unsigned = u;
    return IMGSIM_OK;
}

imgsim_status ims_qdq_resolve(float **scale, uint8_t **is_unsigned, int32_t **zero, const char *calib_file,
                              const ims_graph *g, const char *model_path, ims_err *e) {
    *scale = NULL;
    *is_unsigned = NULL;
    *zero = NULL;
    if (calib_file && *calib_file)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                        "%s: the model carries its own int8 scales (QuantizeLinear/DequantizeLinear): run it with "
                        "--precision=int8 and no --calib (%s is not used)",
                        model_path ? model_path : "model", calib_file);
    float *s = ims_calloc((size_t)g->n_vals + 1, sizeof(float));
    uint8_t *u = ims_calloc((size_t)g->n_vals + 1, 1);
    int32_t *z = ims_calloc((size_t)g->n_vals + 1, sizeof(int32_t));
    if (!s || !u || !z) {
        free(s);
        free(u);
        free(z);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    }
    for (int v = 0; v < g->n_vals; v++) {
        if (g->vals[v].data || !(g->vals[v].q_scale > 0)) continue;
        s[v] = g->vals[v].q_scale;
        u[v] = (uint8_t)(g->vals[v].q_unsigned != 0);
        z[v] = g->vals[v].q_unsigned ? g->vals[v].q_zero : 0;
    }
    *scale = s;
    *is_unsigned = u;
    *zero = z;
    return IMGSIM_OK;
}
