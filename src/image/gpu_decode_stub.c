/*
 * gpu_decode_stub.c: GPU decoding for builds without CUDA or nvJPEG (the real implementation is
 * cuda/nvjpeg_decode.c): decoder sets hold nothing and jobs cannot be opened, so the extraction
 * pipeline decodes everything on the CPU.
 */
#ifndef IMGSIM_HAVE_NVJPEG
#include "image/gpu_decode_impl.h"

static void stub_set(ims_gpu_decoders *s) {
    (void)s;
}

static imgsim_status stub_open(ims_gpu_decode *d, ims_err *e) {
    (void)d;
    return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "imgsim was built without nvJPEG: decoding on the CPU");
}

/* open fails, so no job reaches the other entries */
static const ims_gpu_decode_ops stub_ops = {
    .name = "none", .set_prepare = stub_set, .set_free = stub_set, .open = stub_open};

const ims_gpu_decode_ops *ims_gpu_decode_builtin(void) {
    return &stub_ops;
}
#else
typedef int ims_gpu_decode_stub_unused; /* ISO C forbids an empty translation unit */
#endif
