/*
 * core.h: internal helpers shared by every part of libimgsim: errors, logging, time, file IO,
 * a thread pool, progress reporting, .npy and SHA-256. Nothing here is public API.
 */
#ifndef IMGSIM_CORE_H
#define IMGSIM_CORE_H

#include <stdarg.h>
#include <sys/stat.h>
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
typedef struct ims_err {
    char msg[IS_ERRMSG_MAX];
} ims_err;

/* Formats the message into e (if non-NULL) and the thread-local last-error slot; returns st.
 * Use as: return ims_fail(err, IMGSIM_ERR_IO, "%s: cannot open: %s", path, strerror(errno)); */
imgsim_status ims_fail(ims_err *e, imgsim_status st, const char *fmt, ...) IS_PRINTF(3, 4);
imgsim_status ims_failv(ims_err *e, imgsim_status st, const char *fmt, va_list ap);
/* Prefixes an existing message in e (and the thread-local slot) with "prefix: ". Returns st. */
imgsim_status ims_fail_prefix(ims_err *e, imgsim_status st, const char *prefix);
/* Copies src's message into dst (and the thread-local slot). Returns st. */
imgsim_status ims_fail_copy(ims_err *dst, const ims_err *src, imgsim_status st);
void ims_err_clear(ims_err *e);

/* ---- logging --------------------------------------------------------------------------- */

int ims_log_enabled(imgsim_log_level lvl);
void ims_log(imgsim_log_level lvl, const char *fmt, ...) IS_PRINTF(2, 3);
#define ims_log_error(...) ims_log(IMGSIM_LOG_ERROR, __VA_ARGS__)
#define ims_log_warn(...) ims_log(IMGSIM_LOG_WARN, __VA_ARGS__)
#define ims_log_info(...) ims_log(IMGSIM_LOG_INFO, __VA_ARGS__)
#define ims_log_debug(...) ims_log(IMGSIM_LOG_DEBUG, __VA_ARGS__)

/* ---- time, memory, cores ----------------------------------------------------------------- */

double ims_now(void);            /* monotonic seconds */
int ims_num_cores(void);         /* online CPUs (>= 1) */
/* The most threads one pool gets: asked, or 4x the cores (at least 4) when asked is more, with a
 * warning naming what (e.g. "--threads", a string that outlives the process) the first time. Far more threads than cores only add
 * context switches (and spinning, in the OpenMP runtime) and make no progress faster. */
int ims_threads_cap(int asked, const char *what);
size_t ims_peak_rss_bytes(void); /* peak resident set of this process */

/* Allocation with overflow-checked sizes; return NULL on overflow or failure. Tests can make
 * the n-th allocation fail (ims_alloc_fail_after). */
void *ims_malloc(size_t n);
void *ims_calloc(size_t count, size_t size);
void *ims_realloc(void *p, size_t n);
void *ims_malloc_array(size_t count, size_t size);
char *ims_strdup(const char *s);
void ims_alloc_fail_after(long n); /* -1 disables fault injection */
/* 64-bit multiply with overflow detection: returns 0 and sets *out, or -1 on overflow. */
int ims_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out);

/* ---- files ----------------------------------------------------------------------------- */

/* Opens path for reading without blocking on a FIFO (O_NONBLOCK, cleared again once it is known to
 * be a regular file), and refuses anything that is not a regular file (FIFO, device, socket,
 * folder) with a message naming it. Returns the descriptor (st filled, may be NULL) or -1. */
int ims_open_regular(const char *path, struct stat *st, ims_err *e);
/* Reads a whole regular file (refusing files over max_bytes, 0 = no limit; FIFOs, devices and
 * folders are refused). *buf is ims_malloc'ed. */
imgsim_status ims_read_file(uint8_t **buf, size_t *len, const char *path, uint64_t max_bytes, ims_err *e);
/* Reads up to n bytes from the start of a file; *got is how many were read. */
imgsim_status ims_read_head(uint8_t *buf, size_t n, size_t *got, const char *path, ims_err *e);
/* Atomic output: opens "<path>.tmp.<pid>" for writing; ims_atomic_commit flushes, closes and
 * renames it onto path; ims_atomic_abort closes and unlinks it. A killed process never leaves a
 * partial file under the final name. (No fsync: durability across power loss is the file
 * system's; fsync of a large store cost more than writing it.) */
