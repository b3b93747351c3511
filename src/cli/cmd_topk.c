/*
 * cmd_topk.c: imgsim topk: exact top-k over raw .npy matrices, for tests and benchmarks
 * (the user-facing command is imgsim search, which works on feature stores).
 *
 *   imgsim topk --gallery=G.npy --query=Q.npy --k=N [--threads=T] [--device=cpu|cuda[:N]]
 *               [--gpu-memory=BYTES] --out-idx=I.npy --out-score=S.npy [--time]
 *
 * G [n, dim] and Q [q, dim] are float32 or float16 (the same type). Writes I [q, k] int64
 * (gallery rows, -1 past n) and S [q, k] float32 (-inf past n). --time prints
 * "search_seconds <s>" (the search call alone, no file IO), "search_cpu_seconds <s>" (user + system
 * CPU time of the process during the call, all threads) and "queries_per_second <n>" on stdout.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"

static const char usage[] =
    "imgsim topk --gallery=G.npy --query=Q.npy --k=N [--threads=T] [--device=cpu|cuda[:N]]\n"
    "            [--gpu-memory=BYTES] --out-idx=I.npy --out-score=S.npy [--time]\n"
    "  exact top-k by inner product of raw .npy matrices (float32 or float16, same type);\n"
    "  I.npy: int64 [q, k] gallery rows (-1 where k > n), S.npy: float32 [q, k] (-inf there)";

/* User + system CPU seconds of this process so far (all threads). */
static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* Writes a 2-D little-endian int64 .npy file atomically. 0, or -1 (the error printed). */
static int npy_write_i64(const char *path, const int64_t *data, int64_t rows, int64_t cols) {
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr,
                      "{'descr': '<i8', 'fortran_order': False, 'shape': (%" PRId64 ", %" PRId64 "), }", rows,
                      cols);
    /* magic(6) + version(2) + len(2) + header, padded with spaces to a multiple of 64, ending '\n' */
    int total = 10 + hl + 1;
    int pad = (64 - total % 64) % 64;
    cli_atomic af;
    if (cli_atomic_open(&af, "topk", path)) return -1;
    uint16_t len = (uint16_t)(hl + pad + 1);
    unsigned char pre[10] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(len & 0xff), (unsigned char)(len >> 8)};
    int ok = fwrite(pre, 1, 10, af.f) == 10 && fwrite(hdr, 1, (size_t)hl, af.f) == (size_t)hl;
    for (int i = 0; ok && i < pad; i++)
        ok = fputc(' ', af.f) != EOF;
    ok = ok && fputc('\n', af.f) != EOF;
    size_t cnt = (size_t)rows * (size_t)cols;
    ok =
        ok && (cnt == 0 || fwrite(data, sizeof(int64_t), cnt, af.f) == cnt); /* x86-64/arm64: little-endian */
    if (!ok) {
        cli_atomic_abort(&af);
        fprintf(stderr, "imgsim topk: %s: write failed\n", path);
        return -1;
    }
    return cli_atomic_commit(&af, "topk");
}

