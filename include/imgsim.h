/*
 * imgsim.h: the public C API of libimgsim.
 *
 * imgsim turns images into CNN feature vectors and answers cosine-similarity queries over them.
 * This header is the contract: what is not declared here is not API.
 *
 * Conventions (after oneDNN and SQLite):
 *  - Every call that can fail returns an imgsim_status; results come back through the output
 *    pointer given first.
 *  - Handles are opaque. imgsim_xxx_destroy(NULL) is a no-op.
 *  - A failing call on a handle leaves a message in that handle (imgsim_xxx_errmsg); every failing
 *    call also leaves it in a thread-local slot read by imgsim_last_error(). Messages name the
 *    file and the reason.
 *  - The library never exits or aborts, and never takes ownership of caller buffers unless a
 *    comment says so.
 */
#ifndef IMGSIM_H
#define IMGSIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMGSIM_VERSION_MAJOR 0
#define IMGSIM_VERSION_MINOR 1
#define IMGSIM_VERSION_PATCH 0

/* ---- status ---------------------------------------------------------------------------- */

typedef enum imgsim_status {
    IMGSIM_OK = 0,
    IMGSIM_ERR_INVALID_ARG,  /* a bad argument or option value */
    IMGSIM_ERR_NOMEM,        /* an allocation failed */
    IMGSIM_ERR_IO,           /* a file could not be opened, read or written */
    IMGSIM_ERR_FORMAT,       /* corrupt, truncated or malformed input (image, model, store) */
    IMGSIM_ERR_UNSUPPORTED,  /* well-formed input that imgsim does not handle */
    IMGSIM_ERR_TOO_LARGE,    /* an input over a configured or arithmetic limit */
    IMGSIM_ERR_MISMATCH,     /* stores, models or engine files that do not belong together */
    IMGSIM_ERR_NO_DEVICE,    /* the requested device (CUDA) is absent or was not built in */
    IMGSIM_ERR_BACKEND,      /* the compute library (oneDNN, CUDA, cuDNN, ...) reported an error */
    IMGSIM_ERR_INTERNAL,     /* a bug in imgsim */
    IMGSIM_ERR_CANCELLED     /* a progress callback asked the call to stop */
} imgsim_status;

/* A short constant description of a status ("corrupt or malformed input", ...). */
const char *imgsim_status_str(imgsim_status s);

/* The message of the last failing imgsim call on this thread ("" if none). Valid until the next
 * imgsim call on this thread. */
const char *imgsim_last_error(void);

/* "MAJOR.MINOR.PATCH" */
const char *imgsim_version(void);

typedef enum imgsim_log_level {
    IMGSIM_LOG_QUIET = 0,
    IMGSIM_LOG_ERROR = 1,
    IMGSIM_LOG_WARN = 2,
    IMGSIM_LOG_INFO = 3,
    IMGSIM_LOG_DEBUG = 4
} imgsim_log_level;

/* Log messages go to stderr at or below this level (default IMGSIM_LOG_INFO). Process-wide. */
void imgsim_set_log_level(imgsim_log_level level);

/* ---- element types, devices, precisions ------------------------------------------------- */

typedef enum imgsim_dtype { IMGSIM_F32 = 0, IMGSIM_F16 = 1 } imgsim_dtype;

/* How a store's features and manifest are laid out (README "Sharded stores"). Every reader takes
 * both. */
typedef enum imgsim_store_layout {
    IMGSIM_LAYOUT_SINGLE = 0, /* features.npy + manifest.tsv */
    IMGSIM_LAYOUT_SHARDED = 1 /* features-00000.npy + manifest-00000.tsv, ... one pair per shard of
                                 the extraction (imgsim_extract_opts.shard_size images), listed in
                                 meta.json's "shards": the shards are not joined */
} imgsim_store_layout;

typedef enum imgsim_device { IMGSIM_DEVICE_CPU = 0, IMGSIM_DEVICE_CUDA = 1 } imgsim_device;

typedef enum imgsim_precision {
    IMGSIM_PREC_FP32 = 0, /* strict float32 */
    IMGSIM_PREC_BF16 = 1, /* bfloat16 weights/activations, float32 accumulation (CPU with AVX-512 BF16/AMX) */
    IMGSIM_PREC_FP16 = 2, /* float16 tensor cores (CUDA) */
    IMGSIM_PREC_TF32 = 3, /* float32 storage, TF32 tensor-core math (CUDA) */
    IMGSIM_PREC_INT8 = 4  /* int8 convolutions with int32 accumulation, scales from a calibration
                             file (imgsim_engine_opts.calib_file); CPU only for now */
} imgsim_precision;

/* "fp32", "bf16", "fp16", "tf32", "int8" */
const char *imgsim_precision_str(imgsim_precision p);

/* ---- preprocessing ---------------------------------------------------------------------- */

/* The resampling filter of the resize: PIL's antialiased BILINEAR or BICUBIC (a = -0.5), as
 * torchvision's Resize applies them to PIL images (CLIP's preprocessing is BICUBIC). */
typedef enum imgsim_interp { IMGSIM_INTERP_BILINEAR = 0, IMGSIM_INTERP_BICUBIC = 1 } imgsim_interp;

/* How an image file becomes a network input: decode (JPEG/PNG/WebP, detected by content), apply
 * EXIF orientation, drop alpha like PIL's convert('RGB'), resize with PIL's antialiased filter,
 * centre-crop to height x width, scale to [0,1], normalise per channel: (x - mean) / std.
 * The default resizes straight to height x width (torchvision's Resize((H, W)), no crop);
 * resize_shorter = 256 with height = width = 224 is torchvision's Resize(256) + CenterCrop(224),
 * the classification presets' and (with BICUBIC and CLIP's mean/std) CLIP's. The resized image
 * must hold the crop: a crop larger than it is refused (IMGSIM_ERR_INVALID_ARG), not padded. */
