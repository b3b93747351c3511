/* job.c: search of a query store against a gallery store, results.tsv and accuracies (job.h). */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/job.h"
#include "cli/mpi.h"

/* The JSON object at key (or NULL). */
static const cJSON *jget(const cJSON *o, const char *key) {
    return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

int job_check_compatible(const imgsim_store *g, const imgsim_store *q) {
    if (imgsim_store_check_compatible(g, q, NULL) == IMGSIM_OK) return 0;
    fprintf(stderr, "imgsim: %s\n", imgsim_last_error());
    return 1;
}

int job_write_json(const char *path, const cJSON *v) {
    char *txt = cli_json_print(v, 1); /* names that are not UTF-8: bytes as \udcXX */
    if (!txt) {
        fprintf(stderr, "imgsim: out of memory writing %s\n", path);
        return 1;
    }
    size_t n = strlen(txt);
    txt[n] = '\n';
    int rc = cli_write_file(NULL, path, txt, n + 1) ? 1 : 0;
    free(txt);
    return rc;
}

/* Per-class tallies. */
typedef struct class_stat {
    const char *label;
    int64_t n, top1, topk, knn;
} class_stat;

static class_stat *class_find(class_stat **cs, int *ncs, int *cap, const char *label) {
    for (int i = 0; i < *ncs; i++)
        if (!strcmp((*cs)[i].label, label)) return &(*cs)[i];
    if (*ncs == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        class_stat *n = realloc(*cs, (size_t)*cap * sizeof **cs);
        if (!n) return NULL;
        *cs = n;
    }
    class_stat *c = &(*cs)[(*ncs)++];
    memset(c, 0, sizeof *c);
    c->label = label;
    return c;
}

static int cmp_class(const void *a, const void *b) {
    return strcmp(((const class_stat *)a)->label, ((const class_stat *)b)->label);
}

/* Majority label among the first k matches; ties go to the label whose best match ranks first. */
static const char *knn_vote(const imgsim_store_info *g, const int64_t *idx, int k) {
    const char *best = NULL;
    int best_n = 0;
    for (int r = 0; r < k; r++) {
        if (idx[r] < 0) break;
        const char *l = g->labels[idx[r]];
        int seen = 0;
        for (int s = 0; s < r; s++)
            if (!strcmp(g->labels[idx[s]], l)) seen = 1;
        if (seen) continue; /* counted at its first (best-ranked) occurrence */
        int n = 0;
        for (int s = r; s < k && idx[s] >= 0; s++) n += !strcmp(g->labels[idx[s]], l);
        if (n > best_n) {
            best_n = n;
            best = l;
        }
    }
    return best;
}

static void tsv_field(FILE *f, const char *s) {
    for (; *s; s++) fputc(*s == '\t' || *s == '\n' ? ' ' : *s, f);
}

/* A float32 copy of the store's features (NULL when out of memory). */
static float *features_f32(const imgsim_store *s, const imgsim_store_info *i, int unit) {
    float *f = cli_malloc_array((size_t)(i->n ? i->n : 1), (size_t)i->dim * sizeof(float));
    if (f && imgsim_store_features_f32(f, s, unit) != IMGSIM_OK) {
        free(f);
        f = NULL;
    }
    return f;
}

/* the gallery as job_search hands it to the search (told to the other ranks of an MPI job) */
enum { GAL_STORED, GAL_F32_NORM, GAL_F32 };

int job_search_worker(const imgsim_store *gs, const imgsim_search_opts *so) {
    imgsim_store_info g;
    imgsim_store_get_info(gs, &g);
    int64_t hdr[2];
    if (cli_mpi_bcast(hdr, sizeof hdr, 0) || hdr[0]) return 1; /* rank 0 stopped (and said why) */
    const void *gal = g.features;
    float *g32 = NULL;
    imgsim_dtype dt = g.dtype;
    if (hdr[1] != GAL_STORED) {
        dt = IMGSIM_F32;
        gal = g32 = features_f32(gs, &g, hdr[1] == GAL_F32_NORM);
    }
    int rc = cli_search_ranks("search", NULL, NULL, gal, g.n, NULL, 0, g.dim, dt, 0, so);
    free(g32);
    return rc;
}

int job_search(const imgsim_store *gs, const imgsim_store *qs, int k, int dot, const imgsim_search_opts *so,
               const char *out_tsv, cJSON **metrics) {
    *metrics = NULL;
    imgsim_store_info gi, qi;
    imgsim_store_get_info(gs, &gi);
    imgsim_store_get_info(qs, &qi);
    const imgsim_store_info *g = &gi, *q = &qi;
    if (g->dim != q->dim) {
        fprintf(stderr, "imgsim: gallery has %d-d features, queries %d-d\n", g->dim, q->dim);
        int64_t stop[2] = {1, 0}; /* the other ranks of an MPI job wait for this header */
        if (cli_mpi_size() > 1) cli_mpi_bcast(stop, sizeof stop, 0);
        return 1;
    }
    int64_t nq = q->n;
    if (k > g->n) k = g->n > 0 ? (int)g->n : 1; /* no more matches than gallery rows: allocate for those */
    int64_t *idx = cli_malloc_array((size_t)(nq ? nq : 1) * (size_t)k, sizeof(int64_t));
    float *score = cli_malloc_array((size_t)(nq ? nq : 1) * (size_t)k, sizeof(float));
    const void *gal = g->features, *qry = q->features;
    float *g32 = NULL, *q32 = NULL;
    imgsim_dtype dt = g->dtype;
    int norm_g = !dot && !g->unit_norm, norm_q = !dot && !q->unit_norm;
    if (norm_g || norm_q) {
        /* cosine over rows that are not unit length (a --no-normalize store): normalised
         * float32 copies of both sides */
        const char *which = norm_g && norm_q ? "gallery and query" : norm_g ? "gallery" : "query";
        cli_info("imgsim: %s rows are not L2-normalised (--no-normalize?): searching by cosine; "
                 "--metric=dot for the raw inner product\n", which);
        dt = IMGSIM_F32;
        gal = g32 = features_f32(gs, g, 1);
        qry = q32 = features_f32(qs, q, 1);
    } else if (g->dtype != q->dtype) { /* mixed: compare in float32 */
        dt = IMGSIM_F32;
        if (g->dtype == IMGSIM_F16) gal = g32 = features_f32(gs, g, 0);
        if (q->dtype == IMGSIM_F16) qry = q32 = features_f32(qs, q, 0);
    }
    int oom = !idx || !score || !gal || !qry;
    if (cli_mpi_size() > 1) { /* the other ranks: whether to go on, and the gallery as searched */
        int64_t hdr[2] = {oom, norm_g || norm_q ? GAL_F32_NORM : dt != g->dtype ? GAL_F32 : GAL_STORED};
        if (cli_mpi_bcast(hdr, sizeof hdr, 0)) oom = 1;
    }
    if (oom) {
        fprintf(stderr, "imgsim search: out of memory\n");
        free(idx), free(score), free(g32), free(q32);
        return 1;
    }
    double t0 = cli_now();
    int failed = cli_search_ranks("search", idx, score, gal, g->n, qry, nq, g->dim, dt, k, so);
    double secs = cli_now() - t0;
    free(g32);
    free(q32);
    if (failed) {
        free(idx), free(score);
        return 1;
    }

    cli_atomic af;
    if (cli_atomic_open(&af, "search", out_tsv)) {
        free(idx), free(score);
        return 1;
    }
    fprintf(af.f, "query_path\tquery_label\trank\tmatch_path\tmatch_label\tscore\n");
    class_stat *cs = NULL;
    int ncs = 0, cap = 0;
    int64_t labelled = 0, top1 = 0, topk = 0, knn = 0;
    int gallery_labelled = 0;
    for (int64_t i = 0; i < g->n && !gallery_labelled; i++) gallery_labelled = g->labels[i][0] != 0;
    for (int64_t i = 0; i < nq; i++) {
        const int64_t *ix = idx + i * k;
        const float *sc = score + i * k;
        for (int r = 0; r < k && ix[r] >= 0; r++) {
            tsv_field(af.f, q->paths[i]);
            fputc('\t', af.f);
            tsv_field(af.f, q->labels[i]);
            fprintf(af.f, "\t%d\t", r + 1);
            tsv_field(af.f, g->paths[ix[r]]);
            fputc('\t', af.f);
            tsv_field(af.f, g->labels[ix[r]]);
            fprintf(af.f, "\t%.6f\n", sc[r]);
        }
        const char *ql = q->labels[i];
        if (!*ql || !gallery_labelled) continue;
        class_stat *c = class_find(&cs, &ncs, &cap, ql);
        if (!c) continue;
        int h1 = ix[0] >= 0 && !strcmp(g->labels[ix[0]], ql), hk = 0;
        for (int r = 0; r < k && ix[r] >= 0; r++) hk |= !strcmp(g->labels[ix[r]], ql);
        const char *v = knn_vote(g, ix, k);
        int hv = v && !strcmp(v, ql);
        labelled++, top1 += h1, topk += hk, knn += hv;
        c->n++, c->top1 += h1, c->topk += hk, c->knn += hv;
    }
    free(idx);
    free(score);
    if (cli_atomic_commit(&af, "search")) {
        free(cs);
        return 1;
    }

    cJSON *m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "k", k);
    cJSON_AddStringToObject(m, "metric", dot ? "dot" : "cosine");
    cJSON_AddNumberToObject(m, "gallery", (double)g->n);
    cJSON_AddNumberToObject(m, "queries", (double)nq);
    cJSON_AddNumberToObject(m, "labelled_queries", (double)labelled);
    cJSON_AddNumberToObject(m, "search_seconds", secs);
    cJSON_AddNumberToObject(m, "queries_per_s", secs > 0 ? (double)nq / secs : 0);
    if (labelled > 0) {
        cJSON *acc = cJSON_AddObjectToObject(m, "accuracy");
        cJSON_AddNumberToObject(acc, "top1", (double)top1 / (double)labelled);
        cJSON_AddNumberToObject(acc, "topk", (double)topk / (double)labelled);
        cJSON_AddNumberToObject(acc, "knn_vote", (double)knn / (double)labelled);
        qsort(cs, (size_t)ncs, sizeof *cs, cmp_class);
        cJSON *pc = cJSON_AddObjectToObject(m, "per_class");
        for (int i = 0; i < ncs; i++) {
            cJSON *c = cJSON_AddObjectToObject(pc, cs[i].label);
            cJSON_AddNumberToObject(c, "queries", (double)cs[i].n);
            cJSON_AddNumberToObject(c, "top1", (double)cs[i].top1 / (double)cs[i].n);
            cJSON_AddNumberToObject(c, "topk", (double)cs[i].topk / (double)cs[i].n);
            cJSON_AddNumberToObject(c, "knn_vote", (double)cs[i].knn / (double)cs[i].n);
        }
    }
    free(cs);
    *metrics = m;
    return 0;
}

