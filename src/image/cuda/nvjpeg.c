/*
 * nvjpeg.c: batched JPEG decoding on the GPU with nvJPEG (see gpu_image.h).
 *
 * Two decoders: the hardware engines (NVJPEG_BACKEND_HARDWARE, A100/H100-class chips) when
 * nvjpegGetHardwareDecoderInfo reports engines, for the baseline JPEGs they support; and the
 * GPU-assisted hybrid backend for every other JPEG nvJPEG can do. What nvJPEG should not take goes
 * back to the CPU workers with a reason: CMYK/YCCK and other component counts (colour conversion
 * must match PIL), EXIF orientation other than 1 (applied on the CPU path), streams without an EOI
 * marker (a truncated JPEG must be an error, and nvJPEG may decode it silently), images over
 * max_pixels, subsamplings other than 4:4:4/4:2:2/4:2:0, and anything nvJPEG fails on. nvJPEG
 * writes YCbCr planes; ycc.cu converts them to RGB8 exactly as libjpeg-turbo does (nvJPEG's own
 * RGB output replicates chroma). All in one device arena per call, grown (rarely) as needed.
 */
#ifdef IMGSIM_HAVE_NVJPEG
#include <stdlib.h>
#include <string.h>

#include <nvjpeg.h>

#include "image/cuda/gpu_image.h"
#include "image/cuda/ycc.h"

typedef struct decoder {
    nvjpegHandle_t h;
    nvjpegJpegState_t state;
    int ready;
    int init_batch; /* batch size last given to nvjpegDecodeBatchedInitialize */
} decoder;

struct ims_gpu_jpeg {
    int device, max_batch, cpu_threads;
    decoder hw, hyb; /* hw.ready only where engines exist; hyb made when first needed if so */
    int hyb_failed;
    nvjpegHandle_t main_h; /* for parsing: hw's when there, else hyb's */
    nvjpegJpegStream_t stream_info;
    uint8_t *arena;
    size_t arena_bytes;
    ims_ycc_desc *h_ycc, *d_ycc; /* max_batch descriptors: pinned host and device */
    /* per-call scratch, max_batch entries */
    const unsigned char **bufs;
    size_t *lens;
    nvjpegImage_t *dst;
    int *which; /* index into the caller's arrays */
    ims_gpu_jpeg_times t;
};

static const char *nvj_str(nvjpegStatus_t s) {
    switch (s) {
    case NVJPEG_STATUS_SUCCESS: return "success";
    case NVJPEG_STATUS_NOT_INITIALIZED: return "not initialised";
    case NVJPEG_STATUS_INVALID_PARAMETER: return "invalid parameter";
    case NVJPEG_STATUS_BAD_JPEG: return "bad JPEG";
    case NVJPEG_STATUS_JPEG_NOT_SUPPORTED: return "JPEG not supported";
    case NVJPEG_STATUS_ALLOCATOR_FAILURE: return "allocator failure";
    case NVJPEG_STATUS_EXECUTION_FAILED: return "execution failed";
    case NVJPEG_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case NVJPEG_STATUS_INTERNAL_ERROR: return "internal error";
    case NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED: return "implementation not supported";
    default: return "unknown nvJPEG error";
    }
}

static int decoder_init(decoder *d, nvjpegBackend_t backend) {
    memset(d, 0, sizeof *d);
    if (nvjpegCreateEx(backend, NULL, NULL, 0, &d->h) != NVJPEG_STATUS_SUCCESS) return -1;
    if (nvjpegJpegStateCreate(d->h, &d->state) != NVJPEG_STATUS_SUCCESS) {
        nvjpegDestroy(d->h);
        return -1;
    }
    d->ready = 1;
    return 0;
}

/* The hybrid decoder, made on first use; 0 when it cannot be made. */
static int hyb_ready(ims_gpu_jpeg *d) {
    if (!d->hyb.ready && !d->hyb_failed && decoder_init(&d->hyb, NVJPEG_BACKEND_GPU_HYBRID) != 0 &&
        decoder_init(&d->hyb, NVJPEG_BACKEND_DEFAULT) != 0)
        d->hyb_failed = 1;
    return d->hyb.ready;
}

