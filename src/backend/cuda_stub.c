/*
 * cuda_stub.c: the CUDA backend's entry points for builds without CUDA support (the real ones are
 * in src/backend/cuda/, compiled only when CUDA and cuDNN are found).
 */
#ifndef IMGSIM_HAVE_CUDA

#include <stddef.h>

#include "backend/backend.h"

imgsim_status ims_backend_cuda_new(ims_backend **out, ims_err *e) {
    if (out) *out = NULL;
    return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "imgsim was built without CUDA support");
}

int ims_cuda_available(void) { return 0; }

#else
typedef int ims_cuda_stub_unused; /* ISO C forbids an empty translation unit */
#endif
