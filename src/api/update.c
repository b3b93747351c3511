/*
 * update.c: `imgsim extract --update` (imgsim_extract_opts.update): a complete store brought up to
 * date with its folder. An input whose path, size and modification time are those inputs.tsv
 * recorded (with opt->hash: path, size and content hash, where one is recorded), and whose row
 * was ok, keeps its row; the others (new, changed, or failed last time)
 * are extracted into STORE/update/ (an ordinary sharded store of just them, so a killed update
 * resumes too); then the store is written again in the listing's order from both, removed inputs
 * left out, and STORE/update/ removed. The result has the rows, manifest and inputs.tsv a fresh
 * extraction of the folder has (features to the rounding of other batch compositions).
 * A store that cannot be updated (missing, incomplete, made with other settings, or without
 * inputs.tsv) is extracted in full, with a warning saying why.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/extract.h"
#include "data/inputs.h"
#include "data/meta.h"
#include "data/shards.h"
#include "data/store.h"
#include "data/store_write.h"

/* Why the store old cannot take rows extracted with eng and opt now (NULL: it can). */
static const char *settings_differ(const ims_store *old, const imgsim_engine *eng, const imgsim_extract_opts *opt) {
    static _Thread_local char why[128];
    const imgsim_store_meta *m = &old->m;
    imgsim_store_meta want;
    ims_meta_init(&want);
    want.has_preprocessing = 1;
    want.pre = opt->pre;
    want.interpolation = ims_meta_interpolation(opt->pre.interp);
    if (strcmp(m->model_sha256, eng->sha256) != 0) return "it was extracted with another model (sha256 differs)";
    if (strcmp(m->layer, eng->layer) != 0 || old->dim != eng->info.dim) return "it holds another layer";
    if (strcmp(m->precision, imgsim_precision_str(eng->info.precision)) != 0) return "another precision";
    if (strcmp(m->calib_sha256, eng->info.calib_sha256) != 0)
        return "another calibration file (calib_sha256 differs)";
    if (strcmp(m->device, eng->info.device == IMGSIM_DEVICE_CUDA ? "cuda" : "cpu") != 0) return "another device";
    if (old->dtype != opt->dtype) return "it holds another element type";
    if (!m->normalized != !eng->normalize) return "its rows are normalised otherwise";
    const char *f = ims_meta_preprocessing_differs(m, &want);
    if (f) return snprintf(why, sizeof why, "it was extracted with other preprocessing (%s differs)", f), why;
    return NULL;
}

/* ctx: the store's row paths; sorts row numbers by path. */
static int cmp_rows(const void *a, const void *b, void *ctx) {
    char **paths = ctx;
    return strcmp(paths[*(const int64_t *)a], paths[*(const int64_t *)b]);
}

