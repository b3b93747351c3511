/*
 * cmd_bench.c: imgsim bench, in the spirit of TensorRT's trtexec: builds an engine for a model
 * and times imgsim_engine_run alone on random input after a warm-up.
 *
 *   imgsim bench --model=M.onnx [--device=cpu|cuda[:N]] [--precision=fp32|bf16|fp16|tf32|int8 [--calib=FILE]]
 *                [--batch-size=N] [--iterations=K] [--warmup=W] [--threads=N] [--layer=NAME]
 *                [--json]
 *
 * Prints images/s, the latency of one batch (median, p90, p99, min, mean), the model's load time
 * (imgsim_model_load: read, hash, import, graph passes), the engine's build time and memory, and
 * the process's peak resident set. --json prints one JSON object instead.
 *
 * For engine-only parity tests: --input=X.npy (float32 [n, C*H*W], rows are NCHW images) runs
 * those images through the engine (in batches of --batch-size) and --dump=OUT.npy writes the
 * features [n, dim]; --no-normalize skips the L2 normalisation. No timing is done then.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "imgsim bench --model=M.onnx [--device=cpu|cuda[:N]] [--precision=fp32|bf16|fp16|tf32|int8 [--calib=FILE]]\n"
    "             [--batch-size=N] [--iterations=K] [--warmup=W] [--threads=N] [--layer=NAME] [--json]\n"
    "  --model       the ONNX model\n"
    "  --device      cpu (default) or cuda[:N]\n"
    "  --precision   fp32 (CPU default), bf16 (CPU with AVX-512 BF16), fp16 (CUDA default), tf32\n"
    "                int8 (CPU, with --calib=FILE from imgsim calibrate, or a QDQ model)\n"
    "  --batch-size  images per run (default 32)\n"
    "  --iterations  timed runs (default 50)\n"
    "  --warmup      untimed runs first (default 5)\n"
    "  --threads     CPU threads (default: all cores)\n"
    "  --layer       the value whose features are computed (default: the classifier's input)\n"
    "  --json        print one JSON object\n"
    "  --input=X.npy --dump=OUT.npy [--no-normalize]\n"
    "                run the rows of X ([n, C*H*W] float32) and write the features, no timing";

/* Prints s as a JSON string. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile q (0..100) of sorted v[n]. */
static double percentile(const double *v, int n, double q) {
    int r = (int)ceil(q / 100.0 * n);
    if (r < 1) r = 1;
    if (r > n) r = n;
    return v[r - 1];
}

/* Fills x[n] with reproducible values roughly like normalised pixels (uniform in [-2, 2)). */
static void fill_random(float *x, size_t n) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
}

