/*
 * imgsim_synth.h: the public C API of libimgsim_synth, a generator of labelled, photo-like JPEG
 * datasets and of random-weight ResNet models for demos, tests and benchmarks (`imgsim synth`,
 * `imgsim demo`, `imgsim model init`). It is not part of the engine: programs that want it link
 * build/libimgsim_synth.a before build/libimgsim.a.
 *
 * Each class has its own look (a scene family, a palette, an orientation and a scale), and every
 * image varies it (position, scale, rotation, brightness, noise, a few unrelated shapes), so that
 * even a CNN with random weights groups images of one class somewhat. A dataset is a folder in
 * ImageFolder layout: ROOT/class_XX/img_YYYY.jpg, written by libjpeg-turbo with 4:2:0 subsampling.
 * Everything is a pure function of the options: the same options always give the same bytes,
 * whatever the thread count.
 *
 * Conventions as in imgsim.h: calls that can fail return an imgsim_status, outputs come first,
 * a failing call leaves a message naming the file and the reason in imgsim_last_error(), and the
 * library never exits or aborts.
 */
#ifndef IMGSIM_SYNTH_H
#define IMGSIM_SYNTH_H

#include <stdint.h>

#include "imgsim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct imgsim_synth_opts {
    int n_classes;          /* 1..10000; default 10 */
    int per_class;          /* images per class, 1..10,000,000; default 30 */
    int min_side, max_side; /* both sides of an ordinary image lie in [min_side, max_side],
                               8 <= min_side <= max_side <= 16384; default 256, 640 */
    uint64_t seed;          /* default 42 */
    double large_fraction;  /* share of images made "large" instead, 0..1; default 0 (none) */
    int large_min_side;     /* large images: sides in [large_min_side, large_min_side * 4 / 3],
                               8..12288; default 1200 */
    int quality;            /* JPEG quality 1..100; default 90 */
    int threads;            /* encoding threads; default 0 = all cores */
    int quiet;              /* 1: no progress output on stderr; default 0 */
} imgsim_synth_opts;

/* Sets the defaults written above. */
void imgsim_synth_opts_init(imgsim_synth_opts *opt);

/* Writes the dataset opt describes under root (created with its parents when missing; existing
 * images of the same names are replaced, each file written under a temporary name and renamed,
 * never fsynced). opt may be NULL for the defaults. IMGSIM_ERR_INVALID_ARG names the option out
 * of range; IMGSIM_ERR_IO names the file that could not be written and why. */
imgsim_status imgsim_synth_dataset(const char *root, const imgsim_synth_opts *opt);

/* Renders one image of class cls (>= 0) into rgb: width x height x 3 bytes of 8-bit RGB,
 * row-major and interleaved, owned by the caller. seed selects the variation; the same arguments
 * always give the same pixels (the dataset's image i of class c uses a seed derived from opt's). */
imgsim_status imgsim_synth_image(uint8_t *rgb, int width, int height, int cls, uint64_t seed);

/* The size the generator gives an image with this seed: both sides in [min_side, max_side]
 * (1 <= min_side <= max_side), aspect ratio between 1:1 and about 1.6:1, landscape more often
 * than portrait. */
imgsim_status imgsim_synth_size(int *width, int *height, int min_side, int max_side, uint64_t seed);

/* ---- models ------------------------------------------------------------------------------ */

/* Writes a torchvision-layout ResNet ("resnet18", "resnet34", "resnet50") with Kaiming-normal
 * random weights as an ONNX file at path (opset 13, dynamic batch axis; written under a temporary
 * name and renamed), deterministic for a seed: the models of `imgsim model init`, demos and tests
 * that have no PyTorch. IMGSIM_ERR_INVALID_ARG names an unknown arch; IMGSIM_ERR_IO the file. */
imgsim_status imgsim_model_init(const char *path, const char *arch, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif /* IMGSIM_SYNTH_H */
