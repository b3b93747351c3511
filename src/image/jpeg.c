/*
 * jpeg.c: JPEG decoding with libjpeg-turbo's TurboJPEG API.
 *
 * Colour: YCbCr/RGB/grayscale JPEGs decode straight to RGB with libjpeg-turbo's default
 * (accurate integer IDCT, fancy upsampling), which is what PIL does with the same library, so
 * the pixels are identical. CMYK and YCCK decode to CMYK and are converted the way PIL does:
 * PIL assumes Adobe's inverted CMYK ("CMYK;I") and converts with
 * R = (255-K') - (C' * (255-K') / 255) where C' = 255 - stored C, K' = 255 - stored K.
 *
 * DCT-domain scaling: when a target size is given, the JPEG is decoded at the smallest
 * libjpeg-turbo scaling factor 1/2, 1/4 or 1/8 for which the scaled image is still at least
 * IS_DCT_MIN_RATIO (3) times the target in both dimensions; the antialiased resize then does
 * the rest. Measured against full decode + PIL resize on noisy photo-like JPEGs (quality 90,
 * 4:2:0; see bench/RESULTS.md, "image"): a scaled image 2.1-2.7x the target gave max errors of
 * 0.10-0.16 after normalisation (over the 0.1 allowed), 3.3x and more gave max <= 0.07 and
 * mean <= 0.0032; the M/8 factors (3/8, 5/8, ...) were no better. Hence 3x, powers of two.
 *
 * Truncation and corruption: TurboJPEG reports libjpeg warnings ("Premature end of JPEG
 * file", "Corrupt JPEG data: premature end of data segment", ...) as failures with
 * tjGetErrorCode() == TJERR_WARNING; every warning is an error here except "extraneous bytes
 * before marker", which is harmless and which PIL accepts too.
 */
#include <string.h>
#include <turbojpeg.h>

#include "image/image_priv.h"

#ifndef IS_DCT_MIN_RATIO
#define IS_DCT_MIN_RATIO 3.0
#endif

int ims_jpeg_header(const uint8_t *buf, size_t len, ims_jpeg_hdr *h) {
    memset(h, 0, sizeof *h);
    h->orient = 1;
    int have_exif = 0;
    if (len < 4 || buf[0] != 0xFF || buf[1] != 0xD8) return -1;
    size_t i = 2; /* after SOI */
    while (i + 4 <= len) {
        if (buf[i] != 0xFF) return -1; /* not at a marker: malformed */
        while (i < len && buf[i] == 0xFF) i++; /* fill bytes */
        if (i >= len) return -1;
        uint8_t m = buf[i++];
        if (m == 0xD9 || m == 0xDA) return h->sof ? 0 : -1; /* EOI, SOS: the header is over */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue; /* standalone markers */
        if (i + 2 > len) return -1;
        size_t seg = (size_t)buf[i] << 8 | buf[i + 1];
        if (seg < 2 || i + seg > len) return -1;
        const uint8_t *p = buf + i + 2;
        if (m == 0xE1 && !have_exif && seg >= 2 + 6 && memcmp(p, "Exif\0\0", 6) == 0) {
            h->orient = ims_exif_orientation(p, seg - 2); /* the first Exif block counts */
            have_exif = 1;
        } else if (m == 0xEE && seg >= 2 + 12 && memcmp(p, "Adobe", 5) == 0) {
            h->adobe_transform = p[11];
            h->adobe_transform_set = 1;
        } else if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && !h->sof) {
            if (seg < 2 + 6) return -1;
            h->sof = m;
            h->h = p[1] << 8 | p[2];
            h->w = p[3] << 8 | p[4];
            h->ncomp = p[5];
            for (int c = 0; c < h->ncomp && c < 4 && (size_t)(6 + 3 * c + 3) <= seg - 2; c++) {
                h->hs[c] = p[6 + 3 * c + 1] >> 4;
                h->vs[c] = p[6 + 3 * c + 1] & 15;
            }
        }
        i += seg;
    }
    return -1;
}

/* The orientation of the first APP1 "Exif\0\0" segment before the first scan (1 when none). */
static int jpeg_exif_orientation(const uint8_t *buf, size_t len) {
    ims_jpeg_hdr h;
    ims_jpeg_header(buf, len, &h);
    return h.orient;
}

/* Picks the DCT scaling factor (index into tjGetScalingFactors, or -1 for none). tw, th are
 * the target size in the JPEG's own (pre-orientation) axes. */
