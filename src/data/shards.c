/*
 * shards.c: the shards of a store being written (shards.h), in STORE/shards/:
 *
 *   job.json      {"format": "imgsim-shards-1", "model_sha256", "layer", "precision",
 *                  "calib_sha256" (int8 only), "device",
 *                  "dim", "dtype", "normalized", "preprocessing" {resize [h, w] | resize_shorter,
 *                  crop [h, w], interpolation, mean, std, exif_rotate, dct_scaling, max_pixels},
 *                  "batch_size", "shard_size"}
 *   K.npy         [ok, dim] features of shard K's ok items (K: the shard number, 6 digits or more)
 *   K.tsv         its manifest lines, "row<TAB>path<TAB>label<TAB>status<TAB>error", row counted
 *                 from 0 within the shard (-1 for a failed item), no header
 *   K.json        {"shard", "first", "count", "ok", "items_sha256",
 *                  "features" {"bytes", "checksum64"}, "manifest" {"bytes", "checksum64"}}
 *                 written last (each file is written under a temporary name and renamed)
 *
 * items_sha256 covers the relative path, label, size and modification time of the shard's items,
 * as ims_dataset_fingerprint does for a whole dataset; checksum64 of K.npy covers its data (the
 * array after the header), of K.tsv the whole file. Anything that does not verify is removed and
 * extracted again; a job.json from other settings removes every shard.
 */
#define _GNU_SOURCE
#include "data/shards.h"

#include "core/json.h"
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMS_SHARDS_FORMAT "imgsim-shards-1"
#define IMS_SHARD_MAX_TSV ((uint64_t)1 << 30)

struct ims_shards {
    char *dir; /* STORE/shards */
    const ims_dataset *ds;
    int64_t S, n_shards;
    int dim;
    imgsim_dtype dtype;
    int durable;          /* fsync each file written (ims_shard_job.durable) */
    ims_stamp *stamps;    /* [ds->n] */
    uint8_t *done;        /* [n_shards]: complete (verified when opened, or written since) */
    int64_t n_done_open;  /* complete when opened */
    ims_dataset todo;     /* view: the items of the shards not done when opened */
    int64_t *todo_shards; /* their shard numbers, in order */
    /* the shard being written */
    int64_t cur;  /* its number, -1 none */
    int64_t next; /* the item expected next */
    float *rows;  /* [S, dim] */
    int64_t nrows;
    char *tsv;
    size_t tsv_len, tsv_cap;
};

/* ---- small helpers ---------------------------------------------------------------------------- */

static char *shard_path(const ims_shards *sh, int64_t k, const char *ext) {
    char name[48];
    snprintf(name, sizeof name, "%06lld.%s", (long long)k, ext);
    return ims_path_join(sh->dir, name);
}

static int64_t shard_first(const ims_shards *sh, int64_t k) {
    return k * sh->S;
}

static int64_t shard_count(const ims_shards *sh, int64_t k) {
    int64_t left = (int64_t)sh->ds->n - k * sh->S;
    return left < sh->S ? left : sh->S;
}

static void items_sha256(const ims_shards *sh, int64_t k, char out[65]) {
    ims_sha256 s;
    ims_sha256_init(&s);
    for (int64_t i = shard_first(sh, k); i < shard_first(sh, k) + shard_count(sh, k); i++) {
        const ims_item *it = &sh->ds->items[i];
        char buf[64];
        ims_sha256_update(&s, it->rel, strlen(it->rel) + 1);
        ims_sha256_update(&s, it->label, strlen(it->label) + 1);
        int n = snprintf(buf, sizeof buf, "%lld:%lld;", (long long)sh->stamps[i].size,
                         (long long)sh->stamps[i].mtime_ns);
        ims_sha256_update(&s, buf, (size_t)n);
    }
    uint8_t dg[32];
    ims_sha256_final(&s, dg);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++)
        out[2 * i] = hx[dg[i] >> 4], out[2 * i + 1] = hx[dg[i] & 15];
    out[64] = 0;
}

/* The shard number of a shard file's name ("000012.npy" -> 12), -1 for any other name. */
static int64_t shard_of_name(const char *name) {
    const char *d = name;
    while (*d >= '0' && *d <= '9')
        d++;
    if (d - name < 6 || (strcmp(d, ".json") && strcmp(d, ".npy") && strcmp(d, ".tsv"))) return -1;
    return strtoll(name, NULL, 10);
}

