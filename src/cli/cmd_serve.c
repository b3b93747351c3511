/*
 * cmd_serve.c: imgsim serve: loads an engine and a gallery store once, then answers similarity
 * queries over HTTP (libmicrohttpd; no HTTP parsing here).
 *
 *   POST /search   image as the raw body or a multipart/form-data file field; ?k=&threshold=
 *                  (or form fields) -> JSON top-k: rank, row, path, label, score, thumbnail URL
 *   POST /embed    same upload -> JSON feature vector
 *   GET  /health   liveness and what is loaded; GET /stats: counters, latency percentiles,
 *                  batch sizes; GET /: a page to drop or pick an image and see its matches
 *   GET  /thumb?path=P  a JPEG thumbnail of P, only when P is one of the gallery's own paths
 *                  (an allow-list lookup: anything else, traversal included, is 404)
 *
 * Threads: libmicrohttpd runs one thread per connection (bounded by --connections); each decodes
 * and preprocesses its own upload, then queues it for the batcher thread, which takes up to the
 * engine's batch size of queued images, waiting at most --batch-window-ms for a batch to fill,
 * runs the engine and one exact search for the whole batch, and wakes the waiting requests. A
 * full queue (--queue) answers 503 at once; a request not answered in --timeout seconds gets 504.
 * Bad uploads get a 4xx whose JSON names the reason; the server keeps serving. The engine runs on
 * --device; each batch's exact search runs on the CPU against the gallery held in memory (a CUDA
 * search call would upload the gallery again per batch). SIGTERM or SIGINT:
 * the listening socket closes, queued requests are answered 503, and the process exits.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"
#include "cli/pages.h"

static const char usage[] =
    "imgsim serve --gallery=STORE [--model=M.onnx] [--port=8080] [--bind=127.0.0.1]\n"
    "             [--device=cpu|cuda[:N]] [--precision=...] [--batch-size=N] [--threads=N]\n"
    "             [--batch-window-ms=2] [--queue=256] [--timeout=30] [--max-upload=BYTES]\n"
    "             [--max-pixels=N] [--connections=256] [--thumb-size=160] [--quiet]\n"
    "  a similarity-search service over HTTP: POST /search, POST /embed (image body or multipart\n"
    "  upload), GET /health, GET /stats, GET / (a page to query from a browser).\n"
    "  --port=0 picks a free port; the chosen address is printed as 'listening on http://...'.\n"
    "  --batch-size: most images run at once; --batch-window-ms: how long a batch waits to fill;\n"
    "  --queue: images waiting beyond which requests get 503; --timeout: seconds until 504;\n"
    "  --max-upload: request body limit (default 33554432); binds 127.0.0.1 unless --bind says.";

#ifndef IMGSIM_HAVE_MHD

int cmd_serve(int argc, char **argv) {
    cli_args a;
    int started = cli_start(&a, argc, argv, NULL, usage);
    if (started >= 0) return started;
    cli_free(&a);
    fprintf(stderr, "imgsim serve: this imgsim was built without libmicrohttpd, so it has no HTTP server; "
                    "install libmicrohttpd-dev (scripts/install-deps.sh) and rebuild\n");
    return 1;
}

#else

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define MAX_K 1000
#define LAT_RING 8192 /* latencies kept for the percentiles */

/* ---- the batcher ------------------------------------------------------------------------- */

typedef enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE } job_state;

/* One image waiting for the engine. Owned by its request, except while RUNNING after the request
 * gave up (abandoned): then the batcher frees it. */
typedef struct job {
    struct job *prev, *next; /* queue links */
    float *input;            /* [3, H, W] preprocessed */
    float *feat;             /* [dim] */
    int64_t *idx;            /* [k] */
    float *score;            /* [k] */
    int k;                   /* 0: embed only */
    job_state state;
    int abandoned;
    imgsim_status status;
    char err[256];
    int batch_size; /* the batch it ran in */
} job;

