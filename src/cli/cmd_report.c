/*
 * cmd_report.c: HTML reports of run jobs, search results and dedup pairs (report.h), and
 * `imgsim report JOB_DIR|RESULTS.tsv|PAIRS.json [--out=DIR]` to make one afterwards.
 *
 * Page 1 (report.html) holds the summary (counts, accuracies, failures with their reasons, the
 * per-class table, the confusion matrix of query label x top-1 match label as an SVG heat map,
 * the stage timings as an SVG bar chart) and the first page of query rows, misses first; further
 * rows go to report-2.html, report-3.html, ... so a 100,000-query job makes many small pages, not
 * one huge one. Everything is static HTML with inline CSS and SVG: no script, no network.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cli/pages.h"
#include "cli/report.h"

#define CM_MAX_CLASSES 100 /* the confusion matrix shows at most this many classes */

void report_opts_init(report_opts *o) {
    memset(o, 0, sizeof *o);
    o->page_size = 50;
    o->thumb_size = 128;
    o->threshold = NAN;
}

/* ---- small file helpers ------------------------------------------------------------------- */

static char *read_text(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    sbuf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) sb_put(&b, tmp, n);
    fclose(f);
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    if (!b.p) sb_puts(&b, "");
    if (len_out) *len_out = b.n;
    return b.p;
}

static cJSON *read_json(const char *path) {
    char *t = read_text(path, NULL);
    if (!t) return NULL;
    cJSON *j = cJSON_Parse(t);
    free(t);
    return j;
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Writes b to dir/name atomically (temporary name + rename). */
static int write_page(const char *dir, const char *name, const sbuf *b) {
    char *p = join(dir, name), *tmp = p ? join(dir, ".report.tmp") : NULL;
    int rc = 1;
    if (!p || !tmp || b->oom) {
        fprintf(stderr, "imgsim report: out of memory writing %s\n", name);
        goto out;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(b->p, 1, b->n, f) != b->n || fclose(f) != 0) {
        fprintf(stderr, "imgsim report: cannot write %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, p) != 0) {
        fprintf(stderr, "imgsim report: cannot rename %s to %s: %s\n", tmp, p, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(p);
    free(tmp);
    return rc;
}

static double jnum(const cJSON *o, const char *k, double def) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- thumbnails --------------------------------------------------------------------------- */

typedef struct thumb {
    const char *path; /* the key, borrowed */
    const char *file; /* the file to open, borrowed */
    char name[40];    /* thumbs/<hash>.jpg */
    int w, h, ok;
    char err[200];
} thumb;

typedef struct thumbset {
    thumb *t;
    size_t n, cap;
    const char *dir; /* thumbs folder */
    int size;
    size_t next;
    pthread_mutex_t mu;
} thumbset;

static int cmp_thumb(const void *a, const void *b) { return strcmp(((const thumb *)a)->path, ((const thumb *)b)->path); }

static void ts_add(thumbset *s, const char *path, const char *file) {
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        thumb *t = realloc(s->t, nc * sizeof *t);
        if (!t) return;
        s->t = t;
        s->cap = nc;
    }
    memset(&s->t[s->n], 0, sizeof s->t[0]);
    s->t[s->n].file = file ? file : path;
    s->t[s->n++].path = path;
}

/* Sorts and removes duplicates. */
static void ts_seal(thumbset *s) {
    if (!s->n) return;
    qsort(s->t, s->n, sizeof *s->t, cmp_thumb);
    size_t w = 1;
    for (size_t i = 1; i < s->n; i++)
        if (strcmp(s->t[i].path, s->t[w - 1].path) != 0) s->t[w++] = s->t[i];
    s->n = w;
}

static const thumb *ts_find(const thumbset *s, const char *path) {
    thumb key;
    key.path = path;
    return s->n ? bsearch(&key, s->t, s->n, sizeof *s->t, cmp_thumb) : NULL;
}

/* Reads the size of an existing thumbnail JPEG (SOF marker). */
static int jpeg_size(const char *file, int *w, int *h) {
    size_t n = 0;
    unsigned char *b = (unsigned char *)read_text(file, &n);
    if (!b) return -1;
    int rc = -1;
    for (size_t i = 2; i + 9 < n;) {
        if (b[i] != 0xFF) break;
        int m = b[i + 1];
        size_t len = ((size_t)b[i + 2] << 8) | b[i + 3];
        if (m >= 0xC0 && m <= 0xC2) {
            *h = (b[i + 5] << 8) | b[i + 6];
            *w = (b[i + 7] << 8) | b[i + 8];
            rc = 0;
            break;
        }
        i += 2 + len;
    }
    free(b);
    return rc;
}

static void *thumb_worker(void *arg) {
    thumbset *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        size_t i = s->next++;
        pthread_mutex_unlock(&s->mu);
        if (i >= s->n) return NULL;
        thumb *t = &s->t[i];
        /* named by path, size and modification time: an unchanged image keeps its thumbnail */
        struct stat st;
        char key[4200], hex[17];
        if (stat(t->file, &st) != 0) {
            snprintf(t->err, sizeof t->err, "%s: %s", t->file, strerror(errno));
            continue;
        }
        snprintf(key, sizeof key, "%s|%lld|%lld|%d", t->file, (long long)st.st_size, (long long)st.st_mtime, s->size);
        pages_hash_name(hex, key);
        snprintf(t->name, sizeof t->name, "thumbs/%s.jpg", hex);
        char *file = join(s->dir, t->name + 7);
        if (!file) continue;
        if (file_exists(file) && jpeg_size(file, &t->w, &t->h) == 0) {
            t->ok = 1;
            free(file);
            continue;
        }
        unsigned char *jpg = NULL;
        size_t len = 0;
        uint8_t *rgb = NULL;
        if (imgsim_image_load_rgb(&rgb, &t->w, &t->h, t->file, s->size, NULL) != IMGSIM_OK) {
            snprintf(t->err, sizeof t->err, "%s", imgsim_last_error());
        } else if (pages_jpeg_encode(&jpg, &len, rgb, t->w, t->h, 82, t->err, sizeof t->err) == 0) {
            char *tmp = malloc(strlen(file) + 8);
            if (tmp) {
                snprintf(tmp, strlen(file) + 8, "%s.tmp", file);
                FILE *f = fopen(tmp, "wb");
                if (f && fwrite(jpg, 1, len, f) == len && fclose(f) == 0 && rename(tmp, file) == 0) t->ok = 1;
                else snprintf(t->err, sizeof t->err, "cannot write %s: %s", file, strerror(errno));
                free(tmp);
            }
        }
        imgsim_rgb_free(rgb);
        free(jpg);
        free(file);
    }
}

/* Makes every thumbnail of s under out_dir/thumbs with `workers` threads. */
static int ts_make(thumbset *s, const char *out_dir, int workers) {
    char *dir = join(out_dir, "thumbs");
    if (!dir) return 1;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "imgsim report: cannot create %s: %s\n", dir, strerror(errno));
        free(dir);
        return 1;
    }
    s->dir = dir;
    s->next = 0;
    pthread_mutex_init(&s->mu, NULL);
    int nt = workers > 0 ? workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nt < 1) nt = 1;
    if ((size_t)nt > s->n) nt = s->n ? (int)s->n : 1;
    pthread_t th[64];
    if (nt > 64) nt = 64;
    int started = 0;
    for (int i = 1; i < nt; i++)
        if (pthread_create(&th[started], NULL, thumb_worker, s) == 0) started++;
    thumb_worker(s);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&s->mu);
    free(dir);
    s->dir = NULL;
    return 0;
}

