/*
 * cuda_plan.h: the CUDA engine's execution plan and its engine file, in plain C (no CUDA types),
 * so that the key, serialisation and checksum logic can be unit-tested on machines without a GPU.
 *
 * A plan is what the CUDA backend executes: a list of steps over activation tensors (NHWC, the
 * engine's element type, batch outermost) placed in one device arena, plus one blob of weights
 * already in device layout and precision (conv filters OHWI, biases float32 and, for fp16, half),
 * plus the convolution algorithms chosen by autotuning. The engine file is this plan behind a
 * header carrying the key it was built for, followed by a SHA-256 checksum of everything before it
 * (over the SHA-256s of its 4 MiB chunks, hashed in parallel).
 *
 * Arena layout: each tensor has a per-image slot (offset and size are multiples of 256 bytes);
 * for a batch capacity B the tensor lives at B * offset and takes B * size bytes, so the plan is
 * independent of the batch size and the arena for B images is B * arena_per_image bytes.
 */
#ifndef IMGSIM_CUDA_PLAN_H
#define IMGSIM_CUDA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define IS_CUDA_ENGINE_MAGIC "IMGSIMCE"
#define IS_CUDA_ENGINE_VERSION 4
#define IS_CUDA_ALIGN 256

/* What an engine file was built for; every field must match for the file to be used. */
typedef struct ims_cuda_key {
    int32_t format_version;
    char model_sha256[65];
    char layer[256];      /* name of the output value */
    int32_t in_c, in_h, in_w; /* network input size */
    char gpu_name[128];
    int32_t cc_major, cc_minor;
    int32_t driver_version;  /* cudaDriverGetVersion */
    int32_t runtime_version; /* cudaRuntimeGetVersion */
    int64_t cudnn_version;   /* cudnnGetVersion */
    int64_t cublas_version;  /* cublasGetProperty, major*10000+minor*100+patch */
    int32_t precision;       /* imgsim_precision */
    int32_t max_batch;
} ims_cuda_key;

typedef enum ims_cuda_step_kind {
    IS_CS_INPUT = 0, /* staging float32 NCHW -> tensor out (NHWC, engine dtype) */
    IS_CS_CONV,      /* out = act(conv(in0, w) + bias + in1) ; in1 = residual or -1 */
    IS_CS_MAXPOOL,
    IS_CS_AVGPOOL,
    IS_CS_GAP,       /* [n,h,w,c] -> [n,1,1,c] */
    IS_CS_ADD,       /* out = in0 + in1 (in1 same shape or [n,1,1,c]), then act */
    IS_CS_MUL,       /* out = in0 * in1 (in1 same shape or [n,1,1,c]), then act */
    IS_CS_SIGMOID,
    IS_CS_ACT,       /* standalone ReLU / Clip: out = act(in0) */
    IS_CS_CONCAT,    /* channel concat of in0, in1 (chained for more inputs) */
    IS_CS_FLATTEN,   /* NHWC [n,h,w,c] -> [n, c*h*w] in NCHW order */
    IS_CS_GEMM,      /* out[n, N] = act(alpha * in0[n, K] . W^T + bias) ; W stored [N, K] */
    IS_CS_OUTPUT,    /* float32 [n, dim] (NCHW flatten order), optional fused GAP, L2 norm */
    IS_CS_HARDSIGMOID, /* out = max(0, min(1, alpha * in0 + beta)), then act */
    IS_CS_HARDSWISH,   /* out = in0 * max(0, min(1, in0 / 6 + 1 / 2)), then act */
    IS_CS_AFFINE,      /* out = act(in0 * scale[c] + shift[c]): a BatchNormalization no Conv
                          takes (DenseNet's BN before ReLU and Conv); scale float32 at w_off,
                          shift float32 at b_off */
    IS_CS_SHUFFLE,     /* channel shuffle: in0's channels seen as [group][c / group] -> out's as
                          [c / group][group] (ShuffleNet's Reshape 5-D, Transpose, Reshape) */
    IS_CS_CSLICE,      /* out = channels [coff, coff + out.c) of in0 (Slice on the channel axis) */
    IS_CS_COUNT
} ims_cuda_step_kind;

typedef struct ims_cuda_tensor {
    int32_t c, h, w;
    int64_t offset; /* per-image byte offset in the arena */
    int64_t size;   /* per-image bytes (aligned) */
} ims_cuda_tensor;

