/*
 * extract.c: the extraction pipeline: files -> decode/preprocess workers -> batch ring ->
 * engine -> normalised features -> store (features.npy + manifest.tsv + meta.json).
 *
 * Items are numbered in dataset order; item i belongs to batch b = i / B and is written by a
 * worker into ring slot b % S at position i % B. A slot is handed to workers for batch b only
 * after the consumer has finished batch b - S with it, so memory is bounded by S batches however
 * large the dataset. The calling thread takes batches in order: with an asynchronous backend
 * (CUDA) it feeds them (GPU decoding of the JPEGs routed to the GPU, uploads, submit) while a
 * collector thread takes each batch's features and writes them, so copies, inference and writing
 * overlap decoding; with a synchronous one (CPU) it runs each batch in turn while the workers fill
 * the next slot. A failed image leaves a hole: its row of the batch is computed and dropped, and
 * its manifest line records the reason.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/extract.h"
#include "data/dataset.h"
#include "data/inputs.h"
#include "data/meta.h"
#include "data/shards.h"
#include "image/gpu_decode.h"
#include "image/image.h"

void imgsim_extract_opts_init(imgsim_extract_opts *o) {
    memset(o, 0, sizeof *o);
    imgsim_preprocess_opts_init(&o->pre);
    o->dtype = IMGSIM_F32;
}

typedef struct item_result {
    imgsim_status st;
    char *error;  /* ims_malloc'ed message for failures */
    uint8_t *buf; /* GPU mode: the encoded file, for the GPU decoder */
    size_t len;
    int on_gpu;   /* GPU mode: left for the GPU decoder */
} item_result;

typedef struct pipeline {
    imgsim_engine *eng;
    const ims_dataset *ds; /* the items to extract: the store's shards not yet complete */
    ims_shards *sh;        /* where their features and manifest lines go */
    const imgsim_extract_opts *opt;
    int B, S;
    int64_t n_items, n_batches;
    size_t img_floats; /* C * H * W */
    float **slot_buf;  /* S buffers of B images */
    int own_buffers;
    item_result *res;

    pthread_mutex_t mu;
    pthread_cond_t cv_slot_free, cv_slot_full;
    int64_t *slot_batch; /* batch each slot currently serves */
    int *slot_done;      /* items finished in the slot's current batch */
    atomic_llong next_item;
    int abort;

    double *busy; /* per worker decode seconds */
    double *idle; /* per worker seconds waiting for a free slot */
    ims_progress *progress;

    /* GPU decoding (a CUDA engine, and imgsim built with a GPU decoder: image/gpu_decode.h) */
    int gpu_mode;
    ims_gpu_decode *gpu; /* decodes the JPEGs routed to it, uploads the rest (gpu_mode) */
    int async;    /* backend has submit/collect */
    int n_bslots; /* backend slots: batch b runs in backend slot b % n_bslots */
    int n_workers;
    double last_wait, last_idle;
    int adapt;          /* AUTO: adjust cpu_share after each batch */
    double cpu_share;   /* share of the JPEGs the GPU could take that the CPU workers decode */
    int64_t gpu_decoded;
    double gpu_s, wait_s;
    double t_feed[4]; /* consumer: GPU decode + kernel, CPU fallback, uploads, engine submit */
} pipeline;

typedef struct worker_arg {
    pipeline *p;
    int id;
} worker_arg;

