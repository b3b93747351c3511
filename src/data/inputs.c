/* inputs.c: STORE/inputs.tsv (inputs.h). */
#define _GNU_SOURCE
#include "data/inputs.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMS_INPUTS_MAX_BYTES ((uint64_t)8 << 30)
#define IMS_INPUTS_HEADER "path\tsize\tmtime_ns"
#define IMS_INPUTS_HEADER_HASHED IMS_INPUTS_HEADER "\tsha256"

void ims_inputs_stamp(ims_stamp *stamps, const ims_dataset *ds) {
    for (size_t i = 0; i < ds->n; i++) {
        struct stat st;
        stamps[i].size = -1;
        stamps[i].mtime_ns = 0;
        if (stat(ds->items[i].path, &st) == 0) {
            stamps[i].size = (int64_t)st.st_size;
            stamps[i].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        }
    }
}

typedef struct hash_job {
    char (*hex)[65];
    const ims_dataset *ds;
    const ims_stamp *stamps;
    atomic_size_t next;
} hash_job;

static void *hash_worker(void *arg) {
    hash_job *j = arg;
    for (size_t i; (i = atomic_fetch_add(&j->next, 1)) < j->ds->n;) {
        struct stat st;
        ims_err e;
        j->hex[i][0] = 0;
        if (j->stamps[i].size < 0 || ims_sha256_file_stat(j->ds->items[i].path, j->hex[i], &st, &e) != IMGSIM_OK) {
            j->hex[i][0] = 0;
            continue;
        }
        int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        if ((int64_t)st.st_size != j->stamps[i].size || mt != j->stamps[i].mtime_ns) j->hex[i][0] = 0;
    }
    return NULL;
}

void ims_inputs_hash(char (*hex)[65], const ims_dataset *ds, const ims_stamp *stamps, int threads) {
    hash_job j = {.hex = hex, .ds = ds, .stamps = stamps};
    atomic_init(&j.next, 0);
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    int n = threads > 0 ? threads : (int)(nc > 0 ? nc : 1);
    if (n > 64) n = 64;
    if ((size_t)n > ds->n) n = ds->n ? (int)ds->n : 1;
    pthread_t th[64];
    int started = 0;
    for (int t = 1; t < n; t++)
        if (pthread_create(&th[started], NULL, hash_worker, &j) == 0) started++;
    hash_worker(&j); /* the caller's thread too, so it completes when no thread starts */
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}

imgsim_status ims_inputs_write(FILE *f, const ims_dataset *ds, const ims_stamp *stamps, const char (*hex)[65],
                               ims_err *e) {
    fprintf(f, "%s\n", hex ? IMS_INPUTS_HEADER_HASHED : IMS_INPUTS_HEADER);
    for (size_t i = 0; i < ds->n; i++) {
        fprintf(f, "%s\t%lld\t%lld", ds->items[i].rel, (long long)stamps[i].size, (long long)stamps[i].mtime_ns);
        if (hex) fprintf(f, "\t%s", hex[i][0] ? hex[i] : "-");
        fputc('\n', f);
    }
    return ferror(f) ? ims_fail(e, IMGSIM_ERR_IO, "inputs.tsv: write failed: %s", strerror(errno)) : IMGSIM_OK;
}

void ims_inputs_free(ims_inputs *in) {
    free(in->text);
    free(in->rel);
    free(in->stamps);
    free(in->sha256);
    memset(in, 0, sizeof *in);
}

/* Sorting lines by path through an index (ctx: the paths). */
static int cmp_idx(const void *a, const void *b, void *ctx) {
    const char **rel = ctx;
    return strcmp(rel[*(const int64_t *)a], rel[*(const int64_t *)b]);
}

