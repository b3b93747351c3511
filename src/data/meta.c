/*
 * meta.c: the schema of meta.json (meta.h), the last file of a feature store to be written:
 *
 *   format, imgsim_version                     "imgsim-store-1", the writer's version
 *   model {path, sha256, layer, dim, input_chw} the model file and what the engine ran
 *   layer, dim                                 the embedding layer and feature dimension
 *   preprocessing {resize [h, w] | resize_shorter S, crop [h, w], interpolation, mean [3], std [3],
 *                  exif_rotate, dct_scaling}
 *                                              resize: the fixed size images are resized to, or
 *                                              resize_shorter: the shorter side's; crop: the centre
 *                                              crop, the network input (absent in stores written
 *                                              before it: no crop, the input is "resize")
 *   precision, calib_sha256 (int8 only: the calibration file's sha256), device, device_name,
 *   dtype, normalized, batch_size
 *   input, inputs_fingerprint                  what was extracted, and its fingerprint then
 *   counts {inputs, ok, failed, skipped, gpu_decoded}
 *   timings {total_s, list_s, setup_s, decode_busy_s, infer_busy_s, write_s, images_per_s,
 *            engine_build_s, gpu_decode_s, wait_for_workers_s, gpu_init_s}
 *   cpu_decode_share_final                     GPU decoding only
 *   files {features.npy {bytes, checksum64}, manifest.tsv {bytes, checksum64}}
 *                                              the files it goes with (checked on open)
 *   layout, rows, shards                       a sharded store (data/store_write.h) instead of
 *                                              files: "layout": "sharded", "rows" in all and
 *                                              "shards" [{features "features-00000.npy", manifest
 *                                              "manifest-00000.tsv", rows, first_row,
 *                                              features_bytes, features_checksum64,
 *                                              manifest_bytes, manifest_checksum64}, ...];
 *                                              absent or "layout": "single": features.npy
 *   created                                    UTC time of writing
 *
 * Readers ignore keys they do not know; a store written by hand may hold only some keys ("dim",
 * "rows"/"n" and "dtype", when present, must agree with features.npy).
 */
#include "data/meta.h"

#include "data/store_write.h"

#include "core/json.h"
#include "image/image.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* meta.json files larger than this are refused */
#define IMS_META_MAX_BYTES ((uint64_t)64 << 20)

void ims_meta_init(imgsim_store_meta *m) {
    memset(m, 0, sizeof *m);
    m->format = m->imgsim_version = m->created = m->model_path = m->model_sha256 = m->layer = "";
    m->interpolation = m->precision = m->device = m->device_name = m->dtype = m->input = "";
    m->inputs_fingerprint = m->calib_sha256 = "";
    imgsim_preprocess_opts_init(&m->pre);
    m->normalized = -1;
    m->cpu_decode_share_final = -1;
    m->features_checksum = m->manifest_checksum = "";
}

/* ---- reading -------------------------------------------------------------------------------- */

