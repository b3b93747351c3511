/*
 * gpu_feed.c: a batch of encoded images -> the engine's device input (see gpu_image.h): nvJPEG
 * decoding, the fused preprocessing kernel, and copies of CPU-decoded images, all on one stream
 * whose completion the engine waits for through an event.
 */
#include <stdlib.h>
#include <string.h>

#include "image/cuda/gpu_image.h"
#include "image/image.h"

void *ims_gpu_host_alloc(size_t bytes) {
    void *p = NULL;
    return cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault) == cudaSuccess ? p : NULL;
}

void ims_gpu_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

#ifdef IMGSIM_HAVE_NVJPEG
struct ims_gpu_feed {
    int device, max_batch;
    ims_gpu_jpeg *jpeg;
    cudaStream_t stream;
    cudaEvent_t ev[IS_GPU_FEED_MARKS]; /* ims_gpu_feed_mark's, in turn */
    ims_gpu_pre_params pp;
    ims_gpu_src *h_srcs; /* pinned */
    ims_gpu_src *d_srcs;
};

imgsim_status ims_gpu_feed_create(ims_gpu_feed **out, int device, int max_batch, int oh, int ow, const float mean[3],
                                 const float std[3], ims_err *e) {
    *out = NULL;
    if (cudaSetDevice(device) != cudaSuccess) return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "GPU decoding: no CUDA device %d", device);
    ims_gpu_feed *f = ims_calloc(1, sizeof *f);
    if (!f) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    f->device = device;
    f->max_batch = max_batch;
    int events_ok = 1;
    for (int k = 0; k < IS_GPU_FEED_MARKS; k++)
        events_ok &= cudaEventCreateWithFlags(&f->ev[k], cudaEventDisableTiming) == cudaSuccess;
    if (cudaStreamCreateWithFlags(&f->stream, cudaStreamNonBlocking) != cudaSuccess || !events_ok ||
        cudaHostAlloc((void **)&f->h_srcs, (size_t)max_batch * sizeof(ims_gpu_src), cudaHostAllocDefault) != cudaSuccess ||
        cudaMalloc((void **)&f->d_srcs, (size_t)max_batch * sizeof(ims_gpu_src)) != cudaSuccess) {
        ims_gpu_feed_destroy(f);
        return ims_fail(e, IMGSIM_ERR_BACKEND, "GPU decoding: cannot create a stream or buffers");
    }
    f->pp.oh = oh;
    f->pp.ow = ow;
    f->pp.nhwc = 0;
    f->pp.fp16 = 0;
    memcpy(f->pp.mean, mean, sizeof f->pp.mean);
    memcpy(f->pp.std, std, sizeof f->pp.std);
    *out = f;
    return IMGSIM_OK;
}

imgsim_status ims_gpu_feed_init_jpeg(ims_gpu_feed *f, int cpu_threads, ims_err *e) {
    if (f->jpeg) return IMGSIM_OK;
    return ims_gpu_jpeg_create(&f->jpeg, f->device, f->max_batch, cpu_threads, e);
}

imgsim_status ims_gpu_feed_set_jpeg(ims_gpu_feed *f, ims_gpu_jpeg *d, ims_err *e) {
    if (f->jpeg || !ims_gpu_jpeg_fits(d, f->device, f->max_batch))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "GPU decoding: the decoder was made for another device or batch size");
    f->jpeg = d;
    return IMGSIM_OK;
}

ims_gpu_jpeg *ims_gpu_feed_detach_jpeg(ims_gpu_feed *f) {
    if (!f) return NULL;
    if (f->stream) cudaStreamSynchronize(f->stream); /* its buffers may still be read */
    ims_gpu_jpeg *d = f->jpeg;
    f->jpeg = NULL;
    return d;
}

void ims_gpu_feed_destroy(ims_gpu_feed *f) {
    if (!f) return;
    if (f->stream) cudaStreamSynchronize(f->stream);
    ims_gpu_jpeg_destroy(f->jpeg);
    if (f->h_srcs) cudaFreeHost(f->h_srcs);
    if (f->d_srcs) cudaFree(f->d_srcs);
    for (int k = 0; k < IS_GPU_FEED_MARKS; k++)
        if (f->ev[k]) cudaEventDestroy(f->ev[k]);
    if (f->stream) cudaStreamDestroy(f->stream);
    free(f);
}

