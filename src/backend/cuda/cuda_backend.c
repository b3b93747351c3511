/*
 * cuda_backend.c: the CUDA engine (backend.h "cuda"): cuDNN 9 convolutions with bias, residual
 * and activation fused (cudnnConvolutionBiasActivationForward) or, where that measured slower,
 * cuDNN convolution + one epilogue kernel; the other ops are small kernels (k_*.cu) and cuBLAS.
 *
 * prepare: plan the optimised graph (cuda_compile.c) or load a matching engine file; upload the
 * weights; allocate one activation arena, one workspace and n_slots pinned host/device staging
 * buffers; autotune each convolution at max_batch (cudnnFindConvolutionForwardAlgorithmEx plus
 * timing of the fused call); write the engine file atomically.
 * run/submit/collect: H2D on one stream, the forward pass (a CUDA graph per slot and batch size,
 * captured on first use) on a second, D2H on a third, ordered by events so that a batch's copies
 * overlap the neighbouring batches' compute. Nothing is allocated per batch (except the one-time
 * graph instantiation per new batch size).
 */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_plan.h"

#define MAX_SLOTS 2
#define TUNE_WS_MAX ((size_t)1 << 30)

/* cuDNN objects of one step (convolutions only). */
typedef struct step_desc {
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    int n; /* batch the tensor descriptors are set for */
} step_desc;

typedef struct cuda_impl {
    ims_cuda_plan plan;
    int dev;
    char gpu_name[128];
    imgsim_precision precision;
    int max_batch, normalize, use_graphs;
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    cudnnActivationDescriptor_t act_relu, act_id;
    cudaStream_t s_in, s_comp, s_out;
    uint8_t *d_weights, *d_arena, *d_ws;
    size_t ws_bytes;
    step_desc *sd;
    float *h_in[MAX_SLOTS], *h_out[MAX_SLOTS], *d_in[MAX_SLOTS], *d_out[MAX_SLOTS];
    int slot_n[MAX_SLOTS];
    cudaEvent_t ev_h2d[MAX_SLOTS], ev_comp[MAX_SLOTS], ev_d2h[MAX_SLOTS];
    cudaGraphExec_t *graphs[MAX_SLOTS]; /* [max_batch + 1] */
    uint8_t *graph_seen[MAX_SLOTS];     /* [max_batch + 1]: batch sizes run once without their own graph */
    size_t device_bytes;
    int loaded_from_file;
    double build_seconds;
    char engine_path[4096];
} cuda_impl;

/* ---- error helpers ------------------------------------------------------------------------ */

static imgsim_status cu_fail(ims_err *e, cudaError_t r, const char *what) {
    return ims_fail(e, r == cudaErrorMemoryAllocation ? IMGSIM_ERR_NOMEM : IMGSIM_ERR_BACKEND, "cuda: %s: %s", what,
                   cudaGetErrorString(r));
}
static imgsim_status dnn_fail(ims_err *e, cudnnStatus_t r, const char *what) {
    return ims_fail(e, IMGSIM_ERR_BACKEND, "cuDNN: %s: %s", what, cudnnGetErrorString(r));
}
#define CU(call, what)                                        \
    do {                                                      \
        cudaError_t r_ = (call);                              \
        if (r_ != cudaSuccess) return cu_fail(e, r_, (what)); \
    } while (0)
#define DNN(call, what)                                                 \
    do {                                                                \
        cudnnStatus_t r_ = (call);                                      \
        if (r_ != CUDNN_STATUS_SUCCESS) return dnn_fail(e, r_, (what)); \
    } while (0)
#define KER(call, what)                                                      \
    do {                                                                     \
        int r_ = (call);                                                     \
        if (r_) return cu_fail(e, (cudaError_t)r_, (what));                  \
    } while (0)

int ims_cuda_available(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n > 0 ? n : 0;
}

/* ---- descriptors ---------------------------------------------------------------------------- */

static cudnnDataType_t data_type(const cuda_impl *c) { return c->plan.elt == 2 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT; }

static cudnnMathType_t default_math(const cuda_impl *c) {
    switch (c->precision) {
    case IMGSIM_PREC_FP16: return CUDNN_TENSOR_OP_MATH;
    case IMGSIM_PREC_TF32: return CUDNN_DEFAULT_MATH; /* allows TF32 tensor cores on Ampere+ */
    default: return CUDNN_FMA_MATH;                    /* strict float32 */
    }
}

/* Whether a math type found by cuDNN keeps the requested precision. */
static int math_ok(const cuda_impl *c, cudnnMathType_t m) {
    if (c->precision == IMGSIM_PREC_FP32) return m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
    if (c->precision == IMGSIM_PREC_TF32) return m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    return 1;
}

/* Creates a conv step's descriptors (batch n). */
static imgsim_status conv_desc_init(cuda_impl *c, int si, int n, ims_err *e) {
    const ims_cuda_step *s = &c->plan.steps[si];
    const ims_cuda_tensor *x = &c->plan.tensors[s->in[0]], *y = &c->plan.tensors[s->out];
    step_desc *d = &c->sd[si];
    cudnnDataType_t dt = data_type(c);
    DNN(cudnnCreateTensorDescriptor(&d->x), "create tensor descriptor");
    DNN(cudnnCreateTensorDescriptor(&d->y), "create tensor descriptor");
    DNN(cudnnCreateTensorDescriptor(&d->bias), "create tensor descriptor");
    DNN(cudnnCreateFilterDescriptor(&d->w), "create filter descriptor");
    DNN(cudnnCreateConvolutionDescriptor(&d->conv), "create convolution descriptor");
    DNN(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NHWC, dt, n, x->c, x->h, x->w), "input descriptor");
    DNN(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NHWC, dt, n, y->c, y->h, y->w), "output descriptor");
    DNN(cudnnSetTensor4dDescriptor(d->bias, CUDNN_TENSOR_NCHW, s->fused == 2 ? CUDNN_DATA_FLOAT : dt, 1, y->c, 1, 1),
        "bias descriptor");
    DNN(cudnnSetFilter4dDescriptor(d->w, dt, CUDNN_TENSOR_NHWC, y->c, x->c / s->group, s->kh, s->kw),
        "filter descriptor");
    DNN(cudnnSetConvolution2dDescriptor(d->conv, s->pt, s->pl, s->sh, s->sw, s->dh, s->dw, CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT),
        "convolution descriptor");
    DNN(cudnnSetConvolutionGroupCount(d->conv, s->group), "group count");
    DNN(cudnnSetConvolutionMathType(d->conv, s->algo >= 0 && s->math >= 0 ? (cudnnMathType_t)s->math : default_math(c)),
        "math type");
    int on, oc, oh, ow;
    DNN(cudnnGetConvolution2dForwardOutputDim(d->conv, d->x, d->w, &on, &oc, &oh, &ow), "output size");
    if (oc != y->c || oh != y->h || ow != y->w)
        return ims_fail(e, IMGSIM_ERR_INTERNAL, "cuda: conv step %d: cuDNN output %dx%dx%d, plan %dx%dx%d", si, oc, oh,
                       ow, y->c, y->h, y->w);
    d->n = n;
    return IMGSIM_OK;
}

