/*
 * cmd_dedup.c: imgsim dedup STORE [--threshold=0.95] [--out=pairs.json] [--threads=N]
 *
 * Finds every pair of rows i < j of a feature store whose cosine (rows that are not unit length,
 * as in a --no-normalize store, are normalised first; the raw inner product with --metric=dot)
 * is >= threshold, blockwise (imgsim_dedup: no n x n matrix),
 * and writes JSON {path_i: [[path_j, score], ...], ...}: each pair once, under the path of the
 * lower row, each list sorted by score descending (then row ascending); only rows with at least
 * one pair appear, in row order. Written atomically to --out, or to stdout without it. A summary
 * line goes to stderr.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cli/mpi.h"
#include "cli/report.h"

static const char usage[] =
    "imgsim dedup STORE [--threshold=0.95] [--out=pairs.json] [--threads=N] [--device=cpu|cuda[:N]]\n"
    "             [--gpu-memory=BYTES] [--metric=cosine|dot] [--report] [--quiet]\n"
    "  near-duplicate pairs (score >= threshold) within a feature store, as JSON\n"
    "  {path: [[other_path, score], ...]} (each pair once, under the lower row's path)\n"
    "  --report: also write report.html (groups of near-duplicates with thumbnails) beside --out";

typedef struct found {
    int64_t i, j;
    float s;
} found;

typedef struct collect {
    found *p;
    size_t n, cap;
    int oom;
} collect;

static void on_pair(void *ctx, int64_t i, int64_t j, float s) {
    collect *c = ctx;
    if (c->oom) return;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 1024;
        found *p = realloc(c->p, nc * sizeof *p);
        if (!p) {
            c->oom = 1;
            return;
        }
        c->p = p;
        c->cap = nc;
    }
    c->p[c->n].i = i;
    c->p[c->n].j = j;
    c->p[c->n].s = s;
    c->n++;
}

/* Orders by lower row, then score descending, then other row. */
static int found_cmp(const void *pa, const void *pb) {
    const found *a = pa, *b = pb;
    if (a->i != b->i) return a->i < b->i ? -1 : 1;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    if (a->j != b->j) return a->j < b->j ? -1 : 1;
    return 0;
}

/* Under mpirun: every rank says whether its share failed (printing why), then rank 0 gets every
 * rank's pairs into c (in rank order; sorted afterwards). Returns 0, or 1 on every rank. */
static int gather_pairs(collect *c, imgsim_status st, const char *why) {
    char msg[400] = "";
    if (st != IMGSIM_OK) {
        snprintf(msg, sizeof msg, "%s", why && *why ? why : imgsim_last_error());
        fprintf(stderr, "imgsim dedup: rank %d of %d on %s: %s\n", cli_mpi_rank(), cli_mpi_size(), cli_mpi_host(), msg);
    }
    if (cli_mpi_agree("dedup", st != IMGSIM_OK, msg)) return 1;
    int ranks = cli_mpi_size(), root = cli_mpi_rank() == 0;
    int64_t mine = (int64_t)c->n, most = 0;
    int64_t *counts = root ? calloc((size_t)ranks, sizeof *counts) : NULL;
    if (cli_mpi_gather(&mine, sizeof mine, root ? (void *)counts : (void *)&mine, 0)) return 1;
    for (int r = 0; root && counts && r < ranks; r++)
        if (counts[r] > most) most = counts[r];
    int bad = root && !counts;
    if (cli_mpi_bcast(&most, sizeof most, 0)) bad = 1;
    /* every rank sends `most` pairs (its own, then padding) */
    found *send = NULL, *all = NULL;
    if (!bad) {
        send = calloc((size_t)(most ? most : 1), sizeof *send);
        all = root ? cli_malloc_array((size_t)ranks * (size_t)(most ? most : 1), sizeof *all) : NULL;
        bad = !send || (root && !all);
        if (send && c->n) memcpy(send, c->p, c->n * sizeof *send);
    }
    snprintf(msg, sizeof msg, "out of memory gathering %lld pairs per rank", (long long)most);
    if (bad) fprintf(stderr, "imgsim dedup: rank %d: %s\n", cli_mpi_rank(), msg);
    if (cli_mpi_agree("dedup", bad, msg) ||
        cli_mpi_gather(send, (size_t)most * sizeof *send, root ? (void *)all : (void *)send, 0)) {
        free(send), free(all), free(counts);
        return 1;
    }
    if (root) {
        free(c->p);
        c->p = all;
        c->n = 0;
        c->cap = (size_t)ranks * (size_t)(most ? most : 1);
        for (int r = 0; r < ranks; r++) /* close the padding gaps */
            for (int64_t k = 0; k < counts[r]; k++) c->p[c->n++] = all[(size_t)r * (size_t)most + (size_t)k];
        all = NULL;
    }
    free(send), free(all), free(counts);
    return 0;
}