/* Removes every shard file whose shard is not complete (or beyond the listing); all: job.json too. */
static void remove_stale(const ims_shards *sh, int all) {
    DIR *d = opendir(sh->dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int64_t k = shard_of_name(de->d_name);
        int stale =
            k >= 0 ? all || k >= sh->n_shards || !sh->done[k] : all && !strcmp(de->d_name, "job.json");
        if (!stale) continue;
        char *p = ims_path_join(sh->dir, de->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
}

/* ---- job.json --------------------------------------------------------------------------------- */

static cJSON *job_json(const ims_shard_job *j, int64_t S) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "format", IMS_SHARDS_FORMAT);
    cJSON_AddStringToObject(r, "model_sha256", j->model_sha256);
    cJSON_AddStringToObject(r, "layer", j->layer);
    cJSON_AddStringToObject(r, "precision", j->precision);
    if (j->calib_sha256 && *j->calib_sha256) cJSON_AddStringToObject(r, "calib_sha256", j->calib_sha256);
    cJSON_AddStringToObject(r, "device", j->device);
    cJSON_AddNumberToObject(r, "dim", j->dim);
    cJSON_AddStringToObject(r, "dtype", j->dtype == IMGSIM_F16 ? "float16" : "float32");
    cJSON_AddBoolToObject(r, "normalized", j->normalized != 0);
    cJSON *p = cJSON_AddObjectToObject(r, "preprocessing");
    /* the geometry as meta.json records it: the resize (fixed size or shorter side), the crop
     * (the network input) and the filter */
    int shorter, rh, rw;
    ims_pre_resize_of(j->pre, &shorter, &rh, &rw);
    if (shorter) {
        cJSON_AddNumberToObject(p, "resize_shorter", shorter);
    } else {
        cJSON *sz = cJSON_AddArrayToObject(p, "resize");
        cJSON_AddItemToArray(sz, cJSON_CreateNumber(rh));
        cJSON_AddItemToArray(sz, cJSON_CreateNumber(rw));
    }
    cJSON *crop = cJSON_AddArrayToObject(p, "crop");
    cJSON_AddItemToArray(crop, cJSON_CreateNumber(j->pre->height));
    cJSON_AddItemToArray(crop, cJSON_CreateNumber(j->pre->width));
    cJSON_AddStringToObject(p, "interpolation", ims_interp_name(j->pre->interp));
    cJSON *mean = cJSON_AddArrayToObject(p, "mean"), *std = cJSON_AddArrayToObject(p, "std");
    for (int c = 0; c < 3; c++) {
        cJSON_AddItemToArray(mean, cJSON_CreateNumber(j->pre->mean[c]));
        cJSON_AddItemToArray(std, cJSON_CreateNumber(j->pre->std[c]));
    }
    cJSON_AddBoolToObject(p, "exif_rotate", j->pre->exif_rotate != 0);
    cJSON_AddBoolToObject(p, "dct_scaling", j->pre->dct_scaling != 0);
    cJSON_AddNumberToObject(p, "max_pixels", (double)j->pre->max_pixels);
    cJSON_AddNumberToObject(r, "batch_size", j->batch_size);
    cJSON_AddNumberToObject(r, "shard_size", (double)S);
    return r;
}

/* Why the job.json at path does not describe want (NULL: it does). */
static const char *job_differs(const char *path, const cJSON *want, char *why, size_t n) {
    uint8_t *buf = NULL;
    size_t len = 0;
    ims_err e;
    if (ims_read_file(&buf, &len, path, 1 << 20, &e)) return snprintf(why, n, "%s", e.msg), why;
    cJSON *have = ims_json_parse((const char *)buf, len, NULL);
    free(buf);
    if (!cJSON_IsObject(have)) {
        cJSON_Delete(have);
        return snprintf(why, n, "%s is not a JSON object", path), why;
    }
    const char *r = NULL;
    for (const cJSON *w = want->child; w && !r; w = w->next) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(have, w->string);
        if (h && cJSON_Compare(w, h, 1)) continue;
        /* an object (the preprocessing): name the key inside it that differs */
        const char *sub = NULL;
        if (cJSON_IsObject(w) && cJSON_IsObject(h)) {
            for (const cJSON *x = w->child; x && !sub; x = x->next) {
                const cJSON *y = cJSON_GetObjectItemCaseSensitive(h, x->string);
                if (!y || !cJSON_Compare(x, y, 1)) sub = x->string;
            }
            for (const cJSON *y = h->child; y && !sub; y = y->next)
                if (!cJSON_GetObjectItemCaseSensitive(w, y->string)) sub = y->string;
        }
        r = sub ? (snprintf(why, n, "%s.%s differs", w->string, sub), why) : (snprintf(why, n, "%s differs", w->string), why);
    }
    cJSON_Delete(have);
    return r;
}