/* Re-sets a conv step's tensor descriptors for batch n (host-only, cheap). */
static imgsim_status conv_desc_batch(cuda_impl *c, int si, int n, ims_err *e) {
    step_desc *d = &c->sd[si];
    if (d->n == n) return IMGSIM_OK;
    const ims_cuda_step *s = &c->plan.steps[si];
    const ims_cuda_tensor *x = &c->plan.tensors[s->in[0]], *y = &c->plan.tensors[s->out];
    DNN(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NHWC, data_type(c), n, x->c, x->h, x->w), "input descriptor");
    DNN(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NHWC, data_type(c), n, y->c, y->h, y->w), "output descriptor");
    d->n = n;
    return IMGSIM_OK;
}

/* ---- the forward pass ------------------------------------------------------------------------ */

static void *tptr(cuda_impl *c, int t) {
    return t < 0 ? NULL : c->d_arena + (size_t)c->plan.tensors[t].offset * (size_t)c->max_batch;
}

/* Runs conv step si for batch n with its chosen algorithm (fused or conv + epilogue). */
static imgsim_status run_conv(cuda_impl *c, int si, int n, ims_err *e) {
    const ims_cuda_step *s = &c->plan.steps[si];
    step_desc *d = &c->sd[si];
    imgsim_status st = conv_desc_batch(c, si, n, e);
    if (st) return st;
    void *x = tptr(c, s->in[0]), *z = tptr(c, s->in[1]), *y = tptr(c, s->out);
    const void *w = c->d_weights + s->w_off;
    float one = 1.f, zero = 0.f, a2 = z ? 1.f : 0.f;
    const ims_cuda_tensor *ty = &c->plan.tensors[s->out];
    if (s->fused) {
        const void *bias = c->d_weights + (s->fused == 2 ? s->b_off : s->bh_off);
        DNN(cudnnConvolutionBiasActivationForward(c->dnn, &one, d->x, x, d->w, w, d->conv,
                                                  (cudnnConvolutionFwdAlgo_t)s->algo, c->d_ws, c->ws_bytes, &a2, d->y,
                                                  z ? z : y, d->bias, bias, s->act == IS_ACT_RELU ? c->act_relu : c->act_id,
                                                  d->y, y),
            "fused convolution");
        return IMGSIM_OK;
    }
    DNN(cudnnConvolutionForward(c->dnn, &one, d->x, x, d->w, w, d->conv, (cudnnConvolutionFwdAlgo_t)s->algo, c->d_ws,
                                c->ws_bytes, &zero, d->y, y),
        "convolution");
    KER(ims_k_epilogue(y, (const float *)(c->d_weights + s->b_off), z, c->plan.elt, (int64_t)n * ty->h * ty->w, ty->c,
                      s->act, s->act_min, s->act_max, c->s_comp),
        "conv epilogue kernel");
    return IMGSIM_OK;
}

/* Enqueues the whole forward pass for n images of slot on s_comp. */
static imgsim_status forward(cuda_impl *c, int slot, int n, ims_err *e) {
    const ims_cuda_plan *p = &c->plan;
    int elt = p->elt;
    for (int i = 0; i < p->n_steps; i++) {
        const ims_cuda_step *s = &p->steps[i];
        const ims_cuda_tensor *tx = s->in[0] >= 0 ? &p->tensors[s->in[0]] : NULL;
        const ims_cuda_tensor *ty = s->out >= 0 ? &p->tensors[s->out] : NULL;
        void *x = tptr(c, s->in[0]), *x1 = tptr(c, s->in[1]), *y = tptr(c, s->out);
        imgsim_status st;
        switch (s->kind) {
        case IS_CS_INPUT:
            KER(ims_k_input(y, c->d_in[slot], elt, n, p->in_c, ty->c, p->in_h, p->in_w, s->sh == 2, ty->h, ty->w, s->pt,
                           s->pl, c->s_comp),
                "input kernel");
            break;
        case IS_CS_CONV:
            if ((st = run_conv(c, i, n, e))) return st;
            break;
        case IS_CS_MAXPOOL:
        case IS_CS_AVGPOOL:
            KER(ims_k_pool(y, x, elt, s->kind == IS_CS_MAXPOOL, n, tx->h, tx->w, tx->c, ty->h, ty->w, s->kh, s->kw, s->sh,
                          s->sw, s->pt, s->pl, s->count_include_pad, c->s_comp),
                "pool kernel");
            break;
        case IS_CS_GAP:
            KER(ims_k_gap(y, x, elt, n, tx->h * tx->w, tx->c, c->s_comp), "global average pool kernel");
            break;
        case IS_CS_ADD:
        case IS_CS_MUL:
        case IS_CS_SIGMOID:
        case IS_CS_HARDSIGMOID:
        case IS_CS_HARDSWISH:
        case IS_CS_ACT: {
            int op = s->kind == IS_CS_ADD ? 0 : s->kind == IS_CS_MUL ? 1 : s->kind == IS_CS_SIGMOID ? 2
                     : s->kind == IS_CS_HARDSIGMOID ? 4 : s->kind == IS_CS_HARDSWISH ? 5 : 3;
            int bc = x1 && p->tensors[s->in[1]].h * p->tensors[s->in[1]].w == 1 && tx->h * tx->w > 1;
            KER(ims_k_binary(y, x, x1, elt, op, n, tx->h * tx->w, tx->c, bc, s->act, s->act_min, s->act_max, s->alpha,
                             s->beta, c->s_comp),
                "element-wise kernel");
            break;
        }
        case IS_CS_AFFINE:
            KER(ims_k_affine(y, x, (const float *)(c->d_weights + s->w_off), (const float *)(c->d_weights + s->b_off),
                             elt, (int64_t)n * tx->h * tx->w, tx->c, s->act, s->act_min, s->act_max, c->s_comp),
                "batch-norm kernel");
            break;
        case IS_CS_SHUFFLE:
            KER(ims_k_shuffle(y, x, elt, n, tx->h * tx->w, tx->c, s->group, c->s_comp), "channel shuffle kernel");
            break;
        case IS_CS_CSLICE:
            KER(ims_k_cslice(y, x, elt, n, tx->h * tx->w, tx->c, ty->c, s->coff, c->s_comp), "channel slice kernel");
            break;
        case IS_CS_CONCAT:
            KER(ims_k_concat(y, x, elt, n, tx->h * tx->w, tx->c, ty->c, s->coff, c->s_comp), "concat kernel");
            break;
        case IS_CS_FLATTEN:
            KER(ims_k_flatten(y, x, elt, n, tx->h * tx->w, tx->c, c->s_comp), "flatten kernel");
            break;
        case IS_CS_GEMM: {
            /* column-major view: C'[N, n] = W'[K, N]^T . A'[K, n] */
            int K = tx->c, N = ty->c;
            float zero = 0.f;
            cudaDataType_t dt = elt == 2 ? CUDA_R_16F : CUDA_R_32F;
            cublasComputeType_t ct = c->precision == IMGSIM_PREC_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                     : c->precision == IMGSIM_PREC_FP32 ? CUBLAS_COMPUTE_32F_PEDANTIC
                                                                         : CUBLAS_COMPUTE_32F;
            cublasStatus_t r = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, n, K, &s->alpha,
                                            c->d_weights + s->w_off, dt, K, x, dt, K, &zero, y, dt, N, ct,
                                            CUBLAS_GEMM_DEFAULT);
            if (r != CUBLAS_STATUS_SUCCESS)
                return ims_fail(e, IMGSIM_ERR_BACKEND, "cuBLAS: gemm step %d failed (status %d)", i, (int)r);
            KER(ims_k_epilogue(y, (const float *)(c->d_weights + s->b_off), x1, elt, n, N, s->act, s->act_min,
                              s->act_max, c->s_comp),
                "gemm epilogue kernel");
            break;
        }
        case IS_CS_OUTPUT:
            KER(ims_k_output(c->d_out[slot], x, elt, n, tx->h * tx->w, tx->c, s->gap, c->normalize, c->s_comp),
                "output kernel");
            break;
        default:
            return ims_fail(e, IMGSIM_ERR_INTERNAL, "cuda: unknown step kind %d", s->kind);
        }
    }
    return IMGSIM_OK;
}

