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
#define IS_X86_SIMD 1
#endif

static double inflate_sumsq(double s, int dim);
#ifdef IS_X86_SIMD
__attribute__((target("avx512f"))) static double errsq_avx512(const float *x, const uint16_t *xb, int dim);
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
imgsim_status ims_sgemm_nt(float *c, int64_t ldc, const float *a, int64_t m, const float *b, int64_t n,
                          int64_t k, ims_err *e) {
    if (m <= 0 || n <= 0) return IMGSIM_OK;
    pthread_once(&omp_once, omp_lookup);
    int old = omp_get_fn ? omp_get_fn() : 1;
    if (old != 1) omp_set_fn(1);
    dnnl_status_t st = dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, k, b, k, 0.0f, c, ldc);
    if (old != 1) omp_set_fn(old);
    if (st != dnnl_success)
        return ims_fail(e, IMGSIM_ERR_BACKEND, "search: dnnl_sgemm(%lld x %lld x %lld) failed (status %d)",
                       (long long)m, (long long)n, (long long)k, (int)st);
    return IMGSIM_OK;
}

/* ---- candidate lists ------------------------------------------------------------------------ */

static void fold_row_scalar(float *sc, int64_t *ix, int *cnt, int cap, const float *crow, int64_t g0,
                            int64_t gn) {
    float thr = *cnt == cap ? sc[cap - 1] : -INFINITY;
    for (int64_t j = 0; j < gn; j++) {
        if (crow[j] > thr) {
            ims_cand_insert(sc, ix, cnt, cap, crow[j], g0 + j);
            thr = *cnt == cap ? sc[cap - 1] : -INFINITY;
        }
    }
}

#ifdef IS_X86_SIMD
__attribute__((target("avx512f"))) static void fold_row_avx512(float *sc, int64_t *ix, int *cnt, int cap,
                                                               const float *crow, int64_t g0, int64_t gn) {
    float thr = *cnt == cap ? sc[cap - 1] : -INFINITY;
    __m512 t = _mm512_set1_ps(thr);
    int64_t j = 0;
    for (; j + 16 <= gn; j += 16) {
        __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(crow + j), t, _CMP_GT_OQ);
        if (!m) continue;
        while (m) {
            int b = __builtin_ctz(m);
            m &= (__mmask16)(m - 1);
            if (crow[j + b] > thr) {
                ims_cand_insert(sc, ix, cnt, cap, crow[j + b], g0 + j + b);
                thr = *cnt == cap ? sc[cap - 1] : -INFINITY;
            }
        }
        t = _mm512_set1_ps(thr);
    }
    if (j < gn) fold_row_scalar(sc, ix, cnt, cap, crow + j, g0 + j, gn - j);
}
#endif

void ims_fold_row(float *sc, int64_t *ix, int *cnt, int cap, const float *crow, int64_t g0, int64_t gn) {
#ifdef IS_X86_SIMD
    if (__builtin_cpu_supports("avx512f")) { /* libgcc fills the CPU model before main */
        fold_row_avx512(sc, ix, cnt, cap, crow, g0, gn);
        return;
    }
#endif
    fold_row_scalar(sc, ix, cnt, cap, crow, g0, gn);
}

/* ---- oneDNN bf16 matmul ------------------------------------------------------------------ */

struct ims_bf16_gemm {
    int64_t m, n, k;
    int workers;
    dnnl_engine_t eng;
    dnnl_primitive_t prim;
    dnnl_stream_t *streams; /* [workers] */
    dnnl_memory_t *mem;     /* [workers * 4]: a, b, c, scratchpad */
    void **scratch;         /* [workers] */
};

void ims_bf16_gemm_destroy(ims_bf16_gemm *g) {
    if (!g) return;
    for (int w = 0; w < g->workers; w++) {
        if (g->streams && g->streams[w]) dnnl_stream_destroy(g->streams[w]);
        for (int j = 0; g->mem && j < 4; j++)
            if (g->mem[w * 4 + j]) dnnl_memory_destroy(g->mem[w * 4 + j]);
        if (g->scratch) free(g->scratch[w]);
    }
    free(g->streams);
    free(g->mem);
    free(g->scratch);
    if (g->prim) dnnl_primitive_destroy(g->prim);
    if (g->eng) dnnl_engine_destroy(g->eng);
    free(g);
}