static void ts_free(thumbset *s) {
    free(s->t);
    memset(s, 0, sizeof *s);
}

/* An <img> of the thumbnail keyed by key (titled with the path shown), or a placeholder naming
 * why there is none. */
static void put_thumb(sbuf *b, const thumbset *s, const char *key, const char *path, const char *cls) {
    const thumb *t = ts_find(s, key);
    if (t && t->ok) {
        sb_printf(b, "<img class=\"thumb %s\" src=\"%s\" width=\"%d\" height=\"%d\" loading=\"lazy\" alt=\"\" title=\"", cls,
                  t->name, t->w, t->h);
        sb_html(b, path);
        sb_puts(b, "\">");
    } else {
        sb_printf(b, "<span class=\"thumb none %s\" title=\"", cls);
        sb_html(b, t && t->err[0] ? t->err : path);
        sb_puts(b, "\">no preview</span>");
    }
}

/* ---- page frame --------------------------------------------------------------------------- */

static void page_open(sbuf *b, const char *title) {
    sb_puts(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
               "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self'; "
               "style-src 'unsafe-inline'\">\n<title>");
    sb_html(b, title);
    sb_puts(b, "</title>\n<style>\n");
    sb_put(b, cli_asset_report_css, cli_asset_report_css_len);
    sb_puts(b, "</style></head>\n<body>\n<header><h1>");
    sb_html(b, title);
    char when[64];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tmv);
    sb_printf(b, "</h1><span>imgsim %s &middot; %s</span></header>\n<main>\n", imgsim_version(), when);
}

static void page_close(sbuf *b) { sb_puts(b, "</main>\n</body></html>\n"); }

static void page_name(char *out, size_t n, int page) {
    if (page <= 1) snprintf(out, n, "report.html");
    else snprintf(out, n, "report-%d.html", page);
}

/* "pages: 1 2 [3] 4 ... next" */
static void put_nav(sbuf *b, int page, int pages, const char *what) {
    if (pages <= 1) return;
    sb_printf(b, "<nav class=\"pages\" aria-label=\"%s pages\">%s: ", what, what);
    char nm[64];
    if (page > 1) {
        page_name(nm, sizeof nm, page - 1);
        sb_printf(b, "<a href=\"%s\" rel=\"prev\">&larr; previous</a> ", nm);
    }
    for (int p = 1; p <= pages; p++) {
        if (pages > 15 && p > 3 && p < pages - 2 && abs(p - page) > 2) {
            if (p == 4 || p == pages - 3) sb_puts(b, "&hellip; ");
            continue;
        }
        page_name(nm, sizeof nm, p);
        if (p == page) sb_printf(b, "<b>%d</b> ", p);
        else sb_printf(b, "<a href=\"%s\">%d</a> ", nm, p);
    }
    if (page < pages) {
        page_name(nm, sizeof nm, page + 1);
        sb_printf(b, "<a href=\"%s\" rel=\"next\">next &rarr;</a>", nm);
    }
    sb_puts(b, "</nav>\n");
}

/* ---- search results ----------------------------------------------------------------------- */

typedef struct rmatch {
    char *path, *label;
    char *file; /* path resolved against the gallery's root */
    double score;
} rmatch;

typedef struct rquery {
    char *path, *label;
    char *file; /* path resolved against the query store's root */
    rmatch *m;
    int nm;
    int state; /* 0 unlabelled, 1 top-1 correct, 2 top-1 wrong (a miss) */
    size_t order;
} rquery;

typedef struct results {
    char *text; /* the file, tokenised in place */
    rquery *q;
    size_t nq;
    rmatch *m;
    size_t nm;
} results;

static void results_free(results *r) {
    for (size_t i = 0; r->q && i < r->nq; i++) free(r->q[i].file);
    for (size_t i = 0; r->m && i < r->nm; i++) free(r->m[i].file);
    free(r->text);
    free(r->q);
    free(r->m);
    memset(r, 0, sizeof *r);
}

/* Parses results.tsv (query_path, query_label, rank, match_path, match_label, score); the files
 * are found through the roots of the query and gallery stores (NULL: paths as they are). */