typedef struct imgsim_preprocess_opts {
    int height, width;     /* network input size, the output of the centre crop; default 224 x 224 */
    float mean[3], std[3]; /* default ImageNet mean/std */
    uint64_t max_pixels;   /* refuse larger images before allocating; default 89,478,485 (PIL's) */
    int exif_rotate;       /* apply EXIF orientation; default 1 */
    int dct_scaling;       /* let libjpeg-turbo downscale in the DCT domain when the image is at
                              least 3x the target size: faster, but not PIL's full decode (up to
                              0.12 after normalisation measured on high-contrast images, 0.51 on a
                              photograph); default 0 (the CLI's --fast-decode sets it) */
    int resize_height, resize_width; /* resize to this size, then centre-crop height x width out of
                                        it (torchvision's Resize((h, w)) + CenterCrop); 0, 0
                                        (default): resize straight to height x width */
    int resize_shorter;    /* > 0 (instead of resize_height/width): resize so that the shorter side
                              is this, keeping the aspect ratio, the longer side int(S * long /
                              short) as torchvision's Resize(S) rounds it, then centre-crop;
                              default 0. The crop's offsets are torchvision CenterCrop's:
                              round((size - crop) / 2), half to even */
    imgsim_interp interp;  /* resize filter; default IMGSIM_INTERP_BILINEAR */
} imgsim_preprocess_opts;

void imgsim_preprocess_opts_init(imgsim_preprocess_opts *opt);

/* Sets one field of opt from text, as the CLI's options and the Python binding spell it:
 *   "resize"  "HxW" (resize_height/width) or "shorter:S" (resize_shorter); a bare number is
 *             refused, as it would mean HxW to some readers and torchvision's shorter side to others
 *   "crop"    "HxW" or "N" (N x N): height and width, the network input
 *   "mean", "std"  "r,g,b": three finite numbers, std's all > 0
 *   "interpolation"  "bilinear" or "bicubic"
 * IMGSIM_ERR_INVALID_ARG, with a message naming the option and what it expects, for an unknown
 * name or a malformed or out-of-range value (sizes are 1..16384); opt is then unchanged. */
imgsim_status imgsim_preprocess_opts_set(imgsim_preprocess_opts *opt, const char *name, const char *value);

/* IMGSIM_OK when opt describes a preprocessing imgsim can do: sizes in range, the crop (height x
 * width) no larger than the resized image (for resize_shorter: than S, the shorter side), std
 * positive. Otherwise IMGSIM_ERR_INVALID_ARG saying what is wrong ("crop 300x300 is larger than
 * the resized image 256x256"). Every call that preprocesses checks this itself. */
imgsim_status imgsim_preprocess_opts_check(const imgsim_preprocess_opts *opt);

/* NULL when a and b preprocess every image the same way (max_pixels aside; a resize equal to the
 * crop is no crop), else the name of the first field that differs: "crop" (height x width),
 * "resize", "interpolation", "mean", "std", "exif_rotate" or "dct_scaling". The name is a
 * constant string. */
const char *imgsim_preprocess_opts_differ(const imgsim_preprocess_opts *a, const imgsim_preprocess_opts *b);

/* The preprocessing of opt in words, as meta.json and messages give it: "resize 256x256 bilinear,
 * crop 224x224" or "resize shorter:256 bicubic, crop 224x224" or "resize 224x224 bilinear".
 * Written into buf (size bytes, always NUL-terminated). */
void imgsim_preprocess_opts_describe(char *buf, size_t size, const imgsim_preprocess_opts *opt);

/* Decode and preprocess one image into out (float32, CHW, 3 * height * width elements, owned by
 * the caller). opt may be NULL for the defaults. */
imgsim_status imgsim_preprocess_file(float *out, const char *path, const imgsim_preprocess_opts *opt);
imgsim_status imgsim_preprocess_mem(float *out, const void *data, size_t size,
                                    const imgsim_preprocess_opts *opt);

/* ---- decoded images: previews and thumbnails -------------------------------------------- */

/* Decodes an image file (JPEG/PNG/WebP, detected by content) with opt's max_pixels and exif_rotate
 * and shrinks it so that neither side exceeds max_side (aspect ratio kept, never enlarged;
 * max_side 0 keeps the full size), each output pixel the mean of the source pixels under it (a box
 * filter; JPEGs may first be scaled in the DCT domain when opt->dct_scaling). For showing images
 * (reports, the serve page): this is not the network's preprocessing (imgsim_preprocess_*), and
 * opt's height, width, mean and std are not used. opt may be NULL for the defaults.
 * On success *out_rgb holds *width x *height x 3 bytes of 8-bit RGB, row-major and interleaved,
 * owned by the caller and freed with imgsim_rgb_free; on failure *out_rgb is NULL and the message
 * names the file and the reason. */
imgsim_status imgsim_image_load_rgb(uint8_t **out_rgb, int *width, int *height, const char *path, int max_side,
                                    const imgsim_preprocess_opts *opt);
/* The same for an image in memory (size bytes at data, not kept). */
imgsim_status imgsim_image_decode_rgb(uint8_t **out_rgb, int *width, int *height, const void *data, size_t size,
                                      int max_side, const imgsim_preprocess_opts *opt);
/* Frees what imgsim_image_load_rgb / imgsim_image_decode_rgb returned; NULL is a no-op. */
void imgsim_rgb_free(uint8_t *rgb);

/* ---- model ------------------------------------------------------------------------------ */

typedef struct imgsim_model imgsim_model;

/* Loads and validates an ONNX model and picks its embedding layer: layer = NULL picks the input of
 * the final linear classifier (Gemm or MatMul [+ bias]) when the graph ends in one (the pooled
 * features of …→GlobalAveragePool→Flatten→Gemm, the last hidden activation of an MLP head as in
 * VGG and AlexNet), else the graph output; otherwise the named value. The graph is optimised (BN folding, fusion, dead-head
 * removal) once here. */
imgsim_status imgsim_model_load(imgsim_model **out, const char *path, const char *layer);
void imgsim_model_destroy(imgsim_model *m);
const char *imgsim_model_errmsg(const imgsim_model *m);

typedef struct imgsim_model_info {
    int dim;                 /* feature dimension of the chosen layer */
    int in_channels, in_height, in_width;
    int opset;
    char layer[256];         /* name of the chosen value */
    char sha256[65];         /* of the model file, lowercase hex */
    int n_nodes;             /* after optimisation */
    int n_nodes_file;        /* operators as the file has them, before optimisation */
    int64_t n_params;        /* elements of the file's weights (initializers) */
    char embedding[96];      /* how the layer was chosen, in words ("class token after the final
                                LayerNorm, the classifier's input", "mean of the patch tokens
                                (pool:mean)", "the final linear layer's input", ...) */
    char operators[512];     /* the optimised graph's operators with their counts, most frequent
                                first ("MatMul 24, Attention 12, LayerNormalization 25, ...") */
    int quantized;           /* 1: the model carries its own int8 scales (QuantizeLinear/
                                DequantizeLinear pairs, a QDQ model): an int8 engine uses them and
                                takes no calibration file (imgsim_engine_opts.calib_file must be
                                NULL); 0 otherwise */
} imgsim_model_info;

