/*
 * search_cuda.c: exact top-k inner-product search on a CUDA GPU (ims_search_cuda, and the
 * gallery handle of search_cuda.h). Kernels are in search_kernels.cu.
 *
 * Shapes: gallery G [n, dim], queries Q [q, dim] (both float16 or both float32), outputs
 * idx/score [q, k] (row -1 and score -inf past n), best first, ties by lower row.
 *
 * Plan. The gallery lives on the device in its own type when it fits (and fits gpu_memory);
 * otherwise it is streamed per search in segments from pinned host memory (the caller's memory
 * registered with cudaHostRegister, or two pinned staging buffers), double-buffered, the copy of
 * segment j+1 on its own stream overlapping the work on segment j. Queries go in super-batches
 * (bounded device workspace) and, within one, in blocks of up to 2048. For every (gallery tile of
 * nc rows, query block) a cuBLAS GEMM writes the score tile S [qb, nc] (float16 x float16 ->
 * float32 accumulate -> float16 out, or float32 inputs with TF32 tensor cores -> float32 out) and
 * k_select folds it into per-query lists of the best kp approximate scores; two streams alternate
 * between query blocks so one block's selection overlaps the other block's GEMM. Only two tiles of
 * scores ever exist. Resident galleries go block-major (block b+1's query upload overlaps block
 * b's tiles); streamed ones segment-major (each segment crosses the bus once per super-batch).
 *
 * Exactness. Let s be a row's exact score, a its approximate one. For the GEMM,
 * |a - s| <= eps(q) = |q| * gmax * rel + 2^-24, with gmax the largest gallery row norm and
 * rel = dim * 2^-21 (float32 accumulation of dim exact fp16 products, any order, round or truncate,
 * with a 4x margin over gamma(dim) = dim * 2^-23) + 2^-11 (rounding the tile to float16; or 2^-8 for
 * TF32 inputs, each rounded to 10 bits) + 2^-18 (slack covering the float64 re-scoring error and
 * the bound's own rounding); 2^-24 covers float16 subnormal outputs. Let a_k be the k-th best
 * approximate score among the kept candidates. k of them have s >= a_k - eps. Any row not kept
 * has a <= (last kept a of a full list); when that is < a_k - 2 eps for every full list, every
 * row outside the candidates with a >= a_k - 2 eps has s < a_k - eps: it can neither enter nor
 * tie into the exact top k. Those candidates are re-scored in float64 (the same compensated sum,
 * same order, as the CPU search's ims_dot64, so scores are bit-identical) and ranked by (score desc,
 * row asc): the result equals the CPU exact search. A query whose proof fails (many near-ties:
 * duplicated rows, clusters) is redone on the GPU with kp = 2048, then, if still unproven, by the
 * CPU exact search.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "search/cuda/search_cuda.h"
#include "search/cuda/search_cuda_kernels.h"
#include "search/search.h"
#include "search/topk.h"

enum {
    TILE_ELEMS = 1 << 24, /* scores per tile (one of two buffers) */
    QB_MAX = 2048,        /* queries per GEMM */
    KP_MAX = 2048,        /* longest candidate list (the kernels' shared buffers) */
    LIST_SLACK = 256,     /* unsorted appends a stored list may carry between tiles */
    MAX_SPLITS = 64
};
#define QWS_BUDGET ((size_t)256 << 20) /* query-side device workspace per super-batch */
#define SLACK_BYTES ((size_t)384 << 20) /* device memory left for cuBLAS, the context, others */

struct ims_gsearch {
    int dev;
    imgsim_dtype dt;
    int64_t n;
    int dim;
    size_t esz, rowbytes;
    const void *host_g; /* borrowed */
    int resident;
    void *d_g;               /* resident gallery [n, dim] */
    int64_t seg_rows;        /* streamed: rows per segment */
    void *d_seg[2];          /* streamed: device segments */
    void *h_pin[2];          /* streamed: pinned staging (NULL when host_g is registered) */
    int registered;          /* host_g registered with cudaHostRegister */
    unsigned int *d_gmax;    /* max gallery row norm, float bits */
    void *d_score[2];        /* score tiles [tile_elems] */
    int64_t tile_elems;      /* TILE_ELEMS (IMGSIM_GS_TILE overrides, for tuning) */
    cudaStream_t cs[2], copy;
    cublasHandle_t blas[2];
    cudaEvent_t ev_h2d[2], ev_use[2][2], ev_join;
    int sms;
    int64_t qb_max; /* queries per GEMM (QB_MAX; IMGSIM_GS_QB overrides, for tuning and tests) */
    int64_t qs_cap; /* queries per super-batch cap (IMGSIM_GS_QS, tests), 0: workspace-bound */
    /* query-side workspace, grown on demand */
    size_t ws_bytes;
    void *ws;
    int64_t cnt_first, cnt_second, cnt_cpu;
};