static int results_read(results *r, const char *path, const char *q_root, const char *g_root) {
    memset(r, 0, sizeof *r);
    r->text = read_text(path, NULL);
    if (!r->text) {
        fprintf(stderr, "imgsim report: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t lines = 0;
    for (char *p = r->text; *p; p++) lines += *p == '\n';
    r->m = calloc(lines + 1, sizeof *r->m);
    r->q = calloc(lines + 1, sizeof *r->q);
    if (!r->m || !r->q) {
        fprintf(stderr, "imgsim report: out of memory reading %s\n", path);
        return 1;
    }
    char *line = r->text, *next;
    int ln = 0;
    for (; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t L = strlen(line);
        if (L && line[L - 1] == '\r') line[L - 1] = 0;
        if (ln++ == 0) {
            if (strncmp(line, "query_path\t", 11) != 0) {
                fprintf(stderr, "imgsim report: %s: not imgsim search results (header '%.60s')\n", path, line);
                return 1;
            }
            continue;
        }
        if (!*line) continue;
        char *f[6];
        char *p = line;
        int nf = 0;
        for (; nf < 6 && p; nf++) {
            f[nf] = p;
            p = strchr(p, '\t');
            if (p) *p++ = 0;
        }
        if (nf != 6) {
            fprintf(stderr, "imgsim report: %s line %d: expected 6 tab-separated fields\n", path, ln);
            return 1;
        }
        if (!r->nq || strcmp(r->q[r->nq - 1].path, f[0]) != 0) {
            rquery *q = &r->q[r->nq++];
            q->path = f[0];
            q->label = f[1];
            q->file = pages_resolve(q_root, f[0]);
            q->m = &r->m[r->nm];
            q->order = r->nq - 1;
        }
        rquery *q = &r->q[r->nq - 1];
        rmatch *m = &r->m[r->nm++];
        m->path = f[3];
        m->label = f[4];
        m->file = pages_resolve(g_root, f[3]);
        m->score = strtod(f[5], NULL);
        q->nm++;
    }
    for (size_t i = 0; i < r->nq; i++) {
        rquery *q = &r->q[i];
        if (!*q->label || !q->nm || !*q->m[0].label) q->state = 0;
        else q->state = strcmp(q->m[0].label, q->label) ? 2 : 1;
    }
    return 0;
}

static int cmp_misses_first(const void *a, const void *b) {
    const rquery *x = a, *y = b;
    int mx = x->state == 2, my = y->state == 2;
    if (mx != my) return my - mx;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Confusion matrix (query label x top-1 match label) as an SVG heat map, rows normalised. */
static void put_confusion(sbuf *b, const results *r) {
    size_t nl = 0;
    const char **labels = malloc((2 * r->nq + 1) * sizeof *labels);
    if (!labels) return;
    for (size_t i = 0; i < r->nq; i++) {
        if (!r->q[i].state) continue;
        labels[nl++] = r->q[i].label;
        labels[nl++] = r->q[i].m[0].label;
    }
    if (!nl) {
        free(labels);
        return;
    }
    qsort(labels, nl, sizeof *labels, cmp_str);
    size_t u = 1;
    for (size_t i = 1; i < nl; i++)
        if (strcmp(labels[i], labels[u - 1]) != 0) labels[u++] = labels[i];
    size_t L = u;
    int cut = 0;
    if (L > CM_MAX_CLASSES) {
        L = CM_MAX_CLASSES;
        cut = 1;
    }
    uint32_t *cm = calloc(L * L, sizeof *cm), *rows = calloc(L, sizeof *rows);
    if (!cm || !rows) {
        free(cm), free(rows), free(labels);
        return;
    }
    for (size_t i = 0; i < r->nq; i++) {
        if (!r->q[i].state) continue;
        const char **t = bsearch(&r->q[i].label, labels, L, sizeof *labels, cmp_str);
        const char **p = bsearch(&r->q[i].m[0].label, labels, L, sizeof *labels, cmp_str);
        if (!t || !p) continue;
        cm[(size_t)(t - labels) * L + (size_t)(p - labels)]++;
        rows[t - labels]++;
    }
    int cell = L <= 12 ? 34 : L <= 30 ? 20 : 9, lab = 0;
    for (size_t i = 0; i < L; i++) {
        int n = (int)strlen(labels[i]);
        if (n > lab) lab = n;
    }
    if (lab > 24) lab = 24;
    int left = lab * 7 + 10, top = lab * 7 + 10, W = left + (int)L * cell + 10, H = top + (int)L * cell + 10;
    sb_printf(b, "<h2 id=\"confusion\">Confusion matrix</h2>\n<p class=\"note\">Rows: the query's label; columns: "
                 "the label of its top-1 match. Colour: share of the row's queries.%s</p>\n",
              cut ? " Only the first 100 classes (by name) are drawn." : "");
    sb_printf(b, "<svg class=\"confusion\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
                 "aria-label=\"confusion matrix\" font-size=\"11\">\n",
              W, H, W, H);
    for (size_t i = 0; i < L; i++) {
        sb_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" dominant-baseline=\"middle\">", left - 4,
                  top + (int)i * cell + cell / 2);
        sb_html(b, labels[i]);
        sb_printf(b, "</text><text transform=\"translate(%d,%d) rotate(-60)\">", left + (int)i * cell + cell / 2,
                  top - 4);
        sb_html(b, labels[i]);
        sb_puts(b, "</text>\n");
    }
    for (size_t i = 0; i < L; i++) {
        for (size_t j = 0; j < L; j++) {
            uint32_t v = cm[i * L + j];
            double f = rows[i] ? (double)v / rows[i] : 0;
            int R = (int)(255 - f * (i == j ? 200 : 40)), G = (int)(255 - f * (i == j ? 120 : 200)),
                B = (int)(255 - f * (i == j ? 60 : 200));
            if (!v) R = 243, G = 245, B = 247; /* an empty cell stays visible */
            sb_printf(b, "<rect class=\"cm-cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\">",
                      left + (int)j * cell, top + (int)i * cell, cell - 1, cell - 1, R, G, B);
            sb_puts(b, "<title>");
            sb_html(b, labels[i]);
            sb_puts(b, " &rarr; ");
            sb_html(b, labels[j]);
            sb_printf(b, ": %u</title></rect>", v);
            if (cell >= 20 && v)
                sb_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" dominant-baseline=\"middle\">%u</text>",
                          left + (int)j * cell + cell / 2, top + (int)i * cell + cell / 2, v);
        }
        sb_puts(b, "\n");
    }
    sb_puts(b, "</svg>\n");
    free(cm), free(rows), free(labels);
}

/* The stage timings (summary.json "stages") as a horizontal SVG bar chart. */
static void put_stages(sbuf *b, const cJSON *stages) {
    int n = cJSON_GetArraySize(stages);
    if (n <= 0) return;
    double mx = 0;
    const cJSON *st;
    cJSON_ArrayForEach(st, stages) {
        double s = jnum(st, "seconds", 0);
        if (s > mx) mx = s;
    }
    int left = 140, width = 420, row = 24, H = n * row + 10;
    sb_puts(b, "<h2 id=\"timings\">Stage timings</h2>\n");
    sb_printf(b, "<svg class=\"stages\" width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"stage timings\" "
                 "font-size=\"12\">\n",
              left + width + 150, H);
    int i = 0;
    cJSON_ArrayForEach(st, stages) {
        double s = jnum(st, "seconds", 0), ips = jnum(st, "images_per_s", 0);
        int reused = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "reused"));
        int w = mx > 0 ? (int)(s / mx * width + 0.5) : 0;
        int y = 5 + i * row;
        sb_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" dominant-baseline=\"middle\">", left - 6,
                  y + row / 2 - 2);
        sb_html(b, st->string ? st->string : "?");
        sb_printf(b, "</text><rect class=\"bar\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>", left, y, w > 0 ? w : 1,
                  row - 6);
        sb_printf(b, "<text x=\"%d\" y=\"%d\" dominant-baseline=\"middle\">%s%.3f s", left + w + 6, y + row / 2 - 2,
                  reused ? "reused, " : "", s);
        if (ips > 0 && !reused) sb_printf(b, " (%.0f img/s)", ips);
        sb_puts(b, "</text>\n");
        i++;
    }
    sb_puts(b, "</svg>\n");
}