imgsim_status imgsim_model_get_info(const imgsim_model *m, imgsim_model_info *info);

/* ---- engine ----------------------------------------------------------------------------- */

typedef struct imgsim_engine imgsim_engine;

typedef struct imgsim_engine_opts {
    imgsim_device device;        /* default CPU */
    int device_index;            /* CUDA device ordinal; default 0 */
    imgsim_precision precision;  /* default FP32 on CPU, FP16 on CUDA */
    int precision_set;           /* 0: use the device default */
    int max_batch;               /* largest batch run() accepts (1..65536); default 32. 0 = auto:
                                    on CUDA the largest up to 256 that fits in free device memory,
                                    32 on the CPU. What the engine chose is in
                                    imgsim_engine_info.max_batch (the CLI's --batch-size) */
    int threads;                 /* CPU threads; 0 = all cores; at most 4x the cores (more are
                                    capped, with a warning). oneDNN's threads are OpenMP's: set
                                    OMP_WAIT_POLICY=passive before the program starts for idle
                                    threads that sleep rather than spin (the CLI does) */
    int normalize;               /* L2-normalise output rows; default 1 */
    const char *engine_cache;    /* CUDA engine-file cache folder; NULL = $XDG_CACHE_HOME/imgsim,
                                    "off" = none */
    const char *engine_file;     /* explicit CUDA engine file to load or build; NULL = cache */
    int prepare_gpu_decode;      /* CUDA: also create the nvJPEG decoders imgsim_extract uses, on a
                                    background thread while the engine is built or loaded (they
                                    take most of a second); default 0: the first extraction
                                    creates them. Either way the engine keeps them for the next. */
    const char *calib_file;      /* IMGSIM_PREC_INT8: the calibration file (imgsim_calib_save) of
                                    this model and layer; required for int8, refused with
                                    IMGSIM_ERR_MISMATCH when it was made for another model */
} imgsim_engine_opts;

void imgsim_engine_opts_init(imgsim_engine_opts *opt);

/* Plans an engine for one device and precision: weights converted, kernels chosen, one arena
 * allocated. The model may be destroyed afterwards. */
imgsim_status imgsim_engine_create(imgsim_engine **out, const imgsim_model *m,
                                   const imgsim_engine_opts *opt);
void imgsim_engine_destroy(imgsim_engine *e);
const char *imgsim_engine_errmsg(const imgsim_engine *e);

/* Creates an engine straight from a model file, like loading a TensorRT engine: on CUDA, when the
 * engine cache (or opt->engine_file) holds an engine for this file (recognised by path, size,
 * modification time and inode through an index in the cache folder, which records its sha256,
 * layer and input size) and this GPU, precision and batch, the engine is loaded from it without
 * reading or importing the ONNX model at all. Otherwise the same as imgsim_model_load +
 * imgsim_engine_create. layer as in imgsim_model_load. */
imgsim_status imgsim_engine_load(imgsim_engine **out, const char *model_path, const char *layer,
                                 const imgsim_engine_opts *opt);

/* Runs n (1..max_batch) preprocessed images: input is float32 NCHW [n, C, H, W], out is
 * float32 [n, dim]. Both owned by the caller. Does not allocate. */
imgsim_status imgsim_engine_run(imgsim_engine *e, const float *input, int n, float *out);

typedef struct imgsim_engine_info {
    int dim, in_channels, in_height, in_width, max_batch;
    imgsim_device device;
    imgsim_precision precision;
    size_t device_bytes;     /* memory the engine holds (weights + arena) */
    char device_name[128];   /* "cpu (oneDNN ...)" or the GPU's name */
    double build_seconds;    /* time to build or load the engine */
    int loaded_from_file;    /* CUDA: 1 if an engine file was loaded */
    int model_imported;      /* 0 when imgsim_engine_load skipped the ONNX import */
    char layer[256];         /* the embedding layer */
    char model_sha256[65];   /* of the model file */
    char calib_sha256[65];   /* int8: sha256 of the calibration file's bytes (lowercase hex), as
                                meta.json's "calib_sha256" records it; "" for other precisions */
} imgsim_engine_info;

imgsim_status imgsim_engine_get_info(const imgsim_engine *e, imgsim_engine_info *info);

/* ---- int8 calibration ------------------------------------------------------------------- */

/* How a tensor's int8 range is chosen from the histogram of |x| over the calibration images:
 * ENTROPY the threshold of least KL divergence between the tensor's distribution and its 128-level
 * quantisation (TensorRT's IInt8EntropyCalibrator2), PERCENTILE the percentile of |x|, MINMAX
 * max |x|. */
typedef enum imgsim_calib_method {
    IMGSIM_CALIB_ENTROPY = 0,
    IMGSIM_CALIB_PERCENTILE = 1,
    IMGSIM_CALIB_MINMAX = 2
} imgsim_calib_method;

typedef struct imgsim_calib_opts {
    imgsim_calib_method method; /* default ENTROPY */
    double percentile;          /* PERCENTILE: in (0, 100]; default 99.99 */
    int images;                 /* calibration images, spread evenly over the sorted listing (all
                                   when the input holds fewer); default 512 */
    imgsim_preprocess_opts pre; /* decoding and preprocessing, as imgsim_extract's (height and width
                                   are the model's, whatever is set here) */
    int batch_size;             /* images per engine run; default 32 */
    int threads;                /* CPU inference threads; 0 = all cores */
    int quiet;                  /* no progress lines */
} imgsim_calib_opts;

void imgsim_calib_opts_init(imgsim_calib_opts *opt);

/* Per-tensor int8 scales of one model and layer. */
typedef struct imgsim_calib imgsim_calib;

/* Runs m's float32 CPU engine over the images of input (a folder, TSV list or image, as
 * imgsim_extract; decoded and preprocessed as imgsim_extract does), collects a histogram of every
 * tensor an int8 convolution reads or writes (each convolution's input, output and residual) and
 * chooses each tensor's scale by opt->method (opt NULL: the defaults). Images that fail to decode
 * are skipped with a warning; none decoding is an error. The result does not depend on the thread
 * count. *out is released with imgsim_calib_destroy. */
imgsim_status imgsim_calibrate(imgsim_calib **out, const imgsim_model *m, const char *input,
                               const imgsim_calib_opts *opt);

