/*
 * dataset.c: the public dataset calls of imgsim.h (imgsim_dataset_*, imgsim_dataset_split,
 * imgsim_extract_dataset): a listed dataset (data/dataset.c) behind a handle, its stratified
 * split (data/split.c), and extraction of a dataset already listed (api/extract.c).
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/extract.h"
#include "data/dataset.h"

imgsim_status imgsim_dataset_open(imgsim_dataset **out, const char *path) {
    if (!out || !path) {
        if (out) *out = NULL;
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_dataset_open: NULL argument");
    }
    *out = NULL;
    imgsim_dataset *ds = ims_calloc(1, sizeof *ds);
    if (!ds || !(ds->source = ims_strdup(path))) {
        free(ds);
        return ims_fail(NULL, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    }
    ims_err e;
    ims_err_clear(&e);
    imgsim_status st = ims_dataset_open(&ds->d, path, &e);
    if (st) {
        imgsim_dataset_destroy(ds);
        return ims_fail_copy(NULL, &e, st);
    }
    *out = ds;
    return IMGSIM_OK;
}

void imgsim_dataset_destroy(imgsim_dataset *ds) {
    if (!ds) return;
    ims_dataset_free(ds->d);
    free(ds->source);
    free(ds);
}

imgsim_status imgsim_dataset_get_info(const imgsim_dataset *ds, imgsim_dataset_info *info) {
    if (!ds || !info) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_dataset_get_info: NULL argument");
    info->source = ds->source;
    info->root = ds->d->root;
    info->n = ds->d->n;
    info->n_skipped = ds->d->n_skipped;
    return IMGSIM_OK;
}

imgsim_status imgsim_dataset_get_item(const imgsim_dataset *ds, size_t i, imgsim_dataset_item *item) {
    if (!ds || !item) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_dataset_get_item: NULL argument");
    if (i >= ds->d->n)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "%s: item %zu of %zu", ds->source, i, ds->d->n);
    item->path = ds->d->items[i].path;
    item->rel = ds->d->items[i].rel;
    item->label = ds->d->items[i].label;
    return IMGSIM_OK;
}

imgsim_status imgsim_dataset_get_skipped(const imgsim_dataset *ds, size_t i, imgsim_dataset_skip *skip) {
    if (!ds || !skip) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_dataset_get_skipped: NULL argument");
    if (i >= ds->d->n_skipped)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "%s: skipped file %zu of %zu", ds->source, i,
                       ds->d->n_skipped);
    skip->path = ds->d->skipped[i].path;
    skip->reason = ds->d->skipped[i].reason;
    return IMGSIM_OK;
}

imgsim_status imgsim_dataset_fingerprint(char out[65], const imgsim_dataset *ds) {
    if (!ds || !out) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_dataset_fingerprint: NULL argument");
    return ims_dataset_fingerprint(ds->d, out, NULL);
}

imgsim_status imgsim_dataset_split(uint8_t *is_test, const imgsim_dataset *ds, double test_size, uint64_t seed) {
    if (!ds || (!is_test && ds->d->n)) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_dataset_split: NULL argument");
    return ims_split(is_test, ds->d, test_size, seed, NULL);
}

imgsim_status imgsim_dataset_write_tsv(const imgsim_dataset *ds, const size_t *idx, size_t n, const char *path) {
    if (!ds || !path || (!idx && n))
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_dataset_write_tsv: NULL argument");
    for (size_t k = 0; k < n; k++)
        if (idx[k] >= ds->d->n)
            return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "%s: item %zu of %zu", path, idx[k], ds->d->n);
    return ims_dataset_write_tsv(ds->d, idx, n, path, NULL);
}

imgsim_status imgsim_extract_dataset(imgsim_engine *eng, const imgsim_dataset *ds, const char *store_dir,
                                     const imgsim_extract_opts *opt, imgsim_extract_stats *stats) {
    if (!eng || !ds || !store_dir)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_extract_dataset: NULL argument");
    imgsim_extract_opts def;
    if (!opt) {
        imgsim_extract_opts_init(&def);
        opt = &def;
    }
    imgsim_extract_stats s;
    imgsim_status st = ims_extract_dataset(eng, ds->d, ds->source, store_dir, opt, 0, &s, &eng->err);
    if (stats) *stats = s;
    if (st) ims_fail_copy(NULL, &eng->err, st);
    return st;
}