static void put_failures(sbuf *b, const char *what, const char *store_dir) {
    if (!store_dir) return;
    gfail *f = NULL;
    size_t n = 0;
    if (gview_failures(&f, &n, store_dir) || !n) {
        gview_failures_free(f, n);
        return;
    }
    sb_printf(b, "<h3>%s: %zu failed</h3>\n<table class=\"failures\"><tr><th>file</th><th>reason</th></tr>\n", what, n);
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<tr><td>");
        sb_html(b, f[i].path);
        sb_puts(b, "</td><td>");
        sb_html(b, f[i].reason);
        sb_puts(b, "</td></tr>\n");
    }
    sb_puts(b, "</table>\n");
    gview_failures_free(f, n);
}

static void put_accuracy_cards(sbuf *b, const cJSON *acc, int k) {
    if (!acc) {
        sb_puts(b, "<p class=\"note\">No labels on both sides: accuracies not computed.</p>\n");
        return;
    }
    sb_printf(b, "<div class=\"cards\"><div class=\"card\"><b>%.2f%%</b>top-1</div><div class=\"card\"><b>%.2f%%</b>top-%d</div>"
                 "<div class=\"card\"><b>%.2f%%</b>%d-NN vote</div></div>\n",
              100 * jnum(acc, "top1", 0), 100 * jnum(acc, "topk", 0), k, 100 * jnum(acc, "knn_vote", 0), k);
}

static void put_per_class(sbuf *b, const cJSON *pc, int k) {
    if (!cJSON_GetArraySize(pc)) return;
    sb_printf(b, "<h2 id=\"classes\">Per class</h2>\n<table class=\"classes\"><tr><th>class</th><th>queries</th>"
                 "<th>top-1</th><th>top-%d</th><th>k-NN</th></tr>\n",
              k);
    const cJSON *c;
    cJSON_ArrayForEach(c, pc) {
        double t1 = jnum(c, "top1", 0);
        sb_puts(b, "<tr><td>");
        sb_html(b, c->string ? c->string : "");
        sb_printf(b, "</td><td>%d</td><td class=\"%s\">%.3f</td><td>%.3f</td><td>%.3f</td></tr>\n",
                  (int)jnum(c, "queries", 0), t1 < 0.5 ? "low" : "", t1, jnum(c, "topk", 0), jnum(c, "knn_vote", 0));
    }
    sb_puts(b, "</table>\n");
}

/* Query rows [from, to) of r (already in display order). */
static void put_query_rows(sbuf *b, const results *r, size_t from, size_t to, const thumbset *ts) {
    sb_puts(b, "<table class=\"queries\"><tr><th>query</th><th>matches (score, label)</th></tr>\n");
    for (size_t i = from; i < to; i++) {
        const rquery *q = &r->q[i];
        sb_printf(b, "<tr class=\"qrow %s\"><td class=\"q\">", q->state == 2 ? "miss" : q->state == 1 ? "hit" : "");
        put_thumb(b, ts, q->file ? q->file : "", q->path, "");
        sb_puts(b, "<div class=\"lab\">");
        sb_html(b, *q->label ? q->label : "(no label)");
        sb_puts(b, "</div><div class=\"path\">");
        sb_html(b, q->path);
        sb_puts(b, "</div></td><td class=\"ms\">");
        for (int m = 0; m < q->nm; m++) {
            const rmatch *x = &q->m[m];
            const char *cls = !*q->label || !*x->label ? "" : strcmp(x->label, q->label) ? "wrong" : "right";
            sb_printf(b, "<figure class=\"match %s\">", cls);
            put_thumb(b, ts, x->file ? x->file : "", x->path, "");
            sb_printf(b, "<figcaption><b>%.4f</b> %s", x->score, *cls == 'w' ? "&#10007;" : *cls == 'r' ? "&#10003;" : "");
            sb_html(b, x->label);
            sb_puts(b, "</figcaption></figure>");
        }
        sb_puts(b, "</td></tr>\n");
    }
    sb_puts(b, "</table>\n");
}

