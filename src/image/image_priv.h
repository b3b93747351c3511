/*
 * image_priv.h: internals shared by the files of src/image/ (not used elsewhere): a reusable
 * per-thread workspace so the decode + preprocess hot path does not allocate per image, the
 * per-format decoders, the EXIF orientation parser and the orientation transform.
 */
#ifndef IMGSIM_IMAGE_PRIV_H
#define IMGSIM_IMAGE_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

/* A growable byte buffer (ims_malloc'ed). */
typedef struct ims_wsbuf {
    uint8_t *p;
    size_t cap;
} ims_wsbuf;

/* Returns a buffer of at least n bytes (contents not kept), or NULL when out of memory. */
uint8_t *ims_wsbuf_get(ims_wsbuf *b, size_t n);
void ims_wsbuf_free(ims_wsbuf *b);

/* Decode workspace: two pixel buffers (decode target and conversion/rotation target), the
 * resize scratch and the file buffer, all reused from image to image. (Decoder objects are not
 * kept: see jpeg.c.) */
typedef struct ims_img_ws {
    ims_wsbuf a, b;  /* pixel buffers; the decoded image lives in one of them */
    ims_wsbuf rs;    /* resize scratch */
    ims_wsbuf file;  /* file contents (ims_preprocess_file) */
} ims_img_ws;

void ims_img_ws_release(ims_img_ws *ws); /* frees everything; ws can be reused afterwards */
/* Frees buffers that grew over cap bytes (so one huge image does not pin memory). */
void ims_img_ws_trim(ims_img_ws *ws, size_t cap);
/* The calling thread's workspace (created on first use, freed when the thread exits). */
ims_img_ws *ims_img_ws_thread(void);

/* Decodes into ws: on success out->px points into ws->a or ws->b (owned by ws; do not free).
 * ws must not be NULL. */
imgsim_status ims_image_decode_ws(ims_image *out, const uint8_t *buf, size_t len, const ims_decode_opts *opt,
                                 const char *name, ims_img_ws *ws, ims_err *e);

/* Per-format decoders: decode into ws->a (or ws->b) as RGB8 and set *out, honouring
 * opt->max_pixels before any pixel allocation. *orient receives the EXIF orientation (1..8,
 * 1 when absent or when opt->exif_rotate is 0); the caller applies it. */
imgsim_status ims_jpeg_decode(ims_image *out, int *orient, const uint8_t *buf, size_t len,
                             const ims_decode_opts *opt, const char *name, ims_img_ws *ws, ims_err *e);
imgsim_status ims_png_decode(ims_image *out, int *orient, const uint8_t *buf, size_t len,
                            const ims_decode_opts *opt, const char *name, ims_img_ws *ws, ims_err *e);
imgsim_status ims_webp_decode(ims_image *out, int *orient, const uint8_t *buf, size_t len,
                             const ims_decode_opts *opt, const char *name, ims_img_ws *ws, ims_err *e);

/* Reads the orientation tag (0x0112) of a TIFF-structured EXIF block (starting at the byte
 * order mark "II"/"MM"; a leading "Exif\0\0" is skipped). Returns 1..8, or 1 when absent or
 * malformed (as PIL's exif_transpose leaves such images alone). */
int ims_exif_orientation(const uint8_t *p, size_t n);

/* Checks w x h against max_pixels (0: no limit) with 64-bit arithmetic, and that w*h*ch bytes
 * fit in size_t. Fails with IMGSIM_ERR_TOO_LARGE naming the file. */
imgsim_status ims_check_dims(uint64_t w, uint64_t h, uint64_t ch, uint64_t max_pixels, const char *name,
                            const char *fmt, ims_err *e);

#endif /* IMGSIM_IMAGE_PRIV_H */