const char *ims_gpu_feed_backend(const ims_gpu_feed *f) {
    return f->jpeg ? ims_gpu_jpeg_backend(f->jpeg) : "not initialised";
}

imgsim_status ims_gpu_feed_decode(ims_gpu_feed *f, const uint8_t *const *bufs, const size_t *lens, int n,
                                 float *dev_in, uint64_t max_pixels, imgsim_status *item_st, ims_err *item_msg,
                                 ims_err *e) {
    if (n > f->max_batch) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "GPU decoding: batch %d over %d", n, f->max_batch);
    if (!f->jpeg) return ims_fail(e, IMGSIM_ERR_INTERNAL, "GPU decoding: the JPEG decoder is not initialised");
    /* the previous batch's descriptors and kernel must be done before h_srcs is rewritten */
    if (cudaStreamSynchronize(f->stream) != cudaSuccess)
        return ims_fail(e, IMGSIM_ERR_BACKEND, "GPU decoding: %s", cudaGetErrorString(cudaGetLastError()));
    /* compact the GPU candidates */
    const uint8_t *cb[n > 0 ? n : 1];
    size_t cl[n > 0 ? n : 1];
    int idx[n > 0 ? n : 1], m = 0;
    for (int i = 0; i < n; i++) {
        if (!bufs[i]) continue;
        cb[m] = bufs[i];
        cl[m] = lens[i];
        idx[m++] = i;
    }
    ims_gpu_src srcs[m > 0 ? m : 1];
    imgsim_status st_m[m > 0 ? m : 1];
    ims_err msg_m[m > 0 ? m : 1];
    imgsim_status st = ims_gpu_jpeg_decode(f->jpeg, cb, cl, m, max_pixels, srcs, st_m, msg_m, f->stream, e);
    if (st) return st;
    /* descriptors for the whole batch: decoded ones in place, the rest skipped (px NULL) */
    memset(f->h_srcs, 0, (size_t)n * sizeof(ims_gpu_src));
    for (int j = 0; j < m; j++) {
        int i = idx[j];
        if (st_m[j] == IMGSIM_OK && !ims_gpu_preprocess_fits(srcs[j].w, srcs[j].h, f->pp.ow, f->pp.oh)) {
            st_m[j] = IMGSIM_ERR_UNSUPPORTED;
            snprintf(msg_m[j].msg, sizeof msg_m[j].msg, "downscale too large for the GPU kernel");
        }
        item_st[i] = st_m[j];
        if (st_m[j] == IMGSIM_OK)
            f->h_srcs[i] = srcs[j];
        else
            item_msg[i] = msg_m[j];
    }
    if (cudaMemcpyAsync(f->d_srcs, f->h_srcs, (size_t)n * sizeof(ims_gpu_src), cudaMemcpyHostToDevice, f->stream) !=
        cudaSuccess)
        return ims_fail(e, IMGSIM_ERR_BACKEND, "GPU decoding: descriptor copy failed");
    return ims_gpu_preprocess(dev_in, f->d_srcs, n, &f->pp, f->stream, e);
}

