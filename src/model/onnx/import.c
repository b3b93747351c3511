/*
 * import.c: ONNX import: a model file -> protobuf-c -> a validated, linked ims_graph.
 *
 * Everything in the file is untrusted. The order of work is chosen so that nothing is allocated
 * from an unchecked number:
 *   1. the file is read whole (at most 2 GiB, protobuf's own message limit) and hashed;
 *   2. protobuf-c unpacks it with the schema subset of onnx.proto (no recursive messages, so the
 *      unpacker's recursion depth is bounded);
 *   3. IR version and the default-domain opset (11..25) are checked;
 *   4. initializers become float32 constant values: dims are checked (rank <= 8, each > 0, the
 *      element count computed with overflow checks and capped) before any buffer is allocated,
 *      and the data size (raw_data, typed field or external file) must match the dims exactly;
 *   5. the one image input ([N, C, H, W], N free) becomes the graph input;
 *   6. every node output is declared (pass 1, so nodes may be listed out of order; Constant
 *      nodes become constants; Identity nodes of constants, Pads that pad nothing and
 *      inference Dropouts other names of their input; a zero constant Pad of H and W is recorded
 *      in m->pads and folded into the pads of the Conv or AveragePool reading it), then every
 *      node's inputs are resolved and its attributes checked against what imgsim executes
 *      (pass 2; ReduceMean over H and W becomes GlobalAveragePool, + Flatten without keepdims);
 *   7. ims_graph_link checks the references as a graph: order, cycles, consumers.
 * QuantizeLinear/DequantizeLinear (QDQ models) are folded between steps 6's two passes (qdq_fold,
 * see "QuantizeLinear and DequantizeLinear" below); their scales go onto the values after pass 2.
 * Shape arithmetic (Shape, Gather, Unsqueeze, Squeeze, Cast and the Add/Sub/Mul/Div on its
 * results, the subgraphs exporters write for a dynamic batch) is imported as nodes like any other;
 * shape inference evaluates them into constants (fold.c), where the batch is IS_BATCH_DIM.
 *
 * Conventions the rest of imgsim relies on (see graph.h):
 *   - Clip's min/max (constant inputs from opset 11, attributes before) are stored in
 *     clip_min/clip_max (default -FLT_MAX/FLT_MAX, as in ONNX) and the Clip node keeps only its data input.
 *   - Reshape keeps its shape as input 1, a constant (int64 values converted to float, exactly) or
 *     a value computed from shapes (then its output's rank is not known at import).
 *   - Integer tensors are marked is_int (so that a folded Div truncates).
 *   - Transpose's perm and Unsqueeze/Squeeze's axes (attribute or constant input) are in
 *     perm/n_perm, non-negative; those nodes keep only their data input.
 *   - Flatten/Concat axes are made non-negative with the ranks known from the file's order.
 *   - Conv's kernel comes from its weight's dims [OC, IC/group, KH, KW].
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/graph.h"
#include "model/onnx/onnx.pb-c.h"

#define ONNX_MAX_FILE_BYTES (((uint64_t)2 << 30) - 1) /* protobuf's 2 GiB message limit */
#define ONNX_MAX_TENSOR_ELEMS ((uint64_t)1 << 30)     /* 4 GiB as float32 */
#define ONNX_MAX_TENSOR_BYTES ((uint64_t)4 << 30)     /* one tensor's data in the file */
#define ONNX_MIN_OPSET 11
/* Opsets 19 to 25 changed the operators imgsim reads only by new data types (which are checked
 * per tensor) and new attributes (AveragePool's dilations, Pad's wrap mode), which are refused by
 * name; so they read as 18. */
#define ONNX_MAX_OPSET 25
#define ONNX_MIN_IR 3
#define ONNX_MAX_SPATIAL 65536 /* kernel, stride, dilation, pad and input side limit */

/* ONNX TensorProto.DataType values */
enum {
    DT_FLOAT = 1,
    DT_UINT8 = 2,
    DT_INT8 = 3,
    DT_INT32 = 6,
    DT_INT64 = 7,
    DT_BOOL = 9,
    DT_FLOAT16 = 10,
    DT_DOUBLE = 11,
    DT_BFLOAT16 = 16
};

#define S(s) ((s) ? (s) : "")

/* ---- name -> value index map (open addressing; keys borrowed from the unpacked model) ---- */

typedef struct name_map {
    const char **keys;
    int *vals;
    size_t cap; /* power of two, at least twice the number of keys */
} name_map;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int map_init(name_map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) {
        if (cap > SIZE_MAX / 4) return -1;
        cap *= 2;
    }
    m->keys = ims_calloc(cap, sizeof *m->keys);
    m->vals = ims_calloc(cap, sizeof *m->vals);
    m->cap = cap;
    return m->keys && m->vals ? 0 : -1;
}

static void map_free(name_map *m) {
    free(m->keys);
    free(m->vals);
}

/* Slot of key: where it is, or the empty slot where it would go. */
static size_t map_slot(const name_map *m, const char *key) {
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int map_get(const name_map *m, const char *key) {
    size_t i = map_slot(m, key);
    return m->keys[i] ? m->vals[i] : -1;
}

/* The map is sized for every name the model can declare, so it never fills up. */
static void map_put(name_map *m, const char *key, int val) {
    size_t i = map_slot(m, key);
    m->keys[i] = key;
    m->vals[i] = val;
}

/* ---- the import state ------------------------------------------------------------------- */

typedef struct imp {
    const char *path; /* the model file, for messages */
    ims_err *e;
    ims_graph *g;
    int opset;
    name_map names;
    int *rank;              /* per value: rank, or -1 when not known yet (activation ranks
                               are propagated in file order, for negative axes) */
    unsigned char *inexact; /* per value: a constant converted from integers that float32
                               does not hold exactly */
    signed char *dtype;     /* per value: a constant's ONNX data type (DT_FLOAT for computed
                               ones), 0 for activations */
    size_t max_vals;        /* capacity of rank[], inexact[] and dtype[] */
    char *dir_real;         /* realpath of the model's folder, for external data (lazy) */
    unsigned char *folded;  /* per node: a Constant, or an Identity of a constant (no node) */
    struct pad_fold {       /* Pads with non-zero spatial pads, folded into their consumer */
        const char *out;    /* the Pad's output name (borrowed from the unpacked model) */
        const char *node;   /* the Pad's node name */
        int pad[4];         /* top, left, bottom, right */
    } *pads;
    size_t n_pads;
    /* Explicit quantisation (QDQ, see "QuantizeLinear and DequantizeLinear" below), per node: */
    const char **alias_src; /* a folded node (folded 2) whose output is another name of this one */
    const char **qdq_in;    /* a DequantizeLinear of an activation: its QuantizeLinear's input */
    unsigned char *qdq_relu;  /* that DequantizeLinear becomes a Relu (the pair's range starts at 0) */
    float *qdq_scale;         /* that DequantizeLinear's pair: its scale */
    unsigned char *qdq_uns;   /* its range is [0, 255] scale */
    int *qdq_zero;            /* asymmetric: its uint8 zero point (graph.h q_zero) */
    int *qdq_q;               /* its QuantizeLinear's node index */
    int *q_node;              /* per value: 1 + the QuantizeLinear that gave it its scale, 0 */
} imp;

/* The Pad whose output is named name, or NULL. */
static const struct pad_fold *find_pad(const imp *m, const char *name) {
    for (size_t i = 0; i < m->n_pads; i++)
        if (!strcmp(m->pads[i].out, name)) return &m->pads[i];
    return NULL;
}

/* The node's name, or "<op_type>_<index>" when it has none (for messages and the graph). */
static const char *node_label(const ImsOnnx__NodeProto *n, int idx, char buf[64]) {
    if (n->name && n->name[0]) return n->name;
    snprintf(buf, 64, "%.40s_%d", S(n->op_type), idx);
    return buf;
}

static const char *dtype_name(int32_t t) {
    static const char *const names[] = {"UNDEFINED", "FLOAT",  "UINT8",     "INT8",       "UINT16",  "INT16",
                                        "INT32",     "INT64",  "STRING",    "BOOL",       "FLOAT16", "DOUBLE",
                                        "UINT32",    "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
    return t >= 0 && t < (int32_t)(sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

/* Bytes per element of the data types imgsim converts to float32; 0 for the others. */
static size_t dtype_size(int32_t t) {
    switch (t) {
    case DT_FLOAT:
    case DT_INT32:
        return 4;
    case DT_INT64:
    case DT_DOUBLE:
        return 8;
    case DT_FLOAT16:
    case DT_BFLOAT16:
        return 2;
    case DT_BOOL: /* flags such as Dropout's training_mode */
    case DT_UINT8: /* quantised tensors (QuantizeLinear/DequantizeLinear) */
    case DT_INT8:
        return 1;
    default:
        return 0;
    }
}

/* Adds a value and its bookkeeping (known_rank: its rank is known now). Returns the index or -1
 * (message set). */
static int add_value(imp *m, const char *name, int rank, const int64_t *dims, const float *data,
                     int known_rank) {
    if ((size_t)m->g->n_vals >= m->max_vals) {
        ims_fail(m->e, IMGSIM_ERR_INTERNAL, "%s: value table overflow", m->path);
        return -1;
    }
    int v = ims_graph_add_value(m->g, name, rank, dims, data);
    if (v < 0) {
        ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory adding value '%.200s'", m->path, name);
        return -1;
    }
    m->rank[v] = known_rank ? rank : -1;
    m->inexact[v] = 0;
    m->dtype[v] = data ? DT_FLOAT : 0;
    map_put(&m->names, name, v);
    return v;
}

/* ---- tensors ---------------------------------------------------------------------------- */

static uint16_t ld16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t ld64(const uint8_t *p) {
    return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
}

static float f32_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* double -> float without undefined behaviour for values out of float's range */
static float f64_to_f32(double d) {
    if (d > FLT_MAX) return INFINITY;
    if (d < -FLT_MAX) return -INFINITY;
    return (float)d;
}

/* int64 -> float; sets *inexact when float32 might not hold the value exactly */
static float i64_to_f32(int64_t v, unsigned char *inexact) {
    if (v > (1 << 24) || v < -(1 << 24)) *inexact = 1;
    return (float)v;
}

/* Decodes n little-endian elements of type dt from bytes into out (float32). */
static void decode_le(float *out, const uint8_t *p, uint64_t n, int32_t dt, unsigned char *inexact) {
    switch (dt) {
    case DT_FLOAT:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(out, p, (size_t)n * 4);
#else
        for (uint64_t i = 0; i < n; i++)
            out[i] = f32_bits(ld32(p + 4 * i));
#endif
        break;
    case DT_DOUBLE:
        for (uint64_t i = 0; i < n; i++) {
            uint64_t u = ld64(p + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            out[i] = f64_to_f32(d);
        }
        break;
    case DT_FLOAT16:
        for (uint64_t i = 0; i < n; i++)
            out[i] = ims_f16_to_f32(ld16(p + 2 * i));
        break;
    case DT_BFLOAT16:
        for (uint64_t i = 0; i < n; i++)
            out[i] = f32_bits((uint32_t)ld16(p + 2 * i) << 16);
        break;
    case DT_INT32:
        for (uint64_t i = 0; i < n; i++)
            out[i] = i64_to_f32((int32_t)ld32(p + 4 * i), inexact);
        break;
    case DT_INT64:
        for (uint64_t i = 0; i < n; i++)
            out[i] = i64_to_f32((int64_t)ld64(p + 8 * i), inexact);
        break;
    case DT_BOOL:
        for (uint64_t i = 0; i < n; i++)
            out[i] = p[i] != 0;
        break;
    case DT_UINT8:
        for (uint64_t i = 0; i < n; i++)
            out[i] = p[i];
        break;
    case DT_INT8:
        for (uint64_t i = 0; i < n; i++)
            out[i] = (int8_t)p[i];
        break;
    }
}

/* Parses a non-negative decimal number (external data offset/length). */
static int parse_u64(const char *s, uint64_t *out) {
    uint64_t v = 0;
    if (!s || !*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* Where a tensor's external data lies: its external_data entries, checked. */
typedef struct ext_ref {
    const char *loc;         /* the file, relative to the model's folder */
    const char *len_s;       /* "length" as written, or NULL: the rest of the file */
    uint64_t offset, length; /* parsed (0 when absent) */
} ext_ref;

/* Reads a tensor's external_data entries into r: a location that stays inside the model's
 * folder (not absolute, no ".." component) and decimal offset and length. */
static imgsim_status parse_external(imp *m, const ImsOnnx__TensorProto *t, const char *tname, ext_ref *r) {
    const char *loc = NULL, *off_s = NULL, *len_s = NULL;
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i < t->n_external_data; i++) {
        const ImsOnnx__StringStringEntryProto *kv = t->external_data[i];
        if (!strcmp(S(kv->key), "location"))
            loc = S(kv->value);
        else if (!strcmp(S(kv->key), "offset"))
            off_s = S(kv->value);
        else if (!strcmp(S(kv->key), "length"))
            len_s = S(kv->value);
    }
    if (!loc || !*loc)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: tensor '%.200s': external data without a location",
                        m->path, tname);
    if (loc[0] == '/')
        return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                        "%s: tensor '%.200s': external data location '%.200s' is an absolute path "
                        "(it must be inside the model's folder)",
                        m->path, tname, loc);
    for (const char *c = loc; *c;) { /* refuse any ".." component */
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                            "%s: tensor '%.200s': external data location '%.200s' leaves the model's "
                            "folder ('..')",
                            m->path, tname, loc);
        c += n;
        while (*c == '/')
            c++;
    }
    r->loc = loc;
    r->len_s = len_s;
    if (off_s && parse_u64(off_s, &r->offset) != 0)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: tensor '%.200s': bad external data offset '%.40s'",
                        m->path, tname, off_s);
    if (len_s && parse_u64(len_s, &r->length) != 0)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: tensor '%.200s': bad external data length '%.40s'",
                        m->path, tname, len_s);
    return IMGSIM_OK;
}

/* Opens the external data file loc, which must resolve (symlinks included) to a file inside the
 * model's folder (m->dir_real, resolved on first use). */
static imgsim_status open_external(imp *m, const char *tname, const char *loc, int *fd_out) {
    if (!m->dir_real) {
        char *dir = ims_path_dirname(m->path);
        if (!dir) return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory", m->path);
        m->dir_real = realpath(dir, NULL);
        int err = errno;
        free(dir);
        if (!m->dir_real)
            return ims_fail(m->e, IMGSIM_ERR_IO, "%s: cannot resolve the model's folder: %s", m->path,
                            strerror(err));
    }
    char *joined = ims_path_join(m->dir_real, loc);
    if (!joined) return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory", m->path);
    char *real = realpath(joined, NULL);
    int err = errno;
    free(joined);
    if (!real)
        return ims_fail(m->e, IMGSIM_ERR_IO, "%s: tensor '%.200s': external data file '%.200s': %s", m->path,
                        tname, loc, strerror(err));
    size_t dl = strlen(m->dir_real);
    int inside =
        strncmp(real, m->dir_real, dl) == 0 && (real[dl] == '/' || (dl == 1 && m->dir_real[0] == '/'));
    if (!inside) {
        free(real);
        return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                        "%s: tensor '%.200s': external data file '%.200s' resolves outside the model's "
                        "folder",
                        m->path, tname, loc);
    }
    int fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK); /* a FIFO: no wait, refused below */
    err = errno;
    free(real);
    if (fd < 0)
        return ims_fail(m->e, IMGSIM_ERR_IO,
                        "%s: tensor '%.200s': cannot open external data file '%.200s': %s", m->path, tname,
                        loc, strerror(err));
    *fd_out = fd;
    return IMGSIM_OK;
}

