/*
 * store.c: reading a feature store folder (see store.h) and checking that its three files belong
 * together:
 *   features.npy  [n, dim] float32 or float16 (read with core's ims_npy_read)
 *   manifest.tsv  header "row\tpath\tlabel\tstatus\terror", one line per input; row is the
 *                 features row of the input, or -1 for an input that failed (status/error say why).
 *                 Rows 0..n-1 must each appear exactly once.
 *   meta.json     a JSON object (data/meta.c); when present, "dim" must equal the features'
 *                 columns, "rows" (or "n") their rows and "dtype" ("float32"/"float16") their
 *                 element type. It is written last: a folder with the other files but without
 *                 it is an incomplete store, refused as such.
 * A row holding a NaN or an infinity is refused with its row number and path.
 * A sharded store (meta.json "layout": "sharded", data/store_write.h) holds features-K.npy and
 * manifest-K.tsv per shard instead of the first two, each checked against meta.json's "shards"
 * record; its features are read into one array, shard after shard.
 * Every error names the file at fault and, for the manifest, the line.
 */
#include "data/store.h"

#include "data/meta.h"
#include "data/store_write.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Manifests and meta files larger than this are refused (a 10M-image manifest is ~1 GB). */
#define IS_MANIFEST_MAX_BYTES ((uint64_t)8 << 30)

void ims_store_free(ims_store *s) {
    if (!s) return;
    if (s->paths)
        for (int64_t i = 0; i < s->n; i++)
            free(s->paths[i]);
    if (s->labels)
        for (int64_t i = 0; i < s->n; i++)
            free(s->labels[i]);
    free(s->paths);
    free(s->labels);
    free(s->features);
    cJSON_Delete(s->meta);
    free(s->dir);
    free(s);
}

/* Parses a decimal int64 (optionally "-1"); returns 0 or -1 when s is not exactly a number. */
static int parse_i64(const char *s, int64_t *out) {
    if (!*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s) return -1;
    *out = (int64_t)v;
    return 0;
}

/* Splits line (NUL-terminated, modified in place) at tabs into at most max fields. Returns the
 * number of fields found (> max means too many). */
static int split_tabs(char *line, char **fields, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n < max) fields[n] = p;
        n++;
        char *tab = strchr(p, '\t');
        if (!tab) break;
        *tab = '\0';
        p = tab + 1;
    }
    return n;
}

/* Reads a manifest (manifest.tsv, or one shard's manifest-K.tsv whose rows are [lo, hi) of
 * features) into s->paths/labels (allocated for s->n rows at the first) and s->n_failed, counting
 * its rows into *seen. */