/* Shared by run and search: everything but the header facts. */
static int write_results_report(const char *title, const sbuf *facts, const results *r, const cJSON *acc,
                                const cJSON *per_class, const cJSON *stages, int k, const char *gallery_dir,
                                const char *query_dir, const report_opts *o) {
    qsort(r->q, r->nq, sizeof *r->q, cmp_misses_first);
    size_t ps = (size_t)(o->page_size > 0 ? o->page_size : 50);
    int pages = r->nq ? (int)((r->nq + ps - 1) / ps) : 1;
    thumbset ts;
    memset(&ts, 0, sizeof ts);
    ts.size = o->thumb_size > 0 ? o->thumb_size : 128;
    for (size_t i = 0; i < r->nq; i++) {
        if (r->q[i].file) ts_add(&ts, r->q[i].file, NULL);
        for (int m = 0; m < r->q[i].nm; m++)
            if (r->q[i].m[m].file) ts_add(&ts, r->q[i].m[m].file, NULL);
    }
    ts_seal(&ts);
    double t0 = (double)clock();
    if (ts_make(&ts, o->out_dir, o->workers)) {
        ts_free(&ts);
        return 1;
    }
    (void)t0;
    size_t misses = 0, labelled = 0;
    for (size_t i = 0; i < r->nq; i++) misses += r->q[i].state == 2, labelled += r->q[i].state != 0;
    int rc = 0;
    for (int p = 1; p <= pages && !rc; p++) {
        sbuf b = {0};
        char nm[64];
        page_open(&b, title);
        if (p == 1) {
            sb_put(&b, facts->p ? facts->p : "", facts->n);
            put_accuracy_cards(&b, acc, k);
            put_stages(&b, stages);
            if (gallery_dir || query_dir) {
                size_t before = b.n;
                sb_puts(&b, "<h2 id=\"failures\">Failures</h2>\n");
                size_t mark = b.n;
                put_failures(&b, "gallery", gallery_dir);
                put_failures(&b, "queries", query_dir);
                if (b.n == mark) { /* none: say so */
                    b.n = before;
                    b.p[b.n] = 0;
                    sb_puts(&b, "<h2 id=\"failures\">Failures</h2>\n<p class=\"note\">No image failed.</p>\n");
                }
            }
            put_per_class(&b, per_class, k);
            put_confusion(&b, r);
        } else {
            sb_puts(&b, "<p><a href=\"report.html\">&larr; summary</a></p>\n");
        }
        sb_printf(&b, "<h2 id=\"queries\">Queries %zu&ndash;%zu of %zu</h2>\n", (size_t)(p - 1) * ps + (r->nq ? 1 : 0),
                  (size_t)p * ps < r->nq ? (size_t)p * ps : r->nq, r->nq);
        if (labelled)
            sb_printf(&b, "<p class=\"note\">Misses first: %zu of %zu labelled queries have a top-1 match of another "
                          "label (red row); a green mark is a match of the query's label.</p>\n",
                      misses, labelled);
        put_nav(&b, p, pages, "query pages");
        size_t from = (size_t)(p - 1) * ps, to = from + ps < r->nq ? from + ps : r->nq;
        put_query_rows(&b, r, from, to, &ts);
        put_nav(&b, p, pages, "query pages");
        page_close(&b);
        page_name(nm, sizeof nm, p);
        rc = write_page(o->out_dir, nm, &b);
        sb_free(&b);
    }
    size_t bad = 0;
    for (size_t i = 0; i < ts.n; i++) bad += !ts.t[i].ok;
    if (!rc)
        cli_info("imgsim: report %s/report.html (%d page%s, %zu thumbnails%s)\n", o->out_dir, pages, pages > 1 ? "s" : "",
                 ts.n - bad, bad ? ", some images without a preview" : "");
    ts_free(&ts);
    return rc;
}

static void fact(sbuf *b, const char *k, const char *v) {
    if (!v) return;
    sb_puts(b, "<tr><th>");
    sb_html(b, k);
    sb_puts(b, "</th><td>");
    sb_html(b, v);
    sb_puts(b, "</td></tr>\n");
}

static void factf(sbuf *b, const char *k, const char *fmt, double v) {
    char t[64];
    snprintf(t, sizeof t, fmt, v);
    fact(b, k, t);
}

