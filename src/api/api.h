/* api.h: the structs behind the public handles, shared by the files of src/api/. */
#ifndef IMGSIM_API_H
#define IMGSIM_API_H

#include "backend/backend.h"
#include "core/core.h"
#include "data/dataset.h"
#include "image/gpu_decode.h"
#include "model/graph.h"

struct imgsim_model {
    ims_graph *g;
    int n_nodes_file;      /* operators in the file, before optimisation */
    int64_t n_params;      /* elements of its initializers */
    char *path;
    char layer[256];       /* the chosen value's name */
    char layer_asked[256]; /* the layer argument given to imgsim_model_load ("" = default) */
    ims_err err;
};

struct imgsim_engine {
    ims_backend *b;
    imgsim_engine_info info;
    char sha256[65];   /* of the model file */
    char layer[256];
    char *model_path;
    int normalize;     /* rows L2-normalised (imgsim_engine_opts.normalize) */
    ims_err err;
    ims_gpu_decoders *gpu_dec; /* CUDA: the GPU decoder set imgsim_extract uses (one per GPU), or NULL */
};

/* The one place engine options are resolved (engine_opts.c): turns opt into the backend's
 * configuration (device defaults, "auto", every check, one message per mistake). cfg->cached_only
 * is left 0. What the backend then chose is in imgsim_engine_info. */
imgsim_status ims_engine_config(ims_backend_cfg *cfg, const imgsim_engine_opts *opt, ims_err *e);

/* int8 (api/calib.c): the calibration file at path, checked to be for the model (sha256) and layer
 * and resolved against g's values: scale[v] (0 where not calibrated) and is_unsigned[v], both
 * g->n_vals long and malloc'ed (free()); calib_sha256 gets the sha256 of the file's bytes. */
imgsim_status ims_calib_resolve(float **scale, uint8_t **is_unsigned, char calib_sha256[65], const char *path,
                                const ims_graph *g, const char *sha256, const char *layer,
                                const char *model_path, ims_err *e);
/* int8 of a QDQ model (g->qdq): the same two arrays from the scales its values carry (q_scale,
 * q_unsigned), and *zero the uint8 zero points of asymmetric ones (q_zero); calib_file must be NULL
 * or empty (the model has its own scales). */
imgsim_status ims_qdq_resolve(float **scale, uint8_t **is_unsigned, int32_t **zero, const char *calib_file,
                              const ims_graph *g, const char *model_path, ims_err *e);

/* A listed dataset (api/dataset.c). */
struct imgsim_dataset {
    ims_dataset *d;
    char *source; /* the path it was opened from */
};

#endif
