/*
 * k_eltwise.cu: element-wise kernels of the CUDA engine: the convolution/GEMM epilogue
 * (bias + residual + activation, used when the unfused cuDNN path measured faster) and the
 * binary/unary ops (Add, Mul with per-channel broadcast, Sigmoid, HardSigmoid, HardSwish,
 * standalone ReLU/Clip).
 */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"

/* y [rows, c] = act(y + bias[c] + z) */
template <typename T>
__global__ void k_epilogue(T *y, const float *bias, const T *z, int64_t rows, int c, int act, float lo, float hi) {
    int64_t count = rows * c;
    IS_GRID_LOOP(i, count) {
        float v = ims_ld(y, i);
        if (bias) v += bias[i % c];
        if (z) v += ims_ld(z, i);
        ims_st(y, i, ims_act(v, act, lo, hi));
    }
}
/* The same with 16-byte accesses: each thread handles V = 16 / sizeof(T) consecutive channels
 * (needs c % V == 0 and 16-byte aligned pointers, which the arena and weight blob guarantee). */
template <typename T>
__global__ void k_epilogue_vec(T *y, const float *bias, const T *z, int64_t rows, int c, int act, float lo, float hi) {
    const int V = 16 / sizeof(T);
    int64_t count = rows * c / V;
    IS_GRID_LOOP(i, count) {
        int ch0 = (int)((i * V) % c);
        uint4 yv = reinterpret_cast<uint4 *>(y)[i];
        uint4 zv = make_uint4(0, 0, 0, 0);
        if (z) zv = reinterpret_cast<const uint4 *>(z)[i];
        T *ye = reinterpret_cast<T *>(&yv);
        const T *ze = reinterpret_cast<const T *>(&zv);
#pragma unroll
        for (int k = 0; k < V; k++) {
            float v = ims_ld(ye, k);
            if (bias) v += bias[ch0 + k];
            if (z) v += ims_ld(ze, k);
            ims_st(ye, k, ims_act(v, act, lo, hi));
        }
        reinterpret_cast<uint4 *>(y)[i] = yv;
    }
}
template <typename T>
static void launch_epilogue(void *y, const float *bias, const void *z, int64_t rows, int c, int act, float lo,
                            float hi, cudaStream_t s) {
    const int V = 16 / sizeof(T);
    if (c % V == 0 && ((uintptr_t)y | (uintptr_t)z) % 16 == 0)
        k_epilogue_vec<T><<<ims_blocks(rows * c / V), 256, 0, s>>>((T *)y, bias, (const T *)z, rows, c, act, lo, hi);
    else
        k_epilogue<T><<<ims_blocks(rows * c), 256, 0, s>>>((T *)y, bias, (const T *)z, rows, c, act, lo, hi);
}
extern "C" int ims_k_epilogue(void *y, const float *bias, const void *z, int elt, int64_t rows, int c, int act,
                             float lo, float hi, cudaStream_t s) {
    IS_DISPATCH(elt, launch_epilogue, y, bias, z, rows, c, act, lo, hi, s);
    return (int)cudaGetLastError();
}

/* channel shuffle: y[r, j * g + i] = x[r, i * (c / g) + j] */
template <typename T>
__global__ void k_shuffle(T *y, const T *x, int64_t rows, int c, int g) {
    int cg = c / g;
    IS_GRID_LOOP(k, rows * c) {
        int64_t r = k / c;
        int co = (int)(k % c), i = co % g, j = co / g;
        y[k] = x[r * c + (int64_t)i * cg + j];
    }
}
template <typename T>
static void launch_shuffle(void *y, const void *x, int64_t rows, int c, int g, cudaStream_t s) {
    k_shuffle<T><<<ims_blocks(rows * c), 256, 0, s>>>((T *)y, (const T *)x, rows, c, g);
}
extern "C" int ims_k_shuffle(void *y, const void *x, int elt, int n, int hw, int c, int g, cudaStream_t s) {
    if (g < 1 || c % g) return (int)cudaErrorInvalidValue;
    IS_DISPATCH(elt, launch_shuffle, y, x, (int64_t)n * hw, c, g, s);
    return (int)cudaGetLastError();
}