int report_run(const char *job, const report_opts *o_in) {
    report_opts o = *o_in;
    if (!o.out_dir) o.out_dir = job;
    char *ps = join(job, "summary.json"), *pr = join(job, "results.tsv");
    char *pg = join(job, "gallery"), *pq = join(job, "queries");
    cJSON *sum = ps ? read_json(ps) : NULL;
    results r;
    memset(&r, 0, sizeof r);
    int rc = 1;
    if (!sum) {
        fprintf(stderr, "imgsim report: %s: missing or not JSON (is %s an imgsim run job folder?)\n", ps ? ps : job, job);
        goto out;
    }
    char *groot = pages_store_root(pg), *qroot = pages_store_root(pq);
    int bad = results_read(&r, pr, qroot, groot);
    free(groot), free(qroot);
    if (bad) goto out;
    sbuf f = {0};
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(sum, "counts"), *sp = cJSON_GetObjectItemCaseSensitive(sum, "split");
    int k = (int)jnum(sum, "k", 5);
    sb_puts(&f, "<h2 id=\"summary\">Summary</h2>\n<table class=\"facts\">\n");
    fact(&f, "dataset", jstr(sum, "dataset"));
    fact(&f, "model", jstr(sum, "model"));
    fact(&f, "layer", jstr(sum, "layer"));
    factf(&f, "feature dimension", "%.0f", jnum(sum, "dim", 0));
    fact(&f, "device", jstr(sum, "device"));
    if (sp) {
        char t[128];
        snprintf(t, sizeof t, "%.0f train (gallery), %.0f test (queries); test size %g, seed %.0f, %.0f skipped",
                 jnum(sp, "train", 0), jnum(sp, "test", 0), jnum(sp, "test_size", 0), jnum(sp, "seed", 0),
                 jnum(sp, "skipped", 0));
        fact(&f, "split", t);
    }
    if (cn) {
        char t[128];
        snprintf(t, sizeof t, "%.0f images (%.0f failed)", jnum(cn, "gallery", 0), jnum(cn, "gallery_failed", 0));
        fact(&f, "gallery", t);
        snprintf(t, sizeof t, "%.0f images (%.0f failed)", jnum(cn, "queries", 0), jnum(cn, "queries_failed", 0));
        fact(&f, "queries", t);
    }
    factf(&f, "k", "%.0f", k);
    factf(&f, "total time", "%.2f s", jnum(sum, "total_seconds", 0));
    sb_puts(&f, "</table>\n");
    rc = write_results_report("imgsim run report", &f, &r, cJSON_GetObjectItemCaseSensitive(sum, "accuracy"),
                              cJSON_GetObjectItemCaseSensitive(sum, "per_class"),
                              cJSON_GetObjectItemCaseSensitive(sum, "stages"), k, pg, pq, &o);
    sb_free(&f);
out:
    results_free(&r);
    cJSON_Delete(sum);
    free(ps), free(pr), free(pg), free(pq);
    return rc;
}

/* out.tsv -> out.metrics.json */
static char *metrics_name(const char *tsv) {
    size_t n = strlen(tsv);
    char *p = malloc(n + 16);
    if (!p) return NULL;
    memcpy(p, tsv, n + 1);
    if (n > 4 && !strcmp(p + n - 4, ".tsv")) p[n - 4] = 0;
    strcat(p, ".metrics.json");
    return p;
}

static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return strdup(".");
    if (s == path) return strdup("/");
    char *d = malloc((size_t)(s - path) + 1);
    if (d) {
        memcpy(d, path, (size_t)(s - path));
        d[s - path] = 0;
    }
    return d;
}

int report_search(const char *tsv, const char *metrics_json, const char *gallery_dir, const char *query_dir,
                  const report_opts *o_in) {
    report_opts o = *o_in;
    char *dir = o.out_dir ? NULL : dir_of(tsv);
    if (!o.out_dir) o.out_dir = dir;
    char *mp = metrics_json ? strdup(metrics_json) : metrics_name(tsv);
    cJSON *m = mp ? read_json(mp) : NULL;
    results r;
    int rc = 1;
    char *groot = gallery_dir ? pages_store_root(gallery_dir) : NULL;
    char *qroot = query_dir ? pages_store_root(query_dir) : NULL;
    int bad = results_read(&r, tsv, qroot, groot);
    free(groot), free(qroot);
    if (bad) goto out;
    int k = (int)jnum(m, "k", 0);
    if (!k)
        for (size_t i = 0; i < r.nq; i++)
            if (r.q[i].nm > k) k = r.q[i].nm;
    sbuf f = {0};
    sb_puts(&f, "<h2 id=\"summary\">Summary</h2>\n<table class=\"facts\">\n");
    fact(&f, "results", tsv);
    fact(&f, "gallery store", gallery_dir);
    if (m) {
        factf(&f, "gallery", "%.0f images", jnum(m, "gallery", 0));
        factf(&f, "queries", "%.0f", jnum(m, "queries", 0));
        factf(&f, "labelled queries", "%.0f", jnum(m, "labelled_queries", 0));
        factf(&f, "search time", "%.3f s", jnum(m, "search_seconds", 0));
        factf(&f, "queries per second", "%.0f", jnum(m, "queries_per_s", 0));
    } else {
        factf(&f, "queries", "%.0f", (double)r.nq);
    }
    factf(&f, "k", "%.0f", k);
    sb_puts(&f, "</table>\n");
    cJSON *stages = NULL;
    if (m) { /* one bar: the search itself */
        stages = cJSON_CreateObject();
        cJSON *s = cJSON_AddObjectToObject(stages, "search");
        cJSON_AddNumberToObject(s, "seconds", jnum(m, "search_seconds", 0));
        cJSON_AddNumberToObject(s, "images_per_s", jnum(m, "queries_per_s", 0));
    }
    rc = write_results_report("imgsim search report", &f, &r, cJSON_GetObjectItemCaseSensitive(m, "accuracy"),
                              cJSON_GetObjectItemCaseSensitive(m, "per_class"), stages, k, gallery_dir, query_dir, &o);
    cJSON_Delete(stages);
    sb_free(&f);
out:
    results_free(&r);
    cJSON_Delete(m);
    free(mp);
    free(dir);
    return rc;
}

/* ---- dedup -------------------------------------------------------------------------------- */

typedef struct dpair {
    int a, b;
    double s;
} dpair;

typedef struct dgroup {
    int root, n;
    double best;
    int *members;
    dpair *pairs;
    int np;
} dgroup;

static int uf_find(int *p, int x) {
    while (p[x] != x) x = p[x] = p[p[x]];
    return x;
}

static int cmp_group(const void *a, const void *b) {
    const dgroup *x = a, *y = b;
    if (x->n != y->n) return y->n - x->n;
    if (x->best != y->best) return x->best > y->best ? -1 : 1;
    return x->root - y->root;
}

static int cmp_pair_score(const void *a, const void *b) {
    const dpair *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->a != y->a ? x->a - y->a : x->b - y->b;
}

