/*
 * split.c: imgsim_split, the stratified train/test split of `imgsim split` as one public call
 * (for bindings): list the dataset, split it per class, write DIR/train.tsv and DIR/test.tsv.
 */
#include <stdlib.h>

#include "api/api.h"
#include "data/dataset.h"

imgsim_status imgsim_split(imgsim_split_info *info, const char *dataset, double test_size, uint64_t seed,
                           const char *out_dir) {
    if (info) info->train = info->test = info->skipped = 0;
    if (!dataset || !out_dir) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_split: NULL argument");
    if (!(test_size > 0.0 && test_size < 1.0))
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "test size %g: must be strictly between 0 and 1", test_size);
    ims_err e;
    ims_err_clear(&e);
    ims_dataset *d = NULL;
    uint8_t *is_test = NULL;
    size_t *tr = NULL, *te = NULL, ntr = 0, nte = 0;
    char *p_train = NULL, *p_test = NULL;
    imgsim_status st = ims_dataset_open(&d, dataset, &e);
    if (st) goto done;
    for (size_t i = 0; i < d->n_skipped; i++) ims_log_warn("skipped %s: %s", d->skipped[i].path, d->skipped[i].reason);
    if (d->n == 0) {
        st = ims_fail(&e, IMGSIM_ERR_INVALID_ARG, "%s: no images found", dataset);
        goto done;
    }
    is_test = malloc(d->n);
    tr = malloc(d->n * sizeof *tr);
    te = malloc(d->n * sizeof *te);
    p_train = ims_path_join(out_dir, "train.tsv");
    p_test = ims_path_join(out_dir, "test.tsv");
    if (!is_test || !tr || !te || !p_train || !p_test) {
        st = ims_fail(&e, IMGSIM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = ims_split(is_test, d, test_size, seed, &e))) goto done;
    for (size_t i = 0; i < d->n; i++) {
        if (is_test[i])
            te[nte++] = i;
        else
            tr[ntr++] = i;
    }
    if ((st = ims_mkdir_p(out_dir, &e))) goto done;
    if ((st = ims_dataset_write_tsv(d, tr, ntr, p_train, &e))) goto done;
    st = ims_dataset_write_tsv(d, te, nte, p_test, &e);
done:
    if (info && !st) {
        info->train = (int64_t)ntr;
        info->test = (int64_t)nte;
        info->skipped = (int64_t)d->n_skipped;
    }
    free(is_test), free(tr), free(te), free(p_train), free(p_test);
    ims_dataset_free(d);
    if (st) ims_fail_copy(NULL, &e, st);
    return st;
}