static imgsim_status read_manifest(ims_store *s, const char *path, int64_t lo, int64_t hi, const char *features,
                                   int64_t *seen_out, ims_err *e) {
    uint8_t *buf = NULL;
    size_t len = 0;
    imgsim_status st = ims_read_file(&buf, &len, path, IS_MANIFEST_MAX_BYTES, e);
    if (st != IMGSIM_OK) return st;
    ims_ck64 ck;
    ims_ck64_init(&ck);
    ims_ck64_update(&ck, buf, len);
    s->manifest_ck = ims_ck64_final(&ck);
    s->manifest_bytes = (int64_t)len;
    char *text = ims_malloc(len + 1);
    if (!text) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(text, buf, len);
    text[len] = '\0';
    free(buf);
    if (memchr(text, '\0', len)) {
        free(text);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: not a text file (contains NUL bytes)", path);
    }

    if (!s->paths) s->paths = ims_calloc(s->n ? (size_t)s->n : 1, sizeof(char *));
    if (!s->labels) s->labels = ims_calloc(s->n ? (size_t)s->n : 1, sizeof(char *));
    if (!s->paths || !s->labels) {
        free(text);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory for %" PRId64 " rows", path, s->n);
    }

    int64_t seen = 0;
    size_t lineno = 0;
    char *p = text;
    int header_ok = 0;
    char *line;
    while ((line = ims_next_line(&p))) {
        lineno++;
        size_t ll = strlen(line);
        if (lineno == 1) {
            if (strcmp(line, "row\tpath\tlabel\tstatus\terror") != 0) {
                st = ims_fail(e, IMGSIM_ERR_FORMAT,
                             "%s:1: expected the header \"row<TAB>path<TAB>label<TAB>status<TAB>error\"",
                             path);
                break;
            }
            header_ok = 1;
            continue;
        }
        if (ll == 0) continue;
        char *f[5];
        int nf = split_tabs(line, f, 5);
        if (nf != 5) {
            st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s:%zu: expected 5 tab-separated columns, found %d", path,
                         lineno, nf);
            break;
        }
        int64_t row;
        if (parse_i64(f[0], &row) || row < -1) {
            st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s:%zu: row '%s' is not -1 or a row number", path, lineno,
                         f[0]);
            break;
        }
        if (row == -1) {
            s->n_failed++;
            continue;
        }
        if (row < lo || row >= hi) {
            st = lo ? ims_fail(e, IMGSIM_ERR_MISMATCH,
                               "%s:%zu: row %" PRId64 " is not one of %s's rows %" PRId64 "..%" PRId64, path,
                               lineno, row, features, lo, hi - 1)
                    : ims_fail(e, IMGSIM_ERR_MISMATCH,
                               "%s:%zu: row %" PRId64 " is beyond %s, which has %" PRId64 " rows", path,
                               lineno, row, features, hi);
            break;
        }
        if (s->paths[row]) {
            st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s:%zu: row %" PRId64 " appears twice", path, lineno, row);
            break;
        }
        s->paths[row] = ims_strdup(f[1]);
        s->labels[row] = ims_strdup(f[2]);
        if (!s->paths[row] || !s->labels[row]) {
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        seen++;
    }
    free(text);
    *seen_out += seen;
    if (st != IMGSIM_OK) return st;
    if (!header_ok) return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: empty (no header line)", path);
    return IMGSIM_OK;
}

/* Every row 0..n-1 must have had its manifest line (seen of them did). */
static imgsim_status check_seen(const ims_store *s, int64_t seen, const char *path, const char *features,
                                ims_err *e) {
    if (seen != s->n) {
        int64_t missing = -1;
        for (int64_t i = 0; i < s->n && missing < 0; i++)
            if (!s->paths[i]) missing = i;
        return ims_fail(e, IMGSIM_ERR_MISMATCH,
                       "%s: lists %" PRId64 " rows but %s has %" PRId64 " (row %" PRId64 " is missing)", path, seen,
                       features, s->n, missing);
    }
    return IMGSIM_OK;
}

/* Refuses a row holding a NaN or an infinity (a corrupt or hand-edited store: such a row would
 * never match anything), naming the row and its path, and measures how far the row norms are
 * from 1 (search normalises a store whose rows are not unit length). */
static imgsim_status scan_rows(ims_store *s, const char *fpath, int64_t r0, int64_t r1, ims_err *e) {
    for (int64_t r = r0; r < r1; r++) {
        double ss = 0;
        int bad = 0;
        if (s->dtype == IMGSIM_F16) {
            const uint16_t *h = (const uint16_t *)s->features + r * (int64_t)s->dim;
            for (int j = 0; j < s->dim; j++) {
                if ((h[j] & 0x7C00) == 0x7C00) bad = 1; /* exponent all ones: inf or NaN */
                double v = ims_f16_to_f32(h[j]);
                ss += v * v;
            }
        } else {
            const float *f = (const float *)s->features + r * (int64_t)s->dim;
            for (int j = 0; j < s->dim; j++) {
                if (!isfinite(f[j])) bad = 1;
                ss += (double)f[j] * f[j];
            }
        }
        if (bad || !isfinite(ss))
            return ims_fail(e, IMGSIM_ERR_FORMAT,
                           "%s: row %" PRId64 " (%s) holds a NaN or infinite value: the store is corrupt; "
                           "extract it again",
                           fpath, r, s->paths[r]);
        double dev = ss > 0 ? fabs(sqrt(ss) - 1) : 0;
        if (dev > s->max_norm_dev) s->max_norm_dev = dev;
    }
    return IMGSIM_OK;
}