static int path_index(const thumbset *ts, const char *p) {
    const thumb *t = ts_find(ts, p);
    return t ? (int)(t - ts->t) : -1;
}

int report_dedup(const char *pairs_json, const char *store_dir, const report_opts *o_in) {
    report_opts o = *o_in;
    char *dir = o.out_dir ? NULL : dir_of(pairs_json);
    if (!o.out_dir) o.out_dir = dir;
    cJSON *j = read_json(pairs_json);
    int rc = 1;
    thumbset ts;
    memset(&ts, 0, sizeof ts);
    dpair *pairs = NULL;
    int *parent = NULL;
    dgroup *groups = NULL;
    char *root = NULL, **files = NULL;
    int ng = 0;
    size_t np = 0;
    if (!cJSON_IsObject(j)) {
        fprintf(stderr, "imgsim report: %s: missing, not JSON, or not imgsim dedup pairs\n", pairs_json);
        goto out;
    }
    const cJSON *e, *pr;
    cJSON_ArrayForEach(e, j) {
        ts_add(&ts, e->string, NULL);
        cJSON_ArrayForEach(pr, e) {
            const cJSON *other = cJSON_GetArrayItem(pr, 0);
            if (cJSON_IsString(other)) ts_add(&ts, other->valuestring, NULL);
            np++;
        }
    }
    ts_seal(&ts);
    /* the files behind the store's manifest paths */
    root = store_dir ? pages_store_root(store_dir) : NULL;
    files = calloc(ts.n ? ts.n : 1, sizeof *files);
    if (!files) goto oom;
    for (size_t i = 0; i < ts.n; i++) {
        files[i] = pages_resolve(root, ts.t[i].path);
        if (!files[i]) goto oom;
        ts.t[i].file = files[i];
    }
    pairs = malloc((np ? np : 1) * sizeof *pairs);
    parent = malloc((ts.n ? ts.n : 1) * sizeof *parent);
    if (!pairs || !parent) goto oom;
    for (size_t i = 0; i < ts.n; i++) parent[i] = (int)i;
    np = 0;
    cJSON_ArrayForEach(e, j) {
        int a = path_index(&ts, e->string);
        cJSON_ArrayForEach(pr, e) {
            const cJSON *other = cJSON_GetArrayItem(pr, 0), *sc = cJSON_GetArrayItem(pr, 1);
            if (!cJSON_IsString(other) || !cJSON_IsNumber(sc)) continue;
            int bi = path_index(&ts, other->valuestring);
            pairs[np].a = a, pairs[np].b = bi, pairs[np].s = sc->valuedouble;
            np++;
            int ra = uf_find(parent, a), rb = uf_find(parent, bi);
            if (ra != rb) parent[ra > rb ? ra : rb] = ra < rb ? ra : rb;
        }
    }
    /* groups: one per root, members in path order */
    int *gid = malloc((ts.n ? ts.n : 1) * sizeof *gid);
    groups = calloc(ts.n ? ts.n : 1, sizeof *groups);
    if (!gid || !groups) {
        free(gid);
        goto oom;
    }
    for (size_t i = 0; i < ts.n; i++) gid[i] = -1;
    for (size_t i = 0; i < ts.n; i++) {
        int r = uf_find(parent, (int)i);
        if (gid[r] < 0) {
            gid[r] = ng;
            groups[ng].root = r;
            groups[ng].best = -INFINITY;
            ng++;
        }
        groups[gid[r]].n++;
    }
    for (int g = 0; g < ng; g++) {
        groups[g].members = malloc((size_t)groups[g].n * sizeof(int));
        groups[g].pairs = malloc(np ? np * sizeof(dpair) : sizeof(dpair));
        if (!groups[g].members || !groups[g].pairs) {
            free(gid);
            goto oom;
        }
        groups[g].n = 0;
    }
    for (size_t i = 0; i < ts.n; i++) {
        dgroup *g = &groups[gid[uf_find(parent, (int)i)]];
        g->members[g->n++] = (int)i;
    }
    for (size_t p = 0; p < np; p++) {
        dgroup *g = &groups[gid[uf_find(parent, pairs[p].a)]];
        g->pairs[g->np++] = pairs[p];
        if (pairs[p].s > g->best) g->best = pairs[p].s;
    }
    free(gid);
    for (int g = 0; g < ng; g++) qsort(groups[g].pairs, (size_t)groups[g].np, sizeof(dpair), cmp_pair_score);
    qsort(groups, (size_t)ng, sizeof *groups, cmp_group);
    if (ts_make(&ts, o.out_dir, o.workers)) goto out;

    size_t ps = (size_t)(o.page_size > 0 ? o.page_size : 50);
    int pages = ng ? (int)((ng + ps - 1) / ps) : 1;
    size_t in_groups = 0;
    for (int g = 0; g < ng; g++) in_groups += (size_t)groups[g].n;
    rc = 0;
    for (int p = 1; p <= pages && !rc; p++) {
        sbuf b = {0};
        page_open(&b, "imgsim dedup report");
        if (p == 1) {
            sb_puts(&b, "<h2 id=\"summary\">Summary</h2>\n<table class=\"facts\">\n");
            fact(&b, "pairs file", pairs_json);
            fact(&b, "store", store_dir);
            if (store_dir) {
                gview g;
                char err[256];
                if (gview_open(&g, store_dir, err, sizeof err) == 0) {
                    factf(&b, "images in the store", "%.0f", (double)g.n);
                    gview_free(&g);
                }
            }
            if (!isnan(o.threshold)) factf(&b, "threshold", "score >= %g", o.threshold);
            factf(&b, "near-duplicate pairs", "%.0f", (double)np);
            factf(&b, "groups", "%.0f", (double)ng);
            factf(&b, "images in a group", "%.0f", (double)in_groups);
            sb_puts(&b, "</table>\n");
            if (store_dir) {
                size_t before = b.n;
                put_failures(&b, "store", store_dir);
                (void)before;
            }
            if (!ng) sb_puts(&b, "<p class=\"note\">No near-duplicates at this threshold.</p>\n");
        } else {
            sb_puts(&b, "<p><a href=\"report.html\">&larr; summary</a></p>\n");
        }
        size_t from = (size_t)(p - 1) * ps, to = from + ps < (size_t)ng ? from + ps : (size_t)ng;
        if (ng)
            sb_printf(&b, "<h2 id=\"groups\">Groups %zu&ndash;%zu of %d</h2>\n<p class=\"note\">Images joined by pairs "
                          "scoring at or above the threshold, largest groups first.</p>\n",
                      from + 1, to, ng);
        put_nav(&b, p, pages, "group pages");
        for (size_t g = from; g < to; g++) {
            const dgroup *G = &groups[g];
            sb_printf(&b, "<section class=\"group\"><h3>Group %zu: %d images, best score %.4f</h3>\n<div class=\"members\">",
                      g + 1, G->n, G->best);
            int shown = G->n < 24 ? G->n : 24;
            for (int m = 0; m < shown; m++) {
                const char *path = ts.t[G->members[m]].path;
                sb_puts(&b, "<figure class=\"member\">");
                put_thumb(&b, &ts, path, path, "");
                sb_puts(&b, "<figcaption>");
                sb_html(&b, path);
                sb_puts(&b, "</figcaption></figure>");
            }
            if (shown < G->n) sb_printf(&b, "<p class=\"note\">and %d more</p>", G->n - shown);
            sb_puts(&b, "</div>\n<table class=\"pairs\"><tr><th>score</th><th>image</th><th>near-duplicate</th></tr>\n");
            int pshow = G->np < 20 ? G->np : 20;
            for (int q = 0; q < pshow; q++) {
                sb_printf(&b, "<tr><td>%.4f</td><td>", G->pairs[q].s);
                sb_html(&b, ts.t[G->pairs[q].a].path);
                sb_puts(&b, "</td><td>");
                sb_html(&b, ts.t[G->pairs[q].b].path);
                sb_puts(&b, "</td></tr>\n");
            }
            sb_puts(&b, "</table>");
            if (pshow < G->np) sb_printf(&b, "<p class=\"note\">and %d more pairs</p>", G->np - pshow);
            sb_puts(&b, "</section>\n");
        }
        put_nav(&b, p, pages, "group pages");
        page_close(&b);
        char nm[64];
        page_name(nm, sizeof nm, p);
        rc = write_page(o.out_dir, nm, &b);
        sb_free(&b);
    }
    if (!rc) cli_info("imgsim: report %s/report.html (%d groups, %d page%s)\n", o.out_dir, ng, pages, pages > 1 ? "s" : "");
    goto out;
oom:
    fprintf(stderr, "imgsim report: out of memory\n");
    rc = 1;
out:
    if (groups)
        for (int g = 0; g < ng; g++) free(groups[g].members), free(groups[g].pairs);
    free(groups);
    for (size_t i = 0; files && i < ts.n; i++) free(files[i]);
    free(files);
    free(root);
    free(parent);
    free(pairs);
    ts_free(&ts);
    cJSON_Delete(j);
    free(dir);
    return rc;
}