imgsim_status ims_gpu_feed_upload(ims_gpu_feed *f, const float *host_in, const uint8_t *mask, int n, float *dev_in,
                                 ims_err *e) {
    size_t img = (size_t)3 * (size_t)f->pp.oh * (size_t)f->pp.ow;
    for (int i = 0; i < n;) {
        if (!mask[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j < n && mask[j]) j++; /* one copy per run of CPU-decoded images */
        if (cudaMemcpyAsync(dev_in + (size_t)i * img, host_in + (size_t)i * img, (size_t)(j - i) * img * sizeof(float),
                            cudaMemcpyHostToDevice, f->stream) != cudaSuccess)
            return ims_fail(e, IMGSIM_ERR_BACKEND, "GPU decoding: input copy failed");
        i = j;
    }
    return IMGSIM_OK;
}

void *ims_gpu_feed_mark(ims_gpu_feed *f, int64_t k) {
    cudaEvent_t ev = f->ev[k % IS_GPU_FEED_MARKS];
    cudaEventRecord(ev, f->stream);
    return (void *)ev;
}

imgsim_status ims_gpu_feed_wait_mark(ims_gpu_feed *f, int64_t k, ims_err *e) {
    if (cudaEventSynchronize(f->ev[k % IS_GPU_FEED_MARKS]) != cudaSuccess)
        return ims_fail(e, IMGSIM_ERR_BACKEND, "GPU decoding: %s", cudaGetErrorString(cudaGetLastError()));
    return IMGSIM_OK;
}


imgsim_status ims_gpu_preprocess_files(float *out_host, const char *const *paths, int n, int device,
                                      const imgsim_preprocess_opts *pre, imgsim_status *item_st, ims_err *item_msg,
                                      int *on_gpu, ims_err *e) {
    size_t img = (size_t)3 * (size_t)pre->height * (size_t)pre->width;
    ims_gpu_feed *f = NULL;
    imgsim_status st = ims_gpu_feed_create(&f, device, n, pre->height, pre->width, pre->mean, pre->std, e);
    if (!st && (st = ims_gpu_feed_init_jpeg(f, 1, e))) ims_gpu_feed_destroy(f);
    if (st) return st;
    uint8_t **bufs = ims_calloc((size_t)n, sizeof *bufs);
    size_t *lens = ims_calloc((size_t)n, sizeof *lens);
    uint8_t *mask = ims_calloc((size_t)n, 1);
    float *dev = NULL;
    if (!bufs || !lens || !mask || cudaMalloc((void **)&dev, (size_t)n * img * sizeof(float)) != cudaSuccess) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        on_gpu[i] = 0;
        item_st[i] = ims_read_file(&bufs[i], &lens[i], paths[i], 1u << 30, &item_msg[i]);
        if (item_st[i] == IMGSIM_OK &&
            lens[i] >= 3 && bufs[i][0] == 0xFF && bufs[i][1] == 0xD8 && bufs[i][2] == 0xFF)
            on_gpu[i] = 1;
    }
    {
        const uint8_t *cb[n];
        for (int i = 0; i < n; i++) cb[i] = on_gpu[i] ? bufs[i] : NULL;
        imgsim_status gst[n];
        if ((st = ims_gpu_feed_decode(f, cb, lens, n, dev, pre->max_pixels, gst, item_msg, e))) goto done;
        for (int i = 0; i < n; i++) {
            if (!on_gpu[i]) continue;
            if (gst[i] != IMGSIM_OK) on_gpu[i] = 0; /* refused: the CPU path decodes it */
        }
    }
    for (int i = 0; i < n; i++) {
        if (on_gpu[i] || item_st[i] != IMGSIM_OK) continue;
        item_st[i] = ims_preprocess_mem(out_host + (size_t)i * img, bufs[i], lens[i], pre, paths[i], &item_msg[i]);
        mask[i] = item_st[i] == IMGSIM_OK;
    }
    if ((st = ims_gpu_feed_upload(f, out_host, mask, n, dev, e))) goto done;
    if (cudaStreamSynchronize(f->stream) != cudaSuccess ||
        cudaMemcpy(out_host, dev, (size_t)n * img * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
        st = ims_fail(e, IMGSIM_ERR_BACKEND, "GPU preprocessing: %s", cudaGetErrorString(cudaGetLastError()));
done:
    if (dev) cudaFree(dev);
    if (bufs)
        for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(lens);
    free(mask);
    ims_gpu_feed_destroy(f);
    return st;
}

#else /* no nvJPEG */

imgsim_status ims_gpu_preprocess_files(float *out_host, const char *const *paths, int n, int device,
                                      const imgsim_preprocess_opts *pre, imgsim_status *item_st, ims_err *item_msg,
                                      int *on_gpu, ims_err *e) {
    return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "imgsim was built without nvJPEG");
}
#endif
