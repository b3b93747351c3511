/*
 * model_init.c: imgsim_model_init (include/imgsim_synth.h), the public entry point of `imgsim model init`: a torchvision-
 * layout ResNet with random Kaiming-normal weights (ims_graph_build_resnet) written as ONNX
 * (ims_onnx_save), for demos and tests that have no PyTorch.
 */
#include <string.h>

#include "imgsim_synth.h"

#include "synth/model.h"

imgsim_status imgsim_model_init(const char *path, const char *arch, uint64_t seed) {
    if (!path || !arch) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_model_init: NULL argument");
    ims_err e;
    ims_err_clear(&e);
    ims_graph *g = NULL;
    imgsim_status s = ims_graph_build_resnet(&g, arch, seed, &e);
    if (s == IMGSIM_OK) s = ims_onnx_save(g, path, &e);
    ims_graph_free(g);
    if (s != IMGSIM_OK) return ims_fail_copy(NULL, &e, s);
    return IMGSIM_OK;
}