#define CU(call, what)                                                                                       \
    do {                                                                                                     \
        cudaError_t cu_ = (call);                                                                            \
        if (cu_ != cudaSuccess) {                                                                            \
            st = ims_fail(e, cu_ == cudaErrorMemoryAllocation ? IMGSIM_ERR_NOMEM : IMGSIM_ERR_BACKEND,        \
                         "cuda search: %s: %s", what, cudaGetErrorString(cu_));                              \
            goto done;                                                                                       \
        }                                                                                                    \
    } while (0)

#define CB(call, what)                                                                                       \
    do {                                                                                                     \
        cublasStatus_t cb_ = (call);                                                                         \
        if (cb_ != CUBLAS_STATUS_SUCCESS) {                                                                  \
            st = ims_fail(e, IMGSIM_ERR_BACKEND, "cuda search: %s: cuBLAS status %d", what, (int)cb_);        \
            goto done;                                                                                       \
        }                                                                                                    \
    } while (0)

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

int ims_gsearch_resident(const ims_gsearch *g) { return g ? g->resident : 0; }

void ims_gsearch_counts(const ims_gsearch *g, int64_t *first, int64_t *second, int64_t *cpu) {
    if (first) *first = g ? g->cnt_first : 0;
    if (second) *second = g ? g->cnt_second : 0;
    if (cpu) *cpu = g ? g->cnt_cpu : 0;
}

void ims_gsearch_free(ims_gsearch *g) {
    if (!g) return;
    cudaSetDevice(g->dev);
    for (int i = 0; i < 2; i++) {
        if (g->cs[i]) cudaStreamSynchronize(g->cs[i]);
    }
    if (g->copy) cudaStreamSynchronize(g->copy);
    for (int i = 0; i < 2; i++) {
        if (g->blas[i]) cublasDestroy(g->blas[i]);
        cudaFree(g->d_score[i]);
        cudaFree(g->d_seg[i]);
        if (g->h_pin[i]) cudaFreeHost(g->h_pin[i]);
        if (g->cs[i]) cudaStreamDestroy(g->cs[i]);
        if (g->ev_h2d[i]) cudaEventDestroy(g->ev_h2d[i]);
        for (int j = 0; j < 2; j++)
            if (g->ev_use[i][j]) cudaEventDestroy(g->ev_use[i][j]);
    }
    if (g->ev_join) cudaEventDestroy(g->ev_join);
    if (g->copy) cudaStreamDestroy(g->copy);
    if (g->registered) cudaHostUnregister((void *)g->host_g);
    cudaFree(g->d_g);
    cudaFree(g->d_gmax);
    cudaFree(g->ws);
    free(g);
}

