/*
 * core.h: internal helpers shared by every part of libimgsim: errors, logging, time, file IO,
 * a thread pool, progress reporting, .npy and SHA-256. Nothing here is public API.
 */
#ifndef IMGSIM_CORE_H
#define IMGSIM_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "imgsim.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define IS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define IS_PRINTF(a, b)
#endif

/* ---- errors ---------------------------------------------------------------------------- */

#define IS_ERRMSG_MAX 1024

/* An error message slot. Handles embed one; internal functions take one (may be NULL). */
typedef struct is_err {
    char msg[IS_ERRMSG_MAX];
} is_err;

/* Formats the message into e (if non-NULL) and the thread-local last-error slot; returns st.
 * Use as: return is_fail(err, IMGSIM_ERR_IO, "%s: cannot open: %s", path, strerror(errno)); */
imgsim_status is_fail(is_err *e, imgsim_status st, const char *fmt, ...) IS_PRINTF(3, 4);
imgsim_status is_failv(is_err *e, imgsim_status st, const char *fmt, va_list ap);
/* Prefixes an existing message in e (and the thread-local slot) with "prefix: ". Returns st. */
imgsim_status is_fail_prefix(is_err *e, imgsim_status st, const char *prefix);
/* Copies src's message into dst (and the thread-local slot). Returns st. */
imgsim_status is_fail_copy(is_err *dst, const is_err *src, imgsim_status st);
void is_err_clear(is_err *e);

/* ---- logging --------------------------------------------------------------------------- */

int is_log_enabled(imgsim_log_level lvl);
void is_log(imgsim_log_level lvl, const char *fmt, ...) IS_PRINTF(2, 3);
#define is_log_error(...) is_log(IMGSIM_LOG_ERROR, __VA_ARGS__)
#define is_log_warn(...) is_log(IMGSIM_LOG_WARN, __VA_ARGS__)
#define is_log_info(...) is_log(IMGSIM_LOG_INFO, __VA_ARGS__)
#define is_log_debug(...) is_log(IMGSIM_LOG_DEBUG, __VA_ARGS__)

/* ---- time, memory, cores ----------------------------------------------------------------- */

double is_now(void);            /* monotonic seconds */
int is_num_cores(void);         /* online CPUs (>= 1) */
size_t is_peak_rss_bytes(void); /* peak resident set of this process */

/* Allocation with overflow-checked sizes; return NULL on overflow or failure. Tests can make
 * the n-th allocation fail (is_alloc_fail_after). */
void *is_malloc(size_t n);
void *is_calloc(size_t count, size_t size);
void *is_realloc(void *p, size_t n);
void *is_malloc_array(size_t count, size_t size);
char *is_strdup(const char *s);
void is_alloc_fail_after(long n); /* -1 disables fault injection */
/* 64-bit multiply with overflow detection: returns 0 and sets *out, or -1 on overflow. */
int is_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out);

/* ---- files ----------------------------------------------------------------------------- */

/* Reads a whole file (refusing files over max_bytes, 0 = no limit). *buf is is_malloc'ed. */
imgsim_status is_read_file(uint8_t **buf, size_t *len, const char *path, uint64_t max_bytes, is_err *e);
/* Reads up to n bytes from the start of a file; *got is how many were read. */
imgsim_status is_read_head(uint8_t *buf, size_t n, size_t *got, const char *path, is_err *e);
/* Atomic output: opens "<path>.tmp.<pid>" for writing; is_atomic_commit flushes, closes and
 * renames it onto path; is_atomic_abort closes and unlinks it. A killed process never leaves a
 * partial file under the final name. (No fsync: durability across power loss is the file
 * system's; fsync of a large store cost more than writing it.) */