/* Launches the forward pass for (slot, n): through a CUDA graph captured on first use, or
 * directly when graphs are off or capture failed. */
static imgsim_status launch(cuda_impl *c, int slot, int n, ims_err *e) {
    if (c->use_graphs) {
        cudaGraphExec_t *ge = &c->graphs[slot][n];
        cudaGraphExec_t full = c->graphs[slot][c->max_batch];
        if (!*ge && full && !c->graph_seen[slot][n]) {
            /* the first batch of a new size (a job's last one, typically) runs the full-size graph
             * rather than capturing its own (tens of ms): the extra rows are computed from whatever
             * the input buffer holds (finite: zeroed at allocation, then earlier batches) and
             * dropped, as every step works on each image alone. A size seen again gets a graph. */
            c->graph_seen[slot][n] = 1;
            CU(cudaGraphLaunch(full, c->s_comp), "graph launch");
            return IMGSIM_OK;
        }
        if (!*ge) {
            /* one plain pass first, so that lazily loaded kernels are loaded outside the capture */
            double tc = ims_now();
            imgsim_status st0 = forward(c, slot, n, e);
            if (st0) return st0;
            cudaGraph_t graph = NULL;
            CU(cudaStreamBeginCapture(c->s_comp, cudaStreamCaptureModeThreadLocal), "begin graph capture");
            imgsim_status st = forward(c, slot, n, e);
            cudaError_t r = cudaStreamEndCapture(c->s_comp, &graph);
            if (!st && r == cudaSuccess) r = cudaGraphInstantiate(ge, graph, 0);
            if (graph) cudaGraphDestroy(graph);
            if (st || r != cudaSuccess) {
                (void)cudaGetLastError();
                *ge = NULL;
                ims_log_warn("cuda: capturing a CUDA graph failed (%s); running without graphs",
                            st ? e->msg : cudaGetErrorString(r));
                c->use_graphs = 0;
                return forward(c, slot, n, e);
            }
            ims_log_debug("cuda: captured the graph for slot %d batch %d in %.3f s", slot, n, ims_now() - tc);
        }
        CU(cudaGraphLaunch(*ge, c->s_comp), "graph launch");
        return IMGSIM_OK;
    }
    return forward(c, slot, n, e);
}

/* ---- autotuning -------------------------------------------------------------------------------- */

/* Times fn-like enqueues: runs the step once (warm-up), then reps times between events; returns
 * the mean ms, or a negative value when the call fails. */