typedef struct ims_cuda_step {
    int32_t kind;
    int32_t in[2];  /* tensor indices, -1 absent */
    int32_t out;    /* tensor index (-1 for IS_CS_OUTPUT: the output buffer) */
    /* conv / pool geometry */
    int32_t kh, kw, sh, sw, dh, dw;
    int32_t pt, pl, pb, pr;
    int32_t group;
    int32_t count_include_pad;
    /* activation after the op (ims_act), clip bounds */
    int32_t act;
    float act_min, act_max;
    /* gemm */
    float alpha;
    float beta;     /* HardSigmoid's (alpha above) */
    /* weights: byte offsets into the weight blob (-1 absent) */
    int64_t w_off, w_bytes;
    int64_t b_off;  /* float32 bias [oc] */
    int64_t bh_off; /* bias in the engine dtype [oc] (fp16: half copy; else same as b_off) */
    /* autotune result (conv) */
    int32_t algo;      /* cudnnConvolutionFwdAlgo_t */
    int32_t math;      /* cudnnMathType_t */
    int32_t fused;     /* 0: cudnnConvolutionForward + epilogue kernel; 1: cudnnConvolutionBias-
                          ActivationForward with the bias in the engine dtype; 2: same, float bias */
    int64_t ws_bytes;  /* workspace needed */
    float tuned_ms;    /* measured time at max_batch (informational) */
    /* output */
    int32_t gap;       /* fused global average pool in IS_CS_OUTPUT */
    int32_t coff;      /* concat: channel offset of in[0] inside out */
} ims_cuda_step;

typedef struct ims_cuda_plan {
    ims_cuda_key key;
    int32_t in_c, in_h, in_w;
    int64_t dim;
    int32_t elt;       /* bytes per activation element: 2 (fp16) or 4 */
    int32_t n_tensors;
    ims_cuda_tensor *tensors;
    int32_t n_steps;
    ims_cuda_step *steps;
    int64_t arena_per_image; /* bytes */
    int64_t ws_bytes;        /* workspace bytes (max over steps) */
    int64_t weights_bytes;
    uint8_t *weights;        /* host copy of the device weight blob */
} ims_cuda_plan;

void ims_cuda_plan_free(ims_cuda_plan *p); /* frees the arrays, not p itself */

/* Serialises p (header, key, plan, weights, SHA-256) into a new ims_malloc'ed buffer. */
imgsim_status ims_cuda_plan_serialize(const ims_cuda_plan *p, uint8_t **buf, size_t *len, ims_err *e);
/* Parses and verifies buf (magic, version, checksum, bounds of every index and offset) into p.
 * The key is not compared here. path is for messages. */
imgsim_status ims_cuda_plan_deserialize(ims_cuda_plan *p, const uint8_t *buf, size_t len,
                                       const char *path, ims_err *e);
/* Compares two keys; returns 1 if equal, else 0 and a description of the first difference in
 * why ("for GPU 'A' sm_80, this is 'B' sm_90"). */
int ims_cuda_key_equal(const ims_cuda_key *file, const ims_cuda_key *want, char *why, size_t why_len);
/* Writes p to path atomically. */
imgsim_status ims_cuda_plan_save(const ims_cuda_plan *p, const char *path, ims_err *e);
/* Reads and verifies path into p (ims_cuda_plan_deserialize). */
imgsim_status ims_cuda_plan_load(ims_cuda_plan *p, const char *path, ims_err *e);
/* A file name for the key inside a cache folder: "<sha256 of the key fields>.engine", ims_malloc'ed. */
char *ims_cuda_cache_path(const char *dir, const ims_cuda_key *k);
/* Turns an optimised graph into an untuned plan (tensors, steps, arena, weights in device layout)
 * for activations of elt bytes (2: fp16, 4: fp32/tf32). Fills everything but key and the
 * autotune fields. Unsupported ops fail with IMGSIM_ERR_UNSUPPORTED naming the node. */
struct ims_graph;
imgsim_status ims_cuda_compile(ims_cuda_plan *p, const struct ims_graph *g, int elt, ims_err *e);
/* Prints a human-readable summary of p to f (imgsim engine info). */
void ims_cuda_plan_print(const ims_cuda_plan *p, FILE *f);

const char *ims_cuda_step_name(int kind);

#endif /* IMGSIM_CUDA_PLAN_H */
