/*
 * resize.c: the preprocessing of torchvision's Resize((H, W)) or Resize(S) on a PIL image +
 * CenterCrop + ToTensor + Normalize, reproduced exactly.
 *
 * torchvision resizes PIL images with Image.resize((W, H), BILINEAR or BICUBIC), i.e. PIL's
 * ImagingResample (libImaging/Resample.c): a separable filter (triangle, or PIL's cubic with
 * a = -0.5) whose support is scaled by the downscale factor (antialiasing), coefficients computed in double, normalised
 * to sum 1 and converted to 22-bit fixed point; a horizontal pass over only the source rows
 * the vertical pass needs, rounded to uint8, then a vertical pass rounded to uint8. Each step
 * here is the same integer arithmetic (scalar, or AVX2 where the CPU has it: the same sums in
 * another order, exact in int32), so the resized pixels are bit-identical to PIL's. ToTensor +
 * Normalize is (v / 255 - mean) / std in float32, as torchvision computes it.
 *
 * The centre crop: every resized pixel depends only on its own row's and column's coefficients,
 * so the crop is made by computing the coefficients of the whole resized image (rh, rw) and
 * running the passes over the cropped rows and columns only: the same pixels as resizing in
 * full and cropping, without the pixels the crop drops.
 *
 * Shapes: input RGB8 interleaved (ih, iw, 3); resized (rh, rw), of which the crop (oh, ow) at
 * (y0, x0) is computed; temp uint8 planar (3, rows, ow) where rows is the span of source rows
 * the vertical filter touches for the cropped rows; output float32 CHW (3, oh, ow).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_priv.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define IS_HAVE_AVX2_PATH 1
#endif

#define PREC_BITS 22 /* PIL's PRECISION_BITS: 32 - 8 - 2 */

/* PIL's filters (libImaging/Resample.c): support 1 (bilinear) and 2 (bicubic, a = -0.5). */
static double tri(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double cubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct rs_filter {
    double (*fn)(double);
    double support;
} rs_filter;

static rs_filter filter_of(int interp) {
    rs_filter f = {tri, 1.0};
    if (interp == IMGSIM_INTERP_BICUBIC) f.fn = cubic, f.support = 2.0;
    return f;
}

/* Filter taps per output sample for a 1-D resize of in -> out (PIL's ksize). */
static int ksize_of(int in, int out, double support) {
    double fs = (double)in / out;
    if (fs < 1.0) fs = 1.0;
    return (int)ceil(support * fs) * 2 + 1;
}


/* Layout of the scratch buffer; returns the total size (SIZE_MAX on overflow). */
typedef struct rs_layout {
    size_t kh, kv, bh, bv, tmp, k16, total;
    int ksh, ksv;
    int use16; /* the 16-bit split coefficient table (k16) is built and used */
} rs_layout;

/* Largest horizontal tap count for the 16-bit split path: its low-half sums stay below 2^31
 * (255 * 4095 * 1024 < 2^31). */
#define K16_MAX_TAPS 1024

/* For a resize of (ih, iw) to (rh, rw) with a filter of support, of which the crop (oh, ow) is
 * computed (the tables hold the crop's rows and columns only). */
static rs_layout layout(int iw, int ih, int rw, int rh, int ow, int oh, double support) {
    rs_layout L;
    memset(&L, 0, sizeof L);
    L.ksh = (ksize_of(iw, rw, support) + 3) & ~3; /* multiple of 4: the AVX2 passes read taps in groups */
    L.use16 = L.ksh <= K16_MAX_TAPS;
    L.ksv = ksize_of(ih, rh, support);
    uint64_t kh = (uint64_t)ow * L.ksh * 4, kv = (uint64_t)oh * L.ksv * 4;
    uint64_t bh = (uint64_t)ow * 2 * 4, bv = (uint64_t)oh * 2 * 4;
    uint64_t tmp = (uint64_t)ow * ih * 3;
    uint64_t k16 = L.use16 ? (uint64_t)ow * L.ksh * 16 : 0;
    uint64_t total = 0;
    uint64_t parts[6] = {kh, kv, bh, bv, tmp, k16};
    size_t offs[6];
    for (int i = 0; i < 6; i++) {
        offs[i] = (size_t)total;
        total += (parts[i] + 63) & ~(uint64_t)63;
    }
    if (total > (uint64_t)SIZE_MAX / 2) {
        L.total = SIZE_MAX;
        return L;
    }
    L.kh = offs[0], L.kv = offs[1], L.bh = offs[2], L.bv = offs[3], L.tmp = offs[4], L.k16 = offs[5];
    L.total = (size_t)total;
    return L;
}

size_t ims_preprocess_scratch_size(int iw, int ih, int ow, int oh) {
    if (iw <= 0 || ih <= 0 || ow <= 0 || oh <= 0) return 0;
    return layout(iw, ih, ow, oh, ow, oh, 1.0).total;
}

size_t ims_preprocess_scratch_size_geom(int iw, int ih, const ims_pre_geom *g) {
    if (iw <= 0 || ih <= 0 || !g || g->rw <= 0 || g->rh <= 0) return 0;
    return layout(iw, ih, g->rw, g->rh, g->ow, g->oh, filter_of(g->interp).support).total;
}

/* PIL's precompute_coeffs + normalize_coeffs_8bpc for filter f and a resize of in -> out, for
 * the output indices first .. first + count - 1 (a crop; PIL computes all, each independently):
 * for output index first + i, bounds[2i] = first source index, bounds[2i+1] = tap count,
 * k[i*stride ..] = taps, zero past the tap count. k must hold count * stride ints, stride >=
 * PIL's ksize. */
static void coeffs(int32_t *k, int32_t *bounds, int in, int out, int first, int count, int stride, rs_filter f) {
    double scale = (double)((float)in - 0.0f) / out;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f.support * filterscale;
    double ss = 1.0 / filterscale;
    for (int i = 0; i < count; i++) {
        const int xx = first + i;
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in) xmax = in;
        xmax -= xmin;
        /* two sweeps (sum, then normalise) instead of a ksize-long temporary */
        for (int x = 0; x < xmax; x++) ww += f.fn((x + xmin - center + 0.5) * ss);
        int32_t *kk = k + (size_t)i * stride;
        for (int x = 0; x < stride; x++) {
            double v = 0.0;
            if (x < xmax) {
                v = f.fn((x + xmin - center + 0.5) * ss);
                if (ww != 0.0) v /= ww;
            }
            kk[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC_BITS)) : (int32_t)(0.5 + v * (1 << PREC_BITS));
        }
        bounds[2 * i] = xmin;
        bounds[2 * i + 1] = xmax;
    }
}

