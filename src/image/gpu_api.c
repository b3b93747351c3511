/* gpu_api.c: imgsim_preprocess_files_gpu, the public door to the GPU input path
 * (image/cuda/gpu_image.h) for tests and inspection; NO_DEVICE where CUDA is not built in. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "image/image.h"
#ifdef IMGSIM_HAVE_CUDA
#include "image/cuda/gpu_image.h"
#endif

imgsim_status imgsim_preprocess_files_gpu(float *out, imgsim_file_result *res, const char *const *paths, int n,
                                          int device_index, const imgsim_preprocess_opts *opt) {
    if (!out || !res || !paths || n < 1)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_preprocess_files_gpu: NULL argument or no files");
    imgsim_preprocess_opts def;
    if (!opt) {
        imgsim_preprocess_opts_init(&def);
        opt = &def;
    }
    imgsim_status cs = ims_preprocess_check(opt, NULL);
    if (cs) return cs;
    if (!ims_pre_is_plain(opt)) { /* the kernel resizes straight to the output size, bilinear */
        char d[128];
        imgsim_preprocess_opts_describe(d, sizeof d, opt);
        return ims_fail(NULL, IMGSIM_ERR_UNSUPPORTED,
                        "imgsim_preprocess_files_gpu: the GPU preprocessing resizes straight to %dx%d with the "
                        "bilinear filter, not '%s' (a CUDA extraction preprocesses such images on the CPU)",
                        opt->height, opt->width, d);
    }
#ifdef IMGSIM_HAVE_CUDA
    imgsim_status *st = ims_calloc((size_t)n, sizeof *st);
    ims_err *msg = ims_calloc((size_t)n, sizeof *msg);
    int *on_gpu = ims_calloc((size_t)n, sizeof *on_gpu);
    imgsim_status s = st && msg && on_gpu ? IMGSIM_OK : ims_fail(NULL, IMGSIM_ERR_NOMEM, "out of memory");
    if (!s) s = ims_gpu_preprocess_files(out, paths, n, device_index, opt, st, msg, on_gpu, NULL);
    for (int i = 0; i < n && !s; i++) {
        res[i].status = st[i];
        res[i].on_gpu = on_gpu[i];
        snprintf(res[i].message, sizeof res[i].message, "%s", st[i] ? msg[i].msg : "");
    }
    free(st), free(msg), free(on_gpu);
    return s;
#else
    (void)device_index;
    return ims_fail(NULL, IMGSIM_ERR_NO_DEVICE, "imgsim was built without CUDA");
#endif
}