/* Reads the bytes r names from the open regular file fd into a new buffer *out (NULL on
 * failure); they must be exactly need bytes. */
static imgsim_status read_range(imp *m, int fd, const char *tname, const ext_ref *r, uint64_t need,
                                uint8_t **out) {
    const char *loc = r->loc;
    uint64_t offset = r->offset, length = r->length;
    struct stat st;
    imgsim_status s = IMGSIM_OK;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        s = ims_fail(m->e, IMGSIM_ERR_FORMAT,
                     "%s: tensor '%.200s': external data '%.200s' is not a regular file", m->path, tname,
                     loc);
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size) {
        s = ims_fail(
            m->e, IMGSIM_ERR_FORMAT,
            "%s: tensor '%.200s': external data offset %llu is past the end of '%.200s' (%llu bytes)",
            m->path, tname, (unsigned long long)offset, loc, (unsigned long long)size);
        goto done;
    }
    if (!r->len_s) length = size - offset; /* absent length: the rest of the file */
    if (length > size - offset) {
        s = ims_fail(m->e, IMGSIM_ERR_FORMAT,
                     "%s: tensor '%.200s': external data offset %llu + length %llu is past the end of "
                     "'%.200s' (%llu bytes)",
                     m->path, tname, (unsigned long long)offset, (unsigned long long)length, loc,
                     (unsigned long long)size);
        goto done;
    }
    if (length != need) {
        s = ims_fail(m->e, IMGSIM_ERR_FORMAT,
                     "%s: tensor '%.200s': external data has %llu bytes, its dims need %llu", m->path, tname,
                     (unsigned long long)length, (unsigned long long)need);
        goto done;
    }
    buf = ims_malloc((size_t)need);
    if (!buf) {
        s = ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory for tensor '%.200s'", m->path, tname);
        goto done;
    }
    for (uint64_t got = 0; got < need;) {
        size_t chunk = need - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : (size_t)(need - got);
        ssize_t n = pread(fd, buf + got, chunk, (off_t)(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            s = ims_fail(m->e, IMGSIM_ERR_IO, "%s: tensor '%.200s': reading '%.200s': %s", m->path, tname,
                         loc, n < 0 ? strerror(errno) : "unexpected end of file");
            free(buf);
            buf = NULL;
            goto done;
        }
        got += (uint64_t)n;
    }
done:
    *out = buf;
    return s;
}

/* Reads a tensor's external data: exactly need bytes from the file named by its "location",
 * which must resolve (symlinks included) to a regular file inside the model's folder. */
static imgsim_status read_external(imp *m, const ImsOnnx__TensorProto *t, const char *tname, uint64_t need,
                                   uint8_t **out) {
    ext_ref r;
    int fd = -1;
    imgsim_status s = parse_external(m, t, tname, &r);
    if (s != IMGSIM_OK) return s;
    if ((s = open_external(m, tname, r.loc, &fd)) != IMGSIM_OK) return s;
    s = read_range(m, fd, tname, &r, need, out);
    close(fd);
    return s;
}

/* A tensor's checked description. */
typedef struct tensor_desc {
    int64_t dims[IS_MAX_RANK];
    uint64_t numel; /* at most ONNX_MAX_TENSOR_ELEMS */
    int32_t dt;     /* a data type dtype_size knows */
    uint64_t need;  /* bytes of its data as stored, at most ONNX_MAX_TENSOR_BYTES */
} tensor_desc;

/* Checks a tensor's name (not taken yet), dims (rank, each > 0, the element count with
 * overflow checks and capped) and data type before anything is allocated for it. */
static imgsim_status check_tensor(imp *m, const ImsOnnx__TensorProto *t, const char *tname, tensor_desc *td) {
    if (!*tname) return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: a tensor has no name", m->path);
    if (map_get(&m->names, tname) >= 0)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: value '%.200s' is defined twice", m->path, tname);
    if (t->n_dims > IS_MAX_RANK)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: tensor '%.200s': rank %zu is over %d", m->path,
                        tname, t->n_dims, IS_MAX_RANK);
    memset(td->dims, 0, sizeof td->dims);
    uint64_t numel = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        int64_t d = t->dims[i];
        if (d < 0)
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: tensor '%.200s': negative dimension %lld", m->path,
                            tname, (long long)d);
        if (d == 0)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: tensor '%.200s': zero-size dimension", m->path,
                            tname);
        if (ims_mul_overflow_u64(numel, (uint64_t)d, &numel) != 0)
            return ims_fail(m->e, IMGSIM_ERR_TOO_LARGE,
                            "%s: tensor '%.200s': dimensions overflow a 64-bit element count", m->path,
                            tname);
        td->dims[i] = d;
    }
    /* checked after the loop too: each dim is positive, so numel only grows */
    if (numel > ONNX_MAX_TENSOR_ELEMS)
        return ims_fail(m->e, IMGSIM_ERR_TOO_LARGE,
                        "%s: tensor '%.200s': %llu elements is over the limit of %llu", m->path, tname,
                        (unsigned long long)numel, (unsigned long long)ONNX_MAX_TENSOR_ELEMS);
    if (!t->has_data_type || t->data_type == 0)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: tensor '%.200s': no data type", m->path, tname);
    int32_t dt = t->data_type;
    size_t esize = dtype_size(dt);
    if (!esize)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: tensor '%.200s': data type %s (%d) is not supported", m->path, tname,
                        dtype_name(dt), (int)dt);
    uint64_t need = numel * esize; /* numel <= 2^30, esize <= 8: no overflow */
    if (need > ONNX_MAX_TENSOR_BYTES)
        return ims_fail(m->e, IMGSIM_ERR_TOO_LARGE,
                        "%s: tensor '%.200s': %llu bytes is over the limit of %llu", m->path, tname,
                        (unsigned long long)need, (unsigned long long)ONNX_MAX_TENSOR_BYTES);
    td->numel = numel;
    td->dt = dt;
    td->need = need;
    return IMGSIM_OK;
}

/* Finds a tensor's data and checks its size against the dims before anything is allocated for
 * it: *bytes is the little-endian source (raw_data, or the external file read into *ext, which
 * the caller frees), NULL for a typed field (float_data, int64_data, ...). */
static imgsim_status tensor_source(imp *m, const ImsOnnx__TensorProto *t, const char *tname,
                                   const tensor_desc *td, const uint8_t **bytes, uint8_t **ext) {
    *bytes = NULL;
    *ext = NULL;
    if (t->has_data_location && t->data_location == IMS_ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        imgsim_status s = read_external(m, t, tname, td->need, ext);
        if (s != IMGSIM_OK) return s;
        *bytes = *ext;
    } else if (t->has_raw_data) {
        if ((uint64_t)t->raw_data.len != td->need)
            return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                            "%s: tensor '%.200s': raw_data has %zu bytes, its dims need %llu", m->path, tname,
                            t->raw_data.len, (unsigned long long)td->need);
        *bytes = t->raw_data.data;
    } else {
        size_t have;
        switch (td->dt) {
        case DT_FLOAT:
            have = t->n_float_data;
            break;
        case DT_DOUBLE:
            have = t->n_double_data;
            break;
        case DT_INT64:
            have = t->n_int64_data;
            break;
        default:
            have = t->n_int32_data;
            break; /* INT32, BOOL, FLOAT16 and BFLOAT16 (as bits) */
        }
        if ((uint64_t)have != td->numel)
            return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                            "%s: tensor '%.200s': has %zu values, its dims need %llu", m->path, tname, have,
                            (unsigned long long)td->numel);
    }
    return IMGSIM_OK;
}

/* Converts numel values of dt from the tensor's typed field into out (float32). */
static void decode_typed(float *out, const ImsOnnx__TensorProto *t, uint64_t numel, int32_t dt,
                         unsigned char *inexact) {
    for (uint64_t i = 0; i < numel; i++) {
        switch (dt) {
        case DT_FLOAT:
            out[i] = t->float_data[i];
            break;
        case DT_DOUBLE:
            out[i] = f64_to_f32(t->double_data[i]);
            break;
        case DT_INT64:
            out[i] = i64_to_f32(t->int64_data[i], inexact);
            break;
        case DT_INT32:
            out[i] = i64_to_f32(t->int32_data[i], inexact);
            break;
        case DT_FLOAT16:
            out[i] = ims_f16_to_f32((uint16_t)t->int32_data[i]);
            break;
        case DT_BFLOAT16:
            out[i] = f32_bits((uint32_t)(uint16_t)t->int32_data[i] << 16);
            break;
        case DT_BOOL:
            out[i] = t->int32_data[i] != 0;
            break;
        case DT_UINT8:
            out[i] = (uint8_t)t->int32_data[i];
            break;
        case DT_INT8:
            out[i] = (int8_t)t->int32_data[i];
            break;
        }
    }
}

/* Converts a TensorProto into a float32 constant value named vname (the tensor's own name when
 * NULL). Checks dims before allocating and data size against dims. Frees the tensor's raw bytes
 * once converted, to keep the peak memory near one copy of the weights. Returns the value index
 * through *vout. */
static imgsim_status add_tensor(imp *m, ImsOnnx__TensorProto *t, const char *vname, int *vout) {
    const char *tname = vname ? vname : S(t->name);
    tensor_desc td;
    const uint8_t *bytes; /* little-endian source, or NULL for a typed field */
    uint8_t *ext;
    imgsim_status s = check_tensor(m, t, tname, &td);
    if (s == IMGSIM_OK) s = tensor_source(m, t, tname, &td, &bytes, &ext);
    if (s != IMGSIM_OK) return s;

    float *data = ims_malloc_array((size_t)td.numel, sizeof(float));
    if (!data) {
        free(ext);
        return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory for tensor '%.200s'", m->path, tname);
    }
    unsigned char inexact = 0;
    if (bytes)
        decode_le(data, bytes, td.numel, td.dt, &inexact);
    else
        decode_typed(data, t, td.numel, td.dt, &inexact);
    free(ext);
    if (t->has_raw_data) {      /* converted: drop the file's copy now to keep the peak low */
        free(t->raw_data.data); /* protobuf-c's free_unpacked skips NULL */
        t->raw_data.data = NULL;
        t->raw_data.len = 0;
        t->has_raw_data = 0;
    }
    /* the graph takes the buffer over (graph.h: constants own their data, freed by ims_graph_free)
     * rather than copying it */
    int v = add_value(m, tname, (int)t->n_dims, td.dims, NULL, 1);
    if (v < 0) {
        free(data);
        return IMGSIM_ERR_NOMEM;
    }
    m->g->vals[v].data = data;
    m->g->vals[v].is_int = td.dt == DT_INT32 || td.dt == DT_INT64 || td.dt == DT_BOOL || td.dt == DT_UINT8 ||
                           td.dt == DT_INT8;
    m->inexact[v] = inexact;
    m->dtype[v] = (signed char)td.dt;
    *vout = v;
    return IMGSIM_OK;
}

/* ---- graph input ------------------------------------------------------------------------ */

/* Declares the one image input [N, C, H, W] (N free, C/H/W fixed and positive). */
static imgsim_status add_input(imp *m, const ImsOnnx__GraphProto *gp) {
    const ImsOnnx__ValueInfoProto *in = NULL;
    int n_img = 0;
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *nm = S(gp->input[i]->name);
        if (!*nm) return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: a graph input has no name", m->path);
        if (map_get(&m->names, nm) >= 0) continue; /* an initializer listed as an input (IR < 4) */
        if (!in) in = gp->input[i];
        n_img++;
    }
    if (n_img != 1)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                       "%s: the graph has %d inputs besides its weights; imgsim needs exactly one image "
                       "input",
                       m->path, n_img);
    const char *nm = in->name;
    const ImsOnnx__TypeProto *tp = in->type;
    if (!tp || tp->value_case != IMS_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: input '%.200s' is not a tensor", m->path, nm);
    const ImsOnnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (!tt->has_elem_type || tt->elem_type != DT_FLOAT)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                       "%s: input '%.200s' has element type %s; imgsim needs FLOAT", m->path, nm,
                       dtype_name(tt->has_elem_type ? tt->elem_type : 0));
    if (!tt->shape || tt->shape->n_dim != 4)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                       "%s: input '%.200s' must have 4 dimensions [N, C, H, W] (it has %d)", m->path, nm,
                       tt->shape ? (int)tt->shape->n_dim : 0);
    int64_t dims[4] = {-1, 0, 0, 0};
    static const char *const axis_names[4] = {"N", "C", "H", "W"};
    for (int i = 1; i < 4; i++) {
        const ImsOnnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        if (d->value_case != IMS_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
            return ims_fail(
                m->e, IMGSIM_ERR_UNSUPPORTED,
                "%s: input '%.200s': dimension %s is not a fixed number; imgsim needs fixed C, H, W", m->path,
                nm, axis_names[i]);
        if (d->dim_value <= 0 || d->dim_value > ONNX_MAX_SPATIAL)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                           "%s: input '%.200s': dimension %s = %lld is out of range", m->path, nm,
                           axis_names[i], (long long)d->dim_value);
        dims[i] = d->dim_value;
    }
    if (dims[1] > 4096)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: input '%.200s': %lld channels is too many", m->path,
                       nm, (long long)dims[1]);
    int v = add_value(m, nm, 4, dims, NULL, 1);
    if (v < 0) return IMGSIM_ERR_NOMEM;
    m->g->input = v;
    m->g->in_c = (int)dims[1];
    m->g->in_h = (int)dims[2];
    m->g->in_w = (int)dims[3];
    return IMGSIM_OK;
}

/* ---- operators and attributes ----------------------------------------------------------- */

/* Adding an operator: its row in op_table (arity, optional inputs, attribute names, check), a
 * check_* function when it has rules that involve its inputs or changes the output's rank, and
 * the parsing of any new attribute name in parse_attr. */

typedef struct node_ctx node_ctx;

/* Pass 2's rules for one operator beyond arity and attribute names: those that involve its
 * inputs (constant operands and their shapes), defaults that depend on them, and the output's
 * rank (c->out_rank, input 0's rank unless the check sets it). Returns IMGSIM_OK or fails with
 * a message. */
typedef imgsim_status (*op_check)(node_ctx *c);

typedef struct op_desc {
    const char *onnx;
    int op; /* ims_op, or -1 for Constant */
    int min_in, max_in;
    unsigned opt_in;   /* bit i set: input i may be empty (an absent optional input) */
    const char *attrs; /* accepted attribute names, space-separated with spaces around */
    op_check check;    /* NULL: no rules besides the attributes' own */
} op_desc;

#define OP_CONSTANT (-1)
#define OP_PAD (-2)     /* a Pad that pads nothing, or zero padding folded into a Conv/AveragePool */
#define OP_DROPOUT (-3) /* inference Dropout: the identity (other exporters keep them) */
#define OP_REDUCEMEAN (-4) /* over H and W of a 4-D input: GlobalAveragePool (+ Flatten) */
#define OP_QUANTIZE (-5)   /* QuantizeLinear / DequantizeLinear: folded by qdq_fold (pass 1) */
#define OP_DEQUANTIZE (-6)

