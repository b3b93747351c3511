/*
 * search_cuda_kernels.h: C-callable launchers of the CUDA search kernels (search_kernels.cu),
 * used by search_cuda.c. Each returns the launch's cudaError_t. Shapes are in the .cu file.
 */
#ifndef IMGSIM_SEARCH_CUDA_KERNELS_H
#define IMGSIM_SEARCH_CUDA_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Folds the score tile S [rows, ld] (float16 if f16, else float32) into the candidate lists
 * st_keys [(st_row0 + r) * splits + s][cap], st_meta [same][2] (count, sorted); column c is
 * gallery row row0 + c. final: the last tile, after which every list is sorted and <= kp. */
cudaError_t ims_gs_launch_select(cudaStream_t st, int f16, const void *S, int64_t ld, int rows, int cols,
                                uint32_t row0, int splits, int64_t st_row0, uint64_t *st_keys, int *st_meta, int kp,
                                int cap, int final);

/* *gmax_bits = max(*gmax_bits, max row norm of X [rows, dim]) as float bits, rounded up. */
cudaError_t ims_gs_launch_rownorm_max(cudaStream_t st, const void *X, int64_t rows, int dim, int f16,
                                     unsigned int *gmax_bits);

/* Per query of Q [nq, dim]: proven candidate rows cand [nq, mmax], count cand_n (-1: unproven). */
cudaError_t ims_gs_launch_candidates(cudaStream_t st, int nq, const uint64_t *st_keys, const int *st_meta, int splits,
                                    int kp, int cap, int k, const void *Q, int dim, int f16, const unsigned int *gmax_bits,
                                    double rel, double abs_err, double amax, uint32_t *cand, int *cand_n, int mmax);

/* Per query: float64 re-scoring of its candidates against G [n, dim], best k into out_idx/out_score. */
cudaError_t ims_gs_launch_rescore(cudaStream_t st, int nq, const uint32_t *cand, const int *cand_n, int mmax,
                                 const void *G, int f16, const float *qf, int dim, int k, int64_t *out_idx,
                                 float *out_score);

/* qf[count] = float32 of the float16 values Q[count]. */
cudaError_t ims_gs_launch_half_to_float(cudaStream_t st, float *qf, const void *Q, int64_t count);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_SEARCH_CUDA_KERNELS_H */