typedef struct ims_atomic_file {
    FILE *f;
    char *final_path;
    char *tmp_path;
    int durable; /* set after open: commit fsyncs the file before the rename and its folder after */
} ims_atomic_file;
imgsim_status ims_atomic_open(ims_atomic_file *af, const char *path, ims_err *e);
imgsim_status ims_atomic_commit(ims_atomic_file *af, ims_err *e);
void ims_atomic_abort(ims_atomic_file *af);
/* Writes a whole buffer atomically. */
imgsim_status ims_write_file_atomic(const char *path, const void *data, size_t len, ims_err *e);
/* The same, fsynced (file, then its folder) when durable. */
imgsim_status ims_write_file_atomic_ex(const char *path, const void *data, size_t len, int durable, ims_err *e);
/* Splits text in place into lines: returns the next line (NUL-terminated, a trailing '\r'
 * removed) and advances *p past it, or NULL at the end of the text. */
char *ims_next_line(char **p);
/* mkdir -p */
imgsim_status ims_mkdir_p(const char *path, ims_err *e);
int ims_path_exists(const char *path);
int ims_is_dir(const char *path);
/* Joins a and b with '/', ims_malloc'ed (b absolute: copy of b). */
char *ims_path_join(const char *a, const char *b);
/* Directory part of path ("." if none), ims_malloc'ed. */
char *ims_path_dirname(const char *path);

/* ---- tuning knobs and configuration from the environment ---------------------------------- */

/* The library's every read of the environment is in core/tune.c. The tuning knobs are for
 * experiments and tests, not for normal use; each is documented in README.md "Tuning knobs".
 * They are read once, on the first ims_tuning_get; a value that does not parse is ignored with a
 * warning. A numeric field of 0 means "not set": the code that uses it applies its own default. */
typedef enum ims_screen {
    IMS_SCREEN_AUTO = 0, /* by problem size (search_cpu.c, dedup.c) */
    IMS_SCREEN_F32,      /* float32 tile products only */
    IMS_SCREEN_BF16      /* bf16 tile products where oneDNN has them natively */
} ims_screen;

typedef struct ims_tuning {
    int cuda_graphs;          /* IMGSIM_CUDA_GRAPHS=0|1: the CUDA engine replays CUDA graphs; 1 */
    ims_screen search_screen; /* IMGSIM_SEARCH_SCREEN=f32|bf16: CPU search/dedup screening pass */
    int64_t gs_tile;          /* IMGSIM_GS_TILE: CUDA search scores per tile, 65536..2^28; 0 */
    int gs_qb;                /* IMGSIM_GS_QB: CUDA search queries per GEMM, >= 1 (at most tile/256); 0 */
    int gs_qs;                /* IMGSIM_GS_QS: CUDA search queries per super-batch, >= 1; 0 */
    int gpu_ring;             /* IMGSIM_GPU_RING: batch ring slots with GPU decoding, 2..16; 0 */
    int gpu_init_sync;        /* IMGSIM_GPU_INIT_SYNC=0|1: --decode=auto makes the GPU decoders
                                 before the first image instead of while the CPU starts; 0 */
} ims_tuning;

/* The knobs, read from the environment on the first call (thread-safe). */
const ims_tuning *ims_tuning_get(void);
/* Reads the environment again: for tests that change it with setenv between jobs. Not while
 * another thread runs a job. */
void ims_tuning_reload(void);
/* The default engine-cache folder: $XDG_CACHE_HOME/imgsim, else $HOME/.cache/imgsim, else NULL
 * (neither set). ims_malloc'ed. Read at each call (ordinary configuration, not a tuning knob). */
char *ims_cache_dir(void);

/* ---- thread pool ------------------------------------------------------------------------- */

typedef struct ims_pool ims_pool;
imgsim_status ims_pool_create(ims_pool **out, int threads, ims_err *e); /* threads 0: all cores */
void ims_pool_destroy(ims_pool *p);
int ims_pool_size(const ims_pool *p);
/* Calls fn(ctx, i, worker) for i in [0, n) on the pool's threads (the caller's thread takes part
 * as worker 0) and returns when all are done. worker is in [0, size). */
typedef void (*ims_pool_fn)(void *ctx, int64_t i, int worker);
void ims_pool_for(ims_pool *p, int64_t n, ims_pool_fn fn, void *ctx);

/* ---- progress ---------------------------------------------------------------------------- */

/* A progress bar with items/s and ETA on a terminal, periodic plain lines when stderr is not a
 * TTY, nothing when quiet. Thread-safe ims_progress_add. */
typedef struct ims_progress ims_progress;
ims_progress *ims_progress_start(const char *label, int64_t total, int quiet);
void ims_progress_add(ims_progress *p, int64_t n);
void ims_progress_end(ims_progress *p); /* prints the final line and frees */

