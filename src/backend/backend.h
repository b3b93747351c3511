/*
 * backend.h: the interface every compute backend implements (after ggml-backend-impl.h).
 *
 * A backend is planned once from an optimised graph (prepare: weights converted, primitives and
 * algorithms chosen, one activation arena allocated) and then run many times without allocating.
 * Input is the float32 NCHW batch the preprocessing produces; output is float32 [n, dim] in host
 * memory, L2-normalised when cfg.normalize is set.
 */
#ifndef IMGSIM_BACKEND_H
#define IMGSIM_BACKEND_H

#include <stddef.h>

#include "core/core.h"
#include "model/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The configuration a backend is planned for, resolved once from imgsim_engine_opts by
 * ims_engine_config (api/engine_opts.c: defaults, "auto" and every check are there). The backend
 * takes it as it is, never writes it back, and reports what it chose through ops->info. */
typedef struct ims_backend_cfg {
    imgsim_precision precision;
    int max_batch;        /* batch capacity (1..65536); with batch_auto an upper bound */
    int threads;          /* CPU threads (0 = all cores, for callers that build a cfg themselves) */
    int device_index;     /* CUDA ordinal */
    int normalize;        /* L2-normalise each output row */
    const char *engine_cache; /* CUDA: cache folder, NULL = default, "off" = none */
    const char *engine_file;  /* CUDA: explicit engine file */
    int batch_auto;       /* CUDA: lower max_batch to what fits in device memory (else fail) */
    int cached_only;      /* CUDA: fail with MISMATCH rather than plan when no engine file matches
                             (the graph may then be a stub: sha256, output name, input size only) */
    /* int8 and calibration (CPU only; NULL elsewhere and otherwise), each indexed by graph value
     * and borrowed during prepare only: */
    const uint8_t *observe;      /* 1: run_observe hands the value's contents to its callback */
    const float *act_scale;      /* IMGSIM_PREC_INT8: the value's scale (real = scale * q); 0 where
                                    the value was not calibrated (it then stays float32) */
    const uint8_t *act_unsigned; /* IMGSIM_PREC_INT8: 1 where the value is never negative (u8) */
    const int32_t *act_zero;     /* IMGSIM_PREC_INT8, may be NULL (all 0): with act_unsigned, the
                                    u8 zero point of an asymmetric value (real = scale * (q - zero)) */
} ims_backend_cfg;

/* run_observe's callback: value (a graph value index) holds count float32 elements in data,
 * [n, ...] plain row-major for the n images of the batch; data is valid during the call only. */
typedef void (*ims_observe_fn)(void *user, int value, const float *data, size_t count);

typedef struct ims_backend ims_backend;

typedef struct ims_backend_ops {
    const char *name; /* "cpu", "cuda" */
    /* Plans g (which the backend may keep pointers into only during prepare). */
    imgsim_status (*prepare)(ims_backend *b, const ims_graph *g, const ims_backend_cfg *cfg, ims_err *e);
    /* Synchronous: input [n, C, H, W] float32 host, out [n, dim] float32 host; 1 <= n <= max_batch. */
    imgsim_status (*run)(ims_backend *b, const float *input, int n, float *out, ims_err *e);

    /* Optional asynchronous pair (NULL if absent), for overlapping copies with compute:
     * input_buffer(slot) is a host buffer of max_batch inputs (pinned on CUDA) the caller fills;
     * submit starts slot's batch of n; collect waits for it and copies the features to out.
     * Slots are 0..n_slots-1 and the caller collects in submit order. */
    int n_slots;
    float *(*input_buffer)(ims_backend *b, int slot);
    imgsim_status (*submit)(ims_backend *b, int slot, int n, ims_err *e);
    imgsim_status (*collect)(ims_backend *b, int slot, float *out, ims_err *e);

    /* Optional, for inputs prepared on the device (GPU decoding, CUDA only; NULL elsewhere):
     * device_input(slot) is the slot's device input buffer (float32 NCHW, max_batch images);
     * submit_device starts slot's batch of n from that buffer without a host copy, after
     * ready_event (a cudaEvent_t recorded by the producer; NULL = already ready). Collect as usual.
     * device_index_of gives the CUDA ordinal the engine runs on. */
    void *(*device_input)(ims_backend *b, int slot);
    imgsim_status (*submit_device)(ims_backend *b, int slot, int n, void *ready_event, ims_err *e);
    int (*device_index_of)(const ims_backend *b);

    /* Required: reports what the prepared backend chose into info: max_batch (the largest n run
     * and submit take), device_name, device_bytes, loaded_from_file. */
    void (*info)(const ims_backend *b, imgsim_engine_info *info);
    void (*destroy)(ims_backend *b);

    /* Optional (CPU; NULL elsewhere): run, and after each value marked in cfg->observe is
     * computed (and for the input, first), call fn with its contents. For calibration. */
    imgsim_status (*run_observe)(ims_backend *b, const float *input, int n, ims_observe_fn fn, void *user,
                                 ims_err *e);
} ims_backend_ops;

struct ims_backend {
    const ims_backend_ops *ops;
    void *impl;
    int64_t dim;
    int in_c, in_h, in_w;
};

/* Constructors: allocate the backend object (not yet prepared). Return NO_DEVICE where the
 * backend is not built in or no device exists. */
imgsim_status ims_backend_cpu_new(ims_backend **out, ims_err *e);
imgsim_status ims_backend_cuda_new(ims_backend **out, ims_err *e);

/* The CUDA devices present (0 when none, or CUDA support was not compiled in): a truth value for
 * "can CUDA run here" (skipping tests). */
int ims_cuda_available(void);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_BACKEND_H */
