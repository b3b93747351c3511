/*
 * png.c: PNG decoding with libspng, matching PIL's Image.open(...).convert('RGB'):
 *  - every colour type and bit depth (1..16), palette, interlaced (Adam7): decoded to RGB8;
 *  - alpha and tRNS are dropped, not composited (PIL's convert('RGB') discards alpha);
 *  - 16-bit RGB, RGBA and gray+alpha keep the high byte (PIL's "RGB;16B"/"LA;16B" unpacking);
 *  - 16-bit grayscale is opened by PIL as mode "I" and convert('RGB') clips the value to 255,
 *    so 16-bit gray v becomes min(v, 255) here too (odd, but it is what the Python pipeline
 *    feeds the network);
 *  - gamma (gAMA), sRGB and ICC chunks are ignored, as PIL ignores them.
 * EXIF orientation comes from the eXIf chunk.
 */
#include <spng.h>
#include <string.h>

#include "image/image_priv.h"

#define PNG_CHUNK_LIMIT ((size_t)64 << 20) /* largest ancillary chunk / chunk cache we accept */

imgsim_status ims_png_decode(ims_image *out, int *orient, const uint8_t *buf, size_t len,
                            const ims_decode_opts *opt, const char *name, ims_img_ws *ws, ims_err *e) {
    *orient = 1;
    /* the size limit first, from the raw IHDR (PNG requires it first), so that absurd sizes
     * get the same "over the limit" error whatever libspng thinks of them */
    if (len >= 24 && memcmp(buf + 12, "IHDR", 4) == 0) {
        uint32_t w = (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 | (uint32_t)buf[18] << 8 | buf[19];
        uint32_t h = (uint32_t)buf[20] << 24 | (uint32_t)buf[21] << 16 | (uint32_t)buf[22] << 8 | buf[23];
        if (w && h) {
            imgsim_status st0 = ims_check_dims(w, h, 3, opt->max_pixels, name, "PNG", e);
            if (st0 != IMGSIM_OK) return st0;
        }
    }
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: cannot create a PNG decoder", name);
    imgsim_status st = IMGSIM_OK;
    int r = spng_set_png_buffer(ctx, buf, len);
    if (!r) r = spng_set_chunk_limits(ctx, PNG_CHUNK_LIMIT, PNG_CHUNK_LIMIT);
    struct spng_ihdr ihdr;
    if (!r) r = spng_get_ihdr(ctx, &ihdr);
    if (r) {
        st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s: corrupt or truncated PNG header: %s", name, spng_strerror(r));
        goto done;
    }
    st = ims_check_dims(ihdr.width, ihdr.height, 3, opt->max_pixels, name, "PNG", e);
    if (st != IMGSIM_OK) goto done;

    const size_t npx = (size_t)ihdr.width * ihdr.height;
    uint8_t *rgb = ims_wsbuf_get(&ws->a, npx * 3);
    if (!rgb) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory for a %ux%u PNG", name, ihdr.width, ihdr.height);
        goto done;
    }
    if (ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && ihdr.bit_depth == 16) {
        /* native 16-bit samples (host order), then PIL's "I" -> "RGB" clip */
        size_t sz = 0;
        r = spng_decoded_image_size(ctx, SPNG_FMT_PNG, &sz);
        uint8_t *g = r ? NULL : ims_wsbuf_get(&ws->b, sz);
        if (!r && !g) {
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory for a %ux%u PNG", name, ihdr.width, ihdr.height);
            goto done;
        }
        if (!r) r = spng_decode_image(ctx, g, sz, SPNG_FMT_PNG, 0);
        if (!r) {
            for (size_t i = 0; i < npx; i++) {
                uint16_t v;
                memcpy(&v, g + 2 * i, 2);
                uint8_t c = v > 255 ? 255 : (uint8_t)v;
                rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = c;
            }
        }
    } else {
        size_t sz = 0;
        r = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &sz);
        if (!r && sz != npx * 3) r = SPNG_EOVERFLOW;
        if (!r) r = spng_decode_image(ctx, rgb, sz, SPNG_FMT_RGB8, 0);
    }
    if (r) {
        st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s: corrupt or truncated PNG: %s", name, spng_strerror(r));
        goto done;
    }
    if (opt->exif_rotate) {
        struct spng_exif ex;
        if (spng_get_exif(ctx, &ex) == 0) *orient = ims_exif_orientation((const uint8_t *)ex.data, ex.length);
    }
    out->w = (int)ihdr.width;
    out->h = (int)ihdr.height;
    out->px = rgb;
done:
    spng_ctx_free(ctx);
    return st;
}
