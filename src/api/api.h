/* api.h: the structs behind the public handles, shared by the files of src/api/. */
#ifndef IMGSIM_API_H
#define IMGSIM_API_H

#include "backend/backend.h"
#include "core/core.h"
#include "model/graph.h"

struct imgsim_model {
    ims_graph *g;
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
    void *gpu_dec; /* CUDA: ims_gpu_decoder_slot, nvJPEG decoders kept for imgsim_extract */
};

#endif