/* ---- one shard: its record, checked against its files and the listing ------------------------- */

typedef struct shard_data {
    void *features; /* [rows, dim] in the job's dtype */
    int64_t rows;
    char *tsv;
    size_t tsv_len;
    char features_ck[17]; /* checksum64 of the features' data (the record's) */
} shard_data;

static void shard_data_free(shard_data *d) {
    free(d->features);
    free(d->tsv);
    memset(d, 0, sizeof *d);
}

static int64_t jint(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -2;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Shard k's features: STORE/shards/K.npy, or, once a sharded store's finish renamed it into place
 * (a finish killed before meta.json), STORE/features-K.npy. */
static char *features_path(const ims_shards *sh, int64_t k) {
    char *fp = shard_path(sh, k, "npy");
    if (!fp || ims_path_exists(fp)) return fp;
    char name[64], *top = ims_path_join(sh->dir, ".."), *alt = NULL;
    ims_store_shard_name(name, sizeof name, "features", k, "npy");
    if (top) alt = ims_path_join(top, name);
    free(top);
    if (alt && ims_path_exists(alt)) {
        free(fp);
        return alt;
    }
    free(alt);
    return fp;
}

/* Reads shard k and checks it: 0 and d filled, or -1 with why (d empty). A record that is not
 * there at all gives -1 with why "". features 0: the features file is checked by its size only
 * (d->features stays NULL, d->rows is the record's), for a finish that renames it into place
 * (ims_shards_open verified it in full). */
static int load_shard(const ims_shards *sh, int64_t k, shard_data *d, int features, char *why, size_t n) {
    memset(d, 0, sizeof *d);
    why[0] = 0;
    char *jp = shard_path(sh, k, "json"), *fp = features_path(sh, k), *tp = shard_path(sh, k, "tsv");
    cJSON *rec = NULL;
    int rc = -1;
    uint8_t *buf = NULL;
    size_t len = 0;
    ims_err e;
    if (!jp || !fp || !tp) {
        snprintf(why, n, "out of memory");
        goto done;
    }
    if (!ims_path_exists(jp)) goto done;
    if (ims_read_file(&buf, &len, jp, 1 << 20, &e)) {
        snprintf(why, n, "%s", e.msg);
        goto done;
    }
    rec = ims_json_parse((const char *)buf, len, NULL);
    free(buf);
    buf = NULL;
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(rec, "features");
    const cJSON *mr = cJSON_GetObjectItemCaseSensitive(rec, "manifest");
    if (!cJSON_IsObject(rec) || !cJSON_IsObject(fr) || !cJSON_IsObject(mr)) {
        snprintf(why, n, "%s: not a shard record", jp);
        goto done;
    }
    char sha[65];
    items_sha256(sh, k, sha);
    if (jint(rec, "shard") != k || jint(rec, "first") != shard_first(sh, k) ||
        jint(rec, "count") != shard_count(sh, k) || strcmp(jstr(rec, "items_sha256"), sha) != 0) {
        snprintf(why, n, "%s: its images are not the listing's (added, removed or changed since)", jp);
        goto done;
    }
    imgsim_dtype dt = sh->dtype;
    int64_t cols = 0;
    struct stat fst;
    snprintf(d->features_ck, sizeof d->features_ck, "%s", jstr(fr, "checksum64"));
    if (!features) {
        d->rows = jint(rec, "ok");
        if (d->rows < 0 || stat(fp, &fst) != 0 || (int64_t)fst.st_size != jint(fr, "bytes")) {
            snprintf(why, n, "%s: not the file its record %s was written with (size differs)", fp, jp);
            goto done;
        }
    } else if (ims_npy_read(&d->features, &dt, &d->rows, &cols, fp, &e)) {
        snprintf(why, n, "%s", e.msg);
        goto done;
    }
    ims_ck64 ck;
    char hex[17];
    ims_ck64_init(&ck);
    if (features) {
        ims_ck64_update(&ck, d->features, (size_t)d->rows * (size_t)cols * (dt == IMGSIM_F16 ? 2 : 4));
        ims_ck64_hex(ims_ck64_final(&ck), hex);
    }
    if (features && (dt != sh->dtype || cols != sh->dim || d->rows != jint(rec, "ok") || stat(fp, &fst) != 0 ||
        (int64_t)fst.st_size != jint(fr, "bytes") || strcmp(hex, jstr(fr, "checksum64")) != 0)) {
        snprintf(why, n, "%s: not the file its record %s was written with (size, shape or checksum differ)",
                 fp, jp);
        goto done;
    }
    if (ims_read_file(&buf, &len, tp, IMS_SHARD_MAX_TSV, &e)) {
        snprintf(why, n, "%s", e.msg);
        goto done;
    }
    ims_ck64_init(&ck);
    ims_ck64_update(&ck, buf, len);
    ims_ck64_hex(ims_ck64_final(&ck), hex);
    if ((int64_t)len != jint(mr, "bytes") || strcmp(hex, jstr(mr, "checksum64")) != 0) {
        snprintf(why, n, "%s: not the file its record %s was written with (size or checksum differ)", tp, jp);
        goto done;
    }
    d->tsv = (char *)buf;
    d->tsv_len = len;
    buf = NULL;
    rc = 0;
done:
    if (rc) shard_data_free(d);
    free(buf);
    cJSON_Delete(rec);
    free(jp);
    free(fp);
    free(tp);
    return rc;
}

/* ---- open ------------------------------------------------------------------------------------- */

void ims_shards_free(ims_shards *sh) {
    if (!sh) return;
    free(sh->dir);
    free(sh->stamps);
    free(sh->done);
    free(sh->todo.items);
    free(sh->todo_shards);
    free(sh->rows);
    free(sh->tsv);
    free(sh);
}

/* The job.json there must be want's; otherwise every shard goes and want is written. */
static imgsim_status open_job(ims_shards *sh, const cJSON *want, ims_err *e) {
    char *jp = ims_path_join(sh->dir, "job.json");
    if (!jp) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    char why[1200];
    const char *differs = ims_path_exists(jp) ? job_differs(jp, want, why, sizeof why) : "none";
    imgsim_status st = IMGSIM_OK;
    if (differs) {
        if (strcmp(differs, "none") != 0)
            ims_log_warn("%s: shards of an extraction with other settings (%s): starting over", sh->dir,
                         differs);
        remove_stale(sh, 1);
        char *txt = ims_json_print(want, 1);
        st = txt ? ims_write_file_atomic_ex(jp, txt, strlen(txt), sh->durable, e)
                 : ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        free(txt);
    }
    free(jp);
    return st;
}

/* A part (ims_shards_open with part): job.json must be there and be want (the coordinator wrote it). */
static imgsim_status check_job(const ims_shards *sh, const cJSON *want, ims_err *e) {
    char *jp = ims_path_join(sh->dir, "job.json");
    if (!jp) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    char why[1200];
    imgsim_status st = IMGSIM_OK;
    if (!ims_path_exists(jp))
        st = ims_fail(e, IMGSIM_ERR_IO, "%s: missing: the job's coordinator has not opened the store (or the "
                      "folder is not on a file system every process shares)", jp);
    else if (job_differs(jp, want, why, sizeof why))
        st = ims_fail(e, IMGSIM_ERR_MISMATCH, "%s: this process's settings are not the job's (%s)", jp, why);
    free(jp);
    return st;
}

imgsim_status ims_shards_open(ims_shards **out, const char *store_dir, const ims_shard_job *job,
                              int64_t shard_size, const ims_dataset *ds, const uint8_t *part, int64_t part_n,
                              ims_err *e) {
    *out = NULL;
    ims_shards *sh = ims_calloc(1, sizeof *sh);
    if (!sh || !(sh->dir = ims_path_join(store_dir, "shards"))) {
        ims_shards_free(sh);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    }
    imgsim_status st = ims_mkdir_p(sh->dir, e);
    if (st) {
        ims_shards_free(sh);
        return st;
    }
    if (!part) ims_remove_tmp_leftovers(sh->dir); /* a killed writer's (the caller holds the lock) */
    int64_t B = job->batch_size > 0 ? job->batch_size : 1;
    if (shard_size <= 0) shard_size = IMS_SHARD_SIZE_DEFAULT;
    sh->S = (shard_size + B - 1) / B * B;
    sh->ds = ds;
    sh->dim = job->dim;
    sh->dtype = job->dtype;
    sh->durable = job->durable;
    sh->cur = -1;
    sh->n_shards = ((int64_t)ds->n + sh->S - 1) / sh->S;
    sh->stamps = ims_calloc(ds->n ? ds->n : 1, sizeof(ims_stamp));
    sh->done = ims_calloc((size_t)sh->n_shards + 1, 1);
    sh->todo_shards = ims_calloc((size_t)sh->n_shards + 1, sizeof(int64_t));
    sh->todo.items = ims_calloc(ds->n ? ds->n : 1, sizeof(ims_item));
    if (!sh->stamps || !sh->done || !sh->todo_shards || !sh->todo.items) {
        ims_shards_free(sh);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory for %zu items", ds->n);
    }
    if (part && part_n != sh->n_shards) {
        int64_t n = sh->n_shards;
        ims_shards_free(sh);
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "%s: the part names %lld shards, the listing has %lld (%zu "
                        "images in shards of %lld)", store_dir, (long long)part_n, (long long)n, ds->n,
                        (long long)(shard_size + B - 1) / B * B);
    }
    for (size_t i = 0; i < ds->n; i++) {
        struct stat fst;
        if (part && !part[(int64_t)i / sh->S]) { /* a part stats only its own items */
            sh->stamps[i].size = -1;
            continue;
        }
        sh->stamps[i].size = -1;
        if (stat(ds->items[i].path, &fst) == 0) {
            sh->stamps[i].size = (int64_t)fst.st_size;
            sh->stamps[i].mtime_ns = (int64_t)fst.st_mtim.tv_sec * 1000000000LL + fst.st_mtim.tv_nsec;
        }
    }
    cJSON *want = job_json(job, sh->S);
    st = !want ? ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory") : part ? check_job(sh, want, e) : open_job(sh, want, e);
    cJSON_Delete(want);
    if (st) {
        ims_shards_free(sh);
        return st;
    }
    int64_t n_todo_items = 0, n_todo = 0;
    for (int64_t k = 0; k < sh->n_shards && part; k++) { /* a part: its own shards, written anew */
        if (!part[k]) continue;
        sh->todo_shards[n_todo++] = k;
        for (int64_t i = shard_first(sh, k); i < shard_first(sh, k) + shard_count(sh, k); i++)
            sh->todo.items[n_todo_items++] = ds->items[i];
    }
    for (int64_t k = 0; k < sh->n_shards && !part; k++) {
        shard_data d;
        char why[1200];
        if (load_shard(sh, k, &d, 1, why, sizeof why) == 0) {
            sh->done[k] = 1;
            sh->n_done_open++;
            shard_data_free(&d);
            continue;
        }
        if (why[0]) ims_log_warn("%s: extracting its images again", why);
        sh->todo_shards[n_todo++] = k;
        for (int64_t i = shard_first(sh, k); i < shard_first(sh, k) + shard_count(sh, k); i++)
            sh->todo.items[n_todo_items++] = ds->items[i];
    }
    if (!part) remove_stale(sh, 0); /* (a part leaves the other processes' shards alone) */
    sh->todo.root = ds->root;
    sh->todo.n = (size_t)n_todo_items;
    if (sh->n_done_open && n_todo_items > 0) /* (nothing to go: the join of a shared extraction) */
        ims_log_info("%s: resuming: %lld of %lld shards (%lld images) already extracted, %lld images to go",
                     sh->dir, (long long)sh->n_done_open, (long long)sh->n_shards,
                     (long long)((int64_t)ds->n - n_todo_items), (long long)n_todo_items);
    *out = sh;
    return IMGSIM_OK;
}

