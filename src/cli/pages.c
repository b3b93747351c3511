/* pages.c: thumbnails, text buffers, escaping and the gallery view shared by the report and
 * serve commands (pages.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli/pages.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <turbojpeg.h>


/* ---- text buffer ----------------------------------------------------------------------- */

static int sb_reserve(sbuf *b, size_t extra) {
    if (b->oom) return -1;
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + extra + 1) nc *= 2;
    char *p = realloc(b->p, nc);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = nc;
    return 0;
}

void sb_put(sbuf *b, const void *data, size_t n) {
    if (sb_reserve(b, n)) return;
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
}

void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    if (sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void sb_html(sbuf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': sb_puts(b, "&amp;"); break;
        case '<': sb_puts(b, "&lt;"); break;
        case '>': sb_puts(b, "&gt;"); break;
        case '"': sb_puts(b, "&quot;"); break;
        case '\'': sb_puts(b, "&#39;"); break;
        default: sb_put(b, s, 1);
        }
    }
}

void sb_url(sbuf *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.' || *p == '~' || *p == '/') {
            sb_put(b, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sb_put(b, e, 3);
        }
    }
}

void sb_json_str(sbuf *b, const char *s) {
    sb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            sb_put(b, e, 2);
        } else if (*p < 0x20) {
            sb_printf(b, "\\u%04x", *p);
        } else {
            sb_put(b, p, 1);
        }
    }
    sb_puts(b, "\"");
}