static int batch_count(const pipeline *p, int64_t b) {
    int64_t left = p->n_items - b * p->B;
    return (int)(left < p->B ? left : p->B);
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    pipeline *p = wa->p;
    ims_err err;
    for (;;) {
        int64_t i = atomic_fetch_add(&p->next_item, 1);
        if (i >= p->n_items) break;
        int64_t b = i / p->B;
        int slot = (int)(b % p->S);
        double tw = ims_now();
        pthread_mutex_lock(&p->mu);
        while (p->slot_batch[slot] != b && !p->abort) pthread_cond_wait(&p->cv_slot_free, &p->mu);
        int aborted = p->abort;
        pthread_mutex_unlock(&p->mu);
        if (aborted) break;

        double t0 = ims_now();
        p->idle[wa->id] += t0 - tw;
        float *dst = p->slot_buf[slot] + (size_t)(i % p->B) * p->img_floats;
        err.msg[0] = 0;
        imgsim_status st;
        if (p->gpu_mode) {
            /* read the file; JPEGs routed to the GPU stay encoded for its decoder */
            item_result *r = &p->res[i];
            st = ims_read_file(&r->buf, &r->len, p->ds->items[i].path, 1u << 30, &err);
            if (st == IMGSIM_OK && ims_gpu_decode_route(p->gpu, i, r->buf, r->len)) {
                r->on_gpu = 1;
                r->st = IMGSIM_OK;
            } else if (st == IMGSIM_OK) {
                st = ims_preprocess_mem(dst, r->buf, r->len, &p->opt->pre, p->ds->items[i].path, &err);
                free(r->buf);
                r->buf = NULL;
            }
        } else {
            st = ims_preprocess_file(dst, p->ds->items[i].path, &p->opt->pre, &err);
        }
        if (!p->res[i].on_gpu) p->res[i].st = st;
        if (st) {
            p->res[i].error = ims_strdup(err.msg[0] ? err.msg : imgsim_status_str(st));
            memset(dst, 0, p->img_floats * sizeof(float)); /* a defined input for the dropped row */
        }
        p->busy[wa->id] += ims_now() - t0;

        pthread_mutex_lock(&p->mu);
        if (++p->slot_done[slot] == batch_count(p, b)) pthread_cond_broadcast(&p->cv_slot_full);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* Removes tabs and newlines so a message fits one TSV field. */
static void tsv_clean(char *s) {
    for (; *s; s++)
        if (*s == '\t' || *s == '\n' || *s == '\r') *s = ' ';
}

/* Hands batch b's results to its shard (out: [count, dim]): the features of its successful items
 * and every item's manifest line; a shard's last batch commits it. */
static imgsim_status write_batch(pipeline *p, int64_t b, const float *out, ims_err *e) {
    int count = batch_count(p, b);
    int64_t dim = p->eng->info.dim;
    for (int j = 0; j < count; j++) {
        int64_t i = b * p->B + j;
        item_result *r = &p->res[i];
        if (r->st != IMGSIM_OK && r->error) tsv_clean(r->error);
        imgsim_status st = ims_shards_add(p->sh, i, r->st == IMGSIM_OK ? out + (size_t)j * (size_t)dim : NULL,
                                          r->error, e);
        if (st) return st;
    }
    return IMGSIM_OK;
}

imgsim_status ims_extract_write_meta(const char *path, const imgsim_engine *eng, const imgsim_extract_opts *opt,
                                    int batch_size, double cpu_share, const char *input, const char *fingerprint,
                                    const imgsim_extract_stats *s, const ims_store_files *files, ims_err *e) {
    imgsim_store_meta m;
    ims_meta_init(&m);
    m.model_path = eng->model_path ? eng->model_path : "";
    m.model_sha256 = eng->sha256;
    m.layer = eng->layer;
    m.dim = eng->info.dim;
    m.in_channels = eng->info.in_channels;
    m.in_height = eng->info.in_height;
    m.in_width = eng->info.in_width;
    m.has_preprocessing = 1;
    m.pre = opt->pre;
    m.precision = imgsim_precision_str(eng->info.precision);
    m.calib_sha256 = eng->info.calib_sha256;
    m.device = eng->info.device == IMGSIM_DEVICE_CUDA ? "cuda" : "cpu";
    m.device_name = eng->info.device_name;
    m.dtype = opt->dtype == IMGSIM_F16 ? "float16" : "float32";
    m.normalized = eng->normalize;
    m.batch_size = batch_size;
    m.input = input;
    m.inputs_fingerprint = fingerprint;
    m.stats = *s;
    m.engine_build_seconds = eng->info.build_seconds;
    if (cpu_share >= 0) m.cpu_decode_share_final = cpu_share;
    m.features_bytes = files->features_bytes;
    m.features_checksum = files->features_checksum;
    m.manifest_bytes = files->manifest_bytes;
    m.manifest_checksum = files->manifest_checksum;
    return ims_meta_write(path, &m, files, opt->durable, e);
}

/* Creates the ring buffers. An asynchronous backend (CUDA) lends its pinned input buffers, one
 * slot per backend slot. In GPU-decoding mode the ring is the pipeline's own (GPU_RING slots of
 * pinned memory, for the CPU-decoded share), deeper than the backend's slots so the workers fill
 * the next batches while the consumer decodes one on the GPU. */
#define GPU_RING 3
static imgsim_status ring_init(pipeline *p, ims_err *e) {
    ims_backend *b = p->eng->b;
    p->async = b->ops->submit && b->ops->collect && b->ops->input_buffer && b->ops->n_slots >= 2;
    p->n_bslots = p->async ? b->ops->n_slots : 1;
    int gpu_ring = ims_tuning_get()->gpu_ring ? ims_tuning_get()->gpu_ring : GPU_RING; /* for experiments */
    p->S = p->gpu_mode ? gpu_ring : p->async ? b->ops->n_slots : 2;
    p->slot_buf = ims_calloc((size_t)p->S, sizeof(float *));
    p->slot_batch = ims_calloc((size_t)p->S, sizeof(int64_t));
    p->slot_done = ims_calloc((size_t)p->S, sizeof(int));
    if (!p->slot_buf || !p->slot_batch || !p->slot_done) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    p->own_buffers = !p->async || p->gpu_mode;
    for (int s = 0; s < p->S; s++) {
        p->slot_batch[s] = s;
        size_t bytes = (size_t)p->B * p->img_floats * sizeof(float);
        if (!p->own_buffers || (p->gpu_mode && s < p->n_bslots))
            /* GPU mode: the backend's pinned input buffers are free (its input arrives on the
             * device), so they serve as the first slots; pinned allocation is slow */
            p->slot_buf[s] = b->ops->input_buffer(b, s);
        else if (p->gpu_mode)
            p->slot_buf[s] = ims_gpu_decode_host_buffer(p->gpu, bytes); /* (the job frees it) */
        else
            p->slot_buf[s] = ims_malloc(bytes);
        if (!p->slot_buf[s]) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory for the batch ring");
    }
    return IMGSIM_OK;
}

/* Frees what the pipeline holds; the GPU decoding job waits for its device work, gives its
 * decoders back to the engine's set and frees the ring's pinned slots. */
static void pipeline_free(pipeline *p) {
    ims_gpu_decode_destroy(p->gpu);
    p->gpu = NULL;
    if (p->own_buffers && p->slot_buf && !p->gpu_mode)
        for (int s = 0; s < p->S; s++) free(p->slot_buf[s]);
    free(p->slot_buf);
    free(p->slot_batch);
    free(p->slot_done);
    if (p->res)
        for (int64_t i = 0; i < p->n_items; i++) free(p->res[i].error), free(p->res[i].buf);
    free(p->res);
    free(p->busy);
    free(p->idle);
}

/* Waits until batch b's slot is completely filled; -1 when the job is aborted instead. */
static int wait_full(pipeline *p, int64_t b) {
    int slot = (int)(b % p->S);
    double t0 = ims_now();
    pthread_mutex_lock(&p->mu);
    while (p->slot_done[slot] < batch_count(p, b) && !p->abort) pthread_cond_wait(&p->cv_slot_full, &p->mu);
    int aborted = p->abort;
    pthread_mutex_unlock(&p->mu);
    p->wait_s += ims_now() - t0;
    return aborted ? -1 : 0;
}

/* Gives batch b's slot to batch b + S. */
static void release_slot(pipeline *p, int64_t b) {
    int slot = (int)(b % p->S);
    pthread_mutex_lock(&p->mu);
    p->slot_done[slot] = 0;
    p->slot_batch[slot] = b + p->S;
    pthread_cond_broadcast(&p->cv_slot_free);
    pthread_mutex_unlock(&p->mu);
}

/* Counts batch b as done: the progress line and the caller's progress callback (which may stop
 * the job: IMGSIM_ERR_CANCELLED). */
static imgsim_status count_batch(pipeline *p, int64_t b, ims_err *e) {
    ims_progress_add(p->progress, batch_count(p, b));
    if (!p->opt->progress) return IMGSIM_OK;
    int64_t done = b * p->B + batch_count(p, b);
    if (p->opt->progress(p->opt->progress_user, done, p->n_items))
        return ims_fail(e, IMGSIM_ERR_CANCELLED, "extraction cancelled after %lld of %lld inputs (progress callback)",
                       (long long)done, (long long)p->n_items);
    return IMGSIM_OK;
}

typedef struct fallback_ctx {
    pipeline *p;
    int64_t b;
    const int *items; /* positions in the batch */
} fallback_ctx;

/* CPU decode of an image the GPU decoder refused, from its bytes in memory. */
static void fallback_one(void *ctx, int64_t k, int worker) {
    fallback_ctx *f = ctx;
    pipeline *p = f->p;
    int j = f->items[k];
    int64_t i = f->b * p->B + j;
    item_result *r = &p->res[i];
    float *dst = p->slot_buf[f->b % p->S] + (size_t)j * p->img_floats;
    ims_err err;
    err.msg[0] = 0;
    r->st = ims_preprocess_mem(dst, r->buf, r->len, &p->opt->pre, p->ds->items[i].path, &err);
    if (r->st) {
        r->error = ims_strdup(err.msg[0] ? err.msg : imgsim_status_str(r->st));
        memset(dst, 0, p->img_floats * sizeof(float));
    }
    (void)worker;
}

/* GPU mode: decodes batch b's JPEGs on the GPU into the engine's device input, decodes what the
 * GPU decoder refuses on the CPU, uploads the CPU-decoded images and starts the batch. */
static imgsim_status gpu_feed_batch(pipeline *p, int64_t b, ims_err *e) {
    ims_backend *be = p->eng->b;
    int slot = (int)(b % p->S), bslot = (int)(b % p->n_bslots), n = batch_count(p, b);
    float *dev_in = be->ops->device_input(be, bslot);
    const uint8_t *bufs[n];
    size_t lens[n];
    imgsim_status ist[n];
    ims_err *msg = ims_calloc((size_t)n, sizeof(ims_err));
    uint8_t mask[n];
    int refused[n], nref = 0, ngpu = 0;
    if (!msg) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    double t0 = ims_now();
    for (int j = 0; j < n; j++) {
        item_result *r = &p->res[b * p->B + j];
        bufs[j] = r->on_gpu ? r->buf : NULL;
        lens[j] = r->on_gpu ? r->len : 0;
        ngpu += r->on_gpu;
    }
    imgsim_status st = IMGSIM_OK;
    if (ngpu) st = ims_gpu_decode_batch(p->gpu, bufs, lens, n, dev_in, ist, msg, e);
    double t1 = ims_now();
    for (int j = 0; j < n && !st; j++) {
        item_result *r = &p->res[b * p->B + j];
        mask[j] = !r->on_gpu && r->st == IMGSIM_OK;
        if (!r->on_gpu) continue;
        if (ist[j] == IMGSIM_OK) {
            p->gpu_decoded++;
        } else {
            ims_log_debug("%s: decoding on the CPU: %s", p->ds->items[b * p->B + j].path, msg[j].msg);
            refused[nref++] = j;
        }
    }
    free(msg);
    double t2 = ims_now();
    if (!st && nref) {
        fallback_ctx fc = {p, b, refused};
        ims_pool_for(NULL, nref, fallback_one, &fc);
        for (int k = 0; k < nref; k++) mask[refused[k]] = p->res[b * p->B + refused[k]].st == IMGSIM_OK;
    }
    for (int j = 0; j < n; j++) { /* the encoded bytes are no longer needed */
        item_result *r = &p->res[b * p->B + j];
        free(r->buf);
        r->buf = NULL;
    }
    double t3 = ims_now();
    if (!st) st = ims_gpu_decode_upload(p->gpu, p->slot_buf[slot], mask, n, dev_in, e);
    double t4 = ims_now();
    if (!st) st = be->ops->submit_device(be, bslot, n, ims_gpu_decode_mark(p->gpu, b), e);
    /* the previous batch's uploads are done (long since: the GPU decoder synchronised since): its ring
     * slot goes back to the workers now rather than after its inference */
    if (!st && b > 0 && !(st = ims_gpu_decode_wait_mark(p->gpu, b - 1, e))) release_slot(p, b - 1);
    double t5 = ims_now();
    p->t_feed[0] += t1 - t0;
    p->t_feed[1] += t3 - t2;
    p->t_feed[2] += t4 - t3;
    p->t_feed[3] += t5 - t4;
    p->gpu_s += t5 - t0;
    /* AUTO: move JPEGs towards whichever side waited more in this batch: the consumer waiting
     * for the workers means the CPU is the bottleneck; the workers waiting for free slots means
     * the GPU side is */
    if (p->adapt) { /* (before the GPU is ready the CPU decodes everything: nothing to learn) */
        double idle = 0;
        for (int w = 0; w < p->n_workers; w++) idle += p->idle[w];
        idle /= p->n_workers > 0 ? p->n_workers : 1;
        double d_wait = p->wait_s - p->last_wait, d_idle = idle - p->last_idle;
        p->last_wait = p->wait_s;
        p->last_idle = idle;
        if (b > 0 && ims_gpu_decode_ready(p->gpu) == 1) p->cpu_share += d_wait > d_idle ? -0.03 : 0.03;
        if (p->cpu_share < 0) p->cpu_share = 0;
        if (p->cpu_share > 1) p->cpu_share = 1;
        ims_gpu_decode_set_cpu_share(p->gpu, p->cpu_share);
    }
    return st;
}

/* With an asynchronous backend the calling thread feeds (decodes on the GPU, uploads, submits)
 * and this collector thread takes each batch's features in order and writes them, so that
 * neither waits for the other's work. Backend slot b % n_bslots is reused for batch b once batch
 * b - n_bslots has been collected. */
typedef struct collector {
    pipeline *p;
    int64_t submitted, collected; /* batches so far (under p->mu) */
    int feeder_stopped;           /* the feeder failed: submitted will not grow */
    imgsim_status st;             /* the collector's failure */
    ims_err err;
    pthread_cond_t cv;            /* submitted or collected changed */
    double infer_s, write_s;
} collector;

static void *collector_main(void *arg) {
    collector *c = arg;
    pipeline *p = c->p;
    ims_backend *be = p->eng->b;
    float *out = ims_malloc_array((size_t)p->B * (size_t)p->eng->info.dim, sizeof(float));
    imgsim_status st = out ? IMGSIM_OK : ims_fail(&c->err, IMGSIM_ERR_NOMEM, "out of memory");
    for (int64_t b = 0; b < p->n_batches && !st; b++) {
        pthread_mutex_lock(&p->mu);
        while (c->submitted <= b && !c->feeder_stopped) pthread_cond_wait(&c->cv, &p->mu);
        int stop = c->submitted <= b;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        double t0 = ims_now();
        st = be->ops->collect(be, (int)(b % p->n_bslots), out, &c->err);
        double t1 = ims_now();
        if (!st) st = write_batch(p, b, out, &c->err);
        c->infer_s += t1 - t0;
        c->write_s += ims_now() - t1;
        if (!st) st = count_batch(p, b, &c->err);
        if (!p->gpu_mode) release_slot(p, b); /* (GPU mode: the feeder released it after its upload) */
        pthread_mutex_lock(&p->mu);
        c->collected = b + 1;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&p->mu);
    }
    if (st) { /* stop everyone: the feeder and the workers wait on batches that would never come */
        pthread_mutex_lock(&p->mu);
        c->st = st;
        p->abort = 1;
        pthread_cond_broadcast(&c->cv);
        pthread_cond_broadcast(&p->cv_slot_full);
        pthread_cond_broadcast(&p->cv_slot_free);
        pthread_mutex_unlock(&p->mu);
    }
    free(out);
    return NULL;
}

/* The consumer: runs every batch in order and writes the results. */
static imgsim_status consume(pipeline *p, double *infer_s, double *write_s, ims_err *e) {
    ims_backend *be = p->eng->b;
    imgsim_status st = IMGSIM_OK;
    if (p->async) {
        collector c = {.p = p};
        pthread_cond_init(&c.cv, NULL);
        pthread_t th;
        if (pthread_create(&th, NULL, collector_main, &c) != 0) {
            pthread_cond_destroy(&c.cv);
            return ims_fail(e, IMGSIM_ERR_INTERNAL, "cannot start the collector thread");
        }
        for (int64_t b = 0; b < p->n_batches && !st; b++) {
            if (wait_full(p, b)) break;
            pthread_mutex_lock(&p->mu); /* the backend slot must have been collected */
            while (c.collected < b - p->n_bslots + 1 && !c.st) pthread_cond_wait(&c.cv, &p->mu);
            int failed = c.st != IMGSIM_OK;
            pthread_mutex_unlock(&p->mu);
            if (failed) break;
            double t0 = ims_now();
            st = p->gpu_mode ? gpu_feed_batch(p, b, e) : be->ops->submit(be, (int)(b % p->n_bslots), batch_count(p, b), e);
            if (!p->gpu_mode) *infer_s += ims_now() - t0;
            pthread_mutex_lock(&p->mu);
            if (!st) c.submitted = b + 1;
            else c.feeder_stopped = 1;
            pthread_cond_broadcast(&c.cv);
            pthread_mutex_unlock(&p->mu);
        }
        pthread_mutex_lock(&p->mu);
        c.feeder_stopped = 1; /* (after the last batch: nothing more comes) */
        pthread_cond_broadcast(&c.cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(th, NULL);
        pthread_cond_destroy(&c.cv);
        *infer_s += c.infer_s;
        *write_s += c.write_s;
        if (!st && c.st) st = ims_fail_copy(e, &c.err, c.st);
        return st;
    }
    int64_t dim = p->eng->info.dim;
    float *out = ims_malloc_array((size_t)p->B * (size_t)dim, sizeof(float));
    if (!out) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    for (int64_t b = 0; b < p->n_batches && !st; b++) {
        wait_full(p, b);
        double t0 = ims_now();
        st = be->ops->run(be, p->slot_buf[b % p->S], batch_count(p, b), out, e);
        *infer_s += ims_now() - t0;
        double t1 = ims_now();
        if (!st) st = write_batch(p, b, out, e);
        *write_s += ims_now() - t1;
        if (!st) st = count_batch(p, b, e);
        release_slot(p, b);
    }
    free(out);
    return st;
}

/* ---- set-up, run, finish ---------------------------------------------------------------------- */

/* The images per batch of a job on eng. */
static int batch_of(const imgsim_engine *eng, const imgsim_extract_opts *opt) {
    return opt->batch_size > 0 && opt->batch_size <= eng->info.max_batch ? opt->batch_size : eng->info.max_batch;
}

/* Set-up: the pipeline for ds on eng into the shards sh (batch size, workers, per-item results,
 * the GPU decoding job where the engine runs on CUDA, the batch ring). On failure everything is
 * freed. */
static imgsim_status pipeline_setup(pipeline *p, imgsim_engine *eng, const ims_dataset *ds, ims_shards *sh,
                                    const imgsim_extract_opts *opt, ims_err *e) {
    memset(p, 0, sizeof *p);
    p->eng = eng;
    p->ds = ds;
    p->sh = sh;
    p->opt = opt;
    p->B = batch_of(eng, opt);
    p->n_items = (int64_t)ds->n;
    p->n_batches = (p->n_items + p->B - 1) / p->B;
    p->img_floats = (size_t)eng->info.in_channels * (size_t)eng->info.in_height * (size_t)eng->info.in_width;
    if (opt->pre.height != eng->info.in_height || opt->pre.width != eng->info.in_width)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                        "preprocessing output (the crop) %dx%d differs from the model's input %dx%d",
                        opt->pre.height, opt->pre.width, eng->info.in_height, eng->info.in_width);
    imgsim_status cst = ims_preprocess_check(&opt->pre, e);
    if (cst) return cst;
    /* the GPU kernel resizes straight to the input size, bilinear: other geometry is the CPU's */
    const int gpu_pre_ok = ims_pre_is_plain(&opt->pre);
    if (!gpu_pre_ok && eng->info.device == IMGSIM_DEVICE_CUDA && opt->decode == IMGSIM_DECODE_GPU) {
        char d[128];
        imgsim_preprocess_opts_describe(d, sizeof d, &opt->pre);
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                        "decode=gpu: the GPU preprocessing resizes straight to the input size with the bilinear "
                        "filter, not '%s'; use decode=auto or cpu (images then decoded and preprocessed on the CPU)", d);
    }
    /* with a CUDA engine the consumer thread drives the GPU (and its decoder): leave it a core */
    int workers = opt->workers > 0 ? ims_threads_cap(opt->workers, "workers")
                  : eng->info.device == IMGSIM_DEVICE_CUDA && ims_num_cores() > 4 ? ims_num_cores() - 1
                                                                               : ims_num_cores();
    p->n_workers = workers;
    p->res = ims_calloc(ds->n ? ds->n : 1, sizeof(item_result));
    p->busy = ims_calloc((size_t)workers, sizeof(double));
    p->idle = ims_calloc((size_t)workers, sizeof(double));
    if (!p->res || !p->busy || !p->idle) {
        pipeline_free(p);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    }
    ims_backend *be = eng->b;
    if (eng->info.device == IMGSIM_DEVICE_CUDA && be->ops->n_slots >= 2 && be->ops->device_input &&
        be->ops->submit_device) {
        /* a GPU decoding job on the engine's decoder set; CPU mode: the same path with every
         * image decoded by the workers (its deeper pinned ring uploads straight into the
         * engine's device input) */
        const imgsim_decode mode = gpu_pre_ok ? opt->decode : IMGSIM_DECODE_CPU;
        if (!gpu_pre_ok) ims_log_info("preprocessing with a resize + crop or bicubic filter: every image on the CPU");
        ims_gpu_decode_cfg gc = {.max_batch = p->B, .pre = &opt->pre, .mode = mode, .cpu_threads = workers};
        ims_err fe;
        if (ims_gpu_decode_open(&p->gpu, eng->gpu_dec, &gc, &fe) == IMGSIM_OK) {
            p->gpu_mode = 1;
            p->adapt = mode == IMGSIM_DECODE_AUTO;
            p->cpu_share = mode == IMGSIM_DECODE_CPU ? 1.0 : p->adapt ? 0.4 : 0.0;
            ims_gpu_decode_set_cpu_share(p->gpu, p->cpu_share);
        } else {
            ims_log_info("GPU decoding unavailable (%s): decoding on the CPU", fe.msg);
        }
    }
    imgsim_status st = ring_init(p, e);
    if (st) {
        pipeline_free(p);
        return st;
    }
    /* AUTO: the CPU decodes everything until the decoders exist; GPU (asked for explicitly):
     * every JPEG the decoder takes goes to it, so they are made first */
    if (p->gpu_mode) ims_gpu_decode_start(p->gpu);
    return IMGSIM_OK;
}