const ims_dataset *ims_shards_todo(const ims_shards *sh) {
    return &sh->todo;
}

int64_t ims_shards_total(const ims_shards *sh) {
    return sh->n_shards;
}

int64_t ims_shards_done(const ims_shards *sh) {
    return sh->n_done_open;
}

const ims_stamp *ims_shards_stamps(const ims_shards *sh) {
    return sh->stamps;
}

int64_t ims_shards_size(const ims_shards *sh) {
    return sh->S;
}

int ims_shards_is_done(const ims_shards *sh, int64_t k) {
    return k >= 0 && k < sh->n_shards && sh->done[k];
}

int64_t ims_shards_bytes(const ims_shards *sh, int64_t k) {
    int64_t b = 0;
    for (int64_t i = shard_first(sh, k); i < shard_first(sh, k) + shard_count(sh, k); i++)
        b += sh->stamps[i].size > 0 ? sh->stamps[i].size : 0;
    return b;
}

/* ---- writing ---------------------------------------------------------------------------------- */

static imgsim_status tsv_append(ims_shards *sh, const char *a, const char *b, const char *c, const char *d,
                                const char *f, ims_err *e) {
    size_t need = strlen(a) + strlen(b) + strlen(c) + strlen(d) + strlen(f) + 6;
    if (sh->tsv_len + need > sh->tsv_cap) {
        size_t cap = sh->tsv_cap ? sh->tsv_cap : 4096;
        while (cap < sh->tsv_len + need)
            cap *= 2;
        char *t = realloc(sh->tsv, cap);
        if (!t) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        sh->tsv = t;
        sh->tsv_cap = cap;
    }
    sh->tsv_len += (size_t)snprintf(sh->tsv + sh->tsv_len, sh->tsv_cap - sh->tsv_len, "%s\t%s\t%s\t%s\t%s\n",
                                    a, b, c, d, f);
    return IMGSIM_OK;
}