static const cJSON *jget(const cJSON *o, const char *key) {
    return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = jget(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *key, double def) {
    const cJSON *v = jget(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* The numbers of array a (when it has exactly n) into out. */
static void jfloats(const cJSON *a, float *out, int n) {
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return;
    for (int i = 0; i < n; i++) out[i] = (float)cJSON_GetNumberValue(cJSON_GetArrayItem(a, i));
}

static void parse_preprocessing(imgsim_store_meta *m, const cJSON *pre) {
    if (!cJSON_IsObject(pre)) return;
    m->has_preprocessing = 1;
    const cJSON *sz = jget(pre, "resize"), *crop = jget(pre, "crop");
    int rh = 0, rw = 0;
    if (cJSON_IsArray(sz) && cJSON_GetArraySize(sz) == 2) {
        rh = (int)cJSON_GetNumberValue(cJSON_GetArrayItem(sz, 0));
        rw = (int)cJSON_GetNumberValue(cJSON_GetArrayItem(sz, 1));
        m->pre.height = rh, m->pre.width = rw; /* no crop (the only form before crops) */
    }
    m->pre.resize_shorter = (int)jnum(pre, "resize_shorter", 0);
    if (cJSON_IsArray(crop) && cJSON_GetArraySize(crop) == 2) {
        m->pre.height = (int)cJSON_GetNumberValue(cJSON_GetArrayItem(crop, 0));
        m->pre.width = (int)cJSON_GetNumberValue(cJSON_GetArrayItem(crop, 1));
        if (!m->pre.resize_shorter && (rh != m->pre.height || rw != m->pre.width))
            m->pre.resize_height = rh, m->pre.resize_width = rw;
    }
    jfloats(jget(pre, "mean"), m->pre.mean, 3);
    jfloats(jget(pre, "std"), m->pre.std, 3);
    m->pre.exif_rotate = cJSON_IsTrue(jget(pre, "exif_rotate"));
    m->pre.dct_scaling = cJSON_IsTrue(jget(pre, "dct_scaling"));
    m->interpolation = jstr(pre, "interpolation");
    m->pre.interp = !strcmp(m->interpolation, IMS_META_INTERPOLATION_BICUBIC) ? IMGSIM_INTERP_BICUBIC
                                                                             : IMGSIM_INTERP_BILINEAR;
}

static void parse(imgsim_store_meta *m, const cJSON *root) {
    m->format = jstr(root, "format");
    m->imgsim_version = jstr(root, "imgsim_version");
    m->created = jstr(root, "created");
    const cJSON *model = jget(root, "model");
    m->model_path = jstr(model, "path");
    m->model_sha256 = jstr(model, "sha256");
    const cJSON *chw = jget(model, "input_chw");
    if (cJSON_IsArray(chw) && cJSON_GetArraySize(chw) == 3) {
        m->in_channels = (int)cJSON_GetNumberValue(cJSON_GetArrayItem(chw, 0));
        m->in_height = (int)cJSON_GetNumberValue(cJSON_GetArrayItem(chw, 1));
        m->in_width = (int)cJSON_GetNumberValue(cJSON_GetArrayItem(chw, 2));
    }
    m->layer = jstr(root, "layer");
    m->dim = (int)jnum(root, "dim", 0);
    parse_preprocessing(m, jget(root, "preprocessing"));
    m->precision = jstr(root, "precision");
    m->calib_sha256 = jstr(root, "calib_sha256");
    m->device = jstr(root, "device");
    m->device_name = jstr(root, "device_name");
    m->dtype = jstr(root, "dtype");
    const cJSON *nz = jget(root, "normalized");
    m->normalized = cJSON_IsBool(nz) ? cJSON_IsTrue(nz) : -1;
    m->batch_size = (int)jnum(root, "batch_size", 0);
    m->input = jstr(root, "input");
    m->inputs_fingerprint = jstr(root, "inputs_fingerprint");
    const cJSON *c = jget(root, "counts"), *t = jget(root, "timings");
    imgsim_extract_stats *s = &m->stats;
    s->inputs = (int64_t)jnum(c, "inputs", 0);
    s->ok = (int64_t)jnum(c, "ok", 0);
    s->failed = (int64_t)jnum(c, "failed", 0);
    s->skipped = (int64_t)jnum(c, "skipped", 0);
    s->gpu_decoded = (int64_t)jnum(c, "gpu_decoded", 0);
    s->seconds_total = jnum(t, "total_s", 0);
    s->seconds_list = jnum(t, "list_s", 0);
    s->seconds_setup = jnum(t, "setup_s", 0);
    s->seconds_decode_busy = jnum(t, "decode_busy_s", 0);
    s->seconds_infer_busy = jnum(t, "infer_busy_s", 0);
    s->seconds_write = jnum(t, "write_s", 0);
    s->images_per_s = jnum(t, "images_per_s", 0);
    s->seconds_gpu_decode = jnum(t, "gpu_decode_s", 0);
    s->seconds_wait_workers = jnum(t, "wait_for_workers_s", 0);
    s->seconds_gpu_init = jnum(t, "gpu_init_s", 0);
    m->engine_build_seconds = jnum(t, "engine_build_s", 0);
    m->cpu_decode_share_final = jnum(root, "cpu_decode_share_final", -1);
    const cJSON *files = jget(root, "files"), *ff = jget(files, "features.npy"), *mf = jget(files, "manifest.tsv");
    m->features_bytes = (int64_t)jnum(ff, "bytes", 0);
    m->features_checksum = jstr(ff, "checksum64");
    m->manifest_bytes = (int64_t)jnum(mf, "bytes", 0);
    m->manifest_checksum = jstr(mf, "checksum64");
    const cJSON *sl = jget(root, "shards");
    m->n_shards = !strcmp(jstr(root, "layout"), "sharded") && cJSON_IsArray(sl) ? cJSON_GetArraySize(sl) : 0;
}

/* The keys that describe features.npy must agree with it. */
static imgsim_status check_shape(const cJSON *root, const char *path, int64_t rows, int dim, imgsim_dtype dtype,
                                 ims_err *e) {
    const cJSON *d = jget(root, "dim");
    if (d && (!cJSON_IsNumber(d) || d->valuedouble != (double)dim))
        return ims_fail(e, IMGSIM_ERR_MISMATCH, "%s: \"dim\" does not match features.npy's %d columns", path, dim);
    const char *row_keys[2] = {"rows", "n"};
    for (int k = 0; k < 2; k++) {
        const cJSON *r = jget(root, row_keys[k]);
        if (r && (!cJSON_IsNumber(r) || r->valuedouble != (double)rows))
            return ims_fail(e, IMGSIM_ERR_MISMATCH, "%s: \"%s\" does not match features.npy's %" PRId64 " rows",
                           path, row_keys[k], rows);
    }
    const cJSON *dt = jget(root, "dtype");
    if (dt) {
        const char *want = dtype == IMGSIM_F16 ? "float16" : "float32";
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, want) != 0)
            return ims_fail(e, IMGSIM_ERR_MISMATCH, "%s: \"dtype\" does not match features.npy's %s", path, want);
    }
    return IMGSIM_OK;
}

imgsim_status ims_meta_read(imgsim_store_meta *m, cJSON **doc, const char *path, int64_t rows, int dim,
                            imgsim_dtype dtype, ims_err *e) {
    ims_meta_init(m);
    *doc = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    imgsim_status st = ims_read_file(&buf, &len, path, IMS_META_MAX_BYTES, e);
    if (st != IMGSIM_OK) return st;
    long off = -1;
    cJSON *root = ims_json_parse((const char *)buf, len, &off); /* \udcXX: bytes of non-UTF-8 names */
    if (!root) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: not valid JSON (near byte %ld)", path, off);
    }
    free(buf);
    *doc = root; /* the caller frees it, also on failure */
    if (!cJSON_IsObject(root)) return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: expected a JSON object", path);
    if (rows >= 0 && (st = check_shape(root, path, rows, dim, dtype, e))) return st;
    parse(m, root);
    return IMGSIM_OK;
}