void sb_free(sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- thumbnails ------------------------------------------------------------------------ */

int pages_jpeg_encode(unsigned char **jpg, size_t *len, const uint8_t *rgb, int w, int h, int quality, char *err,
                      size_t errlen) {
    *jpg = NULL;
    *len = 0;
    tjhandle tj = tjInitCompress();
    if (!tj) {
        snprintf(err, errlen, "TurboJPEG: cannot create a compressor: %s", tjGetErrorStr());
        return -1;
    }
    unsigned char *out = NULL;
    unsigned long n = 0;
    int r = tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &out, &n, TJSAMP_420, quality, 0);
    if (r != 0) {
        snprintf(err, errlen, "TurboJPEG: %s", tjGetErrorStr2(tj));
        tjFree(out);
        tjDestroy(tj);
        return -1;
    }
    tjDestroy(tj);
    /* hand back plain malloc'ed memory (tjAlloc'ed buffers must go to tjFree) */
    *jpg = malloc(n ? n : 1);
    if (!*jpg) {
        tjFree(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(*jpg, out, n);
    *len = n;
    tjFree(out);
    return 0;
}

int pages_thumbnail(unsigned char **jpg, size_t *len, const char *path, int max_side, const imgsim_preprocess_opts *pre,
                    char *err, size_t errlen) {
    *jpg = NULL;
    *len = 0;
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    imgsim_status st = imgsim_image_load_rgb(&rgb, &w, &h, path, max_side, pre);
    if (st != IMGSIM_OK) {
        snprintf(err, errlen, "%s", imgsim_last_error());
        return -1;
    }
    int r = pages_jpeg_encode(jpg, len, rgb, w, h, 85, err, errlen);
    imgsim_rgb_free(rgb);
    return r;
}

void pages_hash_name(char out[17], const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* ---- gallery view ---------------------------------------------------------------------- */

static char *dup_or_empty(const char *s) {
    char *d = strdup(s ? s : "");
    return d;
}

char *pages_store_root(const char *store_dir) {
    char *root = NULL;
    if (imgsim_store_dataset_root(&root, store_dir) != IMGSIM_OK) return NULL; /* paths as they are */
    return root;
}

char *pages_resolve(const char *root, const char *path) {
    if (!root || path[0] == '/') return strdup(path);
    size_t n = strlen(root) + strlen(path) + 2;
    char *p = malloc(n);
    if (!p) return NULL;
    snprintf(p, n, "%s/%s", root, path);
    struct stat st;
    if (stat(p, &st) != 0 && stat(path, &st) == 0) { /* the root was relative to another folder */
        free(p);
        return strdup(path);
    }
    return p;
}

int gview_open(gview *g, const char *dir, char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    imgsim_store *s = NULL;
    imgsim_store_info si;
    imgsim_store_meta sm;
    if (imgsim_store_open(&s, dir) != IMGSIM_OK || imgsim_store_get_info(s, &si) != IMGSIM_OK ||
        imgsim_store_get_meta(s, &sm) != IMGSIM_OK) {
        snprintf(err, errlen, "%s", imgsim_last_error());
        imgsim_store_close(s);
        return -1;
    }
    g->dir = strdup(dir);
    g->n = si.n;
    g->dim = si.dim;
    g->features = malloc((size_t)(si.n ? si.n : 1) * (size_t)si.dim * sizeof(float));
    g->paths = calloc((size_t)(si.n ? si.n : 1), sizeof *g->paths);
    g->labels = calloc((size_t)(si.n ? si.n : 1), sizeof *g->labels);
    int oom = !g->dir || !g->features || !g->paths || !g->labels;
    if (!oom && imgsim_store_features_f32(g->features, s, 1) != IMGSIM_OK) {
        snprintf(err, errlen, "%s", imgsim_last_error());
        imgsim_store_close(s);
        gview_free(g);
        return -1;
    }
    for (int64_t i = 0; !oom && i < si.n; i++) {
        g->paths[i] = strdup(si.paths[i]);
        g->labels[i] = strdup(si.labels[i]);
        oom = !g->paths[i] || !g->labels[i];
    }
    g->model_path = dup_or_empty(sm.model_path);
    g->layer = dup_or_empty(sm.layer);
    g->root = pages_store_root(dir);
    snprintf(g->model_sha256, sizeof g->model_sha256, "%s", sm.model_sha256);
    imgsim_preprocess_opts_init(&g->pre);
    if (sm.has_preprocessing) {
        uint64_t maxp = g->pre.max_pixels;
        g->pre = sm.pre;
        g->pre.max_pixels = maxp;
    }
    oom = oom || !g->model_path || !g->layer;
    imgsim_store_close(s);
    if (oom) {
        gview_free(g);
        snprintf(err, errlen, "%s: out of memory reading the store", dir);
        return -1;
    }
    return 0;
}

void gview_free(gview *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n; i++) {
        if (g->paths) free(g->paths[i]);
        if (g->labels) free(g->labels[i]);
    }
    free(g->paths);
    free(g->labels);
    free(g->features);
    free(g->model_path);
    free(g->layer);
    free(g->root);
    free(g->dir);
    memset(g, 0, sizeof *g);
}

int gview_failures(gfail **out, size_t *n, const char *dir) {
    *out = NULL;
    *n = 0;
    size_t dl = strlen(dir);
    char *path = malloc(dl + 32);
    if (!path) return -1;
    char *line = NULL;
    size_t cap = 0, nf = 0, capf = 0;
    gfail *fl = NULL;
    int rc = 0;
    /* manifest.tsv, or a sharded store's manifest-00000.tsv, manifest-00001.tsv, ... */
    snprintf(path, dl + 32, "%s/manifest.tsv", dir);
    FILE *f = fopen(path, "r");
    int shard = f ? -1 : 0;
    for (; rc == 0; shard++) {
        if (shard >= 0) {
            snprintf(path, dl + 32, "%s/manifest-%05d.tsv", dir, shard);
            f = fopen(path, "r");
        }
        if (!f) break;
        int first = 1;
        while (rc == 0 && getline(&line, &cap, f) > 0) {
            if (first) { /* header */
                first = 0;
                continue;
            }
            line[strcspn(line, "\r\n")] = 0;
            char *fields[5] = {0};
            char *p = line;
            for (int i = 0; i < 5 && p; i++) {
                fields[i] = p;
                p = strchr(p, '\t');
                if (p) *p++ = 0;
            }
            if (!fields[0] || strcmp(fields[0], "-1") != 0) continue;
            if (nf == capf) {
                capf = capf ? capf * 2 : 16;
                gfail *nfl = realloc(fl, capf * sizeof *fl);
                if (!nfl) {
                    rc = -1;
                    break;
                }
                fl = nfl;
            }
            fl[nf].path = strdup(fields[1] ? fields[1] : "");
            fl[nf].reason = strdup(fields[4] ? fields[4] : (fields[3] ? fields[3] : ""));
            nf++;
            if (!fl[nf - 1].path || !fl[nf - 1].reason) rc = -1;
        }
        fclose(f);
        f = NULL;
        if (shard < 0) break;
    }
    free(line);
    free(path);
    if (rc) {
        gview_failures_free(fl, nf);
        return -1;
    }
    *out = fl;
    *n = nf;
    return 0;
}

void gview_failures_free(gfail *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(f[i].path);
        free(f[i].reason);
    }
    free(f);
}