static int attr_allowed(const op_desc *d, const char *name) {
    size_t n = strlen(name);
    if (n == 0 || strchr(name, ' ')) return 0;
    for (const char *p = strstr(d->attrs, name); p; p = strstr(p + 1, name))
        if (p[-1] == ' ' && p[n] == ' ') return 1;
    return 0;
}

/* The attribute's type; older writers may leave it out, so it is inferred from the field set. */
static int attr_type(const ImsOnnx__AttributeProto *a) {
    if (a->has_type) return (int)a->type;
    if (a->has_f) return IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    if (a->has_i) return IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    if (a->has_s) return IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    if (a->t) return IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    if (a->n_floats) return IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
    if (a->n_ints) return IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    return IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

/* What pass 2 collects from a node besides its inputs. */
typedef struct node_params {
    ims_node n; /* the parameter fields of the node to add */
    int has_kernel;
    int has_pads;
    int has_axis;
    int64_t axis; /* as written, maybe negative */
    int allowzero;
    int has_clip_attr;
    int has_alpha, has_beta;
    int has_perm;       /* perm or axes given as an attribute (in n.perm / n.n_perm, as written) */
    int64_t perm_raw[IS_MAX_RANK];
    int has_to;
    int has_value; /* ConstantOfShape's value given */
} node_params;

/* Context for attribute messages. */
typedef struct actx {
    imp *m;
    const char *node;
    const char *op;
    const char *attr;
} actx;

static imgsim_status bad_type(const actx *c, const char *want) {
    return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': attribute '%s' of %s must be %s",
                   c->m->path, c->node, c->attr, c->op, want);
}

static imgsim_status get_int(const actx *c, const ImsOnnx__AttributeProto *a, int64_t lo, int64_t hi, int *out) {
    if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) return bad_type(c, "an INT");
    if (a->i < lo || a->i > hi)
        return ims_fail(c->m->e, IMGSIM_ERR_UNSUPPORTED,
                       "%s: node '%.200s': %s %s=%lld is not supported (allowed: %lld to %lld)", c->m->path,
                       c->node, c->op, c->attr, (long long)a->i, (long long)lo, (long long)hi);
    *out = (int)a->i;
    return IMGSIM_OK;
}

static imgsim_status get_float(const actx *c, const ImsOnnx__AttributeProto *a, float *out) {
    if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT) return bad_type(c, "a FLOAT");
    if (isnan(a->f))
        return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': %s %s is NaN", c->m->path, c->node,
                       c->op, c->attr);
    *out = a->f;
    return IMGSIM_OK;
}

/* A 2-D spatial list (kernel_shape, strides, dilations: n = 2; pads: n = 4), each in [lo, hi]. */
static imgsim_status get_ints2d(const actx *c, const ImsOnnx__AttributeProto *a, size_t n, int64_t lo,
                                int *out) {
    if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS) return bad_type(c, "INTS");
    if (a->n_ints != n)
        return ims_fail(c->m->e, IMGSIM_ERR_UNSUPPORTED,
                       "%s: node '%.200s': %s with %zu-D %s is not supported (imgsim handles 2-D only)",
                       c->m->path, c->node, c->op, n == 4 ? a->n_ints / 2 : a->n_ints, c->attr);
    for (size_t i = 0; i < n; i++)
        if (a->ints[i] < lo || a->ints[i] > ONNX_MAX_SPATIAL)
            return ims_fail(c->m->e, IMGSIM_ERR_UNSUPPORTED,
                           "%s: node '%.200s': %s %s value %lld is not supported (allowed: %lld to %d)",
                           c->m->path, c->node, c->op, c->attr, (long long)a->ints[i], (long long)lo,
                           ONNX_MAX_SPATIAL);
    for (size_t i = 0; i < n; i++)
        out[i] = (int)a->ints[i];
    return IMGSIM_OK;
}

/* ConstantOfShape's value: a one-element tensor, float or integer, into n->alpha (n->cast_to 1 for
 * a float fill, 0 for an integer one). */
static imgsim_status parse_fill_value(const actx *c, const ImsOnnx__AttributeProto *a, node_params *p) {
    const ImsOnnx__TensorProto *t = a->t;
    ims_node *n = &p->n;
    p->has_value = 1;
    if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR || !t) return bad_type(c, "a TENSOR");
    int dt = t->has_data_type ? t->data_type : 0;
    double v;
    size_t len = t->has_raw_data ? t->raw_data.len : 0;
    const uint8_t *raw = t->has_raw_data ? t->raw_data.data : NULL;
    if (dt == DT_FLOAT && len == 4) {
        float f;
        memcpy(&f, raw, 4);
        v = f;
    } else if (dt == DT_FLOAT && t->n_float_data == 1) {
        v = t->float_data[0];
    } else if (dt == DT_INT64 && len == 8) {
        int64_t i;
        memcpy(&i, raw, 8);
        v = (double)i;
    } else if (dt == DT_INT64 && t->n_int64_data == 1) {
        v = (double)t->int64_data[0];
    } else if (dt == DT_INT32 && len == 4) {
        int32_t i;
        memcpy(&i, raw, 4);
        v = i;
    } else if (dt == DT_INT32 && t->n_int32_data == 1) {
        v = t->int32_data[0];
    } else {
        return ims_fail(c->m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: node '%.200s': %s value must be one float32, int32 or int64 element", c->m->path,
                        c->node, c->op);
    }
    if (!isfinite(v) || fabs(v) > 16777216.0)
        return ims_fail(c->m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': %s value %g is out of range",
                        c->m->path, c->node, c->op, v);
    n->alpha = (float)v;
    n->cast_to = dt == DT_FLOAT;
    return IMGSIM_OK;
}

/* Parses one attribute of a (non-Constant) node into p. */
static imgsim_status parse_attr(const actx *c, const ImsOnnx__AttributeProto *a, node_params *p) {
    const char *nm = c->attr;
    ims_node *n = &p->n;
    if (!strcmp(nm, "kernel_shape")) {
        p->has_kernel = 1;
        return get_ints2d(c, a, 2, 1, n->kernel);
    }
    if (!strcmp(nm, "strides")) return get_ints2d(c, a, 2, 1, n->stride);
    if (!strcmp(nm, "dilations")) return get_ints2d(c, a, 2, 1, n->dilation);
    if (!strcmp(nm, "pads")) {
        p->has_pads = 1;
        return get_ints2d(c, a, 4, 0, n->pad);
    }
    if (!strcmp(nm, "group")) return get_int(c, a, 1, INT_MAX, &n->group);
    if (!strcmp(nm, "ceil_mode")) return get_int(c, a, 0, 1, &n->ceil_mode);
    if (!strcmp(nm, "count_include_pad")) return get_int(c, a, 0, 1, &n->count_include_pad);
    if (!strcmp(nm, "transA")) return get_int(c, a, 0, 1, &n->trans_a);
    if (!strcmp(nm, "transB")) return get_int(c, a, 0, 1, &n->trans_b);
    if (!strcmp(nm, "allowzero")) return get_int(c, a, 0, 1, &p->allowzero);
    if (!strcmp(nm, "fmod")) return get_int(c, a, 0, 1, &n->fmod);
    if (!strcmp(nm, "storage_order")) {
        int v;
        return get_int(c, a, 0, 0, &v); /* column-major indices output: not supported */
    }
    if (!strcmp(nm, "training_mode")) {
        int v;
        return get_int(c, a, 0, 0, &v);
    }
    if (!strcmp(nm, "auto_pad")) {
        if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING) return bad_type(c, "a STRING");
        static const char *const modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
        for (int i = 0; i < 4; i++)
            if (a->s.len == strlen(modes[i]) && !memcmp(a->s.data, modes[i], a->s.len)) {
                n->auto_pad = i;
                return IMGSIM_OK;
            }
        return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': unknown auto_pad value", c->m->path,
                       c->node);
    }
    if (!strcmp(nm, "axis")) {
        if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) return bad_type(c, "an INT");
        p->has_axis = 1;
        p->axis = a->i;
        return IMGSIM_OK;
    }
    if (!strcmp(nm, "epsilon")) {
        imgsim_status s = get_float(c, a, &n->epsilon);
        if (s == IMGSIM_OK && !(n->epsilon >= 0 && n->epsilon < INFINITY))
            return ims_fail(c->m->e, IMGSIM_ERR_FORMAT,
                           "%s: node '%.200s': epsilon %g is not a finite value >= 0", c->m->path, c->node,
                           (double)n->epsilon);
        return s;
    }
    if (!strcmp(nm, "momentum")) {
        float v;
        return get_float(c, a, &v); /* training only */
    }
    if (!strcmp(nm, "alpha")) {
        p->has_alpha = 1;
        return get_float(c, a, &n->alpha);
    }
    if (!strcmp(nm, "beta")) {
        p->has_beta = 1;
        return get_float(c, a, &n->beta);
    }
    if (!strcmp(nm, "perm") || !strcmp(nm, "axes")) {
        if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS) return bad_type(c, "INTS");
        if (a->n_ints > IS_MAX_RANK)
            return ims_fail(c->m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': %s %s has %zu entries (at most %d)",
                            c->m->path, c->node, c->op, nm, a->n_ints, IS_MAX_RANK);
        for (size_t i = 0; i < a->n_ints; i++)
            p->perm_raw[i] = a->ints[i];
        n->n_perm = (int)a->n_ints;
        p->has_perm = 1;
        return IMGSIM_OK;
    }
    if (!strcmp(nm, "to")) {
        if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) return bad_type(c, "an INT");
        static const int is_float[17] = {[DT_FLOAT] = 1, [DT_FLOAT16] = 1, [DT_DOUBLE] = 1, [DT_BFLOAT16] = 1};
        static const int is_intt[17] = {[2] = 1, [3] = 1, [4] = 1, [5] = 1, [DT_INT32] = 1, [DT_INT64] = 1,
                                        [DT_BOOL] = 1, [12] = 1, [13] = 1};
        if (a->i < 0 || a->i > 16 || !(is_float[a->i] || is_intt[a->i]))
            return ims_fail(c->m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': Cast to %s is not supported",
                            c->m->path, c->node, dtype_name((int32_t)a->i));
        n->cast_to = is_float[a->i];
        p->has_to = 1;
        return IMGSIM_OK;
    }
    if (!strcmp(nm, "approximate")) { /* Gelu: "none" or "tanh" (in cast_to: 1 = tanh, refused) */
        if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING) return bad_type(c, "a STRING");
        int none = a->s.len == 4 && !memcmp(a->s.data, "none", 4);
        int tanh_ = a->s.len == 4 && !memcmp(a->s.data, "tanh", 4);
        if (!none && !tanh_)
            return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': unknown Gelu approximation", c->m->path,
                            c->node);
        n->cast_to = tanh_;
        return IMGSIM_OK;
    }
    if (!strcmp(nm, "value")) return parse_fill_value(c, a, p); /* ConstantOfShape */
    if (!strcmp(nm, "stash_type")) {
        int v;
        return get_int(c, a, 1, 1, &v); /* float32 statistics */
    }
    if (!strcmp(nm, "saturate")) {
        int v;
        return get_int(c, a, 0, 1, &v); /* float8 targets only */
    }
    if (!strcmp(nm, "min")) {
        p->has_clip_attr = 1;
        return get_float(c, a, &n->clip_min);
    }
    if (!strcmp(nm, "max")) {
        p->has_clip_attr = 1;
        return get_float(c, a, &n->clip_max);
    }
    return ims_fail(c->m->e, IMGSIM_ERR_INTERNAL, "%s: node '%.200s': attribute '%s' not handled", c->m->path,
                   c->node, nm);
}

/* Looks up a constant operand; fails with a message when the value is not a constant. */
static imgsim_status need_const(imp *m, const char *label, const char *op, int v, const char *what) {
    if (v >= 0 && m->g->vals[v].data) return IMGSIM_OK;
    return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                    "%s: node '%.200s': %s %s must be a constant (an initializer)", m->path, label, op, what);
}

/* ---- per-operator checks (pass 2) ------------------------------------------------------- */

/* One node in pass 2: its inputs resolved, its attributes parsed, what its check decides. */
struct node_ctx {
    imp *m;
    const op_desc *d;
    const char *label;     /* the node's name, for messages and the graph */
    int in[IS_MAX_INPUTS]; /* value per input; -1 for an absent optional input */
    int n_in;              /* inputs the node keeps (Clip keeps only its data input) */
    node_params p;
    int r0;       /* rank of input 0, or -1 when not known */
    int out_rank; /* rank of the output, or -1 when not known */
    const struct pad_fold *pre_pad; /* input 0 is a folded Pad's output (Conv, AveragePool) */
};

/* Conv: the kernel comes from a constant 4-D weight [OC, IC/group, KH, KW] (kernel_shape, when
 * given, must agree); an optional bias is a constant of OC values. */
static imgsim_status check_conv(node_ctx *c) {
    imp *m = c->m;
    const ims_graph *g = m->g;
    const char *label = c->label;
    const int *in = c->in;
    node_params *p = &c->p;
    imgsim_status s = need_const(m, label, "Conv", in[1], "weight");
    if (s != IMGSIM_OK) return s;
    const ims_value *w = &g->vals[in[1]];
    if (w->rank != 4)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: node '%.200s': %d-D convolution is not supported (imgsim handles 2-D only)",
                        m->path, label, w->rank - 2);
    if (w->dims[2] > ONNX_MAX_SPATIAL || w->dims[3] > ONNX_MAX_SPATIAL)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': kernel too large", m->path, label);
    if (p->has_kernel && (p->n.kernel[0] != w->dims[2] || p->n.kernel[1] != w->dims[3]))
        return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                        "%s: node '%.200s': kernel_shape %dx%d disagrees with the weight's %lldx%lld",
                        m->path, label, p->n.kernel[0], p->n.kernel[1], (long long)w->dims[2],
                        (long long)w->dims[3]);
    p->n.kernel[0] = (int)w->dims[2];
    p->n.kernel[1] = (int)w->dims[3];
    c->out_rank = 4; /* also when the input's rank is not known here (after a computed Reshape) */
    if (c->n_in == 3 && in[2] >= 0) {
        s = need_const(m, label, "Conv", in[2], "bias");
        if (s != IMGSIM_OK) return s;
        if (g->vals[in[2]].rank != 1 || g->vals[in[2]].dims[0] != w->dims[0])
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Conv bias must have %lld values",
                            m->path, label, (long long)w->dims[0]);
    }
    return IMGSIM_OK;
}

/* MaxPool, AveragePool: kernel_shape is required; the output is 4-D. */
static imgsim_status check_pool(node_ctx *c) {
    if (!c->p.has_kernel)
        return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': %s needs kernel_shape", c->m->path,
                        c->label, c->d->onnx);
    c->out_rank = 4;
    return IMGSIM_OK;
}

/* BatchNormalization: scale, bias, mean and variance are constant 1-D vectors of one length. */
static imgsim_status check_batchnorm(node_ctx *c) {
    imp *m = c->m;
    const ims_graph *g = m->g;
    const int *in = c->in;
    for (int i = 1; i < 5; i++) {
        static const char *const what[] = {"", "scale", "bias", "mean", "variance"};
        imgsim_status s = need_const(m, c->label, "BatchNormalization", in[i], what[i]);
        if (s != IMGSIM_OK) return s;
        if (g->vals[in[i]].rank != 1 || g->vals[in[i]].dims[0] != g->vals[in[1]].dims[0])
            return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                            "%s: node '%.200s': BatchNormalization %s must be 1-D like the scale", m->path,
                            c->label, what[i]);
    }
    return IMGSIM_OK;
}

