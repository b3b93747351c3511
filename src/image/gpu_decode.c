/*
 * gpu_decode.c: what every GPU decoder shares (see gpu_decode.h, gpu_decode_impl.h): the decoder
 * set and job objects, the background start of a job's decoders, its ready flag, staging
 * buffers, and the routing of JPEGs between the GPU and the CPU workers by image size.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "image/gpu_decode_impl.h"
#include "image/image.h"

/* ---- the decoder set ---- */

imgsim_status ims_gpu_decoders_new(ims_gpu_decoders **out, int device, int max_batch, int cpu_threads,
                                   ims_err *e) {
    *out = NULL;
    ims_gpu_decoders *s = ims_calloc(1, sizeof *s);
    if (!s) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    s->ops = ims_gpu_decode_builtin();
    s->device = device;
    s->max_batch = max_batch;
    s->cpu_threads = cpu_threads;
    *out = s;
    return IMGSIM_OK;
}

void ims_gpu_decoders_prepare(ims_gpu_decoders *s) {
    if (s) s->ops->set_prepare(s);
}

void ims_gpu_decoders_free(ims_gpu_decoders *s) {
    if (!s) return;
    s->ops->set_free(s);
    free(s);
}

/* ---- a job ---- */

imgsim_status ims_gpu_decode_open(ims_gpu_decode **out, ims_gpu_decoders *set, const ims_gpu_decode_cfg *cfg,
                                  ims_err *e) {
    *out = NULL;
    if (!set) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "GPU decoding: no decoder set");
    if (cfg->mode != IMGSIM_DECODE_CPU && !ims_pre_is_plain(cfg->pre)) /* the kernel's resize is plain bilinear */
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "GPU decoding: the GPU preprocessing does not crop or resize bicubic");
    ims_gpu_decode *d = ims_calloc(1, sizeof *d);
    if (!d) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    d->ops = set->ops;
    d->set = set;
    d->cfg = *cfg;
    imgsim_status st = d->ops->open(d, e);
    if (st) {
        free(d);
        return st;
    }
    *out = d;
    return IMGSIM_OK;
}

/* Makes the decoders ready (hundreds of milliseconds), on whichever thread start chose. */
static void *init_main(void *arg) {
    ims_gpu_decode *d = arg;
    double t0 = ims_now();
    ims_err e;
    e.msg[0] = 0;
    if (d->ops->init(d, &e) == IMGSIM_OK) {
        ims_log_info("decoding JPEGs on the GPU (%s %s)%s", d->ops->name, d->ops->describe(d),
                     d->cfg.mode == IMGSIM_DECODE_AUTO ? " and the CPU, share adapted as the job runs" : "");
        atomic_store(&d->ready, 1);
    } else {
        ims_log_info("GPU decoding unavailable (%s): decoding on the CPU", e.msg);
        atomic_store(&d->ready, -1);
    }
    d->init_s = ims_now() - t0;
    return NULL;
}

void ims_gpu_decode_start(ims_gpu_decode *d) {
    if (d->cfg.mode == IMGSIM_DECODE_AUTO && !ims_tuning_get()->gpu_init_sync)
        d->init_started = pthread_create(&d->init_th, NULL, init_main, d) == 0;
    if (d->cfg.mode == IMGSIM_DECODE_GPU || (d->cfg.mode == IMGSIM_DECODE_AUTO && !d->init_started))
        init_main(d);
}

int ims_gpu_decode_ready(const ims_gpu_decode *d) {
    return atomic_load(&d->ready);
}

double ims_gpu_decode_join(ims_gpu_decode *d) {
    if (d->init_started) {
        pthread_join(d->init_th, NULL);
        d->init_started = 0;
    }
    return d->init_s;
}

void ims_gpu_decode_destroy(ims_gpu_decode *d) {
    if (!d) return;
    ims_gpu_decode_join(d);
    d->ops->close(d); /* (waits for the device work: the staging buffers are free after it) */
    for (int k = 0; k < d->n_host; k++)
        d->ops->host_free(d->host[k]);
    free(d);
}