int cmd_topk(int argc, char **argv) {
    static const char *const value_opts[] = {"gallery",    "query",   "k",         "threads", "device",
                                             "gpu-memory", "out-idx", "out-score", NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, value_opts, usage);
    if (started >= 0) return started;
    const char *gpath = cli_str(&a, "gallery", NULL), *qpath = cli_str(&a, "query", NULL);
    const char *ipath = cli_str(&a, "out-idx", NULL), *spath = cli_str(&a, "out-score", NULL);
    int k = (int)cli_int(&a, "k", 5, 1, 1 << 20);
    imgsim_search_opts so;
    imgsim_search_opts_init(&so);
    so.threads = (int)cli_int(&a, "threads", 0, 0, 4096);
    so.gpu_memory = (size_t)cli_u64(&a, "gpu-memory", 0);
    int timing = cli_flag(&a, "time");
    const char *dev = cli_str(&a, "device", "cpu");
    if (!strcmp(dev, "cuda")) {
        so.device = IMGSIM_DEVICE_CUDA;
    } else if (!strncmp(dev, "cuda:", 5)) {
        so.device = IMGSIM_DEVICE_CUDA;
        char *end;
        long d = strtol(dev + 5, &end, 10);
        if (end == dev + 5 || *end || d < 0 || d > 1024) {
            fprintf(stderr, "imgsim topk: --device=%s: expected cpu, cuda or cuda:N\n", dev);
            a.error = 1;
        }
        so.device_index = (int)d;
    } else if (strcmp(dev, "cpu")) {
        fprintf(stderr, "imgsim topk: --device=%s: expected cpu, cuda or cuda:N\n", dev);
        a.error = 1;
    }
    int rc = cli_finish(&a, usage);
    if (!rc && (!gpath || !qpath || !ipath || !spath)) {
        fprintf(stderr,
                "imgsim topk: --gallery, --query, --out-idx and --out-score are required\nusage: %s\n",
                usage);
        rc = 2;
    }
    cli_free(&a);
    if (rc) return rc;

    void *g = NULL, *q = NULL;
    int64_t *idx = NULL;
    float *score = NULL;
    imgsim_dtype gt, qt;
    int64_t n, gd, nq, qd;
    char why[1024] = ""; /* a failure of the command's own (else the library's message) */
    imgsim_status st = imgsim_npy_read(&g, &gt, &n, &gd, gpath);
    if (st == IMGSIM_OK) st = imgsim_npy_read(&q, &qt, &nq, &qd, qpath);
    if (st == IMGSIM_OK && gt != qt)
        st = IMGSIM_ERR_MISMATCH,
        snprintf(why, sizeof why, "%s, %s: gallery and queries must have the same element type", gpath, qpath);
    if (st == IMGSIM_OK && gd != qd)
        st = IMGSIM_ERR_MISMATCH, snprintf(why, sizeof why, "%s: %lld columns, %s: %lld columns", gpath,
                                           (long long)gd, qpath, (long long)qd);
    if (st == IMGSIM_OK && (gd < 1 || gd > (1 << 24)))
        st = IMGSIM_ERR_UNSUPPORTED,
        snprintf(why, sizeof why, "%s: %lld columns (expected 1..16777216)", gpath, (long long)gd);
    if (st == IMGSIM_OK) {
        idx = cli_malloc_array((size_t)(nq ? nq : 1) * (size_t)k, sizeof *idx);
        score = cli_malloc_array((size_t)(nq ? nq : 1) * (size_t)k, sizeof *score);
        if (!idx || !score)
            st = IMGSIM_ERR_NOMEM,
            snprintf(why, sizeof why, "topk: out of memory for %lld x %d results", (long long)nq, k);
    }
    double t0 = cli_now(), c0 = cpu_seconds(), secs = 0, cpu = 0;
    if (st == IMGSIM_OK) {
        st = imgsim_search(idx, score, g, n, q, nq, (int)gd, gt, k, &so);
        secs = cli_now() - t0;
        cpu = cpu_seconds() - c0;
    }
    imgsim_free(g);
    imgsim_free(q);
    int64_t shape[2] = {nq, k};
    int written = 0; /* npy_write_i64 prints its own failure */
    if (st == IMGSIM_OK && npy_write_i64(ipath, idx, nq, k)) st = IMGSIM_ERR_IO, written = 1;
    if (st == IMGSIM_OK) st = imgsim_npy_write_f32(spath, score, shape, 2);
    free(idx);
    free(score);
    if (written) return 1;
    if (why[0]) {
        fprintf(stderr, "imgsim topk: %s\n", why);
        return 1;
    }
    if (st != IMGSIM_OK) return cli_fail("topk", st);
    if (timing) {
        printf("search_seconds %.6f\n", secs);
        printf("search_cpu_seconds %.6f\n", cpu);
        printf("queries_per_second %.3f\n", secs > 0 ? (double)nq / secs : 0.0);
    }
    return 0;
}
