/*
 * search_cuda.h: the CUDA search's gallery handle (search_cuda.c), for callers that query one
 * gallery many times (benchmarks, dedup): the gallery is planned and, when it fits, uploaded
 * once. is_search_cuda (search/search.h) is create + search + free.
 */
#ifndef IMGSIM_SEARCH_CUDA_H
#define IMGSIM_SEARCH_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct is_gsearch is_gsearch;

/* Plans the search of gallery [n, dim] (dtype; borrowed: it must outlive the handle and not
 * change) on CUDA device device_index, with at most gpu_memory bytes of device memory for the
 * gallery (0: no cap). Uploads the gallery when it fits; otherwise it is streamed per search. */
imgsim_status is_gsearch_create(is_gsearch **out, const void *gallery, int64_t n, int dim, imgsim_dtype dtype,
                                int device_index, size_t gpu_memory, is_err *e);

/* Exact top-k of queries [q, dim] (the gallery's dtype): idx/score [q, k] as imgsim_search. */
imgsim_status is_gsearch_run(is_gsearch *g, int64_t *idx, float *score, const void *queries, int64_t q, int k,
                             is_err *e);

/* 1 when the gallery is resident on the device, 0 when streamed. */
int is_gsearch_resident(const is_gsearch *g);

/* Counters of the last is_gsearch_run: queries proven on the GPU in the first pass, in the wider
 * second pass, and recomputed on the CPU. */
void is_gsearch_counts(const is_gsearch *g, int64_t *first, int64_t *second, int64_t *cpu);

void is_gsearch_free(is_gsearch *g);

#endif /* IMGSIM_SEARCH_CUDA_H */