imgsim_status ims_gsearch_create(ims_gsearch **out, const void *gallery, int64_t n, int dim, imgsim_dtype dtype,
                                int device_index, size_t gpu_memory, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    *out = NULL;
    if (n < 0 || dim < 1 || (n > 0 && !gallery) || (dtype != IMGSIM_F32 && dtype != IMGSIM_F16))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda search: bad gallery (n %lld, dim %d, dtype %d)",
                       (long long)n, dim, (int)dtype);
    if (n >= (int64_t)0xffffffffLL)
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "cuda search: %lld gallery rows (at most 4294967294)", (long long)n);
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
        cudaGetLastError();
        return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "cuda search: no CUDA device");
    }
    if (device_index < 0 || device_index >= count)
        return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "cuda search: no CUDA device %d (%d present)", device_index, count);
    ims_gsearch *g = ims_calloc(1, sizeof *g);
    if (!g) return ims_fail(e, IMGSIM_ERR_NOMEM, "cuda search: out of memory");
    g->dev = device_index;
    g->dt = dtype;
    g->n = n;
    g->dim = dim;
    g->esz = dtype == IMGSIM_F16 ? 2 : 4;
    g->rowbytes = (size_t)dim * g->esz;
    g->host_g = gallery;
    g->qb_max = QB_MAX;
    const ims_tuning *tune = ims_tuning_get(); /* 0: not set */
    g->tile_elems = tune->gs_tile ? tune->gs_tile : TILE_ELEMS;
    if (tune->gs_qb >= 1 && tune->gs_qb <= g->tile_elems / 256) g->qb_max = tune->gs_qb;
    if (tune->gs_qs >= 1) g->qs_cap = tune->gs_qs;
    CU(cudaSetDevice(device_index), "cudaSetDevice");
    CU(cudaDeviceGetAttribute(&g->sms, cudaDevAttrMultiProcessorCount, device_index), "device attributes");
    for (int i = 0; i < 2; i++) {
        CU(cudaStreamCreateWithFlags(&g->cs[i], cudaStreamNonBlocking), "cudaStreamCreate");
        CU(cudaEventCreateWithFlags(&g->ev_h2d[i], cudaEventDisableTiming), "cudaEventCreate");
        for (int j = 0; j < 2; j++) CU(cudaEventCreateWithFlags(&g->ev_use[i][j], cudaEventDisableTiming), "cudaEventCreate");
        CB(cublasCreate(&g->blas[i]), "cublasCreate");
        CB(cublasSetStream(g->blas[i], g->cs[i]), "cublasSetStream");
        CU(cudaMalloc(&g->d_score[i], (size_t)g->tile_elems * g->esz), "cudaMalloc(score tile)");
    }
    CU(cudaStreamCreateWithFlags(&g->copy, cudaStreamNonBlocking), "cudaStreamCreate");
    CU(cudaEventCreateWithFlags(&g->ev_join, cudaEventDisableTiming), "cudaEventCreate");
    CU(cudaMalloc((void **)&g->d_gmax, sizeof(unsigned int)), "cudaMalloc");
    CU(cudaMemsetAsync(g->d_gmax, 0, sizeof(unsigned int), g->cs[0]), "cudaMemsetAsync");
    CU(cudaStreamSynchronize(g->cs[0]), "cudaMemsetAsync");

    size_t free_b = 0, total_b = 0;
    CU(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    uint64_t gbytes;
    if (ims_mul_overflow_u64((uint64_t)n, g->rowbytes, &gbytes) || gbytes > SIZE_MAX) {
        st = ims_fail(e, IMGSIM_ERR_TOO_LARGE, "cuda search: gallery size overflows");
        goto done;
    }
    size_t reserve = QWS_BUDGET + SLACK_BYTES;
    g->resident = (gpu_memory == 0 || gbytes <= gpu_memory) && gbytes + reserve <= free_b;
    if (g->resident) {
        if (n > 0) {
            CU(cudaMalloc(&g->d_g, gbytes ? gbytes : 1), "cudaMalloc(gallery)");
            /* on cs[0]: a plain cudaMemcpy from pageable memory may return before its DMA ends */
            CU(cudaMemcpyAsync(g->d_g, gallery, gbytes, cudaMemcpyHostToDevice, g->cs[0]), "upload gallery");
            CU(ims_gs_launch_rownorm_max(g->cs[0], g->d_g, n, dim, dtype == IMGSIM_F16, g->d_gmax), "norm kernel");
            CU(cudaStreamSynchronize(g->cs[0]), "gallery norms");
        }
    } else {
        size_t budget = free_b > reserve ? free_b - reserve : 0;
        if (gpu_memory && gpu_memory < budget) budget = gpu_memory;
        int64_t rows = (int64_t)(budget / 2 / g->rowbytes);
        if (rows < 1) {
            st = ims_fail(e, IMGSIM_ERR_TOO_LARGE, "cuda search: %zu bytes of device memory are too few for 2 rows of %zu bytes",
                         budget, g->rowbytes);
            goto done;
        }
        if (rows > n) rows = n;
        g->seg_rows = rows;
        size_t sb = (size_t)rows * g->rowbytes;
        for (int i = 0; i < 2; i++) CU(cudaMalloc(&g->d_seg[i], sb), "cudaMalloc(gallery segment)");
        if (cudaHostRegister((void *)gallery, gbytes, cudaHostRegisterDefault) == cudaSuccess) {
            g->registered = 1;
        } else {
            cudaGetLastError();
            for (int i = 0; i < 2; i++) CU(cudaHostAlloc(&g->h_pin[i], sb, cudaHostAllocDefault), "cudaHostAlloc(staging)");
        }
    }
    ims_log_debug("cuda search: gallery %lld x %d %s, %s (%zu MB free of %zu MB%s)", (long long)n, dim,
                 dtype == IMGSIM_F16 ? "float16" : "float32", g->resident ? "resident" : "streamed",
                 free_b >> 20, total_b >> 20, g->registered ? ", host gallery registered" : "");
done:
    if (st != IMGSIM_OK) {
        ims_gsearch_free(g);
        return st;
    }
    *out = g;
    return IMGSIM_OK;
}

/* One search pass's workspace, carved from g->ws. */
typedef struct pass_ws {
    void *q;        /* [qs, dim] queries, gallery dtype */
    float *qf;      /* [qs, dim] float32 queries (== q for float32) */
    uint64_t *keys; /* [qs * splits, cap] */
    int *meta;      /* [qs * splits][2]: count, sorted */
    uint32_t *cand; /* [qs, mmax] */
    int *candn;     /* [qs] */
    int64_t *oidx;  /* [qs, k] */
    float *osc;     /* [qs, k] */
} pass_ws;

/* Bytes of workspace per query. */
static size_t ws_per_query(const ims_gsearch *g, int splits, int kp, int cap, int k) {
    size_t b = g->rowbytes + (g->dt == IMGSIM_F16 ? (size_t)g->dim * 4 : 0);
    b += (size_t)splits * (size_t)cap * 8 + (size_t)splits * 8 + (size_t)splits * (size_t)kp * 4 + 4 + (size_t)k * 12;
    return b;
}

/* Host re-scoring of streamed candidates (the gallery is not on the device). */
typedef struct host_rescore {
    const ims_gsearch *g;
    const void *Q; /* this super-batch's queries [qs, dim] */
    const uint32_t *cand;
    const int *candn;
    int mmax, k;
    int64_t *idx;
    float *score;
    float *qbuf;     /* [workers, dim] */
    ims_cand64 *cbuf; /* [workers, mmax] */
} host_rescore;

