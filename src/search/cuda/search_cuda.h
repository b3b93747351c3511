/*
 * search_cuda.h: the CUDA search's gallery handle (search_cuda.c), for callers that query one
 * gallery many times (benchmarks, dedup): the gallery is planned and, when it fits, uploaded
 * once. ims_search_cuda (search/search.h) is create + search + free.
 */
#ifndef IMGSIM_SEARCH_CUDA_H
#define IMGSIM_SEARCH_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct ims_gsearch ims_gsearch;

/* Plans the search of gallery [n, dim] (dtype; borrowed: it must outlive the handle and not
 * change) on CUDA device device_index, with at most gpu_memory bytes of device memory for the
 * gallery (0: no cap). Uploads the gallery when it fits; otherwise it is streamed per search. */
imgsim_status ims_gsearch_create(ims_gsearch **out, const void *gallery, int64_t n, int dim, imgsim_dtype dtype,
                                int device_index, size_t gpu_memory, ims_err *e);

/* Exact top-k of queries [q, dim] (the gallery's dtype): idx/score [q, k] as imgsim_search. */
imgsim_status ims_gsearch_run(ims_gsearch *g, int64_t *idx, float *score, const void *queries, int64_t q, int k,
                             ims_err *e);

/* 1 when the gallery is resident on the device, 0 when streamed. */
int ims_gsearch_resident(const ims_gsearch *g);

/* Counters of the last ims_gsearch_run: queries proven on the GPU in the first pass, in the wider
 * second pass, and recomputed on the CPU. */
void ims_gsearch_counts(const ims_gsearch *g, int64_t *first, int64_t *second, int64_t *cpu);

void ims_gsearch_free(ims_gsearch *g);

#endif /* IMGSIM_SEARCH_CUDA_H */
