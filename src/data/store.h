/*
 * store.h: feature stores on disk. A store is a folder holding features.npy ([N, D] float32 or
 * float16), manifest.tsv (row, path, label, status, error: one line per input) and meta.json
 * (data/meta.h). ims_store is the public imgsim_store handle (api/store.c has the public calls).
 */
#ifndef IMGSIM_STORE_H
#define IMGSIM_STORE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/core.h"

typedef struct imgsim_store ims_store;

struct imgsim_store {
    char *dir;
    void *features;      /* [n, dim] in dtype */
    imgsim_dtype dtype;
    int64_t n;
    int dim;
    char **paths;        /* [n]: path of each row, as in the manifest */
    char **labels;       /* [n]: label of each row ("" if none) */
    int64_t n_failed;    /* manifest lines with row -1 */
    double max_norm_dev; /* largest |L2 norm - 1| over the rows that are not all zero */
    int64_t manifest_bytes; /* manifest.tsv as read: size and checksum64 */
    uint64_t manifest_ck;
    cJSON *meta;         /* parsed meta.json */
    imgsim_store_meta m; /* what it says (strings point into meta) */
};

/* Opens and checks a store (see imgsim_store_open). */
imgsim_status ims_store_open(ims_store **out, const char *dir, ims_err *e);
void ims_store_free(ims_store *s);
/* meta.json string/number fields, NULL/def when absent. */
const char *ims_store_meta_str(const ims_store *s, const char *key);
double ims_store_meta_num(const ims_store *s, const char *key, double def);
/* Features of rows as float32 (converting from float16), ims_malloc'ed [n, dim]. */
float *ims_store_features_f32(const ims_store *s);
/* The same into out ([n, dim], the caller's). */
void ims_store_copy_f32(float *out, const ims_store *s);
/* 1 when a cosine search must normalise the rows first: meta.json says they were not
 * ("normalized": false, a --no-normalize store), or a row's norm is off 1 by more than float16 or
 * float32 rounding explains. */
int ims_store_needs_normalizing(const ims_store *s);
/* Features as float32 with each row divided by its L2 norm (rows of zeros stay zero),
 * ims_malloc'ed [n, dim]; NULL when out of memory. */
float *ims_store_features_unit(const ims_store *s);
/* Divides each row of f (a float32 copy of the store's features) by its L2 norm. */
void ims_store_unit_rows(float *f, const ims_store *s);
/* 1 when path is a folder holding features.npy, manifest.tsv or meta.json. */
int ims_store_exists(const char *path);

#endif /* IMGSIM_STORE_H */
