/*
 * meta.h: meta.json, the record of how a feature store was made (imgsim_store_meta in imgsim.h).
 * meta.c is the one place that knows its keys: the extraction writes it through ims_meta_write,
 * the store reader parses it through ims_meta_read, and everything else uses the struct.
 */
#ifndef IMGSIM_META_H
#define IMGSIM_META_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/core.h"

/* Empty strings, zero numbers, default preprocessing (has_preprocessing 0), normalized and the
 * CPU share not recorded (-1). */
void ims_meta_init(imgsim_store_meta *m);

/* Reads meta.json at path into m (its strings point into *doc, which the caller frees with
 * cJSON_Delete) and checks the keys that describe features.npy against it: "dim" must equal dim,
 * "rows" (or "n") rows and "dtype" ("float32"/"float16") dtype, where present; rows < 0: no such
 * checks (the record alone, without its features). Errors name path. */
imgsim_status ims_meta_read(imgsim_store_meta *m, cJSON **doc, const char *path, int64_t rows, int dim,
                            imgsim_dtype dtype, ims_err *e);

/* Writes m as meta.json at path, atomically. m->created "" (or NULL): stamped with the time now;
 * m->cpu_decode_share_final < 0: not written; sharded (non-NULL, n_shards > 0): the sharded
 * layout's "layout", "rows" and "shards" instead of "files". */
struct ims_store_files;
imgsim_status ims_meta_write(const char *path, const imgsim_store_meta *m, const struct ims_store_files *sharded,
                             int durable, ims_err *e);

/* NULL when both record preprocessing and it is the same (crop, resize, interpolation, mean, std,
 * EXIF rotation, DCT scaling), else the first field that differs (imgsim_preprocess_opts_differ's
 * names, or "preprocessing (not recorded)"). */
const char *ims_meta_preprocessing_differs(const imgsim_store_meta *a, const imgsim_store_meta *b);
/* meta.json's name of a filter (imgsim_interp): IMS_META_INTERPOLATION or ..._BICUBIC. */
const char *ims_meta_interpolation(int interp);

/* One shard of a sharded store (meta.json's "shards" list): features-K.npy holds rows
 * [first_row, first_row + rows) of the store; sizes and checksum64 of both files. */
typedef struct ims_store_shard {
    int64_t rows, first_row;
    int64_t features_bytes, manifest_bytes;
    char features_checksum[17], manifest_checksum[17];
} ims_store_shard;

/* What meta.json records of the files it goes with: the single layout's "files" object, or
 * (n_shards > 0) the sharded layout's "shards" list. */
typedef struct ims_store_files {
    int64_t features_bytes, manifest_bytes;
    char features_checksum[17], manifest_checksum[17];
    int64_t n_shards;        /* 0: the single layout */
    ims_store_shard *shards; /* [n_shards] */
} ims_store_files;

/* The shards meta.json doc lists ("layout": "sharded"): *shards ims_malloc'ed [*n] (NULL, 0 for
 * the single layout). A list that is not one (missing keys, rows not end to end) is
 * IMGSIM_ERR_FORMAT naming path. */
imgsim_status ims_meta_shards(ims_store_shard **shards, int64_t *n, const cJSON *doc, const char *path, ims_err *e);

/* Fills f for a store being written: features.npy's size (stat) and the checksum64 of its data
 * (features_ck, from the writer), manifest.tsv's size and checksum64 (read back). */
imgsim_status ims_store_files_measure(ims_store_files *f, const char *features_path, uint64_t features_ck,
                                      const char *manifest_path, ims_err *e);

/* The interpolation imgsim's preprocessing uses, as meta.json names it. */
#define IMS_META_INTERPOLATION "bilinear-antialias (PIL)"
#define IMS_META_INTERPOLATION_BICUBIC "bicubic-antialias (PIL)"
#define IMS_META_FORMAT "imgsim-store-1"

#endif /* IMGSIM_META_H */