/* The store's files while they are written: its shards, then the final files (temporary names
 * until committed). */
typedef struct store_out {
    char *meta_path, *inputs_path;
    ims_shards *sh;
    ims_store_writer w; /* features and manifest, in the layout asked for (data/store_write.h) */
    ims_atomic_file inputs;
} store_out;

/* Set-up of the store: a store without meta.json is incomplete, so the old marker goes before
 * anything else; then the shards of ds (those a killed job of the same settings completed are
 * kept: data/shards.h). */
static imgsim_status store_begin(store_out *o, const char *store_dir, const imgsim_engine *eng, const ims_dataset *ds,
                                 const imgsim_extract_opts *opt, ims_err *e) {
    memset(o, 0, sizeof *o);
    o->meta_path = ims_path_join(store_dir, "meta.json");
    o->inputs_path = ims_path_join(store_dir, "inputs.tsv");
    if (!o->meta_path || !o->inputs_path) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    imgsim_status st = ims_store_writer_begin(&o->w, store_dir, opt->layout == IMGSIM_LAYOUT_SHARDED, opt->dtype,
                                              eng->info.dim, opt->durable, e);
    if (st) return st;
    if (!opt->part) remove(o->meta_path); /* (a part: the coordinator removed it) */
    ims_shard_job job = {
        .model_sha256 = eng->sha256,
        .layer = eng->layer,
        .precision = imgsim_precision_str(eng->info.precision),
        .calib_sha256 = eng->info.calib_sha256,
        .device = eng->info.device == IMGSIM_DEVICE_CUDA ? "cuda" : "cpu",
        .dim = eng->info.dim,
        .dtype = opt->dtype,
        .normalized = eng->normalize,
        .batch_size = batch_of(eng, opt),
        .pre = &opt->pre,
        .durable = opt->durable,
    };
    return ims_shards_open(&o->sh, store_dir, &job, opt->shard_size, ds, opt->part, opt->part_shards, e);
}