/* Writes c to path, atomically, as JSON ("format": "imgsim-calib-1"; the model's sha256 and
 * layer, the preprocessing, the method, the images used and asked for, the input and its
 * fingerprint, and each tensor's name, scale, threshold, range and signedness). The same
 * calibration gives the same bytes. */
imgsim_status imgsim_calib_save(const imgsim_calib *c, const char *path);

/* Reads a calibration file. With m (may be NULL) the file must be for m's model file (sha256) and
 * layer: otherwise IMGSIM_ERR_MISMATCH, the message naming the file and both models. A file of
 * another format version is IMGSIM_ERR_UNSUPPORTED; a malformed one IMGSIM_ERR_FORMAT. */
imgsim_status imgsim_calib_load(imgsim_calib **out, const char *path, const imgsim_model *m);
void imgsim_calib_destroy(imgsim_calib *c);

typedef struct imgsim_calib_info {
    const char *model_sha256;  /* lowercase hex */
    const char *layer;         /* the embedding layer it was made for */
    imgsim_calib_method method;
    double percentile;         /* PERCENTILE only */
    int images;                /* images that went into the histograms */
    int n_tensors;
    int images_requested;          /* imgsim_calib_opts.images when it was made (0: not recorded) */
    const char *input;             /* the input it was made from, as given */
    const char *input_fingerprint; /* imgsim_dataset_fingerprint of that input then ("" if not recorded) */
    imgsim_preprocess_opts pre;    /* the preprocessing (height, width, mean, std, exif_rotate,
                                      dct_scaling; max_pixels is not recorded: the default) */
} imgsim_calib_info;

/* Strings belong to c. */
imgsim_status imgsim_calib_get_info(const imgsim_calib *c, imgsim_calib_info *info);
/* Tensor i (0..n_tensors-1): its name in the optimised graph and its scale (real = scale * q). */
imgsim_status imgsim_calib_get_tensor(const imgsim_calib *c, int i, const char **name, float *scale);

/* ---- feature stores --------------------------------------------------------------------- */

/* A store is a folder: features.npy ([N, D] float32 or float16, C order), manifest.tsv (one line
 * per input: row, path, label, status, error), inputs.tsv (path, size, mtime_ns of each listed
 * image when it was extracted, and its sha256 with opt.hash: for updates) and meta.json. */

/* Where JPEG decoding happens when the engine runs on CUDA and imgsim has nvJPEG: AUTO splits
 * JPEGs between the GPU (nvJPEG) and the CPU workers, adapting the share so neither idles; GPU
 * sends every JPEG nvJPEG takes to the GPU; CPU decodes everything on the CPU. Other formats and
 * JPEGs nvJPEG refuses (CMYK, EXIF-rotated, truncated) always go to the CPU workers. */
typedef enum imgsim_decode { IMGSIM_DECODE_AUTO = 0, IMGSIM_DECODE_CPU = 1, IMGSIM_DECODE_GPU = 2 } imgsim_decode;

/* Progress of a long call: done of total inputs are finished. Called after each batch, in order,
 * with done growing to total, on a thread of the call (the caller's, or one of the library's with
 * a CUDA engine); calls never overlap. Return 0 to go on; any other value stops the call, which
 * returns IMGSIM_ERR_CANCELLED and leaves no complete output. Used by bindings for progress bars
 * and for interrupting a job (Ctrl-C in a notebook). */
typedef int (*imgsim_progress_fn)(void *user, int64_t done, int64_t total);

typedef struct imgsim_extract_opts {
    imgsim_preprocess_opts pre;
    int workers;          /* decode/preprocess threads; 0 = all cores */
    int batch_size;       /* images per batch, for fewer than the engine's max_batch; 0 (default)
                             or more than max_batch: max_batch. The CLI sets no flag for it: its
                             --batch-size is the engine's max_batch */
    imgsim_dtype dtype;   /* features.npy element type; default F32 */
    int quiet;            /* no progress output */
    imgsim_decode decode; /* where JPEGs are decoded with a CUDA engine; default AUTO. With
                             preprocessing the GPU kernel does not do (a resize other than straight
                             to the input size, or BICUBIC) AUTO decodes on the CPU and GPU is
                             refused (IMGSIM_ERR_UNSUPPORTED) */
    imgsim_progress_fn progress; /* called as batches are written (see imgsim_progress_fn); default NULL */
    void *progress_user;         /* passed to progress */
    int64_t shard_size;   /* images per shard of the store being written (rounded up to a multiple of
                             the batch size); 0 (default): 1024. A killed extraction run again with
                             the same settings keeps its complete shards (README "Stores") */
    int update;           /* 1: bring the complete store already in store_dir up to date with the
                             input: rows of inputs whose path, size and modification time are those
                             of its inputs.tsv (and that were ok) are kept, the others extracted,
                             removed inputs dropped; the result equals a fresh extraction. A store
                             that cannot be updated (missing, incomplete, other model or settings)
                             is extracted in full, with a warning saying why. Default 0 */
    /* One extraction shared by several processes (an MPI job; see imgsim_extract_plan): */
    const uint8_t *part;  /* non-NULL: [part_shards] flags of the plan's shards: this call writes
                             the shards k with part[k] != 0 (and no others) into store_dir/shards,
                             as one process of the job: it takes no lock (the coordinator holds
                             it), touches no other file and does not join the store; stats count
                             its own images. Default NULL */
    int64_t part_shards;  /* the plan's n_shards (checked against the listing) */
    int locked;           /* 1: the caller holds store_dir's lock (imgsim_dir_lock_take), so the
                             call takes none. Default 0 */
    int durable;          /* 1: every file of the store (each shard's features, manifest and record,
                             then features.npy, manifest.tsv, inputs.tsv, meta.json) is fsynced before
                             it is renamed into place, and its folder after: a power cut or a kernel
                             crash keeps every shard completed before it. Default 0 (imgsim run: 1) */
    int hash;             /* 1: inputs.tsv also records each input's SHA-256 (read with `workers`
                             threads when the store is finished), and an update compares content:
                             an input whose size and hash are those recorded keeps its row whatever
                             its modification time, one rewritten with the same size and time is
                             extracted again. Inputs recorded without a hash (a store made without
                             it) are compared by size and time, with a warning. Default 0 */
    int join;             /* 1: only join the shards into the store: every shard must be complete,
                             else IMGSIM_ERR_IO naming how many are not and the first one's first
                             image (nothing is extracted). Default 0 */
    imgsim_store_layout layout; /* the store's final files: SINGLE (default) joins the shards into
                             features.npy and manifest.tsv; SHARDED keeps one features-K.npy and
                             manifest-K.tsv per shard (an update rewrites the store in this layout,
                             in shards of shard_size inputs) */
} imgsim_extract_opts;