imgsim_status ims_inputs_read(ims_inputs *in, const char *path, ims_err *e) {
    memset(in, 0, sizeof *in);
    uint8_t *buf = NULL;
    size_t len = 0;
    imgsim_status st = ims_read_file(&buf, &len, path, IMS_INPUTS_MAX_BYTES, e);
    if (st) return st;
    in->text = ims_malloc(len + 1);
    if (!in->text) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(in->text, buf, len);
    in->text[len] = 0;
    free(buf);
    int64_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += in->text[i] == '\n';
    const char **rel = ims_calloc((size_t)lines + 1, sizeof(char *));
    const char **sha = ims_calloc((size_t)lines + 1, sizeof(char *));
    ims_stamp *stamps = ims_calloc((size_t)lines + 1, sizeof(ims_stamp));
    in->rel = ims_calloc((size_t)lines + 1, sizeof(char *));
    in->stamps = ims_calloc((size_t)lines + 1, sizeof(ims_stamp));
    int64_t *idx = ims_calloc((size_t)lines + 1, sizeof(int64_t));
    if (!rel || !sha || !stamps || !in->rel || !in->stamps || !idx) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    char *p = in->text, *line;
    size_t lineno = 0;
    int64_t n = 0;
    int hashed = 0;
    while ((line = ims_next_line(&p))) {
        lineno++;
        if (lineno == 1) {
            hashed = strcmp(line, IMS_INPUTS_HEADER_HASHED) == 0;
            if (!hashed && strcmp(line, IMS_INPUTS_HEADER) != 0) {
                st = ims_fail(e, IMGSIM_ERR_FORMAT,
                             "%s:1: expected the header \"path<TAB>size<TAB>mtime_ns\" (and \"<TAB>sha256\")", path);
                goto done;
            }
            if (hashed && !(in->sha256 = ims_calloc((size_t)lines + 1, sizeof(char *)))) {
                st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            continue;
        }
        if (!*line) continue;
        /* the numbers (and the hash) are the last columns: a path holds no tab */
        char *t3 = NULL;
        if (hashed && (t3 = strrchr(line, '\t'))) *t3 = 0;
        char *t2 = (!hashed || t3) ? strrchr(line, '\t') : NULL;
        char *t1 = t2 ? memrchr(line, '\t', (size_t)(t2 - line)) : NULL;
        char *end1, *end2;
        if (!t1) {
            st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s:%zu: expected %d tab-separated columns", path, lineno,
                         hashed ? 4 : 3);
            goto done;
        }
        *t1 = *t2 = 0;
        errno = 0;
        long long size = strtoll(t1 + 1, &end1, 10), mt = strtoll(t2 + 1, &end2, 10);
        if (errno || *end1 || *end2 || end1 == t1 + 1 || end2 == t2 + 1) {
            st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s:%zu: size and mtime_ns must be numbers", path, lineno);
            goto done;
        }
        if (hashed) {
            const char *h = t3 + 1;
            int ok = !strcmp(h, "-") || strlen(h) == 64;
            for (const char *c = h; ok && *c && strcmp(h, "-"); c++) ok = (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f');
            if (!ok) {
                st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s:%zu: sha256 must be 64 hex digits or \"-\"", path, lineno);
                goto done;
            }
            sha[n] = strcmp(h, "-") ? h : "";
        }
        rel[n] = line;
        stamps[n].size = size;
        stamps[n].mtime_ns = mt;
        idx[n] = n;
        n++;
    }
    if (lineno == 0) {
        st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s: empty (no header line)", path);
        goto done;
    }
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_idx, rel);
    for (int64_t i = 0; i < n; i++) {
        in->rel[i] = rel[idx[i]], in->stamps[i] = stamps[idx[i]];
        if (in->sha256) in->sha256[i] = sha[idx[i]];
    }
    in->n = n;
done:
    free(rel);
    free(sha);
    free(stamps);
    free(idx);
    if (st) ims_inputs_free(in);
    return st;
}

const ims_stamp *ims_inputs_find(const ims_inputs *in, const char *rel, const char **sha256) {
    if (sha256) *sha256 = NULL;
    int64_t lo = 0, hi = in->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(in->rel[mid], rel);
        if (c == 0) {
            if (sha256 && in->sha256) *sha256 = in->sha256[mid];
            return &in->stamps[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