static void host_rescore_one(void *vctx, int64_t i, int w) {
    host_rescore *h = vctx;
    const int mc = h->candn[i];
    if (mc < 0) return;
    const int dim = h->g->dim;
    const float *qf = ims_row_f32(h->Q, i, dim, h->g->dt, h->qbuf + (size_t)w * (size_t)dim);
    ims_cand64 *c = h->cbuf + (size_t)w * (size_t)h->mmax;
    for (int j = 0; j < mc; j++) {
        int64_t row = h->cand[i * h->mmax + j];
        c[j].s = ims_dot64(qf, (const char *)h->g->host_g + (size_t)row * h->g->rowbytes, dim, h->g->dt);
        c[j].i = row;
    }
    int64_t m = ims_cand64_sort_unique(c, mc);
    for (int j = 0; j < h->k; j++) {
        h->idx[i * h->k + j] = j < m ? c[j].i : -1;
        h->score[i * h->k + j] = j < m ? (float)c[j].s : -INFINITY;
    }
}

/* Copies gallery segment j into device buffer j % 2 on the copy stream (see the plan above). */
static imgsim_status stage_segment(ims_gsearch *g, int64_t j, int used[2], ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    const int slot = (int)(j & 1);
    const int64_t r0 = j * g->seg_rows;
    const int64_t rows = g->n - r0 < g->seg_rows ? g->n - r0 : g->seg_rows;
    const size_t bytes = (size_t)rows * g->rowbytes;
    const char *src = (const char *)g->host_g + (size_t)r0 * g->rowbytes;
    if (used[slot]) { /* the compute streams must be done with this slot's previous segment */
        CU(cudaStreamWaitEvent(g->copy, g->ev_use[slot][0], 0), "cudaStreamWaitEvent");
        CU(cudaStreamWaitEvent(g->copy, g->ev_use[slot][1], 0), "cudaStreamWaitEvent");
    }
    if (!g->registered) {
        CU(cudaEventSynchronize(g->ev_h2d[slot]), "staging copy"); /* staging buffer free again */
        memcpy(g->h_pin[slot], src, bytes);
        src = g->h_pin[slot];
    }
    CU(cudaMemcpyAsync(g->d_seg[slot], src, bytes, cudaMemcpyHostToDevice, g->copy), "copy gallery segment");
    CU(cudaEventRecord(g->ev_h2d[slot], g->copy), "cudaEventRecord");
    used[slot] = 1;
done:
    return st;
}

/* What launch_tile and prep_block need of a super-batch. */
typedef struct tile_args {
    ims_gsearch *g;
    const pass_ws *w;
    const void *Qsb; /* host queries of this super-batch [qs, dim] */
    int64_t qs, qb, nc;
    int splits, kp, cap, f16;
    cudaDataType_t ab_t;
    cublasComputeType_t ct;
} tile_args;

/* On query block b's stream (b % 2): upload its queries, their float32 copy, clear its lists. */
static imgsim_status prep_block(const tile_args *a, int64_t b, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    ims_gsearch *g = a->g;
    cudaStream_t s = g->cs[b & 1];
    const int64_t r0 = b * a->qb, rows = a->qs - r0 < a->qb ? a->qs - r0 : a->qb;
    CU(cudaMemcpyAsync((char *)a->w->q + (size_t)r0 * g->rowbytes, (const char *)a->Qsb + (size_t)r0 * g->rowbytes,
                       (size_t)rows * g->rowbytes, cudaMemcpyHostToDevice, s),
       "copy queries");
    if (a->f16)
        CU(ims_gs_launch_half_to_float(s, a->w->qf + (size_t)r0 * (size_t)g->dim,
                                      (const char *)a->w->q + (size_t)r0 * g->rowbytes, rows * g->dim),
           "convert queries");
    CU(cudaMemsetAsync(a->w->meta + (size_t)r0 * (size_t)a->splits * 2, 0, (size_t)rows * (size_t)a->splits * 8, s),
       "cudaMemsetAsync");
done:
    return st;
}

/* Score tile of query block b against gallery rows [t0, t0 + ncur) of the device rows G (global
 * row seg0 + t0 first), then its selection, on stream b % 2 with that stream's tile buffer. */
static imgsim_status launch_tile(const tile_args *a, int64_t b, const void *G, int64_t seg0, int64_t t0, int64_t ncur,
                                 int final, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    ims_gsearch *g = a->g;
    const int s = (int)(b & 1);
    const int64_t r0 = b * a->qb, rows = a->qs - r0 < a->qb ? a->qs - r0 : a->qb;
    const float one = 1.0f, zero = 0.0f;
    CB(cublasGemmEx(g->blas[s], CUBLAS_OP_T, CUBLAS_OP_N, (int)ncur, (int)rows, g->dim, &one,
                    (const char *)G + (size_t)t0 * g->rowbytes, a->ab_t, g->dim,
                    (const char *)a->w->q + (size_t)r0 * g->rowbytes, a->ab_t, g->dim, &zero, g->d_score[s], a->ab_t,
                    (int)a->nc, a->ct, CUBLAS_GEMM_DEFAULT),
       "score GEMM");
    CU(ims_gs_launch_select(g->cs[s], a->f16, g->d_score[s], a->nc, (int)rows, (int)ncur, (uint32_t)(seg0 + t0),
                           a->splits, r0, a->w->keys, a->w->meta, a->kp, a->cap, final),
       "select kernel");
done:
    return st;
}