typedef struct server {
    gview g;
    imgsim_engine *eng;
    imgsim_engine_info ei;
    imgsim_search_opts so;
    imgsim_preprocess_opts pre;
    size_t max_upload;
    int queue_max, timeout_s, window_us, thumb_size;
    /* queue */
    pthread_mutex_t mu;
    pthread_cond_t work;  /* batcher waits for jobs */
    pthread_cond_t done;  /* requests wait for their job */
    job *head, *tail;
    int queued;
    int stopping;
    pthread_t batcher;
    /* batch buffers (batcher only) */
    float *in_buf, *feat_buf;
    int64_t *idx_buf;
    float *score_buf;
    int kcap;
    /* stats (under mu) */
    uint64_t n_search, n_embed, n_thumb, n_other, n_2xx, n_4xx, n_5xx, n_503;
    uint64_t n_batches, n_batched_images;
    uint64_t *batch_hist; /* [max_batch + 1] */
    double lat_ms[LAT_RING];
    uint64_t n_lat;
    double t_start;
    /* path allow-list: open addressing over paths -> row */
    int64_t *slots;
    size_t nslots;
    /* thumbnail cache (under thumb_mu), bounded by bytes */
    pthread_mutex_t thumb_mu;
    unsigned char **thumb;
    size_t *thumb_len;
    size_t thumb_bytes, thumb_budget;
} server;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void q_push(server *s, job *j) {
    j->prev = s->tail;
    j->next = NULL;
    if (s->tail) s->tail->next = j;
    else s->head = j;
    s->tail = j;
    s->queued++;
}

static void q_remove(server *s, job *j) {
    if (j->prev) j->prev->next = j->next;
    else s->head = j->next;
    if (j->next) j->next->prev = j->prev;
    else s->tail = j->prev;
    j->prev = j->next = NULL;
    s->queued--;
}

static void job_free(job *j) {
    if (!j) return;
    free(j->input);
    free(j->feat);
    free(j->idx);
    free(j->score);
    free(j);
}

/* Runs the engine and the search on n jobs taken from the queue (unlocked). */
static void run_batch(server *s, job **jobs, int n) {
    size_t in_sz = (size_t)3 * s->pre.height * s->pre.width;
    int dim = s->ei.dim, kmax = 0;
    for (int i = 0; i < n; i++) {
        memcpy(s->in_buf + (size_t)i * in_sz, jobs[i]->input, in_sz * sizeof(float));
        if (jobs[i]->k > kmax) kmax = jobs[i]->k;
    }
    imgsim_status st = imgsim_engine_run(s->eng, s->in_buf, n, s->feat_buf);
    char err[256] = "";
    if (st != IMGSIM_OK) snprintf(err, sizeof err, "engine: %s", imgsim_last_error());
    if (st == IMGSIM_OK && kmax > 0) {
        st = imgsim_search(s->idx_buf, s->score_buf, s->g.features, s->g.n, s->feat_buf, n, dim, IMGSIM_F32, kmax, &s->so);
        if (st != IMGSIM_OK) snprintf(err, sizeof err, "search: %s", imgsim_last_error());
    }
    for (int i = 0; i < n; i++) {
        job *j = jobs[i];
        j->status = st;
        j->batch_size = n;
        if (st != IMGSIM_OK) {
            snprintf(j->err, sizeof j->err, "%s", err);
            continue;
        }
        memcpy(j->feat, s->feat_buf + (size_t)i * dim, (size_t)dim * sizeof(float));
        for (int r = 0; r < j->k; r++) {
            j->idx[r] = s->idx_buf[(size_t)i * kmax + r];
            j->score[r] = s->score_buf[(size_t)i * kmax + r];
        }
    }
}

static void *batcher_main(void *arg) {
    server *s = arg;
    int maxb = s->ei.max_batch;
    job **jobs = calloc((size_t)maxb, sizeof *jobs);
    pthread_mutex_lock(&s->mu);
    while (jobs) {
        while (!s->queued && !s->stopping) pthread_cond_wait(&s->work, &s->mu);
        if (s->stopping) break;
        if (s->queued < maxb && s->window_us > 0) { /* let the batch fill for a moment */
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            long ns = dl.tv_nsec + (long)s->window_us * 1000L;
            dl.tv_sec += ns / 1000000000L;
            dl.tv_nsec = ns % 1000000000L;
            while (s->queued && s->queued < maxb && !s->stopping)
                if (pthread_cond_timedwait(&s->work, &s->mu, &dl) == ETIMEDOUT) break;
            if (s->stopping) break;
            if (!s->queued) continue; /* all timed out meanwhile */
        }
        int n = 0;
        while (s->head && n < maxb) {
            job *j = s->head;
            q_remove(s, j);
            j->state = JOB_RUNNING;
            jobs[n++] = j;
        }
        pthread_mutex_unlock(&s->mu);
        run_batch(s, jobs, n);
        pthread_mutex_lock(&s->mu);
        s->n_batches++;
        s->n_batched_images += (uint64_t)n;
        s->batch_hist[n]++;
        for (int i = 0; i < n; i++) {
            if (jobs[i]->abandoned) job_free(jobs[i]);
            else jobs[i]->state = JOB_DONE;
        }
        pthread_cond_broadcast(&s->done);
    }
    /* shutting down: whatever is still queued is answered by its request (stopping is set) */
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->mu);
    free(jobs);
    return NULL;
}

/* ---- requests ---------------------------------------------------------------------------- */

