/*
 * preprocess.cu: the fused GPU preprocessing kernel (see gpu_image.h).
 *
 * For each output pixel (n, y, x) of an image of size (h, w) resized to (oh, ow):
 *   out[c] = (sum_{iy,ix} wy(iy) * wx(ix) * src[iy, ix, c] / 255 - mean[c]) / std[c]
 * with PIL's antialiased bilinear weights: scale = in / out, support = max(scale, 1),
 * center = (o + 0.5) * scale, taps i in [int(center - support + 0.5), int(center + support + 0.5))
 * clipped to the image, weight = triangle((i - center + 0.5) / max(scale, 1)), normalised to sum 1.
 * PIL rounds its intermediate (horizontal) pass to 8 bits; this kernel keeps it in float, which
 * moves a pixel by at most half a level (0.5 / 255 / std ~ 0.009 after normalisation).
 *
 * Grid: (ceil(ow / 128), oh, n), 128 threads along x: a block shares one output row, so its
 * vertical window and weights are the same for all threads. Reads are RGB8, 3 bytes per tap,
 * neighbouring threads reading neighbouring pixels.
 */
#include <cuda_fp16.h>

#include "image/cuda/gpu_image.h"

#define PRE_THREADS 128

/* PIL's window for output coordinate o: first tap, tap count, 1/filterscale, center, and the
 * normalisation 1 / sum of weights. */
struct window {
    int lo, n;
    float ss, center, inv_sum;
};

__device__ static inline float tri(float x) {
    x = fabsf(x);
    return x < 1.0f ? 1.0f - x : 0.0f;
}

__device__ static inline window make_window(int o, int in, int out) {
    window wd;
    float scale = (float)in / (float)out;
    float fscale = scale > 1.0f ? scale : 1.0f;
    float support = fscale; /* bilinear support 1.0 times filterscale */
    wd.center = ((float)o + 0.5f) * scale;
    wd.ss = 1.0f / fscale;
    int lo = (int)(wd.center - support + 0.5f);
    if (lo < 0) lo = 0;
    int hi = (int)(wd.center + support + 0.5f);
    if (hi > in) hi = in;
    wd.lo = lo;
    wd.n = hi - lo;
    float sum = 0.0f;
    for (int i = 0; i < wd.n; i++) sum += tri(((float)(i + lo) - wd.center + 0.5f) * wd.ss);
    wd.inv_sum = sum != 0.0f ? 1.0f / sum : 0.0f;
    return wd;
}

template <bool FP16, bool NHWC>
__global__ void preprocess_kernel(void *dst, const is_gpu_src *srcs, int oh, int ow, float m0, float m1, float m2,
                                  float is0, float is1, float is2) {
    const int n = blockIdx.z, y = blockIdx.y, x = blockIdx.x * PRE_THREADS + threadIdx.x;
    const is_gpu_src s = srcs[n];
    if (s.px == nullptr || x >= ow) return;
    const window wy = make_window(y, s.h, oh), wx = make_window(x, s.w, ow);
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
    for (int j = 0; j < wy.n; j++) {
        const int iy = wy.lo + j;
        const float fy = tri(((float)iy - wy.center + 0.5f) * wy.ss) * wy.inv_sum;
        if (fy == 0.0f) continue;
        const uint8_t *row = s.px + (size_t)iy * (size_t)s.pitch;
        float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f;
        for (int i = 0; i < wx.n; i++) {
            const int ix = wx.lo + i;
            const float fx = tri(((float)ix - wx.center + 0.5f) * wx.ss);
            const uint8_t *p = row + 3 * ix;
            r0 += fx * (float)p[0];
            r1 += fx * (float)p[1];
            r2 += fx * (float)p[2];
        }
        a0 += fy * r0;
        a1 += fy * r1;
        a2 += fy * r2;
    }
    const float k = wx.inv_sum * (1.0f / 255.0f);
    const float v0 = (a0 * k - m0) * is0, v1 = (a1 * k - m1) * is1, v2 = (a2 * k - m2) * is2;
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

extern "C" imgsim_status is_gpu_preprocess(void *dst, const is_gpu_src *srcs_dev, int n, const is_gpu_pre_params *p,
                                           cudaStream_t stream, is_err *e) {
    if (n <= 0) return IMGSIM_OK;
    if (n > 65535 || p->oh <= 0 || p->ow <= 0 || p->oh > 65535)
        return is_fail(e, IMGSIM_ERR_INVALID_ARG, "GPU preprocessing: bad batch %d or size %dx%d", n, p->oh, p->ow);
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
        return is_fail(e, IMGSIM_ERR_BACKEND, "GPU preprocessing kernel: %s", cudaGetErrorString(ce));
    return IMGSIM_OK;
}