/* Clip: bounds given as inputs (opset >= 11) are constant scalars; they go to clip_min/clip_max
 * and the node keeps only its data input. */
static imgsim_status check_clip(node_ctx *c) {
    imp *m = c->m;
    const ims_graph *g = m->g;
    const char *label = c->label;
    const int *in = c->in;
    for (int i = 1; i < c->n_in; i++) { /* opset >= 11: bounds as constant scalar inputs */
        if (in[i] < 0) continue;
        imgsim_status s = need_const(m, label, "Clip", in[i], i == 1 ? "min" : "max");
        if (s != IMGSIM_OK) return s;
        if (ims_value_numel(&g->vals[in[i]]) != 1)
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Clip %s must be a scalar", m->path,
                            label, i == 1 ? "min" : "max");
        float b = g->vals[in[i]].data[0];
        if (isnan(b))
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Clip bound is NaN", m->path, label);
        if (i == 1)
            c->p.n.clip_min = b;
        else
            c->p.n.clip_max = b;
    }
    c->n_in = 1;
    return IMGSIM_OK;
}

/* Reshape: the shape is a constant 1-D list of at most IS_MAX_RANK integers >= -1 (no 0 with
 * allowzero); its length is the output's rank. A shape computed by the graph (Shape -> Gather
 * -> Concat ...) is left to shape inference, which folds it to a constant; the rank is then not
 * known here. */
static imgsim_status check_reshape(node_ctx *c) {
    imp *m = c->m;
    const char *label = c->label;
    if (c->in[1] >= 0 && !m->g->vals[c->in[1]].data) { /* computed from shapes: shape inference folds it */
        c->out_rank = -1;
        return IMGSIM_OK;
    }
    imgsim_status s = need_const(m, label, "Reshape", c->in[1], "shape");
    if (s != IMGSIM_OK) return s;
    const ims_value *sh = &m->g->vals[c->in[1]];
    if (sh->rank != 1 || sh->dims[0] > IS_MAX_RANK || m->inexact[c->in[1]])
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: node '%.200s': Reshape shape must be 1-D with at most %d small integers",
                        m->path, label, IS_MAX_RANK);
    for (int64_t i = 0; i < sh->dims[0]; i++) {
        float v = sh->data[i];
        if (v != floorf(v) || v < -1)
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Reshape shape value %g is invalid",
                            m->path, label, (double)v);
        if (v == 0 && c->p.allowzero)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': Reshape allowzero=1 with a 0 is not supported", m->path,
                            label);
    }
    c->out_rank = (int)sh->dims[0];
    return IMGSIM_OK;
}

/* Gemm: B and the optional C are constants; the output is 2-D. */
static imgsim_status check_gemm(node_ctx *c) {
    imgsim_status s = need_const(c->m, c->label, "Gemm", c->in[1], "B");
    if (s != IMGSIM_OK) return s;
    if (c->n_in == 3 && c->in[2] >= 0 && (s = need_const(c->m, c->label, "Gemm", c->in[2], "C")) != IMGSIM_OK)
        return s;
    c->out_rank = 2;
    return IMGSIM_OK;
}

/* Add, Mul: the output has the larger rank of the two (broadcasting). */
static imgsim_status check_broadcast(node_ctx *c) {
    int r0 = c->r0, r1 = c->m->rank[c->in[1]];
    c->out_rank = r0 < 0 || r1 < 0 ? -1 : (r0 > r1 ? r0 : r1);
    return IMGSIM_OK;
}

/* MatMul: numpy's rank rule (a 1-D operand loses its axis). */
static imgsim_status check_matmul(node_ctx *c) {
    int r0 = c->r0, r1 = c->m->rank[c->in[1]];
    if (r0 < 0 || r1 < 0)
        c->out_rank = -1;
    else if (r0 == 1 && r1 == 1)
        c->out_rank = 0;
    else
        c->out_rank = (r0 > r1 ? r0 : r1) - (r0 == 1 || r1 == 1);
    return IMGSIM_OK;
}

/* Makes the axis attribute (c->p.axis, as written) non-negative with input 0's rank, into the
 * node's axis; hi_extra = 1 allows axis == rank (Flatten: [0, r]; Concat: [0, r - 1]). */
static imgsim_status resolve_axis(node_ctx *c, int hi_extra) {
    imp *m = c->m;
    int r0 = c->r0;
    int64_t ax = c->p.axis;
    if (ax < 0) {
        if (r0 < 0)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': negative axis on an input of unknown rank", m->path,
                            c->label);
        ax += r0;
    }
    if (ax < 0 || ax > IS_MAX_RANK || (r0 >= 0 && ax >= r0 + hi_extra))
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': %s axis %lld is out of range", m->path,
                        c->label, c->d->onnx, (long long)c->p.axis);
    c->p.n.axis = (int)ax;
    return IMGSIM_OK;
}

/* Flatten: axis (default 1) in [0, r]; the output is 2-D. */
static imgsim_status check_flatten(node_ctx *c) {
    if (!c->p.has_axis) c->p.axis = 1;
    imgsim_status s = resolve_axis(c, 1);
    if (s != IMGSIM_OK) return s;
    c->out_rank = 2;
    return IMGSIM_OK;
}

/* Concat: axis is required, in [0, r - 1] (r: the rank of any input whose rank is known). */
static imgsim_status check_concat(node_ctx *c) {
    if (!c->p.has_axis)
        return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Concat needs an axis", c->m->path,
                        c->label);
    for (int k = 1; c->r0 < 0 && k < c->n_in; k++) /* inputs share a rank: any one known */
        c->r0 = c->in[k] >= 0 ? c->m->rank[c->in[k]] : -1;
    c->out_rank = c->r0;
    return resolve_axis(c, 0);
}

/* HardSigmoid: ONNX's defaults alpha 0.2, beta 0.5 (torch writes alpha 1/6); both finite. */
static imgsim_status check_hardsigmoid(node_ctx *c) {
    if (!c->p.has_alpha) c->p.n.alpha = 0.2f;
    if (!c->p.has_beta) c->p.n.beta = 0.5f;
    if (!isfinite(c->p.n.alpha) || !isfinite(c->p.n.beta))
        return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': HardSigmoid alpha/beta must be finite",
                        c->m->path, c->label);
    return IMGSIM_OK;
}

/* Axis list of Transpose (perm), Unsqueeze/Squeeze (axes): from the attribute (p.perm_raw) or,
 * for Unsqueeze/Squeeze from opset 13, a constant input 1 (dropped: the node keeps its data
 * input); each made non-negative against rank r (-1: unknown, then negatives are refused) into
 * n.perm, duplicates refused. *given: whether any list was given. */
static imgsim_status axes_list(node_ctx *c, int r, int *given) {
    imp *m = c->m;
    node_params *p = &c->p;
    int64_t raw[IS_MAX_RANK];
    int n = 0;
    int has_input = c->n_in >= 2 && c->in[1] >= 0;
    *given = has_input || p->has_perm;
    if (has_input) {
        const ims_value *v = &m->g->vals[c->in[1]];
        if (!v->data || p->has_perm || v->rank > 1 || ims_value_numel(v) > IS_MAX_RANK || m->inexact[c->in[1]])
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': %s axes must be a constant list of at most %d axes", m->path,
                            c->label, c->d->onnx, IS_MAX_RANK);
        n = (int)ims_value_numel(v);
        for (int i = 0; i < n; i++)
            raw[i] = (int64_t)v->data[i];
    } else if (p->has_perm) {
        n = p->n.n_perm;
        memcpy(raw, p->perm_raw, sizeof raw);
    }
    c->n_in = 1; /* the node keeps its data input */
    unsigned seen = 0;
    for (int i = 0; i < n; i++) {
        int64_t a = raw[i];
        if (a < 0 && r < 0)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': negative %s axis on an input of unknown rank", m->path, c->label,
                            c->d->onnx);
        if (a < 0) a += r;
        if (a < 0 || a >= IS_MAX_RANK || (r >= 0 && a >= r) || (seen >> a & 1))
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': %s axis %lld is out of range or repeated",
                            m->path, c->label, c->d->onnx, (long long)raw[i]);
        seen |= 1u << a;
        p->n.perm[i] = (int)a;
    }
    p->n.n_perm = n;
    return IMGSIM_OK;
}

/* Transpose: perm (default: the axes reversed) is a permutation of the input's axes. */
static imgsim_status check_transpose(node_ctx *c) {
    int given;
    if (!c->p.has_perm) {
        if (c->r0 < 0)
            return ims_fail(c->m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': Transpose without perm on an input of unknown rank", c->m->path,
                            c->label);
        c->p.n.n_perm = c->r0;
        for (int i = 0; i < c->r0; i++)
            c->p.perm_raw[i] = c->r0 - 1 - i;
        c->p.has_perm = 1;
    }
    imgsim_status s = axes_list(c, c->p.n.n_perm, &given);
    if (s != IMGSIM_OK) return s;
    if (c->r0 >= 0 && c->p.n.n_perm != c->r0)
        return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Transpose perm has %d entries for rank %d",
                        c->m->path, c->label, c->p.n.n_perm, c->r0);
    c->out_rank = c->p.n.n_perm;
    return IMGSIM_OK;
}

/* Unsqueeze: axes (attribute, or input from opset 13) index the output (rank r0 + count). */
static imgsim_status check_unsqueeze(node_ctx *c) {
    int given, r0 = c->r0;
    int nax = c->p.has_perm ? c->p.n.n_perm
              : (c->n_in >= 2 && c->in[1] >= 0) ? (int)ims_value_numel(&c->m->g->vals[c->in[1]])
                                                : 0;
    int r = r0 < 0 ? -1 : r0 + nax;
    imgsim_status s = axes_list(c, r, &given);
    if (s != IMGSIM_OK) return s;
    if (!given || c->p.n.n_perm == 0 || (r >= 0 && r > IS_MAX_RANK))
        return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Unsqueeze needs 1 to %d axes",
                        c->m->path, c->label, IS_MAX_RANK);
    c->out_rank = r;
    return IMGSIM_OK;
}

/* Squeeze: axes (attribute, or input from opset 13) of the input; none: every axis of size 1. */
static imgsim_status check_squeeze(node_ctx *c) {
    int given;
    imgsim_status s = axes_list(c, c->r0, &given);
    if (s != IMGSIM_OK) return s;
    c->out_rank = !given || c->r0 < 0 ? -1 : c->r0 - c->p.n.n_perm;
    return IMGSIM_OK;
}

/* Gather: axis (default 0) of the data; the output's rank is r0 - 1 + the indices' rank. */
static imgsim_status check_gather(node_ctx *c) {
    if (!c->p.has_axis) c->p.axis = 0;
    imgsim_status s = resolve_axis(c, 0);
    if (s != IMGSIM_OK) return s;
    int ri = c->m->rank[c->in[1]];
    c->out_rank = c->r0 < 0 || ri < 0 ? -1 : c->r0 - 1 + ri;
    return IMGSIM_OK;
}

/* Shape: a 1-D list of the input's dims. */
static imgsim_status check_shape(node_ctx *c) {
    c->out_rank = 1;
    return IMGSIM_OK;
}

/* LayerNormalization: over the last axis only; scale and the optional bias constants. */
static imgsim_status check_layernorm(node_ctx *c) {
    imp *m = c->m;
    if (!c->p.has_axis) c->p.axis = -1;
    imgsim_status s = resolve_axis(c, 0);
    if (s != IMGSIM_OK) return s;
    if (c->r0 < 0 || c->p.n.axis != c->r0 - 1)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: node '%.200s': LayerNormalization (opset %d) is supported over the last axis only",
                        m->path, c->label, m->opset);
    if ((s = need_const(m, c->label, "LayerNormalization", c->in[1], "scale")) != IMGSIM_OK) return s;
    if (c->n_in > 2 && c->in[2] >= 0 &&
        (s = need_const(m, c->label, "LayerNormalization", c->in[2], "bias")) != IMGSIM_OK)
        return s;
    return IMGSIM_OK;
}