typedef enum route { R_SEARCH, R_EMBED } route;

/* Per-connection upload state (MHD's *con_cls). */
typedef struct req {
    route rt;
    sbuf body;                    /* the image (raw body, or the multipart file field) */
    struct MHD_PostProcessor *pp; /* multipart/form-data */
    int too_large, got_file, bad_multipart;
    char field_k[32], field_thr[64], file_key[64];
    double t0;
    job *j;
} req;

static void stat_response(server *s, unsigned code) {
    pthread_mutex_lock(&s->mu);
    if (code < 300) s->n_2xx++;
    else if (code < 500) s->n_4xx++;
    else s->n_5xx++;
    if (code == 503) s->n_503++;
    pthread_mutex_unlock(&s->mu);
}

/* Queues body (malloc'ed or static per how) with content type and status; returns MHD's result. */
static enum MHD_Result respond(server *s, struct MHD_Connection *c, unsigned code, const char *type, void *body,
                               size_t len, enum MHD_ResponseMemoryMode how, const char *extra_hdr,
                               const char *extra_val) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, how);
    if (!r) {
        if (how == MHD_RESPMEM_MUST_FREE) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", extra_hdr && !strcmp(extra_hdr, "Cache-Control") ? extra_val : "no-store");
    if (extra_hdr && strcmp(extra_hdr, "Cache-Control") != 0) MHD_add_response_header(r, extra_hdr, extra_val);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    stat_response(s, code);
    return ret;
}

static enum MHD_Result respond_sb(server *s, struct MHD_Connection *c, unsigned code, sbuf *b) {
    if (b->oom) {
        sb_free(b);
        static char oom[] = "{\"error\": \"out of memory\"}\n";
        return respond(s, c, 500, "application/json", oom, sizeof oom - 1, MHD_RESPMEM_PERSISTENT, NULL, NULL);
    }
    char *p = b->p ? b->p : strdup("");
    size_t n = b->n;
    b->p = NULL;
    sb_free(b);
    return respond(s, c, code, "application/json", p, n, MHD_RESPMEM_MUST_FREE, NULL, NULL);
}

/* A JSON error {"error": msg, "status": code}. */
static enum MHD_Result respond_err(server *s, struct MHD_Connection *c, unsigned code, const char *msg) {
    sbuf b = {0};
    sb_puts(&b, "{\"error\": ");
    sb_json_str(&b, msg);
    sb_printf(&b, ", \"status\": %u}\n", code);
    if (code == 503) {
        if (b.oom) return respond_sb(s, c, code, &b);
        char *p = b.p;
        size_t n = b.n;
        b.p = NULL;
        return respond(s, c, code, "application/json", p, n, MHD_RESPMEM_MUST_FREE, "Retry-After", "1");
    }
    return respond_sb(s, c, code, &b);
}

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                 const char *content_type, const char *transfer_encoding, const char *data,
                                 uint64_t off, size_t size) {
    req *q = cls;
    (void)kind, (void)content_type, (void)transfer_encoding, (void)off;
    if (filename || (key && (!strcmp(key, "image") || !strcmp(key, "file")))) {
        /* the first file field is the image (its size is checked against --max-upload by the caller) */
        if (!q->got_file) snprintf(q->file_key, sizeof q->file_key, "%s", key ? key : "");
        else if (strcmp(q->file_key, key ? key : "") != 0) return MHD_YES;
        q->got_file = 1;
        sb_put(&q->body, data, size);
        return MHD_YES;
    }
    if (key && !strcmp(key, "k") && off + size < sizeof q->field_k) memcpy(q->field_k + off, data, size);
    if (key && !strcmp(key, "threshold") && off + size < sizeof q->field_thr) memcpy(q->field_thr + off, data, size);
    return MHD_YES;
}

/* Status code for a failed preprocessing of an upload. */
static unsigned upload_code(imgsim_status st) {
    switch (st) {
    case IMGSIM_ERR_TOO_LARGE: return 413;
    case IMGSIM_ERR_UNSUPPORTED: return 415;
    case IMGSIM_ERR_FORMAT:
    case IMGSIM_ERR_INVALID_ARG: return 400;
    default: return 500;
    }
}

/* Parses an integer or number parameter (query string first, then the form field). */
static const char *param(struct MHD_Connection *c, const char *name, const char *field) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (v) return v;
    return field && *field ? field : NULL;
}

static void record_latency(server *s, double ms) {
    pthread_mutex_lock(&s->mu);
    s->lat_ms[s->n_lat % LAT_RING] = ms;
    s->n_lat++;
    pthread_mutex_unlock(&s->mu);
}