/* Removes what a failed job wrote of the final files (failed: 1; the complete shards stay for the
 * next run), or the shards of a complete store, and frees the rest. */
static void store_end(store_out *o, int failed) {
    if (failed) {
        if (o->inputs.f) ims_atomic_abort(&o->inputs);
    } else if (o->sh) {
        ims_shards_remove(o->sh);
    }
    ims_store_writer_end(&o->w); /* (what it did not commit goes) */
    ims_shards_free(o->sh);
    free(o->meta_path);
    free(o->inputs_path);
}

/* Run: starts the workers, consumes every batch into the store, stops the workers. Fills the
 * set-up time (from t_setup, when set-up began) and the consumer's inference and write time. */
static imgsim_status pipeline_run(pipeline *p, double t_setup, imgsim_extract_stats *s,
                                  double *infer_s, double *write_s, ims_err *e) {
    imgsim_status st;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_slot_free, NULL);
    pthread_cond_init(&p->cv_slot_full, NULL);
    p->progress = ims_progress_start("extract", p->n_items, p->opt->quiet);
    pthread_t *th = ims_calloc((size_t)p->n_workers, sizeof(pthread_t));
    worker_arg *wa = ims_calloc((size_t)p->n_workers, sizeof(worker_arg));
    int started = 0;
    if (th && wa) {
        for (int w = 0; w < p->n_workers; w++) {
            wa[w].p = p;
            wa[w].id = w;
            if (pthread_create(&th[w], NULL, worker_main, &wa[w]) != 0) break;
            started++;
        }
    }
    if (started == 0 && p->n_items > 0) {
        st = ims_fail(e, IMGSIM_ERR_INTERNAL, "cannot start worker threads");
    } else {
        s->seconds_setup = ims_now() - t_setup;
        st = consume(p, infer_s, write_s, e);
    }
    pthread_mutex_lock(&p->mu);
    p->abort = 1; /* wakes workers still waiting for a slot after a failure */
    pthread_cond_broadcast(&p->cv_slot_free);
    pthread_mutex_unlock(&p->mu);
    for (int w = 0; w < started; w++) pthread_join(th[w], NULL);
    free(th);
    free(wa);
    ims_progress_end(p->progress);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_slot_free);
    pthread_cond_destroy(&p->cv_slot_full);
    return st;
}