/* Gelu (opset 20): the erf form (approximate "none"). */
static imgsim_status check_gelu(node_ctx *c) {
    if (c->p.n.cast_to)
        return ims_fail(c->m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: node '%.200s': Gelu with approximate='tanh' is not supported", c->m->path, c->label);
    return IMGSIM_OK;
}

/* Cast: to is required. */
static imgsim_status check_cast(node_ctx *c) {
    if (!c->p.has_to)
        return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Cast needs 'to'", c->m->path, c->label);
    return IMGSIM_OK;
}

/* Softmax: the axis as written (default -1 from opset 13, 1 before, where it flattens the
 * axes from it on); shape inference resolves it and accepts only the last axis, where both
 * definitions agree. */
static imgsim_status check_softmax(node_ctx *c) {
    int64_t ax = c->p.has_axis ? c->p.axis : c->m->opset >= 13 ? -1 : 1;
    if (ax < -IS_MAX_RANK || ax >= IS_MAX_RANK)
        return ims_fail(c->m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Softmax axis %lld is out of range",
                        c->m->path, c->label, (long long)ax);
    c->p.n.axis = (int)ax;
    return IMGSIM_OK;
}

/* ConstantOfShape: fills with 0.0 (float) unless value says otherwise. */
static imgsim_status check_constantofshape(node_ctx *c) {
    if (!c->p.has_value) {
        c->p.n.alpha = 0.0f;
        c->p.n.cast_to = 1;
    }
    c->out_rank = -1;
    return IMGSIM_OK;
}

/* ---- the operator table ----------------------------------------------------------------- */

#define OPT_IN(i) (1u << (i))

static const op_desc op_table[] = {
    {"Conv", IS_OP_CONV, 2, 3, OPT_IN(2), " auto_pad dilations group kernel_shape pads strides ", check_conv},
    {"BatchNormalization", IS_OP_BATCHNORM, 5, 5, 0, " epsilon momentum training_mode ", check_batchnorm},
    {"Relu", IS_OP_RELU, 1, 1, 0, " ", NULL},
    {"Clip", IS_OP_CLIP, 1, 3, OPT_IN(1) | OPT_IN(2), " min max ", check_clip},
    {"Add", IS_OP_ADD, 2, 2, 0, " ", check_broadcast},
    {"Mul", IS_OP_MUL, 2, 2, 0, " ", check_broadcast},
    {"Sigmoid", IS_OP_SIGMOID, 1, 1, 0, " ", NULL},
    {"MaxPool", IS_OP_MAXPOOL, 1, 1, 0,
     " auto_pad ceil_mode dilations kernel_shape pads storage_order strides ", check_pool},
    {"AveragePool", IS_OP_AVGPOOL, 1, 1, 0,
     " auto_pad ceil_mode count_include_pad kernel_shape pads strides ", check_pool},
    {"GlobalAveragePool", IS_OP_GLOBALAVGPOOL, 1, 1, 0, " ", NULL},
    {"Flatten", IS_OP_FLATTEN, 1, 1, 0, " axis ", check_flatten},
    {"Reshape", IS_OP_RESHAPE, 2, 2, 0, " allowzero ", check_reshape},
    {"Gemm", IS_OP_GEMM, 2, 3, OPT_IN(2), " alpha beta transA transB ", check_gemm},
    {"MatMul", IS_OP_MATMUL, 2, 2, 0, " ", check_matmul},
    /* more inputs than IS_MAX_INPUTS: a chain, see add_concat_chain */
    {"Concat", IS_OP_CONCAT, 1, IS_MAX_INPUTS, 0, " axis ", check_concat},
    {"Identity", IS_OP_IDENTITY, 1, 1, 0, " ", NULL},
    {"HardSigmoid", IS_OP_HARDSIGMOID, 1, 1, 0, " alpha beta ", check_hardsigmoid},
    {"HardSwish", IS_OP_HARDSWISH, 1, 1, 0, " ", NULL}, /* opset 14 */
    {"Sub", IS_OP_SUB, 2, 2, 0, " ", check_broadcast},
    {"Div", IS_OP_DIV, 2, 2, 0, " ", check_broadcast},
    {"Transpose", IS_OP_TRANSPOSE, 1, 1, 0, " perm ", check_transpose},
    {"Slice", IS_OP_SLICE, 3, 5, OPT_IN(3) | OPT_IN(4), " ", NULL}, /* opset >= 10: inputs */
    {"Pow", IS_OP_POW, 2, 2, 0, " ", check_broadcast},
    {"Sqrt", IS_OP_SQRT, 1, 1, 0, " ", NULL},
    {"Erf", IS_OP_ERF, 1, 1, 0, " ", NULL},
    {"Gelu", IS_OP_GELU, 1, 1, 0, " approximate ", check_gelu},
    {"LayerNormalization", IS_OP_LAYERNORM, 2, 3, OPT_IN(2), " axis epsilon stash_type ", check_layernorm},
    /* shape arithmetic, folded by shape inference */
    {"Shape", IS_OP_SHAPE, 1, 1, 0, " ", check_shape},
    {"Gather", IS_OP_GATHER, 2, 2, 0, " axis ", check_gather},
    {"Unsqueeze", IS_OP_UNSQUEEZE, 1, 2, OPT_IN(1), " axes ", check_unsqueeze},
    {"Squeeze", IS_OP_SQUEEZE, 1, 2, OPT_IN(1), " axes ", check_squeeze},
    {"Cast", IS_OP_CAST, 1, 1, 0, " saturate to ", check_cast},
    /* transformers: Softmax (the attention core, fused by attention.c, or on its own), the class
     * token's Expand and the shape arithmetic before it */
    {"Softmax", IS_OP_SOFTMAX, 1, 1, 0, " axis ", check_softmax},
    {"Expand", IS_OP_EXPAND, 2, 2, 0, " ", NULL},
    {"ConstantOfShape", IS_OP_CONSTANTOFSHAPE, 1, 1, 0, " value ", check_constantofshape},
    {"Equal", IS_OP_EQUAL, 2, 2, 0, " ", NULL},
    {"Where", IS_OP_WHERE, 3, 3, 0, " ", NULL},
    /* torch 2.x's unflatten of the packed q/k/v projection: Mod(dim, rank) on constants */
    {"Mod", IS_OP_MOD, 2, 2, 0, " fmod ", NULL},
    /* pass 1 handles these three (add_constant_node, check_pad, check_dropout) */
    {"Constant", OP_CONSTANT, 0, 0, 0, " value value_float value_floats value_int value_ints ", NULL},
    {"Pad", OP_PAD, 2, 4, 0, " mode ", NULL},
    {"Dropout", OP_DROPOUT, 1, 3, 0, " ratio seed ", NULL},
    /* explicit quantisation: folded in pass 1 (qdq_fold), never graph nodes */
    {"QuantizeLinear", OP_QUANTIZE, 2, 3, OPT_IN(2), " axis saturate ", NULL},
    {"DequantizeLinear", OP_DEQUANTIZE, 2, 3, OPT_IN(2), " axis ", NULL},
    /* pass 2 handles this one (add_reducemean) */
    {"ReduceMean", OP_REDUCEMEAN, 1, 2, OPT_IN(1), " axes keepdims noop_with_empty_axes ", NULL},
};

static const op_desc *find_op(const char *name) {
    for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
        if (!strcmp(op_table[i].onnx, name)) return &op_table[i];
    return NULL;
}

/* Converts a Constant node's value into a constant value named after its output. */
static imgsim_status add_constant_node(imp *m, ImsOnnx__NodeProto *np, const char *label) {
    if (np->n_input != 0 || np->n_output != 1 || !np->output[0][0])
        return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                       "%s: node '%.200s': Constant needs no input and one named output", m->path, label);
    if (np->n_attribute != 1)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                       "%s: node '%.200s': Constant needs exactly one value attribute", m->path, label);
    ImsOnnx__AttributeProto *a = np->attribute[0];
    const char *an = S(a->name), *out = np->output[0];
    int type = attr_type(a), v;
    const op_desc *d = find_op("Constant");
    if (!attr_allowed(d, an))
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                       "%s: node '%.200s': Constant attribute '%.100s' is not supported", m->path, label, an);
    if (!strcmp(an, "value")) {
        if (type != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR || !a->t)
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Constant value must be a TENSOR",
                           m->path, label);
        return add_tensor(m, a->t, out, &v);
    }
    /* value_float(s) / value_int(s): wrap in a TensorProto and convert the same way */
    ImsOnnx__TensorProto t = IMS_ONNX__TENSOR_PROTO__INIT;
    int64_t n1;
    t.has_data_type = 1;
    if (!strcmp(an, "value_float") && type == IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT) {
        t.data_type = DT_FLOAT;
        t.n_float_data = 1;
        t.float_data = &a->f;
    } else if (!strcmp(an, "value_int") && type == IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) {
        t.data_type = DT_INT64;
        t.n_int64_data = 1;
        t.int64_data = &a->i;
    } else if (!strcmp(an, "value_floats") && type == IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS) {
        t.data_type = DT_FLOAT;
        t.n_float_data = a->n_floats;
        t.float_data = a->floats;
        n1 = (int64_t)a->n_floats;
        t.n_dims = 1;
        t.dims = &n1;
    } else if (!strcmp(an, "value_ints") && type == IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS) {
        t.data_type = DT_INT64;
        t.n_int64_data = a->n_ints;
        t.int64_data = a->ints;
        n1 = (int64_t)a->n_ints;
        t.n_dims = 1;
        t.dims = &n1;
    } else {
        return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                       "%s: node '%.200s': Constant attribute '%s' has the wrong type", m->path, label, an);
    }
    return add_tensor(m, &t, out, &v);
}

/* Checks a node's arity and resolves its inputs by name into c->in (-1 for an absent optional
 * input, which only the inputs the operator marks optional may be). */
static imgsim_status resolve_inputs(node_ctx *c, const ImsOnnx__NodeProto *np) {
    imp *m = c->m;
    const op_desc *d = c->d;
    const char *label = c->label;
    if (np->n_input < (size_t)d->min_in || np->n_input > (size_t)d->max_in)
        return ims_fail(m->e,
                        d->op == IS_OP_CONCAT && np->n_input > IS_MAX_INPUTS ? IMGSIM_ERR_UNSUPPORTED
                                                                             : IMGSIM_ERR_FORMAT,
                        "%s: node '%.200s': %s has %zu inputs (expected %d to %d)", m->path, label, d->onnx,
                        np->n_input, d->min_in, d->max_in);
    c->n_in = (int)np->n_input;
    for (int i = 0; i < c->n_in; i++) {
        const char *nm = S(np->input[i]);
        if (!*nm) {
            c->in[i] = -1; /* an absent optional input */
            if (!(d->opt_in & OPT_IN(i)))
                return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': %s input %d is empty", m->path,
                                label, d->onnx, i);
            continue;
        }
        const struct pad_fold *pf = find_pad(m, nm);
        if (pf) {
            if (i != 0 || (d->op != IS_OP_CONV && d->op != IS_OP_AVGPOOL))
                return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                                "%s: node '%.200s': %s reads '%.200s', the output of Pad '%.200s' with non-zero "
                                "pads, which imgsim supports only before a Conv or AveragePool",
                                m->path, label, d->onnx, nm, pf->node);
            c->pre_pad = pf;
        }
        c->in[i] = map_get(&m->names, nm);
        if (c->in[i] >= 0 && (m->dtype[c->in[i]] == DT_INT8 || m->dtype[c->in[i]] == DT_UINT8))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': tensor '%.200s': data type %s is supported only as the input or zero "
                            "point of a QuantizeLinear/DequantizeLinear, not as an input of %s",
                            m->path, label, nm, dtype_name(m->dtype[c->in[i]]), d->onnx);
        if (c->in[i] < 0)
            return ims_fail(
                m->e, IMGSIM_ERR_FORMAT,
                "%s: node '%.200s': input '%.200s' is not defined (no initializer, graph input or "
                "node output has this name)",
                m->path, label, nm);
    }
    return IMGSIM_OK;
}

/* Sets ONNX's attribute defaults in c->p, then parses the node's attributes over them. */
static imgsim_status parse_attrs(node_ctx *c, const ImsOnnx__NodeProto *np) {
    imp *m = c->m;
    node_params *p = &c->p;
    memset(p, 0, sizeof *p);
    p->n.stride[0] = p->n.stride[1] = 1;
    p->n.dilation[0] = p->n.dilation[1] = 1;
    p->n.group = 1;
    p->n.alpha = p->n.beta = 1.0f;
    p->n.epsilon = 1e-5f;
    p->n.clip_min = -FLT_MAX; /* ONNX: numeric_limits<float>::lowest() */
    p->n.clip_max = FLT_MAX;
    for (size_t i = 0; i < np->n_attribute; i++) {
        const ImsOnnx__AttributeProto *a = np->attribute[i];
        actx ac = {m, c->label, c->d->onnx, S(a->name)};
        if (a->ref_attr_name && a->ref_attr_name[0])
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': attribute references are not supported", m->path, c->label);
        if (!attr_allowed(c->d, ac.attr))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': attribute '%.100s' of %s is not supported", m->path, c->label,
                            ac.attr, c->d->onnx);
        imgsim_status s = parse_attr(&ac, a, p);
        if (s != IMGSIM_OK) return s;
    }
    return IMGSIM_OK;
}

/* Adds the checked node to the graph with its parameters, and records its output's rank. */
static imgsim_status emit_node(node_ctx *c, const char *output) {
    imp *m = c->m;
    const ims_node *pn = &c->p.n;
    int out = map_get(&m->names, output);
    ims_node *n = ims_graph_add_node(m->g, (ims_op)c->d->op, c->label, c->n_in, c->in, out);
    if (!n)
        return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory adding node '%.200s'", m->path, c->label);
    memcpy(n->kernel, pn->kernel, sizeof n->kernel);
    memcpy(n->stride, pn->stride, sizeof n->stride);
    memcpy(n->dilation, pn->dilation, sizeof n->dilation);
    memcpy(n->pad, pn->pad, sizeof n->pad);
    n->auto_pad = pn->auto_pad;
    n->group = pn->group;
    n->ceil_mode = pn->ceil_mode;
    n->count_include_pad = pn->count_include_pad;
    n->epsilon = pn->epsilon;
    n->alpha = pn->alpha;
    n->beta = pn->beta;
    n->trans_a = pn->trans_a;
    n->trans_b = pn->trans_b;
    n->clip_min = pn->clip_min;
    n->clip_max = pn->clip_max;
    n->axis = pn->axis;
    memcpy(n->perm, pn->perm, sizeof n->perm);
    n->n_perm = pn->n_perm;
    n->cast_to = c->d->op == IS_OP_GELU ? 0 : pn->cast_to;
    m->rank[out] = c->out_rank;
    return IMGSIM_OK;
}

/* Pass 2 for one node: resolves inputs, checks attributes and arity, runs the operator's own
 * check, adds the ims_node. */
static imgsim_status add_node(imp *m, const ImsOnnx__NodeProto *np, const op_desc *d, const char *label) {
    node_ctx c;
    c.m = m;
    c.d = d;
    c.label = label;
    c.pre_pad = NULL;
    imgsim_status s = resolve_inputs(&c, np);
    if (s == IMGSIM_OK) s = parse_attrs(&c, np);
    if (s != IMGSIM_OK) return s;
    c.r0 = c.in[0] >= 0 ? m->rank[c.in[0]] : -1;
    c.out_rank = c.r0;
    if (d->check && (s = d->check(&c)) != IMGSIM_OK) return s;
    if (c.p.n.auto_pad != 0 && c.p.has_pads)
        for (int i = 0; i < 4; i++)
            if (c.p.n.pad[i] != 0)
                return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': pads and auto_pad are both set",
                                m->path, label);
    if (c.pre_pad) { /* zero padding before: the node's own pads grow (exact for Conv, and for an
                        AveragePool that counts its padding) */
        int own = 0;
        for (int i = 0; i < 4; i++)
            own |= c.p.n.pad[i];
        if (c.p.n.auto_pad != 0 || (d->op == IS_OP_AVGPOOL && own && !c.p.n.count_include_pad))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': %s after Pad '%.200s' with auto_pad or its own uncounted pads "
                            "is not supported",
                            m->path, label, d->onnx, c.pre_pad->node);
        for (int i = 0; i < 4; i++)
            c.p.n.pad[i] += c.pre_pad->pad[i];
        if (d->op == IS_OP_AVGPOOL) c.p.n.count_include_pad = 1;
    }
    return emit_node(&c, np->output[0]);
}

/* Accepts a Pad whose pads are a constant of zeros (it changes nothing, whatever its mode), and
 * a constant-mode Pad by zeros of H and W only (torch writes one before an AveragePool with
 * count_include_pad): that one is recorded in m->pads and folded into the pads of the Conv or
 * AveragePool reading it (pass 2); any other Pad is refused. */
static imgsim_status check_pad(imp *m, const ImsOnnx__NodeProto *np, const char *label) {
    const op_desc *d = find_op("Pad");
    if (np->n_input < 2 || np->n_input > 4)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Pad has %zu inputs (expected 2 to 4)",
                       m->path, label, np->n_input);
    int constant_mode = 1;
    for (size_t i = 0; i < np->n_attribute; i++) {
        const ImsOnnx__AttributeProto *a = np->attribute[i];
        if (!attr_allowed(d, S(a->name)))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                           "%s: node '%.200s': attribute '%.100s' of Pad is not supported", m->path, label,
                           S(a->name));
        if (!strcmp(S(a->name), "mode"))
            constant_mode = a->s.len == 8 && !memcmp(a->s.data, "constant", 8);
    }
    if (map_get(&m->names, np->output[0]) >= 0 || find_pad(m, np->output[0]))
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: value '%.200s' is defined twice", m->path,
                       np->output[0]);
    int v = map_get(&m->names, S(np->input[1]));
    if (v < 0 || !m->g->vals[v].data)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': Pad pads must be a constant",
                       m->path, label);
    const ims_value *pv = &m->g->vals[v];
    int64_t n = ims_value_numel(pv);
    int zero = 1;
    for (int64_t i = 0; i < n; i++)
        if (pv->data[i] != 0) zero = 0;
    if (zero) return IMGSIM_OK;
    const char *why = NULL;
    if (!constant_mode)
        why = "a mode other than constant";
    else if (np->n_input == 4 && S(np->input[3])[0])
        why = "axes";
    else if (n != 8 || pv->rank != 1)
        why = "pads of other than a 4-D input";
    else if (pv->data[0] != 0 || pv->data[1] != 0 || pv->data[4] != 0 || pv->data[5] != 0)
        why = "padding of the batch or channel axis";
    for (int k = 2; !why && k < 8; k++)
        if (pv->data[k] < 0 || pv->data[k] > ONNX_MAX_SPATIAL || m->inexact[v]) why = "negative or huge pads";
    if (!why && np->n_input >= 3 && S(np->input[2])[0]) {
        int cv = map_get(&m->names, np->input[2]);
        if (cv < 0 || !m->g->vals[cv].data || ims_value_numel(&m->g->vals[cv]) != 1 || m->g->vals[cv].data[0] != 0)
            why = "a constant_value other than 0";
    }
    if (why)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: node '%.200s': Pad (opset %d) with %s is not supported (imgsim folds zero padding of "
                        "H and W into the Conv or AveragePool that follows)",
                        m->path, label, m->opset, why);
    struct pad_fold *pf = &m->pads[m->n_pads++];
    pf->out = np->output[0];
    pf->node = S(np->name);
    pf->pad[0] = (int)pv->data[2];
    pf->pad[1] = (int)pv->data[3];
    pf->pad[2] = (int)pv->data[6];
    pf->pad[3] = (int)pv->data[7];
    return IMGSIM_OK;
}