/* Decodes the upload, queues it, waits for the batcher and answers. */
static enum MHD_Result finish_upload(server *s, struct MHD_Connection *c, req *q) {
    if (q->too_large) {
        char m[160];
        snprintf(m, sizeof m, "upload too large: over the %zu-byte limit (--max-upload)", s->max_upload);
        return respond_err(s, c, 413, m);
    }
    int k = 0;
    double thr = -INFINITY;
    if (q->rt == R_SEARCH) {
        const char *ks = param(c, "k", q->field_k), *ts = param(c, "threshold", q->field_thr);
        k = 5;
        if (ks) {
            char *end;
            long v = strtol(ks, &end, 10);
            if (end == ks || *end || v < 1 || v > MAX_K) {
                char m[128];
                snprintf(m, sizeof m, "bad k '%.40s': expected an integer from 1 to %d", ks, MAX_K);
                return respond_err(s, c, 400, m);
            }
            k = (int)v;
        }
        if (ts) {
            char *end;
            thr = strtod(ts, &end);
            if (end == ts || *end || isnan(thr)) {
                char m[128];
                snprintf(m, sizeof m, "bad threshold '%.40s': expected a number", ts);
                return respond_err(s, c, 400, m);
            }
        }
        if (k > s->kcap) k = s->kcap;
    }
    if (q->body.oom) return respond_err(s, c, 500, "out of memory holding the upload");
    if (q->bad_multipart) return respond_err(s, c, 400, "malformed multipart/form-data body");
    if (q->pp && !q->got_file)
        return respond_err(s, c, 400, "multipart upload without a file field: send the image as a file (field 'image')");
    if (q->body.n == 0)
        return respond_err(s, c, 400, "empty upload: send a JPEG, PNG or WebP image as the request body or as a "
                                      "multipart file field");

    job *j = calloc(1, sizeof *j);
    size_t in_sz = (size_t)3 * s->pre.height * s->pre.width;
    if (j) {
        j->input = malloc(in_sz * sizeof(float));
        j->feat = malloc((size_t)s->ei.dim * sizeof(float));
        j->idx = malloc((size_t)(k ? k : 1) * sizeof(int64_t));
        j->score = malloc((size_t)(k ? k : 1) * sizeof(float));
        j->k = k;
    }
    if (!j || !j->input || !j->feat || !j->idx || !j->score) {
        job_free(j);
        return respond_err(s, c, 500, "out of memory");
    }
    imgsim_status st = imgsim_preprocess_mem(j->input, q->body.p, q->body.n, &s->pre);
    sb_free(&q->body);
    if (st != IMGSIM_OK) {
        job_free(j);
        char m[400];
        const char *why = imgsim_last_error();
        if (!strncmp(why, "<memory>: ", 10)) why += 10;
        snprintf(m, sizeof m, "bad image upload: %s", why);
        return respond_err(s, c, upload_code(st), m);
    }

    /* queue and wait */
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        return respond_err(s, c, 503, "shutting down");
    }
    if (s->queued >= s->queue_max) {
        int qn = s->queued;
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        char m[128];
        snprintf(m, sizeof m, "busy: %d images already queued (--queue); retry later", qn);
        return respond_err(s, c, 503, m);
    }
    j->state = JOB_QUEUED;
    q_push(s, j);
    pthread_cond_signal(&s->work);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += s->timeout_s;
    int timed_out = 0;
    while (j->state != JOB_DONE && !(s->stopping && j->state == JOB_QUEUED)) {
        if (pthread_cond_timedwait(&s->done, &s->mu, &dl) == ETIMEDOUT) {
            timed_out = j->state != JOB_DONE;
            break;
        }
    }
    if (j->state != JOB_DONE) {
        if (j->state == JOB_QUEUED) {
            q_remove(s, j);
            pthread_mutex_unlock(&s->mu);
            job_free(j);
        } else { /* running: the batcher frees it */
            j->abandoned = 1;
            pthread_mutex_unlock(&s->mu);
        }
        if (timed_out) {
            char m[128];
            snprintf(m, sizeof m, "timed out after %d s waiting for the engine (--timeout)", s->timeout_s);
            return respond_err(s, c, 504, m);
        }
        return respond_err(s, c, 503, "shutting down");
    }
    pthread_mutex_unlock(&s->mu);
    if (j->status != IMGSIM_OK) {
        enum MHD_Result r = respond_err(s, c, 500, j->err);
        job_free(j);
        return r;
    }

    sbuf b = {0};
    double ms = (now_s() - q->t0) * 1e3;
    if (q->rt == R_EMBED) {
        sb_printf(&b, "{\"dim\": %d, \"batch_size\": %d, \"embedding\": [", s->ei.dim, j->batch_size);
        for (int d = 0; d < s->ei.dim; d++) sb_printf(&b, "%s%.9g", d ? ", " : "", (double)j->feat[d]);
        sb_puts(&b, "]}\n");
    } else {
        sb_printf(&b, "{\"k\": %d, \"gallery\": %lld, \"batch_size\": %d, \"matches\": [", k, (long long)s->g.n,
                  j->batch_size);
        int first = 1;
        for (int r = 0; r < k; r++) {
            int64_t row = j->idx[r];
            if (row < 0 || (double)j->score[r] < thr) continue;
            sb_printf(&b, "%s\n  {\"rank\": %d, \"row\": %lld, \"path\": ", first ? "" : ",", r + 1, (long long)row);
            sb_json_str(&b, s->g.paths[row]);
            sb_puts(&b, ", \"label\": ");
            sb_json_str(&b, s->g.labels[row]);
            sb_printf(&b, ", \"score\": %.9g, \"thumb\": \"/thumb?path=", (double)j->score[r]);
            sb_url(&b, s->g.paths[row]);
            sb_puts(&b, "\"}");
            first = 0;
        }
        sb_puts(&b, "]}\n");
    }
    job_free(j);
    record_latency(s, ms);
    return respond_sb(s, c, 200, &b);
}