/* Finish: the stage times; features.npy and manifest.tsv from every shard in order, with the
 * manifest's lines for listed non-images, committed; then meta.json (last: it marks the store
 * complete), with the counts of all of ds. t_start is when the job began (listing included). */
static imgsim_status extract_finish(pipeline *p, store_out *o, const ims_dataset *ds, const char *input_desc,
                                    double t_start, double infer_s, double write_s, imgsim_extract_stats *s,
                                    ims_err *e) {
    for (int w = 0; w < p->n_workers; w++) s->seconds_decode_busy += p->busy[w];
    s->seconds_infer_busy = infer_s;
    s->gpu_decoded = p->gpu_decoded;
    s->seconds_gpu_decode = p->gpu_s;
    s->seconds_wait_workers = p->wait_s;
    if (p->gpu_mode)
        ims_log_debug("consumer: GPU decode %.3f s, CPU fallback %.3f s, uploads %.3f s, submit %.3f s, rest %.3f s",
                     p->t_feed[0], p->t_feed[1], p->t_feed[2], p->t_feed[3],
                     p->gpu_s - p->t_feed[0] - p->t_feed[1] - p->t_feed[2] - p->t_feed[3]);
    if (p->gpu_mode) s->seconds_gpu_init = ims_gpu_decode_join(p->gpu);
    double tw = ims_now();
    imgsim_status st = ims_shards_assemble(o->sh, &o->w, &s->ok, &s->failed, e);
    for (size_t i = 0; i < ds->n_skipped && !st; i++) { /* listed files that are not images */
        char *why = ims_strdup(ds->skipped[i].reason);
        if (why) tsv_clean(why);
        st = ims_store_writer_linef(&o->w, e, "-1\t%s\t\tskipped\t%s", ds->skipped[i].rel, why ? why : "not an image");
        free(why);
    }
    if (!st && !(st = ims_atomic_open(&o->inputs, o->inputs_path, e))) {
        o->inputs.durable = p->opt->durable;
        char(*hex)[65] = NULL;
        if (p->opt->hash && !(hex = ims_calloc(ds->n ? ds->n : 1, sizeof *hex)))
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory for %zu content hashes", ds->n);
        if (hex) ims_inputs_hash(hex, ds, ims_shards_stamps(o->sh), p->opt->workers);
        if (!st) st = ims_inputs_write(o->inputs.f, ds, ims_shards_stamps(o->sh), (const char(*)[65])hex, e);
        free(hex);
    }
    ims_store_files files; /* what meta.json vouches for: checked when the store is opened */
    if (!st) st = ims_store_writer_commit(&o->w, &files, e);
    if (!st && (st = ims_atomic_commit(&o->inputs, e))) free(files.shards);
    if (st) return st;
    s->seconds_write = write_s + (ims_now() - tw);
    s->seconds_total = ims_now() - t_start;
    s->images_per_s = s->seconds_total > 0 ? (double)s->ok / s->seconds_total : 0;
    char fp[65];
    ims_dataset_fingerprint(ds, fp, e);
    st = ims_extract_write_meta(o->meta_path, p->eng, p->opt, p->B, p->gpu_mode ? p->cpu_share : -1, input_desc,
                                fp, s, &files, e);
    free(files.shards);
    return st;
}