static inline uint8_t clip8(int32_t v) {
    v >>= PREC_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* The normalisation of ToTensor + Normalize for one channel: (v / 255 - mean) / std in float32,
 * the same operations torchvision does (also in the vector code: IEEE division is exact). */
typedef struct norm1 {
    float mean, std;
} norm1;

static inline float normalise(uint8_t v, norm1 n) {
    return ((float)v / 255.0f - n.mean) / n.std;
}

/* One output pixel of the horizontal pass (scalar): taps n from p (RGB8) with kk; the three
 * channels go to d0, d1, d2 (planar). */
static inline void h_pixel(uint8_t *d0, uint8_t *d1, uint8_t *d2, const uint8_t *p, const int32_t *kk, int n) {
    int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0;
    for (int x = 0; x < n; x++) {
        s0 += p[3 * x + 0] * kk[x];
        s1 += p[3 * x + 1] * kk[x];
        s2 += p[3 * x + 2] * kk[x];
    }
    *d0 = clip8(s0);
    *d1 = clip8(s1);
    *d2 = clip8(s2);
}

#ifdef IS_HAVE_AVX2_PATH
/* One row of the horizontal pass with AVX2: two taps per step, the pair of RGB pixels widened
 * to 8 int32 lanes [R0 G0 B0 0 R1 G1 B1 0] and multiplied by [k0 x4, k1 x4]; the same integer
 * sums as the scalar code, so the same result. Reads up to 5 bytes past the row's last pixel
 * (the caller guarantees they exist) and one tap past n (zero in the table). */
__attribute__((target("avx2"))) static void h_row_avx2(uint8_t *d0, uint8_t *d1, uint8_t *d2, const uint8_t *s, int ow,
                                                       const int32_t *k, const int32_t *bounds, int stride) {
    const __m128i shuf = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i perm = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const __m128i bias = _mm_set1_epi32(1 << (PREC_BITS - 1));
    int xx = 0;
    /* two output pixels per step: independent chains, one shared pack */
    for (; xx + 2 <= ow; xx += 2) {
        const int xa = bounds[2 * xx], na = bounds[2 * xx + 1];
        const int xb = bounds[2 * xx + 2], nb = bounds[2 * xx + 3];
        const int32_t *ka = k + (size_t)xx * stride, *kb = ka + stride;
        const uint8_t *pa = s + (size_t)xa * 3, *pb = s + (size_t)xb * 3;
        __m256i acca = _mm256_setzero_si256(), accb = _mm256_setzero_si256();
        const int n = na < nb ? na : nb;
        int t = 0;
        for (; t < n; t += 2) {
            __m128i qa = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(pa + 3 * t)), shuf);
            __m128i qb = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(pb + 3 * t)), shuf);
            __m256i wa = _mm256_permutevar8x32_epi32(
                _mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(const void *)(ka + t))), perm);
            __m256i wb = _mm256_permutevar8x32_epi32(
                _mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(const void *)(kb + t))), perm);
            acca = _mm256_add_epi32(acca, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(qa), wa));
            accb = _mm256_add_epi32(accb, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(qb), wb));
        }
        /* the longer of the two (each reads only up to its own tap count, as the single loop) */
        for (int u = t; u < na; u += 2) {
            __m128i qa = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(pa + 3 * u)), shuf);
            __m256i wa = _mm256_permutevar8x32_epi32(
                _mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(const void *)(ka + u))), perm);
            acca = _mm256_add_epi32(acca, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(qa), wa));
        }
        for (int u = t; u < nb; u += 2) {
            __m128i qb = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(pb + 3 * u)), shuf);
            __m256i wb = _mm256_permutevar8x32_epi32(
                _mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(const void *)(kb + u))), perm);
            accb = _mm256_add_epi32(accb, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(qb), wb));
        }
        __m128i ra = _mm_add_epi32(_mm256_castsi256_si128(acca), _mm256_extracti128_si256(acca, 1));
        __m128i rb = _mm_add_epi32(_mm256_castsi256_si128(accb), _mm256_extracti128_si256(accb, 1));
        ra = _mm_srai_epi32(_mm_add_epi32(ra, bias), PREC_BITS);
        rb = _mm_srai_epi32(_mm_add_epi32(rb, bias), PREC_BITS);
        __m128i r = _mm_packs_epi32(ra, rb);
        r = _mm_packus_epi16(r, r); /* clamp to 0..255: [Ra Ga Ba 0 Rb Gb Bb 0 ...] */
        uint64_t v = (uint64_t)_mm_cvtsi128_si64(r);
        d0[xx] = (uint8_t)v;
        d1[xx] = (uint8_t)(v >> 8);
        d2[xx] = (uint8_t)(v >> 16);
        d0[xx + 1] = (uint8_t)(v >> 32);
        d1[xx + 1] = (uint8_t)(v >> 40);
        d2[xx + 1] = (uint8_t)(v >> 48);
    }
    for (; xx < ow; xx++) {
        const int xmin = bounds[2 * xx], n = bounds[2 * xx + 1];
        const int32_t *kk = k + (size_t)xx * stride;
        const uint8_t *p = s + (size_t)xmin * 3;
        __m256i acc = _mm256_setzero_si256();
        for (int t = 0; t < n; t += 2) {
            __m128i px = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(p + 3 * t)), shuf);
            __m256i kv = _mm256_permutevar8x32_epi32(
                _mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(const void *)(kk + t))), perm);
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(px), kv));
        }
        __m128i r = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        r = _mm_srai_epi32(_mm_add_epi32(r, bias), PREC_BITS);
        r = _mm_packus_epi16(_mm_packs_epi32(r, r), r); /* clamp to 0..255 */
        uint32_t v = (uint32_t)_mm_cvtsi128_si32(r);
        d0[xx] = (uint8_t)v;
        d1[xx] = (uint8_t)(v >> 8);
        d2[xx] = (uint8_t)(v >> 16);
    }
}

