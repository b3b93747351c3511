/*
 * gpu_decode.h: GPU image decoding, as the extraction pipeline and the engine see it: JPEGs
 * decoded and preprocessed on the GPU straight into an engine's device input, behind an
 * interface of its own (gpu_decode_impl.h, after backend/backend.h). No CUDA type appears here.
 *
 * Two objects:
 *  - a decoder set (ims_gpu_decoders) belongs to one GPU and outlives jobs. It owns the decoders
 *    (nvJPEG's take most of a second to create), may create them on a background thread while an
 *    engine loads (ims_gpu_decoders_prepare), and keeps them from one job to the next. An engine
 *    holds one; a job over several GPUs would hold one per GPU.
 *  - a job (ims_gpu_decode) serves one extraction on one set's GPU: it borrows the set's decoders
 *    (or makes them), chooses which JPEGs it decodes and which the CPU workers do
 *    (ims_gpu_decode_route), decodes batches into the engine's device input, uploads the images the
 *    CPU decoded, and gives the decoders back to the set when destroyed.
 *
 * Implementations: cuda/nvjpeg_decode.c (nvJPEG, where imgsim is built with it), and
 * gpu_decode_stub.c elsewhere, whose jobs cannot be opened (NO_DEVICE, with the reason).
 */
#ifndef IMGSIM_GPU_DECODE_H
#define IMGSIM_GPU_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct ims_gpu_decoders ims_gpu_decoders;
typedef struct ims_gpu_decode ims_gpu_decode;

/* ---- the decoder set: one per GPU, kept by an engine ---- */

/* A set for device, decoding batches of up to max_batch images with cpu_threads host threads for
 * the decoders' CPU phase. Makes no decoder yet (cheap). */
imgsim_status ims_gpu_decoders_new(ims_gpu_decoders **out, int device, int max_batch, int cpu_threads,
                                   ims_err *e);
/* Starts creating the decoders on a background thread (nothing when they are there or coming). */
void ims_gpu_decoders_prepare(ims_gpu_decoders *s);
/* Frees the set and its decoders (waiting for a background creation). NULL: no-op. */
void ims_gpu_decoders_free(ims_gpu_decoders *s);

/* ---- a job ---- */

typedef struct ims_gpu_decode_cfg {
    int max_batch; /* images per batch (at most the set's max_batch to reuse its decoders) */
    const imgsim_preprocess_opts *pre; /* output size, mean/std, max_pixels, exif_rotate (kept by pointer) */
    imgsim_decode mode;                /* AUTO: JPEGs shared with the CPU workers by size; GPU: every
                                          JPEG the decoder takes; CPU: none (uploads only) */
    int cpu_threads;                   /* host threads for the decoders' CPU phase, when the job
                                          makes its own */
} ims_gpu_decode_cfg;

/* Opens a job on set's GPU: its stream and buffers (fast); the decoders come with
 * ims_gpu_decode_start. Fails (NO_DEVICE where GPU decoding is not built in) with the reason in e;
 * the caller then decodes everything on the CPU. */
imgsim_status ims_gpu_decode_open(ims_gpu_decode **out, ims_gpu_decoders *set, const ims_gpu_decode_cfg *cfg,
                                  ims_err *e);
/* Makes the decoders ready: CPU mode, nothing; GPU mode, now (they are needed for the first
 * image); AUTO, on a background thread while the CPU workers decode everything (or now, with the
 * tuning knob IMGSIM_GPU_INIT_SYNC). Either way ims_gpu_decode_ready says when JPEGs may go to it. */
void ims_gpu_decode_start(ims_gpu_decode *d);
/* 1 once the decoders are ready, 0 while they are being made (or never started), -1 when they
 * could not be made (the CPU then decodes everything). Thread-safe. */
int ims_gpu_decode_ready(const ims_gpu_decode *d);
/* Waits for a background start; returns the seconds it took to make the decoders ready. */
double ims_gpu_decode_join(ims_gpu_decode *d);
/* Destroys the job after its device work is done, giving its decoders back to the set. NULL: no-op. */
void ims_gpu_decode_destroy(ims_gpu_decode *d);
/* The implementation and its decoders, for messages ("nvJPEG hardware, gpu-hybrid on demand"). */
const char *ims_gpu_decode_name(const ims_gpu_decode *d);

/* Routing (thread-safe; called by the CPU workers for each file they read). 1 when the file
 * (index i of the job, its bytes in buf) is a JPEG the GPU decodes: the decoders are ready, and in
 * GPU mode it is a JPEG; in AUTO mode, it is one the decoder takes exactly and fast and is not
 * among the smallest images, of which the CPU takes a share (ims_gpu_decode_set_cpu_share). The
 * GPU's cost grows less steeply with the pixel count than the CPU's (a per-image overhead, large
 * images where it gains most), so the CPU takes the smallest first. */
int ims_gpu_decode_route(ims_gpu_decode *d, int64_t i, const uint8_t *buf, size_t len);
/* AUTO: the share (0..1) of the JPEGs the decoder could take that the CPU decodes from now on,
 * by the sizes seen so far (with none seen yet, every candidate goes to the GPU). */
void ims_gpu_decode_set_cpu_share(ims_gpu_decode *d, double share);

/* Decodes and preprocesses, for i < n with bufs[i] != NULL, image i into dev_in + i * image
 * (float32 NCHW: the engine's device input); item_st[i] is then OK, or an error with item_msg[i]
 * for an image the caller must decode on the CPU. Entries with bufs[i] == NULL are left alone.
 * Returns an error only for failures that are not the images' fault. */
imgsim_status ims_gpu_decode_batch(ims_gpu_decode *d, const uint8_t *const *bufs, const size_t *lens, int n,
                                   float *dev_in, imgsim_status *item_st, ims_err *item_msg, ims_err *e);
/* Copies host images (host_in + i * image, for i with mask[i]) into dev_in + i * image. */
imgsim_status ims_gpu_decode_upload(ims_gpu_decode *d, const float *host_in, const uint8_t *mask, int n,
                                    float *dev_in, ims_err *e);
/* Mark k: an event (for ims_backend_ops.submit_device) recorded after all the job's work so far;
 * the last IMS_GPU_DECODE_MARKS marks stay distinct. wait_mark waits until the work up to mark k
 * is done (its host buffers may then be reused). */
#define IMS_GPU_DECODE_MARKS 4
void *ims_gpu_decode_mark(ims_gpu_decode *d, int64_t k);
imgsim_status ims_gpu_decode_wait_mark(ims_gpu_decode *d, int64_t k, ims_err *e);
/* Host memory for staging CPU-decoded images (pinned for fast uploads), owned by the job and
 * freed with it (NULL on failure). */
float *ims_gpu_decode_host_buffer(ims_gpu_decode *d, size_t bytes);

#endif