/* Builds the JSON text of the pairs (sorted by found_cmp). NULL when out of memory. */
static char *pairs_json(const imgsim_store_info *s, const found *p, size_t n) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    for (size_t a = 0; a < n;) {
        cJSON *list = cJSON_CreateArray();
        if (!list || !cJSON_AddItemToObject(root, s->paths[p[a].i], list)) {
            cJSON_Delete(list);
            cJSON_Delete(root);
            return NULL;
        }
        size_t b = a;
        for (; b < n && p[b].i == p[a].i; b++) {
            cJSON *pair = cJSON_CreateArray();
            /* the float32 score printed with the shortest decimal that reads back the same */
            char num[32];
            snprintf(num, sizeof num, "%.9g", (double)p[b].s);
            cJSON *path = cJSON_CreateString(s->paths[p[b].j]),
                  *score = cJSON_CreateNumber(strtod(num, NULL));
            if (!pair || !path || !score) {
                cJSON_Delete(pair);
                cJSON_Delete(path);
                cJSON_Delete(score);
                cJSON_Delete(root);
                return NULL;
            }
            cJSON_AddItemToArray(pair, path);
            cJSON_AddItemToArray(pair, score);
            cJSON_AddItemToArray(list, pair);
        }
        a = b;
    }
    char *txt = cli_json_print(root, 0); /* paths that are not UTF-8: bytes as \udcXX */
    cJSON_Delete(root);
    return txt;
}