/* A part's stats: its own items (ok and failed from their results), this call's times. */
static void part_stats(const pipeline *p, double t_start, double infer_s, double write_s, imgsim_extract_stats *s) {
    s->inputs = p->n_items;
    s->skipped = 0;
    for (int64_t i = 0; i < p->n_items; i++) {
        if (p->res[i].st == IMGSIM_OK) s->ok++;
        else s->failed++;
    }
    for (int w = 0; w < p->n_workers; w++) s->seconds_decode_busy += p->busy[w];
    s->seconds_infer_busy = infer_s;
    s->seconds_write = write_s;
    s->gpu_decoded = p->gpu_decoded;
    s->seconds_gpu_decode = p->gpu_s;
    s->seconds_wait_workers = p->wait_s;
    s->seconds_total = ims_now() - t_start;
    s->images_per_s = s->seconds_total > 0 ? (double)s->ok / s->seconds_total : 0;
}

imgsim_status ims_extract_dataset(imgsim_engine *eng, const ims_dataset *ds, const char *input_desc,
                                 const char *store_dir, const imgsim_extract_opts *opt, double list_seconds,
                                 imgsim_extract_stats *stats, ims_err *e) {
    if (opt->update && (opt->part || opt->locked))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "%s: an update is not shared between processes", store_dir);
    if (opt->update) return ims_extract_update(eng, ds, input_desc, store_dir, opt, list_seconds, stats, e);
    double t_start = ims_now() - list_seconds;
    imgsim_extract_stats s = {0};
    s.seconds_list = list_seconds;
    s.inputs = (int64_t)ds->n;
    s.skipped = (int64_t)ds->n_skipped;
    /* one writer at a time (a second fails at once, naming the first); leftovers of a killed one
     * go. A part of a shared extraction, or a caller holding the lock, takes none. */
    ims_dir_lock *lock = NULL;
    imgsim_status st = opt->part || opt->locked ? IMGSIM_OK : ims_dir_lock_take(&lock, store_dir, e);
    if (st) return st;
    store_out o;
    pipeline p;
    if (!(st = store_begin(&o, store_dir, eng, ds, opt, e)) && opt->join && ims_shards_todo(o.sh)->n > 0) {
        const ims_dataset *left = ims_shards_todo(o.sh);
        st = ims_fail(e, IMGSIM_ERR_IO, "%s/shards: %lld of %lld shards are missing or incomplete (%zu images, the "
                      "first %s): a part of the job did not write them, or wrote them where this process does not "
                      "see them (not a shared file system?)", store_dir,
                      (long long)(ims_shards_total(o.sh) - ims_shards_done(o.sh)), (long long)ims_shards_total(o.sh),
                      left->n, left->items[0].rel);
    }
    if (st || (st = pipeline_setup(&p, eng, ims_shards_todo(o.sh), o.sh, opt, e))) {
        store_end(&o, 1);
        ims_dir_lock_release(lock);
        return st;
    }
    double infer_s = 0, write_s = 0;
    st = pipeline_run(&p, t_start + list_seconds, &s, &infer_s, &write_s, e);
    if (!st && !opt->part) st = extract_finish(&p, &o, ds, input_desc, t_start, infer_s, write_s, &s, e);
    if (!st && opt->part) part_stats(&p, t_start, infer_s, write_s, &s);
    if (p.gpu_mode) ims_gpu_decode_join(p.gpu);
    if (opt->part) { /* the shards stay for the coordinator to join */
        ims_shards_free(o.sh);
        o.sh = NULL;
    }
    store_end(&o, st != IMGSIM_OK);
    pipeline_free(&p); /* (the engine's decoder set keeps the decoders for its next job) */
    ims_dir_lock_release(lock);
    if (stats) *stats = s;
    return st;
}

