/*
 * store_write.c: a store's final files in the single or the sharded layout (store_write.h).
 */
#include "data/store_write.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char MANIFEST_HEADER[] = "row\tpath\tlabel\tstatus\terror\n";

void ims_store_shard_name(char *buf, size_t n, const char *base, int64_t k, const char *ext) {
    snprintf(buf, n, "%s-%05lld.%s", base, (long long)k, ext);
}

/* k of "BASE-K.EXT" (5 digits or more), -1 for any other name. */
static int64_t shard_of(const char *name, const char *base, const char *ext) {
    size_t bl = strlen(base);
    if (strncmp(name, base, bl) != 0 || name[bl] != '-') return -1;
    const char *d = name + bl + 1, *p = d;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p - d < 5 || *p != '.' || strcmp(p + 1, ext) != 0) return -1;
    return strtoll(d, NULL, 10);
}

void ims_store_remove_layout_files(const char *dir, int keep_single, int64_t keep_shards) {
    if (!keep_single) {
        static const char *single[] = {"features.npy", "manifest.tsv"};
        for (int i = 0; i < 2; i++) {
            char *p = ims_path_join(dir, single[i]);
            if (p) unlink(p);
            free(p);
        }
    }
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int64_t k = shard_of(de->d_name, "features", "npy");
        if (k < 0) k = shard_of(de->d_name, "manifest", "tsv");
        if (k < 0 || (keep_shards >= 0 && k < keep_shards)) continue;
        char *p = ims_path_join(dir, de->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
}

imgsim_status ims_store_writer_begin(ims_store_writer *w, const char *dir, int sharded, imgsim_dtype dtype, int dim,
                                     int durable, ims_err *e) {
    memset(w, 0, sizeof *w);
    w->k = -1;
    w->sharded = sharded != 0;
    w->dtype = dtype;
    w->dim = dim;
    w->durable = durable;
    if (!(w->dir = ims_strdup(dir))) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    return IMGSIM_OK;
}

/* Commits the current shard's two files and records them. */
static imgsim_status commit_current(ims_store_writer *w, ims_err *e) {
    uint64_t fck = w->adopted ? 0 : ims_ck64_final(&w->npy.ck);
    int64_t rows = w->adopted ? w->adopted_rows : w->npy.rows;
    char *fpath = ims_strdup(w->npy.af.final_path);
    imgsim_status st = !fpath ? ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory")
                       : w->adopted ? IMGSIM_OK : ims_npy_finish(&w->npy, e);
    if (!st) st = ims_atomic_commit(&w->man, e);
    struct stat fst;
    if (!st && stat(fpath, &fst) != 0) st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot stat: %s", fpath, strerror(errno));
    free(fpath);
    if (w->adopted) free(w->npy.af.final_path);
    int adopted = w->adopted;
    w->adopted = 0;
    memset(&w->npy, 0, sizeof w->npy);
    if (st) return st;
    ims_store_files *f = &w->files;
    char mck[17];
    ims_ck64_hex(ims_ck64_final(&w->man_ck), mck);
    if (!w->sharded) {
        f->features_bytes = (int64_t)fst.st_size;
        ims_ck64_hex(fck, f->features_checksum);
        f->manifest_bytes = (int64_t)w->man_bytes;
        memcpy(f->manifest_checksum, mck, sizeof mck);
        return IMGSIM_OK;
    }
    if (f->n_shards == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 16;
        ims_store_shard *s = realloc(f->shards, (size_t)cap * sizeof *s);
        if (!s) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        f->shards = s;
        w->cap = cap;
    }
    ims_store_shard *s = &f->shards[f->n_shards++];
    memset(s, 0, sizeof *s);
    s->rows = rows;
    s->first_row = w->first_row;
    s->features_bytes = (int64_t)fst.st_size;
    if (adopted) memcpy(s->features_checksum, w->adopted_ck, sizeof w->adopted_ck);
    else ims_ck64_hex(fck, s->features_checksum);
    s->manifest_bytes = (int64_t)w->man_bytes;
    memcpy(s->manifest_checksum, mck, sizeof mck);
    return IMGSIM_OK;
}

imgsim_status ims_store_writer_next(ims_store_writer *w, ims_err *e) {
    if (w->k >= 0 && !w->sharded) return IMGSIM_OK;
    imgsim_status st = w->k >= 0 ? commit_current(w, e) : IMGSIM_OK;
    if (st) return st;
    w->k++;
    char fname[64], mname[64];
    if (w->sharded) {
        ims_store_shard_name(fname, sizeof fname, "features", w->k, "npy");
        ims_store_shard_name(mname, sizeof mname, "manifest", w->k, "tsv");
    } else {
        snprintf(fname, sizeof fname, "features.npy");
        snprintf(mname, sizeof mname, "manifest.tsv");
    }
    char *fp = ims_path_join(w->dir, fname), *mp = ims_path_join(w->dir, mname);
    st = fp && mp ? ims_npy_begin(&w->npy, fp, w->dtype, w->dim, e) : ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    if (!st && (st = ims_atomic_open(&w->man, mp, e))) ims_npy_abort(&w->npy);
    free(fp);
    free(mp);
    if (st) {
        memset(&w->npy, 0, sizeof w->npy);
        memset(&w->man, 0, sizeof w->man);
        return st;
    }
    w->npy.af.durable = w->man.durable = w->durable;
    w->first_row = w->rows;
    w->man_bytes = 0;
    ims_ck64_init(&w->man_ck);
    return ims_store_writer_line(w, MANIFEST_HEADER, sizeof MANIFEST_HEADER - 2, e);
}

/* fsync of the file at path: 0, or -1 (errno set) */
static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int r = fsync(fd), er = errno;
    close(fd);
    errno = er;
    return r;
}