imgsim_status ims_bf16_gemm_create(ims_bf16_gemm **out, int64_t m, int64_t n, int64_t k, int workers,
                                  ims_err *e) {
    *out = NULL;
    ims_bf16_gemm *g = ims_calloc(1, sizeof *g);
    if (!g) return ims_fail(e, IMGSIM_ERR_NOMEM, "search: out of memory");
    g->m = m, g->n = n, g->k = k, g->workers = workers;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    imgsim_status st = IMGSIM_ERR_BACKEND;
    const char *what = "engine";
    if (dnnl_engine_create(&g->eng, dnnl_cpu, 0) != dnnl_success) goto fail;
    dnnl_memory_desc_t ad, bd, cd;
    dnnl_dims_t da = {m, k}, db = {k, n}, dc = {m, n};
    what = "memory descriptors";
    if (dnnl_memory_desc_init_by_tag(&ad, 2, da, dnnl_bf16, dnnl_ab) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&bd, 2, db, dnnl_bf16, dnnl_ba) != dnnl_success || /* B^T: [n, k] rows */
        dnnl_memory_desc_init_by_tag(&cd, 2, dc, dnnl_f32, dnnl_ab) != dnnl_success)
        goto fail;
    dnnl_matmul_desc_t md;
    what = "matmul";
    if (dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd) != dnnl_success) goto fail;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success)
        goto fail;
    if (dnnl_primitive_desc_create(&pd, &md, attr, g->eng, NULL) != dnnl_success) {
        st = IMGSIM_ERR_UNSUPPORTED;
        goto fail;
    }
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    if (!impl || (!strstr(impl, "bf16") && !strstr(impl, "amx"))) { /* emulated bf16: slower than f32 */
        st = IMGSIM_ERR_UNSUPPORTED;
        what = impl ? impl : "no implementation";
        goto fail;
    }
    what = "primitive";
    if (dnnl_primitive_create(&g->prim, pd) != dnnl_success) goto fail;
    const dnnl_memory_desc_t *sd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t ssize = sd ? dnnl_memory_desc_get_size(sd) : 0;
    g->streams = ims_calloc((size_t)workers, sizeof *g->streams);
    g->mem = ims_calloc((size_t)workers * 4, sizeof *g->mem);
    g->scratch = ims_calloc((size_t)workers, sizeof *g->scratch);
    if (!g->streams || !g->mem || !g->scratch) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "search: out of memory");
        goto fail_msg;
    }
    what = "per-thread streams and memory";
    for (int w = 0; w < workers; w++) {
        if (dnnl_stream_create(&g->streams[w], g->eng, dnnl_stream_default_flags) != dnnl_success) goto fail;
        if (dnnl_memory_create(&g->mem[w * 4 + 0], &ad, g->eng, DNNL_MEMORY_NONE) != dnnl_success ||
            dnnl_memory_create(&g->mem[w * 4 + 1], &bd, g->eng, DNNL_MEMORY_NONE) != dnnl_success ||
            dnnl_memory_create(&g->mem[w * 4 + 2], &cd, g->eng, DNNL_MEMORY_NONE) != dnnl_success)
            goto fail;
        if (ssize) {
            g->scratch[w] = ims_malloc(ssize);
            if (!g->scratch[w]) {
                st = ims_fail(e, IMGSIM_ERR_NOMEM, "search: out of memory");
                goto fail_msg;
            }
            if (dnnl_memory_create(&g->mem[w * 4 + 3], sd, g->eng, g->scratch[w]) != dnnl_success) goto fail;
        }
    }
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    *out = g;
    return IMGSIM_OK;
fail:
    st = ims_fail(e, st, "search: oneDNN bf16 matmul %lld x %lld x %lld: %s unavailable", (long long)m,
                 (long long)n, (long long)k, what);
fail_msg:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    ims_bf16_gemm_destroy(g);
    return st;
}