/* The files must be the ones meta.json was written with (its "files" record, where present):
 * otherwise they come from different extractions, or one changed while it was read. */
static imgsim_status verify_files(const ims_store *s, const char *fpath, const char *mpath, const char *jpath,
                                  ims_err *e) {
    const imgsim_store_meta *m = &s->m;
    if (m->features_bytes > 0) {
        struct stat st;
        ims_ck64 ck;
        ims_ck64_init(&ck);
        ims_ck64_update(&ck, s->features, (size_t)s->n * (size_t)s->dim * (s->dtype == IMGSIM_F16 ? 2 : 4));
        char hex[17];
        ims_ck64_hex(ims_ck64_final(&ck), hex);
        if (stat(fpath, &st) != 0 || (int64_t)st.st_size != m->features_bytes || strcmp(hex, m->features_checksum))
            return ims_fail(e, IMGSIM_ERR_MISMATCH,
                           "%s: not the file %s was written with (size or checksum differ): the store mixes "
                           "files of different extractions, or changed while it was read; extract it again",
                           fpath, jpath);
    }
    if (m->manifest_bytes > 0) {
        char hex[17];
        ims_ck64_hex(s->manifest_ck, hex);
        if (s->manifest_bytes != m->manifest_bytes || strcmp(hex, m->manifest_checksum))
            return ims_fail(e, IMGSIM_ERR_MISMATCH,
                           "%s: not the file %s was written with (size or checksum differ): the store mixes "
                           "files of different extractions, or changed while it was read; extract it again",
                           mpath, jpath);
    }
    return IMGSIM_OK;
}

/* A sharded store (meta.json's "shards", n of them): each features-K.npy read, checked against
 * its record (shape, size, checksum64) and copied into s->features, then each manifest-K.tsv
 * (its header, its rows those of its features). Errors name the shard's file. */