/* Writes shard sh->cur: features, manifest lines, then the record. */
static imgsim_status commit_shard(ims_shards *sh, ims_err *e) {
    int64_t k = sh->cur;
    char *jp = shard_path(sh, k, "json"), *fp = shard_path(sh, k, "npy"), *tp = shard_path(sh, k, "tsv");
    imgsim_status st = jp && fp && tp ? IMGSIM_OK : ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    ims_npy_writer w;
    if (!st && !(st = ims_npy_begin(&w, fp, sh->dtype, sh->dim, e))) w.af.durable = sh->durable;
    if (!st && (st = ims_npy_append_f32(&w, sh->rows, sh->nrows, e))) ims_npy_abort(&w);
    if (!st) st = ims_npy_finish(&w, e);
    if (!st) st = ims_write_file_atomic_ex(tp, sh->tsv ? sh->tsv : "", sh->tsv_len, sh->durable, e);
    struct stat fst;
    if (!st && stat(fp, &fst) != 0) st = ims_fail(e, IMGSIM_ERR_IO, "%s: %s", fp, strerror(errno));
    if (!st) {
        char fck[17], tck[17], sha[65];
        ims_ck64_hex(ims_ck64_final(&w.ck), fck);
        ims_ck64 ck;
        ims_ck64_init(&ck);
        ims_ck64_update(&ck, sh->tsv ? sh->tsv : "", sh->tsv_len);
        ims_ck64_hex(ims_ck64_final(&ck), tck);
        items_sha256(sh, k, sha);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "shard", (double)k);
        cJSON_AddNumberToObject(r, "first", (double)shard_first(sh, k));
        cJSON_AddNumberToObject(r, "count", (double)shard_count(sh, k));
        cJSON_AddNumberToObject(r, "ok", (double)sh->nrows);
        cJSON_AddStringToObject(r, "items_sha256", sha);
        cJSON *f = cJSON_AddObjectToObject(r, "features"), *m = cJSON_AddObjectToObject(r, "manifest");
        cJSON_AddNumberToObject(f, "bytes", (double)fst.st_size);
        cJSON_AddStringToObject(f, "checksum64", fck);
        cJSON_AddNumberToObject(m, "bytes", (double)sh->tsv_len);
        cJSON_AddStringToObject(m, "checksum64", tck);
        char *txt = ims_json_print(r, 1);
        cJSON_Delete(r);
        st = txt ? ims_write_file_atomic_ex(jp, txt, strlen(txt), sh->durable, e)
                 : ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        free(txt);
    }
    if (!st) sh->done[k] = 1;
    sh->cur = -1;
    free(jp);
    free(fp);
    free(tp);
    return st;
}