imgsim_status ims_meta_shards(ims_store_shard **shards, int64_t *n, const cJSON *doc, const char *path, ims_err *e) {
    *shards = NULL;
    *n = 0;
    const cJSON *lay = jget(doc, "layout");
    if (!lay || (cJSON_IsString(lay) && !strcmp(lay->valuestring, "single"))) return IMGSIM_OK;
    if (!cJSON_IsString(lay) || strcmp(lay->valuestring, "sharded") != 0)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: \"layout\" is not \"single\" or \"sharded\"", path);
    const cJSON *list = jget(doc, "shards");
    int count = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
    if (count < 1) return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: a sharded store without a \"shards\" list", path);
    ims_store_shard *s = ims_calloc((size_t)count, sizeof *s);
    if (!s) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    int64_t k = 0, next_row = 0;
    for (const cJSON *o = list->child; o; o = o->next, k++) {
        char fname[64], mname[64];
        ims_store_shard_name(fname, sizeof fname, "features", k, "npy");
        ims_store_shard_name(mname, sizeof mname, "manifest", k, "tsv");
        ims_store_shard *x = &s[k];
        x->rows = (int64_t)jnum(o, "rows", -1);
        x->first_row = (int64_t)jnum(o, "first_row", -1);
        x->features_bytes = (int64_t)jnum(o, "features_bytes", 0);
        x->manifest_bytes = (int64_t)jnum(o, "manifest_bytes", 0);
        snprintf(x->features_checksum, sizeof x->features_checksum, "%s", jstr(o, "features_checksum64"));
        snprintf(x->manifest_checksum, sizeof x->manifest_checksum, "%s", jstr(o, "manifest_checksum64"));
        if (!cJSON_IsObject(o) || strcmp(jstr(o, "features"), fname) || strcmp(jstr(o, "manifest"), mname) ||
            x->rows < 0 || x->first_row != next_row) {
            free(s);
            return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: shard %lld of \"shards\" is not {\"features\": \"%s\", "
                            "\"manifest\": \"%s\", \"rows\", \"first_row\": %lld, ...}", path, (long long)k, fname, mname,
                            (long long)next_row);
        }
        next_row += x->rows;
    }
    *shards = s;
    *n = count;
    return IMGSIM_OK;
}

const char *ims_meta_interpolation(int interp) {
    return interp == IMGSIM_INTERP_BICUBIC ? IMS_META_INTERPOLATION_BICUBIC : IMS_META_INTERPOLATION;
}