static int pick_scale(int w, int h, int tw, int th) {
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    if (!sf || tw <= 0 || th <= 0) return -1;
    int best = -1;
    double best_f = 1.0;
    for (int i = 0; i < n; i++) {
        double f = (double)sf[i].num / sf[i].denom;
        if (f >= best_f) continue;
        if (sf[i].num != 1 || sf[i].denom > 8) continue; /* 1/2, 1/4, 1/8 (see above) */
        int sw = TJSCALED(w, sf[i]), sh = TJSCALED(h, sf[i]);
        if (sw >= IS_DCT_MIN_RATIO * tw && sh >= IS_DCT_MIN_RATIO * th) {
            best = i;
            best_f = f;
        }
    }
    return best;
}

static imgsim_status jpeg_decode_with(tjhandle tj, ims_image *out, int *orient, const uint8_t *buf, size_t len,
                                      const ims_decode_opts *opt, const char *name, ims_img_ws *ws, ims_err *e);

/* In place: CMYK (as stored, Adobe-inverted) -> RGB with PIL's formula; n pixels. */
static void cmyk_to_rgb(uint8_t *px, size_t n) {
    const uint8_t *in = px;
    uint8_t *out = px;
    for (size_t i = 0; i < n; i++, in += 4, out += 3) {
        int nk = in[3]; /* 255 - K' = stored K */
        for (int c = 0; c < 3; c++) {
            int a = 255 - in[c]; /* C' */
            int t = a * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            out[c] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
}

imgsim_status ims_jpeg_decode(ims_image *out, int *orient, const uint8_t *buf, size_t len,
                             const ims_decode_opts *opt, const char *name, ims_img_ws *ws, ims_err *e) {
    *orient = 1;
    if (len > (size_t)0xFFFFFFFFu) return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "%s: JPEG file over 4 GiB", name);
    /* A fresh decompressor for every image: libjpeg keeps Huffman and quantisation tables from
     * one image to the next in the same object (for abbreviated streams), and TurboJPEG 2.1
     * leaves the object mid-header after a failed tjDecompressHeader3, so a reused handle can
     * make one file's result depend on the file decoded before it. PIL also starts afresh for
     * every image. Creating one costs microseconds next to the decode. */
    tjhandle tj = tjInitDecompress();
    if (!tj) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: cannot create a JPEG decoder: %s", name, tjGetErrorStr2(NULL));
    imgsim_status st = jpeg_decode_with(tj, out, orient, buf, len, opt, name, ws, e);
    tjDestroy(tj);
    return st;
}

/* ims_jpeg_decode's work with a given decompressor. */
static imgsim_status jpeg_decode_with(tjhandle tj, ims_image *out, int *orient, const uint8_t *buf, size_t len,
                                      const ims_decode_opts *opt, const char *name, ims_img_ws *ws, ims_err *e) {
    int w = 0, h = 0, subsamp = 0, cs = 0;
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &w, &h, &subsamp, &cs) != 0)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: corrupt or truncated JPEG header: %s", name, tjGetErrorStr2(tj));
    if (w < 1 || h < 1) /* the data ended (or a table-only stream) before a frame header */
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: corrupt or truncated JPEG header: no frame header before the end of data", name);
    int cmyk = (cs == TJCS_CMYK || cs == TJCS_YCCK);
    imgsim_status st = ims_check_dims((uint64_t)w, (uint64_t)h, cmyk ? 4 : 3, opt->max_pixels, name, "JPEG", e);
    if (st != IMGSIM_OK) return st;
    if (opt->exif_rotate) *orient = jpeg_exif_orientation(buf, len);

    int sw = w, sh = h;
    if (opt->dct_scaling && opt->target_w > 0 && opt->target_h > 0) {
        int tw = opt->target_w, th = opt->target_h;
        if (*orient >= 5) { /* the target is in the rotated axes */
            tw = opt->target_h;
            th = opt->target_w;
        }
        int si = pick_scale(w, h, tw, th);
        if (si >= 0) {
            int n = 0;
            tjscalingfactor *sf = tjGetScalingFactors(&n);
            sw = TJSCALED(w, sf[si]);
            sh = TJSCALED(h, sf[si]);
        }
    }
    const int ch = cmyk ? 4 : 3;
    uint8_t *px = ims_wsbuf_get(&ws->a, (size_t)sw * sh * ch);
    if (!px) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory for a %dx%d JPEG", name, w, h);
    int flags = TJFLAG_LIMITSCANS;
    if (tjDecompress2(tj, buf, (unsigned long)len, px, sw, sw * ch, sh, cmyk ? TJPF_CMYK : TJPF_RGB, flags) != 0) {
        const char *msg = tjGetErrorStr2(tj);
        int fatal = tjGetErrorCode(tj) == TJERR_FATAL;
        if (fatal || !msg || !strstr(msg, "extraneous bytes"))
            return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: corrupt or truncated JPEG: %s", name, msg ? msg : "decode failed");
    }
    if (cmyk) cmyk_to_rgb(px, (size_t)sw * sh);
    out->w = sw;
    out->h = sh;
    out->px = px;
    return IMGSIM_OK;
}