int cmd_dedup(int argc, char **argv) {
    static const char *const value_opts[] = {"threshold", "out", "threads", "device", "gpu-memory", "metric", NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, value_opts, usage);
    if (started >= 0) return started;
    double thr = cli_double(&a, "threshold", 0.95, -1e30, 1e30);
    const char *out = cli_str(&a, "out", NULL);
    int threads = (int)cli_int(&a, "threads", 0, 0, 4096);
    const char *dev = cli_str(&a, "device", "cpu");
    imgsim_search_opts so;
    imgsim_search_opts_init(&so);
    so.threads = threads;
    if (!strcmp(dev, "cuda") || !strncmp(dev, "cuda:", 5)) {
        so.device = IMGSIM_DEVICE_CUDA;
        char *end = (char *)dev + 4;
        long n = dev[4] == ':' ? strtol(dev + 5, &end, 10) : 0;
        so.device_index = (int)n;
        if (dev[4] == ':' && (end == dev + 5 || *end || n < 0 || n > 1024)) {
            fprintf(stderr, "imgsim dedup: --device=%s: expected cpu, cuda or cuda:N (dedup runs on one GPU; "
                            "a list of GPUs is for extract, run and search)\n", dev);
            a.error = 1;
        }
    } else if (strcmp(dev, "cpu") != 0) {
        fprintf(stderr, "imgsim dedup: --device=%s: expected cpu, cuda or cuda:N\n", dev);
        a.error = 1;
    }
    so.gpu_memory = (size_t)cli_u64(&a, "gpu-memory", 0);
    const char *metric = cli_str(&a, "metric", "cosine");
    int dot = !strcmp(metric, "dot");
    if (!dot && strcmp(metric, "cosine")) {
        fprintf(stderr, "imgsim dedup: --metric=%s: expected cosine or dot\n", metric);
        a.error = 1;
    }
    int quiet = cli_flag(&a, "quiet");
    int want_report = cli_flag(&a, "report");
    const char *dir = cli_pos(&a, 0);
    int rc = cli_finish(&a, usage);
    if (!rc && (!dir || cli_npos(&a) != 1)) {
        fprintf(stderr, "imgsim dedup: expected one STORE folder\nusage: %s\n", usage);
        rc = 2;
    }
    if (!rc && want_report && !out) {
        fprintf(stderr, "imgsim dedup: --report needs --out=pairs.json (the report goes beside it)\n");
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }

    imgsim_store *s = NULL;
    imgsim_store_info si = {0};
    collect c = {0};
    char *txt = NULL;
    const char *why = NULL; /* a failure of the command's own */
    double t0 = cli_now();
    imgsim_status st = imgsim_store_open(&s, dir);
    if (st == IMGSIM_OK) st = imgsim_store_get_info(s, &si);
    const void *x = si.features;
    imgsim_dtype dt = si.dtype;
    float *unit = NULL;
    if (st == IMGSIM_OK && !dot && !si.unit_norm) {
        /* cosine over rows that are not unit length (a --no-normalize store) */
        if (!quiet)
            fprintf(stderr, "imgsim dedup: %s: rows are not L2-normalised (--no-normalize?): comparing by cosine; "
                            "--metric=dot for the raw inner product\n", dir);
        x = unit = malloc((size_t)(si.n ? si.n : 1) * (size_t)si.dim * sizeof(float));
        dt = IMGSIM_F32;
        if (!unit) st = IMGSIM_ERR_NOMEM, why = "out of memory normalising the store";
        else st = imgsim_store_features_f32(unit, s, 1);
    }
    if (cli_mpi_size() > 1) { /* under mpirun: each rank its share of the tile pairs, rank 0 writes */
        so.part = cli_mpi_rank();
        so.parts = cli_mpi_size();
        if (!threads) so.threads = cli_mpi_threads_per_rank();
    }
    if (st == IMGSIM_OK) st = imgsim_dedup(x, si.n, si.dim, dt, (float)thr, &so, on_pair, &c);
    if (st == IMGSIM_OK && c.oom) st = IMGSIM_ERR_NOMEM, why = "out of memory holding the pairs";
    if (cli_mpi_size() > 1 && gather_pairs(&c, st, why)) {
        cli_free(&a);
        free(unit);
        free(c.p);
        imgsim_store_close(s);
        return 1;
    }
    if (cli_mpi_rank() != 0) { /* its pairs are rank 0's now */
        cli_free(&a);
        free(unit);
        free(c.p);
        imgsim_store_close(s);
        return 0;
    }
    if (st == IMGSIM_OK) {
        if (c.n) qsort(c.p, c.n, sizeof *c.p, found_cmp);
        txt = pairs_json(&si, c.p, c.n);
        if (!txt) st = IMGSIM_ERR_NOMEM, why = "out of memory writing JSON";
    }
    if (st == IMGSIM_OK) {
        if (out) {
            if (cli_write_file("dedup", out, txt, strlen(txt))) st = IMGSIM_ERR_IO, why = ""; /* (printed) */
        } else {
            fputs(txt, stdout);
            fputc('\n', stdout);
        }
    }
    if (st == IMGSIM_OK && !quiet) {
        size_t rows = 0;
        for (size_t p = 0; p < c.n; p++)
            if (p == 0 || c.p[p].i != c.p[p - 1].i) rows++;
        fprintf(stderr,
                "imgsim dedup: %lld rows, %zu pairs with score >= %g (%zu rows have a near-duplicate), %.2f "
                "s%s%s\n",
                (long long)si.n, c.n, (double)(float)thr, rows, cli_now() - t0, out ? ", written to " : "",
                out ? out : "");
    }
    int report_rc = 0;
    if (st == IMGSIM_OK && want_report) {
        report_opts ro;
        report_opts_init(&ro);
        ro.threshold = (double)(float)thr;
        ro.workers = threads;
        report_rc = report_dedup(out, dir, &ro);
    }
    cli_free(&a);
    free(txt);
    free(unit);
    free(c.p);
    imgsim_store_close(s);
    if (why) {
        if (*why) fprintf(stderr, "imgsim dedup: dedup: %s\n", why);
        return 1;
    }
    if (st != IMGSIM_OK) return cli_fail("dedup", st);
    return report_rc;
}