/* Accepts an inference-mode Dropout (no training_mode input, or a constant 0): the identity. */
static imgsim_status check_dropout(imp *m, const ImsOnnx__NodeProto *np, const char *label) {
    const op_desc *d = find_op("Dropout");
    if (np->n_input < 1 || np->n_input > 3)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': Dropout has %zu inputs (expected 1 to 3)",
                       m->path, label, np->n_input);
    for (size_t i = 0; i < np->n_attribute; i++)
        if (!attr_allowed(d, S(np->attribute[i]->name)))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                           "%s: node '%.200s': attribute '%.100s' of Dropout is not supported", m->path,
                           label, S(np->attribute[i]->name));
    if (np->n_input == 3 && S(np->input[2])[0]) {
        int v = map_get(&m->names, np->input[2]);
        if (v < 0 || !m->g->vals[v].data || ims_value_numel(&m->g->vals[v]) != 1 || m->g->vals[v].data[0] != 0)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                           "%s: node '%.200s': Dropout in training mode is not supported", m->path, label);
    }
    if (map_get(&m->names, np->output[0]) >= 0)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: value '%.200s' is defined twice", m->path,
                       np->output[0]);
    return IMGSIM_OK;
}

/* A Concat of more than IS_MAX_INPUTS inputs (DenseNet's blocks) becomes a chain of Concats on
 * the same axis, each taking the previous part and up to IS_MAX_INPUTS - 1 more inputs:
 *   concat(a1..a16) -> t1, concat(t1, a17..a31) -> t2, ..., concat(tk, ..., an) -> output
 * The intermediate values are named "<output>__concat<k>". */
static imgsim_status add_concat_chain(imp *m, const ImsOnnx__NodeProto *np, const op_desc *d,
                                      const char *label) {
    const char *prev = NULL;
    size_t done = 0;
    for (int k = 0; done < np->n_input; k++) {
        size_t room = prev ? IS_MAX_INPUTS - 1 : IS_MAX_INPUTS;
        size_t take = np->n_input - done < room ? np->n_input - done : room;
        char *ins[IS_MAX_INPUTS], *outs[1];
        size_t ni = 0;
        if (prev) ins[ni++] = (char *)prev;
        for (size_t j = 0; j < take; j++)
            ins[ni++] = np->input[done + j];
        done += take;
        if (done == np->n_input) {
            outs[0] = np->output[0];
        } else {
            size_t len = strlen(np->output[0]) + 32;
            char *tmp = ims_malloc(len);
            if (!tmp) return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory", m->path);
            snprintf(tmp, len, "%s__concat%d", np->output[0], k);
            if (map_get(&m->names, tmp) >= 0) {
                imgsim_status s =
                    ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': value name '%.200s' is taken",
                            m->path, label, tmp);
                free(tmp);
                return s;
            }
            int v = add_value(m, tmp, 0, NULL, NULL, 0);
            if (v >= 0) map_put(&m->names, m->g->vals[v].name, v); /* re-key with the graph's copy */
            free(tmp);
            if (v < 0) return IMGSIM_ERR_NOMEM;
            outs[0] = m->g->vals[v].name;
        }
        ImsOnnx__NodeProto part = *np;
        part.input = ins;
        part.n_input = ni;
        part.output = outs;
        part.n_output = 1;
        char plabel[300];
        snprintf(plabel, sizeof plabel, "%.250s/part%d", label, k);
        imgsim_status s = add_node(m, &part, d, done == np->n_input && k == 0 ? label : plabel);
        if (s != IMGSIM_OK) return s;
        prev = outs[0];
    }
    return IMGSIM_OK;
}

/* ReduceMean over axes {2, 3} of a 4-D input (torch's x.mean([2, 3]): MNASNet, ShuffleNetV2)
 * becomes GlobalAveragePool, followed by Flatten when keepdims is 0 (the intermediate value is
 * named "<output>__gap"); over other axes (not the batch) an IS_OP_REDUCEMEAN node. Axes come from
 * the attribute (opset <= 17) or a constant input (18); no axes (all of them) is refused. */
static imgsim_status add_reducemean(imp *m, const ImsOnnx__NodeProto *np, const char *label) {
    const op_desc *d = find_op("ReduceMean");
    if (np->n_input < 1 || np->n_input > 2 || !S(np->input[0])[0])
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': ReduceMean has %zu inputs (expected 1 or 2)",
                        m->path, label, np->n_input);
    int64_t axes[IS_MAX_RANK + 1];
    size_t n_axes = 0;
    int keepdims = 1, have_axes = 0;
    for (size_t i = 0; i < np->n_attribute; i++) {
        const ImsOnnx__AttributeProto *a = np->attribute[i];
        const char *an = S(a->name);
        if (!attr_allowed(d, an))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': attribute '%.100s' of ReduceMean is not supported", m->path,
                            label, an);
        if (!strcmp(an, "keepdims") || !strcmp(an, "noop_with_empty_axes")) {
            if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT || a->i < 0 || a->i > 1)
                return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': ReduceMean %s must be 0 or 1",
                                m->path, label, an);
            if (!strcmp(an, "keepdims")) keepdims = (int)a->i;
        } else { /* axes */
            if (attr_type(a) != IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS || a->n_ints > IS_MAX_RANK)
                return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': ReduceMean axes must be INTS",
                                m->path, label);
            for (size_t k = 0; k < a->n_ints; k++)
                axes[n_axes++] = a->ints[k];
            have_axes = 1;
        }
    }
    if (np->n_input == 2 && S(np->input[1])[0]) {
        int v = map_get(&m->names, np->input[1]);
        if (have_axes || v < 0 || !m->g->vals[v].data || m->g->vals[v].rank != 1 ||
            m->g->vals[v].dims[0] > IS_MAX_RANK)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': ReduceMean axes must be a constant list of at most %d axes",
                            m->path, label, IS_MAX_RANK);
        for (int64_t k = 0; k < m->g->vals[v].dims[0]; k++)
            axes[n_axes++] = (int64_t)m->g->vals[v].data[k];
        have_axes = 1;
    }
    int x = map_get(&m->names, np->input[0]);
    if (x < 0)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': input '%.200s' is not defined", m->path,
                        label, np->input[0]);
    if (find_pad(m, np->input[0]))
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: node '%.200s': ReduceMean reads '%.200s', the output of a Pad with non-zero pads, "
                        "which imgsim supports only before a Conv or AveragePool",
                        m->path, label, np->input[0]);
    int r = m->rank[x], mask = 0;
    for (size_t k = 0; k < n_axes; k++) {
        int64_t ax = axes[k] < 0 && r >= 0 ? axes[k] + r : axes[k];
        if (ax >= 0 && ax < 8) mask |= 1 << ax;
        else mask |= 1 << 8;
    }
    int distinct = 0;
    for (int k = 0; k < 8; k++)
        distinct += mask >> k & 1;
    if (r < 1 || !have_axes || (mask & 0x101) || distinct != (int)n_axes)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: node '%.200s': ReduceMean (opset %d) is supported only over listed axes other than "
                        "the batch, of an input whose rank is known",
                        m->path, label, m->opset);
    char *ins[1] = {np->input[0]}, *outs[1] = {np->output[0]};
    ImsOnnx__NodeProto part = *np;
    part.n_attribute = 0;
    part.input = ins;
    part.n_input = 1;
    part.output = outs;
    part.n_output = 1;
    if (r != 4 || mask != 0xC) { /* a general mean (LayerNorm written out: the last axis) */
        static const op_desc rm = {"ReduceMean", IS_OP_REDUCEMEAN, 1, 1, 0, " ", NULL};
        imgsim_status s = add_node(m, &part, &rm, label);
        if (s != IMGSIM_OK) return s;
        ims_node *nn = &m->g->nodes[m->g->n_nodes - 1];
        nn->n_perm = 0;
        for (int k = 0; k < r; k++)
            if (mask >> k & 1) nn->perm[nn->n_perm++] = k;
        nn->keepdims = keepdims;
        m->rank[nn->out] = keepdims ? r : r - nn->n_perm;
        return IMGSIM_OK;
    }
    if (keepdims) return add_node(m, &part, find_op("GlobalAveragePool"), label);
    size_t len = strlen(np->output[0]) + 8;
    char *tmp = ims_malloc(len);
    if (!tmp) return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory", m->path);
    snprintf(tmp, len, "%s__gap", np->output[0]);
    if (map_get(&m->names, tmp) >= 0) {
        imgsim_status s = ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                                   "%s: node '%.200s': value name '%.200s' is taken", m->path, label, tmp);
        free(tmp);
        return s;
    }
    int v = add_value(m, tmp, 0, NULL, NULL, 0);
    if (v >= 0) map_put(&m->names, m->g->vals[v].name, v); /* re-key with the graph's copy */
    free(tmp);
    if (v < 0) return IMGSIM_ERR_NOMEM;
    outs[0] = m->g->vals[v].name;
    imgsim_status s = add_node(m, &part, find_op("GlobalAveragePool"), label);
    if (s != IMGSIM_OK) return s;
    ins[0] = m->g->vals[v].name;
    outs[0] = np->output[0];
    char flabel[300];
    snprintf(flabel, sizeof flabel, "%.250s/flatten", label);
    return add_node(m, &part, find_op("Flatten"), flabel);
}

/* ---- the model -------------------------------------------------------------------------- */

/* Checks IR version and the default-domain opset; returns the opset through m->opset. */
static imgsim_status check_versions(imp *m, const ImsOnnx__ModelProto *mp) {
    if (!mp->has_ir_version)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: not a valid ONNX model (no ir_version)", m->path);
    /* no upper bound: later IR versions keep the wire format (current exporters write 10 to 14);
     * what they add, new data types and functions, is refused where a model uses it */
    if (mp->ir_version < ONNX_MIN_IR)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: ONNX IR version %lld is not supported (%d or later)",
                       m->path, (long long)mp->ir_version, ONNX_MIN_IR);
    int found = 0;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const ImsOnnx__OperatorSetIdProto *o = mp->opset_import[i];
        const char *dom = S(o->domain);
        if (strcmp(dom, "") != 0 && strcmp(dom, "ai.onnx") != 0) continue; /* other domains: per node */
        if (!o->has_version || o->version < ONNX_MIN_OPSET || o->version > ONNX_MAX_OPSET)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                           "%s: opset %lld is not supported (imgsim reads opsets %d to %d)", m->path,
                           (long long)(o->has_version ? o->version : 0), ONNX_MIN_OPSET, ONNX_MAX_OPSET);
        found = 1;
        m->opset = (int)o->version;
    }
    if (!found)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                       "%s: the model imports no default-domain (ai.onnx) opset", m->path);
    return IMGSIM_OK;
}

/* Sizes the name map and the per-value and per-node tables for every name the model can
 * declare: initializers, inputs, node outputs and the parts of Concat chains. */
static imgsim_status alloc_tables(imp *m, const ImsOnnx__GraphProto *gp) {
    size_t n_names = gp->n_initializer + gp->n_input + 1;
    for (size_t i = 0; i < gp->n_node; i++) {
        size_t add = gp->node[i]->n_output + gp->node[i]->n_input / 8 + 1; /* + Concat chain parts */
        if (gp->node[i]->n_output > SIZE_MAX / 4 || add > SIZE_MAX / 4 - n_names)
            return ims_fail(m->e, IMGSIM_ERR_TOO_LARGE, "%s: too many values", m->path);
        n_names += add;
    }
    if (n_names > INT_MAX / 2) return ims_fail(m->e, IMGSIM_ERR_TOO_LARGE, "%s: too many values", m->path);
    if (map_init(&m->names, n_names) != 0)
        return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory", m->path);
    m->max_vals = n_names;
    m->rank = ims_malloc_array(n_names, sizeof *m->rank);
    m->inexact = ims_calloc(n_names, 1);
    m->folded = ims_calloc(gp->n_node, 1);
    m->pads = ims_calloc(gp->n_node, sizeof *m->pads);
    m->dtype = ims_calloc(n_names, 1);
    m->q_node = ims_calloc(n_names, sizeof *m->q_node);
    m->qdq_q = ims_calloc(gp->n_node + 1, sizeof *m->qdq_q);
    m->alias_src = ims_calloc(gp->n_node + 1, sizeof *m->alias_src);
    m->qdq_in = ims_calloc(gp->n_node + 1, sizeof *m->qdq_in);
    m->qdq_relu = ims_calloc(gp->n_node + 1, 1);
    m->qdq_scale = ims_calloc(gp->n_node + 1, sizeof *m->qdq_scale);
    m->qdq_uns = ims_calloc(gp->n_node + 1, 1);
    m->qdq_zero = ims_calloc(gp->n_node + 1, sizeof *m->qdq_zero);
    if (!m->rank || !m->inexact || !m->folded || !m->pads || !m->dtype || !m->q_node || !m->alias_src ||
        !m->qdq_in || !m->qdq_relu || !m->qdq_scale || !m->qdq_uns || !m->qdq_q || !m->qdq_zero)
        return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory", m->path);
    return IMGSIM_OK;
}

/* The operator row of a node, or NULL when imgsim does not import it. */
static const op_desc *node_op(const ImsOnnx__NodeProto *np) {
    const char *dom = S(np->domain);
    return !strcmp(dom, "") || !strcmp(dom, "ai.onnx") ? find_op(S(np->op_type)) : NULL;
}

/* Refuses a model with operators imgsim does not import, naming every such node (the first in
 * full: file, node, operator and opset; then the others, up to what the message holds). */
