/*
 * dataset.h: the list of images a job works on (ImageFolder layout, TSV list, or one file), and
 * the stratified train/test split.
 */
#ifndef IMGSIM_DATASET_H
#define IMGSIM_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct ims_item {
    char *path;  /* as opened: root-joined for folders and lists */
    char *rel;   /* as written in TSVs and manifests (relative to the dataset root where possible) */
    char *label; /* "" when unknown */
} ims_item;

typedef struct ims_skip {
    char *path;   /* as opened (root-joined) */
    char *rel;    /* as written in manifests: relative to the root, like ims_item.rel */
    char *reason;
} ims_skip;

typedef struct ims_dataset {
    char *root;        /* folder the relative paths are relative to */
    ims_item *items;    /* images, sorted by rel (folders), or in list order (TSV) */
    size_t n;
    ims_skip *skipped;  /* listed files that are not images (with a reason) */
    size_t n_skipped;
} ims_dataset;

/* Opens a dataset: a folder (ImageFolder layout, recursive, label = first-level folder name, ""
 * for files directly in the root; files whose first bytes are not JPEG/PNG/WebP are skipped with a
 * reason), a TSV list ("path<TAB>label" with header "path\tlabel", paths relative to the list's
 * folder; entries are not sniffed, so unreadable ones fail later with their own error), or a single
 * image file. */
imgsim_status ims_dataset_open(ims_dataset **out, const char *path, ims_err *e);
void ims_dataset_free(ims_dataset *d);

/* Writes items (indices idx[0..n)) as a TSV list "path\tlabel" with paths relative to the
 * TSV's own folder, atomically. */
imgsim_status ims_dataset_write_tsv(const ims_dataset *d, const size_t *idx, size_t n, const char *path,
                                   ims_err *e);

/* Stratified split: per label, round(test_size * count) items go to test (half to even), labels
 * with one item stay in train. Deterministic for (seed, set of rel paths), independent of listing
 * order. is_test[i] is set to 0/1 for every item. */
imgsim_status ims_split(uint8_t *is_test, const ims_dataset *d, double test_size, uint64_t seed, ims_err *e);

/* SHA-256 over every item's relative path, label, size and modification time, as lowercase hex:
 * equal fingerprints mean the same images (a store made from them can be reused). */
imgsim_status ims_dataset_fingerprint(const ims_dataset *d, char out[65], ims_err *e);

#endif /* IMGSIM_DATASET_H */