imgsim_status imgsim_extract(imgsim_engine *eng, const char *model_path, const char *input, const char *store_dir,
                             const imgsim_extract_opts *opt, imgsim_extract_stats *stats) {
    if (!eng || !input || !store_dir)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_extract: NULL argument");
    imgsim_extract_opts def;
    if (!opt) {
        imgsim_extract_opts_init(&def);
        opt = &def;
    }
    if (model_path && !eng->model_path) eng->model_path = ims_strdup(model_path);
    double t0 = ims_now();
    ims_dataset *ds = NULL;
    imgsim_status st = ims_dataset_open(&ds, input, &eng->err);
    if (st) return ims_fail_copy(NULL, &eng->err, st);
    double tl = ims_now() - t0;
    for (size_t i = 0; i < ds->n_skipped; i++)
        ims_log_warn("skipped %s: %s", ds->skipped[i].path, ds->skipped[i].reason);
    imgsim_extract_stats s;
    st = ims_extract_dataset(eng, ds, input, store_dir, opt, tl, &s, &eng->err);
    ims_dataset_free(ds);
    if (stats) *stats = s;
    if (st) ims_fail_copy(NULL, &eng->err, st);
    return st;
}

/* ---- one extraction shared by several processes ------------------------------------------------ */

imgsim_status imgsim_extract_plan(imgsim_shard_plan *plan, imgsim_engine *eng, const imgsim_dataset *dataset,
                                  const char *store_dir, const imgsim_extract_opts *opt) {
    if (!plan || !eng || !dataset || !store_dir)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_extract_plan: NULL argument");
    memset(plan, 0, sizeof *plan);
    imgsim_extract_opts def;
    if (!opt) {
        imgsim_extract_opts_init(&def);
        opt = &def;
    }
    const ims_dataset *ds = dataset->d;
    ims_err *e = &eng->err;
    imgsim_status st = IMGSIM_OK;
    if (opt->part || opt->update)
        st = ims_fail(e, IMGSIM_ERR_INVALID_ARG, "imgsim_extract_plan: opt->part and opt->update must be unset");
    store_out o;
    memset(&o, 0, sizeof o);
    imgsim_extract_opts whole = *opt;
    if (!st) st = store_begin(&o, store_dir, eng, ds, &whole, e);
    if (!st) {
        plan->n_shards = ims_shards_total(o.sh);
        plan->shard_size = ims_shards_size(o.sh);
        plan->n_done = ims_shards_done(o.sh);
        plan->done = ims_calloc((size_t)plan->n_shards + 1, 1);
        plan->bytes = ims_calloc((size_t)plan->n_shards + 1, sizeof(int64_t));
        if (!plan->done || !plan->bytes) st = ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
        for (int64_t k = 0; !st && k < plan->n_shards; k++) {
            plan->done[k] = (uint8_t)ims_shards_is_done(o.sh, k);
            plan->bytes[k] = ims_shards_bytes(o.sh, k);
        }
    }
    ims_shards_free(o.sh); /* the shards stay: the parts write into them */
    o.sh = NULL;
    store_end(&o, 0);
    if (st) {
        imgsim_shard_plan_free(plan);
        ims_fail_copy(NULL, e, st);
    }
    return st;
}

