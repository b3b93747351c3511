/*
 * engine_file.c: the CUDA engine file (imgsim's equivalent of a serialized TensorRT engine).
 *
 * Layout (all integers little-endian as written by this machine, fields written one by one so
 * that struct padding never reaches the file):
 *   "IMGSIMCE" u32 version u32 reserved
 *   key       (ims_cuda_key fields; strings as u32 length + bytes)
 *   plan      in_c in_h in_w dim elt arena_per_image ws_bytes
 *             u32 n_tensors, tensors; u32 n_steps, steps; u64 weights_bytes, weights
 *   checksum  32 bytes: SHA-256 over the SHA-256s of the 4 MiB chunks of everything above
 * Plain C with no CUDA calls: unit-tested without a GPU (tests/test_cuda_engine_file.c).
 */
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_plan.h"

#define MAX_TENSORS 100000
#define MAX_STEPS 100000
#define MAX_WEIGHTS ((uint64_t)1 << 38) /* 256 GiB: sanity bound only */

void ims_cuda_plan_free(ims_cuda_plan *p) {
    if (!p) return;
    free(p->tensors);
    free(p->steps);
    free(p->weights);
    p->tensors = NULL;
    p->steps = NULL;
    p->weights = NULL;
    p->n_tensors = p->n_steps = 0;
    p->weights_bytes = 0;
}

const char *ims_cuda_step_name(int kind) {
    static const char *names[IS_CS_COUNT] = {"input", "conv", "maxpool", "avgpool", "gap", "add", "mul",
                                             "sigmoid", "act", "concat", "flatten", "gemm", "output",
                                             "hardsigmoid", "hardswish", "affine", "shuffle",
                                             "channel slice"};
    return kind >= 0 && kind < IS_CS_COUNT ? names[kind] : "?";
}

/* ---- checksum ------------------------------------------------------------------------------ */

/* The file checksum: SHA-256 over the SHA-256 digests of consecutive 4 MiB chunks (a one-level
 * hash tree), so that the chunks can be hashed on all cores: loading a ResNet-50 engine file is
 * then bounded by reading it, not by one core hashing it. */
#define CHUNK ((size_t)4 << 20)

typedef struct tree_ctx {
    const uint8_t *p;
    size_t len;
    uint8_t (*dig)[32];
} tree_ctx;

static void hash_chunk(void *ctx, int64_t i, int worker) {
    (void)worker;
    tree_ctx *t = ctx;
    size_t off = (size_t)i * CHUNK, n = t->len - off < CHUNK ? t->len - off : CHUNK;
    ims_sha256 h;
    ims_sha256_init(&h);
    ims_sha256_update(&h, t->p + off, n);
    ims_sha256_final(&h, t->dig[i]);
}

/* Writes the tree checksum of p[len] into out; returns -1 when out of memory. */
static int tree_sha256(const uint8_t *p, size_t len, uint8_t out[32]) {
    size_t n = len / CHUNK + 1;
    tree_ctx t = {p, len, ims_malloc_array(n, 32)};
    if (!t.dig) return -1;
    ims_pool *pool = NULL;
    if (n > 1 && ims_pool_create(&pool, n < 16 ? (int)n : 0, NULL) == IMGSIM_OK) {
        ims_pool_for(pool, (int64_t)n, hash_chunk, &t);
        ims_pool_destroy(pool);
    } else {
        for (size_t i = 0; i < n; i++) hash_chunk(&t, (int64_t)i, 0);
    }
    ims_sha256 h;
    ims_sha256_init(&h);
    ims_sha256_update(&h, "imgsim-engine-tree", 18);
    ims_sha256_update(&h, t.dig, n * 32);
    ims_sha256_final(&h, out);
    free(t.dig);
    return 0;
}

/* ---- writer ---------------------------------------------------------------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

/* Appends n bytes, growing the buffer geometrically. */
static void put(wbuf *w, const void *src, size_t n) {
    if (w->oom) return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) cap *= 2;
        uint8_t *q = ims_realloc(w->p, cap);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->p = q;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}
