/*
 * topk.c: the numeric helpers behind exact search and dedup (see topk.h for the exactness
 * argument): a single-threaded oneDNN sgemm tile, float16 conversion, float64 re-scoring and the
 * float32 dot-product error bound.
 */
#define _GNU_SOURCE
#include "search/topk.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define IS_HAVE_F16C_PATH 1
#endif

/* ---- oneDNN sgemm on one thread ---------------------------------------------------------- */

/* oneDNN (Debian's build) parallelises dnnl_sgemm with OpenMP using omp_get_max_threads() of the
 * calling thread. Our pool already runs one tile per thread, so each call is limited to one
 * OpenMP thread. The OpenMP entry points are looked up at run time (libgomp is loaded with
 * oneDNN), so imgsim needs no OpenMP flags; without them the call is simply not limited. */
static void (*omp_set_fn)(int);
static int (*omp_get_fn)(void);
static pthread_once_t omp_once = PTHREAD_ONCE_INIT;

static void omp_lookup(void) {
    *(void **)&omp_set_fn = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    *(void **)&omp_get_fn = dlsym(RTLD_DEFAULT, "omp_get_max_threads");
    if (!omp_set_fn || !omp_get_fn) omp_set_fn = NULL, omp_get_fn = NULL;
}

/* c [m, ldc] = a [m, k] * b [n, k]^T */
imgsim_status is_sgemm_nt(float *c, int64_t ldc, const float *a, int64_t m, const float *b, int64_t n,
                          int64_t k, is_err *e) {
    if (m <= 0 || n <= 0) return IMGSIM_OK;
    pthread_once(&omp_once, omp_lookup);
    int old = omp_get_fn ? omp_get_fn() : 1;
    if (old != 1) omp_set_fn(1);
    dnnl_status_t st = dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, k, b, k, 0.0f, c, ldc);
    if (old != 1) omp_set_fn(old);
    if (st != dnnl_success)
        return is_fail(e, IMGSIM_ERR_BACKEND, "search: dnnl_sgemm(%lld x %lld x %lld) failed (status %d)",
                       (long long)m, (long long)n, (long long)k, (int)st);
    return IMGSIM_OK;
}

/* ---- float16 ----------------------------------------------------------------------------- */

/* IEEE binary16 -> binary32, exact (subnormals, inf, NaN kept). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, ex = (h >> 10) & 0x1f, man = h & 0x3ffu, bits;
    if (ex == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int sh = 0;
            while (!(man & 0x400u)) man <<= 1, sh++;
            man &= 0x3ffu;
            bits = sign | ((uint32_t)(127 - 15 + 1 - sh) << 23) | (man << 13);
        }
    } else if (ex == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((ex + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#ifdef IS_HAVE_F16C_PATH
__attribute__((target("avx,f16c"))) static void f16c_convert(float *dst, const uint16_t *src, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < count; i++) dst[i] = half_to_float(src[i]);
}
#endif

void is_f16_to_f32_n(float *dst, const uint16_t *src, size_t count) {
#ifdef IS_HAVE_F16C_PATH
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
    }
    if (have) {
        f16c_convert(dst, src, count);
        return;
    }
#endif
    for (size_t i = 0; i < count; i++) dst[i] = half_to_float(src[i]);
}

const float *is_row_f32(const void *x, int64_t r, int dim, imgsim_dtype dt, float *buf) {
    if (dt == IMGSIM_F32) return (const float *)x + (size_t)r * (size_t)dim;
    is_f16_to_f32_n(buf, (const uint16_t *)x + (size_t)r * (size_t)dim, (size_t)dim);
    return buf;
}

/* ---- float64 re-scoring -------------------------------------------------------------------- */

/* Neumaier-compensated sum of the exact float64 products q[i] * g[i] (a float32 x float32
 * product fits a double exactly). The result is within a few ulp of the exact dot product. */
double is_dot64(const float *q, const void *g, int dim, imgsim_dtype dt) {
    double s = 0.0, c = 0.0;
    if (dt == IMGSIM_F32) {
        const float *gf = g;
        for (int i = 0; i < dim; i++) {
            double p = (double)q[i] * (double)gf[i], t = s + p;
            c += fabs(s) >= fabs(p) ? (s - t) + p : (p - t) + s;
            s = t;
        }
    } else {
        const uint16_t *gh = g;
        float buf[256];
        for (int i0 = 0; i0 < dim; i0 += 256) {
            int nb = dim - i0 < 256 ? dim - i0 : 256;
            is_f16_to_f32_n(buf, gh + i0, (size_t)nb);
            for (int i = 0; i < nb; i++) {
                double p = (double)q[i0 + i] * (double)buf[i], t = s + p;
                c += fabs(s) >= fabs(p) ? (s - t) + p : (p - t) + s;
                s = t;
            }
        }
    }
    return s + c;
}

double is_norm64(const float *x, int dim) {
    double s = 0.0;
    for (int i = 0; i < dim; i++) s += (double)x[i] * (double)x[i];
    return sqrt(s);
}

/* gamma(d) = d u / (1 - d u) bounds the relative error of any float32 summation order of d
 * products (Higham, Accuracy and Stability, 3.1); the 2x factor covers the float64 norms and
 * the float64 re-scoring's own rounding. */
double is_dot_error_bound(int dim, double norm_a, double norm_b) {
    const double u = 0x1p-24;
    double du = (double)(dim + 2) * u;
    if (du >= 0.5) return INFINITY;
    double b = 2.0 * (du / (1.0 - du)) * norm_a * norm_b;
    return b + 1e-300;
}

/* ---- candidate sorting -------------------------------------------------------------------- */

static int cand64_cmp(const void *pa, const void *pb) {
    const is_cand64 *a = pa, *b = pb;
    if (a->s > b->s) return -1;
    if (a->s < b->s) return 1;
    if (a->i < b->i) return -1;
    if (a->i > b->i) return 1;
    return 0;
}

int64_t is_cand64_sort_unique(is_cand64 *c, int64_t n) {
    if (n <= 1) return n;
    qsort(c, (size_t)n, sizeof *c, cand64_cmp);
    int64_t w = 1;
    for (int64_t r = 1; r < n; r++) {
        int dup = 0;
        for (int64_t j = w - 1; j >= 0 && c[j].s == c[r].s; j--)
            if (c[j].i == c[r].i) dup = 1;
        if (!dup) c[w++] = c[r];
    }
    return w;
}