/* A pass's tile shape, super-batch size and workspace (plan_pass). */
typedef struct pass_plan {
    int64_t qb_all; /* queries per GEMM */
    int64_t nc;     /* gallery rows per tile (ld of the tile, multiple of 256) */
    int64_t qs_max; /* queries per super-batch */
    int splits;     /* column splits per query block */
    int mmax;       /* candidates per query: splits * kp */
    int cap;        /* list capacity per (query, split) */
    pass_ws w;
} pass_plan;

/* Chooses the tile shape and the super-batch size of a pass over nq queries with candidate lists
 * of kp, grows g->ws to fit and carves the workspace from it. */
static imgsim_status plan_pass(ims_gsearch *g, int64_t nq, int k, int kp, pass_plan *pp, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    const int f16 = g->dt == IMGSIM_F16;
    const int dim = g->dim;
    /* tile shape: queries per GEMM qb, gallery rows per tile nc (ld of the tile, multiple of 256) */
    const int64_t qb_all = nq < g->qb_max ? nq : g->qb_max;
    int64_t nc = (g->tile_elems / qb_all) & ~(int64_t)255;
    if (nc < 256) nc = 256;
    const int64_t seg_max = g->resident ? g->n : g->seg_rows;
    const int64_t seg_pad = (seg_max + 255) & ~(int64_t)255;
    if (nc > seg_pad) nc = seg_pad;
    /* splits: enough (query, split) blocks for two per multiprocessor, each >= 2048 columns */
    int64_t splits = (2 * (int64_t)g->sms + qb_all - 1) / qb_all;
    if (splits > MAX_SPLITS) splits = MAX_SPLITS;
    if (splits > KP_MAX / kp) splits = KP_MAX / kp;
    if (splits > nc / 2048) splits = nc / 2048;
    if (splits < 1) splits = 1;
    const int mmax = (int)splits * kp;
    const int cap = kp + LIST_SLACK < KP_MAX ? kp + LIST_SLACK : KP_MAX; /* + one round <= SEL_P */

    /* super-batch size from the workspace budget */
    const size_t pq = ws_per_query(g, (int)splits, kp, cap, k);
    int64_t qs_max = (int64_t)(QWS_BUDGET / pq);
    if (qs_max < 1) qs_max = 1;
    if (qs_max > nq) qs_max = nq;
    if (qs_max > ((int64_t)1 << 20)) qs_max = (int64_t)1 << 20;
    if (g->qs_cap > 0 && qs_max > g->qs_cap) qs_max = g->qs_cap;
    const size_t Q_ = (size_t)qs_max;
    size_t need = align256(Q_ * g->rowbytes) + (f16 ? align256(Q_ * (size_t)dim * 4) : 0) +
                  align256(Q_ * (size_t)splits * (size_t)cap * 8) + align256(Q_ * (size_t)splits * 8) +
                  align256(Q_ * (size_t)mmax * 4) + align256(Q_ * 4) + align256(Q_ * (size_t)k * 8) +
                  align256(Q_ * (size_t)k * 4);
    if (need > g->ws_bytes) {
        cudaFree(g->ws);
        g->ws = NULL;
        g->ws_bytes = 0;
        CU(cudaMalloc(&g->ws, need), "cudaMalloc(query workspace)");
        g->ws_bytes = need;
    }
    pass_ws *w = &pp->w;
    char *p = g->ws;
    w->q = p, p += align256(Q_ * g->rowbytes);
    if (f16) {
        w->qf = (float *)p;
        p += align256(Q_ * (size_t)dim * 4);
    } else {
        w->qf = (float *)w->q;
    }
    w->keys = (uint64_t *)p, p += align256(Q_ * (size_t)splits * (size_t)cap * 8);
    w->meta = (int *)p, p += align256(Q_ * (size_t)splits * 8);
    w->cand = (uint32_t *)p, p += align256(Q_ * (size_t)mmax * 4);
    w->candn = (int *)p, p += align256(Q_ * 4);
    w->oidx = (int64_t *)p, p += align256(Q_ * (size_t)k * 8);
    w->osc = (float *)p;
    pp->qb_all = qb_all, pp->nc = nc, pp->qs_max = qs_max;
    pp->splits = (int)splits, pp->mmax = mmax, pp->cap = cap;
done:
    return st;
}

/* A resident gallery's tiles for one super-batch, block-major: block b's query upload overlaps
 * the tiles of the blocks before it. */
