/*
 * synth.h: a generator of labelled, photo-like JPEG datasets for the demo, tests and benchmarks.
 *
 * Each class has its own look (a scene family, a palette, an orientation and a scale), and every
 * image varies it (position, scale, rotation, brightness, noise, a few unrelated shapes), so that
 * even a CNN with random weights groups images of one class somewhat. Output is a folder in
 * ImageFolder layout: ROOT/class_XX/img_YYYY.jpg, quality 90, 4:2:0 subsampling, written by
 * libjpeg-turbo. Everything is a pure function of the seed.
 */
#ifndef IMGSIM_SYNTH_H
#define IMGSIM_SYNTH_H

#include <stdint.h>

#include "core/core.h"

typedef struct ims_synth_opts {
    int n_classes;          /* >= 1 */
    int per_class;          /* images per class, >= 1 */
    int min_side, max_side; /* both sides of an ordinary image lie in [min_side, max_side] */
    uint64_t seed;
    double large_fraction; /* share of images made "large" instead (0 = none) */
    int large_min_side;    /* large images: sides in [large_min_side, large_min_side * 4 / 3] */
    int quality;           /* JPEG quality; default 90 */
    int threads;           /* 0 = all cores */
    int quiet;             /* no progress output */
} ims_synth_opts;

/* Defaults: 10 classes x 30 images, sides 256..640, seed 42, no large images (large side 1200),
 * quality 90, all cores. */
void ims_synth_opts_init(ims_synth_opts *o);

/* Writes the dataset described by o under root (created if needed). */
imgsim_status ims_synth_dataset_ex(const char *root, const ims_synth_opts *o, ims_err *e);

/* Shorthand for ims_synth_dataset_ex with the other options at their defaults. */
imgsim_status ims_synth_dataset(const char *root, int n_classes, int per_class, int min_side, int max_side,
                               uint64_t seed, ims_err *e);

/* Renders one image of class cls into rgb (w * h * 3 bytes, row-major RGB, owned by the caller).
 * seed selects the variation; the same arguments always give the same pixels. */
void ims_synth_image(uint8_t *rgb, int w, int h, int cls, uint64_t seed);

/* The size the dataset generator gives an image with this seed: sides in [min_side, max_side],
 * aspect ratio between 1:1 and about 1.6:1, landscape more often than portrait. */
void ims_synth_size(int *w, int *h, int min_side, int max_side, uint64_t seed);

#endif /* IMGSIM_SYNTH_H */
