/*
 * quant.h: int8 quantisation maths (pure C, no oneDNN): activation histograms, the choice of a
 * tensor's clipping threshold (entropy, percentile, min-max), symmetric per-output-channel
 * weight scales, and round-half-to-even quantisation with saturation.
 *
 * Conventions (symmetric quantisation, no zero points):
 *   real = scale * q, q = saturate(round_half_even(real / scale)).
 *   A tensor with threshold amax (|x| clipped there) gets scale = amax / 127 when it may be
 *   negative (s8, q in [-128, 127]) and amax / 255 when it is never negative (u8, [0, 255]).
 *   Weights are s8 in [-127, 127] with one scale per output channel: max |w| of the channel / 127.
 *
 * Histograms are of |x| (as TensorRT's calibrators keep them): IMS_HIST_BINS bins of equal width
 * starting at 0. The width is set by the first non-zero batch (its max |x| / IMS_HIST_BINS) and
 * doubled, merging pairs of bins exactly, while a later batch holds an |x| above the range; so
 * bin k always covers [k * width, (k + 1) * width) (the last bin also the range's upper edge) and the counts do not depend on how the data was
 * split into batches beyond when the doublings happen.
 */
#ifndef IMGSIM_QUANT_H
#define IMGSIM_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMS_HIST_BINS 2048  /* bins of an activation histogram (TensorRT's) */
#define IMS_QUANT_LEVELS 128 /* quantised levels the entropy search compares against (int8's half) */

typedef struct ims_hist {
    double count[IMS_HIST_BINS]; /* samples per bin of |x| */
    double width;                /* bin width; 0 while every sample so far was 0 (all in bin 0) */
    double amax;                 /* largest |x| seen */
    double min, max;             /* smallest and largest x seen (signed) */
    double zeros;                /* samples exactly 0 (counted in bin 0 too) */
    uint64_t n;                  /* samples */
} ims_hist;

void ims_hist_init(ims_hist *h);
/* Adds x[0..n) (finite values; a NaN or infinity is counted in no bin and makes amax infinite,
 * which the caller reports). */
void ims_hist_add(ims_hist *h, const float *x, size_t n);

typedef enum ims_calib_method {
    IMS_CALIB_ENTROPY = 0, /* minimum KL divergence (TensorRT's IInt8EntropyCalibrator2) */
    IMS_CALIB_PERCENTILE,  /* the pct-th percentile of |x| */
    IMS_CALIB_MINMAX       /* max |x| */
} ims_calib_method;

/* "entropy", "percentile", "minmax" */
const char *ims_calib_method_name(ims_calib_method m);
/* The method named s, or -1. */
int ims_calib_method_parse(const char *s);

/* Entropy threshold of a histogram hist[0..nbins) with bins of width width (nbins >=
 * IMS_QUANT_LEVELS). For each candidate i in [IMS_QUANT_LEVELS, nbins]:
 *   P = hist[0..i) with the outliers sum(hist[i..nbins)) added to P[i-1];
 *   Q = hist[0..i) merged into IMS_QUANT_LEVELS levels of m = i / IMS_QUANT_LEVELS bins each
 *       (the last level also takes the remaining i - 128 m bins), each level's sum spread evenly
 *       back over the bins of the level where P is non-zero (zero elsewhere);
 *   both smoothed (every zero bin gets eps = 1e-4, the non-zero bins give up eps * zeros /
 *   nonzeros each, as MXNet's and TVM's versions of the same search do) and normalised;
 *   divergence = KL(P || Q) = sum P log(P / Q).
 * Returns i * width for the first i of least divergence (the kept range's upper edge); 0 for an
 * empty histogram or one whose width is 0. */
double ims_calib_entropy(const double *hist, int nbins, double width);
/* The upper edge (k + 1) * width of the first bin k at which the cumulative count reaches
 * pct / 100 of the total (pct in (0, 100]); 0 for an empty histogram. */
double ims_calib_percentile(const double *hist, int nbins, double width, double pct);
/* The threshold of h by method m (pct for PERCENTILE), never above h->amax. The entropy search
 * leaves out the exact zeros (a ReLU's output is half zeros; they are exact at any scale, and
 * spread over the first level of a candidate they would push every threshold down to where the
 * levels are single bins); the percentile counts them. */
double ims_calib_threshold(const ims_hist *h, ims_calib_method m, double pct);

/* The scale of a tensor with threshold amax: amax / 255 for an unsigned (never negative) tensor,
 * amax / 127 otherwise; 1 when amax is 0 (all samples 0: any scale represents them). */
float ims_quant_act_scale(double amax, int is_unsigned);

/* Per-output-channel symmetric weight scales: w is [oc, k] (k = IC/group * KH * KW), scale[oc]
 * = max |w[o, :]| / 127 (1 for a channel of zeros). */
void ims_quant_weight_scales(float *scale, const float *w, int64_t oc, int64_t k);
/* q[o, j] = saturate(round_half_even(w[o, j] / scale[o]), -127, 127); w and q are [oc, k]. */
void ims_quant_weights(int8_t *q, const float *w, const float *scale, int64_t oc, int64_t k);

/* Requantisation of an int32 accumulator with a float multiplier (scale_in / scale_out):
 * saturate(round_half_even((float)acc * mult)) into s8 [-128, 127] or u8 [0, 255]. */
int8_t ims_requant_s8(int32_t acc, float mult);
uint8_t ims_requant_u8(int32_t acc, float mult);
/* Quantisation of a real value: saturate(round_half_even(x / scale)). NaN gives 0. */
int8_t ims_quant_s8(float x, float scale);
uint8_t ims_quant_u8(float x, float scale);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_QUANT_H */