/* The horizontal coefficients split for _mm256_madd_epi16: k = hi * 4096 + lo with lo < 4096
 * and hi <= 1024 both fit int16, and sum(p * k) = 4096 * sum(p * hi) + sum(p * lo) exactly.
 * Per output pixel, per group of 4 taps: 16 int16 "lo" then 16 int16 "hi", laid out to match
 * the pixel shuffle of h_row_madd: lane 0 [k0 k1 k0 k1 k0 k1 0 0], lane 1 [k2 k3 k2 k3 k2 k3 0 0].
 * k: (ow, stride) int32 from coeffs(); k16: (ow, stride / 4, 32) int16. */
static void split16(int16_t *k16, const int32_t *k, int ow, int stride) {
    for (int xx = 0; xx < ow; xx++) {
        const int32_t *kk = k + (size_t)xx * stride;
        for (int g = 0; g < stride / 4; g++) {
            int16_t *lo = k16 + ((size_t)xx * (stride / 4) + g) * 32, *hi = lo + 16;
            for (int lane = 0; lane < 2; lane++) {
                int32_t ka = kk[4 * g + 2 * lane], kb = kk[4 * g + 2 * lane + 1];
                for (int c = 0; c < 3; c++) {
                    lo[8 * lane + 2 * c] = (int16_t)(ka & 4095);
                    lo[8 * lane + 2 * c + 1] = (int16_t)(kb & 4095);
                    hi[8 * lane + 2 * c] = (int16_t)(ka >> 12);
                    hi[8 * lane + 2 * c + 1] = (int16_t)(kb >> 12);
                }
                lo[8 * lane + 6] = lo[8 * lane + 7] = hi[8 * lane + 6] = hi[8 * lane + 7] = 0;
            }
        }
    }
}

