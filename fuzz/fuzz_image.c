/*
 * fuzz_image.c: libFuzzer harness for the image entry point, imgsim_preprocess_mem (format
 * sniffing, libjpeg-turbo / libspng / libwebp decoding, EXIF orientation, DCT-domain scaling,
 * PIL's antialiased resize, normalisation).
 *
 * Input: an image file followed by one option byte (the last byte, not passed to the decoder):
 *   bits 0-2  target size, from SIZES below (224x224 as most models use, and odd or tiny sizes
 *             that make the resize and DCT-scaling choices differ)
 *   bit 3     exif_rotate
 *   bit 4     dct_scaling
 *   bit 5     a max_pixels of 4096 instead of 2^22 (the refusal path)
 * max_pixels is always far below the default (PIL's 89 million pixels), so that a decompression
 * bomb is refused well within libFuzzer's memory limit.
 *
 * Invariants checked beyond "no crash, leak or sanitizer report":
 *   - success writes every element of the 3 x H x W output (it starts as NaN) with a value
 *     inside [(0 - mean) / std, (1 - mean) / std] of its channel;
 *   - failure is a real status (not IMGSIM_ERR_INTERNAL) with a message naming "<memory>";
 *   - a success run again with one of the library's allocations failing (fuzz_fail_from) gives
 *     IMGSIM_ERR_NOMEM with a message, or a valid output when the failure point is past the last
 *     allocation, and leaks nothing.
 * The calling thread's decode workspace is freed after each input, so a read or write past a
 * buffer sized for this image is seen by ASan rather than hidden in a larger buffer kept from an
 * earlier one.
 */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "image/image_priv.h"

static const int SIZES[8][2] = {{224, 224}, {1, 1}, {7, 3}, {16, 16}, {31, 64}, {64, 31}, {57, 43}, {2, 200}};

/* Every element written, inside [(0 - mean) / std, (1 - mean) / std] of its channel. */
static void check_output(const float *out, const imgsim_preprocess_opts *o) {
    const size_t plane = (size_t)o->height * (size_t)o->width;
    for (int c = 0; c < 3; c++) {
        const float lo = (0.0f - o->mean[c]) / o->std[c], hi = (1.0f - o->mean[c]) / o->std[c];
        const float tol = 1e-4f * (hi - lo);
        for (size_t i = 0; i < plane; i++) {
            float v = out[c * plane + i];
            FUZZ_CHECK(v >= lo - tol && v <= hi + tol,
                       "output element [%d][%zu] of %dx%d is %g, outside [%g, %g]", c, i, o->height, o->width,
                       v, lo, hi);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t sel = data[size - 1];
    size--;
    imgsim_set_log_level(IMGSIM_LOG_QUIET);
    imgsim_preprocess_opts o;
    imgsim_preprocess_opts_init(&o);
    o.height = SIZES[sel & 7][0];
    o.width = SIZES[sel & 7][1];
    o.exif_rotate = (sel >> 3) & 1;
    o.dct_scaling = (sel >> 4) & 1;
    o.max_pixels = (sel >> 5) & 1 ? 4096 : (uint64_t)1 << 22;

    const size_t n = 3 * (size_t)o.height * (size_t)o.width;
    float *out = malloc(n * sizeof *out);
    FUZZ_CHECK(out != NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
        out[i] = NAN;
    /* a copy of exactly size bytes, so ASan sees any read past the end of the input */
    uint8_t *img = malloc(size ? size : 1);
    FUZZ_CHECK(img != NULL, "out of memory");
    memcpy(img, data, size);

    imgsim_status st = imgsim_preprocess_mem(out, img, size, &o);
    ims_img_ws_release(ims_img_ws_thread());
    if (st == IMGSIM_OK) {
        check_output(out, &o);
        /* again with an allocation failing: a clean NOMEM (or success past the last one) */
        for (size_t i = 0; i < n; i++)
            out[i] = NAN;
        fuzz_fail_from(data, size + 1, 8);
        st = imgsim_preprocess_mem(out, img, size, &o);
        fuzz_fail_off();
        ims_img_ws_release(ims_img_ws_thread());
        fuzz_check_nomem(st, imgsim_last_error(), "<memory>");
        if (st == IMGSIM_OK) check_output(out, &o);
    } else {
        fuzz_check_error(st, imgsim_last_error(), "<memory>");
    }
    free(img);
    free(out);
    return 0;
}