static void decoder_free(decoder *d) {
    if (!d->ready) return;
    nvjpegJpegStateDestroy(d->state);
    nvjpegDestroy(d->h);
    d->ready = 0;
}

imgsim_status ims_gpu_jpeg_create(ims_gpu_jpeg **out, int device, int max_batch, int cpu_threads, ims_err *e) {
    *out = NULL;
    if (cudaSetDevice(device) != cudaSuccess) return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "nvJPEG: no CUDA device %d", device);
    ims_gpu_jpeg *d = ims_calloc(1, sizeof *d);
    if (!d) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    d->device = device;
    d->max_batch = max_batch;
    d->cpu_threads = cpu_threads > 0 ? cpu_threads : 1;
    double t0 = ims_now();
    if (decoder_init(&d->hw, NVJPEG_BACKEND_HARDWARE) == 0) {
        unsigned engines = 0, cores = 0;
        if (nvjpegGetHardwareDecoderInfo(d->hw.h, &engines, &cores) != NVJPEG_STATUS_SUCCESS || engines == 0)
            decoder_free(&d->hw);
        else
            ims_log_info("nvJPEG: %u hardware decode engines", engines);
    }
    double t1 = ims_now();
    /* with hardware engines the hybrid decoder (progressive and other JPEGs the engines do not
     * take) is made when first needed: most jobs never need it, and it costs start-up time */
    if (!d->hw.ready && !hyb_ready(d)) {
        ims_gpu_jpeg_destroy(d);
        return ims_fail(e, IMGSIM_ERR_BACKEND, "nvJPEG: cannot create a decoder");
    }
    d->main_h = d->hw.ready ? d->hw.h : d->hyb.h;
    ims_log_debug("nvJPEG: hardware decoder %.3f s, hybrid decoder %.3f s", t1 - t0, ims_now() - t1);
    if (nvjpegJpegStreamCreate(d->main_h, &d->stream_info) != NVJPEG_STATUS_SUCCESS) {
        ims_gpu_jpeg_destroy(d);
        return ims_fail(e, IMGSIM_ERR_BACKEND, "nvJPEG: cannot create a stream parser");
    }
    d->bufs = ims_calloc((size_t)max_batch, sizeof *d->bufs);
    d->lens = ims_calloc((size_t)max_batch, sizeof *d->lens);
    d->dst = ims_calloc((size_t)max_batch, sizeof *d->dst);
    d->which = ims_calloc((size_t)max_batch, sizeof *d->which);
    if (cudaHostAlloc((void **)&d->h_ycc, (size_t)max_batch * sizeof(ims_ycc_desc), cudaHostAllocDefault) != cudaSuccess ||
        cudaMalloc((void **)&d->d_ycc, (size_t)max_batch * sizeof(ims_ycc_desc)) != cudaSuccess) {
        ims_gpu_jpeg_destroy(d);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "nvJPEG: cannot allocate descriptors");
    }
    if (!d->bufs || !d->lens || !d->dst || !d->which) {
        ims_gpu_jpeg_destroy(d);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    }
    *out = d;
    return IMGSIM_OK;
}

void ims_gpu_jpeg_destroy(ims_gpu_jpeg *d) {
    if (!d) return;
    if (d->t.calls)
        ims_log_debug("nvJPEG: %d batches, %lld images: header checks %.3f s, batch init %.3f s (%d), decode call %.3f s, "
                     "wait %.3f s, colour %.3f s",
                     d->t.calls, (long long)d->t.images, d->t.route_s, d->t.init_s, d->t.n_init, d->t.call_s,
                     d->t.sync_s, d->t.ycc_s);
    if (d->stream_info) nvjpegJpegStreamDestroy(d->stream_info);
    decoder_free(&d->hw);
    decoder_free(&d->hyb);
    if (d->arena) cudaFree(d->arena);
    if (d->h_ycc) cudaFreeHost(d->h_ycc);
    if (d->d_ycc) cudaFree(d->d_ycc);
    free(d->bufs);
    free(d->lens);
    free(d->dst);
    free(d->which);
    free(d);
}

int ims_gpu_jpeg_fits(const ims_gpu_jpeg *d, int device, int max_batch) {
    return d && d->device == device && d->max_batch >= max_batch;
}