static void put_i32(wbuf *w, int32_t v) { put(w, &v, 4); }
static void put_i64(wbuf *w, int64_t v) { put(w, &v, 8); }
static void put_f32(wbuf *w, float v) { put(w, &v, 4); }
static void put_str(wbuf *w, const char *s) {
    uint32_t n = (uint32_t)strlen(s);
    put(w, &n, 4);
    put(w, s, n);
}

/* ---- reader ---------------------------------------------------------------------------- */

typedef struct rbuf {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} rbuf;

static void get(rbuf *r, void *dst, size_t n) {
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, r->p + r->pos, n);
    r->pos += n;
}
static int32_t get_i32(rbuf *r) {
    int32_t v;
    get(r, &v, 4);
    return v;
}
static int64_t get_i64(rbuf *r) {
    int64_t v;
    get(r, &v, 8);
    return v;
}
static float get_f32(rbuf *r) {
    float v;
    get(r, &v, 4);
    return v;
}
/* Reads a length-prefixed string into dst[cap] (refusing strings that do not fit). */
static void get_str(rbuf *r, char *dst, size_t cap) {
    uint32_t n = 0;
    get(r, &n, 4);
    if (r->bad || n >= cap || n > r->len - r->pos) {
        r->bad = 1;
        dst[0] = 0;
        return;
    }
    memcpy(dst, r->p + r->pos, n);
    dst[n] = 0;
    r->pos += n;
}

/* ---- key ------------------------------------------------------------------------------- */

static void put_key(wbuf *w, const ims_cuda_key *k) {
    put_i32(w, k->format_version);
    put_str(w, k->model_sha256);
    put_str(w, k->layer);
    put_i32(w, k->in_c);
    put_i32(w, k->in_h);
    put_i32(w, k->in_w);
    put_str(w, k->gpu_name);
    put_i32(w, k->cc_major);
    put_i32(w, k->cc_minor);
    put_i32(w, k->driver_version);
    put_i32(w, k->runtime_version);
    put_i64(w, k->cudnn_version);
    put_i64(w, k->cublas_version);
    put_i32(w, k->precision);
    put_i32(w, k->max_batch);
}

static void get_key(rbuf *r, ims_cuda_key *k) {
    memset(k, 0, sizeof *k);
    k->format_version = get_i32(r);
    get_str(r, k->model_sha256, sizeof k->model_sha256);
    get_str(r, k->layer, sizeof k->layer);
    k->in_c = get_i32(r);
    k->in_h = get_i32(r);
    k->in_w = get_i32(r);
    get_str(r, k->gpu_name, sizeof k->gpu_name);
    k->cc_major = get_i32(r);
    k->cc_minor = get_i32(r);
    k->driver_version = get_i32(r);
    k->runtime_version = get_i32(r);
    k->cudnn_version = get_i64(r);
    k->cublas_version = get_i64(r);
    k->precision = get_i32(r);
    k->max_batch = get_i32(r);
}

static const char *prec_name(int p) {
    return imgsim_precision_str((imgsim_precision)p);
}

