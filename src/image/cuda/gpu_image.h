/*
 * gpu_image.h: the CUDA half of the input pipeline, used through image/gpu_decode.h (whose nvJPEG
 * implementation, nvjpeg_decode.c, is built on it) and by imgsim gpupre: JPEG decoding with
 * nvJPEG (batched; the hardware engines where the GPU has them, else the CUDA/hybrid backends) and
 * one fused kernel that turns decoded RGB8 images into network input: PIL-equivalent antialiased
 * bilinear resize, ToTensor scaling, Normalize, layout change (NCHW or NHWC) and cast (float32 or
 * float16), written straight into the engine's input buffer.
 */
#ifndef IMGSIM_GPU_IMAGE_H
#define IMGSIM_GPU_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One decoded image in device memory: RGB8 interleaved rows of `pitch` bytes. */
typedef struct ims_gpu_src {
    const uint8_t *px;
    int w, h, pitch;
} ims_gpu_src;

typedef struct ims_gpu_pre_params {
    int oh, ow;        /* output size */
    int nhwc;          /* 1: [n, oh, ow, 3]; 0: [n, 3, oh, ow] */
    int fp16;          /* 1: __half output; 0: float */
    float mean[3], std[3];
} ims_gpu_pre_params;

/* 1 if the kernel takes a w x h image resized to ow x oh (its horizontal window has a size limit;
 * larger downscales go to the CPU path). */
int ims_gpu_preprocess_fits(int w, int h, int ow, int oh);

/* dst[i] = preprocess(srcs[i]) for i < n. srcs_dev is a device array of n descriptors. Skips
 * (leaves untouched) images whose px is NULL. Asynchronous on stream. */
imgsim_status ims_gpu_preprocess(void *dst, const ims_gpu_src *srcs_dev, int n, const ims_gpu_pre_params *p,
                                cudaStream_t stream, ims_err *e);

/* ---- nvJPEG (only where built with IMGSIM_HAVE_NVJPEG) ---- */

typedef struct ims_gpu_jpeg ims_gpu_jpeg;

/* A batched decoder for up to max_batch images, decoding into its own device buffers. */
imgsim_status ims_gpu_jpeg_create(ims_gpu_jpeg **out, int device, int max_batch, int cpu_threads, ims_err *e);
void ims_gpu_jpeg_destroy(ims_gpu_jpeg *d);
/* Name of the nvJPEG backend in use ("hardware", "gpu-hybrid", "hybrid"). */
const char *ims_gpu_jpeg_backend(const ims_gpu_jpeg *d);
/* 1 if d was made for this device and takes batches of max_batch images. */
int ims_gpu_jpeg_fits(const ims_gpu_jpeg *d, int device, int max_batch);

/* Where the decoder's time went (calling thread's wall time), for statistics. */
typedef struct ims_gpu_jpeg_times {
    int calls, n_init;
    long long images;
    double route_s; /* header checks and routing */
    double init_s;  /* nvjpegDecodeBatchedInitialize (when the batch size changes) */
    double call_s;  /* nvjpegDecodeBatched: its host phase */
    double sync_s;  /* waiting for its device phase */
    double ycc_s;   /* launching the colour conversion */
} ims_gpu_jpeg_times;
ims_gpu_jpeg_times ims_gpu_jpeg_get_times(const ims_gpu_jpeg *d);

/* Decodes n JPEG buffers (host memory) into device RGB8 images. srcs_host[i] gets the decoded
 * image or px = NULL with item_st[i] set (and item_msg[i] filled) when this image must go to the
 * CPU path (unsupported by nvJPEG: CMYK, arithmetic coding, too large, corrupt). Returns an error
 * only for failures that are not the images' fault. The images stay valid until the next call.
 * Synchronises stream before returning the per-image results. */