ims_gpu_jpeg_times ims_gpu_jpeg_get_times(const ims_gpu_jpeg *d) {
    return d->t;
}

const char *ims_gpu_jpeg_backend(const ims_gpu_jpeg *d) {
    return d->hw.ready ? "hardware, gpu-hybrid on demand" : "gpu-hybrid";
}

/* 1 if the stream ends with an EOI marker (allowing trailing padding bytes). */
static int has_eoi(const uint8_t *b, size_t n) {
    size_t end = n;
    while (end > 2 && n - end < 64 && b[end - 1] != 0xD9) end--;
    return end >= 2 && b[end - 2] == 0xFF && b[end - 1] == 0xD9;
}

/* Decodes m images (d->bufs/lens/dst) with one decoder; on a batch failure retries one by one.
 * ok[j] is set to 1 for each image decoded. */
static void decode_set(ims_gpu_jpeg *d, decoder *dec, int m, int *ok, cudaStream_t stream) {
    if (m == 0 || (dec == &d->hyb && !hyb_ready(d))) return;
    nvjpegStatus_t s = NVJPEG_STATUS_SUCCESS;
    double t0 = ims_now();
    if (dec->init_batch != m) {
        s = nvjpegDecodeBatchedInitialize(dec->h, dec->state, m, d->cpu_threads, NVJPEG_OUTPUT_YUV);
        dec->init_batch = s == NVJPEG_STATUS_SUCCESS ? m : 0;
        d->t.n_init++;
    }
    double t1 = ims_now();
    if (s == NVJPEG_STATUS_SUCCESS) s = nvjpegDecodeBatched(dec->h, dec->state, d->bufs, d->lens, d->dst, stream);
    double t2 = ims_now();
    int synced = s == NVJPEG_STATUS_SUCCESS && cudaStreamSynchronize(stream) == cudaSuccess;
    d->t.init_s += t1 - t0;
    d->t.call_s += t2 - t1;
    d->t.sync_s += ims_now() - t2;
    if (synced) {
        for (int j = 0; j < m; j++) ok[j] = 1;
        return;
    }
    ims_log_debug("nvJPEG batch of %d failed (%s); decoding one by one", m, nvj_str(s));
    dec->init_batch = 0;
    for (int j = 0; j < m && hyb_ready(d); j++) {
        s = nvjpegDecode(d->hyb.h, d->hyb.state, d->bufs[j], d->lens[j], NVJPEG_OUTPUT_YUV, &d->dst[j], stream);
        ok[j] = s == NVJPEG_STATUS_SUCCESS && cudaStreamSynchronize(stream) == cudaSuccess;
    }
    cudaGetLastError(); /* clear a sticky launch error from a failed image */
}

/* Where one image of a batch goes, and where its planes lie in the arena. */
typedef struct img_plan {
    int route;      /* 0 cpu, 1 hybrid, 2 hardware */
    size_t off;     /* arena offset: Y, Cb, Cr planes, then the RGB image */
    int css;        /* IS_CSS_* */
    int cw, ch;     /* chroma plane size (0 for grayscale) */
} img_plan;

static size_t align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

/* Bytes of the Y plane and of one chroma plane in the arena. */
static size_t y_bytes(const ims_gpu_src *s) {
    return align256((size_t)s->w * s->h);
}
static size_t c_bytes(const img_plan *pl) {
    return align256((size_t)pl->cw * pl->ch);
}

/* Step 1 for one image: sorts it to the hardware decoder, the hybrid one, or back to the CPU
 * (pl->route 0, with the reason in *why). nvJPEG decodes to YCbCr planes and ycc.cu makes RGB the
 * way libjpeg-turbo does (fancy upsampling), so only the subsamplings that kernel reproduces
 * exactly go to the GPU. Fills src's size and pl's chroma planes for the images it keeps. */
