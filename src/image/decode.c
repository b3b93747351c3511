/*
 * decode.c: format detection from magic bytes, the decode entry points (dispatch to jpeg.c,
 * png.c, webp.c), the size limit check, EXIF orientation applied the way PIL's
 * ImageOps.exif_transpose does, and the reusable per-thread workspace.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_priv.h"

ims_imgfmt ims_image_sniff(const uint8_t *buf, size_t len) {
    if (!buf) return IS_FMT_UNKNOWN;
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return IS_FMT_JPEG;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0) return IS_FMT_PNG;
    if (len >= 12 && memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WEBP", 4) == 0) return IS_FMT_WEBP;
    return IS_FMT_UNKNOWN;
}

const char *ims_imgfmt_name(ims_imgfmt f) {
    switch (f) {
    case IS_FMT_JPEG: return "JPEG";
    case IS_FMT_PNG: return "PNG";
    case IS_FMT_WEBP: return "WebP";
    default: return "unknown";
    }
}

void ims_image_free(ims_image *img) {
    if (!img) return;
    free(img->px);
    img->px = NULL;
    img->w = img->h = 0;
}

/* ---- workspace ------------------------------------------------------------------------- */

uint8_t *ims_wsbuf_get(ims_wsbuf *b, size_t n) {
    if (n == 0) n = 1;
    if (b->cap >= n) return b->p;
    free(b->p);
    b->cap = 0;
    /* a little slack: the vector loops may read a few bytes past the last pixel */
    if (n > SIZE_MAX - 64) return (b->p = NULL);
    b->p = ims_malloc(n + 64);
    if (b->p) b->cap = n;
    return b->p;
}

void ims_wsbuf_free(ims_wsbuf *b) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
}

void ims_img_ws_release(ims_img_ws *ws) {
    if (!ws) return;
    ims_wsbuf_free(&ws->a);
    ims_wsbuf_free(&ws->b);
    ims_wsbuf_free(&ws->rs);
    ims_wsbuf_free(&ws->file);
}

void ims_img_ws_trim(ims_img_ws *ws, size_t cap) {
    if (ws->a.cap > cap) ims_wsbuf_free(&ws->a);
    if (ws->b.cap > cap) ims_wsbuf_free(&ws->b);
    if (ws->rs.cap > cap) ims_wsbuf_free(&ws->rs);
    if (ws->file.cap > cap) ims_wsbuf_free(&ws->file);
}

static pthread_key_t g_ws_key;
static pthread_once_t g_ws_once = PTHREAD_ONCE_INIT;
static int g_ws_key_ok;

static void ws_destroy(void *p) {
    ims_img_ws_release(p);
    free(p);
}

static void ws_key_init(void) {
    g_ws_key_ok = pthread_key_create(&g_ws_key, ws_destroy) == 0;
}

ims_img_ws *ims_img_ws_thread(void) {
    pthread_once(&g_ws_once, ws_key_init);
    if (!g_ws_key_ok) return NULL;
    ims_img_ws *ws = pthread_getspecific(g_ws_key);
    if (ws) return ws;
    ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    if (pthread_setspecific(g_ws_key, ws) != 0) {
        free(ws);
        return NULL;
    }
    return ws;
}

/* ---- limits ---------------------------------------------------------------------------- */

imgsim_status ims_check_dims(uint64_t w, uint64_t h, uint64_t ch, uint64_t max_pixels, const char *name,
                            const char *fmt, ims_err *e) {
    uint64_t px, bytes;
    if (w == 0 || h == 0) return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: %s header declares an empty image (%llux%llu)", name, fmt,
                                         (unsigned long long)w, (unsigned long long)h);
    if (ims_mul_overflow_u64(w, h, &px) || (max_pixels && px > max_pixels))
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "%s: %s image of %llux%llu pixels is over the limit of %llu pixels (--max-pixels)",
                       name, fmt, (unsigned long long)w, (unsigned long long)h, (unsigned long long)max_pixels);
    if (ims_mul_overflow_u64(px, ch, &bytes) || bytes > (uint64_t)(SIZE_MAX / 4) || w > INT32_MAX / 8 || h > INT32_MAX / 8)
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "%s: %s image of %llux%llu pixels is too large to decode", name, fmt,
                       (unsigned long long)w, (unsigned long long)h);
    return IMGSIM_OK;
}

