/*
 * quant.c: the int8 quantisation maths of quant.h: histograms of |x|, threshold choice (entropy,
 * percentile, min-max), weight scales and half-to-even quantisation. Checked against numpy
 * versions of the same definitions in tests/test_quant_calib.c.
 */
#include <math.h>
#include <string.h>

#include "quant/quant.h"

void ims_hist_init(ims_hist *h) {
    memset(h, 0, sizeof *h);
    h->min = INFINITY;
    h->max = -INFINITY;
}

/* Doubles h's bin width, merging bins 2k and 2k+1 into bin k. */
static void hist_double(ims_hist *h) {
    for (int k = 0; k < IMS_HIST_BINS / 2; k++) h->count[k] = h->count[2 * k] + h->count[2 * k + 1];
    for (int k = IMS_HIST_BINS / 2; k < IMS_HIST_BINS; k++) h->count[k] = 0;
    h->width *= 2;
}

void ims_hist_add(ims_hist *h, const float *x, size_t n) {
    double amax = 0, lo = h->min, hi = h->max, zeros = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i], a = fabs(v);
        zeros += v == 0;
        if (!(a <= amax)) amax = a; /* NaN makes amax NaN, then sticks */
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    h->min = lo;
    h->max = hi;
    h->zeros += zeros;
    h->n += n;
    if (!isfinite(amax)) {
        h->amax = INFINITY;
        return;
    }
    if (amax > h->amax) h->amax = amax;
    if (h->width == 0 && amax > 0) h->width = amax / IMS_HIST_BINS;
    while (h->width > 0 && amax > h->width * IMS_HIST_BINS) hist_double(h);
    if (h->width == 0) {
        h->count[0] += (double)n;
        return;
    }
    double inv = 1.0 / h->width;
    for (size_t i = 0; i < n; i++) {
        double a = fabs((double)x[i]);
        long b = (long)(a * inv);
        if (b >= IMS_HIST_BINS) b = IMS_HIST_BINS - 1; /* a == the range's upper edge */
        h->count[b] += 1;
    }
}

const char *ims_calib_method_name(ims_calib_method m) {
    switch (m) {
    case IMS_CALIB_ENTROPY: return "entropy";
    case IMS_CALIB_PERCENTILE: return "percentile";
    case IMS_CALIB_MINMAX: return "minmax";
    }
    return "?";
}

int ims_calib_method_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "entropy")) return IMS_CALIB_ENTROPY;
    if (!strcmp(s, "percentile")) return IMS_CALIB_PERCENTILE;
    if (!strcmp(s, "minmax")) return IMS_CALIB_MINMAX;
    return -1;
}

/* MXNet/TVM's _smooth_distribution on d[0..n): zeros get eps, non-zeros lose eps * zeros /
 * nonzeros. Returns -1 when every bin is zero or the adjustment would reach 1. */
static int smooth(double *d, int n) {
    const double eps = 1e-4;
    int zeros = 0;
    for (int k = 0; k < n; k++) zeros += d[k] == 0;
    int nonzeros = n - zeros;
    if (nonzeros == 0) return -1;
    double eps1 = eps * (double)zeros / (double)nonzeros;
    if (eps1 >= 1.0) return -1;
    for (int k = 0; k < n; k++) d[k] += d[k] == 0 ? eps : -eps1;
    return 0;
}

/* KL(p || q) of two unnormalised distributions of n bins (both normalised here). */
static double kl(const double *p, const double *q, int n) {
    double sp = 0, sq = 0;
    for (int k = 0; k < n; k++) {
        sp += p[k];
        sq += q[k];
    }
    if (!(sp > 0) || !(sq > 0)) return INFINITY;
    double d = 0;
    for (int k = 0; k < n; k++) {
        double pk = p[k] / sp, qk = q[k] / sq;
        if (pk > 0) {
            if (!(qk > 0)) return INFINITY;
            d += pk * log(pk / qk);
        }
    }
    return d;
}