imgsim_status ims_store_writer_next_adopt(ims_store_writer *w, const char *src, int64_t rows, const char *ck_hex,
                                          ims_err *e) {
    if (!w->sharded) return ims_fail(e, IMGSIM_ERR_INTERNAL, "store writer: a shard's file in the single layout");
    imgsim_status st = w->k >= 0 ? commit_current(w, e) : IMGSIM_OK;
    if (st) return st;
    w->k++;
    char fname[64], mname[64];
    ims_store_shard_name(fname, sizeof fname, "features", w->k, "npy");
    ims_store_shard_name(mname, sizeof mname, "manifest", w->k, "tsv");
    char *fp = ims_path_join(w->dir, fname), *mp = ims_path_join(w->dir, mname);
    if (!fp || !mp) st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    else if (w->durable && fsync_path(src) != 0) /* (a part's writer fsynced it; this process vouches) */
        st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot fsync: %s", src, strerror(errno));
    else if (rename(src, fp) != 0)
        st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot rename to %s: %s", src, fp, strerror(errno));
    if (!st) st = ims_atomic_open(&w->man, mp, e);
    free(mp);
    if (st) {
        free(fp);
        memset(&w->man, 0, sizeof w->man);
        w->k = -3; /* (nothing of this shard's to abort: the renamed file is the shard's) */
        return st;
    }
    memset(&w->npy, 0, sizeof w->npy);
    w->npy.af.final_path = fp; /* (commit_current stats it) */
    w->adopted = 1;
    w->adopted_rows = rows;
    snprintf(w->adopted_ck, sizeof w->adopted_ck, "%s", ck_hex);
    w->man.durable = w->durable;
    w->rows += rows;
    w->first_row = w->rows - rows;
    w->man_bytes = 0;
    ims_ck64_init(&w->man_ck);
    return ims_store_writer_line(w, MANIFEST_HEADER, sizeof MANIFEST_HEADER - 2, e);
}

imgsim_status ims_store_writer_rows(ims_store_writer *w, const void *rows, int64_t n, ims_err *e) {
    if (w->k < 0) return ims_fail(e, IMGSIM_ERR_INTERNAL, "store writer: rows before a shard");
    imgsim_status st = ims_npy_append_raw(&w->npy, rows, n, e);
    if (!st) w->rows += n;
    return st;
}

imgsim_status ims_store_writer_line(ims_store_writer *w, const char *line, size_t len, ims_err *e) {
    if (w->k == -1) { /* lines and no rows yet (a store of no images): the first shard */
        imgsim_status st = ims_store_writer_next(w, e);
        if (st) return st;
    }
    if (w->k < 0) return ims_fail(e, IMGSIM_ERR_INTERNAL, "store writer: a line before a shard");
    if (fwrite(line, 1, len, w->man.f) != len || fputc('\n', w->man.f) == EOF)
        return ims_fail(e, IMGSIM_ERR_IO, "%s: write failed: %s", w->man.final_path, strerror(errno));
    ims_ck64_update(&w->man_ck, line, len);
    ims_ck64_update(&w->man_ck, "\n", 1);
    w->man_bytes += len + 1;
    return IMGSIM_OK;
}

imgsim_status ims_store_writer_linef(ims_store_writer *w, ims_err *e, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return ims_fail(e, IMGSIM_ERR_INTERNAL, "store writer: bad line");
    if ((size_t)n < sizeof small) return ims_store_writer_line(w, small, (size_t)n, e);
    char *big = ims_malloc((size_t)n + 1);
    if (!big) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    imgsim_status st = ims_store_writer_line(w, big, (size_t)n, e);
    free(big);
    return st;
}

imgsim_status ims_store_writer_commit(ims_store_writer *w, ims_store_files *files, ims_err *e) {
    imgsim_status st = w->k < 0 ? ims_store_writer_next(w, e) : IMGSIM_OK;
    if (!st) st = commit_current(w, e);
    if (st) return st;
    w->k = -2; /* committed */
    ims_store_remove_layout_files(w->dir, !w->sharded, w->sharded ? w->files.n_shards : 0);
    *files = w->files; /* (the shards now the caller's) */
    memset(&w->files, 0, sizeof w->files);
    return IMGSIM_OK;
}

void ims_store_writer_end(ims_store_writer *w) {
    if (w->k >= 0 && w->adopted) { /* (the renamed features stay: the shard's, found there again) */
        free(w->npy.af.final_path);
        if (w->man.f) ims_atomic_abort(&w->man);
    } else if (w->k >= 0) {
        ims_npy_abort(&w->npy);
        if (w->man.f) ims_atomic_abort(&w->man);
    }
    free(w->files.shards);
    free(w->dir);
    memset(w, 0, sizeof *w);
}