/* One row of the horizontal pass with AVX2 multiply-add of 16-bit halves: 4 taps per step (one
 * 16-byte load broadcast to both lanes, one shuffle to [R0 R1 G0 G1 B0 B1 0 0 | R2 R3 ...] as
 * int16, two madds). Exact: the integer sum equals the scalar one. Reads up to 13 bytes past the
 * row's last pixel (the caller guarantees 16 exist) and taps past n up to the next multiple of 4
 * (zero in the table). */
__attribute__((target("avx2"))) static void h_row_madd(uint8_t *d0, uint8_t *d1, uint8_t *d2, const uint8_t *s, int ow,
                                                       const int16_t *k16, const int32_t *bounds, int stride) {
    const __m256i shuf = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
                                          6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1);
    const __m128i bias = _mm_set1_epi32(1 << (PREC_BITS - 1));
    const int groups = stride / 4;
    for (int xx = 0; xx < ow; xx++) {
        const int xmin = bounds[2 * xx], n = bounds[2 * xx + 1];
        const int16_t *c = k16 + (size_t)xx * groups * 32;
        const uint8_t *p = s + (size_t)xmin * 3;
        __m256i alo = _mm256_setzero_si256(), ahi = _mm256_setzero_si256();
        for (int t = 0; t < n; t += 4, p += 12, c += 32) {
            __m256i px = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p)), shuf);
            alo = _mm256_add_epi32(alo, _mm256_madd_epi16(px, _mm256_loadu_si256((const __m256i *)(const void *)c)));
            ahi = _mm256_add_epi32(ahi, _mm256_madd_epi16(px, _mm256_loadu_si256((const __m256i *)(const void *)(c + 16))));
        }
        __m128i lo = _mm_add_epi32(_mm256_castsi256_si128(alo), _mm256_extracti128_si256(alo, 1));
        __m128i hi = _mm_add_epi32(_mm256_castsi256_si128(ahi), _mm256_extracti128_si256(ahi, 1));
        __m128i r = _mm_add_epi32(_mm_add_epi32(_mm_slli_epi32(hi, 12), lo), bias);
        r = _mm_srai_epi32(r, PREC_BITS);
        r = _mm_packus_epi16(_mm_packs_epi32(r, r), r); /* clamp to 0..255 */
        uint32_t v = (uint32_t)_mm_cvtsi128_si32(r);
        d0[xx] = (uint8_t)v;
        d1[xx] = (uint8_t)(v >> 8);
        d2[xx] = (uint8_t)(v >> 16);
    }
}

