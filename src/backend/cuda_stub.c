/*
 * cuda_stub.c: the CUDA backend's entry points for builds without CUDA support (the real ones are
 * in src/backend/cuda/, compiled only when CUDA and cuDNN are found).
 */
#ifndef IMGSIM_HAVE_CUDA

#include <stddef.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"

imgsim_status ims_backend_cuda_new(ims_backend **out, ims_err *e) {
    if (out) *out = NULL;
    return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "imgsim was built without CUDA support");
}

int ims_cuda_available(void) { return 0; }

const char *ims_cuda_engine_path(const ims_backend *b) {
    (void)b;
    return "";
}

imgsim_status ims_cuda_engine_file_describe(char *buf, size_t size, size_t *len, const char *path, ims_err *e) {
    (void)path;
    if (size) buf[0] = 0;
    if (len) *len = 0;
    return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "imgsim was built without CUDA support");
}

#else
typedef int ims_cuda_stub_unused; /* ISO C forbids an empty translation unit */
#endif