static float time_conv(cuda_impl *c, int si, int reps, ims_err *e) {
    cudaEvent_t a, b;
    if (run_conv(c, si, c->max_batch, e)) {
        (void)cudaGetLastError();
        return -1.f;
    }
    if (cudaEventCreate(&a) != cudaSuccess) return -1.f;
    if (cudaEventCreate(&b) != cudaSuccess) {
        cudaEventDestroy(a);
        return -1.f;
    }
    float ms = -1.f;
    /* Time what the engine will run: the calls captured in a CUDA graph, so that the legacy
     * API's host cost per call (~0.1 ms, comparable to a small conv's GPU time) stays out. */
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    int ok = cudaStreamBeginCapture(c->s_comp, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
    if (ok) {
        for (int r = 0; r < reps && ok; r++) ok = run_conv(c, si, c->max_batch, e) == IMGSIM_OK;
        ok = cudaStreamEndCapture(c->s_comp, &graph) == cudaSuccess && ok;
        ok = ok && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
        ok = ok && cudaGraphLaunch(exec, c->s_comp) == cudaSuccess; /* warm-up */
    }
    if (ok) {
        cudaEventRecord(a, c->s_comp);
        for (int r = 0; r < 3 && ok; r++) ok = cudaGraphLaunch(exec, c->s_comp) == cudaSuccess;
        cudaEventRecord(b, c->s_comp);
        if (ok && cudaEventSynchronize(b) == cudaSuccess) {
            cudaEventElapsedTime(&ms, a, b);
            ms /= (float)(3 * reps);
        } else {
            ms = -1.f;
        }
    } else { /* capture refused: time direct launches */
        (void)cudaGetLastError();
        cudaEventRecord(a, c->s_comp);
        ok = 1;
        for (int r = 0; r < reps && ok; r++) ok = run_conv(c, si, c->max_batch, e) == IMGSIM_OK;
        cudaEventRecord(b, c->s_comp);
        if (ok && cudaEventSynchronize(b) == cudaSuccess) {
            cudaEventElapsedTime(&ms, a, b);
            ms /= (float)reps;
        }
    }
    (void)cudaGetLastError();
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms;
}

/* Workspace a conv step needs with its algorithm (max over batch 1 and max_batch). */
static size_t conv_ws(cuda_impl *c, int si) {
    size_t best = 0;
    int ns[2] = {1, c->max_batch};
    for (int k = 0; k < 2; k++) {
        size_t ws = 0;
        if (conv_desc_batch(c, si, ns[k], NULL)) continue;
        if (cudnnGetConvolutionForwardWorkspaceSize(c->dnn, c->sd[si].x, c->sd[si].w, c->sd[si].conv, c->sd[si].y,
                                                    (cudnnConvolutionFwdAlgo_t)c->plan.steps[si].algo,
                                                    &ws) == CUDNN_STATUS_SUCCESS &&
            ws > best)
            best = ws;
    }
    return best;
}

/* Chooses convolution step si's algorithm at max_batch: the fastest plain algorithm from
 * cudnnFindConvolutionForwardAlgorithmEx (+ the epilogue pass) against the fused call; sets the
 * step's algo, math, fused, tuned_ms and ws_bytes and its descriptors to match. */
static imgsim_status tune_conv(cuda_impl *c, int si, ims_err *e) {
    ims_cuda_plan *p = &c->plan;
    ims_cuda_step *s = &p->steps[si];
    step_desc *d = &c->sd[si];
    imgsim_status st = conv_desc_batch(c, si, c->max_batch, e);
    if (st) return st;
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    DNN(cudnnSetConvolutionMathType(d->conv, default_math(c)), "math type");
    DNN(cudnnSetStream(c->dnn, c->s_comp), "set stream");
    cudnnStatus_t fr = cudnnFindConvolutionForwardAlgorithmEx(
        c->dnn, d->x, tptr(c, s->in[0]), d->w, c->d_weights + s->w_off, d->conv, d->y, tptr(c, s->out),
        CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf, c->d_ws, c->ws_bytes);
    if (fr != CUDNN_STATUS_SUCCESS) {
        ims_log_debug("cuDNN: find algorithm for step %d: %s", si, cudnnGetErrorString(fr));
        (void)cudaGetLastError();
        got = 0;
    }
    int best_algo = -1, best_math = default_math(c);
    float best = -1.f;
    for (int k = 0; k < got; k++) {
        if (perf[k].status != CUDNN_STATUS_SUCCESS || perf[k].memory > c->ws_bytes || !math_ok(c, perf[k].mathType))
            continue;
        best_algo = perf[k].algo;
        best_math = perf[k].mathType;
        best = perf[k].time;
        break;
    }
    /* the plain candidate pays one epilogue pass; time it */
    int fused_best = 0;
    float t_find = best, t_plain = -1.f, t_fused[2] = {-1.f, -1.f};
    int plain_algo = best_algo;
    if (best_algo >= 0) {
        s->algo = best_algo, s->math = best_math, s->fused = 0;
        DNN(cudnnSetConvolutionMathType(d->conv, (cudnnMathType_t)best_math), "math type");
        float t = time_conv(c, si, 10, e);
        t_plain = t;
        if (t >= 0) best = t;
        else best_algo = -1;
    }
    /* fused candidates: ReLU needs IMPLICIT_PRECOMP_GEMM; identity may use any algorithm. (Trying
     * every algorithm for the fused call was measured on an H200: only IMPLICIT_PRECOMP_GEMM
     * ever won, and the build took 2.5 s instead of 1.1 s.) */
    int cands[2], ncand = 0;
    cands[ncand++] = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    if (s->act == IS_ACT_NONE && best_algo >= 0 && best_algo != cands[0]) cands[ncand++] = best_algo;
    if (s->act != IS_ACT_CLIP) {
        for (int k = 0; k < ncand; k++) {
            for (int bias_f32 = 0; bias_f32 < (p->elt == 2 ? 2 : 1); bias_f32++) {
                int fused = bias_f32 ? 2 : 1;
                DNN(cudnnSetTensor4dDescriptor(d->bias, CUDNN_TENSOR_NCHW,
                                               fused == 2 ? CUDNN_DATA_FLOAT : data_type(c), 1,
                                               p->tensors[s->out].c, 1, 1),
                    "bias descriptor");
                DNN(cudnnSetConvolutionMathType(d->conv, default_math(c)), "math type");
                size_t ws = 0;
                if (cudnnGetConvolutionForwardWorkspaceSize(c->dnn, d->x, d->w, d->conv, d->y,
                                                            (cudnnConvolutionFwdAlgo_t)cands[k],
                                                            &ws) != CUDNN_STATUS_SUCCESS ||
                    ws > c->ws_bytes)
                    continue;
                int save_algo = s->algo, save_math = s->math, save_fused = s->fused;
                s->algo = cands[k], s->math = default_math(c), s->fused = fused;
                ims_err tmp;
                float t = time_conv(c, si, 10, &tmp);
                if (t >= 0 && (t_fused[0] < 0 || t < t_fused[0])) t_fused[0] = t, t_fused[1] = (float)cands[k];
                if (t >= 0 && (best < 0 || t < best)) {
                    best = t;
                    fused_best = fused;
                    best_algo = cands[k];
                    best_math = default_math(c);
                    break; /* this bias type works; no need to try the other */
                }
                s->algo = save_algo, s->math = save_math, s->fused = save_fused;
                if (t >= 0) break;
            }
        }
    }
    if (best_algo < 0)
        return ims_fail(e, IMGSIM_ERR_BACKEND, "cuDNN: no usable algorithm for convolution step %d", si);
    s->algo = best_algo, s->math = best_math, s->fused = fused_best;
    s->tuned_ms = best;
    {
        const ims_cuda_tensor *tx = &p->tensors[s->in[0]], *ty = &p->tensors[s->out];
        ims_log_debug("cuda: conv %2d %dx%d/%d %4d->%4d %3dx%3d act %d res %d: find algo %d %.3f ms, +epilogue "
                     "%.3f ms; best fused %.3f ms (algo %d) -> %s algo %d (%.3f ms)",
                     si, s->kh, s->kw, s->sh, tx->c, ty->c, ty->h, ty->w, s->act, s->in[1] >= 0, plain_algo,
                     t_find, t_plain, t_fused[0], (int)t_fused[1], s->fused ? "fused" : "plain", s->algo, best);
    }
    DNN(cudnnSetConvolutionMathType(d->conv, (cudnnMathType_t)s->math), "math type");
    DNN(cudnnSetTensor4dDescriptor(d->bias, CUDNN_TENSOR_NCHW, s->fused == 2 ? CUDNN_DATA_FLOAT : data_type(c), 1,
                                   p->tensors[s->out].c, 1, 1),
        "bias descriptor");
    s->ws_bytes = (int64_t)conv_ws(c, si);
    return IMGSIM_OK;
}

/* Chooses each convolution's algorithm at max_batch (tune_conv) in a workspace of up to a quarter
 * of the free memory, and sets the plan's workspace to the largest any step needs. */
static imgsim_status autotune(cuda_impl *c, ims_err *e) {
    ims_cuda_plan *p = &c->plan;
    size_t free_b = 0, total_b = 0;
    CU(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    size_t cap = free_b / 4 < TUNE_WS_MAX ? free_b / 4 : TUNE_WS_MAX;
    cudaFree(c->d_ws);
    c->d_ws = NULL;
    CU(cudaMalloc((void **)&c->d_ws, cap ? cap : 1), "workspace for autotuning");
    c->ws_bytes = cap;
    KER(ims_k_fill(c->d_arena, p->elt, p->arena_per_image * c->max_batch / p->elt, 12345u, c->s_comp), "fill");
    float total_ms = 0;
    int n_fused = 0, n_conv = 0;
    p->ws_bytes = 0;
    for (int si = 0; si < p->n_steps; si++) {
        ims_cuda_step *s = &p->steps[si];
        if (s->kind != IS_CS_CONV) continue;
        imgsim_status st = tune_conv(c, si, e);
        if (st) return st;
        n_conv++;
        total_ms += s->tuned_ms;
        n_fused += s->fused != 0;
    }
    for (int si = 0; si < p->n_steps; si++)
        if (p->steps[si].ws_bytes > p->ws_bytes) p->ws_bytes = p->steps[si].ws_bytes;
    ims_log_info("cuda: tuned %d convolutions at batch %d (%d fused in cuDNN): %.3f ms of convolution per batch", n_conv,
                c->max_batch, n_fused, total_ms);
    CU(cudaStreamSynchronize(c->s_comp), "autotune");
    return IMGSIM_OK;
}

/* ---- setup --------------------------------------------------------------------------------------- */

/* Fills the key from the device and library versions. */
static imgsim_status make_key(cuda_impl *c, const ims_graph *g, ims_cuda_key *k, ims_err *e) {
    memset(k, 0, sizeof *k);
    struct cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, c->dev), "cudaGetDeviceProperties");
    k->format_version = IS_CUDA_ENGINE_VERSION;
    snprintf(k->model_sha256, sizeof k->model_sha256, "%s", g->sha256);
    snprintf(k->layer, sizeof k->layer, "%s", g->vals[g->output].name ? g->vals[g->output].name : "");
    k->in_c = g->in_c, k->in_h = g->in_h, k->in_w = g->in_w;
    snprintf(k->gpu_name, sizeof k->gpu_name, "%.127s", prop.name);
    snprintf(c->gpu_name, sizeof c->gpu_name, "%.127s", prop.name);
    k->cc_major = prop.major, k->cc_minor = prop.minor;
    CU(cudaDriverGetVersion(&k->driver_version), "cudaDriverGetVersion");
    CU(cudaRuntimeGetVersion(&k->runtime_version), "cudaRuntimeGetVersion");
    k->cudnn_version = (int64_t)cudnnGetVersion();
    int ma = 0, mi = 0, pa = 0;
    cublasGetProperty(MAJOR_VERSION, &ma);
    cublasGetProperty(MINOR_VERSION, &mi);
    cublasGetProperty(PATCH_LEVEL, &pa);
    k->cublas_version = (int64_t)ma * 10000 + mi * 100 + pa;
    k->precision = c->precision;
    k->max_batch = c->max_batch;
    return IMGSIM_OK;
}