const char *ims_meta_preprocessing_differs(const imgsim_store_meta *a, const imgsim_store_meta *b) {
    if (!a->has_preprocessing || !b->has_preprocessing) return "preprocessing (not recorded)";
    const char *f = imgsim_preprocess_opts_differ(&a->pre, &b->pre);
    if (f) return f;
    /* a name this version does not know (a newer writer's filter) is another preprocessing */
    const char *ia = *a->interpolation ? a->interpolation : ims_meta_interpolation(a->pre.interp);
    const char *ib = *b->interpolation ? b->interpolation : ims_meta_interpolation(b->pre.interp);
    return strcmp(ia, ib) != 0 ? "interpolation" : NULL;
}

/* ---- writing -------------------------------------------------------------------------------- */

static cJSON *json_floats(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

static cJSON *json_ints(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static const char *str(const char *s) {
    return s ? s : "";
}

static cJSON *preprocessing_json(const imgsim_store_meta *m) {
    cJSON *p = cJSON_CreateObject();
    int shorter, size[2], crop[2] = {m->pre.height, m->pre.width};
    ims_pre_resize_of(&m->pre, &shorter, &size[0], &size[1]);
    if (shorter)
        cJSON_AddNumberToObject(p, "resize_shorter", shorter);
    else
        cJSON_AddItemToObject(p, "resize", json_ints(size, 2));
    cJSON_AddItemToObject(p, "crop", json_ints(crop, 2));
    cJSON_AddStringToObject(p, "interpolation", ims_meta_interpolation(m->pre.interp));
    cJSON_AddItemToObject(p, "mean", json_floats(m->pre.mean, 3));
    cJSON_AddItemToObject(p, "std", json_floats(m->pre.std, 3));
    cJSON_AddBoolToObject(p, "exif_rotate", m->pre.exif_rotate != 0);
    cJSON_AddBoolToObject(p, "dct_scaling", m->pre.dct_scaling != 0);
    return p;
}

static void add_counts_timings(cJSON *root, const imgsim_store_meta *m) {
    const imgsim_extract_stats *s = &m->stats;
    cJSON *c = cJSON_AddObjectToObject(root, "counts");
    cJSON_AddNumberToObject(c, "inputs", (double)s->inputs);
    cJSON_AddNumberToObject(c, "ok", (double)s->ok);
    cJSON_AddNumberToObject(c, "failed", (double)s->failed);
    cJSON_AddNumberToObject(c, "skipped", (double)s->skipped);
    cJSON_AddNumberToObject(c, "gpu_decoded", (double)s->gpu_decoded);
    cJSON *t = cJSON_AddObjectToObject(root, "timings");
    cJSON_AddNumberToObject(t, "total_s", s->seconds_total);
    cJSON_AddNumberToObject(t, "list_s", s->seconds_list);
    cJSON_AddNumberToObject(t, "setup_s", s->seconds_setup);
    cJSON_AddNumberToObject(t, "decode_busy_s", s->seconds_decode_busy);
    cJSON_AddNumberToObject(t, "infer_busy_s", s->seconds_infer_busy);
    cJSON_AddNumberToObject(t, "write_s", s->seconds_write);
    cJSON_AddNumberToObject(t, "images_per_s", s->images_per_s);
    cJSON_AddNumberToObject(t, "engine_build_s", m->engine_build_seconds);
    cJSON_AddNumberToObject(t, "gpu_decode_s", s->seconds_gpu_decode);
    cJSON_AddNumberToObject(t, "wait_for_workers_s", s->seconds_wait_workers);
    cJSON_AddNumberToObject(t, "gpu_init_s", s->seconds_gpu_init);
}

imgsim_status ims_meta_write(const char *path, const imgsim_store_meta *m, const ims_store_files *sharded,
                             int durable, ims_err *e) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory writing %s", path);
    cJSON_AddStringToObject(root, "format", m->format && *m->format ? m->format : IMS_META_FORMAT);
    cJSON_AddStringToObject(root, "imgsim_version", m->imgsim_version && *m->imgsim_version ? m->imgsim_version
                                                                                            : imgsim_version());
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "path", str(m->model_path));
    cJSON_AddStringToObject(model, "sha256", str(m->model_sha256));
    cJSON_AddStringToObject(model, "layer", str(m->layer));
    cJSON_AddNumberToObject(model, "dim", m->dim);
    int chw[3] = {m->in_channels, m->in_height, m->in_width};
    cJSON_AddItemToObject(model, "input_chw", json_ints(chw, 3));
    cJSON_AddStringToObject(root, "layer", str(m->layer));
    cJSON_AddNumberToObject(root, "dim", m->dim);
    cJSON_AddItemToObject(root, "preprocessing", preprocessing_json(m));
    cJSON_AddStringToObject(root, "precision", str(m->precision));
    if (m->calib_sha256 && *m->calib_sha256) cJSON_AddStringToObject(root, "calib_sha256", m->calib_sha256);
    cJSON_AddStringToObject(root, "device", str(m->device));
    cJSON_AddStringToObject(root, "device_name", str(m->device_name));
    cJSON_AddStringToObject(root, "dtype", str(m->dtype));
    cJSON_AddBoolToObject(root, "normalized", m->normalized != 0);
    cJSON_AddNumberToObject(root, "batch_size", m->batch_size);
    cJSON_AddStringToObject(root, "input", str(m->input));
    cJSON_AddStringToObject(root, "inputs_fingerprint", str(m->inputs_fingerprint));
    add_counts_timings(root, m);
    if (m->cpu_decode_share_final >= 0)
        cJSON_AddNumberToObject(root, "cpu_decode_share_final", m->cpu_decode_share_final);
    if (sharded && sharded->n_shards > 0) {
        int64_t rows = 0;
        cJSON_AddStringToObject(root, "layout", "sharded");
        cJSON *list = cJSON_AddArrayToObject(root, "shards");
        for (int64_t k = 0; k < sharded->n_shards; k++) {
            const ims_store_shard *sh = &sharded->shards[k];
            char name[64];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToArray(list, o);
            ims_store_shard_name(name, sizeof name, "features", k, "npy");
            cJSON_AddStringToObject(o, "features", name);
            ims_store_shard_name(name, sizeof name, "manifest", k, "tsv");
            cJSON_AddStringToObject(o, "manifest", name);
            cJSON_AddNumberToObject(o, "rows", (double)sh->rows);
            cJSON_AddNumberToObject(o, "first_row", (double)sh->first_row);
            cJSON_AddNumberToObject(o, "features_bytes", (double)sh->features_bytes);
            cJSON_AddStringToObject(o, "features_checksum64", sh->features_checksum);
            cJSON_AddNumberToObject(o, "manifest_bytes", (double)sh->manifest_bytes);
            cJSON_AddStringToObject(o, "manifest_checksum64", sh->manifest_checksum);
            rows += sh->rows;
        }
        cJSON_AddNumberToObject(root, "rows", (double)rows);
    } else if (m->features_bytes > 0 || m->manifest_bytes > 0) {
        cJSON *files = cJSON_AddObjectToObject(root, "files");
        cJSON *ff = cJSON_AddObjectToObject(files, "features.npy"), *mf = cJSON_AddObjectToObject(files, "manifest.tsv");
        cJSON_AddNumberToObject(ff, "bytes", (double)m->features_bytes);
        cJSON_AddStringToObject(ff, "checksum64", str(m->features_checksum));
        cJSON_AddNumberToObject(mf, "bytes", (double)m->manifest_bytes);
        cJSON_AddStringToObject(mf, "checksum64", str(m->manifest_checksum));
    }
    char ts[32];
    if (!m->created || !*m->created) {
        time_t now = time(NULL);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    } else {
        snprintf(ts, sizeof ts, "%s", m->created);
    }
    cJSON_AddStringToObject(root, "created", ts);
    char *txt = ims_json_print(root, 1); /* paths that are not UTF-8: bytes as \udcXX */
    cJSON_Delete(root);
    if (!txt) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory writing %s", path);
    size_t n = strlen(txt);
    txt[n] = '\n'; /* replace the terminator: written with its length */
    imgsim_status st = ims_write_file_atomic_ex(path, txt, n + 1, durable, e);
    free(txt);
    return st;
}

imgsim_status ims_store_files_measure(ims_store_files *f, const char *features_path, uint64_t features_ck,
                                      const char *manifest_path, ims_err *e) {
    memset(f, 0, sizeof *f);
    struct stat st;
    if (stat(features_path, &st) != 0)
        return ims_fail(e, IMGSIM_ERR_IO, "%s: cannot stat: %s", features_path, strerror(errno));
    f->features_bytes = (int64_t)st.st_size;
    ims_ck64_hex(features_ck, f->features_checksum);
    uint8_t *buf = NULL;
    size_t len = 0;
    imgsim_status s = ims_read_file(&buf, &len, manifest_path, 0, e);
    if (s) return s;
    ims_ck64 c;
    ims_ck64_init(&c);
    ims_ck64_update(&c, buf, len);
    free(buf);
    f->manifest_bytes = (int64_t)len;
    ims_ck64_hex(ims_ck64_final(&c), f->manifest_checksum);
    return IMGSIM_OK;
}