int ims_cuda_key_equal(const ims_cuda_key *a, const ims_cuda_key *b, char *why, size_t n) {
    if (why && n) why[0] = 0;
#define DIFF(...)                                     \
    do {                                              \
        if (why && n) snprintf(why, n, __VA_ARGS__);  \
        return 0;                                     \
    } while (0)
    if (a->format_version != b->format_version)
        DIFF("format version %d (this imgsim writes %d)", a->format_version, b->format_version);
    if (strcmp(a->model_sha256, b->model_sha256))
        DIFF("model sha256 %.12s..., this model is %.12s...", a->model_sha256, b->model_sha256);
    if (strcmp(a->layer, b->layer)) DIFF("layer '%s', requested '%s'", a->layer, b->layer);
    if (a->in_c != b->in_c || a->in_h != b->in_h || a->in_w != b->in_w)
        DIFF("input %dx%dx%d, requested %dx%dx%d", a->in_c, a->in_h, a->in_w, b->in_c, b->in_h, b->in_w);
    if (strcmp(a->gpu_name, b->gpu_name) || a->cc_major != b->cc_major || a->cc_minor != b->cc_minor)
        DIFF("GPU '%s' (sm_%d%d), this is '%s' (sm_%d%d)", a->gpu_name, a->cc_major, a->cc_minor, b->gpu_name,
             b->cc_major, b->cc_minor);
    if (a->driver_version != b->driver_version)
        DIFF("CUDA driver %d, this is %d", a->driver_version, b->driver_version);
    if (a->runtime_version != b->runtime_version)
        DIFF("CUDA runtime %d, this is %d", a->runtime_version, b->runtime_version);
    if (a->cudnn_version != b->cudnn_version)
        DIFF("cuDNN %lld, this is %lld", (long long)a->cudnn_version, (long long)b->cudnn_version);
    if (a->cublas_version != b->cublas_version)
        DIFF("cuBLAS %lld, this is %lld", (long long)a->cublas_version, (long long)b->cublas_version);
    if (a->precision != b->precision)
        DIFF("precision %s, requested %s", prec_name(a->precision), prec_name(b->precision));
    if (a->max_batch != b->max_batch) DIFF("max batch %d, requested %d", a->max_batch, b->max_batch);
#undef DIFF
    return 1;
}

/* ---- plan ------------------------------------------------------------------------------ */

static void put_step(wbuf *w, const ims_cuda_step *s) {
    put_i32(w, s->kind);
    put_i32(w, s->in[0]);
    put_i32(w, s->in[1]);
    put_i32(w, s->out);
    int32_t geo[13] = {s->kh, s->kw, s->sh, s->sw, s->dh, s->dw, s->pt,
                       s->pl, s->pb, s->pr, s->group, s->count_include_pad, s->act};
    for (int i = 0; i < 13; i++) put_i32(w, geo[i]);
    put_f32(w, s->act_min);
    put_f32(w, s->act_max);
    put_f32(w, s->alpha);
    put_f32(w, s->beta);
    put_i64(w, s->w_off);
    put_i64(w, s->w_bytes);
    put_i64(w, s->b_off);
    put_i64(w, s->bh_off);
    put_i32(w, s->algo);
    put_i32(w, s->math);
    put_i32(w, s->fused);
    put_i64(w, s->ws_bytes);
    put_f32(w, s->tuned_ms);
    put_i32(w, s->gap);
    put_i32(w, s->coff);
}

static void get_step(rbuf *r, ims_cuda_step *s) {
    s->kind = get_i32(r);
    s->in[0] = get_i32(r);
    s->in[1] = get_i32(r);
    s->out = get_i32(r);
    int32_t geo[13];
    for (int i = 0; i < 13; i++) geo[i] = get_i32(r);
    s->kh = geo[0], s->kw = geo[1], s->sh = geo[2], s->sw = geo[3], s->dh = geo[4], s->dw = geo[5];
    s->pt = geo[6], s->pl = geo[7], s->pb = geo[8], s->pr = geo[9], s->group = geo[10];
    s->count_include_pad = geo[11], s->act = geo[12];
    s->act_min = get_f32(r);
    s->act_max = get_f32(r);
    s->alpha = get_f32(r);
    s->beta = get_f32(r);
    s->w_off = get_i64(r);
    s->w_bytes = get_i64(r);
    s->b_off = get_i64(r);
    s->bh_off = get_i64(r);
    s->algo = get_i32(r);
    s->math = get_i32(r);
    s->fused = get_i32(r);
    s->ws_bytes = get_i64(r);
    s->tuned_ms = get_f32(r);
    s->gap = get_i32(r);
    s->coff = get_i32(r);
}

