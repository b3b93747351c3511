/*
 * test_gpusearch_bench.c: timing driver of bench/search_gpu.sh (built as gpusearch_bench in
 * CUDA builds; not a test and not installed). Reads a gallery and queries (.npy, float16 or
 * float32), builds the CUDA search handle (timed: upload), runs the whole query set `reps` times
 * (median), a batch-1 latency series, and writes the first run's rows as raw int64 for the
 * Python side to check against its exact float64 reference.
 *
 *   gpusearch_bench --gallery=G.npy --query=Q.npy --k=10 [--gpu-memory=BYTES] [--reps=3]
 *                   [--latency=50] [--out-idx=I.bin] [--label=NAME] [--variants=QB:TILE,...]
 *
 * Prints "NAME key value" lines.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "search/cuda/search_cuda.h"

static const char *opt(int argc, char **argv, const char *name, const char *def) {
    size_t l = strlen(name);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--", 2) && !strncmp(argv[i] + 2, name, l) && argv[i][2 + l] == '=') return argv[i] + 3 + l;
    return def;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *gpath = opt(argc, argv, "gallery", NULL), *qpath = opt(argc, argv, "query", NULL);
    const char *opath = opt(argc, argv, "out-idx", NULL), *label = opt(argc, argv, "label", "imgsim");
    int k = atoi(opt(argc, argv, "k", "10"));
    int reps = atoi(opt(argc, argv, "reps", "3"));
    int nlat = atoi(opt(argc, argv, "latency", "50"));
    size_t cap = (size_t)strtoull(opt(argc, argv, "gpu-memory", "0"), NULL, 10);
    if (!gpath || !qpath || k < 1 || reps < 1 || reps > 100 || nlat < 0 || nlat > 10000) {
        fprintf(stderr, "usage: gpusearch_bench --gallery=G.npy --query=Q.npy --k=N [--gpu-memory=B] [--reps=R] "
                        "[--latency=L] [--out-idx=I.bin] [--label=NAME]\n");
        return 2;
    }
    ims_err e;
    memset(&e, 0, sizeof e);
    void *g = NULL, *q = NULL;
    imgsim_dtype gt, qt;
    int64_t n, gd, nq, qd;
    double t0 = ims_now();
    if (ims_npy_read(&g, &gt, &n, &gd, gpath, &e) || ims_npy_read(&q, &qt, &nq, &qd, qpath, &e)) {
        fprintf(stderr, "gpusearch_bench: %s\n", e.msg);
        return 1;
    }
    if (gt != qt || gd != qd) {
        fprintf(stderr, "gpusearch_bench: gallery and queries differ in type or width\n");
        return 1;
    }
    printf("%s read_seconds %.3f\n", label, ims_now() - t0);
    int64_t *idx = malloc((size_t)nq * (size_t)k * sizeof *idx);
    float *score = malloc((size_t)nq * (size_t)k * sizeof *score);
    if (!idx || !score) return 1;
    ims_gsearch *h = NULL;
    t0 = ims_now();
    if (ims_gsearch_create(&h, g, n, (int)gd, gt, 0, cap, &e)) {
        fprintf(stderr, "gpusearch_bench: %s\n", e.msg);
        return 1;
    }
    printf("%s create_seconds %.4f\n%s resident %d\n", label, ims_now() - t0, label, ims_gsearch_resident(h));
    /* warm-up: cuBLAS heuristics, module load */
    int64_t nw = nq < 2048 ? nq : 2048;
    if (ims_gsearch_run(h, idx, score, q, nw, k, &e)) {
        fprintf(stderr, "gpusearch_bench: %s\n", e.msg);
        return 1;
    }
    double times[100];
    for (int r = 0; r < reps; r++) {
        t0 = ims_now();
        if (ims_gsearch_run(h, idx, score, q, nq, k, &e)) {
            fprintf(stderr, "gpusearch_bench: %s\n", e.msg);
            return 1;
        }
        times[r] = ims_now() - t0;
        if (r == 0 && opath) {
            FILE *f = fopen(opath, "wb");
            if (!f || fwrite(idx, sizeof *idx, (size_t)nq * (size_t)k, f) != (size_t)nq * (size_t)k) return 1;
            fclose(f);
        }
        int64_t c1, c2, c3;
        ims_gsearch_counts(h, &c1, &c2, &c3);
        printf("%s run%d_seconds %.5f (first pass %lld, wide pass %lld, cpu %lld)\n", label, r, times[r],
               (long long)c1, (long long)c2, (long long)c3);
    }
    qsort(times, (size_t)reps, sizeof(double), cmp_double);
    printf("%s search_seconds %.5f\n%s queries_per_second %.1f\n", label, times[reps / 2], label,
           (double)nq / times[reps / 2]);
    if (nlat > 0) {
        double *lat = malloc((size_t)nlat * sizeof *lat);
        if (!lat) return 1;
        for (int i = 0; i < nlat; i++) {
            t0 = ims_now();
            if (ims_gsearch_run(h, idx, score, (const char *)q + (size_t)(i % nq) * (size_t)gd * (gt == IMGSIM_F16 ? 2 : 4),
                               1, k, &e)) {
                fprintf(stderr, "gpusearch_bench: %s\n", e.msg);
                return 1;
            }
            lat[i] = ims_now() - t0;
        }
        qsort(lat, (size_t)nlat, sizeof(double), cmp_double);
        printf("%s latency_ms_median %.3f\n%s latency_ms_p90 %.3f\n", label, lat[nlat / 2] * 1e3, label,
               lat[(nlat * 9) / 10] * 1e3);
        free(lat);
    }
    ims_gsearch_free(h);
    /* tuning variants "QB:TILE,...": queries per GEMM and scores per tile (IMGSIM_GS_QB/_TILE) */
    const char *var = opt(argc, argv, "variants", NULL);
    while (var && *var) {
        char qbs[32] = "", tls[32] = "";
        if (sscanf(var, "%31[0-9]:%31[0-9]", qbs, tls) != 2) break;
        setenv("IMGSIM_GS_QB", qbs, 1);
        setenv("IMGSIM_GS_TILE", tls, 1);
        ims_tuning_reload(); /* the knobs are read once */
        if (ims_gsearch_create(&h, g, n, (int)gd, gt, 0, cap, &e) || ims_gsearch_run(h, idx, score, q, nw, k, &e)) {
            fprintf(stderr, "gpusearch_bench: %s\n", e.msg);
            return 1;
        }
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            t0 = ims_now();
            if (ims_gsearch_run(h, idx, score, q, nq, k, &e)) return 1;
            double t = ims_now() - t0;
            best = t < best ? t : best;
        }
        printf("%s variant qb=%s tile=%s best_seconds %.5f queries_per_second %.1f\n", label, qbs, tls, best,
               (double)nq / best);
        ims_gsearch_free(h);
        var = strchr(var, ',');
        if (var) var++;
    }
    free(g), free(q), free(idx), free(score);
    return 0;
}