imgsim_status ims_shards_add(ims_shards *sh, int64_t t, const float *row, const char *error, ims_err *e) {
    if (t < 0 || (size_t)t >= sh->todo.n)
        return ims_fail(e, IMGSIM_ERR_INTERNAL, "shards: item %lld out of range", (long long)t);
    int64_t k = sh->todo_shards[t / sh->S], g = k * sh->S + t % sh->S;
    if (sh->cur != k) {
        if (sh->cur >= 0 || g != shard_first(sh, k))
            return ims_fail(e, IMGSIM_ERR_INTERNAL, "shards: item %lld out of order", (long long)g);
        if (!sh->rows && !(sh->rows = ims_malloc_array((size_t)sh->S * (size_t)sh->dim, sizeof(float))))
            return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory for a shard of %lld rows", (long long)sh->S);
        sh->cur = k;
        sh->next = g;
        sh->nrows = 0;
        sh->tsv_len = 0;
    }
    if (g != sh->next)
        return ims_fail(e, IMGSIM_ERR_INTERNAL, "shards: item %lld out of order", (long long)g);
    const ims_item *it = &sh->ds->items[g];
    imgsim_status st;
    if (row) {
        char r[24];
        snprintf(r, sizeof r, "%lld", (long long)sh->nrows);
        memcpy(sh->rows + (size_t)sh->nrows * (size_t)sh->dim, row, (size_t)sh->dim * sizeof(float));
        sh->nrows++;
        st = tsv_append(sh, r, it->rel, it->label, "ok", "", e);
    } else {
        st = tsv_append(sh, "-1", it->rel, it->label, "failed", error ? error : "failed", e);
    }
    if (st) return st;
    sh->next++;
    return sh->next == shard_first(sh, k) + shard_count(sh, k) ? commit_shard(sh, e) : IMGSIM_OK;
}

