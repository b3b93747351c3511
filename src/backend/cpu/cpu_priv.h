/*
 * cpu_priv.h: private types of the CPU backend (oneDNN). Not used outside src/backend/cpu/.
 *
 * The backend turns an optimised ims_graph into "plans", one per batch size it can run (the
 * engine's max_batch and the powers of two below it, so that a partial batch of n runs as a few
 * exact smaller batches instead of a padded full one). A plan is a list of steps (one oneDNN
 * primitive each, with its arguments bound) over "tensors" (a memory descriptor on a buffer).
 * Buffers are logical activation buffers with a lifetime [first, last] in step order; after a
 * plan is built they get offsets in one shared activation arena (greedy best fit, cpu_arena.c).
 * Plans run one at a time, so they share the arena and the scratchpad.
 *
 * Constants (convolution weights in the layout oneDNN picked, biases, BN parameters, ...) are
 * converted once at prepare and shared by the plans (keyed by graph value, a transform tag and
 * the memory descriptor).
 */
#ifndef IMGSIM_CPU_PRIV_H
#define IMGSIM_CPU_PRIV_H

#include <stddef.h>

#include <oneapi/dnnl/dnnl.h>

#include "backend/backend.h"

/* Special buffer ids of a tensor (>= 0: a buffer of the plan, placed in the arena). */
#define CPU_BUF_INPUT (-2)   /* the caller's input batch (handle set per run) */
#define CPU_BUF_OUTPUT (-3)  /* the caller's output rows (handle set per run) */
#define CPU_BUF_SCRATCH (-4) /* the shared scratchpad */
#define CPU_BUF_CONST (-5)   /* a constant owned by the backend (handle set at creation) */

#define CPU_MAX_ARGS (IS_MAX_INPUTS + 8)

typedef struct cpu_buf {
    size_t size;   /* bytes, rounded up to the arena alignment */
    int first;     /* index of the first step that writes it */
    int last;      /* index of the last step that reads it */
    size_t offset; /* in the arena, set by ims_cpu_arena_assign */
} cpu_buf;

typedef struct cpu_tensor {
    dnnl_memory_desc_t md;
    int buf;           /* buffer id (see CPU_BUF_*) */
    dnnl_memory_t mem; /* oneDNN memory object on that buffer (handle bound after planning) */
    float scale;       /* s8/u8 data: real = scale * (q - zp) (int8 precision); 1 for float data */
    int32_t zp;        /* u8 data of an asymmetric value: its zero point; 0 otherwise */
} cpu_tensor;

typedef struct cpu_step {
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[CPU_MAX_ARGS];
} cpu_step;

/* A cached layout/type conversion of a tensor (so two consumers share one reorder). */
typedef struct cpu_conv {
    int src, dst; /* tensor ids */
} cpu_conv;

/* A value handed to run_observe's callback after step `step` (-1: before the first step). */
typedef struct cpu_obs {
    int step;
    int value;    /* graph value */
    int tensor;   /* a plain float32 tensor holding it */
    size_t count; /* its elements for the plan's batch */
} cpu_obs;

typedef struct cpu_plan {
    int batch;
    cpu_buf *bufs;
    int n_bufs, cap_bufs;
    cpu_tensor *tens;
    int n_tens, cap_tens;
    cpu_step *steps;
    int n_steps, cap_steps;
    cpu_conv *convs;
    int n_convs, cap_convs;
    cpu_obs *obs;       /* observed values (calibration engines), in step order */
    int n_obs, cap_obs;
    int *val_tensor;    /* per graph value: tensor holding it, -1 if none */
    size_t arena_size;  /* bytes of arena this plan needs */
} cpu_plan;

typedef struct cpu_const {
    int value;          /* graph value index */
    int tag;            /* which transform of it (CPU_CT_*) */
    dnnl_memory_desc_t md;
    void *data;         /* ims_malloc'ed, 64-byte aligned start inside raw */
    void *raw;
    dnnl_memory_t mem;
} cpu_const;

/* Constant transform tags. */
enum {
    CPU_CT_PLAIN = 0,   /* as stored, converted to md */
    CPU_CT_GEMM_W,      /* Gemm B as [N, K], times alpha */
    CPU_CT_GEMM_BIAS,   /* Gemm C expanded to [N], times beta */
    CPU_CT_BCAST,       /* a binary operand reshaped to the output rank */
    CPU_CT_INT8_W,      /* int8 convolution weights: s8, per-output-channel scales */
    CPU_CT_INT8_BIAS,   /* int8 convolution bias, in the accumulator's units */
    CPU_CT_ZEROS,       /* zeros of the value's size (the shift of a LayerNorm without a bias) */
    CPU_CT_EXPAND,      /* a constant repeated over the plan's batch (Expand) */
    CPU_CT_MATMUL_BIAS  /* a MatMul's fused bias as [1, ..., 1, M] */
};