static imgsim_status tiles_resident(const tile_args *ta, int64_t nb, ims_err *e) {
    const ims_gsearch *g = ta->g;
    const int64_t nc = ta->nc;
    for (int64_t b = 0; b < nb; b++) {
        imgsim_status st = prep_block(ta, b, e);
        for (int64_t t0 = 0; st == IMGSIM_OK && t0 < g->n; t0 += nc)
            st = launch_tile(ta, b, g->d_g, 0, t0, g->n - t0 < nc ? g->n - t0 : nc, t0 + nc >= g->n, e);
        if (st != IMGSIM_OK) return st;
    }
    return IMGSIM_OK;
}

/* A streamed gallery's tiles for one super-batch, segment-major: each segment crosses the bus
 * once per super-batch, double-buffered against the tiles of the one before. */
static imgsim_status tiles_streamed(const tile_args *ta, int64_t nb, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    ims_gsearch *g = ta->g;
    const int64_t nc = ta->nc;
    for (int64_t b = 0; b < nb; b++) {
        st = prep_block(ta, b, e);
        if (st != IMGSIM_OK) goto done;
    }
    const int64_t nseg = (g->n + g->seg_rows - 1) / g->seg_rows;
    int used[2] = {0, 0};
    st = stage_segment(g, 0, used, e);
    if (st != IMGSIM_OK) goto done;
    for (int64_t j = 0; j < nseg; j++) {
        const int slot = (int)(j & 1);
        const int64_t seg0 = j * g->seg_rows;
        const int64_t seglen = g->n - seg0 < g->seg_rows ? g->n - seg0 : g->seg_rows;
        for (int s = 0; s < 2; s++) CU(cudaStreamWaitEvent(g->cs[s], g->ev_h2d[slot], 0), "cudaStreamWaitEvent");
        CU(ims_gs_launch_rownorm_max(g->cs[0], g->d_seg[slot], seglen, g->dim, ta->f16, g->d_gmax), "norm kernel");
        for (int64_t t0 = 0; t0 < seglen; t0 += nc)
            for (int64_t b = 0; b < nb; b++) {
                st = launch_tile(ta, b, g->d_seg[slot], seg0, t0, seglen - t0 < nc ? seglen - t0 : nc,
                                 j + 1 == nseg && t0 + nc >= seglen, e);
                if (st != IMGSIM_OK) goto done;
            }
        for (int s = 0; s < 2; s++) CU(cudaEventRecord(g->ev_use[slot][s], g->cs[s]), "cudaEventRecord");
        if (j + 1 < nseg) {
            st = stage_segment(g, j + 1, used, e);
            if (st != IMGSIM_OK) goto done;
        }
    }
done:
    return st;
}

/* Host buffers of a streamed pass: candidate lists and the re-scoring workers. */
typedef struct pass_host {
    int *candn;      /* [qs_max] */
    uint32_t *cand;  /* [qs_max, mmax], streamed only */
    ims_pool *pool;  /* streamed only */
    host_rescore hr; /* streamed only */
} pass_host;

/* After a super-batch's tiles (ta): its candidate lists, then the exact re-scoring of them on the
 * device (resident gallery) or on the host (streamed); writes idx/score [qs, k] and failed[qs]. */
static imgsim_status finish_superbatch(const tile_args *ta, const pass_plan *pp, int k, pass_host *h, int64_t *idx,
                                       float *score, unsigned char *failed, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    ims_gsearch *g = ta->g;
    const pass_ws *w = ta->w;
    const int64_t qs = ta->qs;
    const int dim = g->dim, f16 = ta->f16, mmax = pp->mmax;
    const double rel = (double)dim * 0x1p-21 + (f16 ? 0x1p-11 : 0x1p-8) + 0x1p-18;
    const double abs_err = 0x1p-24;
    const double amax = f16 ? 32768.0 : 1e30;
    CU(cudaEventRecord(g->ev_join, g->cs[1]), "cudaEventRecord");
    CU(cudaStreamWaitEvent(g->cs[0], g->ev_join, 0), "cudaStreamWaitEvent");
    CU(ims_gs_launch_candidates(g->cs[0], (int)qs, w->keys, w->meta, pp->splits, ta->kp, pp->cap, k, w->q, dim, f16,
                               g->d_gmax, rel, abs_err, amax, w->cand, w->candn, mmax),
       "candidate kernel");
    CU(cudaMemcpyAsync(h->candn, w->candn, (size_t)qs * 4, cudaMemcpyDeviceToHost, g->cs[0]), "copy counts");
    if (g->resident) {
        CU(ims_gs_launch_rescore(g->cs[0], (int)qs, w->cand, w->candn, mmax, g->d_g, f16, w->qf, dim, k, w->oidx, w->osc),
           "rescore kernel");
        CU(cudaMemcpyAsync(idx, w->oidx, (size_t)qs * (size_t)k * 8, cudaMemcpyDeviceToHost, g->cs[0]), "copy results");
        CU(cudaMemcpyAsync(score, w->osc, (size_t)qs * (size_t)k * 4, cudaMemcpyDeviceToHost, g->cs[0]), "copy results");
        CU(cudaStreamSynchronize(g->cs[0]), "search");
    } else {
        CU(cudaMemcpyAsync(h->cand, w->cand, (size_t)qs * (size_t)mmax * 4, cudaMemcpyDeviceToHost, g->cs[0]),
           "copy candidates");
        CU(cudaStreamSynchronize(g->cs[0]), "search");
        host_rescore *hr = &h->hr;
        hr->g = g;
        hr->Q = ta->Qsb;
        hr->cand = h->cand;
        hr->candn = h->candn;
        hr->mmax = mmax;
        hr->k = k;
        hr->idx = idx;
        hr->score = score;
        ims_pool_for(h->pool, qs, host_rescore_one, hr);
    }
    for (int64_t i = 0; i < qs; i++) failed[i] = h->candn[i] < 0;
done:
    return st;
}

