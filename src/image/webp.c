/*
 * webp.c: WebP decoding with libwebp (lossy and lossless, with or without alpha). Alpha is
 * dropped, as PIL's convert('RGB') drops it; the RGB values are libwebp's non-premultiplied
 * output, the same PIL's decoder produces. EXIF orientation comes from the EXIF chunk of an
 * extended (VP8X) file, read with the demux API. Animated WebP is refused.
 */
#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "image/image_priv.h"

static const char *vp8_status_str(VP8StatusCode s) {
    switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data (truncated)";
    default: return "error";
    }
}

static int webp_exif_orientation(const uint8_t *buf, size_t len) {
    if (len < 16 || memcmp(buf + 12, "VP8X", 4) != 0) return 1; /* only extended files carry EXIF */
    WebPData data = {buf, len};
    WebPDemuxer *dmux = WebPDemux(&data);
    if (!dmux) return 1;
    int o = 1;
    WebPChunkIterator it;
    if (WebPDemuxGetChunk(dmux, "EXIF", 1, &it)) {
        o = ims_exif_orientation(it.chunk.bytes, it.chunk.size);
        WebPDemuxReleaseChunkIterator(&it);
    }
    WebPDemuxDelete(dmux);
    return o;
}

imgsim_status ims_webp_decode(ims_image *out, int *orient, const uint8_t *buf, size_t len,
                             const ims_decode_opts *opt, const char *name, ims_img_ws *ws, ims_err *e) {
    *orient = 1;
    WebPBitstreamFeatures f;
    VP8StatusCode s = WebPGetFeatures(buf, len, &f);
    if (s != VP8_STATUS_OK)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: corrupt or truncated WebP header: %s", name, vp8_status_str(s));
    if (f.has_animation) return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: animated WebP is not supported", name);
    imgsim_status st = ims_check_dims((uint64_t)f.width, (uint64_t)f.height, 3, opt->max_pixels, name, "WebP", e);
    if (st != IMGSIM_OK) return st;
    const size_t stride = (size_t)f.width * 3, sz = stride * (size_t)f.height;
    uint8_t *px = ims_wsbuf_get(&ws->a, sz);
    if (!px) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory for a %dx%d WebP", name, f.width, f.height);
    if (!WebPDecodeRGBInto(buf, len, px, sz, (int)stride))
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: corrupt or truncated WebP data", name);
    if (opt->exif_rotate) *orient = webp_exif_orientation(buf, len);
    out->w = f.width;
    out->h = f.height;
    out->px = px;
    return IMGSIM_OK;
}