/* checksum64 (checksum.c): a fast 64-bit checksum of a store's files, streamed. */
typedef struct ims_ck64 {
    uint64_t h[4];
    uint64_t len;
    uint8_t buf[32];
    size_t nbuf;
} ims_ck64;
void ims_ck64_init(ims_ck64 *c);
void ims_ck64_update(ims_ck64 *c, const void *data, size_t n);
uint64_t ims_ck64_final(ims_ck64 *c);
void ims_ck64_hex(uint64_t v, char out[17]); /* 16 lowercase hex digits */

/* ---- .npy -------------------------------------------------------------------------------- */

/* Streaming writer of a 2-D C-order .npy file ([rows, cols], '<f4' or '<f2'); rows may be unknown
 * until ims_npy_finish, which patches the header. Written through ims_atomic_file. */
typedef struct ims_npy_writer {
    ims_atomic_file af;
    imgsim_dtype dtype;
    int64_t cols, rows;
    ims_ck64 ck; /* checksum64 of the data written (the array after the header) */
} ims_npy_writer;
imgsim_status ims_npy_begin(ims_npy_writer *w, const char *path, imgsim_dtype dtype, int64_t cols, ims_err *e);
/* Appends n rows of float32 data (converted to the file's dtype). */
imgsim_status ims_npy_append_f32(ims_npy_writer *w, const float *rows, int64_t n, ims_err *e);
/* Appends n rows already in the file's dtype (cols elements of 4 or 2 bytes each). */
imgsim_status ims_npy_append_raw(ims_npy_writer *w, const void *rows, int64_t n, ims_err *e);
imgsim_status ims_npy_finish(ims_npy_writer *w, ims_err *e);
void ims_npy_abort(ims_npy_writer *w);

/* Reads a 2-D (or 1-D as [1, n]) float32/float16 .npy. *data is ims_malloc'ed in the file's dtype. */
imgsim_status ims_npy_read(void **data, imgsim_dtype *dtype, int64_t *rows, int64_t *cols,
                          const char *path, ims_err *e);
/* Writes a float32 array of any shape (rank 1..8) in one go, atomically. */
imgsim_status ims_npy_write_f32(const char *path, const float *data, const int64_t *shape, int rank, ims_err *e);

/* float16 <-> float32 (IEEE binary16, round to nearest even) */
uint16_t ims_f32_to_f16(float f);
float ims_f16_to_f32(uint16_t h);

/* ---- hashing ----------------------------------------------------------------------------- */

/* SHA-256 through OpenSSL's libcrypto where the build has it (SHA-NI / AVX2 code: about 2 GB/s
 * on a core with SHA-NI against ~145 MB/s for the portable code), else the portable code of
 * sha256.c. Every init is paired with a final (which frees what init took). */
typedef struct ims_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
    void *evp; /* libcrypto's EVP_MD_CTX, or NULL: the portable code */
} ims_sha256;
void ims_sha256_init(ims_sha256 *s);
void ims_sha256_init_portable(ims_sha256 *s); /* the portable code even with libcrypto (tests) */
void ims_sha256_update(ims_sha256 *s, const void *data, size_t n);
void ims_sha256_final(ims_sha256 *s, uint8_t out[32]);
void ims_sha256_hex(const void *data, size_t n, char out[65]);
imgsim_status ims_sha256_file(const char *path, char out[65], ims_err *e);
/* The same, with the stat of the descriptor read (st may be NULL), so that a caller can tell
 * whether what was hashed is the file it stamped. */
imgsim_status ims_sha256_file_stat(const char *path, char out[65], struct stat *st, ims_err *e);

/* ---- the write lock of an output folder (lock.c) ------------------------------------------ */

/* One writer per output folder: ims_dir_lock_take takes an exclusive flock on DIR/.imgsim.lock
 * (creating DIR when missing) and writes the holder's pid into it. When another process holds it,
 * fails at once (IMGSIM_ERR_IO) with a message naming DIR and that process's pid. Once held, the
 * temporary files a killed writer left in DIR ("NAME.tmp.PID", ims_atomic_open's) are removed.
 * The lock goes with the process (closed descriptor, or killed). *out is released with
 * ims_dir_lock_release (NULL: no-op). */
typedef struct ims_dir_lock ims_dir_lock;
imgsim_status ims_dir_lock_take(ims_dir_lock **out, const char *dir, ims_err *e);
void ims_dir_lock_release(ims_dir_lock *l);
/* Removes the "NAME.tmp.PID" files in dir (regular files only): for a folder whose writer holds
 * the lock of the folder it belongs to. */
void ims_remove_tmp_leftovers(const char *dir);
#define IMS_DIR_LOCK_NAME ".imgsim.lock"
#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_CORE_H */