imgsim_status ims_cuda_plan_serialize(const ims_cuda_plan *p, uint8_t **buf, size_t *len, ims_err *e) {
    wbuf w = {0};
    put(&w, IS_CUDA_ENGINE_MAGIC, 8);
    put_i32(&w, IS_CUDA_ENGINE_VERSION);
    put_i32(&w, 0);
    put_key(&w, &p->key);
    put_i32(&w, p->in_c);
    put_i32(&w, p->in_h);
    put_i32(&w, p->in_w);
    put_i64(&w, p->dim);
    put_i32(&w, p->elt);
    put_i64(&w, p->arena_per_image);
    put_i64(&w, p->ws_bytes);
    put_i32(&w, p->n_tensors);
    for (int i = 0; i < p->n_tensors; i++) {
        const ims_cuda_tensor *t = &p->tensors[i];
        put_i32(&w, t->c);
        put_i32(&w, t->h);
        put_i32(&w, t->w);
        put_i64(&w, t->offset);
        put_i64(&w, t->size);
    }
    put_i32(&w, p->n_steps);
    for (int i = 0; i < p->n_steps; i++) put_step(&w, &p->steps[i]);
    put_i64(&w, p->weights_bytes);
    if (p->weights_bytes) put(&w, p->weights, (size_t)p->weights_bytes);
    if (!w.oom) {
        uint8_t dig[32];
        if (tree_sha256(w.p, w.len, dig))
            w.oom = 1;
        else
            put(&w, dig, 32);
    }
    if (w.oom) {
        free(w.p);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "engine file: out of memory serialising %lld bytes of weights",
                       (long long)p->weights_bytes);
    }
    *buf = w.p;
    *len = w.len;
    return IMGSIM_OK;
}

/* Checks that every tensor index, weight range and arena slot in p lies in bounds. */
static int plan_valid(const ims_cuda_plan *p) {
    if (p->elt != 2 && p->elt != 4) return 0;
    if (p->in_c <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->dim <= 0) return 0;
    if (p->key.in_c != p->in_c || p->key.in_h != p->in_h || p->key.in_w != p->in_w) return 0;
    if (p->arena_per_image < 0 || p->ws_bytes < 0) return 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const ims_cuda_tensor *t = &p->tensors[i];
        if (t->c <= 0 || t->h <= 0 || t->w <= 0 || t->offset < 0 || t->size < 0) return 0;
        if (t->size && (int64_t)t->c * t->h * t->w * p->elt > t->size) return 0; /* size 0: unused */
        if (t->offset > p->arena_per_image || t->size > p->arena_per_image - t->offset) return 0;
    }
    for (int i = 0; i < p->n_steps; i++) {
        const ims_cuda_step *s = &p->steps[i];
        if (s->kind < 0 || s->kind >= IS_CS_COUNT) return 0;
        for (int j = 0; j < 2; j++)
            if (s->in[j] < -1 || s->in[j] >= p->n_tensors) return 0;
        if (s->out < -1 || s->out >= p->n_tensors) return 0;
        /* every tensor a step touches has its full extent in the arena */
        int used[3] = {s->in[0], s->in[1], s->out};
        for (int j = 0; j < 3; j++)
            if (used[j] >= 0 && p->tensors[used[j]].size == 0) return 0;
        if (s->kind != IS_CS_OUTPUT && s->kind != IS_CS_INPUT && s->in[0] < 0) return 0;
        if (s->kind != IS_CS_OUTPUT && s->out < 0) return 0;
        int64_t offs[3] = {s->w_off, s->b_off, s->bh_off};
        for (int j = 0; j < 3; j++)
            if (offs[j] < -1 || offs[j] > p->weights_bytes) return 0;
        if (s->w_off >= 0 && (s->w_bytes < 0 || s->w_bytes > p->weights_bytes - s->w_off)) return 0;
        if (s->ws_bytes < 0 || s->ws_bytes > p->ws_bytes) return 0;
    }
    return 1;
}