/* Bytes of device memory per image of batch capacity (arena + staging of every slot). */
static size_t bytes_per_image(const cuda_impl *c) {
    const ims_cuda_plan *p = &c->plan;
    return (size_t)p->arena_per_image +
           MAX_SLOTS * ((size_t)p->in_c * p->in_h * p->in_w * 4 + (size_t)p->dim * 4);
}

/* Checks the batch capacity against free device memory; with batch_auto shrinks it. */
static imgsim_status fit_memory(cuda_impl *c, int batch_auto, size_t ws_guess, ims_err *e) {
    size_t free_b = 0, total_b = 0;
    CU(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    size_t fixed = (size_t)c->plan.weights_bytes + ws_guess + ((size_t)64 << 20); /* + slack for cuDNN/cuBLAS */
    size_t per = bytes_per_image(c);
    size_t usable = free_b > fixed ? (size_t)((free_b - fixed) * 0.95) : 0;
    int64_t fits = per ? (int64_t)(usable / per) : 0;
    if (fits >= c->max_batch) return IMGSIM_OK;
    if (batch_auto && fits >= 1) {
        ims_log_info("cuda: batch size %d does not fit in %.1f GiB free device memory; using %lld", c->max_batch,
                    free_b / 1073741824.0, (long long)fits);
        c->max_batch = (int)fits;
        return IMGSIM_OK;
    }
    return ims_fail(e, IMGSIM_ERR_TOO_LARGE,
                   "cuda: batch size %d needs %.2f GiB of device memory (%.1f MiB per image + %.1f MiB weights/"
                   "workspace) but %s has %.2f GiB free; the largest batch that fits is %lld",
                   c->max_batch, ((double)per * c->max_batch + fixed) / 1073741824.0, per / 1048576.0,
                   fixed / 1048576.0, c->gpu_name, free_b / 1073741824.0, (long long)fits);
}

/* Allocates the device weights, arena, slots, events and descriptors for the current plan. */
static imgsim_status allocate(cuda_impl *c, ims_err *e) {
    const ims_cuda_plan *p = &c->plan;
    size_t in_bytes = (size_t)c->max_batch * p->in_c * p->in_h * p->in_w * 4;
    size_t out_bytes = (size_t)c->max_batch * (size_t)p->dim * 4;
    CU(cudaMalloc((void **)&c->d_weights, p->weights_bytes ? (size_t)p->weights_bytes : 1), "weights");
    CU(cudaMemcpy(c->d_weights, p->weights, (size_t)p->weights_bytes, cudaMemcpyHostToDevice), "weights upload");
    CU(cudaMalloc((void **)&c->d_arena, (size_t)p->arena_per_image * c->max_batch + 1), "activation arena");
    for (int s = 0; s < MAX_SLOTS; s++) {
        CU(cudaHostAlloc((void **)&c->h_in[s], in_bytes, cudaHostAllocDefault), "pinned input buffer");
        CU(cudaHostAlloc((void **)&c->h_out[s], out_bytes, cudaHostAllocDefault), "pinned output buffer");
        CU(cudaMalloc((void **)&c->d_in[s], in_bytes), "device input buffer");
        CU(cudaMalloc((void **)&c->d_out[s], out_bytes), "device output buffer");
        CU(cudaEventCreateWithFlags(&c->ev_h2d[s], cudaEventDisableTiming), "event");
        CU(cudaEventCreateWithFlags(&c->ev_comp[s], cudaEventDisableTiming), "event");
        CU(cudaEventCreateWithFlags(&c->ev_d2h[s], cudaEventDisableTiming), "event");
        CU(cudaMemset(c->d_in[s], 0, in_bytes), "device input buffer");
        c->graphs[s] = ims_calloc((size_t)c->max_batch + 1, sizeof(cudaGraphExec_t));
        c->graph_seen[s] = ims_calloc((size_t)c->max_batch + 1, 1);
        if (!c->graphs[s] || !c->graph_seen[s]) return ims_fail(e, IMGSIM_ERR_NOMEM, "cuda: out of memory");
    }
    c->sd = ims_calloc((size_t)p->n_steps + 1, sizeof *c->sd);
    if (!c->sd) return ims_fail(e, IMGSIM_ERR_NOMEM, "cuda: out of memory");
    for (int i = 0; i < p->n_steps; i++) {
        if (p->steps[i].kind != IS_CS_CONV) continue;
        imgsim_status st = conv_desc_init(c, i, c->max_batch, e);
        if (st) return st;
    }
    c->device_bytes = (size_t)p->weights_bytes + (size_t)p->arena_per_image * c->max_batch +
                      MAX_SLOTS * (in_bytes + out_bytes);
    return IMGSIM_OK;
}

/* Sizes the workspace to what the chosen algorithms need and hands it to cuBLAS as well. */
static imgsim_status set_workspace(cuda_impl *c, ims_err *e) {
    size_t need = (size_t)c->plan.ws_bytes;
    size_t blas = (size_t)32 << 20;
    if (need < blas) need = blas;
    if (c->d_ws && c->ws_bytes == need) return IMGSIM_OK;
    cudaFree(c->d_ws);
    c->d_ws = NULL;
    CU(cudaMalloc((void **)&c->d_ws, need), "workspace");
    c->ws_bytes = need;
    if (c->blas && cublasSetWorkspace(c->blas, c->d_ws, need) != CUBLAS_STATUS_SUCCESS)
        return ims_fail(e, IMGSIM_ERR_BACKEND, "cuBLAS: cannot set the workspace");
    return IMGSIM_OK;
}

/* Chooses the engine file path: explicit, in the cache folder, or none. */
static void engine_path(cuda_impl *c, const ims_backend_cfg *cfg) {
    c->engine_path[0] = 0;
    if (cfg->engine_file && *cfg->engine_file) {
        snprintf(c->engine_path, sizeof c->engine_path, "%s", cfg->engine_file);
        return;
    }
    if (cfg->engine_cache && !strcmp(cfg->engine_cache, "off")) return;
    char *dir = cfg->engine_cache && *cfg->engine_cache ? ims_strdup(cfg->engine_cache) : ims_cache_dir();
    if (!dir) return;
    char *path = ims_cuda_cache_path(dir, &c->plan.key);
    if (path) snprintf(c->engine_path, sizeof c->engine_path, "%s", path);
    free(path);
    free(dir);
}

static imgsim_status cuda_prepare(ims_backend *b, const ims_graph *g, const ims_backend_cfg *cfg, ims_err *e) {
    cuda_impl *c = b->impl;
    double t0 = ims_now();
    imgsim_status st;
    c->dev = cfg->device_index;
    c->precision = cfg->precision;
    if (c->precision == IMGSIM_PREC_BF16)
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "cuda: precision bf16 is not supported by the CUDA engine (use fp16, tf32 or fp32)");
    if (cfg->max_batch < 1)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda backend: batch size %d out of range", cfg->max_batch);
    c->max_batch = cfg->max_batch; /* (lowered below with batch_auto when memory is short) */
    c->normalize = cfg->normalize;
    c->use_graphs = ims_tuning_get()->cuda_graphs;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        (void)cudaGetLastError();
        return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "cuda: no CUDA device found");
    }
    if (c->dev < 0 || c->dev >= ndev)
        return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "cuda: device %d does not exist (%d device%s)", c->dev, ndev,
                       ndev == 1 ? "" : "s");
    CU(cudaSetDevice(c->dev), "cudaSetDevice");
    DNN(cudnnCreate(&c->dnn), "cudnnCreate");

    CU(cudaStreamCreateWithFlags(&c->s_in, cudaStreamNonBlocking), "stream");
    CU(cudaStreamCreateWithFlags(&c->s_comp, cudaStreamNonBlocking), "stream");
    CU(cudaStreamCreateWithFlags(&c->s_out, cudaStreamNonBlocking), "stream");
    DNN(cudnnSetStream(c->dnn, c->s_comp), "cudnnSetStream");
    DNN(cudnnCreateActivationDescriptor(&c->act_relu), "activation descriptor");
    DNN(cudnnCreateActivationDescriptor(&c->act_id), "activation descriptor");
    DNN(cudnnSetActivationDescriptor(c->act_relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0), "relu");
    DNN(cudnnSetActivationDescriptor(c->act_id, CUDNN_ACTIVATION_IDENTITY, CUDNN_NOT_PROPAGATE_NAN, 0.0), "identity");

    double t_init = ims_now();
    ims_cuda_key key;
    if ((st = make_key(c, g, &key, e))) return st;
    c->plan.key = key;
    engine_path(c, cfg);

    /* 1. a matching engine file? */
    int loaded = 0;
    if (c->engine_path[0] && ims_path_exists(c->engine_path)) {
        ims_err le;
        ims_cuda_plan fp;
        char why[512];
        if (ims_cuda_plan_load(&fp, c->engine_path, &le)) {
            ims_log_warn("engine file %s is unusable (%s); rebuilding", c->engine_path, le.msg);
        } else if (!ims_cuda_key_equal(&fp.key, &key, why, sizeof why)) {
            ims_log_warn("engine file %s is for %s; rebuilding", c->engine_path, why);
            ims_cuda_plan_free(&fp);
        } else {
            c->plan = fp;
            loaded = 1;
        }
    }
    /* 2. else plan from the graph (unless the caller only has a stub of it) */
    if (!loaded && cfg->cached_only)
        return ims_fail(e, IMGSIM_ERR_MISMATCH, "cuda: no matching engine file%s%s", c->engine_path[0] ? " at " : "",
                       c->engine_path);
    if (!loaded) {
        if ((st = ims_cuda_compile(&c->plan, g, c->precision == IMGSIM_PREC_FP16 ? 2 : 4, e))) return st;
        c->plan.key = key;
        for (int i = 0; i < c->plan.n_steps; i++) c->plan.steps[i].algo = -1, c->plan.steps[i].math = -1;
    }
    /* cuBLAS only for plans with a GEMM (its handle costs start-up time) */
    for (int i = 0; i < c->plan.n_steps && !c->blas; i++) {
        if (c->plan.steps[i].kind != IS_CS_GEMM) continue;
        if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS)
            return ims_fail(e, IMGSIM_ERR_BACKEND, "cuBLAS: cublasCreate failed");
        cublasSetStream(c->blas, c->s_comp);
        if (c->precision == IMGSIM_PREC_FP32) cublasSetMathMode(c->blas, CUBLAS_PEDANTIC_MATH);
    }
    double t_plan = ims_now();
    if ((st = fit_memory(c, cfg->batch_auto, loaded ? (size_t)c->plan.ws_bytes : ((size_t)256 << 20), e))) return st;
    if ((st = allocate(c, e))) return st;
    double t_alloc = ims_now();
    if (!loaded) {
        if ((st = autotune(c, e))) return st;
        if ((st = set_workspace(c, e))) return st;
        if (c->engine_path[0]) {
            ims_err we;
            if (ims_cuda_plan_save(&c->plan, c->engine_path, &we))
                ims_log_warn("cuda: cannot write engine file: %s", we.msg);
            else
                ims_log_info("cuda: wrote engine file %s", c->engine_path);
        }
    } else {
        if ((st = set_workspace(c, e))) return st;
        ims_log_info("cuda: loaded engine file %s", c->engine_path);
    }
    c->device_bytes += c->ws_bytes;
    c->loaded_from_file = loaded;
    /* warm-up: every slot's full-batch pass once, which loads the kernels (lazily loaded by CUDA)
     * and captures the slots' CUDA graphs, so that the first batches run at full speed */
    double t_warm = ims_now();
    st = IMGSIM_OK;
    for (int s = 0; s < MAX_SLOTS && !st; s++) st = launch(c, s, c->max_batch, e);
    if (st) return st;
    CU(cudaDeviceSynchronize(), "prepare");
    t_warm = ims_now() - t_warm;
    c->build_seconds = ims_now() - t0;
    ims_log_debug("cuda: prepare %.3f s: device+handles %.3f, %s %.3f, allocate %.3f, %s %.3f (warm-up %.3f)",
                 c->build_seconds, t_init - t0, loaded ? "load file" : "plan", t_plan - t_init, t_alloc - t_plan,
                 loaded ? "finish" : "autotune+write", ims_now() - t_alloc, t_warm);
    b->dim = c->plan.dim;
    b->in_c = c->plan.in_c, b->in_h = c->plan.in_h, b->in_w = c->plan.in_w;
    return IMGSIM_OK;
}