static imgsim_status check_known_ops(imp *m, const ImsOnnx__GraphProto *gp) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < gp->n_node; i++)
        if (!node_op(gp->node[i]) && !bad++) first = i;
    if (!bad) return IMGSIM_OK;
    char list[IS_ERRMSG_MAX / 2], buf[64];
    size_t at = 0, shown = 0;
    list[0] = 0;
    for (size_t i = first + 1; i < gp->n_node && bad > 1; i++) {
        const ImsOnnx__NodeProto *np = gp->node[i];
        if (node_op(np)) continue;
        int w = snprintf(list + at, sizeof list - at, "%s'%.80s' (%.60s)", shown ? ", " : "",
                         node_label(np, (int)i, buf), S(np->op_type));
        if (w < 0 || (size_t)w >= sizeof list - at - 16) {
            snprintf(list + at, sizeof list - at, "%s...", shown ? ", " : "");
            break;
        }
        at += (size_t)w;
        shown++;
    }
    char tail[sizeof list + 64] = "";
    if (bad > 1) snprintf(tail, sizeof tail, "; %zu unsupported nodes in all, the others: %s", bad, list);
    const ImsOnnx__NodeProto *np = gp->node[first];
    const char *dom = S(np->domain);
    return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': unsupported operator '%s%s%.100s' (opset %d)%s",
                    m->path, node_label(np, (int)first, buf), dom, *dom ? "." : "", S(np->op_type), m->opset, tail);
}

/* Pass 1, first part: every operator known, one output, Constant nodes made constants. */
static imgsim_status check_ops(imp *m, const ImsOnnx__GraphProto *gp) {
    imgsim_status st = check_known_ops(m, gp);
    if (st != IMGSIM_OK) return st;
    for (size_t i = 0; i < gp->n_node; i++) {
        ImsOnnx__NodeProto *np = gp->node[i];
        char buf[64];
        const char *label = node_label(np, (int)i, buf);
        const char *op = S(np->op_type);
        const op_desc *d = node_op(np); /* known: check_known_ops */
        if (np->n_output < 1 || !S(np->output[0])[0])
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': no output", m->path, label);
        for (size_t k = 1; k < np->n_output; k++)
            if (S(np->output[k])[0])
                return ims_fail(
                    m->e, IMGSIM_ERR_UNSUPPORTED,
                    "%s: node '%.200s': %s with %zu outputs is not supported (training-mode outputs "
                    "or indices)",
                    m->path, label, op, np->n_output);
        if (d->op == OP_CONSTANT) {
            imgsim_status s = add_constant_node(m, np, label);
            if (s != IMGSIM_OK) return s;
            m->folded[i] = 1;
        }
    }
    return IMGSIM_OK;
}

/* Identity of a constant (torch.onnx deduplicates equal initializers that way): the output name
 * becomes another name of the constant, repeated for chains of Identity. */
static void fold_const_identities(imp *m, const ImsOnnx__GraphProto *gp) {
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < gp->n_node; i++) {
            ImsOnnx__NodeProto *np = gp->node[i];
            if (m->folded[i] || strcmp(S(np->op_type), "Identity") != 0 || np->n_input != 1) continue;
            int v = map_get(&m->names, S(np->input[0]));
            if (v < 0 || !m->g->vals[v].data || map_get(&m->names, np->output[0]) >= 0) continue;
            map_put(&m->names, np->output[0], v);
            m->folded[i] = 1;
            changed = 1;
        }
    }
}

/* ---- QuantizeLinear and DequantizeLinear (explicit quantisation) ------------------------ */

/*
 * A QDQ model (onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ) and
 * others) marks the tensors an int8 engine may quantise with QuantizeLinear -> DequantizeLinear
 * pairs, and keeps weights as int8 initializers read through a DequantizeLinear. Pass 1 folds them
 * all (qdq_fold), so the graph holds float32 operators only, and qdq_annotate puts the scales on
 * the values (graph.h: q_scale, q_unsigned, w_scale):
 *   - DequantizeLinear of a constant x (int8/uint8 weights, int32 biases, or a QuantizeLinear of a
 *     float constant, folded first): the float32 constant (x - zp) * scale. 8-bit weights whose
 *     zero point is 0 (int8) or 128 (uint8) keep their scales per output channel (w_scale; a
 *     per-tensor scale repeated), which the int8 engine uses as they are. A Conv's weights must be
 *     8-bit, symmetric and per-tensor or per-channel on axis 0 (the output channels).
 *   - QuantizeLinear(x) -> DequantizeLinear of an activation: the DequantizeLinear's output is
 *     another name of x, and x gets the pair's scale. The pair's integer range less its zero point
 *     is [-128, 127] (int8 zp 0, uint8 zp 128: s8), [0, 255] (uint8 zp 0, int8 zp -128: u8,
 *     q_unsigned), or else asymmetric (quantize_static's default): u8 with q_zero = the zero point
 *     (int8's plus 128), which the int8 engine gives oneDNN as a zero point. A [0, 255] pair clamps
 *     at 0 (an asymmetric one at -q_zero * scale, which float32 does not keep): where x is
 *     not known to be >= 0 (a Relu's output, or a pooling, Flatten, Reshape or [0, 255] pair of
 *     one) the DequantizeLinear becomes a Relu, so float32 keeps the clamp too (onnxruntime
 *     removes the Relu before such a pair). The clamp at the top of the range and the rounding
 *     are the int8 engine's only: float32 runs the dequantised model.
 * Refused, naming the node: a per-channel activation scale, a QuantizeLinear
 * read by anything but DequantizeLinears, a pair whose two nodes disagree, a DequantizeLinear of
 * an activation that is not a QuantizeLinear's output, one value given two different scales, and
 * Conv weights as above.
 */

typedef struct qparams {
    const float *scale;  /* [n] */
    int64_t n;           /* 1: per tensor */
    const float *zp;     /* [n or 1], NULL when absent (0) */
    int64_t n_zp;
    int qtype;           /* the integer type: the zero point's (DT_INT8, DT_UINT8, DT_INT32) */
    int axis;            /* as written (default 1) */
} qparams;

static int is_op_named(const ImsOnnx__NodeProto *np, const char *op) {
    const op_desc *d = node_op(np);
    return d && !strcmp(d->onnx, op);
}

/* A Q/DQ node's scale, zero point and axis; deflt_type: the integer type when there is no zero
 * point (QuantizeLinear: uint8; DequantizeLinear: its input's). */
static imgsim_status qdq_params(imp *m, const ImsOnnx__NodeProto *np, const char *label, int deflt_type,
                                qparams *q) {
    const char *op = S(np->op_type);
    memset(q, 0, sizeof *q);
    q->axis = 1;
    q->qtype = deflt_type;
    if (np->n_input < 2 || np->n_input > 3 || !S(np->input[0])[0] || !S(np->input[1])[0])
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': %s needs an input and a scale", m->path, label,
                        op);
    for (size_t i = 0; i < np->n_attribute; i++) {
        const ImsOnnx__AttributeProto *a = np->attribute[i];
        if (!strcmp(S(a->name), "axis") && attr_type(a) == IMS_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT &&
            a->i >= -IS_MAX_RANK && a->i < IS_MAX_RANK)
            q->axis = (int)a->i;
        else if (strcmp(S(a->name), "saturate") != 0) /* saturate: float8 targets only */
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': attribute '%.100s' of %s is not supported",
                            m->path, label, S(a->name), op);
    }
    int sv = map_get(&m->names, S(np->input[1]));
    if (sv < 0 || !m->g->vals[sv].data)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': %s scale '%.200s' must be a constant",
                        m->path, label, op, S(np->input[1]));
    const ims_value *s = &m->g->vals[sv];
    q->scale = s->data;
    q->n = ims_value_numel(s);
    if (s->rank > 1 || q->n < 1)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': %s scale must be a scalar or 1-D", m->path, label,
                        op);
    for (int64_t k = 0; k < q->n; k++)
        if (!(q->scale[k] > 0) || !isfinite(q->scale[k]))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': %s scale %g is not a positive number",
                            m->path, label, op, (double)q->scale[k]);
    if (np->n_input == 3 && S(np->input[2])[0]) {
        int zv = map_get(&m->names, S(np->input[2]));
        if (zv < 0 || !m->g->vals[zv].data)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': %s zero point must be a constant",
                            m->path, label, op);
        int dt = m->dtype[zv];
        if (dt != DT_INT8 && dt != DT_UINT8 && dt != DT_INT32)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': %s zero point of type %s is not supported (int8, uint8 or int32)",
                            m->path, label, op, dtype_name(dt));
        q->qtype = dt;
        q->zp = m->g->vals[zv].data;
        q->n_zp = ims_value_numel(&m->g->vals[zv]);
        if (m->g->vals[zv].rank > 1 || (q->n_zp != 1 && q->n_zp != q->n))
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': %s zero point does not match its scale",
                            m->path, label, op);
    }
    return IMGSIM_OK;
}

static float qp_zp(const qparams *q, int64_t c) { return q->zp ? q->zp[q->n_zp == 1 ? 0 : c] : 0.0f; }

/* The channel layout of per-channel parameters over a constant of value v: *inner elements per
 * step along the axis (the axis made non-negative in *ax). */
static imgsim_status qdq_axis(imp *m, const char *label, const qparams *q, const ims_value *x, int *ax,
                              int64_t *inner) {
    *ax = 0;
    *inner = 1;
    if (q->n == 1) return IMGSIM_OK;
    int a = q->axis < 0 ? q->axis + x->rank : q->axis;
    if (a < 0 || a >= x->rank || x->dims[a] != q->n)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT,
                        "%s: node '%.200s': %lld scales do not match axis %d of '%.200s'", m->path, label,
                        (long long)q->n, q->axis, x->name);
    *ax = a;
    for (int k = a + 1; k < x->rank; k++) *inner *= x->dims[k];
    return IMGSIM_OK;
}

/* Adds the constant output of a folded Q/DQ node (data taken over). */
static imgsim_status qdq_add_const(imp *m, const ImsOnnx__NodeProto *np, const ims_value *x, float *data, int dt,
                                   float *w_scale) {
    if (map_get(&m->names, np->output[0]) >= 0) {
        free(data);
        free(w_scale);
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: value '%.200s' is defined twice", m->path, np->output[0]);
    }
    int64_t dims[IS_MAX_RANK];
    int rank = x->rank;
    memcpy(dims, x->dims, sizeof dims);
    int v = add_value(m, np->output[0], rank, dims, NULL, 1);
    if (v < 0) {
        free(data);
        free(w_scale);
        return IMGSIM_ERR_NOMEM;
    }
    m->g->vals[v].data = data;
    m->g->vals[v].w_scale = w_scale;
    m->g->vals[v].is_int = dt != DT_FLOAT;
    m->dtype[v] = (signed char)dt;
    return IMGSIM_OK;
}

static imgsim_status qdq_refuse_conv(imp *m, const ImsOnnx__GraphProto *gp, const ImsOnnx__NodeProto *dq,
                                     const char *label, const char *why) {
    for (size_t j = 0; j < gp->n_node; j++) {
        const ImsOnnx__NodeProto *c = gp->node[j];
        char buf[64];
        if (is_op_named(c, "Conv") && c->n_input > 1 && !strcmp(S(c->input[1]), dq->output[0]))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': DequantizeLinear of the weights of Conv '%.200s': %s", m->path, label,
                            node_label(c, (int)j, buf), why);
    }
    return IMGSIM_OK;
}

/* Folds one Q/DQ node of a constant into a constant (see above). */
static imgsim_status qdq_fold_const(imp *m, const ImsOnnx__GraphProto *gp, const ImsOnnx__NodeProto *np,
                                    const char *label, int xv) {
    const ims_value *x = &m->g->vals[xv];
    int xdt = m->dtype[xv], dq = is_op_named(np, "DequantizeLinear");
    int xint = xdt == DT_INT8 || xdt == DT_UINT8 || xdt == DT_INT32;
    if (dq && !xint)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': DequantizeLinear of '%.200s', of type %s",
                        m->path, label, x->name, dtype_name(xdt));
    if (!dq && xint)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': QuantizeLinear of '%.200s', of type %s",
                        m->path, label, x->name, dtype_name(xdt));
    qparams q;
    imgsim_status s = qdq_params(m, np, label, dq ? xdt : DT_UINT8, &q);
    if (s != IMGSIM_OK) return s;
    if (dq && q.zp && q.qtype != xdt)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': zero point of type %s for '%.200s' of type %s",
                        m->path, label, dtype_name(q.qtype), x->name, dtype_name(xdt));
    int ax;
    int64_t inner, numel = ims_value_numel(x);
    if ((s = qdq_axis(m, label, &q, x, &ax, &inner)) != IMGSIM_OK) return s;
    float *out = ims_malloc_array((size_t)numel, sizeof(float));
    if (!out) return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory folding '%.200s'", m->path, label);
    double lo = q.qtype == DT_INT8 ? -128 : q.qtype == DT_UINT8 ? 0 : -2147483648.0;
    double hi = q.qtype == DT_INT8 ? 127 : q.qtype == DT_UINT8 ? 255 : 2147483647.0;
    for (int64_t i = 0; i < numel; i++) {
        int64_t c = q.n == 1 ? 0 : (i / inner) % q.n;
        float sc = q.scale[c], zp = qp_zp(&q, c);
        if (dq) {
            out[i] = (float)((double)x->data[i] - zp) * sc; /* x - zp exact: integers below 2^31 */
        } else {
            double v = nearbyint((double)(x->data[i] / sc)) + zp; /* half to even, as ONNX */
            out[i] = (float)(v < lo ? lo : v > hi ? hi : v);
        }
    }
    if (!dq) return qdq_add_const(m, np, x, out, q.qtype, NULL);

    /* 8-bit weights: symmetric ones keep their scales per output channel */
    float *ws = NULL;
    const char *why = NULL;
    int sym = 1;
    for (int64_t c = 0; c < q.n; c++) {
        float zp = qp_zp(&q, c);
        sym &= xdt == DT_INT8 ? zp == 0 : xdt == DT_UINT8 ? zp == 128 : 0;
    }
    if (xdt == DT_INT32)
        why = "32-bit weights (expected int8)";
    else if (!sym)
        why = "asymmetric weights (a non-zero zero point): imgsim's int8 convolutions take symmetric weights only";
    else if (q.n > 1 && ax != 0)
        why = "scales per channel of an axis other than 0, the output channels";
    else if (x->rank < 1)
        why = "a scalar";
    if (!why) {
        ws = ims_malloc_array((size_t)x->dims[0], sizeof(float));
        if (!ws) {
            free(out);
            return ims_fail(m->e, IMGSIM_ERR_NOMEM, "%s: out of memory folding '%.200s'", m->path, label);
        }
        for (int64_t o = 0; o < x->dims[0]; o++) ws[o] = q.scale[q.n == 1 ? 0 : o];
    } else if ((s = qdq_refuse_conv(m, gp, np, label, why)) != IMGSIM_OK) {
        free(out);
        return s;
    }
    return qdq_add_const(m, np, x, out, DT_FLOAT, ws);
}

/* Whether the value named name is known to be >= 0 (see above). */
static int qdq_nonneg(const imp *m, const ImsOnnx__GraphProto *gp, const char *name, int depth) {
    if (depth > 64) return 0;
    for (size_t i = 0; i < gp->n_node; i++) {
        const ImsOnnx__NodeProto *np = gp->node[i];
        if (np->n_output < 1 || strcmp(S(np->output[0]), name) != 0) continue;
        const op_desc *d = node_op(np);
        if (!d || np->n_input < 1) return 0;
        if (d->op == IS_OP_RELU) return 1;
        if (d->op == OP_DEQUANTIZE) return m->qdq_in[i] && m->qdq_uns[i];
        if (d->op == IS_OP_MAXPOOL || d->op == IS_OP_AVGPOOL || d->op == IS_OP_GLOBALAVGPOOL ||
            d->op == IS_OP_FLATTEN || d->op == IS_OP_RESHAPE || d->op == IS_OP_IDENTITY || d->op == OP_DROPOUT)
            return qdq_nonneg(m, gp, S(np->input[0]), depth + 1);
        return 0;
    }
    return 0;
}