imgsim_status ims_bf16_gemm_run(ims_bf16_gemm *g, int worker, float *c, const uint16_t *a, const uint16_t *b,
                               ims_err *e) {
    dnnl_memory_t *m = g->mem + worker * 4;
    if (dnnl_memory_set_data_handle(m[0], (void *)a) != dnnl_success ||
        dnnl_memory_set_data_handle(m[1], (void *)b) != dnnl_success ||
        dnnl_memory_set_data_handle(m[2], c) != dnnl_success)
        return ims_fail(e, IMGSIM_ERR_BACKEND, "search: oneDNN memory handles");
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, m[0]}, {DNNL_ARG_WEIGHTS, m[1]}, {DNNL_ARG_DST, m[2]}, {DNNL_ARG_SCRATCHPAD, m[3]}};
    pthread_once(&omp_once, omp_lookup);
    int old = omp_get_fn ? omp_get_fn() : 1;
    if (old != 1) omp_set_fn(1);
    dnnl_status_t st = dnnl_primitive_execute(g->prim, g->streams[worker], m[3] ? 4 : 3, args);
    if (st == dnnl_success) st = dnnl_stream_wait(g->streams[worker]);
    if (old != 1) omp_set_fn(old);
    if (st != dnnl_success)
        return ims_fail(e, IMGSIM_ERR_BACKEND, "search: oneDNN bf16 matmul failed (status %d)", (int)st);
    return IMGSIM_OK;
}

/* ---- bfloat16 ------------------------------------------------------------------------------ */

static uint16_t float_to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40u); /* quiet NaN */
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

#ifdef IS_X86_SIMD
__attribute__((target("avx512f,avx512bf16"))) static void bf16_convert_avx512(uint16_t *dst, const float *src,
                                                                              size_t count) {
    size_t i = 0;
    for (; i + 32 <= count; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    for (; i < count; i++)
        dst[i] = float_to_bf16(src[i]);
}
#endif

void ims_f32_to_bf16_n(uint16_t *dst, const float *src, size_t count) {
#ifdef IS_X86_SIMD
    if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f")) {
        bf16_convert_avx512(dst, src, count);
        return;
    }
#endif
    for (size_t i = 0; i < count; i++)
        dst[i] = float_to_bf16(src[i]);
}

double ims_dot_error_bound_bf16(int dim, double norm_a, double norm_b) {
    const double u = 0x1p-8;
    double f = ims_dot_error_bound(dim, norm_a, norm_b);
    /* + the last term: bf16 inputs and products flushed to zero below float32's normal range */
    return f + 1.01 * (2.0 * u + u * u) * norm_a * norm_b + (double)dim * 0x1p-120 * (1.0 + norm_a + norm_b);
}

double ims_bf16_error_norm(const float *x, const uint16_t *xb, int dim) {
#ifdef IS_X86_SIMD
    if (__builtin_cpu_supports("avx512f")) return sqrt(inflate_sumsq(errsq_avx512(x, xb, dim), dim));
#endif
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < dim; i++) {
        uint32_t bits = (uint32_t)xb[i] << 16;
        float r;
        memcpy(&r, &bits, sizeof r);
        double d = (double)x[i] - (double)r;
        a[i & 7] += d * d;
    }
    return sqrt((((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))) * (1.0 + 1e-12));
}

double ims_dot_error_bound_bf16_rows(int dim, double nq, double eq, double ng, double eg) {
    /* 1.01: covers the float64 rounding of the norms; |q~| <= nq + eq, |g~| <= ng + eg */
    return 1.01 * (eq * ng + (nq + eq) * eg) + ims_dot_error_bound(dim, nq + eq, ng + eg) +
           (double)dim * 0x1p-120 * (1.0 + nq + ng);
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
            while (!(man & 0x400u))
                man <<= 1, sh++;
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

#ifdef IS_X86_SIMD
__attribute__((target("avx,f16c"))) static void f16c_convert(float *dst, const uint16_t *src, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < count; i++)
        dst[i] = half_to_float(src[i]);
}
#endif

void ims_f16_to_f32_n(float *dst, const uint16_t *src, size_t count) {
#ifdef IS_X86_SIMD
    if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx")) {
        f16c_convert(dst, src, count);
        return;
    }
#endif
    for (size_t i = 0; i < count; i++)
        dst[i] = half_to_float(src[i]);
}

const float *ims_row_f32(const void *x, int64_t r, int dim, imgsim_dtype dt, float *buf) {
    if (dt == IMGSIM_F32) return (const float *)x + (size_t)r * (size_t)dim;
    ims_f16_to_f32_n(buf, (const uint16_t *)x + (size_t)r * (size_t)dim, (size_t)dim);
    return buf;
}