/* --input/--dump: features of the rows of in_path written to dump_path. */
static int run_file(imgsim_engine *eng, const imgsim_engine_info *info, const char *in_path,
                    const char *dump_path) {
    void *data = NULL;
    imgsim_dtype dt;
    int64_t rows = 0, cols = 0;
    imgsim_status s = imgsim_npy_read(&data, &dt, &rows, &cols, in_path);
    if (s) return cli_fail("bench", s);
    int64_t in_row = (int64_t)info->in_channels * info->in_height * info->in_width;
    if (dt != IMGSIM_F32 || cols != in_row || rows < 1) {
        fprintf(stderr, "imgsim bench: %s: expected float32 [n, %" PRId64 "] (n images of %dx%dx%d), got [%" PRId64
                        ", %" PRId64 "]%s\n",
                in_path, in_row, info->in_channels, info->in_height, info->in_width, rows, cols,
                dt != IMGSIM_F32 ? " float16" : "");
        imgsim_free(data);
        return 1;
    }
    float *out = cli_malloc_array((size_t)rows, (size_t)info->dim * sizeof(float));
    if (!out) {
        imgsim_free(data);
        fprintf(stderr, "imgsim bench: out of memory\n");
        return 1;
    }
    const float *x = data;
    int rc = 0;
    for (int64_t off = 0; off < rows && !rc; off += info->max_batch) {
        int n = (int)(rows - off < info->max_batch ? rows - off : info->max_batch);
        s = imgsim_engine_run(eng, x + off * in_row, n, out + off * info->dim);
        if (s) rc = cli_fail("bench", s);
    }
    if (!rc) {
        int64_t shape[2] = {rows, info->dim};
        s = imgsim_npy_write_f32(dump_path, out, shape, 2);
        if (s) rc = cli_fail("bench", s);
    }
    free(out);
    imgsim_free(data);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    static const char *const vopts[] = {"model", "device", "precision", "batch-size", "iterations", "warmup",
                                        "threads", "layer", "input", "dump", "engine-cache", "engine", "calib",
                                        NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vopts, usage);
    if (started >= 0) return started;
    const char *model = cli_str(&a, "model", NULL);
    const char *layer = cli_str(&a, "layer", NULL);
    const char *in_path = cli_str(&a, "input", NULL);
    const char *dump = cli_str(&a, "dump", NULL);
    int iters = (int)cli_int(&a, "iterations", 50, 1, 1000000);
    int warmup = (int)cli_int(&a, "warmup", 5, 0, 1000000);
    int json = cli_flag(&a, "json");
    int no_norm = cli_flag(&a, "no-normalize");
    imgsim_engine_opts eo;
    int rc = cli_engine_opts(&a, &eo);
    if (no_norm) eo.normalize = 0;
    if (!rc) rc = cli_finish(&a, usage);
    if (!rc && !model) {
        fprintf(stderr, "imgsim bench: --model is required\nusage: %s\n", usage);
        rc = 2;
    }
    if (!rc && (!in_path) != (!dump)) {
        fprintf(stderr, "imgsim bench: --input and --dump go together\n");
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }

    imgsim_model *m = NULL;
    imgsim_engine *eng = NULL;
    double t_load = cli_now();
    imgsim_status s = imgsim_model_load(&m, model, layer);
    t_load = cli_now() - t_load;
    if (s) rc = cli_fail("bench", s);
    imgsim_model_info mi;
    if (!rc && (s = imgsim_model_get_info(m, &mi))) rc = cli_fail("bench", s);
    if (!rc && (s = imgsim_engine_create(&eng, m, &eo))) rc = cli_fail("bench", s);
    imgsim_model_destroy(m); /* the engine holds what it needs */
    imgsim_engine_info info;
    if (!rc && (s = imgsim_engine_get_info(eng, &info))) rc = cli_fail("bench", s);
    if (!rc && in_path) {
        rc = run_file(eng, &info, in_path, dump);
        imgsim_engine_destroy(eng);
        cli_free(&a);
        return rc;
    }

    float *x = NULL, *y = NULL;
    double *lat = NULL;
    int batch = rc ? 0 : info.max_batch;
    size_t in_row = rc ? 0 : (size_t)info.in_channels * info.in_height * info.in_width;
    if (!rc) {
        x = cli_malloc_array((size_t)batch, in_row * sizeof(float));
        y = cli_malloc_array((size_t)batch, (size_t)info.dim * sizeof(float));
        lat = cli_malloc_array((size_t)iters, sizeof(double));
        if (!x || !y || !lat) {
            fprintf(stderr, "imgsim bench: out of memory\n");
            rc = 1;
        }
    }
    double total = 0;
    if (!rc) {
        fill_random(x, (size_t)batch * in_row);
        for (int i = 0; i < warmup && !rc; i++)
            if ((s = imgsim_engine_run(eng, x, batch, y))) rc = cli_fail("bench", s);
        for (int i = 0; i < iters && !rc; i++) {
            double t0 = cli_now();
            if ((s = imgsim_engine_run(eng, x, batch, y))) rc = cli_fail("bench", s);
            lat[i] = cli_now() - t0;
            total += lat[i];
        }
    }
    if (!rc) {
        double mean = total / iters;
        qsort(lat, (size_t)iters, sizeof(double), cmp_double);
        double med = percentile(lat, iters, 50), p90 = percentile(lat, iters, 90), p99 = percentile(lat, iters, 99);
        double ips = total > 0 ? (double)batch * iters / total : 0;
        double rss_mb = cli_peak_rss_mb();
        int threads = eo.threads > 0 ? eo.threads : cli_num_cores();
        const char *dev = info.device == IMGSIM_DEVICE_CUDA ? "cuda" : "cpu";
        if (json) {
            printf("{\"model\": ");
            json_str(stdout, model);
            printf(", \"layer\": ");
            json_str(stdout, mi.layer);
            printf(", \"dim\": %d, \"device\": \"%s\", \"device_name\": ", info.dim, dev);
            json_str(stdout, info.device_name);
            printf(", \"precision\": \"%s\", \"batch_size\": %d, \"threads\": %d, \"iterations\": %d, "
                   "\"warmup\": %d, \"images_per_s\": %.3f, \"latency_ms_median\": %.4f, \"latency_ms_p90\": %.4f, "
                   "\"latency_ms_p99\": %.4f, \"latency_ms_min\": %.4f, \"latency_ms_mean\": %.4f, "
                   "\"peak_rss_mb\": %.1f, \"load_seconds\": %.3f, \"build_seconds\": %.3f, \"device_bytes\": %zu}\n",
                   imgsim_precision_str(info.precision), batch, threads, iters, warmup, ips, med * 1e3, p90 * 1e3,
                   p99 * 1e3, lat[0] * 1e3, mean * 1e3, rss_mb, t_load, info.build_seconds, info.device_bytes);
        } else {
            printf("model:       %s (layer %s, dim %d, input %dx%dx%d)\n", model, mi.layer, info.dim,
                   info.in_channels, info.in_height, info.in_width);
            printf("engine:      %s, %s, batch %d, model loaded in %.2f s, engine built in %.2f s, %.1f MB\n",
                   info.device_name, imgsim_precision_str(info.precision), batch, t_load, info.build_seconds,
                   info.device_bytes / 1e6);
            printf("throughput:  %.2f images/s (%d iterations after %d warm-up)\n", ips, iters, warmup);
            printf("latency:     median %.2f ms, p90 %.2f ms, p99 %.2f ms, min %.2f ms, mean %.2f ms per batch\n",
                   med * 1e3, p90 * 1e3, p99 * 1e3, lat[0] * 1e3, mean * 1e3);
            printf("peak RSS:    %.1f MB\n", rss_mb);
        }
    }
    free(x);
    free(y);
    free(lat);
    imgsim_engine_destroy(eng);
    cli_free(&a);
    return rc;
}
