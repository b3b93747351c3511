/* ycc.h: YCbCr planes -> RGB8 exactly as libjpeg-turbo does it (ycc.cu). */
#ifndef IMGSIM_YCC_H
#define IMGSIM_YCC_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { IS_CSS_444 = 0, IS_CSS_422 = 1, IS_CSS_420 = 2, IS_CSS_GRAY = 3 };

/* One image: Y (w x h, pitch yp) and, unless gray, Cb/Cr planes (cw x ch, pitch cp); output RGB8
 * rows of w * 3 bytes. rgb == NULL skips the entry. */
typedef struct ims_ycc_desc {
    const uint8_t *y, *cb, *cr;
    uint8_t *rgb;
    int w, h, yp, cw, ch, cp, css;
} ims_ycc_desc;

/* Converts n images (descriptors in device memory), grid sized for the largest (max_w x max_h). */
imgsim_status ims_ycc_to_rgb(const ims_ycc_desc *descs_dev, int n, int max_w, int max_h, cudaStream_t s, ims_err *e);

#ifdef __cplusplus
}
#endif
#endif