static void sort_image(ims_gpu_jpeg *d, const uint8_t *buf, size_t len, uint64_t max_pixels, ims_gpu_src *src,
                       img_plan *pl, const char **why) {
    int nc = 0, ws[NVJPEG_MAX_COMPONENT], hs[NVJPEG_MAX_COMPONENT];
    nvjpegChromaSubsampling_t sub;
    *why = NULL;
    pl->route = 0;
    if (!has_eoi(buf, len)) {
        *why = "no EOI marker (truncated?)";
    } else if (nvjpegGetImageInfo(d->main_h, buf, len, &nc, &sub, ws, hs) != NVJPEG_STATUS_SUCCESS) {
        *why = "nvJPEG cannot parse the header";
    } else if (nc != 1 && nc != 3) {
        *why = "not grayscale or YCbCr (CMYK/YCCK are decoded on the CPU)";
    } else if (nc == 3 && sub != NVJPEG_CSS_444 && sub != NVJPEG_CSS_422 && sub != NVJPEG_CSS_420) {
        *why = "chroma subsampling other than 4:4:4, 4:2:2 or 4:2:0";
    } else if (ws[0] <= 0 || hs[0] <= 0 || hs[0] > 65535 || (uint64_t)ws[0] * (uint64_t)hs[0] > max_pixels) {
        *why = "size outside the GPU path's limits";
    } else if (nvjpegJpegStreamParseHeader(d->main_h, buf, len, d->stream_info) != NVJPEG_STATUS_SUCCESS) {
        *why = "nvJPEG cannot parse the stream";
    } else {
        nvjpegExifOrientation_t o = NVJPEG_ORIENTATION_NORMAL;
        if (nvjpegJpegStreamGetExifOrientation(d->stream_info, &o) == NVJPEG_STATUS_SUCCESS &&
            o != NVJPEG_ORIENTATION_NORMAL && o != NVJPEG_ORIENTATION_UNKNOWN)
            *why = "EXIF orientation is applied on the CPU path";
    }
    if (*why) return;
    pl->route = 1;
    if (d->hw.ready) {
        int sup = 1;
        if (nvjpegDecodeBatchedSupported(d->hw.h, d->stream_info, &sup) == NVJPEG_STATUS_SUCCESS && sup == 0)
            pl->route = 2;
    }
    pl->css = nc == 1                  ? IS_CSS_GRAY
              : sub == NVJPEG_CSS_444 ? IS_CSS_444
              : sub == NVJPEG_CSS_422 ? IS_CSS_422
                                      : IS_CSS_420;
    pl->cw = nc == 1 ? 0 : ws[1];
    pl->ch = nc == 1 ? 0 : hs[1];
    src->w = ws[0];
    src->h = hs[0];
    src->pitch = ws[0] * 3;
}

/* Step 2: one arena for the batch's decoded images (grown by half again when too small). */
static imgsim_status arena_reserve(ims_gpu_jpeg *d, size_t total, ims_err *e) {
    if (total <= d->arena_bytes) return IMGSIM_OK;
    if (d->arena) cudaFree(d->arena);
    d->arena = NULL;
    size_t want = total + total / 2;
    if (cudaMalloc((void **)&d->arena, want) != cudaSuccess) {
        d->arena_bytes = 0;
        return ims_fail(e, IMGSIM_ERR_NOMEM, "nvJPEG: cannot allocate %zu bytes of device memory for decoding", want);
    }
    d->arena_bytes = want;
    return IMGSIM_OK;
}

/* Step 3 for one route: decodes its images as one batch into their YCbCr planes and marks the
 * ones decoded (item_st OK, srcs[i].px set, *max_w and *max_h grown); the others get a message. */