/*
 * One pass over queries Q [nq, dim] with candidate lists of kp: writes idx/score [nq, k] for the
 * queries it proves and sets failed[i] = 1 for the others. Queries go in super-batches that fit
 * the workspace (plan_pass); each runs its tiles over the gallery (tiles_resident or
 * tiles_streamed) and then selects and re-scores its candidates (finish_superbatch).
 */
static imgsim_status run_pass(ims_gsearch *g, const void *Q, int64_t nq, int k, int kp, int64_t *idx, float *score,
                              unsigned char *failed, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    const int f16 = g->dt == IMGSIM_F16;
    pass_plan pp;
    pass_host h;
    memset(&h, 0, sizeof h);
    st = plan_pass(g, nq, k, kp, &pp, e);
    if (st != IMGSIM_OK) return st;
    const size_t Q_ = (size_t)pp.qs_max;
    h.candn = ims_malloc_array(Q_, sizeof *h.candn);
    if (!h.candn) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "cuda search: out of memory");
        goto done;
    }
    if (!g->resident) {
        h.cand = ims_malloc_array(Q_ * (size_t)pp.mmax, sizeof *h.cand);
        st = ims_pool_create(&h.pool, 0, e);
        if (st != IMGSIM_OK) goto done;
        int nw = ims_pool_size(h.pool);
        h.hr.qbuf = ims_malloc_array((size_t)nw * (size_t)g->dim, sizeof(float));
        h.hr.cbuf = ims_malloc_array((size_t)nw * (size_t)pp.mmax, sizeof(ims_cand64));
        if (!h.cand || !h.hr.qbuf || !h.hr.cbuf) {
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "cuda search: out of memory");
            goto done;
        }
        CU(cudaMemsetAsync(g->d_gmax, 0, sizeof(unsigned int), g->cs[0]), "cudaMemsetAsync");
    }
    const cudaDataType_t ab_t = f16 ? CUDA_R_16F : CUDA_R_32F;
    const cublasComputeType_t ct = f16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
    ims_log_debug("cuda search pass: %lld queries, k %d, kp %d, tile %lld x %lld, splits %d, super-batch %lld",
                 (long long)nq, k, kp, (long long)pp.qb_all, (long long)pp.nc, pp.splits, (long long)pp.qs_max);

    for (int64_t sb0 = 0; sb0 < nq; sb0 += pp.qs_max) {
        const int64_t qs = nq - sb0 < pp.qs_max ? nq - sb0 : pp.qs_max;
        const void *Qsb = (const char *)Q + (size_t)sb0 * g->rowbytes;
        const int64_t qb = qs < pp.qb_all ? qs : pp.qb_all;
        const int64_t nb = (qs + qb - 1) / qb;
        tile_args ta = {g, &pp.w, Qsb, qs, qb, pp.nc, pp.splits, kp, pp.cap, f16, ab_t, ct};
        st = g->resident ? tiles_resident(&ta, nb, e) : tiles_streamed(&ta, nb, e);
        if (st == IMGSIM_OK) st = finish_superbatch(&ta, &pp, k, &h, idx + sb0 * k, score + sb0 * k, failed + sb0, e);
        if (st != IMGSIM_OK) goto done;
    }
done:
    if (st != IMGSIM_OK) {
        cudaStreamSynchronize(g->cs[0]);
        cudaStreamSynchronize(g->cs[1]);
        cudaStreamSynchronize(g->copy);
    }
    ims_pool_destroy(h.pool);
    free(h.hr.qbuf);
    free(h.hr.cbuf);
    free(h.cand);
    free(h.candn);
    return st;
}

/* Gathers rows sel (count m) of X [*, rowbytes] into a new buffer. */
static void *gather_rows(const void *X, size_t rowbytes, const int64_t *sel, int64_t m) {
    char *out = ims_malloc_array((size_t)(m ? m : 1), rowbytes);
    if (!out) return NULL;
    for (int64_t i = 0; i < m; i++) memcpy(out + (size_t)i * rowbytes, (const char *)X + (size_t)sel[i] * rowbytes, rowbytes);
    return out;
}

/* Re-runs the queries flagged in failed[nq] with kp (on the GPU) or on the CPU (kp 0), writing
 * their results into idx/score and clearing their flags when proven. *redone: how many ran. */
