/*
 * k_output.cu: the engine's output kernel: reads the chosen layer's NHWC tensor, applies the
 * fused global average pool (or flattens in ONNX's NCHW order), L2-normalises each row and writes
 * float32 [n, dim] for the device-to-host copy. One block per image.
 */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"

#define OUT_THREADS 256

/* out [n, dim] <- x [n, hw, c]; gap: dim = c; else dim = c*hw (index ch*hw + p). */
template <typename T>
__global__ void __launch_bounds__(OUT_THREADS) k_output(float *out, const T *x, int hw, int c, int gap, int normalize) {
    __shared__ float red[OUT_THREADS / 32];
    __shared__ float scale;
    int64_t img = blockIdx.x;
    int64_t dim = gap ? c : (int64_t)c * hw;
    const T *xi = x + img * hw * c;
    float *o = out + img * dim;
    float ss = 0.f;
    if (gap) {
        float inv = 1.f / (float)hw;
        for (int ch = threadIdx.x; ch < c; ch += OUT_THREADS) {
            float acc = 0.f;
            for (int p = 0; p < hw; p++) acc += ims_ld(xi, (int64_t)p * c + ch);
            acc *= inv;
            o[ch] = acc;
            ss += acc * acc;
        }
    } else {
        for (int64_t j = threadIdx.x; j < dim; j += OUT_THREADS) {
            int64_t ch = j / hw, p = j % hw;
            float v = ims_ld(xi, p * c + ch);
            o[j] = v;
            ss += v * v;
        }
    }
    if (!normalize) return;
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.f;
        for (int k = 0; k < OUT_THREADS / 32; k++) t += red[k];
        scale = t > 0.f ? 1.f / sqrtf(t) : 0.f;
    }
    __syncthreads();
    float sc = scale;
    if (sc == 0.f) return;
    /* each thread rescales exactly the elements it wrote above (same index pattern) */
    if (gap) {
        for (int ch = threadIdx.x; ch < c; ch += OUT_THREADS) o[ch] *= sc;
    } else {
        for (int64_t j = threadIdx.x; j < dim; j += OUT_THREADS) o[j] *= sc;
    }
}
template <typename T>
static void launch_output(float *out, const void *x, int n, int hw, int c, int gap, int normalize, cudaStream_t s) {
    k_output<T><<<n, OUT_THREADS, 0, s>>>(out, (const T *)x, hw, c, gap, normalize);
}
extern "C" int ims_k_output(float *out, const void *x, int elt, int n, int hw, int c, int gap, int normalize,
                           cudaStream_t s) {
    IS_DISPATCH(elt, launch_output, out, x, n, hw, c, gap, normalize, s);
    return (int)cudaGetLastError();
}
