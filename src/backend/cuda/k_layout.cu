/*
 * k_layout.cu: layout kernels of the CUDA engine: the input conversion (float32 NCHW from the
 * host -> NHWC in the engine's type, channels zero-padded), NHWC -> NCHW flatten, channel concat,
 * and the pseudo-random fill used while autotuning.
 */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"

/* dst [n, hw, cp] <- src [n, c, hw]; one thread per destination element. */
template <typename T>
__global__ void k_input(T *dst, const float *src, int n, int c, int cp, int hw) {
    int64_t count = (int64_t)n * hw * cp;
    IS_GRID_LOOP(i, count) {
        int ch = (int)(i % cp);
        int64_t pix = i / cp; /* img * hw + p */
        int64_t img = pix / hw, p = pix % hw;
        float v = ch < c ? src[(img * c + ch) * hw + p] : 0.f;
        ims_st(dst, i, v);
    }
}
template <typename T>
static void launch_input(void *dst, const float *src, int n, int c, int cp, int hw, cudaStream_t s) {
    k_input<T><<<ims_blocks((int64_t)n * hw * cp), 256, 0, s>>>((T *)dst, src, n, c, cp, hw);
}
/* dst [n, oh, ow, cp] <- space-to-depth(2) of the padded src [n, c, h, w]. */
template <typename T>
__global__ void k_input_s2d(T *dst, const float *src, int n, int c, int cp, int h, int w, int oh, int ow, int pt,
                            int pl) {
    int64_t count = (int64_t)n * oh * ow * cp;
    IS_GRID_LOOP(i, count) {
        int ch = (int)(i % cp);
        int64_t r = i / cp;
        int x0 = (int)(r % ow);
        r /= ow;
        int y0 = (int)(r % oh);
        int64_t img = r / oh;
        float v = 0.f;
        if (ch < 4 * c) {
            int q = ch / c, cc = ch % c;
            int y = 2 * y0 + (q >> 1) - pt, x = 2 * x0 + (q & 1) - pl;
            if (y >= 0 && y < h && x >= 0 && x < w) v = src[((img * c + cc) * h + y) * w + x];
        }
        ims_st(dst, i, v);
    }
}
template <typename T>
static void launch_input_s2d(void *dst, const float *src, int n, int c, int cp, int h, int w, int oh, int ow, int pt,
                             int pl, cudaStream_t s) {
    k_input_s2d<T><<<ims_blocks((int64_t)n * oh * ow * cp), 256, 0, s>>>((T *)dst, src, n, c, cp, h, w, oh, ow, pt, pl);
}
extern "C" int ims_k_input(void *dst, const float *src, int elt, int n, int c, int cp, int h, int w, int s2d, int oh,
                          int ow, int pt, int pl, cudaStream_t s) {
    if (s2d)
        IS_DISPATCH(elt, launch_input_s2d, dst, src, n, c, cp, h, w, oh, ow, pt, pl, s);
    else
        IS_DISPATCH(elt, launch_input, dst, src, n, c, cp, h * w, s);
    return (int)cudaGetLastError();
}

/* dst [n, c*hw] (NCHW order) <- src [n, hw, c]; one thread per destination element. */
template <typename T>
__global__ void k_flatten(T *dst, const T *src, int n, int hw, int c) {
    int64_t per = (int64_t)hw * c, count = (int64_t)n * per;
    IS_GRID_LOOP(i, count) {
        int64_t img = i / per, r = i % per;
        int64_t ch = r / hw, p = r % hw;
        dst[i] = src[img * per + p * c + ch];
    }
}
template <typename T>
static void launch_flatten(void *dst, const void *src, int n, int hw, int c, cudaStream_t s) {
    k_flatten<T><<<ims_blocks((int64_t)n * hw * c), 256, 0, s>>>((T *)dst, (const T *)src, n, hw, c);
}
extern "C" int ims_k_flatten(void *dst, const void *src, int elt, int n, int hw, int c, cudaStream_t s) {
    IS_DISPATCH(elt, launch_flatten, dst, src, n, hw, c, s);
    return (int)cudaGetLastError();
}

/* dst [n, hw, ctot] channels [coff, coff+c) <- src [n, hw, c]. */
template <typename T>
__global__ void k_concat(T *dst, const T *src, int64_t rows, int c, int ctot, int coff) {
    int64_t count = rows * c;
    IS_GRID_LOOP(i, count) {
        int64_t r = i / c;
        int ch = (int)(i % c);
        dst[r * ctot + coff + ch] = src[i];
    }
}
template <typename T>
static void launch_concat(void *dst, const void *src, int64_t rows, int c, int ctot, int coff, cudaStream_t s) {
    k_concat<T><<<ims_blocks(rows * c), 256, 0, s>>>((T *)dst, (const T *)src, rows, c, ctot, coff);
}
extern "C" int ims_k_concat(void *dst, const void *src, int elt, int n, int hw, int c, int ctot, int coff,
                           cudaStream_t s) {
    IS_DISPATCH(elt, launch_concat, dst, src, (int64_t)n * hw, c, ctot, coff, s);
    return (int)cudaGetLastError();
}

/* x [count] <- hash(seed, i) mapped to [-1, 1]. */
template <typename T>
__global__ void k_fill(T *x, int64_t count, uint32_t seed) {
    IS_GRID_LOOP(i, count) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 16;
        h *= 0x7feb352du;
        h ^= h >> 15;
        ims_st(x, i, (float)(h & 0xffff) / 32767.5f - 1.f);
    }
}
template <typename T>
static void launch_fill(void *x, int64_t count, uint32_t seed, cudaStream_t s) {
    k_fill<T><<<ims_blocks(count), 256, 0, s>>>((T *)x, count, seed);
}
extern "C" int ims_k_fill(void *x, int elt, int64_t count, uint32_t seed, cudaStream_t s) {
    IS_DISPATCH(elt, launch_fill, x, count, seed, s);
    return (int)cudaGetLastError();
}