/* ---- the command -------------------------------------------------------------------------- */

static const char usage[] =
    "imgsim report JOB_DIR|RESULTS.tsv|PAIRS.json [--out=DIR] [--gallery=STORE] [--query=STORE]\n"
    "              [--store=STORE] [--page-size=50] [--thumb-size=128] [--workers=N] [--quiet]\n"
    "  an HTML report (DIR/report.html, more pages as report-N.html, thumbnails in DIR/thumbs/) of\n"
    "  an `imgsim run` job folder, of `imgsim search` results (with --gallery/--query for the\n"
    "  stores' failures), or of `imgsim dedup` pairs (--store for counts and failures).\n"
    "  --out defaults to the job folder, or the folder of the results or pairs file.";

int cmd_report(int argc, char **argv) {
    static const char *const vals[] = {"out", "gallery", "query", "store", "page-size", "thumb-size", "workers", NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vals, usage);
    if (started >= 0) return started;
    report_opts o;
    report_opts_init(&o);
    o.out_dir = cli_str(&a, "out", NULL);
    o.page_size = (int)cli_int(&a, "page-size", 50, 1, 100000);
    o.thumb_size = (int)cli_int(&a, "thumb-size", 128, 16, 1024);
    o.workers = (int)cli_int(&a, "workers", 0, 0, 64);
    const char *gal = cli_str(&a, "gallery", NULL), *qry = cli_str(&a, "query", NULL), *store = cli_str(&a, "store", NULL);
    const char *in = cli_pos(&a, 0);
    int rc = cli_finish(&a, usage);
    if (!rc && (!in || cli_npos(&a) != 1)) {
        fprintf(stderr, "imgsim report: expected one JOB_DIR, RESULTS.tsv or PAIRS.json\nusage: %s\n", usage);
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }
    struct stat st;
    if (stat(in, &st) != 0) {
        fprintf(stderr, "imgsim report: %s: %s\n", in, strerror(errno));
        cli_free(&a);
        return 1;
    }
    if (o.out_dir && mkdir(o.out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "imgsim report: cannot create %s: %s\n", o.out_dir, strerror(errno));
        cli_free(&a);
        return 1;
    }
    size_t n = strlen(in);
    if (S_ISDIR(st.st_mode)) rc = report_run(in, &o);
    else if (n > 4 && !strcmp(in + n - 4, ".tsv")) rc = report_search(in, NULL, gal, qry, &o);
    else if (n > 5 && !strcmp(in + n - 5, ".json")) rc = report_dedup(in, store, &o);
    else {
        fprintf(stderr, "imgsim report: %s: expected a run job folder, a results .tsv or a dedup pairs .json\n", in);
        rc = 1;
    }
    cli_free(&a);
    return rc;
}