/* ---- float64 re-scoring -------------------------------------------------------------------- */

/* Neumaier-compensated sum of the exact float64 products q[i] * g[i] (a float32 x float32
 * product fits a double exactly), in index order. The result is within a few ulp of the exact
 * dot product and a fixed function of the two rows (identical rows give identical scores).
 * The CUDA search's rescoring kernel (search/cuda/search_kernels.cu, dot64) repeats these exact
 * operations so that CPU and GPU scores are bit-identical: change both or neither. */
double ims_dot64(const float *q, const void *g, int dim, imgsim_dtype dt) {
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
            ims_f16_to_f32_n(buf, gh + i0, (size_t)nb);
            for (int i = 0; i < nb; i++) {
                double p = (double)q[i0 + i] * (double)buf[i], t = s + p;
                c += fabs(s) >= fabs(p) ? (s - t) + p : (p - t) + s;
                s = t;
            }
        }
    }
    return s + c;
}

/* Upper bounds of Euclidean norms (they only feed error bounds). AVX-512: float32 sums of
 * squares in 16 lanes, inflated by (1 + (dim + 16) 2^-23) to cover their rounding (every term is
 * non-negative, so the relative error of the sum is below gamma(dim)); elsewhere float64. */
#ifdef IS_X86_SIMD
__attribute__((target("avx512f"))) static double sumsq_avx512(const float *x, int dim) {
    __m512 acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= dim; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        acc = _mm512_fmadd_ps(v, v, acc);
    }
    if (i < dim) {
        __mmask16 m = (__mmask16)((1u << (dim - i)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        acc = _mm512_fmadd_ps(v, v, acc);
    }
    return (double)_mm512_reduce_add_ps(acc);
}

/* sum of (x - float(xb))^2: each difference is exact in float32 (xb is x rounded) */
__attribute__((target("avx512f"))) static double errsq_avx512(const float *x, const uint16_t *xb, int dim) {
    __m512 acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= dim; i += 16) {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(xb + i)));
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
        acc = _mm512_fmadd_ps(d, d, acc);
    }
    double s = (double)_mm512_reduce_add_ps(acc);
    for (; i < dim; i++) {
        uint32_t bits = (uint32_t)xb[i] << 16;
        float r;
        memcpy(&r, &bits, sizeof r);
        double d = (double)x[i] - (double)r;
        s += d * d;
    }
    return s;
}
#endif

static double inflate_sumsq(double s, int dim) {
    return s * (1.0 + (double)(dim + 16) * 0x1p-23) + 1e-60;
}

double ims_norm64(const float *x, int dim) {
#ifdef IS_X86_SIMD
    if (__builtin_cpu_supports("avx512f")) return sqrt(inflate_sumsq(sumsq_avx512(x, dim), dim));
#endif
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= dim; i += 8)
        for (int l = 0; l < 8; l++)
            a[l] += (double)x[i + l] * (double)x[i + l];
    for (; i < dim; i++)
        a[0] += (double)x[i] * (double)x[i];
    return sqrt((((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))) * (1.0 + 1e-12));
}

/* gamma(d) = d u / (1 - d u) bounds the relative error of any float32 summation order of d
 * products (Higham, Accuracy and Stability, 3.1); the 2x factor covers the float64 norms and
 * the float64 re-scoring's own rounding. */
double ims_dot_error_bound(int dim, double norm_a, double norm_b) {
    const double u = 0x1p-24;
    double du = (double)(dim + 2) * u;
    if (du >= 0.5) return INFINITY;
    double b = 2.0 * (du / (1.0 - du)) * norm_a * norm_b;
    return b + 1e-300;
}

/* ---- candidate sorting -------------------------------------------------------------------- */

static int cand64_cmp(const void *pa, const void *pb) {
    const ims_cand64 *a = pa, *b = pb;
    if (a->s > b->s) return -1;
    if (a->s < b->s) return 1;
    if (a->i < b->i) return -1;
    if (a->i > b->i) return 1;
    return 0;
}

int64_t ims_cand64_sort_unique(ims_cand64 *c, int64_t n) {
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