void imgsim_extract_opts_init(imgsim_extract_opts *opt);

typedef struct imgsim_extract_stats {
    int64_t inputs, ok, failed, skipped; /* skipped: listed files that are not images */
    double seconds_total;
    double seconds_list, seconds_decode_busy, seconds_infer_busy, seconds_write;
    double images_per_s;
    int64_t gpu_decoded;      /* images decoded by nvJPEG */
    double seconds_gpu_decode; /* consumer time spent in GPU decoding + preprocessing */
    double seconds_wait_workers; /* consumer time waiting for the CPU workers */
    double seconds_setup;        /* buffers and threads before the first batch */
    double seconds_gpu_init;     /* creating the nvJPEG decoders, while the CPU decodes */
    int64_t kept;                /* opt.update: rows kept from the store (0 when it was extracted
                                    in full); the others of ok were extracted */
} imgsim_extract_stats;

/* Extracts features for every image of input (an ImageFolder-layout folder, a TSV list
 * "path<TAB>label" with a header line, or a single image file) into the store folder store_dir.
 * Files are written under temporary names and renamed when complete. A bad image is recorded in
 * the manifest and never fails the job. The rows are written in shards (store_dir/shards/, removed
 * when the store is complete): a call killed or failed midway and made again with the same
 * settings keeps the complete shards that still match the images, and gives the store an
 * uninterrupted call gives (README "Stores"). stats may be NULL; its counts cover every shard, its
 * timings this call. */
imgsim_status imgsim_extract(imgsim_engine *e, const char *model_path, const char *input,
                             const char *store_dir, const imgsim_extract_opts *opt,
                             imgsim_extract_stats *stats);

/* ---- search ----------------------------------------------------------------------------- */

typedef struct imgsim_search_opts {
    int threads;          /* 0 = all cores; at most 4x the cores */
    imgsim_device device; /* default CPU */
    int device_index;
    size_t gpu_memory;    /* CUDA: cap on device memory for the gallery (0 = no cap) */
    int part, parts;      /* imgsim_dedup on the CPU only: with parts > 1, this call finds the pairs
                             of share part (0..parts-1) of the blockwise work (one process's share of
                             an MPI job); the shares' pairs together are the whole pair set, each
                             pair in one share, with the same scores. Default 0, 0: everything */
    const int *devices;   /* imgsim_search on CUDA: with n_devices > 1, the gallery's rows are split
                             in n_devices ranges, each searched on its GPU devices[i] (a device may
                             repeat) with gpu_memory each, and the per-GPU top-k merged exactly
                             (imgsim_search_merge): the result is the one-GPU result, bit for bit.
                             device_index is then ignored. Default NULL, 0: device_index alone */
    int n_devices;
} imgsim_search_opts;

void imgsim_search_opts_init(imgsim_search_opts *opt);

/* Exact top-k by inner product (cosine for L2-normalised rows). gallery is [n, dim], queries
 * [q, dim], both of element type dtype, C order. Writes idx[q * k] (gallery row; -1, with score
 * -inf, where n < k) and score[q * k] (float32), best first, ties broken by lower gallery row.
 * Memory used is bounded by a tile, not by n x q; a k above n costs what k = n does. */
imgsim_status imgsim_search(int64_t *idx, float *score, const void *gallery, int64_t n,
                            const void *queries, int64_t q, int dim, imgsim_dtype dtype, int k,
                            const imgsim_search_opts *opt);

/* Merges candidate lists into the exact top-k. cand[q * m] holds, for each query, m gallery rows
 * (-1 for none; a row may repeat), typically the top-k of each part of a gallery split into row
 * ranges (imgsim_search on each part, its rows made global), as an MPI job has them. Every
 * candidate is scored in float64 exactly as imgsim_search scores, and the best k by (score desc,
 * row asc) go to idx/score [q * k] (-1 / -inf where fewer than k distinct candidates). When cand
 * holds the exact top-k of every part of a partition of the gallery, the result equals
 * imgsim_search over the whole gallery, bit for bit. gallery [n, dim] and queries [q, dim] are of
 * element type dtype; only the candidate rows are read. */
imgsim_status imgsim_search_merge(int64_t *idx, float *score, const int64_t *cand, int m,
                                  const void *gallery, int64_t n, const void *queries, int64_t q,
                                  int dim, imgsim_dtype dtype, int k);

/* ---- output folders: one writer at a time ------------------------------------------------ */

/* imgsim_dir_lock_take creates dir when missing and takes an exclusive lock on it (flock of
 * dir/.imgsim.lock, which records the holder's pid): while one process holds it, a second fails at
 * once (IMGSIM_ERR_IO) with a message naming dir and the holder's pid. Once held, the temporary
 * files a killed writer left there ("NAME.tmp.PID") are removed. imgsim_extract takes it on its
 * store folder by itself; a job writing several files into one folder (imgsim run) takes it on
 * that folder. The lock goes with the process; imgsim_dir_lock_release (NULL: no-op) frees it. */
typedef struct imgsim_dir_lock imgsim_dir_lock;
imgsim_status imgsim_dir_lock_take(imgsim_dir_lock **out, const char *dir);
void imgsim_dir_lock_release(imgsim_dir_lock *l);

/* ---- stores: reading and checking --------------------------------------------------------- */

/* A feature store opened for reading: features.npy, manifest.tsv and meta.json of one folder,
 * checked to belong together. Everything it hands out is owned by it and valid until
 * imgsim_store_close. */
typedef struct imgsim_store imgsim_store;

/* Opens the store folder dir and checks its three files against each other: the manifest lists
 * rows 0..n-1 of features.npy exactly once, and meta.json's "dim", "rows" and "dtype" (where
 * present) match features.npy. A folder holding features.npy or manifest.tsv but no meta.json is
 * an incomplete store (meta.json is written last, so the extraction that made it did not finish):
 * it is refused with IMGSIM_ERR_IO and a message saying so. Every error names the file at fault
 * (and the manifest line). */
imgsim_status imgsim_store_open(imgsim_store **out, const char *dir);
void imgsim_store_close(imgsim_store *s);

