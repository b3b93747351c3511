/* api.c: the public preprocessing calls of imgsim.h (imgsim_preprocess_*, imgsim_preprocess_rgb). */
#include <string.h>

#include "image/image.h"

void imgsim_preprocess_opts_init(imgsim_preprocess_opts *opt) {
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->height = 224;
    opt->width = 224;
    opt->mean[0] = 0.485f, opt->mean[1] = 0.456f, opt->mean[2] = 0.406f;
    opt->std[0] = 0.229f, opt->std[1] = 0.224f, opt->std[2] = 0.225f;
    opt->max_pixels = 89478485u; /* PIL's Image.MAX_IMAGE_PIXELS */
    opt->exif_rotate = 1;
    opt->dct_scaling = 0; /* opt-in (--fast-decode): it is not PIL's full decode (README) */
}

imgsim_status imgsim_preprocess_file(float *out, const char *path, const imgsim_preprocess_opts *opt) {
    if (!out || !path) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_preprocess_file: out and path must not be NULL");
    imgsim_preprocess_opts def;
    if (!opt) {
        imgsim_preprocess_opts_init(&def);
        opt = &def;
    }
    return ims_preprocess_file(out, path, opt, NULL);
}

imgsim_status imgsim_preprocess_mem(float *out, const void *data, size_t size, const imgsim_preprocess_opts *opt) {
    if (!out || (!data && size)) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_preprocess_mem: out and data must not be NULL");
    imgsim_preprocess_opts def;
    if (!opt) {
        imgsim_preprocess_opts_init(&def);
        opt = &def;
    }
    return ims_preprocess_mem(out, data, size, opt, "<memory>", NULL);
}

imgsim_status imgsim_preprocess_rgb(float *out, const uint8_t *rgb, int width, int height,
                                    const imgsim_preprocess_opts *opt) {
    if (!out || !rgb) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_preprocess_rgb: out and rgb must not be NULL");
    if (width < 1 || height < 1)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_preprocess_rgb: image of %d x %d pixels", width, height);
    imgsim_preprocess_opts def;
    if (!opt) {
        imgsim_preprocess_opts_init(&def);
        opt = &def;
    }
    ims_image img = {width, height, (uint8_t *)rgb}; /* read only */
    ims_pre_geom g;
    imgsim_status st = ims_pre_geometry(&g, opt, width, height, NULL);
    if (st) return st;
    return ims_preprocess_rgb_geom(out, &img, &g, opt->mean, opt->std, NULL, NULL);
}