static imgsim_status open_shards(ims_store *s, const ims_store_shard *sh, int64_t n, const char *jpath, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    s->n = sh[n - 1].first_row + sh[n - 1].rows;
    size_t esz = 0, done = 0;
    char name[64];
    for (int64_t k = 0; k < n && !st; k++) {
        ims_store_shard_name(name, sizeof name, "features", k, "npy");
        char *fp = ims_path_join(s->dir, name);
        void *data = NULL;
        imgsim_dtype dt;
        int64_t rows = 0, cols = 0;
        if (!fp) st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        else if (!ims_path_exists(fp))
            st = ims_fail(e, IMGSIM_ERR_IO, "%s: missing: %s lists it as shard %lld of the store; extract it again",
                          fp, jpath, (long long)k);
        else st = ims_npy_read(&data, &dt, &rows, &cols, fp, e);
        if (!st && k == 0) {
            if (cols <= 0 || cols > INT_MAX)
                st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s: unusable shape [%" PRId64 ", %" PRId64 "]", fp, rows, cols);
            s->dim = (int)cols;
            s->dtype = dt;
            esz = (size_t)cols * (dt == IMGSIM_F16 ? 2 : 4);
            uint64_t bytes;
            if (!st && (ims_mul_overflow_u64((uint64_t)s->n, esz, &bytes) || bytes > SIZE_MAX ||
                        !(s->features = ims_malloc(bytes ? (size_t)bytes : 1))))
                st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory for %" PRId64 " rows", s->dir, s->n);
        }
        if (!st && (cols != s->dim || dt != s->dtype || rows != sh[k].rows))
            st = ims_fail(e, IMGSIM_ERR_MISMATCH, "%s: [%" PRId64 ", %" PRId64 "] %s, but %s lists it as %" PRId64
                          " rows of %d %s (the store mixes files of different extractions); extract it again",
                          fp, rows, cols, dt == IMGSIM_F16 ? "float16" : "float32", jpath, sh[k].rows, s->dim,
                          s->dtype == IMGSIM_F16 ? "float16" : "float32");
        if (!st && sh[k].features_bytes > 0) {
            struct stat fst;
            ims_ck64 ck;
            ims_ck64_init(&ck);
            ims_ck64_update(&ck, data, (size_t)rows * esz);
            char hex[17];
            ims_ck64_hex(ims_ck64_final(&ck), hex);
            if (stat(fp, &fst) != 0 || (int64_t)fst.st_size != sh[k].features_bytes ||
                strcmp(hex, sh[k].features_checksum))
                st = ims_fail(e, IMGSIM_ERR_MISMATCH,
                              "%s: not the file %s was written with (size or checksum differ): the store mixes "
                              "files of different extractions, or changed while it was read; extract it again",
                              fp, jpath);
        }
        if (!st) {
            if (rows) memcpy((char *)s->features + done, data, (size_t)rows * esz);
            done += (size_t)rows * esz;
        }
        free(data);
        free(fp);
    }
    int64_t seen = 0;
    for (int64_t k = 0; k < n && !st; k++) {
        char fname[64];
        ims_store_shard_name(fname, sizeof fname, "features", k, "npy");
        ims_store_shard_name(name, sizeof name, "manifest", k, "tsv");
        char *mp = ims_path_join(s->dir, name), *fp = ims_path_join(s->dir, fname);
        if (!mp || !fp) st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        else if (!ims_path_exists(mp))
            st = ims_fail(e, IMGSIM_ERR_IO, "%s: missing: %s lists it as shard %lld of the store; extract it again",
                          mp, jpath, (long long)k);
        else st = read_manifest(s, mp, sh[k].first_row, sh[k].first_row + sh[k].rows, fname, &seen, e);
        if (!st && sh[k].manifest_bytes > 0) {
            char hex[17];
            ims_ck64_hex(s->manifest_ck, hex);
            if (s->manifest_bytes != sh[k].manifest_bytes || strcmp(hex, sh[k].manifest_checksum))
                st = ims_fail(e, IMGSIM_ERR_MISMATCH,
                              "%s: not the file %s was written with (size or checksum differ): the store mixes "
                              "files of different extractions, or changed while it was read; extract it again",
                              mp, jpath);
        }
        if (!st) st = scan_rows(s, fp, sh[k].first_row, sh[k].first_row + sh[k].rows, e);
        free(mp);
        free(fp);
    }
    s->manifest_bytes = 0; /* (the single layout's) */
    if (!st) st = check_seen(s, seen, s->dir, "the store's shards", e);
    return st;
}