typedef struct cpu_impl {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    int threads;
    imgsim_precision precision;
    dnnl_data_type_t act_dt; /* f32 or bf16 */
    int normalize;
    int max_batch;
    int64_t dim;
    int in_c, in_h, in_w;

    cpu_plan *plans; /* by decreasing batch; plans[0].batch == max_batch */
    int n_plans;

    cpu_const *consts;
    int n_consts, cap_consts;
    size_t const_bytes;

    void *arena_raw, *arena;
    size_t arena_size;
    void *scratch_raw, *scratch;
    size_t scratch_size;

    char isa[48];
    int int8_convs;     /* convolutions the largest plan runs in int8 */

    /* during prepare only */
    const ims_graph *g;
    int *group_last;   /* per value: last node index reading it or any alias of it */
    /* Epilogues fused at plan time (cpu_backend.c, find_epilogues; fp32/bf16 only), per node:
     * epi_alg: an eltwise post-op appended to a Conv/Gemm (after its sum and act), 0 for none;
     * epi_out: the value the fused step then produces (-1: none); absorbed: the node is not
     * planned (its work is in the producer's post-op, its output the producer's tensor). The
     * graph is left as it is (the CUDA engine reads the same graph). NULL when none. */
    int *epi_alg, *epi_out;
    char *absorbed;
    const uint8_t *observe;      /* cfg->observe */
    const float *act_scale;      /* cfg->act_scale (int8) */
    const uint8_t *act_unsigned; /* cfg->act_unsigned (int8) */
    const int32_t *act_zero;     /* cfg->act_zero (int8; NULL: all 0) */
    uint8_t *conv_int8;  /* per node: an int8 convolution (cpu_int8.c) */
    uint8_t *out_int8;   /* per value: kept as s8/u8 (every reader takes int8) */
    int n_conv_int8;     /* int8 convolutions planned (per plan) */
    int n_epi;           /* epilogues fused at plan time (find_epilogues) */
    int cur_node;      /* node being planned (for messages), -1 outside nodes */
} cpu_impl;

/* cpu_plan.c: builds one plan for batch p->batch over c->g. */
imgsim_status ims_cpu_plan_build(cpu_impl *c, cpu_plan *p, ims_err *e);
void ims_cpu_plan_free(cpu_plan *p);
/* Binds every tensor of p to the arena / scratchpad once they are allocated. */
imgsim_status ims_cpu_plan_bind(cpu_impl *c, cpu_plan *p, ims_err *e);
void ims_cpu_const_free_all(cpu_impl *c);

/* cpu_int8.c: int8 planning. ims_cpu_int8_prepare decides (per node and value, from
 * c->act_scale) which convolutions run in int8 and which outputs stay int8; ims_cpu_plan_conv_int8
 * plans node i as an int8 convolution (IMGSIM_OK), or returns IMGSIM_ERR_UNSUPPORTED without side
 * effects when node i is not one. */
imgsim_status ims_cpu_int8_prepare(cpu_impl *c, ims_err *e);
imgsim_status ims_cpu_plan_conv_int8(cpu_impl *c, cpu_plan *p, int i, ims_err *e);
/* Helpers of cpu_plan.c that cpu_int8.c shares. */
imgsim_status ims_cpu_new_act(cpu_impl *c, cpu_plan *p, const dnnl_memory_desc_t *md, int *out, ims_err *e);
imgsim_status ims_cpu_new_tensor(cpu_impl *c, cpu_plan *p, const dnnl_memory_desc_t *md, int buf,
                                 dnnl_memory_t mem, int *out, ims_err *e);
imgsim_status ims_cpu_push_reorder(cpu_impl *c, cpu_plan *p, int src, int dst, ims_err *e);
imgsim_status ims_cpu_get_const(cpu_impl *c, int value, int tag, const void *src, const dnnl_memory_desc_t *src_md,
                                const dnnl_memory_desc_t *md, int *out, ims_err *e);
const dnnl_memory_desc_t *ims_cpu_find_const_md(cpu_impl *c, int value, int tag);
imgsim_status ims_cpu_const_tensor(cpu_impl *c, cpu_plan *p, int k, int *out, ims_err *e);
imgsim_status ims_cpu_make_attr(cpu_impl *c, dnnl_primitive_attr_t *attr, int sum, ims_act act, float lo, float hi,
                                ims_err *e);
imgsim_status ims_cpu_push_step(cpu_impl *c, cpu_plan *p, const_dnnl_primitive_desc_t pd, int nargs,
                                const int *arg, const int *tensor, const int *rd, ims_err *e);
int ims_cpu_can_inplace(cpu_impl *c, cpu_plan *p, int v, int i);

imgsim_status ims_cpu_ensure_plain(cpu_impl *c, cpu_plan *p, int v, dnnl_data_type_t dt, int *out, ims_err *e);
imgsim_status ims_cpu_ensure(cpu_impl *c, cpu_plan *p, int t, const dnnl_memory_desc_t *md, int *out, ims_err *e);
imgsim_status ims_cpu_unsupported(cpu_impl *c, ims_err *e, const char *why);

/* cpu_transformer.c: Softmax, Attention (matmul, softmax, matmul on strided views of the packed
 * qkv), Expand (a constant tiled for the plan's batch) and Gather of an activation (a view
 * copy), each planning node i. */
imgsim_status ims_cpu_plan_softmax(cpu_impl *c, cpu_plan *p, int i, ims_err *e);
imgsim_status ims_cpu_plan_attention(cpu_impl *c, cpu_plan *p, int i, ims_err *e);
imgsim_status ims_cpu_plan_expand(cpu_impl *c, cpu_plan *p, int i, ims_err *e);
imgsim_status ims_cpu_plan_gather(cpu_impl *c, cpu_plan *p, int i, ims_err *e);

/* cpu_arena.c: assigns arena offsets to p's buffers (greedy best fit over lifetimes); sets
 * p->arena_size. */
imgsim_status ims_cpu_arena_assign(cpu_plan *p, ims_err *e);

/* Formats a oneDNN failure. */
imgsim_status ims_cpu_dnnl_fail(cpu_impl *c, ims_err *e, dnnl_status_t st, const char *what);

#define CPU_ALIGN 64

#endif /* IMGSIM_CPU_PRIV_H */