/* y[r, k] = x[r, coff + k] */
template <typename T>
__global__ void k_cslice(T *y, const T *x, int64_t rows, int cx, int cy, int coff) {
    IS_GRID_LOOP(k, rows * cy) {
        int64_t r = k / cy;
        y[k] = x[r * cx + coff + k % cy];
    }
}
template <typename T>
static void launch_cslice(void *y, const void *x, int64_t rows, int cx, int cy, int coff, cudaStream_t s) {
    k_cslice<T><<<ims_blocks(rows * cy), 256, 0, s>>>((T *)y, (const T *)x, rows, cx, cy, coff);
}
extern "C" int ims_k_cslice(void *y, const void *x, int elt, int n, int hw, int cx, int cy, int coff, cudaStream_t s) {
    IS_DISPATCH(elt, launch_cslice, y, x, (int64_t)n * hw, cx, cy, coff, s);
    return (int)cudaGetLastError();
}

/* y [rows, c] = act(x * scale[c] + shift[c]) */
template <typename T>
__global__ void k_affine(T *y, const T *x, const float *scale, const float *shift, int64_t rows, int c, int act,
                         float lo, float hi) {
    IS_GRID_LOOP(i, rows * c) {
        int ch = (int)(i % c);
        ims_st(y, i, ims_act(ims_ld(x, i) * scale[ch] + shift[ch], act, lo, hi));
    }
}
template <typename T>
static void launch_affine(void *y, const void *x, const float *scale, const float *shift, int64_t rows, int c, int act,
                          float lo, float hi, cudaStream_t s) {
    k_affine<T><<<ims_blocks(rows * c), 256, 0, s>>>((T *)y, (const T *)x, scale, shift, rows, c, act, lo, hi);
}
extern "C" int ims_k_affine(void *y, const void *x, const float *scale, const float *shift, int elt, int64_t rows,
                           int c, int act, float lo, float hi, cudaStream_t s) {
    IS_DISPATCH(elt, launch_affine, y, x, scale, shift, rows, c, act, lo, hi, s);
    return (int)cudaGetLastError();
}

/* y [n, hw, c] = act(op(a, b)); b [n, hw, c] or [n, 1, c]. op: 0 add, 1 mul, 2 sigmoid, 3 none,
 * 4 hardsigmoid (alpha, beta), 5 hardswish */
template <typename T>
__global__ void k_binary(T *y, const T *a, const T *b, int op, int n, int hw, int c, int b_bcast, int act, float lo,
                         float hi, float alpha, float beta) {
    int64_t per = (int64_t)hw * c, count = (int64_t)n * per;
    IS_GRID_LOOP(i, count) {
        float v = ims_ld(a, i);
        if (op <= 1) {
            int64_t bi = b_bcast ? (i / per) * c + i % c : i;
            float u = ims_ld(b, bi);
            v = op == 0 ? v + u : v * u;
        } else if (op == 2) {
            v = 1.f / (1.f + __expf(-v));
        } else if (op == 4) {
            v = fminf(fmaxf(alpha * v + beta, 0.f), 1.f);
        } else if (op == 5) {
            v = v * fminf(fmaxf(v * (1.f / 6.f) + 0.5f, 0.f), 1.f);
        }
        ims_st(y, i, ims_act(v, act, lo, hi));
    }
}
template <typename T>
static void launch_binary(void *y, const void *a, const void *b, int op, int n, int hw, int c, int b_bcast, int act,
                          float lo, float hi, float alpha, float beta, cudaStream_t s) {
    k_binary<T><<<ims_blocks((int64_t)n * hw * c), 256, 0, s>>>((T *)y, (const T *)a, (const T *)b, op, n, hw, c,
                                                               b_bcast, act, lo, hi, alpha, beta);
}
extern "C" int ims_k_binary(void *y, const void *a, const void *b, int elt, int op, int n, int hw, int c,
                           int b_bcast, int act, float lo, float hi, float alpha, float beta, cudaStream_t s) {
    IS_DISPATCH(elt, launch_binary, y, a, b, op, n, hw, c, b_bcast, act, lo, hi, alpha, beta, s);
    return (int)cudaGetLastError();
}
