/*
 * k_pool.cu: pooling kernels of the CUDA engine on NHWC tensors: max/average pooling with
 * padding (output size decided by the graph's shape inference, so ceil_mode is already in oh/ow),
 * and global average pooling.
 */
#include <float.h>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"

/* y [n, oh, ow, c] <- x [n, h, w, c]; one thread per output element, channels fastest so that a
 * warp reads consecutive channels. */
template <typename T>
__global__ void k_pool(T *y, const T *x, int is_max, int n, int h, int w, int c, int oh, int ow, int kh, int kw,
                       int sh, int sw, int pt, int pl, int cip) {
    int64_t count = (int64_t)n * oh * ow * c;
    IS_GRID_LOOP(i, count) {
        int ch = (int)(i % c);
        int64_t r = i / c;
        int ox = (int)(r % ow);
        r /= ow;
        int oy = (int)(r % oh);
        int64_t img = r / oh;
        int y0 = oy * sh - pt, x0 = ox * sw - pl;
        float acc = is_max ? -FLT_MAX : 0.f;
        int cnt = 0;
        for (int ky = 0; ky < kh; ky++) {
            int iy = y0 + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; kx++) {
                int ix = x0 + kx;
                if (ix < 0 || ix >= w) continue;
                float v = ims_ld(x, ((img * h + iy) * w + ix) * c + ch);
                acc = is_max ? fmaxf(acc, v) : acc + v;
                cnt++;
            }
        }
        if (!is_max) {
            /* count_include_pad: the whole window counts (exact unless ceil_mode runs a window
             * past the padding, which torchvision models do not do) */
            int denom = cip ? kh * kw : cnt;
            acc = denom ? acc / (float)denom : 0.f;
        }
        ims_st(y, i, acc);
    }
}
/* Max pooling with 16-byte accesses: each thread V = 16 / sizeof(T) consecutive channels. */
template <typename T>
__global__ void k_maxpool_vec(T *y, const T *x, int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh,
                              int sw, int pt, int pl) {
    const int V = 16 / sizeof(T);
    int cv = c / V;
    int64_t count = (int64_t)n * oh * ow * cv;
    IS_GRID_LOOP(i, count) {
        int cb = (int)(i % cv);
        int64_t r = i / cv;
        int ox = (int)(r % ow);
        r /= ow;
        int oy = (int)(r % oh);
        int64_t img = r / oh;
        int y0 = oy * sh - pt, x0 = ox * sw - pl;
        float acc[16 / sizeof(T)];
#pragma unroll
        for (int k = 0; k < V; k++) acc[k] = -FLT_MAX;
        for (int ky = 0; ky < kh; ky++) {
            int iy = y0 + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; kx++) {
                int ix = x0 + kx;
                if (ix < 0 || ix >= w) continue;
                uint4 v = reinterpret_cast<const uint4 *>(x + ((img * h + iy) * w + ix) * c)[cb];
                const T *ve = reinterpret_cast<const T *>(&v);
#pragma unroll
                for (int k = 0; k < V; k++) acc[k] = fmaxf(acc[k], ims_ld(ve, k));
            }
        }
        uint4 o;
        T *oe = reinterpret_cast<T *>(&o);
#pragma unroll
        for (int k = 0; k < V; k++) ims_st(oe, k, acc[k]);
        reinterpret_cast<uint4 *>(y + ((img * oh + oy) * ow + ox) * c)[cb] = o;
    }
}

template <typename T>
static void launch_pool(void *y, const void *x, int is_max, int n, int h, int w, int c, int oh, int ow, int kh, int kw,
                        int sh, int sw, int pt, int pl, int cip, cudaStream_t s) {
    const int V = 16 / sizeof(T);
    if (is_max && c % V == 0) {
        k_maxpool_vec<T><<<ims_blocks((int64_t)n * oh * ow * c / V), 256, 0, s>>>((T *)y, (const T *)x, n, h, w, c, oh,
                                                                                ow, kh, kw, sh, sw, pt, pl);
        return;
    }
    k_pool<T><<<ims_blocks((int64_t)n * oh * ow * c), 256, 0, s>>>((T *)y, (const T *)x, is_max, n, h, w, c, oh, ow,
                                                                   kh, kw, sh, sw, pt, pl, cip);
}
extern "C" int ims_k_pool(void *y, const void *x, int elt, int is_max, int n, int h, int w, int c, int oh, int ow,
                         int kh, int kw, int sh, int sw, int pt, int pl, int count_include_pad, cudaStream_t s) {
    IS_DISPATCH(elt, launch_pool, y, x, is_max, n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl, count_include_pad, s);
    return (int)cudaGetLastError();
}

/* y [n, c] = mean_p x [n, p, c]; one thread per (n, c), consecutive threads consecutive channels. */
template <typename T>
__global__ void k_gap(T *y, const T *x, int n, int hw, int c) {
    int64_t count = (int64_t)n * c;
    IS_GRID_LOOP(i, count) {
        int64_t img = i / c;
        int ch = (int)(i % c);
        const T *p = x + img * hw * c + ch;
        float acc = 0.f;
        for (int q = 0; q < hw; q++) acc += ims_ld(p, (int64_t)q * c);
        ims_st(y, i, acc / (float)hw);
    }
}
template <typename T>
static void launch_gap(void *y, const void *x, int n, int hw, int c, cudaStream_t s) {
    k_gap<T><<<ims_blocks((int64_t)n * c), 256, 0, s>>>((T *)y, (const T *)x, n, hw, c);
}
extern "C" int ims_k_gap(void *y, const void *x, int elt, int n, int hw, int c, cudaStream_t s) {
    IS_DISPATCH(elt, launch_gap, y, x, n, hw, c, s);
    return (int)cudaGetLastError();
}