imgsim_status ims_store_open(ims_store **out, const char *dir, ims_err *e) {
    *out = NULL;
    if (!ims_is_dir(dir))
        return ims_fail(e, ims_path_exists(dir) ? IMGSIM_ERR_FORMAT : IMGSIM_ERR_IO,
                       "%s: not a feature store folder", dir);
    ims_store *s = ims_calloc(1, sizeof *s);
    char *fpath = ims_path_join(dir, "features.npy");
    char *mpath = ims_path_join(dir, "manifest.tsv");
    char *jpath = ims_path_join(dir, "meta.json");
    ims_store_shard *shards = NULL;
    int64_t n_shards = 0;
    imgsim_status st = IMGSIM_OK;
    if (!s || !fpath || !mpath || !jpath || !(s->dir = ims_strdup(dir))) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if (!ims_path_exists(jpath)) {
        st = ims_fail(e, IMGSIM_ERR_IO,
                     "%s: incomplete feature store (no meta.json: it is written last, so the extraction that "
                     "wrote this folder did not finish); extract it again",
                     dir);
        goto done;
    }
    /* the layout first: meta.json alone (its keys are checked against the features below) */
    st = ims_meta_read(&s->m, &s->meta, jpath, -1, 0, IMGSIM_F32, e);
    if (!st) st = ims_meta_shards(&shards, &n_shards, s->meta, jpath, e);
    cJSON_Delete(s->meta);
    s->meta = NULL;
    if (st != IMGSIM_OK) goto done;
    s->max_norm_dev = 0;
    if (n_shards > 0) {
        st = open_shards(s, shards, n_shards, jpath, e);
        if (st == IMGSIM_OK) st = ims_meta_read(&s->m, &s->meta, jpath, s->n, s->dim, s->dtype, e);
        goto done;
    }
    int64_t rows = 0, cols = 0;
    st = ims_npy_read(&s->features, &s->dtype, &rows, &cols, fpath, e);
    if (st != IMGSIM_OK) goto done;
    if (rows < 0 || cols <= 0 || cols > INT_MAX) {
        st =
            ims_fail(e, IMGSIM_ERR_FORMAT, "%s: unusable shape [%" PRId64 ", %" PRId64 "]", fpath, rows, cols);
        goto done;
    }
    s->n = rows;
    s->dim = (int)cols;
    int64_t seen = 0;
    st = read_manifest(s, mpath, 0, s->n, "features.npy", &seen, e);
    if (st == IMGSIM_OK) st = check_seen(s, seen, mpath, "features.npy", e);
    if (st != IMGSIM_OK) goto done;
    st = scan_rows(s, fpath, 0, s->n, e);
    if (st != IMGSIM_OK) goto done;
    st = ims_meta_read(&s->m, &s->meta, jpath, s->n, s->dim, s->dtype, e);
    if (st == IMGSIM_OK) st = verify_files(s, fpath, mpath, jpath, e);

done:
    free(shards);
    free(fpath);
    free(mpath);
    free(jpath);
    if (st != IMGSIM_OK) {
        ims_store_free(s);
        return st;
    }
    *out = s;
    return IMGSIM_OK;
}

const char *ims_store_meta_str(const ims_store *s, const char *key) {
    if (!s || !s->meta) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double ims_store_meta_num(const ims_store *s, const char *key, double def) {
    if (!s || !s->meta) return def;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->meta, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

float *ims_store_features_f32(const ims_store *s) {
    uint64_t count;
    if (ims_mul_overflow_u64((uint64_t)s->n, (uint64_t)s->dim, &count) || count > SIZE_MAX / sizeof(float))
        return NULL;
    float *out = ims_malloc_array(count ? (size_t)count : 1, sizeof(float));
    if (out) ims_store_copy_f32(out, s);
    return out;
}

void ims_store_copy_f32(float *out, const ims_store *s) {
    uint64_t count = (uint64_t)s->n * (uint64_t)s->dim; /* the store holds that many already */
    if (s->dtype == IMGSIM_F32) {
        if (count) memcpy(out, s->features, (size_t)count * sizeof(float));
    } else {
        const uint16_t *h = s->features;
        for (uint64_t i = 0; i < count; i++)
            out[i] = ims_f16_to_f32(h[i]);
    }
}

int ims_store_exists(const char *path) {
    static const char *files[] = {"features.npy", "manifest.tsv", "meta.json"};
    if (!path || !ims_is_dir(path)) return 0;
    int found = 0;
    for (int i = 0; i < 3 && !found; i++) {
        char *p = ims_path_join(path, files[i]);
        found = p && ims_path_exists(p);
        free(p);
    }
    return found;
}

int ims_store_needs_normalizing(const ims_store *s) {
    return s->m.normalized == 0 || s->max_norm_dev > (s->dtype == IMGSIM_F16 ? 2e-3 : 1e-3);
}

float *ims_store_features_unit(const ims_store *s) {
    float *f = ims_store_features_f32(s);
    if (f) ims_store_unit_rows(f, s);
    return f;
}

void ims_store_unit_rows(float *f, const ims_store *s) {
    for (int64_t r = 0; r < s->n; r++) {
        float *x = f + r * (int64_t)s->dim;
        double ss = 0;
        for (int j = 0; j < s->dim; j++) ss += (double)x[j] * x[j];
        double inv = ss > 0 ? 1.0 / sqrt(ss) : 0;
        for (int j = 0; j < s->dim; j++) x[j] = (float)(x[j] * inv);
    }
}
