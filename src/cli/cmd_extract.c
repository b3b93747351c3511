/* cmd_extract.c: imgsim extract: features of a folder, TSV list or single image into a store. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/core.h"

static const char *usage =
    "imgsim extract --model=M.onnx --out=STORE [--device=cpu|cuda[:N]] [--precision=fp32|bf16|fp16|tf32]\n"
    "       [--batch-size=N|auto] [--workers=N] [--threads=N] [--layer=NAME] [--dtype=float32|float16]\n"
    "       [--no-normalize] [--max-pixels=N] [--no-exif-rotate] [--no-dct-scaling]\n"
    "       [--engine-cache=DIR|off] [--engine=FILE] [--decode=auto|cpu|gpu] [--quiet] INPUT";

int cmd_extract(int argc, char **argv) {
    static const char *const vals[] = {"model", "out", "layer", CLI_EXTRACT_VALUE_OPTS, NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vals, usage);
    if (started >= 0) return started;
    const char *model = cli_str(&a, "model", NULL), *out = cli_str(&a, "out", NULL);
    const char *layer = cli_str(&a, "layer", NULL);
    imgsim_engine_opts eo;
    imgsim_extract_opts xo;
    cli_engine_opts(&a, &eo);
    cli_extract_opts(&a, &xo);
    if (cli_flag(&a, "no-normalize")) eo.normalize = 0;
    const char *input = cli_pos(&a, 0);
    int rc = cli_finish(&a, usage);
    if (!rc && (!model || !out || !input)) {
        fprintf(stderr, "imgsim extract: --model, --out and INPUT are required\nusage: %s\n", usage);
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }
    imgsim_model *m = NULL;
    imgsim_engine *e = NULL;
    imgsim_status st = imgsim_model_load(&m, model, layer);
    if (st) {
        cli_free(&a);
        return cli_fail("extract", st);
    }
    imgsim_model_info mi;
    imgsim_model_get_info(m, &mi);
    xo.pre.height = mi.in_height;
    xo.pre.width = mi.in_width;
    fprintf(stderr, "imgsim: model %s: layer '%s', %d-d features, input %dx%dx%d\n", model, mi.layer, mi.dim,
            mi.in_channels, mi.in_height, mi.in_width);
    st = imgsim_engine_create(&e, m, &eo);
    imgsim_model_destroy(m);
    if (st) {
        cli_free(&a);
        return cli_fail("extract", st);
    }
    imgsim_engine_info ei;
    imgsim_engine_get_info(e, &ei);
    fprintf(stderr, "imgsim: engine %s, %s, batch %d, ready in %.2f s\n", ei.device_name,
            imgsim_precision_str(ei.precision), ei.max_batch, ei.build_seconds);
    imgsim_extract_stats s;
    st = imgsim_extract(e, model, input, out, &xo, &s);
    imgsim_engine_destroy(e);
    cli_free(&a);
    if (st) return cli_fail("extract", st);
    int workers = xo.workers > 0 ? xo.workers : 0;
    fprintf(stderr,
            "imgsim: %s: %lld images ok, %lld failed, %lld skipped in %.2f s: %.1f images/s end to end\n"
            "imgsim: stages: cpu decode+preprocess busy %.2f s (%.0f%% of %s workers), gpu decode %lld images in "
            "%.2f s, inference %.2f s, write %.2f s, waiting for workers %.2f s\n",
            out, (long long)s.ok, (long long)s.failed, (long long)s.skipped, s.seconds_total, s.images_per_s,
            s.seconds_decode_busy, s.seconds_total > 0 ? 100.0 * s.seconds_decode_busy / (s.seconds_total *
            (workers ? workers : is_num_cores())) : 0, workers ? "the" : "all",
            (long long)s.gpu_decoded, s.seconds_gpu_decode, s.seconds_infer_busy, s.seconds_write,
            s.seconds_wait_workers);
    return 0;
}