/* 1 when path is a folder holding any of a store's three files (a store, complete or not), else 0.
 * For telling a query store from a folder of images. */
int imgsim_store_exists(const char *path);

/* The folder a store's relative manifest paths are found from: the input its meta.json names
 * when that is a folder, else the folder holding it (a TSV list or a single image; "." for a bare
 * name), as given when the store was made (so relative to the working folder of that time).
 * Reads dir/meta.json alone: features.npy and manifest.tsv are neither opened nor checked. On
 * success *root is allocated by the library (imgsim_free), or NULL when meta.json names no input;
 * on failure it is NULL and the message names meta.json and the reason (IMGSIM_ERR_IO: missing
 * or unreadable, IMGSIM_ERR_FORMAT: not a JSON object). */
imgsim_status imgsim_store_dataset_root(char **root, const char *dir);

typedef struct imgsim_store_info {
    const char *dir;           /* the folder, as given to imgsim_store_open */
    int64_t n;                 /* feature rows: inputs extracted */
    int dim;                   /* feature dimension */
    imgsim_dtype dtype;        /* element type of features.npy */
    const void *features;      /* [n, dim] of dtype, C order */
    const char *const *paths;  /* [n]: each row's path, as in the manifest */
    const char *const *labels; /* [n]: each row's label ("" when unknown) */
    int64_t n_failed;          /* manifest lines of inputs that failed (no row) */
    int unit_norm;             /* 1 when the rows are L2-normalised: meta.json does not say otherwise
                                  and every row's norm is 1 within float rounding (an inner product
                                  is then a cosine); 0 for a --no-normalize store */
} imgsim_store_info;

imgsim_status imgsim_store_get_info(const imgsim_store *s, imgsim_store_info *info);

/* What meta.json says about how a store was made. Written by imgsim_extract (src/data/meta.c is
 * the one place that reads and writes the file). Strings are never NULL: "" where meta.json lacks
 * the key; numbers are 0 where it lacks them, unless said otherwise. */
typedef struct imgsim_store_meta {
    const char *format;           /* "imgsim-store-1" */
    const char *imgsim_version;   /* of the library that wrote the store */
    const char *created;          /* UTC, "YYYY-MM-DDTHH:MM:SSZ" */
    const char *model_path;       /* the model file as given to the extraction */
    const char *model_sha256;     /* of the model file, lowercase hex */
    const char *layer;            /* the embedding layer */
    int dim;                      /* feature dimension */
    int in_channels, in_height, in_width; /* the network input */
    int has_preprocessing;        /* 1 when meta.json holds the preprocessing below */
    imgsim_preprocess_opts pre;   /* height, width, resize_*, interp, mean, std, exif_rotate,
                                     dct_scaling (max_pixels is not recorded: the default) */
    const char *interpolation;    /* "bilinear-antialias (PIL)" or "bicubic-antialias (PIL)" */
    const char *precision;        /* "fp32", "bf16", "fp16", "tf32" or "int8" */
    const char *calib_sha256;     /* int8: sha256 of the calibration file the engine ran with */
    const char *device;           /* "cpu" or "cuda" */
    const char *device_name;
    const char *dtype;            /* "float32" or "float16" */
    int normalized;               /* 1: rows L2-normalised, 0: not (--no-normalize), -1: not recorded */
    int batch_size;
    const char *input;            /* the input the extraction was given (folder, list or file) */
    const char *inputs_fingerprint; /* imgsim_dataset_fingerprint of that input, at the time */
    imgsim_extract_stats stats;   /* counts and timings of the extraction */
    double engine_build_seconds;
    double cpu_decode_share_final; /* GPU decoding: the CPU workers' share of JPEGs at the end; -1
                                      when not recorded */
    /* the files meta.json was written with, checked when the store is opened (a store whose files
     * do not match is refused); 0 and "" when not recorded (stores written before issue 12) */
    int64_t features_bytes;        /* size of features.npy */
    const char *features_checksum; /* checksum64 of its array data (16 hex digits; README) */
    int64_t manifest_bytes;        /* size of manifest.tsv */
    const char *manifest_checksum; /* checksum64 of the whole file */
    int64_t n_shards;              /* a sharded store (IMGSIM_LAYOUT_SHARDED): its shards
                                      (features-00000.npy, ...; meta.json's "shards" list, README
                                      "Sharded stores"); 0: the single layout (features.npy) */
} imgsim_store_meta;

/* Fills meta from the store's meta.json; its strings belong to the store. */
imgsim_status imgsim_store_get_meta(const imgsim_store *s, imgsim_store_meta *meta);

/* The features as float32 (float16 stores converted), into out ([n, dim], owned by the caller);
 * with unit set, each row divided by its L2 norm (rows of zeros stay zero), for a cosine over a
 * store whose rows are not unit length. */
imgsim_status imgsim_store_features_f32(float *out, const imgsim_store *s, int unit);

/* Whether query and engine (either may be NULL) belong with gallery: a query store must come
 * from the same model (sha256), layer, preprocessing and feature dimension; an engine must run
 * the same model and layer with the same dimension. Where either side is int8, both must be int8
 * ("precision") with the same calibration file ("calib_sha256"). IMGSIM_ERR_MISMATCH otherwise, with a
 * message naming both sides and what differs ("... were extracted with different models"). */
imgsim_status imgsim_store_check_compatible(const imgsim_store *gallery, const imgsim_store *query,
                                            const imgsim_engine *engine);

/* ---- near-duplicates --------------------------------------------------------------------- */

/* Called once for each pair found, on the thread that called imgsim_dedup. */
typedef void (*imgsim_pair_fn)(void *user, int64_t i, int64_t j, float score);

/* Every pair of rows i < j of x ([n, dim] of dtype, C order) whose inner product (cosine for
 * L2-normalised rows) is >= threshold, found blockwise (no n x n matrix) on opt->device (CPU, or
 * CUDA with opt->device_index and opt->gpu_memory; opt->threads on the CPU; opt NULL: the CPU
 * with all cores). The pair set is the exact one (candidates re-scored in float64); score is the
 * float64 inner product rounded to float32. Pairs come in no promised order. */
imgsim_status imgsim_dedup(const void *x, int64_t n, int dim, imgsim_dtype dtype, float threshold,
                           const imgsim_search_opts *opt, imgsim_pair_fn fn, void *user);

/* ---- stratified split ------------------------------------------------------------------- */