/* ---- orientation ----------------------------------------------------------------------- */

/* dst = src transformed by EXIF orientation o (2..8), as PIL's exif_transpose:
 * 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE,
 * 8 ROTATE_90. src is RGB8 (w, h); dst is RGB8 (w, h) for 2..4 and (h, w) for 5..8. */
static void orient_rgb(uint8_t *dst, const uint8_t *src, int w, int h, int o) {
    const size_t sw = (size_t)w * 3;
    if (o <= 4) {
        for (int y = 0; y < h; y++) {
            int sy = (o == 2) ? y : h - 1 - y;
            const uint8_t *s = src + (size_t)sy * sw;
            uint8_t *d = dst + (size_t)y * sw;
            if (o == 4) {
                memcpy(d, s, sw);
            } else {
                for (int x = 0; x < w; x++) memcpy(d + (size_t)x * 3, s + (size_t)(w - 1 - x) * 3, 3);
            }
        }
        return;
    }
    /* dst is h columns wide and w rows tall: dst(x, y) for x in [0, h), y in [0, w) */
    const int dw = h, dh = w;
    for (int y = 0; y < dh; y++) {
        uint8_t *d = dst + (size_t)y * dw * 3;
        for (int x = 0; x < dw; x++) {
            int sx, sy;
            switch (o) {
            case 5: sx = y; sy = x; break;                   /* transpose */
            case 6: sx = y; sy = h - 1 - x; break;           /* rotate 90 clockwise */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;   /* transverse */
            default: sx = w - 1 - y; sy = x; break;          /* 8: rotate 90 counter-clockwise */
            }
            memcpy(d + (size_t)x * 3, src + ((size_t)sy * w + (size_t)sx) * 3, 3);
        }
    }
}

/* ---- entry points ---------------------------------------------------------------------- */

imgsim_status ims_image_decode_ws(ims_image *out, const uint8_t *buf, size_t len, const ims_decode_opts *opt,
                                 const char *name, ims_img_ws *ws, ims_err *e) {
    if (!name) name = "<memory>";
    memset(out, 0, sizeof *out);
    if (!buf || len == 0) return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: empty file", name);
    ims_imgfmt f = ims_image_sniff(buf, len);
    int orient = 1;
    imgsim_status st;
    switch (f) {
    case IS_FMT_JPEG: st = ims_jpeg_decode(out, &orient, buf, len, opt, name, ws, e); break;
    case IS_FMT_PNG: st = ims_png_decode(out, &orient, buf, len, opt, name, ws, e); break;
    case IS_FMT_WEBP: st = ims_webp_decode(out, &orient, buf, len, opt, name, ws, e); break;
    default:
        if (len < 12)
            return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: not an image (only %zu bytes; JPEG, PNG and WebP are supported)", name, len);
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: not a JPEG, PNG or WebP image (unrecognised content)", name);
    }
    if (st != IMGSIM_OK) return st;
    if (opt->exif_rotate && orient >= 2 && orient <= 8) {
        ims_wsbuf *other = (out->px == ws->a.p) ? &ws->b : &ws->a;
        uint8_t *dst = ims_wsbuf_get(other, (size_t)out->w * out->h * 3);
        if (!dst) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory applying EXIF orientation", name);
        orient_rgb(dst, out->px, out->w, out->h, orient);
        if (orient >= 5) {
            int t = out->w;
            out->w = out->h;
            out->h = t;
        }
        out->px = dst;
    }
    return IMGSIM_OK;
}

imgsim_status ims_image_decode(ims_image *out, const uint8_t *buf, size_t len, const ims_decode_opts *opt,
                              const char *name, ims_err *e) {
    ims_img_ws ws;
    memset(&ws, 0, sizeof ws);
    imgsim_status st = ims_image_decode_ws(out, buf, len, opt, name, &ws, e);
    if (st == IMGSIM_OK) {
        /* hand the buffer holding the result to the caller, free the rest */
        if (out->px == ws.a.p) ws.a.p = NULL;
        else ws.b.p = NULL;
    } else {
        memset(out, 0, sizeof *out);
    }
    ims_img_ws_release(&ws);
    return st;
}
