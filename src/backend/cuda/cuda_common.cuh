/*
 * cuda_common.cuh: device helpers shared by the engine's .cu files: float conversion for the two
 * element types, the fused activation, grid sizing and type dispatch.
 */
#ifndef IMGSIM_CUDA_COMMON_CUH
#define IMGSIM_CUDA_COMMON_CUH

#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ float ims_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ims_ld(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void ims_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void ims_st(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

/* act: 0 none, 1 relu, 2 clip(lo, hi) */
__device__ __forceinline__ float ims_act(float v, int act, float lo, float hi) {
    if (act == 1) return v > 0.f ? v : 0.f;
    if (act == 2) return fminf(fmaxf(v, lo), hi);
    return v;
}

/* Blocks for a grid-stride loop over count elements with 256 threads. */
static inline unsigned ims_blocks(int64_t count) {
    int64_t b = (count + 255) / 256;
    if (b > 65535 * 8) b = 65535 * 8;
    if (b < 1) b = 1;
    return (unsigned)b;
}

#define IS_GRID_LOOP(i, count) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (count); i += (int64_t)gridDim.x * blockDim.x)

/* Calls the host template FN<__half>(args) or FN<float>(args) depending on elt. */
#define IS_DISPATCH(elt, FN, ...)        \
    do {                                 \
        if ((elt) == 2)                  \
            FN<__half>(__VA_ARGS__);     \
        else                             \
            FN<float>(__VA_ARGS__);      \
    } while (0)

#endif
