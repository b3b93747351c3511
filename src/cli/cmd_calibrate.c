/* cmd_calibrate.c: imgsim calibrate: int8 scales of a model's tensors from sample images, into a
 * calibration file for --precision=int8 --calib=FILE. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *usage =
    "imgsim calibrate --model=M.onnx --out=M.calib [--images=512] [--method=entropy|percentile|minmax]\n"
    "       [--percentile=99.99] [--layer=NAME] [--batch-size=N] [--threads=N] [--max-pixels=N]\n"
    "       [--no-exif-rotate] [--no-dct-scaling] [--resize=HxW|shorter:S] [--crop=HxW|N]\n"
    "       [--interp=bilinear|bicubic] [--mean=R,G,B] [--std=R,G,B] [--quiet] INPUT\n"
    "  runs the float32 CPU engine over up to --images images of INPUT (spread evenly over the sorted\n"
    "  listing), decoded and preprocessed as extract does, and writes each convolution tensor's int8\n"
    "  scale (entropy: TensorRT's KL-divergence calibration; percentile of |x|; minmax: max |x|)";

int cmd_calibrate(int argc, char **argv) {
    static const char *const vals[] = {"model", "out", "layer", "images", "method", "percentile", "batch-size",
                                       "threads", "max-pixels", CLI_PREPROCESS_VALUE_OPTS, NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vals, usage);
    if (started >= 0) return started;
    const char *model = cli_str(&a, "model", NULL), *out = cli_str(&a, "out", NULL);
    const char *layer = cli_str(&a, "layer", NULL);
    imgsim_calib_opts co;
    imgsim_calib_opts_init(&co);
    co.images = (int)cli_int(&a, "images", co.images, 1, 100000000);
    co.percentile = cli_double(&a, "percentile", co.percentile, 1e-9, 100);
    co.batch_size = cli_batch_size(&a, co.batch_size);
    if (co.batch_size <= 0) co.batch_size = 32;
    co.threads = (int)cli_int(&a, "threads", 0, 0, 4096);
    co.pre.max_pixels = cli_u64(&a, "max-pixels", co.pre.max_pixels);
    if (cli_flag(&a, "no-exif-rotate")) co.pre.exif_rotate = 0;
    if (cli_flag(&a, "no-dct-scaling")) co.pre.dct_scaling = 0;
    co.quiet = cli_flag(&a, "quiet");
    const int pre_given = cli_preprocess_opts(&a, &co.pre);
    const char *method = cli_str(&a, "method", "entropy");
    int rc = 0;
    if (!strcmp(method, "entropy")) co.method = IMGSIM_CALIB_ENTROPY;
    else if (!strcmp(method, "percentile")) co.method = IMGSIM_CALIB_PERCENTILE;
    else if (!strcmp(method, "minmax")) co.method = IMGSIM_CALIB_MINMAX;
    else {
        fprintf(stderr, "imgsim calibrate: --method=%s: expected entropy, percentile or minmax\n", method);
        rc = 2;
    }
    const char *input = cli_pos(&a, 0);
    if (!rc) rc = cli_finish(&a, usage);
    if (!rc && (!model || !out || !input)) {
        fprintf(stderr, "imgsim calibrate: --model, --out and INPUT are required\nusage: %s\n", usage);
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }
    imgsim_model *m = NULL;
    imgsim_calib *c = NULL;
    double t0 = cli_now();
    imgsim_status st = imgsim_model_load(&m, model, layer);
    imgsim_model_info mi;
    if (!st && !(st = imgsim_model_get_info(m, &mi)) && (pre_given & CLI_PRE_CROP) &&
        (co.pre.height != mi.in_height || co.pre.width != mi.in_width)) {
        fprintf(stderr, "imgsim calibrate: --crop=%dx%d is not the model's input %dx%d\n", co.pre.height, co.pre.width,
                mi.in_height, mi.in_width);
        imgsim_model_destroy(m);
        cli_free(&a);
        return 1;
    }
    if (!st) cli_preprocess_fit(&co.pre, pre_given, mi.in_height, mi.in_width);
    if (!st) st = imgsim_calibrate(&c, m, input, &co);
    if (!st) st = imgsim_calib_save(c, out);
    if (!st) {
        imgsim_calib_info ci;
        imgsim_calib_get_info(c, &ci);
        cli_info("imgsim: %s: %d tensors of layer '%s' calibrated on %d images (%s) in %.1f s\n", out, ci.n_tensors,
                 ci.layer, ci.images, method, cli_now() - t0);
    }
    imgsim_calib_destroy(c);
    imgsim_model_destroy(m);
    cli_free(&a);
    return st ? cli_fail("calibrate", st) : 0;
}
