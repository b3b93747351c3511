/*
 * nvjpeg_decode.c: the nvJPEG implementation of GPU decoding (gpu_decode_impl.h). A decoder set
 * keeps one ims_gpu_jpeg (nvjpeg.c: the hardware and hybrid decoders) between jobs and can make it
 * on a background thread; a job is an ims_gpu_feed (gpu_feed.c) that borrows that decoder, or
 * makes its own, and hands it back to the set when it closes.
 */
#ifdef IMGSIM_HAVE_NVJPEG
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "image/cuda/gpu_image.h"
#include "image/gpu_decode_impl.h"

/* ---- the set: a place for one decoder that outlives a job (used by one thread at a time) ---- */

typedef struct nvj_set {
    pthread_t th;
    int running; /* the background thread has not been joined */
    ims_gpu_jpeg *dec;
    ims_err err; /* why the background creation failed */
} nvj_set;

static nvj_set *set_impl(ims_gpu_decoders *s) { /* made on first need */
    if (!s->impl) s->impl = ims_calloc(1, sizeof(nvj_set));
    return s->impl;
}

static void *set_main(void *arg) {
    ims_gpu_decoders *s = arg;
    nvj_set *n = s->impl;
    double t0 = ims_now();
    if (ims_gpu_jpeg_create(&n->dec, s->device, s->max_batch, s->cpu_threads, &n->err) == IMGSIM_OK)
        ims_log_debug("nvJPEG decoders ready in %.2f s (made while the engine loaded)", ims_now() - t0);
    return NULL;
}

static void nvj_set_prepare(ims_gpu_decoders *s) {
    nvj_set *n = set_impl(s);
    if (!n || n->running || n->dec) return;
    n->err.msg[0] = 0;
    n->running = pthread_create(&n->th, NULL, set_main, s) == 0;
}

/* Takes the decoder out (waiting for the background thread): NULL when there is none, with the
 * reason in e when its creation failed. */
static ims_gpu_jpeg *set_take(ims_gpu_decoders *s, ims_err *e) {
    nvj_set *n = s->impl;
    if (!n) return NULL;
    if (n->running) {
        pthread_join(n->th, NULL);
        n->running = 0;
        if (!n->dec && n->err.msg[0] && e) *e = n->err;
    }
    ims_gpu_jpeg *d = n->dec;
    n->dec = NULL;
    return d;
}

/* Puts a decoder back for the next job (a decoder already there is destroyed). */
static void set_put(ims_gpu_decoders *s, ims_gpu_jpeg *d) {
    nvj_set *n = set_impl(s);
    if (!n) {
        ims_gpu_jpeg_destroy(d);
        return;
    }
    ims_gpu_jpeg_destroy(set_take(s, NULL));
    n->dec = d;
}

static void nvj_set_free(ims_gpu_decoders *s) {
    ims_gpu_jpeg_destroy(set_take(s, NULL));
    free(s->impl);
    s->impl = NULL;
}

/* ---- a job: d->impl is its ims_gpu_feed ---- */

static imgsim_status nvj_open(ims_gpu_decode *d, ims_err *e) {
    const imgsim_preprocess_opts *pre = d->cfg.pre;
    ims_gpu_feed *feed = NULL;
    imgsim_status st = ims_gpu_feed_create(&feed, d->set->device, d->cfg.max_batch, pre->height, pre->width,
                                           pre->mean, pre->std, e);
    d->impl = feed;
    return st;
}

static imgsim_status nvj_init(ims_gpu_decode *d, ims_err *e) {
    /* the set's decoders (made while the engine loaded, or kept from its last job), else new ones */
    ims_gpu_jpeg *kept = set_take(d->set, e);
    if (kept && ims_gpu_feed_set_jpeg(d->impl, kept, e) != IMGSIM_OK) ims_gpu_jpeg_destroy(kept);
    if (e->msg[0]) ims_log_debug("nvJPEG decoders made with the engine: %s", e->msg);
    return ims_gpu_feed_init_jpeg(d->impl, d->cfg.cpu_threads, e);
}

static void nvj_close(ims_gpu_decode *d) {
    /* the set keeps the decoders for its next job (detaching waits for the feed's work) */
    ims_gpu_jpeg *kept = ims_gpu_feed_detach_jpeg(d->impl);
    if (kept) set_put(d->set, kept);
    ims_gpu_feed_destroy(d->impl);
    d->impl = NULL;
}

static const char *nvj_describe(const ims_gpu_decode *d) {
    return ims_gpu_feed_backend(d->impl);
}

/* 1 when the JPEG is one nvJPEG decodes exactly and fast: baseline Huffman, grayscale or
 * YCbCr 4:4:4/4:2:2/4:2:0, no EXIF rotation to apply, within the size limit. The others go to
 * the CPU (nvJPEG's progressive decoding runs its Huffman stage on one CPU thread). */
static int nvj_takes(const ims_jpeg_hdr *h, const imgsim_preprocess_opts *pre) {
    if (h->sof != 0xC0 && h->sof != 0xC1) return 0;
    if (pre->exif_rotate && h->orient != 1) return 0;
    if (h->w < 1 || h->h < 1 || (pre->max_pixels && (uint64_t)h->w * (uint64_t)h->h > pre->max_pixels))
        return 0;
    if (h->ncomp == 1) return 1;
    if (h->ncomp != 3 || (h->adobe_transform_set && h->adobe_transform == 0))
        return 0; /* Adobe 0: RGB, not YCbCr */
    if (h->hs[1] != 1 || h->vs[1] != 1 || h->hs[2] != 1 || h->vs[2] != 1) return 0;
    return (h->hs[0] == 1 && h->vs[0] == 1) || (h->hs[0] == 2 && h->vs[0] == 1) ||
           (h->hs[0] == 2 && h->vs[0] == 2);
}

static imgsim_status nvj_decode(ims_gpu_decode *d, const uint8_t *const *bufs, const size_t *lens, int n,
                                float *dev_in, imgsim_status *item_st, ims_err *item_msg, ims_err *e) {
    return ims_gpu_feed_decode(d->impl, bufs, lens, n, dev_in, d->cfg.pre->max_pixels, item_st, item_msg, e);
}

static imgsim_status nvj_upload(ims_gpu_decode *d, const float *host_in, const uint8_t *mask, int n,
                                float *dev_in, ims_err *e) {
    return ims_gpu_feed_upload(d->impl, host_in, mask, n, dev_in, e);
}

static void *nvj_mark(ims_gpu_decode *d, int64_t k) {
    return ims_gpu_feed_mark(d->impl, k);
}

static imgsim_status nvj_wait_mark(ims_gpu_decode *d, int64_t k, ims_err *e) {
    return ims_gpu_feed_wait_mark(d->impl, k, e);
}

static const ims_gpu_decode_ops nvj_ops = {
    .name = "nvJPEG",
    .set_prepare = nvj_set_prepare,
    .set_free = nvj_set_free,
    .open = nvj_open,
    .close = nvj_close,
    .init = nvj_init,
    .describe = nvj_describe,
    .takes = nvj_takes,
    .decode = nvj_decode,
    .upload = nvj_upload,
    .mark = nvj_mark,
    .wait_mark = nvj_wait_mark,
    .host_alloc = ims_gpu_host_alloc,
    .host_free = ims_gpu_host_free,
};

const ims_gpu_decode_ops *ims_gpu_decode_builtin(void) {
    return &nvj_ops;
}
#else
typedef int ims_nvjpeg_decode_unused; /* ISO C forbids an empty translation unit (gpu_decode_stub.c) */
#endif
