/*
 * cuda_backend.h: CUDA-backend extras beyond backend.h, for the engine CLI, tests and benchmarks.
 */
#ifndef IMGSIM_CUDA_BACKEND_H
#define IMGSIM_CUDA_BACKEND_H

#include "backend/backend.h"

/* Times the forward pass alone on the device-resident input of slot 0 (no host copies): fills
 * that input with pseudo-random values, warms up, then replays n-image batches iters times.
 * *ms is the mean time per batch in milliseconds. */
imgsim_status ims_cuda_bench_device(ims_backend *b, int n, int iters, double *ms, ims_err *e);

/* The engine file this backend loaded or wrote ("" if none). */
const char *ims_cuda_engine_path(const ims_backend *b);

/* imgsim_engine_file_describe: ims_cuda_plan_print of the verified file into buf. */
imgsim_status ims_cuda_engine_file_describe(char *buf, size_t size, size_t *len, const char *path, ims_err *e);

#endif