static imgsim_status redo_failed(ims_gsearch *g, const void *Q, int64_t nq, int k, int kp, int64_t *idx,
                                 float *score, unsigned char *failed, int64_t *redone, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    int64_t m = 0;
    for (int64_t i = 0; i < nq; i++) m += failed[i] != 0;
    *redone = m;
    if (m == 0) return IMGSIM_OK;
    int64_t *sel = ims_malloc_array((size_t)m, sizeof *sel);
    int64_t *sidx = ims_malloc_array((size_t)m * (size_t)k, sizeof *sidx);
    float *ssc = ims_malloc_array((size_t)m * (size_t)k, sizeof *ssc);
    unsigned char *sf = ims_calloc((size_t)m, 1);
    void *sq = NULL;
    if (!sel || !sidx || !ssc || !sf) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "cuda search: out of memory");
        goto done;
    }
    for (int64_t i = 0, j = 0; i < nq; i++)
        if (failed[i]) sel[j++] = i;
    sq = gather_rows(Q, g->rowbytes, sel, m);
    if (!sq) {
        st = ims_fail(e, IMGSIM_ERR_NOMEM, "cuda search: out of memory");
        goto done;
    }
    if (kp > 0)
        st = run_pass(g, sq, m, k, kp, sidx, ssc, sf, e);
    else
        st = ims_search_cpu(sidx, ssc, g->host_g, g->n, sq, m, g->dim, g->dt, k, 0, e);
    if (st != IMGSIM_OK) goto done;
    for (int64_t j = 0; j < m; j++) {
        if (sf[j]) continue;
        memcpy(idx + sel[j] * k, sidx + j * k, (size_t)k * sizeof *idx);
        memcpy(score + sel[j] * k, ssc + j * k, (size_t)k * sizeof *score);
        failed[sel[j]] = 0;
    }
done:
    free(sel);
    free(sidx);
    free(ssc);
    free(sf);
    free(sq);
    return st;
}

imgsim_status ims_gsearch_run(ims_gsearch *g, int64_t *idx, float *score, const void *queries, int64_t q, int k,
                             ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    g->cnt_first = g->cnt_second = g->cnt_cpu = 0;
    if (q < 0 || k < 1 || (q > 0 && (!queries || !idx || !score)))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda search: bad arguments (q %lld, k %d)", (long long)q, k);
    if (q == 0) return IMGSIM_OK;
    uint64_t qk;
    if (ims_mul_overflow_u64((uint64_t)q, (uint64_t)k, &qk) || qk > ((uint64_t)1 << 40))
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "cuda search: %lld x %d results", (long long)q, k);
    if (g->n == 0) {
        for (uint64_t i = 0; i < qk; i++) {
            idx[i] = -1;
            score[i] = -INFINITY;
        }
        return IMGSIM_OK;
    }
    if (k >= KP_MAX) { /* longer than the device lists: exact CPU search */
        ims_log_info("cuda search: k = %d is over %d, searching on the CPU", k, KP_MAX - 1);
        g->cnt_cpu = q;
        return ims_search_cpu(idx, score, g->host_g, g->n, queries, q, g->dim, g->dt, k, 0, e);
    }
    cudaError_t ce = cudaSetDevice(g->dev);
    if (ce != cudaSuccess) return ims_fail(e, IMGSIM_ERR_BACKEND, "cuda search: cudaSetDevice: %s", cudaGetErrorString(ce));
    unsigned char *failed = ims_calloc((size_t)q, 1);
    if (!failed) return ims_fail(e, IMGSIM_ERR_NOMEM, "cuda search: out of memory");
    int kp = k + (k / 4 > 64 ? k / 4 : 64);
    if (kp > KP_MAX) kp = KP_MAX;
    st = run_pass(g, queries, q, k, kp, idx, score, failed, e);
    int64_t m2 = 0, m3 = 0;
    if (st == IMGSIM_OK && kp < KP_MAX) st = redo_failed(g, queries, q, k, KP_MAX, idx, score, failed, &m2, e);
    if (st == IMGSIM_OK) st = redo_failed(g, queries, q, k, 0, idx, score, failed, &m3, e);
    if (st == IMGSIM_OK) {
        g->cnt_cpu = m3;
        g->cnt_second = kp < KP_MAX ? m2 - m3 : 0;
        g->cnt_first = q - (kp < KP_MAX ? m2 : m3);
        if (m2 || m3)
            ims_log_debug("cuda search: %lld queries redone with longer lists, %lld on the CPU", (long long)m2,
                         (long long)m3);
    }
    free(failed);
    return st;
}

imgsim_status ims_search_cuda(int64_t *idx, float *score, const void *gallery, int64_t n, const void *queries,
                             int64_t q, int dim, imgsim_dtype dtype, int k, int device_index, size_t gpu_memory,
                             ims_err *e) {
    if (k < 1) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda search: k must be >= 1 (got %d)", k);
    if (q < 0) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda search: negative query count");
    ims_gsearch *g = NULL;
    imgsim_status st = ims_gsearch_create(&g, gallery, n, dim, dtype, device_index, gpu_memory, e);
    if (st != IMGSIM_OK) return st;
    st = ims_gsearch_run(g, idx, score, queries, q, k, e);
    ims_gsearch_free(g);
    return st;
}