/* ---- running ------------------------------------------------------------------------------------ */

static float *cuda_input_buffer(ims_backend *b, int slot) {
    cuda_impl *c = b->impl;
    return slot >= 0 && slot < MAX_SLOTS ? c->h_in[slot] : NULL;
}

static imgsim_status check_slot(const cuda_impl *c, int slot, int n, ims_err *e) {
    if (slot < 0 || slot >= MAX_SLOTS || n < 1 || n > c->max_batch)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda: submit slot %d with %d images (max batch %d)", slot, n,
                       c->max_batch);
    return IMGSIM_OK;
}

/* Runs slot's batch of n once ready (an event on the input, or NULL) and copies its features
 * back, all asynchronously; cuda_collect waits for them. */
static imgsim_status run_slot(cuda_impl *c, int slot, int n, cudaEvent_t ready, ims_err *e) {
    imgsim_status st = check_slot(c, slot, n, e);
    if (st) return st;
    /* the engine's GPU on whatever thread drives it (several engines on several GPUs in one
     * process: imgsim_extract_engines); a no-op when it is already current */
    CU(cudaSetDevice(c->dev), "cudaSetDevice");
    if (ready) CU(cudaStreamWaitEvent(c->s_comp, ready, 0), "event wait");
    if ((st = launch(c, slot, n, e))) return st;
    CU(cudaEventRecord(c->ev_comp[slot], c->s_comp), "event");
    CU(cudaStreamWaitEvent(c->s_out, c->ev_comp[slot], 0), "event wait");
    CU(cudaMemcpyAsync(c->h_out[slot], c->d_out[slot], (size_t)n * (size_t)c->plan.dim * 4, cudaMemcpyDeviceToHost,
                       c->s_out),
       "output copy");
    CU(cudaEventRecord(c->ev_d2h[slot], c->s_out), "event");
    c->slot_n[slot] = n;
    return IMGSIM_OK;
}