void imgsim_shard_plan_free(imgsim_shard_plan *plan) {
    if (!plan) return;
    free(plan->done);
    free(plan->bytes);
    memset(plan, 0, sizeof *plan);
}

/* the shards to assign, largest first (ties: lower shard first) */
static int cmp_bytes_desc(const void *a, const void *b, void *ctx) {
    const int64_t *bytes = ctx, x = *(const int64_t *)a, y = *(const int64_t *)b;
    if (bytes[x] != bytes[y]) return bytes[x] > bytes[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

imgsim_status imgsim_shard_assign(int *owner, const imgsim_shard_plan *plan, int parts) {
    if (!owner || !plan || parts < 1 || (plan->n_shards > 0 && (!plan->done || !plan->bytes)))
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_shard_assign: bad argument");
    int64_t n = plan->n_shards, m = 0;
    int64_t *order = ims_malloc_array((size_t)n + 1, sizeof(int64_t));
    int64_t *load = ims_calloc((size_t)parts, sizeof(int64_t)), *cnt = ims_calloc((size_t)parts, sizeof(int64_t));
    if (!order || !load || !cnt) {
        free(order), free(load), free(cnt);
        return ims_fail(NULL, IMGSIM_ERR_NOMEM, "out of memory for %lld shards", (long long)n);
    }
    for (int64_t k = 0; k < n; k++) {
        owner[k] = -1;
        if (!plan->done[k]) order[m++] = k;
    }
    qsort_r(order, (size_t)m, sizeof *order, cmp_bytes_desc, plan->bytes);
    /* longest processing time first: each shard to the part with the fewest bytes so far (ties:
     * fewer shards, then the lower part), so every part gets about the same bytes to decode */
    for (int64_t i = 0; i < m; i++) {
        int best = 0;
        for (int r = 1; r < parts; r++)
            if (load[r] < load[best] || (load[r] == load[best] && cnt[r] < cnt[best])) best = r;
        owner[order[i]] = best;
        load[best] += plan->bytes[order[i]];
        cnt[best]++;
    }
    free(order), free(load), free(cnt);
    return IMGSIM_OK;
}
