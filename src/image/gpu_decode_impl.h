/*
 * gpu_decode_impl.h: the interface a GPU decoder implements (after ggml-backend-impl.h; the
 * callers' side is gpu_decode.h). gpu_decode.c does what every implementation shares: the
 * objects' lifetime, the background start, the ready flag and the routing by image size; an
 * implementation supplies the decoders and the device work through ims_gpu_decode_ops.
 */
#ifndef IMGSIM_GPU_DECODE_IMPL_H
#define IMGSIM_GPU_DECODE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "image/gpu_decode.h"
#include "image/image.h"

typedef struct ims_gpu_decode_ops {
    const char *name; /* "nvJPEG" */
    /* the decoder set: start making its decoders in the background; free them (waiting for that) */
    void (*set_prepare)(ims_gpu_decoders *s);
    void (*set_free)(ims_gpu_decoders *s);
    /* a job: open makes d->impl (stream and buffers, fast; NO_DEVICE with the reason where the
     * implementation cannot run); close gives the decoders back to d->set and frees d->impl */
    imgsim_status (*open)(ims_gpu_decode *d, ims_err *e);
    void (*close)(ims_gpu_decode *d);
    /* makes the decoders ready: d->set's, or new ones (slow); called once, on any thread */
    imgsim_status (*init)(ims_gpu_decode *d, ims_err *e);
    /* what decodes ("hardware, gpu-hybrid on demand"), for messages */
    const char *(*describe)(const ims_gpu_decode *d);
    /* 1 if the decoder takes this JPEG exactly and fast (AUTO routing; the others go to the CPU) */
    int (*takes)(const ims_jpeg_hdr *h, const imgsim_preprocess_opts *pre);
    /* the device work, as in gpu_decode.h */
    imgsim_status (*decode)(ims_gpu_decode *d, const uint8_t *const *bufs, const size_t *lens, int n,
                            float *dev_in, imgsim_status *item_st, ims_err *item_msg, ims_err *e);
    imgsim_status (*upload)(ims_gpu_decode *d, const float *host_in, const uint8_t *mask, int n,
                            float *dev_in, ims_err *e);
    void *(*mark)(ims_gpu_decode *d, int64_t k);
    imgsim_status (*wait_mark)(ims_gpu_decode *d, int64_t k, ims_err *e);
    /* staging memory (pinned) */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
} ims_gpu_decode_ops;

/* The implementation built in: nvJPEG's, or the stub's (whose open fails with the reason). */
const ims_gpu_decode_ops *ims_gpu_decode_builtin(void);

struct ims_gpu_decoders {
    const ims_gpu_decode_ops *ops;
    int device, max_batch, cpu_threads;
    void *impl; /* the implementation's decoders (NULL until made or prepared) */
};

#define IMS_GPU_SIZE_CLASSES 40 /* half-octaves of pixel count: 2^10 .. 2^30 */
#define IMS_GPU_HOST_MAX 32     /* staging buffers per job */

struct ims_gpu_decode {
    const ims_gpu_decode_ops *ops;
    ims_gpu_decoders *set; /* lends the decoders (and names the device) */
    ims_gpu_decode_cfg cfg;
    void *impl;       /* the implementation's job state */
    atomic_int ready; /* ims_gpu_decode_ready */
    pthread_t init_th;
    int init_started; /* a background start was not yet joined */
    double init_s;
    /* routing (AUTO): JPEGs whose route key is below cpu_below go to the CPU */
    atomic_int cpu_below;
    atomic_llong size_hist[IMS_GPU_SIZE_CLASSES]; /* JPEGs the decoder could take, by size class */
    void *host[IMS_GPU_HOST_MAX];
    int n_host;
};

#endif