void job_print_metrics(const cJSON *m) {
    const cJSON *acc = jget(m, "accuracy");
    int k = (int)cJSON_GetNumberValue(jget(m, "k"));
    if (!acc) {
        cli_info("imgsim: no labels on both sides: accuracies not computed\n");
        return;
    }
    cli_info("imgsim: accuracy over %d labelled queries: top-1 %.4f, top-%d %.4f, %d-NN vote %.4f\n",
            (int)cJSON_GetNumberValue(jget(m, "labelled_queries")), cJSON_GetNumberValue(jget(acc, "top1")), k,
            cJSON_GetNumberValue(jget(acc, "topk")), k, cJSON_GetNumberValue(jget(acc, "knn_vote")));
    const cJSON *pc = jget(m, "per_class"), *c;
    if (!cli_log_enabled(IMGSIM_LOG_INFO) || !pc) return;
    fprintf(stderr, "  %-24s %8s %8s %8s %8s\n", "class", "queries", "top-1", "top-k", "k-NN");
    cJSON_ArrayForEach(c, pc) {
        fprintf(stderr, "  %-24s %8d %8.4f %8.4f %8.4f\n", c->string, (int)cJSON_GetNumberValue(jget(c, "queries")),
                cJSON_GetNumberValue(jget(c, "top1")), cJSON_GetNumberValue(jget(c, "topk")),
                cJSON_GetNumberValue(jget(c, "knn_vote")));
    }
}

