/*
 * store.h: feature stores on disk. A store is a folder holding features.npy ([N, D] float32 or
 * float16), manifest.tsv (row, path, label, status, error: one line per input) and meta.json.
 */
#ifndef IMGSIM_STORE_H
#define IMGSIM_STORE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/core.h"

typedef struct ims_store {
    char *dir;
    void *features;      /* [n, dim] in dtype */
    imgsim_dtype dtype;
    int64_t n;
    int dim;
    char **paths;        /* [n]: path of each row, as in the manifest */
    char **labels;       /* [n]: label of each row ("" if none) */
    int64_t n_failed;    /* manifest lines with row -1 */
    cJSON *meta;         /* parsed meta.json */
} ims_store;

imgsim_status ims_store_open(ims_store **out, const char *dir, ims_err *e);
void ims_store_free(ims_store *s);
/* meta.json string/number fields, NULL/def when absent. */
const char *ims_store_meta_str(const ims_store *s, const char *key);
double ims_store_meta_num(const ims_store *s, const char *key, double def);
/* Features of rows as float32 (converting from float16), ims_malloc'ed [n, dim]. */
float *ims_store_features_f32(const ims_store *s);

#endif /* IMGSIM_STORE_H */