imgsim_status ims_cuda_plan_deserialize(ims_cuda_plan *p, const uint8_t *buf, size_t len, const char *path,
                                       ims_err *e) {
    memset(p, 0, sizeof *p);
    if (len < 16 + 32 || memcmp(buf, IS_CUDA_ENGINE_MAGIC, 8) != 0)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: not an imgsim CUDA engine file", path);
    uint8_t dig[32];
    if (tree_sha256(buf, len - 32, dig)) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    if (memcmp(dig, buf + len - 32, 32) != 0)
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: checksum mismatch (corrupt or truncated engine file)", path);
    rbuf r = {buf, len - 32, 8, 0};
    int32_t version = get_i32(&r);
    (void)get_i32(&r);
    if (version != IS_CUDA_ENGINE_VERSION)
        return ims_fail(e, IMGSIM_ERR_MISMATCH, "%s: engine file format version %d, this imgsim reads %d", path,
                       version, IS_CUDA_ENGINE_VERSION);
    get_key(&r, &p->key);
    p->in_c = get_i32(&r);
    p->in_h = get_i32(&r);
    p->in_w = get_i32(&r);
    p->dim = get_i64(&r);
    p->elt = get_i32(&r);
    p->arena_per_image = get_i64(&r);
    p->ws_bytes = get_i64(&r);
    int32_t nt = get_i32(&r);
    if (r.bad || nt < 0 || nt > MAX_TENSORS) goto bad;
    p->n_tensors = nt;
    p->tensors = ims_calloc((size_t)nt + 1, sizeof *p->tensors);
    if (!p->tensors) goto nomem;
    for (int i = 0; i < nt; i++) {
        ims_cuda_tensor *t = &p->tensors[i];
        t->c = get_i32(&r);
        t->h = get_i32(&r);
        t->w = get_i32(&r);
        t->offset = get_i64(&r);
        t->size = get_i64(&r);
    }
    int32_t ns = get_i32(&r);
    if (r.bad || ns < 0 || ns > MAX_STEPS) goto bad;
    p->n_steps = ns;
    p->steps = ims_calloc((size_t)ns + 1, sizeof *p->steps);
    if (!p->steps) goto nomem;
    for (int i = 0; i < ns; i++) get_step(&r, &p->steps[i]);
    int64_t wb = get_i64(&r);
    if (r.bad || wb < 0 || (uint64_t)wb > MAX_WEIGHTS || (uint64_t)wb > r.len - r.pos) goto bad;
    p->weights_bytes = wb;
    p->weights = ims_malloc(wb ? (size_t)wb : 1);
    if (!p->weights) goto nomem;
    get(&r, p->weights, (size_t)wb);
    if (r.bad || r.pos != r.len || !plan_valid(p)) goto bad;
    return IMGSIM_OK;
bad:
    ims_cuda_plan_free(p);
    return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: malformed engine file (inconsistent sizes or indices)", path);
nomem:
    ims_cuda_plan_free(p);
    return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory reading engine file", path);
}

imgsim_status ims_cuda_plan_save(const ims_cuda_plan *p, const char *path, ims_err *e) {
    uint8_t *buf = NULL;
    size_t len = 0;
    imgsim_status st = ims_cuda_plan_serialize(p, &buf, &len, e);
    if (st) return st;
    char *dir = ims_path_dirname(path);
    if (dir) {
        st = ims_mkdir_p(dir, e);
        free(dir);
        if (st) {
            free(buf);
            return st;
        }
    }
    st = ims_write_file_atomic(path, buf, len, e);
    free(buf);
    return st;
}

imgsim_status ims_cuda_plan_load(ims_cuda_plan *p, const char *path, ims_err *e) {
    uint8_t *buf = NULL;
    size_t len = 0;
    memset(p, 0, sizeof *p);
    imgsim_status st = ims_read_file(&buf, &len, path, MAX_WEIGHTS, e);
    if (st) return st;
    st = ims_cuda_plan_deserialize(p, buf, len, path, e);
    free(buf);
    return st;
}

