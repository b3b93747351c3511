/*
 * shards.h: a store being written, in shards, so that a killed extraction continues where it
 * stopped (README "Stores": the shard format).
 *
 * Shard k holds the items [k * S, min((k + 1) * S, n)) of the dataset listing (S, the shard size,
 * a multiple of the batch size, so a shard's batches are the batches of an uninterrupted run). It
 * is three files in STORE/shards/: k.npy (the features of its ok items, in order), k.tsv (its
 * manifest lines, rows counted from 0 within the shard) and k.json, its record (item range, a
 * SHA-256 of the items' paths, labels, sizes and modification times, and the size and checksum64
 * of the other two), written last: a shard is complete when its record is there and agrees with
 * its files and with the listing. job.json records what every shard is made with (model sha256,
 * layer, precision, device, dtype, normalisation, preprocessing, batch and shard size). A shard
 * depends on the listing and job.json only, not on the process that wrote it.
 */
#ifndef IMGSIM_SHARDS_H
#define IMGSIM_SHARDS_H

#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "data/store_write.h"
#include "data/dataset.h"

/* Images per shard when the caller sets none (rounded up to a multiple of the batch size). */
#define IMS_SHARD_SIZE_DEFAULT 1024

/* What the features of every shard are made with (job.json). Strings are the caller's. */
typedef struct ims_shard_job {
    const char *model_sha256, *layer, *precision, *device;
    const char *calib_sha256; /* int8: the calibration file's sha256 ("" or NULL otherwise) */
    int dim;
    imgsim_dtype dtype;
    int normalized;
    int batch_size;
    const imgsim_preprocess_opts *pre;
    int durable; /* fsync each shard's files (imgsim_extract_opts.durable): not part of the settings */
} ims_shard_job;

/* Size and modification time (ns) of an item when the job began (-1, 0 when it cannot be read). */
typedef struct ims_stamp {
    int64_t size, mtime_ns;
} ims_stamp;

typedef struct ims_shards ims_shards;

/* Opens store_dir/shards for job over ds with shards of shard_size images (0: the default; rounded
 * up to a multiple of job->batch_size). A job.json from other settings, or shards that do not
 * verify (record missing or unreadable, files that do not match it, items that changed), are
 * removed with a warning naming the reason; the shards that verify are kept. The caller holds the
 * store's write lock.
 *
 * With part ([part_n] flags, part_n the listing's shard count), the shards are one part of an
 * extraction shared by several processes (an MPI job): the process that holds the lock opened them
 * without part first (job.json written, complete shards verified, stale ones removed); this one
 * checks that job.json is its own settings, stats only its own items, and writes the shards k with
 * part[k] set (the todo view: theirs alone, whatever is there), touching nothing else in the folder. */
imgsim_status ims_shards_open(ims_shards **out, const char *store_dir, const ims_shard_job *job,
                              int64_t shard_size, const ims_dataset *ds, const uint8_t *part, int64_t part_n,
                              ims_err *e);
void ims_shards_free(ims_shards *sh);

/* The items still to extract (the complete shards' items left out), in listing order: a view of
 * the dataset (its strings are the dataset's; nothing skipped). Valid until ims_shards_free. */
const ims_dataset *ims_shards_todo(const ims_shards *sh);
/* Shards in all, and already complete when opened. */
int64_t ims_shards_total(const ims_shards *sh);
int64_t ims_shards_done(const ims_shards *sh);
/* The stamps of ds's items, taken when opened ([ds->n]; a part's: its own items only). */
const ims_stamp *ims_shards_stamps(const ims_shards *sh);
/* Images per shard (the rounded size); whether shard k is complete; the bytes of its images' files. */
int64_t ims_shards_size(const ims_shards *sh);
int ims_shards_is_done(const ims_shards *sh, int64_t k);
int64_t ims_shards_bytes(const ims_shards *sh, int64_t k);

/* Records item t of the todo view: its features row (dim floats) when ok, or NULL and error (one
 * TSV field: no tabs or newlines) when it failed. Items come in order; the last item of a shard
 * commits it (features, manifest lines, then its record). */
imgsim_status ims_shards_add(ims_shards *sh, int64_t t, const float *row, const char *error, ims_err *e);

/* Writes every shard, in order, into the store's files through w: each shard of the sharded
 * layout into a pair of its own, the single layout's all into one (rows counted in the whole
 * store); *ok and *failed count the items. */
imgsim_status ims_shards_assemble(ims_shards *sh, ims_store_writer *w, int64_t *ok, int64_t *failed, ims_err *e);

/* Removes the shard folder (after the store is complete). */
void ims_shards_remove(ims_shards *sh);

#endif /* IMGSIM_SHARDS_H */
