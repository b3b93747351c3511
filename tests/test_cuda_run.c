/*
 * test_cuda_run.c: a small driver of the CUDA engine for the GPU tests and benchmarks (not a
 * cmocka test itself). Loads a model through the public API, builds or loads the CUDA engine,
 * runs the images of a 2-D .npy ([n, C*H*W] float32, NCHW per row) through the asynchronous slot
 * path (submit/collect, alternating slots) and writes the features as .npy; optionally times
 * the forward pass on device-resident input at several batch sizes.
 *
 *   test_cuda_run --model=M.onnx [--precision=fp16|tf32|fp32] [--max-batch=N] [--batch=N]
 *                 [--input=x.npy --out=f.npy] [--engine-cache=DIR|off] [--engine-file=F]
 *                 [--layer=NAME] [--bench=1,32,256] [--iters=N]
 * Prints key=value lines. Exit 77 when no CUDA device is present.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/core.h"
#include "imgsim.h"

static const char *arg(int argc, char **argv, const char *name, const char *def) {
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--", 2) && !strncmp(argv[i] + 2, name, n) && argv[i][2 + n] == '=')
            return argv[i] + 3 + n;
    return def;
}

static int fail(const char *what) {
    fprintf(stderr, "test_cuda_run: %s: %s\n", what, imgsim_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (!ims_cuda_available()) {
        fprintf(stderr, "test_cuda_run: no CUDA device; skipping\n");
        return 77;
    }
    const char *model = arg(argc, argv, "model", NULL);
    if (!model) {
        fprintf(stderr, "usage: test_cuda_run --model=M.onnx [options]\n");
        return 2;
    }
    if (arg(argc, argv, "verbose", NULL)) imgsim_set_log_level(IMGSIM_LOG_DEBUG);
    const char *prec = arg(argc, argv, "precision", "fp16");
    imgsim_engine_opts o;
    imgsim_engine_opts_init(&o);
    o.device = IMGSIM_DEVICE_CUDA;
    o.precision_set = 1;
    o.precision = !strcmp(prec, "fp32") ? IMGSIM_PREC_FP32 : !strcmp(prec, "tf32") ? IMGSIM_PREC_TF32 : IMGSIM_PREC_FP16;
    o.max_batch = atoi(arg(argc, argv, "max-batch", "32"));
    o.engine_cache = arg(argc, argv, "engine-cache", "off");
    o.engine_file = arg(argc, argv, "engine-file", NULL);
    int batch = atoi(arg(argc, argv, "batch", "0"));
    if (batch <= 0 || batch > o.max_batch) batch = o.max_batch;

    double t0 = ims_now(), t1, t2;
    imgsim_engine *eng = NULL;
    if (arg(argc, argv, "fast-load", NULL)) {
        /* imgsim_engine_load: a cached engine file is loaded without importing the model */
        if (imgsim_engine_load(&eng, model, arg(argc, argv, "layer", NULL), &o)) return fail("engine load");
        t1 = t0;
        t2 = ims_now();
    } else {
        imgsim_model *m = NULL;
        if (imgsim_model_load(&m, model, arg(argc, argv, "layer", NULL))) return fail("model load");
        t1 = ims_now();
        if (imgsim_engine_create(&eng, m, &o)) return fail("engine create");
        t2 = ims_now();
        imgsim_model_destroy(m);
    }
    imgsim_engine_info info;
    imgsim_engine_get_info(eng, &info);
    ims_backend *b = eng->b;
    printf("gpu=%s\nprecision=%s\nmax_batch=%d\ndim=%d\ndevice_bytes=%zu\nloaded_from_file=%d\n", info.device_name,
           prec, info.max_batch, info.dim, info.device_bytes, info.loaded_from_file);
    printf("model_load_seconds=%.4f\nengine_seconds=%.4f\nengine_file=%s\nmodel_imported=%d\n", t1 - t0, t2 - t1,
           ims_cuda_engine_path(b), info.model_imported);

    const char *in_path = arg(argc, argv, "input", NULL), *out_path = arg(argc, argv, "out", NULL);
    if (in_path && out_path) {
        void *data = NULL;
        imgsim_dtype dt;
        int64_t rows = 0, cols = 0;
        ims_err e;
        if (ims_npy_read(&data, &dt, &rows, &cols, in_path, &e) || dt != IMGSIM_F32) {
            fprintf(stderr, "test_cuda_run: %s: %s\n", in_path, dt != IMGSIM_F32 ? "not float32" : e.msg);
            return 1;
        }
        int64_t per = (int64_t)b->in_c * b->in_h * b->in_w;
        if (cols != per) {
            fprintf(stderr, "test_cuda_run: %s: %lld columns, the model takes %lld\n", in_path, (long long)cols,
                    (long long)per);
            return 1;
        }
        float *feat = ims_malloc_array((size_t)rows * (size_t)b->dim, sizeof(float));
        if (!feat) return fail("out of memory");
        /* pipeline through the slots: submit batch k, then collect batch k-1 */
        int nb = (int)((rows + batch - 1) / batch);
        int first_done = 0;
        for (int k = 0; k <= nb; k++) {
            if (k < nb) {
                int slot = k % b->ops->n_slots;
                int n = (int)(rows - (int64_t)k * batch < batch ? rows - (int64_t)k * batch : batch);
                memcpy(b->ops->input_buffer(b, slot), (float *)data + (int64_t)k * batch * per,
                       (size_t)n * per * sizeof(float));
                if (b->ops->submit(b, slot, n, &e)) {
                    fprintf(stderr, "test_cuda_run: submit: %s\n", e.msg);
                    return 1;
                }
            }
            if (k > 0) {
                int pk = k - 1;
                if (b->ops->collect(b, pk % b->ops->n_slots, feat + (int64_t)pk * batch * b->dim, &e)) {
                    fprintf(stderr, "test_cuda_run: collect: %s\n", e.msg);
                    return 1;
                }
                if (!first_done) {
                    printf("first_batch_seconds=%.4f\n", ims_now() - t1);
                    first_done = 1;
                }
            }
        }
        int64_t shape[2] = {rows, b->dim};
        if (ims_npy_write_f32(out_path, feat, shape, 2, &e)) {
            fprintf(stderr, "test_cuda_run: %s\n", e.msg);
            return 1;
        }
        printf("rows=%lld\n", (long long)rows);
        free(feat);
        free(data);
    }

    const char *bench = arg(argc, argv, "bench", NULL);
    int iters = atoi(arg(argc, argv, "iters", "50"));
    while (bench && *bench) {
        int n = atoi(bench);
        if (n >= 1 && n <= info.max_batch) {
            double ms = 0;
            ims_err e;
            int it = n == 1 ? iters * 4 : iters;
            if (ims_cuda_bench_device(b, n, it, &ms, &e)) {
                fprintf(stderr, "test_cuda_run: bench: %s\n", e.msg);
                return 1;
            }
            printf("bench batch=%d ms=%.4f img_s=%.1f\n", n, ms, n * 1000.0 / ms);
        }
        const char *comma = strchr(bench, ',');
        bench = comma ? comma + 1 : NULL;
    }
    imgsim_engine_destroy(eng);
    return 0;
}