/* ---- GET routes -------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static enum MHD_Result get_stats(server *s, struct MHD_Connection *c) {
    sbuf b = {0};
    pthread_mutex_lock(&s->mu);
    size_t nl = s->n_lat < LAT_RING ? (size_t)s->n_lat : LAT_RING;
    double *lat = malloc((nl ? nl : 1) * sizeof *lat);
    if (lat) memcpy(lat, s->lat_ms, nl * sizeof *lat);
    sb_printf(&b,
              "{\"uptime_s\": %.3f, \"requests\": {\"search\": %llu, \"embed\": %llu, \"thumb\": %llu, \"other\": %llu},\n"
              " \"responses\": {\"2xx\": %llu, \"4xx\": %llu, \"5xx\": %llu, \"503\": %llu},\n"
              " \"queue\": {\"waiting\": %d, \"max\": %d},\n"
              " \"batches\": {\"count\": %llu, \"images\": %llu, \"mean_size\": %.3f, \"max_size\": %d, \"sizes\": {",
              now_s() - s->t_start, (unsigned long long)s->n_search, (unsigned long long)s->n_embed,
              (unsigned long long)s->n_thumb, (unsigned long long)s->n_other, (unsigned long long)s->n_2xx,
              (unsigned long long)s->n_4xx, (unsigned long long)s->n_5xx, (unsigned long long)s->n_503, s->queued,
              s->queue_max, (unsigned long long)s->n_batches, (unsigned long long)s->n_batched_images,
              s->n_batches ? (double)s->n_batched_images / (double)s->n_batches : 0.0, s->ei.max_batch);
    int first = 1;
    for (int i = 1; i <= s->ei.max_batch; i++) {
        if (!s->batch_hist[i]) continue;
        sb_printf(&b, "%s\"%d\": %llu", first ? "" : ", ", i, (unsigned long long)s->batch_hist[i]);
        first = 0;
    }
    uint64_t total_lat = s->n_lat;
    pthread_mutex_unlock(&s->mu);
    sb_puts(&b, "}},\n \"latency_ms\": {");
    if (lat && nl) {
        qsort(lat, nl, sizeof *lat, cmp_double);
        double p[] = {50, 90, 99};
        sb_printf(&b, "\"count\": %llu, \"window\": %zu", (unsigned long long)total_lat, nl);
        for (int i = 0; i < 3; i++) {
            size_t at = (size_t)ceil(p[i] / 100.0 * (double)nl);
            if (at > 0) at--;
            if (at >= nl) at = nl - 1;
            sb_printf(&b, ", \"p%g\": %.3f", p[i], lat[at]);
        }
        sb_printf(&b, ", \"max\": %.3f", lat[nl - 1]);
    } else {
        sb_puts(&b, "\"count\": 0");
    }
    sb_puts(&b, "}}\n");
    free(lat);
    return respond_sb(s, c, 200, &b);
}

static enum MHD_Result get_health(server *s, struct MHD_Connection *c) {
    sbuf b = {0};
    sb_printf(&b, "{\"status\": \"ok\", \"gallery\": %lld, \"dim\": %d, \"store\": ", (long long)s->g.n, s->g.dim);
    sb_json_str(&b, s->g.dir);
    sb_puts(&b, ", \"device\": ");
    sb_json_str(&b, s->ei.device_name);
    sb_printf(&b, ", \"precision\": \"%s\", \"max_batch\": %d, \"input\": [3, %d, %d], \"max_upload\": %zu}\n",
              imgsim_precision_str(s->ei.precision), s->ei.max_batch, s->pre.height, s->pre.width, s->max_upload);
    return respond_sb(s, c, 200, &b);
}

static uint64_t path_hash(const char *p) {
    uint64_t h = 1469598103934665603ull;
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/* The gallery row whose path is exactly p, or -1: the thumbnail allow-list. */
static int64_t path_row(const server *s, const char *p) {
    size_t m = s->nslots - 1;
    for (size_t i = path_hash(p) & m;; i = (i + 1) & m) {
        int64_t r = s->slots[i];
        if (r < 0) return -1;
        if (!strcmp(s->g.paths[r], p)) return r;
    }
}

