/*
 * image.h: decoding (libjpeg-turbo, libspng, libwebp), EXIF orientation and the preprocessing
 * that matches torchvision's Resize((H, W)) or Resize(S) [+ CenterCrop] + ToTensor + Normalize.
 */
#ifndef IMGSIM_IMAGE_H
#define IMGSIM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef enum ims_imgfmt { IS_FMT_UNKNOWN = 0, IS_FMT_JPEG, IS_FMT_PNG, IS_FMT_WEBP } ims_imgfmt;

/* Detects the format from the first bytes (at least 12 are looked at when present). */
ims_imgfmt ims_image_sniff(const uint8_t *buf, size_t len);
const char *ims_imgfmt_name(ims_imgfmt f);

/* What a JPEG's markers before the first scan say (no entropy data is read). */
typedef struct ims_jpeg_hdr {
    int w, h, ncomp;
    int sof;             /* the frame marker: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, ... */
    int hs[4], vs[4];    /* sampling factors of the first four components */
    int orient;          /* EXIF orientation 1..8 (1 when absent) */
    int adobe_transform; /* APP14 Adobe transform flag */
    int adobe_transform_set; /* 1 when an Adobe APP14 segment was there */
} ims_jpeg_hdr;

/* Parses the header of a JPEG in memory: 0 when a frame header was found before the first
 * scan, -1 when the stream is malformed or has none. */
int ims_jpeg_header(const uint8_t *buf, size_t len, ims_jpeg_hdr *h);

/* An 8-bit RGB image, interleaved, rows of w * 3 bytes. */
typedef struct ims_image {
    int w, h;
    uint8_t *px; /* ims_malloc'ed, w * h * 3 bytes */
} ims_image;

void ims_image_free(ims_image *img);

typedef struct ims_decode_opts {
    uint64_t max_pixels; /* refuse larger images (declared size) before allocating */
    int exif_rotate;     /* apply EXIF orientation (JPEG APP1, PNG eXIf, WebP EXIF) */
    int target_w, target_h; /* when > 0 and dct_scaling: JPEG may be decoded at a DCT-domain
                               scale (1/2, 1/4, 1/8) as long as the result stays large enough
                               for the stated tolerance versus full decode + resize */
    int dct_scaling;
} ims_decode_opts;

/* Decodes buf (any supported format) into RGB. name is used in error messages (a path). */
imgsim_status ims_image_decode(ims_image *out, const uint8_t *buf, size_t len, const ims_decode_opts *opt,
                              const char *name, ims_err *e);

/* PIL-equivalent antialiased bilinear resize of an RGB8 image to (oh, ow) followed by
 * ToTensor + Normalize: out is float32 CHW [3, oh, ow]. scratch: optional workspace of
 * ims_preprocess_scratch_size(img, oh, ow) bytes (NULL: allocates internally). */
size_t ims_preprocess_scratch_size(int iw, int ih, int ow, int oh);
imgsim_status ims_preprocess_rgb(float *out, const ims_image *img, int oh, int ow, const float mean[3],
                                 const float std[3], void *scratch, ims_err *e);

/* The geometry of one image's preprocessing (geometry.c): the image is resized to rw x rh and
 * the crop ow x oh at (x0, y0) of the resized image is the output, with filter interp
 * (imgsim_interp). */
typedef struct ims_pre_geom {
    int rw, rh; /* the resized image */
    int x0, y0; /* the crop's top-left corner in it */
    int ow, oh; /* the crop: the output */
    int interp;
} ims_pre_geom;

/* The geometry of an iw x ih image under o (resize as torchvision's Resize rounds it, crop
 * offsets as its CenterCrop's). Fails (INVALID_ARG, naming the sizes) where the crop does not fit
 * the resized image or o is out of range (ims_preprocess_check). */
imgsim_status ims_pre_geometry(ims_pre_geom *g, const imgsim_preprocess_opts *o, int iw, int ih, ims_err *e);
/* imgsim_preprocess_opts_check into e. */
imgsim_status ims_preprocess_check(const imgsim_preprocess_opts *o, ims_err *e);
/* 1 when o resizes straight to height x width with the bilinear filter (no crop): what the GPU
 * preprocessing kernel does. */
int ims_pre_is_plain(const imgsim_preprocess_opts *o);
/* The resize of o as meta.json and job.json record it: resize_shorter's S, or 0 and the fixed
 * size (height x width when o sets none). */
void ims_pre_resize_of(const imgsim_preprocess_opts *o, int *shorter, int *rh, int *rw);
/* "bilinear" / "bicubic" */
const char *ims_interp_name(int interp);

/* ims_preprocess_rgb with a geometry (the crop, the filter); scratch of
 * ims_preprocess_scratch_size_geom bytes or NULL. */
size_t ims_preprocess_scratch_size_geom(int iw, int ih, const ims_pre_geom *g);
imgsim_status ims_preprocess_rgb_geom(float *out, const ims_image *img, const ims_pre_geom *g, const float mean[3],
                                      const float std[3], void *scratch, ims_err *e);

/* File or memory -> normalised tensor, with imgsim_preprocess_opts. */
imgsim_status ims_preprocess_mem(float *out, const uint8_t *buf, size_t len, const imgsim_preprocess_opts *o,
                                const char *name, ims_err *e);
imgsim_status ims_preprocess_file(float *out, const char *path, const imgsim_preprocess_opts *o, ims_err *e);

#endif /* IMGSIM_IMAGE_H */