/* The gallery's preprocessing settings into xo (max_pixels, not recorded, stays xo's). */
static void preprocess_from_meta(const imgsim_store_meta *m, imgsim_extract_opts *xo) {
    if (m->has_preprocessing) {
        uint64_t max_pixels = xo->pre.max_pixels;
        xo->pre = m->pre;
        xo->pre.max_pixels = max_pixels;
    } else {
        xo->pre.exif_rotate = xo->pre.dct_scaling = 0;
    }
}

int job_extract_queries(const imgsim_store *g, const char *input, const char *model_override,
                        const imgsim_engine_opts *eo, const imgsim_extract_opts *xo_in, int pre_given,
                        char **tmp_dir) {
    *tmp_dir = NULL;
    imgsim_store_meta gm;
    imgsim_store_get_meta(g, &gm);
    imgsim_store_info gi;
    imgsim_store_get_info(g, &gi);
    if (gm.has_preprocessing && cli_preprocess_match("search", &xo_in->pre, pre_given, &gm.pre, gi.dir)) return 1;
    const char *model = model_override ? model_override : gm.model_path;
    if (!*model) {
        fprintf(stderr, "imgsim search: the gallery does not name its model; give --model\n");
        return 1;
    }
    imgsim_engine *e = NULL;
    imgsim_status st = imgsim_engine_load(&e, model, *gm.layer ? gm.layer : NULL, eo);
    if (st) return cli_fail("search", st);
    if ((st = imgsim_store_check_compatible(g, NULL, e))) {
        imgsim_engine_destroy(e);
        return cli_fail("search", st);
    }
    imgsim_extract_opts xo = *xo_in;
    preprocess_from_meta(&gm, &xo);
    char tmpl[] = "/tmp/imgsim-queries-XXXXXX";
    const char *base = getenv("TMPDIR");
    char *dir = NULL;
    if (base && *base) {
        dir = cli_path_join(base, "imgsim-queries-XXXXXX");
    } else {
        dir = cli_strdup(tmpl);
    }
    if (!dir || !mkdtemp(dir)) {
        fprintf(stderr, "imgsim search: cannot create a temporary folder\n");
        free(dir);
        imgsim_engine_destroy(e);
        return 1;
    }
    imgsim_extract_stats s;
    st = imgsim_extract(e, model, input, dir, &xo, &s);
    imgsim_engine_destroy(e);
    if (st) {
        job_remove_store(dir);
        free(dir);
        return cli_fail("search", st);
    }
    cli_info("imgsim: queries: %lld images ok, %lld failed (%.1f images/s)\n", (long long)s.ok,
            (long long)s.failed, s.images_per_s);
    *tmp_dir = dir;
    return 0;
}

void job_remove_store(const char *dir) {
    static const char *files[] = {"features.npy", "manifest.tsv", "meta.json", ".imgsim.lock"};
    for (int i = 0; i < 4; i++) {
        char *p = cli_path_join(dir, files[i]);
        if (p) unlink(p);
        free(p);
    }
    for (int k = 0;; k++) { /* a sharded store's (--layout=sharded) */
        char name[2][40];
        snprintf(name[0], sizeof name[0], "features-%05d.npy", k);
        snprintf(name[1], sizeof name[1], "manifest-%05d.tsv", k);
        int gone = 0;
        for (int i = 0; i < 2; i++) {
            char *p = cli_path_join(dir, name[i]);
            gone += p && unlink(p) == 0;
            free(p);
        }
        if (!gone) break;
    }
    rmdir(dir);
}