typedef struct imgsim_split_info {
    int64_t train, test; /* images written to train.tsv and test.tsv */
    int64_t skipped;     /* listed files that are not images (logged as warnings) */
} imgsim_split_info;

/* The split of `imgsim split`: lists dataset (a folder, a TSV list or one image, as
 * imgsim_extract does), sends round(test_size x count) images of each class (half to even) to
 * test, each class keeping at least one training image (a function of seed and the set of paths,
 * not of their listing order), and writes out_dir/train.tsv and out_dir/test.tsv ("path<TAB>label"
 * lists with a header, paths relative to out_dir; created if needed), atomically. test_size is in
 * (0, 1); a dataset without images is IMGSIM_ERR_INVALID_ARG. info may be NULL. */
imgsim_status imgsim_split(imgsim_split_info *info, const char *dataset, double test_size, uint64_t seed,
                           const char *out_dir);

/* ---- datasets: listing, split, extraction of a listed dataset ------------------------------ */

/* The images a job works on, listed once: an ImageFolder-layout folder (recursive, sorted, label =
 * first-level folder, "" for images directly in the root; files that are not JPEG/PNG/WebP by
 * content are skipped with a reason), a TSV list "path<TAB>label" with that header line (paths
 * relative to the list's folder; entries are not sniffed), or a single image file. */
typedef struct imgsim_dataset imgsim_dataset;

imgsim_status imgsim_dataset_open(imgsim_dataset **out, const char *path);
void imgsim_dataset_destroy(imgsim_dataset *ds);

typedef struct imgsim_dataset_info {
    const char *source;  /* the path given to imgsim_dataset_open */
    const char *root;    /* the folder relative paths are relative to */
    size_t n;            /* images */
    size_t n_skipped;    /* listed files that are not images */
} imgsim_dataset_info;

typedef struct imgsim_dataset_item {
    const char *path;    /* as opened */
    const char *rel;     /* as written in lists and manifests (relative to the root) */
    const char *label;   /* "" when unknown */
} imgsim_dataset_item;

typedef struct imgsim_dataset_skip {
    const char *path;
    const char *reason;
} imgsim_dataset_skip;

/* The strings handed out belong to the dataset and live until imgsim_dataset_destroy. */
imgsim_status imgsim_dataset_get_info(const imgsim_dataset *ds, imgsim_dataset_info *info);
imgsim_status imgsim_dataset_get_item(const imgsim_dataset *ds, size_t i, imgsim_dataset_item *item);
imgsim_status imgsim_dataset_get_skipped(const imgsim_dataset *ds, size_t i, imgsim_dataset_skip *skip);

/* SHA-256 (lowercase hex) over every item's relative path, label, file size and modification
 * time: equal fingerprints mean the same images, so a store made from them can be reused. */
imgsim_status imgsim_dataset_fingerprint(char out[65], const imgsim_dataset *ds);

/* The stratified split of imgsim_split, of a listed dataset: per label, round(test_size * count)
 * items go to test (half to even, like Python's round), a label with one item stays in train.
 * Deterministic for (seed, set of relative paths), independent of listing order. is_test[i] (n
 * entries, the caller's) is set to 0 or 1. */
imgsim_status imgsim_dataset_split(uint8_t *is_test, const imgsim_dataset *ds, double test_size, uint64_t seed);

/* Writes items idx[0..n) of ds as a TSV list ("path<TAB>label" header, paths relative to the
 * list's own folder), atomically; the list opens again as the same images. */
imgsim_status imgsim_dataset_write_tsv(const imgsim_dataset *ds, const size_t *idx, size_t n, const char *path);

/* imgsim_extract for a dataset already listed: the store records ds's source as its input. The
 * listing time is the caller's, so stats->seconds_list is 0. stats may be NULL. */
imgsim_status imgsim_extract_dataset(imgsim_engine *e, const imgsim_dataset *ds, const char *store_dir,
                                     const imgsim_extract_opts *opt, imgsim_extract_stats *stats);

/* ---- one extraction shared by several processes (an MPI job) ------------------------------- */

/* The shards of a store being extracted (README "Resuming a killed extraction"), as the job's
 * coordinator found them: shard k holds the listing's images [k * shard_size, (k + 1) * shard_size). */
typedef struct imgsim_shard_plan {
    int64_t n_shards;   /* of the listing */
    int64_t shard_size; /* images per shard (rounded up to a multiple of the batch size) */
    int64_t n_done;     /* complete shards, kept from an earlier run */
    uint8_t *done;      /* [n_shards]: 1 for a complete, verified shard */
    int64_t *bytes;     /* [n_shards]: the total file size of its images */
} imgsim_shard_plan;

/* The shared extraction, on a file system every process sees: the coordinator takes store_dir's
 * lock (imgsim_dir_lock_take) and calls imgsim_extract_plan, which opens the store's shards as
 * imgsim_extract would (settings recorded, complete shards kept, others and a killed writer's
 * temporary files removed) and describes them; it hands each process its shards (e.g.
 * imgsim_shard_assign); every process lists the same dataset and calls imgsim_extract_dataset
 * with opt->part set to its own; once every part has returned IMGSIM_OK the coordinator calls
 * imgsim_extract_dataset with opt->locked = 1 and opt->join = 1 (part NULL), which checks that
 * every shard is complete (a shard it does not see is an error, not extracted again) and joins them: the store is byte for byte a single process's (but for meta.json's timings). Every
 * process uses the same model, layer, precision, batch and shard size and preprocessing (a part
 * whose settings are not the job's is refused, IMGSIM_ERR_MISMATCH). A failed or killed part
 * leaves the shards it completed; the same job run again extracts only the others. The caller
 * frees plan with imgsim_shard_plan_free. */
imgsim_status imgsim_extract_plan(imgsim_shard_plan *plan, imgsim_engine *e, const imgsim_dataset *ds,
                                  const char *store_dir, const imgsim_extract_opts *opt);
void imgsim_shard_plan_free(imgsim_shard_plan *plan);

/* Deals the plan's shards that are not done to parts 0..parts-1, balanced by their files' bytes:
 * largest first, each to the part with the fewest bytes so far (ties: fewer shards, then the
 * lower part). owner[n_shards] gets each shard's part, -1 for done shards. A function of the plan
 * alone, and the listing is sorted: the same files give the same owners whatever order the file
 * system lists them in. */
imgsim_status imgsim_shard_assign(int *owner, const imgsim_shard_plan *plan, int parts);