/* ---- assembling ------------------------------------------------------------------------------- */

/* Writes shard d's manifest lines with rows moved on by base. */
static imgsim_status write_lines(ims_store_writer *w, const shard_data *d, int64_t base, const char *path,
                                 ims_err *e) {
    const char *p = d->tsv, *end = d->tsv + d->tsv_len;
    char *buf = NULL;
    size_t cap = 0;
    imgsim_status st = IMGSIM_OK;
    while (p < end && !st) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *tab = memchr(p, '\t', (size_t)((nl ? nl : end) - p));
        if (!nl || !tab) {
            st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s: a line is not a manifest line", path);
            break;
        }
        if (tab - p == 2 && p[0] == '-' && p[1] == '1') {
            st = ims_store_writer_line(w, p, (size_t)(nl - p), e);
        } else {
            size_t need = (size_t)(nl - tab) + 24;
            if (need > cap) {
                char *b = realloc(buf, need);
                if (!b) {
                    st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
                    break;
                }
                buf = b, cap = need;
            }
            int n = snprintf(buf, cap, "%lld", (long long)(base + strtoll(p, NULL, 10)));
            memcpy(buf + n, tab, (size_t)(nl - tab));
            st = ims_store_writer_line(w, buf, (size_t)n + (size_t)(nl - tab), e);
        }
        p = nl + 1;
    }
    free(buf);
    return st;
}

imgsim_status ims_shards_assemble(ims_shards *sh, ims_store_writer *w, int64_t *ok, int64_t *failed, ims_err *e) {
    *ok = *failed = 0;
    for (int64_t k = 0; k < sh->n_shards; k++) {
        shard_data d;
        char why[1200] = "";
        if (!sh->done[k] || load_shard(sh, k, &d, !w->sharded, why, sizeof why) != 0)
            return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: shard %lld is %s; run the extraction again", sh->dir,
                            (long long)k, why[0] ? why : "missing");
        char *tp = shard_path(sh, k, "tsv"), *fp = w->sharded ? features_path(sh, k) : NULL;
        imgsim_status st;
        if (w->sharded) /* the shard's features file becomes the store's: renamed, not copied */
            st = fp ? ims_store_writer_next_adopt(w, fp, d.rows, d.features_ck, e)
                    : ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        else if (!(st = ims_store_writer_next(w, e))) /* (the single layout: one for all) */
            st = ims_store_writer_rows(w, d.features, d.rows, e);
        free(fp);
        if (!st) st = write_lines(w, &d, *ok, tp ? tp : sh->dir, e);
        free(tp);
        *ok += d.rows;
        *failed += shard_count(sh, k) - d.rows;
        shard_data_free(&d);
        if (st) return st;
    }
    return IMGSIM_OK;
}

void ims_shards_remove(ims_shards *sh) {
    remove_stale(sh, 1);
    if (rmdir(sh->dir) != 0) ims_log_debug("%s: not removed: %s", sh->dir, strerror(errno));
}