const char *ims_gpu_decode_name(const ims_gpu_decode *d) {
    return d->ops->describe(d);
}

float *ims_gpu_decode_host_buffer(ims_gpu_decode *d, size_t bytes) {
    if (d->n_host == IMS_GPU_HOST_MAX) return NULL;
    void *p = d->ops->host_alloc(bytes);
    if (p) d->host[d->n_host++] = p;
    return p;
}

/* ---- routing ---- */

/* Both sides' cost grows with the pixel count, nvJPEG's (above all the hardware decoder's) less
 * steeply, so the CPU takes the smallest images first: each JPEG gets a key, its size class
 * (half-octaves of pixel count) times 64 plus a hash of its index in 0..63 (so images of one size
 * split evenly), and the CPU decodes the keys below cpu_below. ims_gpu_decode_set_cpu_share turns
 * the share of JPEGs wanted on the CPU into that bound through the histogram of size classes seen
 * so far. */
static int size_class(int64_t pixels) {
    int c = pixels > 1 ? (int)(2.0 * log2((double)pixels)) - 20 : 0; /* 2^10 px and below: class 0 */
    return c < 0 ? 0 : c >= IMS_GPU_SIZE_CLASSES ? IMS_GPU_SIZE_CLASSES - 1 : c;
}

int ims_gpu_decode_route(ims_gpu_decode *d, int64_t i, const uint8_t *buf, size_t len) {
    if (atomic_load(&d->ready) != 1 || ims_image_sniff(buf, len) != IS_FMT_JPEG) return 0;
    if (d->cfg.mode == IMGSIM_DECODE_GPU) return 1; /* all of them: the decoder sorts out what it cannot do */
    ims_jpeg_hdr h;
    if (ims_jpeg_header(buf, len, &h) != 0 || !d->ops->takes(&h, d->cfg.pre)) return 0;
    int c = size_class((int64_t)h.w * h.h);
    atomic_fetch_add(&d->size_hist[c], 1);
    uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    int key = c * 64 + (int)(x >> 58);
    return key >= atomic_load(&d->cpu_below);
}

/* The route key bound under which a share (0..1) of the JPEGs seen so far falls. */
static int share_to_bound(ims_gpu_decode *d, double share) {
    long long n[IMS_GPU_SIZE_CLASSES], total = 0;
    for (int c = 0; c < IMS_GPU_SIZE_CLASSES; c++)
        total += n[c] = atomic_load(&d->size_hist[c]);
    if (total == 0) return 0; /* nothing seen yet: every candidate to the GPU until a batch's sizes are in */
    double want = share * (double)total, cum = 0;
    for (int c = 0; c < IMS_GPU_SIZE_CLASSES; c++) {
        if (n[c] > 0 && cum + (double)n[c] >= want)
            return c * 64 + (int)(64.0 * (want - cum) / (double)n[c] + 0.5);
        cum += (double)n[c];
    }
    return IMS_GPU_SIZE_CLASSES * 64;
}

void ims_gpu_decode_set_cpu_share(ims_gpu_decode *d, double share) {
    atomic_store(&d->cpu_below, share_to_bound(d, share));
}

/* ---- the device work: the implementation's ---- */

imgsim_status ims_gpu_decode_batch(ims_gpu_decode *d, const uint8_t *const *bufs, const size_t *lens, int n,
                                   float *dev_in, imgsim_status *item_st, ims_err *item_msg, ims_err *e) {
    return d->ops->decode(d, bufs, lens, n, dev_in, item_st, item_msg, e);
}

imgsim_status ims_gpu_decode_upload(ims_gpu_decode *d, const float *host_in, const uint8_t *mask, int n,
                                    float *dev_in, ims_err *e) {
    return d->ops->upload(d, host_in, mask, n, dev_in, e);
}

void *ims_gpu_decode_mark(ims_gpu_decode *d, int64_t k) {
    return d->ops->mark(d, k);
}

imgsim_status ims_gpu_decode_wait_mark(ims_gpu_decode *d, int64_t k, ims_err *e) {
    return d->ops->wait_mark(d, k, e);
}
