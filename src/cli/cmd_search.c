/* cmd_search.c: imgsim search: exact cosine top-k of queries (a store, or images extracted on the
 * fly with the gallery's model) against a gallery store; results.tsv and accuracies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/job.h"
#include "cli/mpi.h"
#include "cli/report.h"

static const char *usage =
    "imgsim search --gallery=STORE --query=STORE|FOLDER|LIST.tsv|IMAGE --out=results.tsv [--k=5]\n"
    "       [--metric=cosine|dot] (cosine: rows that are not unit length are normalised first)\n"
    "       [--model=M.onnx] [--metrics=FILE.json] [--threads=N] [--device=cpu|cuda[:N]|cuda:N,M,...|cuda:all] [--gpu-memory=BYTES]\n"
    "       [--precision] [--batch-size] [--workers] [--report] [--quiet]\n"
    "       [--resize --crop --interp --mean --std]: image queries are embedded with the gallery's preprocessing;\n"
    "       these, when given, must be the gallery's (a difference is refused, naming the field)\n"
    "  --report: also write report.html (+ report-N.html, thumbs/) in the folder of --out";

/* out.tsv -> out.metrics.json */
static char *metrics_path(const char *out) {
    size_t n = strlen(out);
    char *p = malloc(n + 16);
    if (!p) return NULL;
    memcpy(p, out, n + 1);
    if (n > 4 && !strcmp(p + n - 4, ".tsv")) p[n - 4] = 0;
    strcat(p, ".metrics.json");
    return p;
}

int cmd_search(int argc, char **argv) {
    static const char *const vals[] = {"gallery", "query",      "out",
                                       "k",       "model",      "metrics",
                                       "gpu-memory", "metric", CLI_EXTRACT_VALUE_OPTS, NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vals, usage);
    if (started >= 0) return started;
    const char *gdir = cli_str(&a, "gallery", NULL), *query = cli_str(&a, "query", NULL);
    const char *out = cli_str(&a, "out", NULL), *model = cli_str(&a, "model", NULL);
    const char *mpath = cli_str(&a, "metrics", NULL);
    int want_report = cli_flag(&a, "report");
    int k = (int)cli_int(&a, "k", 5, 1, 1 << 20);
    const char *metric = cli_str(&a, "metric", "cosine");
    int dot = !strcmp(metric, "dot");
    if (!dot && strcmp(metric, "cosine")) {
        fprintf(stderr, "imgsim search: --metric=%s: expected cosine or dot\n", metric);
        a.error = 1;
    }
    imgsim_engine_opts eo;
    imgsim_extract_opts xo;
    cli_engine_opts(&a, &eo);
    cli_extract_opts(&a, &xo);
    eo.prepare_gpu_decode = xo.decode != IMGSIM_DECODE_CPU; /* CUDA: nvJPEG made while the engine loads */
    imgsim_search_opts so;
    imgsim_search_opts_init(&so);
    so.threads = eo.threads;
    so.device = eo.device;
    so.device_index = eo.device_index;
    if (a.n_devices > 1) { /* the gallery's rows spread over the GPUs, top-k merged exactly */
        so.devices = a.devices;
        so.n_devices = a.n_devices;
    }
    so.gpu_memory = (size_t)cli_u64(&a, "gpu-memory", 0);
    int rc = cli_finish(&a, usage);
    if (!rc && (!gdir || !query || !out)) {
        fprintf(stderr, "imgsim search: --gallery, --query and --out are required\nusage: %s\n", usage);
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }
    imgsim_store *g = NULL, *q = NULL;
    char *tmp = NULL, *mp = NULL;
    cJSON *metrics = NULL;
    rc = 1;
    /* under mpirun every rank opens the gallery and searches its share of the rows; rank 0 makes
     * the queries, merges and writes (job_search, cli_search_ranks) */
    int bad = imgsim_store_open(&g, gdir) != IMGSIM_OK;
    if (bad) fprintf(stderr, "imgsim search: %s\n", imgsim_last_error());
    if (cli_mpi_agree("search", bad, bad ? imgsim_last_error() : NULL)) goto done;
    if (cli_mpi_size() > 1 && !eo.threads) /* the cores of this host shared by its ranks */
        so.threads = cli_mpi_threads_per_rank();
    if (cli_mpi_rank() != 0) {
        rc = job_search_worker(g, &so);
        goto done;
    }
    /* a folder holding any of a store's files is a store (an incomplete one is refused as such
     * when opened, not read as a folder of images) */
    int query_is_store = imgsim_store_exists(query);
    bad = !query_is_store && job_extract_queries(g, query, model, &eo, &xo, cli_preprocess_given(&a), &tmp);
    if (!bad && imgsim_store_open(&q, tmp ? tmp : query)) {
        fprintf(stderr, "imgsim search: %s\n", imgsim_last_error());
        bad = 1;
    }
    bad = bad || (query_is_store && job_check_compatible(g, q));
    if (bad) { /* the other ranks wait in job_search_worker for the queries: tell them to stop */
        int64_t hdr[2] = {1, 0};
        cli_mpi_bcast(hdr, sizeof hdr, 0);
        goto done;
    }
    if (job_search(g, q, k, dot, &so, out, &metrics)) goto done;
    mp = mpath ? cli_strdup(mpath) : metrics_path(out);
    if (!mp || job_write_json(mp, metrics)) goto done;
    imgsim_store_info gi, qi;
    imgsim_store_get_info(g, &gi);
    imgsim_store_get_info(q, &qi);
    cli_info("imgsim: %lld queries x %lld gallery, top-%d in %.3f s (%.0f queries/s) -> %s\n",
            (long long)qi.n, (long long)gi.n, k, cJSON_GetNumberValue(cJSON_GetObjectItem(metrics, "search_seconds")),
            cJSON_GetNumberValue(cJSON_GetObjectItem(metrics, "queries_per_s")), out);
    job_print_metrics(metrics);
    if (want_report) {
        report_opts ro;
        report_opts_init(&ro);
        ro.workers = xo.workers;
        /* failures come from the query store: the temporary one while it still exists */
        if (report_search(out, mp, gdir, tmp ? tmp : query, &ro)) goto done;
    }
    rc = 0;
done:
    cJSON_Delete(metrics);
    free(mp);
    imgsim_store_close(g);
    imgsim_store_close(q);
    if (tmp) job_remove_store(tmp);
    free(tmp);
    cli_free(&a);
    return rc;
}