/* One QuantizeLinear of an activation and the DequantizeLinears reading it (see above). */
static imgsim_status qdq_fold_pair(imp *m, const ImsOnnx__GraphProto *gp, size_t i, const char *label) {
    const ImsOnnx__NodeProto *np = gp->node[i];
    qparams q;
    imgsim_status s = qdq_params(m, np, label, DT_UINT8, &q);
    if (s != IMGSIM_OK) return s;
    if (q.n != 1)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                        "%s: node '%.200s': QuantizeLinear of activation '%.200s' with %lld scales: per-channel "
                        "activation scales are not supported (one per tensor)",
                        m->path, label, S(np->input[0]), (long long)q.n);
    if (q.qtype != DT_INT8 && q.qtype != DT_UINT8)
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': QuantizeLinear to %s is not supported (int8 "
                        "or uint8)", m->path, label, dtype_name(q.qtype));
    float zp = qp_zp(&q, 0);
    int qmin = q.qtype == DT_INT8 ? -128 : 0, uns, zero = 0;
    if (qmin - zp == -128) {
        uns = 0;
    } else if (qmin - zp == 0) {
        uns = 1;
    } else { /* asymmetric: the int8 engine's uint8 with a zero point (int8's less -128) */
        uns = 1;
        zero = (int)zp - qmin;
    }
    const char *qin = S(np->input[0]), *qout = np->output[0];
    int relu = uns && !zero && !qdq_nonneg(m, gp, qin, 0), readers = 0;
    for (size_t j = 0; j < gp->n_node; j++) {
        const ImsOnnx__NodeProto *r = gp->node[j];
        char buf[64];
        const char *rl = node_label(r, (int)j, buf);
        int reads = 0;
        for (size_t k = 0; k < r->n_input; k++) reads |= !strcmp(S(r->input[k]), qout);
        if (!reads) continue;
        if (!is_op_named(r, "DequantizeLinear") || strcmp(S(r->input[0]), qout) != 0)
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': the output of QuantizeLinear '%.200s' is read by %s '%.200s', not by "
                            "a DequantizeLinear: int8 tensors between other operators are not supported",
                            m->path, rl, label, S(r->op_type), rl);
        qparams d;
        if ((s = qdq_params(m, r, rl, q.qtype, &d)) != IMGSIM_OK) return s;
        if (d.n != 1 || d.scale[0] != q.scale[0] || qp_zp(&d, 0) != zp || (d.zp && d.qtype != q.qtype))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': DequantizeLinear's scale or zero point (%g, %g) differ from those of "
                            "its QuantizeLinear '%.200s' (%g, %g)",
                            m->path, rl, (double)d.scale[0], (double)qp_zp(&d, 0), label, (double)q.scale[0],
                            (double)zp);
        m->qdq_in[j] = qin;
        m->qdq_scale[j] = q.scale[0];
        m->qdq_uns[j] = (unsigned char)uns;
        m->qdq_zero[j] = zero;
        m->qdq_q[j] = (int)i;
        m->qdq_relu[j] = (unsigned char)relu;
        if (!relu) {
            m->folded[j] = 2; /* another name of qin (declare_outputs) */
            m->alias_src[j] = qin;
        }
        readers++;
    }
    if (!readers && !strcmp(S(gp->output[0]->name), qout))
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: node '%.200s': an int8 graph output is not supported",
                        m->path, label);
    m->folded[i] = 1;
    return IMGSIM_OK;
}

/* Pass 1: every QuantizeLinear/DequantizeLinear folded (see above). */
static imgsim_status qdq_fold(imp *m, const ImsOnnx__GraphProto *gp) {
    imgsim_status s;
    int any = 0;
    for (size_t i = 0; i < gp->n_node; i++) {
        const op_desc *d = node_op(gp->node[i]);
        any |= d->op == OP_QUANTIZE || d->op == OP_DEQUANTIZE;
    }
    if (!any) return IMGSIM_OK;
    m->g->qdq = 1;
    if (gp->n_output < 1) return IMGSIM_OK; /* build() refuses it */
    /* constants first, repeated for a DequantizeLinear of a QuantizeLinear of a constant */
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < gp->n_node; i++) {
            ImsOnnx__NodeProto *np = gp->node[i];
            const op_desc *d = node_op(np);
            if (m->folded[i] || (d->op != OP_QUANTIZE && d->op != OP_DEQUANTIZE) || np->n_input < 1) continue;
            int xv = map_get(&m->names, S(np->input[0]));
            if (xv < 0 || !m->g->vals[xv].data) continue;
            char buf[64];
            if ((s = qdq_fold_const(m, gp, np, node_label(np, (int)i, buf), xv)) != IMGSIM_OK) return s;
            m->folded[i] = 1;
            changed = 1;
        }
    }
    for (size_t i = 0; i < gp->n_node; i++) {
        ImsOnnx__NodeProto *np = gp->node[i];
        char buf[64];
        if (!m->folded[i] && node_op(np)->op == OP_QUANTIZE &&
            (s = qdq_fold_pair(m, gp, i, node_label(np, (int)i, buf))) != IMGSIM_OK)
            return s;
    }
    for (size_t i = 0; i < gp->n_node; i++) {
        ImsOnnx__NodeProto *np = gp->node[i];
        char buf[64];
        if (node_op(np)->op == OP_DEQUANTIZE && !m->folded[i] && !m->qdq_in[i])
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': DequantizeLinear of '%.200s', which is neither a constant nor a "
                            "QuantizeLinear's output: int8 inputs are not supported",
                            m->path, node_label(np, (int)i, buf), np->n_input ? S(np->input[0]) : "");
    }
    return IMGSIM_OK;
}

/* After pass 2: each pair's scale on its value (the QuantizeLinear's input, or the Relu a
 * DequantizeLinear became); one value, one scale. */
static imgsim_status qdq_annotate(imp *m, const ImsOnnx__GraphProto *gp) {
    for (size_t j = 0; j < gp->n_node; j++) {
        if (!m->qdq_in[j]) continue;
        const char *target = m->qdq_relu[j] ? gp->node[j]->output[0] : m->qdq_in[j];
        int v = map_get(&m->names, target);
        if (v < 0)
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: value '%.200s' is not defined", m->path, target);
        ims_value *val = &m->g->vals[v];
        int q = m->qdq_q[j];
        char b1[64], b2[64];
        if (m->q_node[v] && m->q_node[v] != q + 1 &&
            (val->q_scale != m->qdq_scale[j] || val->q_unsigned != m->qdq_uns[j] || val->q_zero != m->qdq_zero[j]))
            return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                            "%s: node '%.200s': QuantizeLinear gives '%.200s' scale %g%s, QuantizeLinear '%.200s' "
                            "scale %g%s: one tensor with two int8 scales is not supported",
                            m->path, node_label(gp->node[q], q, b1), val->name, (double)m->qdq_scale[j],
                            m->qdq_uns[j] ? " (uint8)" : "", node_label(gp->node[m->q_node[v] - 1], m->q_node[v] - 1, b2),
                            (double)val->q_scale, val->q_unsigned ? " (uint8)" : "");
        val->q_scale = m->qdq_scale[j];
        val->q_unsigned = m->qdq_uns[j];
        val->q_zero = m->qdq_zero[j];
        m->q_node[v] = q + 1;
    }
    return IMGSIM_OK;
}

/* Pass 1, last part: the other nodes' outputs declared; a Pad that pads nothing and a Dropout
 * (checked first) are marked 2 in m->folded, and their output becomes another name of their
 * input after all outputs are declared (repeated for chains of them). */
static imgsim_status declare_outputs(imp *m, const ImsOnnx__GraphProto *gp) {
    imgsim_status s;
    for (size_t i = 0; i < gp->n_node; i++) {
        ImsOnnx__NodeProto *np = gp->node[i];
        char buf[64];
        int pad = !strcmp(S(np->op_type), "Pad"), dropout = !strcmp(S(np->op_type), "Dropout");
        if (m->folded[i] || !(pad || dropout)) continue;
        s = pad ? check_pad(m, np, node_label(np, (int)i, buf))
                : check_dropout(m, np, node_label(np, (int)i, buf));
        if (s != IMGSIM_OK) return s;
        m->folded[i] = 2; /* aliased below */
    }
    for (size_t i = 0; i < gp->n_node; i++) {
        ImsOnnx__NodeProto *np = gp->node[i];
        if (m->folded[i] == 1) continue;
        if (map_get(&m->names, np->output[0]) >= 0)
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: value '%.200s' is defined twice", m->path,
                            np->output[0]);
        if (m->folded[i] == 2) continue; /* a no-op Pad: named after its input below */
        if (add_value(m, np->output[0], 0, NULL, NULL, 0) < 0) return IMGSIM_ERR_NOMEM;
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < gp->n_node; i++) {
            ImsOnnx__NodeProto *np = gp->node[i];
            if (m->folded[i] != 2) continue;
            const char *src = m->alias_src[i] ? m->alias_src[i] : S(np->input[0]);
            int v = map_get(&m->names, src);
            if (v < 0) continue;
            if (find_pad(m, S(np->input[0])) && find_pad(m, np->output[0]))
                return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED,
                                "%s: node '%.200s': a Pad of a Pad's output is not supported", m->path,
                                S(np->name));
            map_put(&m->names, np->output[0], v);
            m->folded[i] = 1;
            changed = 1;
        }
    }
    for (size_t i = 0; i < gp->n_node; i++)
        if (m->folded[i] == 2)
            return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: node '%.200s': input '%.200s' is not defined",
                            m->path, S(gp->node[i]->name),
                            m->alias_src[i] ? m->alias_src[i] : S(gp->node[i]->input[0]));
    return IMGSIM_OK;
}

/* Pass 2: inputs resolved, attributes checked, nodes added. */
static imgsim_status add_nodes(imp *m, const ImsOnnx__GraphProto *gp) {
    for (size_t i = 0; i < gp->n_node; i++) {
        ImsOnnx__NodeProto *np = gp->node[i];
        char buf[64];
        const char *label = node_label(np, (int)i, buf);
        if (m->folded[i]) continue;
        const op_desc *d = find_op(S(np->op_type));
        if (d->op == OP_DEQUANTIZE && m->qdq_relu[i]) { /* the clamp at 0 of a [0, 255] pair */
            ImsOnnx__NodeProto relu = *np;
            char *in0[1] = {(char *)m->qdq_in[i]};
            relu.input = in0;
            relu.n_input = 1;
            relu.attribute = NULL;
            relu.n_attribute = 0;
            imgsim_status s = add_node(m, &relu, find_op("Relu"), label);
            if (s != IMGSIM_OK) return s;
            continue;
        }
        imgsim_status s = d->op == OP_REDUCEMEAN ? add_reducemean(m, np, label)
                          : d->op == IS_OP_CONCAT && np->n_input > IS_MAX_INPUTS
                              ? add_concat_chain(m, np, d, label)
                              : add_node(m, np, d, label);
        if (s != IMGSIM_OK) return s;
    }
    return IMGSIM_OK;
}

/* Builds the graph from an unpacked model. */
static imgsim_status build(imp *m, ImsOnnx__ModelProto *mp) {
    imgsim_status s = check_versions(m, mp);
    if (s != IMGSIM_OK) return s;
    ImsOnnx__GraphProto *gp = mp->graph;
    if (!gp) return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: not a valid ONNX model (no graph)", m->path);
    if (gp->n_node == 0) return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: the graph has no nodes", m->path);
    if ((s = alloc_tables(m, gp)) != IMGSIM_OK) return s;
    m->g->input = -1;
    m->g->output = -1;

    for (size_t i = 0; i < gp->n_initializer; i++) {
        int v;
        if ((s = add_tensor(m, gp->initializer[i], NULL, &v)) != IMGSIM_OK) return s;
    }
    if ((s = add_input(m, gp)) != IMGSIM_OK) return s;
    /* pass 1: operators known, outputs declared (so nodes may refer forward), constants made */
    if ((s = check_ops(m, gp)) != IMGSIM_OK) return s;
    fold_const_identities(m, gp);
    if ((s = qdq_fold(m, gp)) != IMGSIM_OK) return s;
    if ((s = declare_outputs(m, gp)) != IMGSIM_OK) return s;
    if ((s = add_nodes(m, gp)) != IMGSIM_OK) return s;
    if ((s = qdq_annotate(m, gp)) != IMGSIM_OK) return s;

    if (gp->n_output < 1) return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: the graph has no output", m->path);
    const char *on = S(gp->output[0]->name);
    if (find_pad(m, on))
        return ims_fail(m->e, IMGSIM_ERR_UNSUPPORTED, "%s: graph output '%.200s' is a Pad with non-zero pads",
                        m->path, on);
    int out = map_get(&m->names, on);
    if (out < 0)
        return ims_fail(m->e, IMGSIM_ERR_FORMAT, "%s: graph output '%.200s' is not defined", m->path, on);
    m->g->output = out;
    m->g->opset = m->opset;
    return IMGSIM_OK;
}

imgsim_status ims_onnx_load(ims_graph **out, const char *path, ims_err *e) {
    *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    ims_err local;
    ims_err *err = e ? e : &local;
    imgsim_status s = ims_read_file(&buf, &len, path, ONNX_MAX_FILE_BYTES, err);
    if (s != IMGSIM_OK) return s;
    if (len == 0) {
        free(buf);
        return ims_fail(err, IMGSIM_ERR_FORMAT, "%s: not a valid ONNX protobuf (empty file)", path);
    }
    imp m;
    memset(&m, 0, sizeof m);
    m.path = path;
    m.e = err;
    s = ims_graph_new(&m.g, err);
    if (s != IMGSIM_OK) {
        free(buf);
        return s;
    }
    ims_sha256_hex(buf, len, m.g->sha256);
    ImsOnnx__ModelProto *mp = ims_onnx__model_proto__unpack(NULL, len, buf);
    free(buf); /* the unpacked model holds copies of everything it needs */
    if (!mp) {
        ims_graph_free(m.g);
        return ims_fail(err, IMGSIM_ERR_FORMAT, "%s: not a valid ONNX protobuf", path);
    }
    s = build(&m, mp);
    ims_onnx__model_proto__free_unpacked(mp, NULL);
    map_free(&m.names);
    free(m.rank);
    free(m.inexact);
    free(m.folded);
    free(m.dtype);
    free(m.q_node);
    free(m.alias_src);
    free(m.qdq_in);
    free(m.qdq_relu);
    free(m.qdq_scale);
    free(m.qdq_uns);
    free(m.qdq_zero);
    free(m.qdq_q);
    free(m.pads);
    free(m.dir_real);
    if (s == IMGSIM_OK) {
        ims_err le;
        le.msg[0] = 0;
        s = ims_graph_link(m.g, &le);
        if (s == IMGSIM_OK) s = ims_graph_fuse_mha(m.g, &le); /* attention.c */
        if (s != IMGSIM_OK) s = ims_fail(err, s, "%s: %s", path, le.msg);
    }
    if (s != IMGSIM_OK) {
        ims_graph_free(m.g);
        return s;
    }
    *out = m.g;
    return IMGSIM_OK;
}
