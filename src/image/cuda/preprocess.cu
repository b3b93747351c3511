/*
 * preprocess.cu: the fused GPU preprocessing kernel (see gpu_image.h): Pillow's antialiased
 * bilinear resize, bit for bit, then ToTensor + Normalize, layout change and cast.
 *
 * Pillow (Resample.c, 8 bits per channel) resizes in two passes, horizontal then vertical, with
 * coefficients computed in double (scale = in / out, support = max(scale, 1), center =
 * (o + 0.5) * scale, taps [int(center - support + 0.5), int(center + support + 0.5)) clipped to
 * the image, triangle weights normalised to sum 1) and converted to 22-bit fixed point; each pass
 * rounds (adds 2^21), shifts and clamps to 8 bits. This kernel does the same per output pixel:
 * for each row of its vertical window it computes the horizontal pass's 8-bit value exactly as
 * Pillow's intermediate image holds it, and accumulates the vertical pass on those.
 *
 * Grid: (ceil(ow / 128), oh, n), 128 threads along x: a block shares one output row (one vertical
 * window). Horizontal coefficients live in a per-thread array of PRE_MAXK taps; ims_gpu_preprocess
 * refuses (returns UNSUPPORTED for the caller to route to the CPU) images whose window is wider,
 * i.e. downscaling by more than PRE_MAXK / 2 - 1 in either direction.
 */
#include <cuda_fp16.h>

#include "image/cuda/gpu_image.h"

#define PRE_THREADS 128
#define PRE_MAXK 64
#define PREC_BITS 22

struct window {
    int lo, n;
    double center, ss, inv_ww;
};

__device__ static inline double tri(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* precompute_coeffs() of Pillow for output coordinate o */
__device__ static inline window make_window(int o, int in, int out) {
    window wd;
    double scale = (double)in / (double)out;
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * fscale;
    wd.center = ((double)o + 0.5) * scale;
    wd.ss = 1.0 / fscale;
    int lo = (int)(wd.center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = (int)(wd.center + support + 0.5);
    if (hi > in) hi = in;
    wd.lo = lo;
    wd.n = hi - lo;
    double ww = 0.0;
    for (int i = 0; i < wd.n; i++) ww += tri(((double)(i + lo) - wd.center + 0.5) * wd.ss);
    wd.inv_ww = ww;
    return wd;
}

/* normalize_coeffs_8bpc() of Pillow for tap i of a window */
__device__ static inline int coeff(const window &wd, int i) {
    double w = tri(((double)(i + wd.lo) - wd.center + 0.5) * wd.ss);
    if (wd.inv_ww != 0.0) w /= wd.inv_ww;
    return w < 0 ? (int)(-0.5 + w * (1 << PREC_BITS)) : (int)(0.5 + w * (1 << PREC_BITS));
}

__device__ static inline int clip8(int v) {
    if (v >= (1 << PREC_BITS) * 256) return 255;
    if (v <= 0) return 0;
    return v >> PREC_BITS;
}

template <bool FP16, bool NHWC>
static __global__ void preprocess_kernel(void *dst, const ims_gpu_src *srcs, int oh, int ow, float m0, float m1, float m2,
                                  float is0, float is1, float is2) {
    const int n = blockIdx.z, y = blockIdx.y, x = blockIdx.x * PRE_THREADS + threadIdx.x;
    const ims_gpu_src s = srcs[n];
    if (s.px == nullptr || x >= ow) return;
    const window wy = make_window(y, s.h, oh), wx = make_window(x, s.w, ow);
    if (wx.n > PRE_MAXK) return; /* refused on the host side before launch */
    int kx[PRE_MAXK];
    for (int i = 0; i < wx.n; i++) kx[i] = coeff(wx, i);
    int a0 = 1 << (PREC_BITS - 1), a1 = a0, a2 = a0;
    for (int j = 0; j < wy.n; j++) {
        const int ky = coeff(wy, j);
        const uint8_t *p = s.px + (size_t)(wy.lo + j) * (size_t)s.pitch + 3 * wx.lo;
        int h0 = 1 << (PREC_BITS - 1), h1 = h0, h2 = h0;
        for (int i = 0; i < wx.n; i++, p += 3) {
            h0 += kx[i] * p[0];
            h1 += kx[i] * p[1];
            h2 += kx[i] * p[2];
        }
        a0 += ky * clip8(h0);
        a1 += ky * clip8(h1);
        a2 += ky * clip8(h2);
    }
    const float k = 1.0f / 255.0f;
    const float v0 = ((float)clip8(a0) * k - m0) * is0, v1 = ((float)clip8(a1) * k - m1) * is1,
                v2 = ((float)clip8(a2) * k - m2) * is2;
    const size_t plane = (size_t)oh * (size_t)ow, base = (size_t)n * 3 * plane;
    size_t i0, i1, i2;
    if (NHWC) {
        i0 = base + ((size_t)y * ow + x) * 3;
        i1 = i0 + 1;
        i2 = i0 + 2;
    } else {
        i0 = base + (size_t)y * ow + x;
        i1 = i0 + plane;
        i2 = i1 + plane;
    }
    if (FP16) {
        __half *o = (__half *)dst;
        o[i0] = __float2half_rn(v0);
        o[i1] = __float2half_rn(v1);
        o[i2] = __float2half_rn(v2);
    } else {
        float *o = (float *)dst;
        o[i0] = v0;
        o[i1] = v1;
        o[i2] = v2;
    }
}

extern "C" int ims_gpu_preprocess_fits(int w, int h, int ow, int oh) {
    /* window width is at most 2 * ceil(support) + 1 with support = in / out */
    return 2 * ((w + ow - 1) / ow) + 2 <= PRE_MAXK && 2 * ((h + oh - 1) / oh) + 2 <= 4096;
}

extern "C" imgsim_status ims_gpu_preprocess(void *dst, const ims_gpu_src *srcs_dev, int n, const ims_gpu_pre_params *p,
                                           cudaStream_t stream, ims_err *e) {
    if (n <= 0) return IMGSIM_OK;
    if (n > 65535 || p->oh <= 0 || p->ow <= 0 || p->oh > 65535)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "GPU preprocessing: bad batch %d or size %dx%d", n, p->oh, p->ow);
    dim3 grid((unsigned)((p->ow + PRE_THREADS - 1) / PRE_THREADS), (unsigned)p->oh, (unsigned)n);
    float is0 = 1.0f / p->std[0], is1 = 1.0f / p->std[1], is2 = 1.0f / p->std[2];
#define LAUNCH(F, L)                                                                                                \
    preprocess_kernel<F, L><<<grid, PRE_THREADS, 0, stream>>>(dst, srcs_dev, p->oh, p->ow, p->mean[0], p->mean[1], \
                                                              p->mean[2], is0, is1, is2)
    if (p->fp16 && p->nhwc)
        LAUNCH(true, true);
    else if (p->fp16)
        LAUNCH(true, false);
    else if (p->nhwc)
        LAUNCH(false, true);
    else
        LAUNCH(false, false);
#undef LAUNCH
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess)
        return ims_fail(e, IMGSIM_ERR_BACKEND, "GPU preprocessing kernel: %s", cudaGetErrorString(ce));
    return IMGSIM_OK;
}
