/*
 * cuda_kernels.h: C-callable launchers of the CUDA engine's own kernels (everything that is not a
 * cuDNN convolution or a cuBLAS GEMM). Activations are NHWC with the batch outermost; elt is the
 * element size (2: half, 4: float). All launchers enqueue on stream and return cudaGetLastError()
 * as an int (0 = cudaSuccess).
 */
#ifndef IMGSIM_CUDA_KERNELS_H
#define IMGSIM_CUDA_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dst [n, h, w, cp] (elt) <- src [n, c, h, w] float32; channels c..cp-1 are zero.
 * s2d: dst is the space-to-depth-by-2 of the zero-padded input instead, [n, oh, ow, cp] with
 * dst[j][i][(by*2+bx)*c + ch] = src[ch][2j+by-pt][2i+bx-pl] (0 outside). */
int ims_k_input(void *dst, const float *src, int elt, int n, int c, int cp, int h, int w, int s2d, int oh, int ow,
               int pt, int pl, cudaStream_t s);
/* y [rows, c] = act(y + bias[c] + z) ; bias float32 (may be NULL), z same shape as y or NULL.
 * act: 0 none, 1 relu, 2 clip(lo, hi). */
int ims_k_epilogue(void *y, const float *bias, const void *z, int elt, int64_t rows, int c, int act, float lo,
                  float hi, cudaStream_t s);
/* y [n, oh, ow, c] = max/avg pool of x [n, h, w, c]. is_max: 1 max, 0 average. */
int ims_k_pool(void *y, const void *x, int elt, int is_max, int n, int h, int w, int c, int oh, int ow, int kh,
              int kw, int sh, int sw, int pt, int pl, int count_include_pad, cudaStream_t s);
/* y [n, c] = mean over h*w of x [n, hw, c]. */
int ims_k_gap(void *y, const void *x, int elt, int n, int hw, int c, cudaStream_t s);
/* y [n, hw, c] = act(op(a, b)), b [n, hw, c] or [n, 1, c] (b_bcast = 1). op: 0 add, 1 mul, 2 sigmoid(a)
 * (b unused), 3 act(a) only. */
int ims_k_binary(void *y, const void *a, const void *b, int elt, int op, int n, int hw, int c, int b_bcast,
                int act, float lo, float hi, float alpha, float beta, cudaStream_t s);
/* y [rows, c] = act(x * scale[c] + shift[c]) (a standalone BatchNormalization). */
int ims_k_affine(void *y, const void *x, const float *scale, const float *shift, int elt, int64_t rows, int c, int act,
                 float lo, float hi, cudaStream_t s);
/* y [n, hw, c]: channel j * g + i <- x's channel i * (c / g) + j (channel shuffle, g groups). */
int ims_k_shuffle(void *y, const void *x, int elt, int n, int hw, int c, int g, cudaStream_t s);
/* y [n, hw, cy] <- channels [coff, coff + cy) of x [n, hw, cx]. */
int ims_k_cslice(void *y, const void *x, int elt, int n, int hw, int cx, int cy, int coff, cudaStream_t s);
/* dst [n, hw, ctot] channels [coff, coff + c) <- src [n, hw, c]. */
int ims_k_concat(void *dst, const void *src, int elt, int n, int hw, int c, int ctot, int coff, cudaStream_t s);
/* dst [n, c*hw] (NCHW flatten order) <- src [n, hw, c]. */
int ims_k_flatten(void *dst, const void *src, int elt, int n, int hw, int c, cudaStream_t s);
/* out [n, dim] float32 <- x [n, hw, c]: gap=1: dim = c, mean over hw; gap=0: dim = c*hw in NCHW
 * flatten order. normalize: divide each row by its L2 norm (rows of zeros stay zero). */
int ims_k_output(float *out, const void *x, int elt, int n, int hw, int c, int gap, int normalize, cudaStream_t s);
/* Fills count elements with deterministic pseudo-random values in [-1, 1] (for autotuning). */
int ims_k_fill(void *x, int elt, int64_t count, uint32_t seed, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