static int build_allow_list(server *s) {
    size_t n = 16;
    while (n < (size_t)s->g.n * 2) n *= 2;
    s->slots = malloc(n * sizeof *s->slots);
    if (!s->slots) return -1;
    s->nslots = n;
    for (size_t i = 0; i < n; i++) s->slots[i] = -1;
    for (int64_t r = 0; r < s->g.n; r++) {
        size_t i = path_hash(s->g.paths[r]) & (n - 1);
        while (s->slots[i] >= 0 && strcmp(s->g.paths[s->slots[i]], s->g.paths[r]) != 0) i = (i + 1) & (n - 1);
        if (s->slots[i] < 0) s->slots[i] = r;
    }
    return 0;
}

static enum MHD_Result get_thumb(server *s, struct MHD_Connection *c) {
    const char *p = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "path");
    int64_t row = p ? path_row(s, p) : -1;
    if (row < 0) return respond_err(s, c, 404, "not found: thumbnails exist only for the gallery's own images");
    pthread_mutex_lock(&s->thumb_mu);
    unsigned char *hit = NULL;
    size_t len = 0;
    if (s->thumb[row]) {
        len = s->thumb_len[row];
        hit = malloc(len);
        if (hit) memcpy(hit, s->thumb[row], len);
    }
    pthread_mutex_unlock(&s->thumb_mu);
    if (!hit) {
        char err[300];
        char *file = pages_resolve(s->g.root, s->g.paths[row]);
        int bad = !file || pages_thumbnail(&hit, &len, file, s->thumb_size, &s->pre, err, sizeof err);
        if (!file) snprintf(err, sizeof err, "out of memory");
        free(file);
        if (bad) {
            char m[400];
            snprintf(m, sizeof m, "no thumbnail: %s", err);
            return respond_err(s, c, 404, m);
        }
        pthread_mutex_lock(&s->thumb_mu);
        if (!s->thumb[row] && s->thumb_bytes + len <= s->thumb_budget) {
            unsigned char *keep = malloc(len);
            if (keep) {
                memcpy(keep, hit, len);
                s->thumb[row] = keep;
                s->thumb_len[row] = len;
                s->thumb_bytes += len;
            }
        }
        pthread_mutex_unlock(&s->thumb_mu);
    }
    return respond(s, c, 200, "image/jpeg", hit, len, MHD_RESPMEM_MUST_FREE, "Cache-Control", "max-age=3600");
}

