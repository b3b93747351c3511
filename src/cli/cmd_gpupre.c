/* cmd_gpupre.c: imgsim gpupre (hidden, for tests): preprocess files through the GPU input path
 * (nvJPEG + the fused kernel, CPU fallback) and write [n, 3, H, W] float32 to a .npy; prints one
 * line per file: "gpu|cpu|error<TAB>path<TAB>message". */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int cmd_gpupre(int argc, char **argv) {
    static const char *const vals[] = {"out", "height", "width", "device", CLI_PREPROCESS_VALUE_OPTS, NULL};
    cli_args a;
    if (cli_init(&a, argc, argv, vals)) return 1;
    const char *out = cli_str(&a, "out", NULL);
    imgsim_preprocess_opts pre;
    imgsim_preprocess_opts_init(&pre);
    pre.height = (int)cli_int(&a, "height", 224, 1, 65535);
    pre.width = (int)cli_int(&a, "width", 224, 1, 65535);
    (void)cli_preprocess_opts(&a, &pre); /* --crop sets height and width */
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
    size_t img = (size_t)3 * pre.height * pre.width;
    float *buf = calloc((size_t)n * img, sizeof(float));
    imgsim_file_result *res = calloc((size_t)n, sizeof *res);
    rc = 1;
    if (buf && res) {
        imgsim_status s = imgsim_preprocess_files_gpu(buf, res, paths, n, dev, &pre);
        if (s) {
            rc = cli_fail("gpupre", s);
        } else {
            for (int i = 0; i < n; i++)
                printf("%s\t%s\t%s\n", res[i].status ? "error" : res[i].on_gpu ? "gpu" : "cpu", paths[i],
                       res[i].message);
            int64_t shape[4] = {n, 3, pre.height, pre.width};
            s = imgsim_npy_write_f32(out, buf, shape, 4);
            rc = s ? cli_fail("gpupre", s) : 0;
        }
    }
    free(buf), free(res);
    free(paths);
    cli_free(&a);
    return rc;
}