static void decode_route(ims_gpu_jpeg *d, int r, const uint8_t *const *bufs, const size_t *lens, int n,
                         const img_plan *plan, ims_gpu_src *srcs, imgsim_status *item_st, ims_err *item_msg,
                         int *max_w, int *max_h, cudaStream_t stream) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (plan[i].route != r) continue;
        uint8_t *base = d->arena + plan[i].off;
        size_t yb = y_bytes(&srcs[i]), cb = c_bytes(&plan[i]);
        ims_ycc_desc *y = &d->h_ycc[i];
        y->y = base;
        y->cb = base + yb;
        y->cr = base + yb + cb;
        y->w = srcs[i].w, y->h = srcs[i].h, y->yp = srcs[i].w;
        y->cw = plan[i].cw, y->ch = plan[i].ch, y->cp = plan[i].cw, y->css = plan[i].css;
        d->which[m] = i;
        d->bufs[m] = bufs[i];
        d->lens[m] = lens[i];
        memset(&d->dst[m], 0, sizeof d->dst[m]);
        d->dst[m].channel[0] = (unsigned char *)y->y;
        d->dst[m].pitch[0] = (size_t)y->yp;
        if (plan[i].css != IS_CSS_GRAY) {
            d->dst[m].channel[1] = (unsigned char *)y->cb;
            d->dst[m].channel[2] = (unsigned char *)y->cr;
            d->dst[m].pitch[1] = d->dst[m].pitch[2] = (size_t)y->cp;
        }
        m++;
    }
    int ok[m > 0 ? m : 1];
    memset(ok, 0, sizeof ok);
    decode_set(d, r == 2 ? &d->hw : &d->hyb, m, ok, stream);
    for (int j = 0; j < m; j++) {
        int i = d->which[j];
        if (ok[j]) {
            d->t.images++;
            uint8_t *rgb = d->arena + plan[i].off + y_bytes(&srcs[i]) + 2 * c_bytes(&plan[i]);
            d->h_ycc[i].rgb = rgb;
            srcs[i].px = rgb;
            item_st[i] = IMGSIM_OK;
            if (srcs[i].w > *max_w) *max_w = srcs[i].w;
            if (srcs[i].h > *max_h) *max_h = srcs[i].h;
        } else {
            snprintf(item_msg[i].msg, sizeof item_msg[i].msg, "nvJPEG failed to decode it");
        }
    }
}

imgsim_status ims_gpu_jpeg_decode(ims_gpu_jpeg *d, const uint8_t *const *bufs, const size_t *lens, int n,
                                 uint64_t max_pixels, ims_gpu_src *srcs, imgsim_status *item_st, ims_err *item_msg,
                                 cudaStream_t stream, ims_err *e) {
    if (n > d->max_batch) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "nvJPEG: batch %d over %d", n, d->max_batch);
    /* 1. sort images: hardware, hybrid, or back to the CPU; place the kept ones in the arena */
    double t_route = ims_now();
    d->t.calls++;
    img_plan plan[n > 0 ? n : 1];
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        memset(&srcs[i], 0, sizeof srcs[i]);
        item_st[i] = IMGSIM_ERR_UNSUPPORTED;
        const char *why;
        sort_image(d, bufs[i], lens[i], max_pixels, &srcs[i], &plan[i], &why);
        if (why) {
            snprintf(item_msg[i].msg, sizeof item_msg[i].msg, "%s", why);
            continue;
        }
        plan[i].off = total;
        total += y_bytes(&srcs[i]) + 2 * c_bytes(&plan[i]) + align256((size_t)srcs[i].pitch * (size_t)srcs[i].h);
    }
    d->t.route_s += ims_now() - t_route;
    /* 2. one arena for the batch's decoded images */
    imgsim_status st = arena_reserve(d, total, e);
    if (st) return st;
    /* 3. decode each route as one batch, into YCbCr planes */
    int max_w = 0, max_h = 0;
    memset(d->h_ycc, 0, (size_t)n * sizeof(ims_ycc_desc));
    for (int r = 2; r >= 1; r--)
        decode_route(d, r, bufs, lens, n, plan, srcs, item_st, item_msg, &max_w, &max_h, stream);
    /* 4. YCbCr -> RGB as libjpeg-turbo does it */
    if (max_w > 0) {
        double ty = ims_now();
        if (cudaMemcpyAsync(d->d_ycc, d->h_ycc, (size_t)n * sizeof(ims_ycc_desc), cudaMemcpyHostToDevice, stream) !=
            cudaSuccess)
            return ims_fail(e, IMGSIM_ERR_BACKEND, "nvJPEG: descriptor copy failed");
        st = ims_ycc_to_rgb(d->d_ycc, n, max_w, max_h, stream, e);
        d->t.ycc_s += ims_now() - ty; /* launch only: the kernel runs behind */
        if (st) return st;
    }
    return IMGSIM_OK;
}
#endif /* IMGSIM_HAVE_NVJPEG */