static void count(server *s, uint64_t *n) {
    pthread_mutex_lock(&s->mu);
    (*n)++;
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    server *s = cls;
    (void)version;
    req *q = *con_cls;
    if (!q) {
        int is_post = !strcmp(method, "POST");
        if (is_post && (!strcmp(url, "/search") || !strcmp(url, "/embed"))) {
            q = calloc(1, sizeof *q);
            if (!q) return MHD_NO;
            q->rt = url[1] == 's' ? R_SEARCH : R_EMBED;
            q->t0 = now_s();
            *con_cls = q;
            count(s, q->rt == R_SEARCH ? &s->n_search : &s->n_embed);
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > s->max_upload) {
                q->too_large = 1;
                return finish_upload(s, c, q); /* refused before the body is read */
            }
            const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
            if (ct && !strncasecmp(ct, "multipart/form-data", 19)) {
                q->pp = MHD_create_post_processor(c, 64 * 1024, post_iter, q);
                if (!q->pp) return respond_err(s, c, 400, "malformed multipart/form-data request (no boundary?)");
            }
            return MHD_YES;
        }
        if (!strcmp(method, "GET") || !strcmp(method, "HEAD")) {
            if (!strcmp(url, "/health")) return count(s, &s->n_other), get_health(s, c);
            if (!strcmp(url, "/stats")) return count(s, &s->n_other), get_stats(s, c);
            if (!strcmp(url, "/thumb")) return count(s, &s->n_thumb), get_thumb(s, c);
            count(s, &s->n_other);
            if (!strcmp(url, "/search") || !strcmp(url, "/embed"))
                return respond_err(s, c, 405, "method not allowed: POST an image here");
            if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
                struct MHD_Response *r = MHD_create_response_from_buffer(
                    cli_asset_serve_html_len, (void *)cli_asset_serve_html, MHD_RESPMEM_PERSISTENT);
                if (!r) return MHD_NO;
                MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
                MHD_add_response_header(r, "Content-Security-Policy",
                                        "default-src 'self'; img-src 'self' blob:; style-src 'unsafe-inline'; "
                                        "script-src 'unsafe-inline'");
                MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
                enum MHD_Result ret = MHD_queue_response(c, 200, r);
                MHD_destroy_response(r);
                stat_response(s, 200);
                return ret;
            }
            return respond_err(s, c, 404, "not found");
        }
        count(s, &s->n_other);
        if (!strcmp(url, "/search") || !strcmp(url, "/embed"))
            return respond_err(s, c, 405, "method not allowed: POST an image here");
        return respond_err(s, c, 404, "not found");
    }
    if (*upload_data_size) { /* body data */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (q->too_large) return MHD_YES; /* discard the rest */
        if (q->pp) {
            if (MHD_post_process(q->pp, upload_data, n) != MHD_YES) q->bad_multipart = 1;
        } else {
            sb_put(&q->body, upload_data, n);
        }
        if (q->body.n > s->max_upload) {
            q->too_large = 1;
            sb_free(&q->body);
        }
        return MHD_YES;
    }
    return finish_upload(s, c, q);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    req *q = *con_cls;
    if (!q) return;
    if (q->pp) MHD_destroy_post_processor(q->pp);
    sb_free(&q->body);
    free(q);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char m[512];
    vsnprintf(m, sizeof m, fmt, ap);
    cli_info("imgsim serve: http: %s", m);
}

/* ---- the command ------------------------------------------------------------------------- */

static void server_free(server *s) {
    if (s->thumb)
        for (int64_t i = 0; i < s->g.n; i++) free(s->thumb[i]);
    free(s->thumb);
    free(s->thumb_len);
    free(s->slots);
    free(s->batch_hist);
    free(s->in_buf);
    free(s->feat_buf);
    free(s->idx_buf);
    free(s->score_buf);
    imgsim_engine_destroy(s->eng);
    gview_free(&s->g);
}

