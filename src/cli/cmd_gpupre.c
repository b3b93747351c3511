/* cmd_gpupre.c: imgsim gpupre (hidden, for tests): preprocess files through the GPU input path
 * (nvJPEG + the fused kernel, CPU fallback) and write [n, 3, H, W] float32 to a .npy; prints one
 * line per file: "gpu|cpu|error<TAB>path<TAB>message". */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "core/core.h"
#ifdef IMGSIM_HAVE_CUDA
#include "image/cuda/gpu_image.h"
#endif

int cmd_gpupre(int argc, char **argv) {
    static const char *const vals[] = {"out", "height", "width", "device", NULL};
    cli_args a;
    if (cli_init(&a, argc, argv, vals)) return 1;
    const char *out = cli_str(&a, "out", NULL);
    imgsim_preprocess_opts pre;
    imgsim_preprocess_opts_init(&pre);
    pre.height = (int)cli_int(&a, "height", 224, 1, 65535);
    pre.width = (int)cli_int(&a, "width", 224, 1, 65535);
    int dev = (int)cli_int(&a, "device", 0, 0, 1024);
    if (cli_flag(&a, "no-exif-rotate")) pre.exif_rotate = 0;
    int n = cli_npos(&a);
    const char **paths = calloc((size_t)(n ? n : 1), sizeof *paths);
    for (int i = 0; i < n; i++) paths[i] = cli_pos(&a, i);
    int rc = cli_finish(&a, "imgsim gpupre --out=x.npy [--height=224 --width=224] FILE...");
    if (!rc && (!out || n == 0)) rc = 2;
    if (rc) {
        free(paths);
        cli_free(&a);
        return rc;
    }
#ifdef IMGSIM_HAVE_CUDA
    size_t img = (size_t)3 * pre.height * pre.width;
    float *buf = calloc((size_t)n * img, sizeof(float));
    imgsim_status *st = calloc((size_t)n, sizeof *st);
    ims_err *msg = calloc((size_t)n, sizeof *msg);
    int *on_gpu = calloc((size_t)n, sizeof *on_gpu);
    ims_err e;
    rc = 1;
    if (buf && st && msg && on_gpu) {
        imgsim_status s = ims_gpu_preprocess_files(buf, paths, n, dev, &pre, st, msg, on_gpu, &e);
        if (s) {
            fprintf(stderr, "imgsim gpupre: %s\n", e.msg);
        } else {
            for (int i = 0; i < n; i++)
                printf("%s\t%s\t%s\n", st[i] ? "error" : on_gpu[i] ? "gpu" : "cpu", paths[i], st[i] ? msg[i].msg : "");
            int64_t shape[4] = {n, 3, pre.height, pre.width};
            rc = ims_npy_write_f32(out, buf, shape, 4, &e) ? (fprintf(stderr, "imgsim gpupre: %s\n", e.msg), 1) : 0;
        }
    }
    free(buf), free(st), free(msg), free(on_gpu);
#else
    (void)dev;
    fprintf(stderr, "imgsim gpupre: imgsim was built without CUDA\n");
    rc = 1;
#endif
    free(paths);
    cli_free(&a);
    return rc;
}