/* The row of old whose path is rel (by[], rows sorted by path), or -1. */
static int64_t find_row(const ims_store *old, const int64_t *by, const char *rel) {
    int64_t lo = 0, hi = old->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(old->paths[by[mid]], rel);
        if (c == 0) return by[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* One manifest line of the store of the extracted inputs, cut into its fields. */
typedef struct sub_line {
    const char *row, *path, *status, *error;
} sub_line;

/* Reads the manifest of the extracted inputs' store: one line per view item, in order. */
static imgsim_status read_sub_manifest(char **text, sub_line *lines, const ims_dataset *view, const char *path,
                                       ims_err *e) {
    uint8_t *buf = NULL;
    size_t len = 0;
    imgsim_status st = ims_read_file(&buf, &len, path, 0, e);
    if (st) return st;
    char *t = ims_malloc(len + 1);
    if (!t) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(t, buf, len);
    t[len] = 0;
    free(buf);
    *text = t;
    char *p = t, *line;
    size_t n = 0, lineno = 0;
    while ((line = ims_next_line(&p))) {
        if (lineno++ == 0 || !*line) continue;
        char *f[5];
        int nf = 0;
        for (char *q = line; nf < 5; nf++) {
            f[nf] = q;
            char *tab = strchr(q, '\t');
            if (!tab) {
                nf++;
                break;
            }
            *tab = 0;
            q = tab + 1;
        }
        if (nf != 5 || n >= view->n || strcmp(f[1], view->items[n].rel) != 0)
            return ims_fail(e, IMGSIM_ERR_FORMAT, "%s:%zu: not the line of %s", path, lineno,
                           n < view->n ? view->items[n].rel : "(none)");
        lines[n++] = (sub_line){f[0], f[1], f[3], f[4]};
    }
    if (n != view->n)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: %zu lines for %zu inputs", path, n, view->n);
    return IMGSIM_OK;
}

/* Removes the store of the extracted inputs (its files, then the folder). */
static void remove_sub_store(const char *dir) {
    static const char *files[] = {"features.npy", "manifest.tsv", "inputs.tsv", "meta.json", IMS_DIR_LOCK_NAME};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *p = ims_path_join(dir, files[i]);
        if (p) unlink(p);
        free(p);
    }
    if (rmdir(dir) != 0) ims_log_debug("%s: not removed", dir);
}

/* The store's new files from old (the kept rows) and sub (the extracted inputs), in ds's order;
 * committed after meta.json is removed, meta.json written last. */
static imgsim_status write_updated(const char *store_dir, const imgsim_engine *eng, const ims_dataset *ds,
                                   const char *input_desc, const imgsim_extract_opts *opt, const ims_stamp *stamps,
                                   const char (*hex)[65], const ims_store *old, const int64_t *reuse,
                                   const ims_store *sub, const sub_line *lines, imgsim_extract_stats *s,
                                   double t_start, ims_err *e) {
    char *mp = ims_path_join(store_dir, "meta.json"), *ip = ims_path_join(store_dir, "inputs.tsv");
    ims_store_writer w;
    ims_atomic_file inp = {0};
    imgsim_status st = mp && ip ? IMGSIM_OK : ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    int batch = opt->batch_size > 0 && opt->batch_size <= eng->info.max_batch ? opt->batch_size : eng->info.max_batch;
    int64_t S = opt->shard_size > 0 ? opt->shard_size : IMS_SHARD_SIZE_DEFAULT; /* a fresh extraction's shards */
    S = (S + batch - 1) / batch * batch;
    /* from the removal of meta.json the store is incomplete until it is there again: the single
     * layout's files are committed at the end, the sharded layout's one by one as they are written */
    if (!st && opt->layout == IMGSIM_LAYOUT_SHARDED) remove(mp);
    if (!st) st = ims_store_writer_begin(&w, store_dir, opt->layout == IMGSIM_LAYOUT_SHARDED, opt->dtype,
                                         eng->info.dim, opt->durable, e);
    else memset(&w, 0, sizeof w);
    if (!st) st = ims_atomic_open(&inp, ip, e);
    if (!st) inp.durable = opt->durable;
    size_t rowb = (size_t)eng->info.dim * (opt->dtype == IMGSIM_F16 ? 2 : 4);
    int64_t j = 0;
    for (size_t g = 0; g < ds->n && !st; g++) {
        const ims_item *it = &ds->items[g];
        const void *src = NULL;
        if (g % (size_t)S == 0 && (st = ims_store_writer_next(&w, e))) break;
        if (reuse[g] >= 0) {
            src = (const char *)old->features + (size_t)reuse[g] * rowb;
        } else {
            const sub_line *l = &lines[j++];
            if (!strcmp(l->status, "ok")) src = (const char *)sub->features + (size_t)strtoll(l->row, NULL, 10) * rowb;
            else st = ims_store_writer_linef(&w, e, "-1\t%s\t%s\t%s\t%s", it->rel, it->label, l->status, l->error);
        }
        if (src && !st) {
            int64_t row = w.rows;
            st = ims_store_writer_rows(&w, src, 1, e);
            if (!st) st = ims_store_writer_linef(&w, e, "%lld\t%s\t%s\tok\t", (long long)row, it->rel, it->label);
            s->ok++;
        } else if (!src) {
            s->failed++;
        }
    }
    for (size_t i = 0; i < ds->n_skipped && !st; i++) { /* listed files that are not images */
        char *why = ims_strdup(ds->skipped[i].reason);
        for (char *c = why; c && *c; c++)
            if (*c == '\t' || *c == '\n' || *c == '\r') *c = ' ';
        st = ims_store_writer_linef(&w, e, "-1\t%s\t\tskipped\t%s", ds->skipped[i].rel, why ? why : "not an image");
        free(why);
    }
    if (!st) st = ims_inputs_write(inp.f, ds, stamps, hex, e);
    ims_store_files files = {0};
    if (!st) remove(mp);
    if (!st) st = ims_store_writer_commit(&w, &files, e);
    if (!st) st = ims_atomic_commit(&inp, e);
    char fpr[65];
    if (!st) st = ims_dataset_fingerprint(ds, fpr, e);
    if (!st) {
        s->seconds_total = ims_now() - t_start;
        s->images_per_s = s->seconds_total > 0 ? (double)s->ok / s->seconds_total : 0;
        st = ims_extract_write_meta(mp, eng, opt, batch, -1, input_desc, fpr, s, &files, e);
    }
    if (st && inp.f) ims_atomic_abort(&inp);
    ims_store_writer_end(&w);
    free(files.shards);
    free(mp), free(ip);
    return st;
}

imgsim_status ims_extract_update(imgsim_engine *eng, const ims_dataset *ds, const char *input_desc,
                                 const char *store_dir, const imgsim_extract_opts *opt, double list_seconds,
                                 imgsim_extract_stats *stats, ims_err *e) {
    double t_start = ims_now() - list_seconds;
    imgsim_extract_opts full = *opt;
    full.update = 0;
    ims_dir_lock *lock = NULL;
    imgsim_status st = ims_dir_lock_take(&lock, store_dir, e);
    if (st) return st;
    ims_stamp *stamps = ims_calloc(ds->n ? ds->n : 1, sizeof(ims_stamp));
    int64_t *reuse = ims_calloc(ds->n ? ds->n : 1, sizeof(int64_t));
    ims_dataset view = {.root = ds->root, .items = ims_calloc(ds->n ? ds->n : 1, sizeof(ims_item))};
    if (!stamps || !reuse || !view.items) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory for %zu inputs", ds->n);
        goto out;
    }
    ims_inputs_stamp(stamps, ds);
    ims_store *old = NULL, *sub = NULL;
    ims_inputs in = {0};
    int64_t *by = NULL;
    char *ipath = ims_path_join(store_dir, "inputs.tsv"), *sub_dir = ims_path_join(store_dir, "update");
    char *text = NULL;
    sub_line *lines = NULL;
    char(*hex)[65] = NULL;
    ims_err oe;
    const char *why = NULL;
    if (!ipath || !sub_dir) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (ims_store_open(&old, store_dir, &oe)) why = oe.msg;
    else if (!ims_path_exists(ipath)) why = "it has no inputs.tsv (made by an older imgsim)";
    else if (ims_inputs_read(&in, ipath, &oe)) why = oe.msg;
    else why = settings_differ(old, eng, opt);
    if (why) {
        ims_log_warn("%s: not updated (%s): extracting every image", store_dir, why);
        ims_dir_lock_release(lock);
        lock = NULL;
        st = ims_extract_dataset(eng, ds, input_desc, store_dir, &full, list_seconds, stats, e);
        goto done;
    }
    /* which inputs keep their row: same path, size and modification time, ok last time */
    by = ims_malloc_array(old->n ? (size_t)old->n : 1, sizeof(int64_t));
    if (!by) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t r = 0; r < old->n; r++) by[r] = r;
    qsort_r(by, (size_t)old->n, sizeof *by, cmp_rows, old->paths);
    /* with --hash, by content: hashed now, before the changed ones are extracted (a file rewritten
     * after this is recorded by its hash now, so the next update sees it) */
    if (opt->hash && !(hex = ims_calloc(ds->n ? ds->n : 1, sizeof *hex))) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory for %zu content hashes", ds->n);
        goto done;
    }
    if (hex) ims_inputs_hash(hex, ds, stamps, opt->workers);
    int64_t kept = 0, unhashed = 0;
    for (size_t g = 0; g < ds->n; g++) {
        const char *was_sha = NULL;
        const ims_stamp *was = ims_inputs_find(&in, ds->items[g].rel, &was_sha);
        int same = was && stamps[g].size >= 0 && was->size == stamps[g].size;
        if (same && hex && was_sha && *was_sha) {
            same = hex[g][0] && strcmp(hex[g], was_sha) == 0;
        } else {
            same = same && was->mtime_ns == stamps[g].mtime_ns;
            if (was && hex && (!was_sha || !*was_sha)) unhashed++;
        }
        reuse[g] = same ? find_row(old, by, ds->items[g].rel) : -1;
        if (reuse[g] >= 0) kept++;
        else view.items[view.n++] = ds->items[g];
    }
    if (unhashed)
        ims_log_warn("%s: %lld inputs have no content hash recorded (%s): compared by size and modification time",
                    store_dir, (long long)unhashed,
                    in.sha256 ? "unreadable or changing when it was made" : "the store was made without --hash");
    ims_log_info("%s: update: %lld of %zu images kept, %zu new or changed to extract, %lld rows dropped", store_dir,
                (long long)kept, ds->n, view.n, (long long)(old->n - kept));
    /* the new and changed inputs: a store of their own (sharded, so a killed update resumes) */
    imgsim_extract_stats sub_s = {0};
    imgsim_extract_opts sub_opt = full; /* (read back below as one features.npy and manifest.tsv) */
    sub_opt.hash = 0; /* hashed above */
    sub_opt.layout = IMGSIM_LAYOUT_SINGLE;
    if ((st = ims_extract_dataset(eng, &view, input_desc, sub_dir, &sub_opt, 0, &sub_s, e))) goto done;
    if ((st = ims_store_open(&sub, sub_dir, e))) goto done;
    char *sub_man = ims_path_join(sub_dir, "manifest.tsv");
    lines = ims_calloc(view.n ? view.n : 1, sizeof(sub_line));
    st = sub_man && lines ? read_sub_manifest(&text, lines, &view, sub_man, e)
                          : ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    free(sub_man);
    if (st) goto done;
    imgsim_extract_stats s = sub_s;
    s.ok = s.failed = 0;
    s.inputs = (int64_t)ds->n;
    s.skipped = (int64_t)ds->n_skipped;
    s.seconds_list = list_seconds;
    s.kept = kept;
    st = write_updated(store_dir, eng, ds, input_desc, &full, stamps, (const char(*)[65])hex, old, reuse, sub, lines,
                       &s, t_start, e);
    if (!st) {
        remove_sub_store(sub_dir);
        if (stats) *stats = s;
    }
done:
    ims_store_free(old);
    ims_store_free(sub);
    ims_inputs_free(&in);
    free(by);
    free(ipath);
    free(sub_dir);
    free(text);
    free(lines);
    free(hex);
out:
    free(stamps);
    free(reuse);
    free(view.items);
    ims_dir_lock_release(lock);
    return st;
}