int cmd_serve(int argc, char **argv) {
    static const char *const vals[] = {"gallery", "model", "port", "bind", "batch-window-ms", "queue", "timeout",
                                       "max-upload", "connections", "thumb-size",
                                       CLI_EXTRACT_VALUE_OPTS, NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vals, usage);
    if (started >= 0) return started;
    static server srv;
    server *s = &srv;
    memset(s, 0, sizeof *s);
    const char *gdir = cli_str(&a, "gallery", NULL), *model = cli_str(&a, "model", NULL);
    const char *bind = cli_str(&a, "bind", "127.0.0.1");
    int port = (int)cli_int(&a, "port", 8080, 0, 65535);
    s->window_us = (int)(cli_double(&a, "batch-window-ms", 2.0, 0, 10000) * 1000.0);
    s->queue_max = (int)cli_int(&a, "queue", 256, 1, 1 << 20);
    s->timeout_s = (int)cli_int(&a, "timeout", 30, 1, 86400);
    s->max_upload = (size_t)cli_u64(&a, "max-upload", (uint64_t)32 << 20);
    int conns = (int)cli_int(&a, "connections", 256, 1, 65536);
    s->thumb_size = (int)cli_int(&a, "thumb-size", 160, 16, 1024);
    imgsim_engine_opts eo;
    imgsim_extract_opts xo;
    cli_engine_opts(&a, &eo);
    cli_extract_opts(&a, &xo); /* --max-pixels, --no-exif-rotate, --fast-decode */
    const int pre_given = cli_preprocess_given(&a); /* checked against the gallery's */
    imgsim_search_opts_init(&s->so);
    /* each batch is searched on the CPU against the resident gallery: imgsim_search on CUDA would
     * upload the gallery again for every batch */
    s->so.threads = eo.threads;
    s->so.device = IMGSIM_DEVICE_CPU;
    int rc = cli_finish(&a, usage);
    if (!rc && !gdir) {
        fprintf(stderr, "imgsim serve: --gallery is required\nusage: %s\n", usage);
        rc = 2;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (!rc && inet_pton(AF_INET, bind, &sa.sin_addr) != 1) {
        fprintf(stderr, "imgsim serve: --bind=%s: expected an IPv4 address such as 127.0.0.1\n", bind);
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }

    rc = 1;
    char err[512];
    struct MHD_Daemon *d = NULL;
    int mu_init = 0;
    if (gview_open(&s->g, gdir, err, sizeof err)) {
        fprintf(stderr, "imgsim serve: %s\n", err);
        goto done;
    }
    if (s->g.n == 0) {
        fprintf(stderr, "imgsim serve: the gallery %s holds no images\n", gdir);
        goto done;
    }
    const char *mpath = model ? model : s->g.model_path;
    if (!*mpath) {
        fprintf(stderr, "imgsim serve: the gallery %s does not name its model; give --model\n", gdir);
        goto done;
    }
    if (cli_preprocess_match("serve", &xo.pre, pre_given, &s->g.pre, gdir)) goto done;
    s->pre = s->g.pre;
    s->pre.max_pixels = xo.pre.max_pixels;
    double t0 = now_s();
    imgsim_status st = imgsim_engine_load(&s->eng, mpath, *s->g.layer ? s->g.layer : NULL, &eo);
    if (st != IMGSIM_OK) {
        rc = cli_fail("serve", st);
        goto done;
    }
    imgsim_engine_get_info(s->eng, &s->ei);
    if (strcmp(s->ei.model_sha256, s->g.model_sha256) != 0) {
        fprintf(stderr, "imgsim serve: %s is not the model the gallery %s was extracted with (sha256 differs)\n", mpath,
                gdir);
        goto done;
    }
    if (s->ei.dim != s->g.dim || s->ei.in_height != s->pre.height || s->ei.in_width != s->pre.width) {
        fprintf(stderr, "imgsim serve: the model's %d-d features or %dx%d input do not match the gallery %s\n",
                s->ei.dim, s->ei.in_height, s->ei.in_width, gdir);
        goto done;
    }
    int maxb = s->ei.max_batch;
    s->kcap = s->g.n < MAX_K ? (int)s->g.n : MAX_K;
    s->in_buf = malloc((size_t)maxb * 3 * s->pre.height * s->pre.width * sizeof(float));
    s->feat_buf = malloc((size_t)maxb * s->ei.dim * sizeof(float));
    s->idx_buf = malloc((size_t)maxb * s->kcap * sizeof(int64_t));
    s->score_buf = malloc((size_t)maxb * s->kcap * sizeof(float));
    s->batch_hist = calloc((size_t)maxb + 1, sizeof *s->batch_hist);
    s->thumb = calloc((size_t)s->g.n, sizeof *s->thumb);
    s->thumb_len = calloc((size_t)s->g.n, sizeof *s->thumb_len);
    s->thumb_budget = (size_t)64 << 20;
    if (!s->in_buf || !s->feat_buf || !s->idx_buf || !s->score_buf || !s->batch_hist || !s->thumb || !s->thumb_len ||
        build_allow_list(s)) {
        fprintf(stderr, "imgsim serve: out of memory\n");
        goto done;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->thumb_mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done, NULL);
    mu_init = 1;

    /* SIGTERM/SIGINT are taken by sigwait below: blocked in every thread started from here on */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->t_start = now_s();
    if (pthread_create(&s->batcher, NULL, batcher_main, s) != 0) {
        fprintf(stderr, "imgsim serve: cannot start the batcher thread\n");
        mu_init = 2;
        goto done;
    }
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                         NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)conns,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(s->timeout_s + 30), MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, s, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "imgsim serve: cannot listen on %s:%d: %s\n", bind, port,
                errno ? strerror(errno) : "libmicrohttpd could not start");
        goto stop;
    }
    const union MHD_DaemonInfo *inf = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int bound = inf ? (int)inf->port : port;
    fprintf(stderr,
            "imgsim serve: gallery %s (%lld images, %d-d), engine %s, %s, batch up to %d; listening on "
            "http://%s:%d/ (engine ready in %.2f s)\n",
            gdir, (long long)s->g.n, s->g.dim, s->ei.device_name, imgsim_precision_str(s->ei.precision), maxb, bind,
            bound, now_s() - t0);
    fflush(stderr);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    cli_info("imgsim serve: signal %d: shutting down\n", sig);
    rc = 0;
stop:
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work);
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->batcher, NULL);
    double t_stop = now_s();
    if (d) MHD_stop_daemon(d); /* closes the socket, waits for the connection threads */
    cli_info("imgsim serve: stopped in %.3f s\n", now_s() - t_stop);
    mu_init = 2;
done:
    if (mu_init) {
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->thumb_mu);
        pthread_cond_destroy(&s->work);
        pthread_cond_destroy(&s->done);
    }
    server_free(s);
    cli_free(&a);
    return rc;
}

#endif /* IMGSIM_HAVE_MHD */