imgsim_status ims_gpu_jpeg_decode(ims_gpu_jpeg *d, const uint8_t *const *bufs, const size_t *lens, int n,
                                 uint64_t max_pixels, ims_gpu_src *srcs_host, imgsim_status *item_st,
                                 ims_err *item_msg, cudaStream_t stream, ims_err *e);


/* ---- the feed: a batch of encoded images -> the engine's device input ---- */

/* Decodes the JPEGs of a batch with nvJPEG and preprocesses them on the GPU straight into the
 * engine's device input (float32 NCHW); images decoded on the CPU are copied into their places.
 * Only with IMGSIM_HAVE_NVJPEG; ims_gpu_feed_create returns NO_DEVICE otherwise. */
typedef struct ims_gpu_feed ims_gpu_feed;

/* The feed's stream and buffers (fast); the nvJPEG decoders come with ims_gpu_feed_init_jpeg (slow:
 * hundreds of milliseconds), which may run on another thread while the feed uploads CPU-decoded
 * images; ims_gpu_feed_decode needs it done. */
imgsim_status ims_gpu_feed_create(ims_gpu_feed **out, int device, int max_batch, int oh, int ow, const float mean[3],
                                 const float std[3], ims_err *e);
imgsim_status ims_gpu_feed_init_jpeg(ims_gpu_feed *f, int cpu_threads, ims_err *e);
/* Gives the feed a decoder made earlier (kept by a decoder set: nvjpeg_decode.c); fails, leaving
 * d to the caller, when d does not fit the feed's device and batch size. */
imgsim_status ims_gpu_feed_set_jpeg(ims_gpu_feed *f, ims_gpu_jpeg *d, ims_err *e);
/* Takes the feed's decoder back out (NULL when it has none), e.g. to keep it for another job. */
ims_gpu_jpeg *ims_gpu_feed_detach_jpeg(ims_gpu_feed *f);
void ims_gpu_feed_destroy(ims_gpu_feed *f);
const char *ims_gpu_feed_backend(const ims_gpu_feed *f);

/* For i < n with bufs[i] != NULL: decode and preprocess into dev_in + i * image; on return
 * item_st[i] is OK, or an error with item_msg[i] for images the caller must decode on the CPU.
 * Entries with bufs[i] == NULL are left alone. */
imgsim_status ims_gpu_feed_decode(ims_gpu_feed *f, const uint8_t *const *bufs, const size_t *lens, int n,
                                 float *dev_in, uint64_t max_pixels, imgsim_status *item_st, ims_err *item_msg,
                                 ims_err *e);
/* Copies host images (host_in + i * image, for i with mask[i]) into dev_in + i * image. */
imgsim_status ims_gpu_feed_upload(ims_gpu_feed *f, const float *host_in, const uint8_t *mask, int n, float *dev_in,
                                 ims_err *e);
/* Records mark k (an event, returned as cudaEvent_t) after all the feed's work so far; the last
 * IS_GPU_FEED_MARKS marks stay distinct. ims_gpu_feed_wait_mark waits until the feed's work up to
 * mark k is done (its host buffers may then be reused). */
#define IS_GPU_FEED_MARKS 4
void *ims_gpu_feed_mark(ims_gpu_feed *f, int64_t k);
imgsim_status ims_gpu_feed_wait_mark(ims_gpu_feed *f, int64_t k, ims_err *e);


/* For tests and inspection: decodes and preprocesses n files through the GPU path (nvJPEG for
 * the JPEGs it takes, the CPU otherwise, exactly as the pipeline does) into out_host
 * ([n, 3, oh, ow] float32). item_st/item_msg per file; on_gpu[i] says which path decoded it. */
imgsim_status ims_gpu_preprocess_files(float *out_host, const char *const *paths, int n, int device,
                                      const imgsim_preprocess_opts *pre, imgsim_status *item_st, ims_err *item_msg,
                                      int *on_gpu, ims_err *e);


/* Pinned host memory for staging (NULL on failure); free with ims_gpu_host_free. */
void *ims_gpu_host_alloc(size_t bytes);
void ims_gpu_host_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