static imgsim_status cuda_submit(ims_backend *b, int slot, int n, ims_err *e) {
    cuda_impl *c = b->impl;
    imgsim_status st = check_slot(c, slot, n, e);
    if (st) return st;
    const ims_cuda_plan *p = &c->plan;
    size_t in_bytes = (size_t)n * p->in_c * p->in_h * p->in_w * 4;
    CU(cudaSetDevice(c->dev), "cudaSetDevice");
    CU(cudaMemcpyAsync(c->d_in[slot], c->h_in[slot], in_bytes, cudaMemcpyHostToDevice, c->s_in), "input copy");
    CU(cudaEventRecord(c->ev_h2d[slot], c->s_in), "event");
    return run_slot(c, slot, n, c->ev_h2d[slot], e);
}

static imgsim_status cuda_collect(ims_backend *b, int slot, float *out, ims_err *e) {
    cuda_impl *c = b->impl;
    if (slot < 0 || slot >= MAX_SLOTS || c->slot_n[slot] <= 0)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda: collect of slot %d that was not submitted", slot);
    CU(cudaSetDevice(c->dev), "cudaSetDevice");
    CU(cudaEventSynchronize(c->ev_d2h[slot]), "inference");
    CU(cudaGetLastError(), "inference");
    memcpy(out, c->h_out[slot], (size_t)c->slot_n[slot] * (size_t)c->plan.dim * 4);
    c->slot_n[slot] = 0;
    return IMGSIM_OK;
}