/* ---- one extraction on several engines of this process (every GPU of a machine) ---------- */

/* Extracts ds into store_dir as imgsim_extract_dataset does, with the work shared by n_engines
 * engines made alike (same model, layer, precision, batch size, normalisation; else
 * IMGSIM_ERR_MISMATCH naming the engine): one per GPU, or several on one GPU, or CPU engines. The
 * store's shards not yet complete are dealt to the engines balanced by their files' bytes
 * (imgsim_shard_assign), each engine extracts its shards on a thread of its own with its share of
 * opt->workers (0: all cores), and the shards are joined: the store is the one a single engine
 * writes, bit for bit where the engines compute alike (meta.json's timings aside). One progress
 * line and one opt->progress callback cover the job. A failed engine stops the others within a
 * batch and the call fails naming it (engine i of n, its device); the shards completed stay, and
 * the same call again extracts only the others. opt->part, opt->join and opt->update must be
 * unset. n_engines 1 is imgsim_extract_dataset. */
imgsim_status imgsim_extract_engines(imgsim_engine *const *engines, int n_engines, const imgsim_dataset *ds,
                                     const char *store_dir, const imgsim_extract_opts *opt,
                                     imgsim_extract_stats *stats);

/* The CUDA devices this process sees (cudaGetDeviceCount); 0 without any, or without CUDA in the
 * build. */
int imgsim_cuda_device_count(void);

/* IMGSIM_OK when the store in dir is complete and would come out the same from extracting ds now
 * with model m, engine options eo and extraction options xo: same model file (sha256) and layer,
 * precision (eo's, or the device's default; for int8 the same calibration file bytes, sha256 of
 * eo->calib_file against meta.json's calib_sha256) and device, dtype, preprocessing, and images
 * (imgsim_dataset_fingerprint). Otherwise IMGSIM_ERR_MISMATCH saying what differs, or the error
 * opening the store (IMGSIM_ERR_IO for a folder that is not there or is incomplete). Lets a job
 * skip an extraction it has done before without building an engine. */
imgsim_status imgsim_store_check_reusable(const char *dir, const imgsim_dataset *ds, const imgsim_model *m,
                                          const imgsim_engine_opts *eo, const imgsim_extract_opts *xo);

/* ---- preprocessing of decoded images -------------------------------------------------------- */

/* The second half of imgsim_preprocess_file for an image already decoded: rgb is 8-bit RGB,
 * interleaved, width x height x 3 bytes, row-major (alpha dropped, EXIF orientation applied, as
 * the decoder gives it); it is resized and centre-cropped to opt's height x width as
 * imgsim_preprocess_opts says, scaled to [0,1] and normalised with opt's mean/std into out (float32 CHW,
 * 3 * height * width, the caller's). opt's decoding fields are not used; NULL: the defaults. */
imgsim_status imgsim_preprocess_rgb(float *out, const uint8_t *rgb, int width, int height,
                                    const imgsim_preprocess_opts *opt);

/* Per-file outcome of imgsim_preprocess_files_gpu. */
typedef struct imgsim_file_result {
    imgsim_status status;
    int on_gpu;          /* 1: decoded by nvJPEG on the GPU, 0: by the CPU decoders */
    char message[1024];  /* why the file failed ("" when it did not) */
} imgsim_file_result;

/* Decodes and preprocesses n files through the GPU input path of a CUDA extraction (nvJPEG for
 * the JPEGs it takes, the CPU decoders for the rest, the fused resize + normalise kernel) on CUDA
 * device device_index, into out ([n, 3, height, width] float32, the caller's); res[n] says how
 * each file went (a failed file leaves zeros and does not fail the call). For tests and
 * inspection. IMGSIM_ERR_NO_DEVICE where imgsim was built without CUDA or no GPU is present.
 * The GPU kernel resizes straight to height x width with the bilinear filter: opt with
 * resize_height/width, resize_shorter or BICUBIC is refused (IMGSIM_ERR_UNSUPPORTED); a CUDA
 * extraction with such preprocessing decodes and preprocesses every image on the CPU. */
imgsim_status imgsim_preprocess_files_gpu(float *out, imgsim_file_result *res, const char *const *paths, int n,
                                          int device_index, const imgsim_preprocess_opts *opt);

/* ---- CUDA engine files ------------------------------------------------------------------- */

/* The engine file a CUDA engine was loaded from or written to ("" when none: a CPU engine, or
 * the engine cache off). Owned by the engine. */
const char *imgsim_engine_file(const imgsim_engine *e);

/* A description of the CUDA engine file at path, as `imgsim engine info` prints it: the key it
 * was built for (model sha256, layer, GPU, driver/CUDA/cuDNN/cuBLAS versions, precision, batch),
 * input and feature sizes, memory, steps and each convolution's algorithm, one item a line. The
 * file is read and verified (checksum, bounds) but not run, so no GPU is needed. Written into buf
 * (size bytes, always NUL-terminated, cut short when too small); *len, when not NULL, receives
 * the full length without the NUL. IMGSIM_ERR_NO_DEVICE where imgsim was built without CUDA. */
imgsim_status imgsim_engine_file_describe(char *buf, size_t size, size_t *len, const char *path);

/* ---- arrays (.npy) ----------------------------------------------------------------------- */

/* Reads a 2-D (or 1-D, as [1, n]) float32 or float16 .npy file; *data (rows * cols elements of
 * *dtype, C order) is allocated by the library and released with imgsim_free. */
imgsim_status imgsim_npy_read(void **data, imgsim_dtype *dtype, int64_t *rows, int64_t *cols, const char *path);
/* Writes a float32 array of rank 1..8 (shape[rank]) as a .npy file, atomically. */
imgsim_status imgsim_npy_write_f32(const char *path, const float *data, const int64_t *shape, int rank);

/* ---- text ------------------------------------------------------------------------------- */

/* A copy of JSON text (as cJSON or any writer prints it) in which every byte that is not part of
 * a valid UTF-8 sequence (a file name's bytes) is written as \udcXX, Python's surrogateescape, so
 * the text stays valid JSON and the names read back exactly: meta.json is written so, and its
 * reader turns them back into the bytes. Allocated by the library (imgsim_free); NULL when out of
 * memory. */
char *imgsim_json_escape_bytes(const char *json);

/* Releases memory the library allocated for the caller (imgsim_npy_read,
 * imgsim_json_escape_bytes). NULL is a no-op. */
void imgsim_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* IMGSIM_H */
