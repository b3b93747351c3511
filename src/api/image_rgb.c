/*
 * image_rgb.c: the public decoded-image calls of imgsim.h (imgsim_image_load_rgb,
 * imgsim_image_decode_rgb): decode with imgsim's own decoders, then a box-filter shrink to fit a
 * bounding square. Used for thumbnails and previews, not for the network's input.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "image/image.h"

#define MAX_FILE_BYTES ((uint64_t)1 << 31) /* as the preprocessing path: files over 2 GiB are refused */

/* Shrinks src (sw x sh RGB8) to dw x dh: each output pixel is the mean of the source block
 * [x0, x1) x [y0, y1) under it (integer block edges, every source pixel in exactly one block). */
static void box_shrink(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh) {
    for (int oy = 0; oy < dh; oy++) {
        int y0 = (int)((int64_t)oy * sh / dh), y1 = (int)((int64_t)(oy + 1) * sh / dh);
        if (y1 <= y0) y1 = y0 + 1;
        for (int ox = 0; ox < dw; ox++) {
            int x0 = (int)((int64_t)ox * sw / dw), x1 = (int)((int64_t)(ox + 1) * sw / dw);
            if (x1 <= x0) x1 = x0 + 1;
            uint64_t acc[3] = {0, 0, 0};
            for (int y = y0; y < y1; y++) {
                const uint8_t *p = src + ((size_t)y * sw + x0) * 3;
                for (int x = x0; x < x1; x++, p += 3) acc[0] += p[0], acc[1] += p[1], acc[2] += p[2];
            }
            uint64_t n = (uint64_t)(y1 - y0) * (uint64_t)(x1 - x0);
            uint8_t *d = dst + ((size_t)oy * dw + ox) * 3;
            for (int c = 0; c < 3; c++) d[c] = (uint8_t)((acc[c] + n / 2) / n);
        }
    }
}

static imgsim_status decode_fit(uint8_t **out_rgb, int *width, int *height, const uint8_t *buf, size_t len,
                                int max_side, const imgsim_preprocess_opts *opt, const char *name) {
    imgsim_preprocess_opts def;
    if (!opt) {
        imgsim_preprocess_opts_init(&def);
        opt = &def;
    }
    ims_decode_opts d;
    memset(&d, 0, sizeof d);
    d.max_pixels = opt->max_pixels;
    d.exif_rotate = opt->exif_rotate;
    d.dct_scaling = opt->dct_scaling && max_side > 0;
    d.target_w = d.target_h = max_side;
    ims_image img;
    imgsim_status st = ims_image_decode(&img, buf, len, &d, name, NULL);
    if (st != IMGSIM_OK) return st;
    int w = img.w, h = img.h;
    if (max_side > 0 && (w > max_side || h > max_side)) {
        int dw = w >= h ? max_side : (int)(((int64_t)w * max_side + h / 2) / h);
        int dh = h > w ? max_side : (int)(((int64_t)h * max_side + w / 2) / w);
        if (dw < 1) dw = 1;
        if (dh < 1) dh = 1;
        uint8_t *small = ims_malloc_array((size_t)dw * dh, 3);
        if (!small) {
            ims_image_free(&img);
            return ims_fail(NULL, IMGSIM_ERR_NOMEM, "%s: out of memory shrinking to %dx%d", name, dw, dh);
        }
        box_shrink(small, dw, dh, img.px, w, h);
        ims_image_free(&img);
        img.px = small;
        w = dw, h = dh;
    }
    *out_rgb = img.px;
    *width = w;
    *height = h;
    return IMGSIM_OK;
}

static imgsim_status check_out(uint8_t **out_rgb, int *width, int *height, int max_side, const char *fn) {
    if (!out_rgb || !width || !height)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "%s: out_rgb, width and height must not be NULL", fn);
    *out_rgb = NULL;
    *width = *height = 0;
    if (max_side < 0) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "%s: max_side %d is negative", fn, max_side);
    return IMGSIM_OK;
}

imgsim_status imgsim_image_load_rgb(uint8_t **out_rgb, int *width, int *height, const char *path, int max_side,
                                    const imgsim_preprocess_opts *opt) {
    imgsim_status st = check_out(out_rgb, width, height, max_side, "imgsim_image_load_rgb");
    if (st != IMGSIM_OK) return st;
    if (!path) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_image_load_rgb: path must not be NULL");
    uint8_t *buf = NULL;
    size_t len = 0;
    st = ims_read_file(&buf, &len, path, MAX_FILE_BYTES, NULL);
    if (st == IMGSIM_OK) st = decode_fit(out_rgb, width, height, buf, len, max_side, opt, path);
    free(buf);
    return st;
}

imgsim_status imgsim_image_decode_rgb(uint8_t **out_rgb, int *width, int *height, const void *data, size_t size,
                                      int max_side, const imgsim_preprocess_opts *opt) {
    imgsim_status st = check_out(out_rgb, width, height, max_side, "imgsim_image_decode_rgb");
    if (st != IMGSIM_OK) return st;
    if (!data && size) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_image_decode_rgb: data must not be NULL");
    return decode_fit(out_rgb, width, height, data, size, max_side, opt, "<memory>");
}

void imgsim_rgb_free(uint8_t *rgb) { free(rgb); }