/* The slot's device input buffer, for producers that write it on the GPU (GPU decoding). */
static void *cuda_device_input(ims_backend *b, int slot) {
    cuda_impl *c = b->impl;
    return slot >= 0 && slot < MAX_SLOTS ? c->d_in[slot] : NULL;
}

/* Like cuda_submit, but the input is already in the slot's device buffer: the forward pass
 * waits for the producer's event instead of a host copy. */
static imgsim_status cuda_submit_device(ims_backend *b, int slot, int n, void *ready_event, ims_err *e) {
    return run_slot(b->impl, slot, n, (cudaEvent_t)ready_event, e);
}

static int cuda_device_index_of(const ims_backend *b) {
    return ((const cuda_impl *)b->impl)->dev;
}

static imgsim_status cuda_run(ims_backend *b, const float *input, int n, float *out, ims_err *e) {
    cuda_impl *c = b->impl;
    if (n < 1 || n > c->max_batch)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda: batch of %d images (max batch %d)", n, c->max_batch);
    const ims_cuda_plan *p = &c->plan;
    memcpy(c->h_in[0], input, (size_t)n * p->in_c * p->in_h * p->in_w * 4);
    imgsim_status st = cuda_submit(b, 0, n, e);
    return st ? st : cuda_collect(b, 0, out, e);
}

imgsim_status ims_cuda_bench_device(ims_backend *b, int n, int iters, double *ms, ims_err *e) {
    cuda_impl *c = b->impl;
    if (n < 1 || n > c->max_batch || iters < 1) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "cuda bench: bad batch");
    const ims_cuda_plan *p = &c->plan;
    KER(ims_k_fill(c->d_in[0], 4, (int64_t)c->max_batch * p->in_c * p->in_h * p->in_w, 777u, c->s_comp), "fill");
    imgsim_status st;
    for (int i = 0; i < 3; i++)
        if ((st = launch(c, 0, n, e))) return st;
    cudaEvent_t a, z;
    CU(cudaEventCreate(&a), "event");
    CU(cudaEventCreate(&z), "event");
    cudaEventRecord(a, c->s_comp);
    for (int i = 0; i < iters; i++)
        if ((st = launch(c, 0, n, e))) return st;
    cudaEventRecord(z, c->s_comp);
    CU(cudaEventSynchronize(z), "bench");
    float t = 0;
    cudaEventElapsedTime(&t, a, z);
    cudaEventDestroy(a);
    cudaEventDestroy(z);
    *ms = t / iters;
    return IMGSIM_OK;
}

const char *ims_cuda_engine_path(const ims_backend *b) {
    const cuda_impl *c = b->impl;
    return c->engine_path;
}

static void cuda_info(const ims_backend *b, imgsim_engine_info *info) {
    const cuda_impl *c = b->impl;
    snprintf(info->device_name, sizeof info->device_name, "%s", c->gpu_name);
    info->device_bytes = c->device_bytes;
    info->loaded_from_file = c->loaded_from_file;
    info->max_batch = c->max_batch;
    info->build_seconds = c->build_seconds;
}

static void cuda_destroy(ims_backend *b) {
    if (!b) return;
    cuda_impl *c = b->impl;
    if (c) {
        if (c->s_comp) cudaStreamSynchronize(c->s_comp);
        if (c->s_out) cudaStreamSynchronize(c->s_out);
        for (int s = 0; s < MAX_SLOTS; s++) {
            if (c->graphs[s]) {
                for (int n = 0; n <= c->max_batch; n++)
                    if (c->graphs[s][n]) cudaGraphExecDestroy(c->graphs[s][n]);
                free(c->graphs[s]);
            }
            free(c->graph_seen[s]);
            if (c->h_in[s]) cudaFreeHost(c->h_in[s]);
            if (c->h_out[s]) cudaFreeHost(c->h_out[s]);
            cudaFree(c->d_in[s]);
            cudaFree(c->d_out[s]);
            if (c->ev_h2d[s]) cudaEventDestroy(c->ev_h2d[s]);
            if (c->ev_comp[s]) cudaEventDestroy(c->ev_comp[s]);
            if (c->ev_d2h[s]) cudaEventDestroy(c->ev_d2h[s]);
        }
        if (c->sd) {
            for (int i = 0; i < c->plan.n_steps; i++) {
                step_desc *d = &c->sd[i];
                if (d->x) cudnnDestroyTensorDescriptor(d->x);
                if (d->y) cudnnDestroyTensorDescriptor(d->y);
                if (d->bias) cudnnDestroyTensorDescriptor(d->bias);
                if (d->w) cudnnDestroyFilterDescriptor(d->w);
                if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
            }
            free(c->sd);
        }
        cudaFree(c->d_weights);
        cudaFree(c->d_arena);
        cudaFree(c->d_ws);
        if (c->act_relu) cudnnDestroyActivationDescriptor(c->act_relu);
        if (c->act_id) cudnnDestroyActivationDescriptor(c->act_id);
        if (c->dnn) cudnnDestroy(c->dnn);
        if (c->blas) cublasDestroy(c->blas);
        if (c->s_in) cudaStreamDestroy(c->s_in);
        if (c->s_comp) cudaStreamDestroy(c->s_comp);
        if (c->s_out) cudaStreamDestroy(c->s_out);
        ims_cuda_plan_free(&c->plan);
        free(c);
    }
    free(b);
}

static const ims_backend_ops cuda_ops = {
    .name = "cuda",
    .prepare = cuda_prepare,
    .run = cuda_run,
    .n_slots = MAX_SLOTS,
    .input_buffer = cuda_input_buffer,
    .submit = cuda_submit,
    .collect = cuda_collect,
    .device_input = cuda_device_input,
    .submit_device = cuda_submit_device,
    .device_index_of = cuda_device_index_of,
    .info = cuda_info,
    .destroy = cuda_destroy,
};

imgsim_status ims_backend_cuda_new(ims_backend **out, ims_err *e) {
    *out = NULL;
    if (!ims_cuda_available()) return ims_fail(e, IMGSIM_ERR_NO_DEVICE, "cuda: no CUDA device found");
    ims_backend *b = ims_calloc(1, sizeof *b);
    cuda_impl *c = ims_calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "cuda: out of memory");
    }
    b->ops = &cuda_ops;
    b->impl = c;
    *out = b;
    return IMGSIM_OK;
}