/* 8 int32 sums -> clip8 -> normalised floats stored at o. */
__attribute__((target("avx2"))) static inline void v_store8(float *o, __m256i a, __m256 mean, __m256 std) {
    a = _mm256_srai_epi32(a, PREC_BITS);
    a = _mm256_min_epi32(_mm256_max_epi32(a, _mm256_setzero_si256()), _mm256_set1_epi32(255));
    __m256 f = _mm256_div_ps(_mm256_cvtepi32_ps(a), _mm256_set1_ps(255.0f));
    _mm256_storeu_ps(o, _mm256_div_ps(_mm256_sub_ps(f, mean), std));
}

/* One output row of the vertical pass for one plane with AVX2: o[j] = normalise(clip8(bias +
 * sum_t src[(ymin + t) * w + j] * kk[t])) for j in [0, w), 32 columns at a time in registers.
 * Returns how many columns it did (a multiple of 32); the caller finishes the rest. */
__attribute__((target("avx2"))) static int v_row_avx2(float *o, const uint8_t *src, int w, int ymin, int n,
                                                      const int32_t *kk, norm1 nm) {
    const __m256i bias = _mm256_set1_epi32(1 << (PREC_BITS - 1));
    const __m256 mean = _mm256_set1_ps(nm.mean), std = _mm256_set1_ps(nm.std);
    int j = 0;
    for (; j + 32 <= w; j += 32) {
        __m256i a0 = bias, a1 = bias, a2 = bias, a3 = bias;
        const uint8_t *s = src + (size_t)ymin * w + j;
        for (int t = 0; t < n; t++, s += w) {
            const __m256i c = _mm256_set1_epi32(kk[t]);
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)s)), c));
            a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(s + 8))), c));
            a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(s + 16))), c));
            a3 = _mm256_add_epi32(a3, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(s + 24))), c));
        }
        v_store8(o + j, a0, mean, std);
        v_store8(o + j + 8, a1, mean, std);
        v_store8(o + j + 16, a2, mean, std);
        v_store8(o + j + 24, a3, mean, std);
    }
    return j;
}

static int have_avx2(void) {
    static atomic_int cached = -1; /* every thread computes the same value */
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}
#else
static int have_avx2(void) {
    return 0;
}
#endif

/* Horizontal pass: src rows [y0, y0 + rows) of (ih, iw, 3) -> dst planar (3, rows, ow). */
static void pass_h(uint8_t *dst, const uint8_t *src, int iw, int ih, int y0, int rows, int ow, const int32_t *k,
                   const int16_t *k16, const int32_t *bounds, int stride) {
    const int simd = have_avx2();
    const size_t plane = (size_t)rows * ow;
    for (int y = 0; y < rows; y++) {
        const uint8_t *s = src + (size_t)(y0 + y) * iw * 3;
        uint8_t *d0 = dst + (size_t)y * ow, *d1 = d0 + plane, *d2 = d1 + plane;
#ifdef IS_HAVE_AVX2_PATH
        /* the vector loads may run 5 bytes past this row: only where the image goes on */
        const uint64_t after = (uint64_t)(ih - 1 - (y0 + y)) * (uint64_t)iw * 3; /* bytes after this row */
        if (simd && k16 && after >= 16) {
            h_row_madd(d0, d1, d2, s, ow, k16, bounds, stride);
            continue;
        }
        if (simd && after >= 8) {
            h_row_avx2(d0, d1, d2, s, ow, k, bounds, stride);
            continue;
        }
#else
        (void)simd;
        (void)ih;
        (void)k16;
#endif
        for (int xx = 0; xx < ow; xx++)
            h_pixel(d0 + xx, d1 + xx, d2 + xx, s + (size_t)bounds[2 * xx] * 3, k + (size_t)xx * stride, bounds[2 * xx + 1]);
    }
}

/* Vertical pass of one plane: src (rows, w) -> out (oh, w) normalised floats. */
static void pass_v(float *out, const uint8_t *src, int w, int oh, const int32_t *k, const int32_t *bounds,
                   int ksize, norm1 nm) {
    const int simd = have_avx2();
    for (int yy = 0; yy < oh; yy++) {
        const int ymin = bounds[2 * yy], n = bounds[2 * yy + 1];
        const int32_t *kk = k + (size_t)yy * ksize;
        float *o = out + (size_t)yy * w;
        int j = 0;
#ifdef IS_HAVE_AVX2_PATH
        if (simd) j = v_row_avx2(o, src, w, ymin, n, kk, nm);
#else
        (void)simd;
#endif
        for (; j < w; j++) {
            int32_t a = 1 << (PREC_BITS - 1);
            for (int t = 0; t < n; t++) a += src[(size_t)(ymin + t) * w + j] * kk[t];
            o[j] = normalise(clip8(a), nm);
        }
    }
}

