/*
 * synth/model.h: the model generators of libimgsim_synth (not part of the engine library): a
 * torchvision-layout ResNet built in memory (resnet.c) and an ONNX writer for graphs (onnx_save.c),
 * behind imgsim_model_init (include/imgsim_synth.h). Tests that build graphs include this header
 * and link libimgsim_synth.
 */
#ifndef IMGSIM_SYNTH_MODEL_H
#define IMGSIM_SYNTH_MODEL_H

#include "model/graph.h"

/* Builds a torchvision-layout ResNet ("resnet18", "resnet34", "resnet50") with Kaiming-normal
 * weights, zero biases and BN (gamma 1, beta 0, mean 0, var 1) including the fc head. */
imgsim_status ims_graph_build_resnet(ims_graph **out, const char *arch, uint64_t seed, ims_err *e);
/* Writes a graph as an ONNX model (opset 13, dynamic batch axis named "batch_size", input
 * "input", output "output"). */
imgsim_status ims_onnx_save(const ims_graph *g, const char *path, ims_err *e);

#endif