double ims_calib_entropy(const double *hist, int nbins, double width) {
    if (nbins < IMS_QUANT_LEVELS || nbins > IMS_HIST_BINS || !(width > 0)) return 0;
    double total = 0;
    for (int k = 0; k < nbins; k++) total += hist[k];
    if (!(total > 0)) return 0;
    double p[IMS_HIST_BINS], q[IMS_HIST_BINS], suffix[IMS_HIST_BINS + 1];
    suffix[nbins] = 0;
    for (int k = nbins - 1; k >= 0; k--) suffix[k] = suffix[k + 1] + hist[k];
    double best = INFINITY;
    int best_i = nbins;
    for (int i = IMS_QUANT_LEVELS; i <= nbins; i++) {
        memcpy(p, hist, (size_t)i * sizeof *p);
        p[i - 1] += suffix[i];
        int m = i / IMS_QUANT_LEVELS;
        for (int l = 0; l < IMS_QUANT_LEVELS; l++) {
            int lo = l * m, hi = l == IMS_QUANT_LEVELS - 1 ? i : lo + m;
            double sum = 0;
            int nz = 0;
            for (int k = lo; k < hi; k++) {
                sum += hist[k];
                nz += p[k] != 0;
            }
            for (int k = lo; k < hi; k++) q[k] = nz && p[k] != 0 ? sum / nz : 0;
        }
        if (smooth(p, i) || smooth(q, i)) continue;
        double d = kl(p, q, i);
        if (d < best) {
            best = d;
            best_i = i;
        }
    }
    return best_i * width;
}

double ims_calib_percentile(const double *hist, int nbins, double width, double pct) {
    double total = 0;
    for (int k = 0; k < nbins; k++) total += hist[k];
    if (!(total > 0)) return 0;
    double target = pct / 100.0 * total, cum = 0;
    for (int k = 0; k < nbins; k++) {
        cum += hist[k];
        if (cum >= target) return (k + 1) * width;
    }
    return nbins * width;
}

double ims_calib_threshold(const ims_hist *h, ims_calib_method m, double pct) {
    double t;
    if (m == IMS_CALIB_MINMAX || h->width == 0) return h->amax;
    if (m == IMS_CALIB_PERCENTILE) {
        t = ims_calib_percentile(h->count, IMS_HIST_BINS, h->width, pct);
    } else {
        double nz[IMS_HIST_BINS];
        memcpy(nz, h->count, sizeof nz);
        nz[0] -= h->zeros;
        t = ims_calib_entropy(nz, IMS_HIST_BINS, h->width);
    }
    return t < h->amax ? t : h->amax;
}

float ims_quant_act_scale(double amax, int is_unsigned) {
    if (!(amax > 0)) return 1.0f;
    return (float)(amax / (is_unsigned ? 255.0 : 127.0));
}

void ims_quant_weight_scales(float *scale, const float *w, int64_t oc, int64_t k) {
    for (int64_t o = 0; o < oc; o++) {
        float m = 0;
        for (int64_t j = 0; j < k; j++) {
            float a = fabsf(w[o * k + j]);
            if (a > m) m = a;
        }
        scale[o] = m > 0 ? m / 127.0f : 1.0f;
    }
}

/* Round half to even, independent of the FPU rounding mode. */
static double round_half_even(double v) {
    double f = floor(v), d = v - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return fmod(f, 2.0) == 0 ? f : f + 1;
}

static double sat(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

void ims_quant_weights(int8_t *q, const float *w, const float *scale, int64_t oc, int64_t k) {
    for (int64_t o = 0; o < oc; o++)
        for (int64_t j = 0; j < k; j++) {
            float v = w[o * k + j] / scale[o];
            q[o * k + j] = (int8_t)sat(round_half_even(v), -127, 127);
        }
}

int8_t ims_requant_s8(int32_t acc, float mult) {
    float v = (float)acc * mult;
    return (int8_t)sat(round_half_even(v), -128, 127);
}

uint8_t ims_requant_u8(int32_t acc, float mult) {
    float v = (float)acc * mult;
    return (uint8_t)sat(round_half_even(v), 0, 255);
}

int8_t ims_quant_s8(float x, float scale) {
    float v = x / scale;
    if (isnan(v)) return 0;
    return (int8_t)sat(round_half_even(v), -128, 127);
}

uint8_t ims_quant_u8(float x, float scale) {
    float v = x / scale;
    if (isnan(v)) return 0;
    return (uint8_t)sat(round_half_even(v), 0, 255);
}