imgsim_status ims_preprocess_rgb(float *out, const ims_image *img, int oh, int ow, const float mean[3],
                                 const float std[3], void *scratch, ims_err *e) {
    ims_pre_geom g = {ow, oh, 0, 0, ow, oh, IMGSIM_INTERP_BILINEAR};
    return ims_preprocess_rgb_geom(out, img, &g, mean, std, scratch, e);
}

imgsim_status ims_preprocess_rgb_geom(float *out, const ims_image *img, const ims_pre_geom *g, const float mean[3],
                                      const float std[3], void *scratch, ims_err *e) {
    if (!out || !img || !img->px || img->w <= 0 || img->h <= 0 || !g || g->oh <= 0 || g->ow <= 0 ||
        g->x0 < 0 || g->y0 < 0 || g->x0 + g->ow > g->rw || g->y0 + g->oh > g->rh)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocess: bad image or output size");
    for (int c = 0; c < 3; c++)
        if (!(std[c] != 0.0f)) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocess: std[%d] is zero", c);
    const int iw = img->w, ih = img->h, oh = g->oh, ow = g->ow;
    const rs_filter f = filter_of(g->interp);
    rs_layout L = layout(iw, ih, g->rw, g->rh, ow, oh, f.support);
    if (L.total == SIZE_MAX)
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "preprocess: %dx%d -> %dx%d is too large", iw, ih, g->rw, g->rh);
    uint8_t *mem = scratch;
    void *owned = NULL;
    if (!mem) {
        owned = ims_malloc(L.total + 64);
        if (!owned) return ims_fail(e, IMGSIM_ERR_NOMEM, "preprocess: out of memory");
        mem = (uint8_t *)(((uintptr_t)owned + 63) & ~(uintptr_t)63);
    }
    int32_t *kh = (int32_t *)(void *)(mem + L.kh), *kv = (int32_t *)(void *)(mem + L.kv);
    int32_t *bh = (int32_t *)(void *)(mem + L.bh), *bv = (int32_t *)(void *)(mem + L.bv);
    uint8_t *tmp = mem + L.tmp;

    /* The horizontal pass always runs: when the width does not change PIL skips it, but its
     * coefficients are then exactly [1.0, 0] (identity, for both filters), so running it changes
     * nothing and gives the vertical pass its planar input. The coefficients are those of the
     * cropped rows (from y0) and columns (from x0) of the resized image. */
    coeffs(kv, bv, ih, g->rh, g->y0, oh, L.ksv, f);
    coeffs(kh, bh, iw, g->rw, g->x0, ow, L.ksh, f);
    const int y_first = bv[0], y_last = bv[2 * (oh - 1)] + bv[2 * (oh - 1) + 1];
    const int rows = y_last - y_first;
    for (int i = 0; i < oh; i++) bv[2 * i] -= y_first;
    int16_t *k16 = NULL;
#ifdef IS_HAVE_AVX2_PATH
    if (L.use16 && have_avx2()) {
        k16 = (int16_t *)(void *)(mem + L.k16);
        split16(k16, kh, ow, L.ksh);
    }
#endif
    pass_h(tmp, img->px, iw, ih, y_first, rows, ow, kh, k16, bh, L.ksh);

    const size_t plane = (size_t)rows * ow, oplane = (size_t)oh * ow;
    for (int c = 0; c < 3; c++) {
        norm1 nm = {mean[c], std[c]};
        const uint8_t *src = tmp + c * plane;
        float *o = out + c * oplane;
        if (g->rh != ih) {
            pass_v(o, src, ow, oh, kv, bv, L.ksv, nm);
        } else { /* no vertical change (rows == oh, from row y0): normalise the rows as they are */
            for (size_t i = 0; i < oplane; i++) o[i] = normalise(src[i], nm);
        }
    }
    free(owned);
    return IMGSIM_OK;
}
