/*
 * cmd_engine.c: imgsim engine: build and inspect CUDA engine files (imgsim's equivalent of a
 * serialized TensorRT engine).
 *
 *   imgsim engine build --model=M.onnx [--device=cuda[:N]] [--precision=fp16|tf32|fp32]
 *                       [--batch-size=N|auto] [--layer=NAME] [--out=FILE | --engine-cache=DIR]
 *   imgsim engine info FILE
 *
 * build always plans and autotunes afresh and writes the file atomically (default: into the
 * engine cache, where extract/run/search --device=cuda find it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *usage =
    "usage: imgsim engine build --model=M.onnx [--device=cuda[:N]] [--precision=fp16|tf32|fp32]\n"
    "                           [--batch-size=N|auto] [--layer=NAME] [--out=FILE | --engine-cache=DIR]\n"
    "       imgsim engine info FILE\n"
    "  --batch-size  the engine file's batch size, as extract/run/search --batch-size will ask for it\n"
    "                (default 256; auto: 256, or less where device memory is short)\n"
    "  --max-batch   the old spelling of --batch-size, kept as an alias for this release\n";

static int engine_info(int argc, char **argv) {
    cli_args a;
    if (cli_init(&a, argc, argv, NULL)) return 1;
    cli_log_opts(&a);
    const char *path = cli_pos(&a, 0);
    int rc = cli_finish(&a, usage);
    if (rc || !path) {
        cli_free(&a);
        if (!path && !rc) fputs(usage, stderr);
        return 2;
    }
    size_t len = 0;
    char *text = NULL;
    imgsim_status st = imgsim_engine_file_describe(NULL, 0, &len, path);
    if (!st && !(text = malloc(len + 1))) st = IMGSIM_ERR_NOMEM;
    if (!st) st = imgsim_engine_file_describe(text, len + 1, NULL, path);
    if (!st) {
        printf("file             %s\n", path);
        fputs(text, stdout);
    }
    free(text);
    cli_free(&a);
    return st ? cli_fail("engine", st) : 0;
}

static int engine_build(int argc, char **argv) {
    static const char *const vopts[] = {"model",  "device", "precision",    "batch-size", "max-batch",
                                        "out",    "layer",  "engine-cache", NULL};
    cli_args a;
    if (cli_init(&a, argc, argv, vopts)) return 1;
    cli_log_opts(&a);
    const char *model = cli_str(&a, "model", NULL);
    const char *dev = cli_str(&a, "device", "cuda");
    const char *prec = cli_str(&a, "precision", "fp16");
    long max_batch = cli_int(&a, "max-batch", 256, 1, 65536); /* the old spelling, an alias for a release */
    max_batch = cli_batch_size(&a, (int)max_batch);
    const char *out = cli_str(&a, "out", NULL);
    const char *layer = cli_str(&a, "layer", NULL);
    const char *cache = cli_str(&a, "engine-cache", NULL);
    if (cli_flag(&a, "help")) {
        fputs(usage, stdout);
        cli_free(&a);
        return 0;
    }
    int rc = cli_finish(&a, usage);
    if (rc) {
        cli_free(&a);
        return rc;
    }
    if (!model) {
        fprintf(stderr, "imgsim engine build: --model is required\n%s", usage);
        cli_free(&a);
        return 2;
    }
    imgsim_engine_opts o;
    imgsim_engine_opts_init(&o);
    o.device = IMGSIM_DEVICE_CUDA;
    if (strncmp(dev, "cuda", 4) || (dev[4] && dev[4] != ':')) {
        fprintf(stderr, "imgsim engine build: --device=%s: engine files are for cuda or cuda:N\n", dev);
        cli_free(&a);
        return 2;
    }
    if (dev[4] == ':') o.device_index = atoi(dev + 5);
    o.precision_set = 1;
    if (!strcmp(prec, "fp16")) o.precision = IMGSIM_PREC_FP16;
    else if (!strcmp(prec, "tf32")) o.precision = IMGSIM_PREC_TF32;
    else if (!strcmp(prec, "fp32")) o.precision = IMGSIM_PREC_FP32;
    else {
        fprintf(stderr, "imgsim engine build: --precision=%s: expected fp16, tf32 or fp32\n", prec);
        cli_free(&a);
        return 2;
    }
    o.max_batch = (int)max_batch;
    o.engine_file = out;
    o.engine_cache = cache;
    if (cache && !strcmp(cache, "off") && !out) {
        fprintf(stderr, "imgsim engine build: --engine-cache=off needs --out=FILE\n");
        cli_free(&a);
        return 2;
    }
    if (out) unlink(out); /* build means build: never reuse what is there */
    imgsim_model *m = NULL;
    imgsim_status st = imgsim_model_load(&m, model, layer);
    if (st) {
        cli_free(&a);
        return cli_fail("engine", st);
    }
    imgsim_engine *eng = NULL;
    st = imgsim_engine_create(&eng, m, &o);
    imgsim_engine_info first;
    if (!st && !imgsim_engine_get_info(eng, &first) && first.loaded_from_file) {
        /* the cache already held one: remove it and build afresh */
        char path[4096];
        snprintf(path, sizeof path, "%s", imgsim_engine_file(eng));
        imgsim_engine_destroy(eng);
        eng = NULL;
        unlink(path);
        st = imgsim_engine_create(&eng, m, &o);
    }
    imgsim_model_destroy(m);
    if (st) {
        cli_free(&a);
        return cli_fail("engine", st);
    }
    imgsim_engine_info info;
    imgsim_engine_get_info(eng, &info);
    const char *path = imgsim_engine_file(eng);
    if (!path[0] || access(path, R_OK) != 0) {
        fprintf(stderr, "imgsim engine build: the engine file was not written (see the messages above)\n");
        imgsim_engine_destroy(eng);
        cli_free(&a);
        return 1;
    }
    printf("wrote %s\n", path);
    printf("built in %.2f s on %s; %.1f MiB of device memory at batch %d\n", info.build_seconds, info.device_name,
           info.device_bytes / 1048576.0, info.max_batch);
    imgsim_engine_destroy(eng);
    cli_free(&a);
    return 0;
}

int cmd_engine(int argc, char **argv) {
    const char *verb = argc > 1 ? argv[1] : NULL;
    if (verb && !strcmp(verb, "--help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!verb || (strcmp(verb, "build") && strcmp(verb, "info"))) {
        fputs(usage, stderr);
        return 2;
    }
    return !strcmp(verb, "build") ? engine_build(argc - 1, argv + 1) : engine_info(argc - 1, argv + 1);
}