char *ims_cuda_cache_path(const char *dir, const ims_cuda_key *k) {
    wbuf w = {0};
    put_key(&w, k);
    if (w.oom) {
        free(w.p);
        return NULL;
    }
    char hex[65];
    ims_sha256_hex(w.p, w.len, hex);
    free(w.p);
    char name[96];
    snprintf(name, sizeof name, "%.32s.engine", hex);
    return ims_path_join(dir, name);
}

void ims_cuda_plan_print(const ims_cuda_plan *p, FILE *f) {
    const ims_cuda_key *k = &p->key;
    fprintf(f, "format version   %d\n", k->format_version);
    fprintf(f, "model sha256     %s\n", k->model_sha256);
    fprintf(f, "layer            %s\n", k->layer);
    fprintf(f, "gpu              %s (sm_%d%d)\n", k->gpu_name, k->cc_major, k->cc_minor);
    fprintf(f, "driver/runtime   %d / %d\n", k->driver_version, k->runtime_version);
    fprintf(f, "cudnn / cublas   %lld / %lld\n", (long long)k->cudnn_version, (long long)k->cublas_version);
    fprintf(f, "precision        %s\n", prec_name(k->precision));
    fprintf(f, "max batch        %d\n", k->max_batch);
    fprintf(f, "input            %d x %d x %d\n", p->in_c, p->in_h, p->in_w);
    fprintf(f, "dim              %lld\n", (long long)p->dim);
    fprintf(f, "arena            %.1f MiB per image, %.1f MiB at max batch\n", p->arena_per_image / 1048576.0,
            (double)p->arena_per_image * k->max_batch / 1048576.0);
    fprintf(f, "workspace        %.1f MiB\n", p->ws_bytes / 1048576.0);
    fprintf(f, "weights          %.1f MiB\n", p->weights_bytes / 1048576.0);
    int counts[IS_CS_COUNT] = {0}, fused = 0;
    double tuned = 0;
    for (int i = 0; i < p->n_steps; i++) {
        counts[p->steps[i].kind]++;
        if (p->steps[i].kind == IS_CS_CONV) {
            fused += p->steps[i].fused;
            tuned += p->steps[i].tuned_ms;
        }
    }
    fprintf(f, "steps            %d:", p->n_steps);
    for (int i = 0; i < IS_CS_COUNT; i++)
        if (counts[i]) fprintf(f, " %s %d", ims_cuda_step_name(i), counts[i]);
    fprintf(f, "\n");
    fprintf(f, "convolutions     %d (%d fused bias+residual+act in cuDNN), %.3f ms tuned at max batch\n",
            counts[IS_CS_CONV], fused, tuned);
    for (int i = 0; i < p->n_steps; i++) {
        const ims_cuda_step *s = &p->steps[i];
        if (s->kind != IS_CS_CONV) continue;
        const ims_cuda_tensor *t = &p->tensors[s->out];
        fprintf(f, "  conv %3d  %dx%d/%d  -> %4dx%3dx%3d  algo %d math %d %s  %.3f ms\n", i, s->kh, s->kw, s->sh,
                t->c, t->h, t->w, s->algo, s->math, s->fused ? "fused  " : "unfused", s->tuned_ms);
    }
}

imgsim_status ims_cuda_engine_file_describe(char *buf, size_t size, size_t *len, const char *path, ims_err *e) {
    ims_cuda_plan p;
    imgsim_status st = ims_cuda_plan_load(&p, path, e);
    if (st) return st;
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (!f) {
        ims_cuda_plan_free(&p);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory describing the engine file", path);
    }
    ims_cuda_plan_print(&p, f);
    fclose(f);
    ims_cuda_plan_free(&p);
    if (!text) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory describing the engine file", path);
    if (len) *len = n;
    if (size) {
        size_t k = n < size - 1 ? n : size - 1;
        memcpy(buf, text, k);
        buf[k] = 0;
    }
    free(text);
    return IMGSIM_OK;
}