typedef struct is_atomic_file {
    FILE *f;
    char *final_path;
    char *tmp_path;
} is_atomic_file;
imgsim_status is_atomic_open(is_atomic_file *af, const char *path, is_err *e);
imgsim_status is_atomic_commit(is_atomic_file *af, is_err *e);
void is_atomic_abort(is_atomic_file *af);
/* Writes a whole buffer atomically. */
imgsim_status is_write_file_atomic(const char *path, const void *data, size_t len, is_err *e);
/* Splits text in place into lines: returns the next line (NUL-terminated, a trailing '\r'
 * removed) and advances *p past it, or NULL at the end of the text. */
char *is_next_line(char **p);
/* mkdir -p */
imgsim_status is_mkdir_p(const char *path, is_err *e);
int is_path_exists(const char *path);
int is_is_dir(const char *path);
/* Joins a and b with '/', is_malloc'ed (b absolute: copy of b). */
char *is_path_join(const char *a, const char *b);
/* Directory part of path ("." if none), is_malloc'ed. */
char *is_path_dirname(const char *path);

/* ---- thread pool ------------------------------------------------------------------------- */

typedef struct is_pool is_pool;
imgsim_status is_pool_create(is_pool **out, int threads, is_err *e); /* threads 0: all cores */
void is_pool_destroy(is_pool *p);
int is_pool_size(const is_pool *p);
/* Calls fn(ctx, i, worker) for i in [0, n) on the pool's threads (the caller's thread takes part
 * as worker 0) and returns when all are done. worker is in [0, size). */
typedef void (*is_pool_fn)(void *ctx, int64_t i, int worker);
void is_pool_for(is_pool *p, int64_t n, is_pool_fn fn, void *ctx);

/* ---- progress ---------------------------------------------------------------------------- */

/* A progress bar with items/s and ETA on a terminal, periodic plain lines when stderr is not a
 * TTY, nothing when quiet. Thread-safe is_progress_add. */
typedef struct is_progress is_progress;
is_progress *is_progress_start(const char *label, int64_t total, int quiet);
void is_progress_add(is_progress *p, int64_t n);
void is_progress_end(is_progress *p); /* prints the final line and frees */

/* ---- .npy -------------------------------------------------------------------------------- */

/* Streaming writer of a 2-D C-order .npy file ([rows, cols], '<f4' or '<f2'); rows may be unknown
 * until is_npy_finish, which patches the header. Written through is_atomic_file. */
typedef struct is_npy_writer {
    is_atomic_file af;
    imgsim_dtype dtype;
    int64_t cols, rows;
} is_npy_writer;
imgsim_status is_npy_begin(is_npy_writer *w, const char *path, imgsim_dtype dtype, int64_t cols, is_err *e);
/* Appends n rows of float32 data (converted to the file's dtype). */
imgsim_status is_npy_append_f32(is_npy_writer *w, const float *rows, int64_t n, is_err *e);
imgsim_status is_npy_finish(is_npy_writer *w, is_err *e);
void is_npy_abort(is_npy_writer *w);

/* Reads a 2-D (or 1-D as [1, n]) float32/float16 .npy. *data is is_malloc'ed in the file's dtype. */
imgsim_status is_npy_read(void **data, imgsim_dtype *dtype, int64_t *rows, int64_t *cols,
                          const char *path, is_err *e);
/* Writes a float32 array of any shape (rank 1..8) in one go, atomically. */
imgsim_status is_npy_write_f32(const char *path, const float *data, const int64_t *shape, int rank, is_err *e);

/* float16 <-> float32 (IEEE binary16, round to nearest even) */
uint16_t is_f32_to_f16(float f);
float is_f16_to_f32(uint16_t h);

/* ---- hashing ----------------------------------------------------------------------------- */

typedef struct is_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} is_sha256;
void is_sha256_init(is_sha256 *s);
void is_sha256_update(is_sha256 *s, const void *data, size_t n);
void is_sha256_final(is_sha256 *s, uint8_t out[32]);
void is_sha256_hex(const void *data, size_t n, char out[65]);
imgsim_status is_sha256_file(const char *path, char out[65], is_err *e);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_CORE_H */
