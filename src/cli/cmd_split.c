/*
 * cmd_split.c: imgsim split DATASET [--test-size=0.2] [--seed=42] --out-dir=DIR
 *
 * Lists the dataset (folder, TSV list or single image), splits it per class (see split.c for the
 * exact rule) and writes DIR/train.tsv and DIR/test.tsv. Files that are not images are listed on
 * stderr with the reason they were skipped; a per-class count table follows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/core.h"
#include "data/dataset.h"

static const char usage[] =
    "imgsim split DATASET [--test-size=0.2] [--seed=42] --out-dir=DIR [--quiet]\n"
    "  DATASET     a folder in ImageFolder layout (label = first-level folder), a TSV list\n"
    "              (header \"path<TAB>label\") or one image file\n"
    "  --test-size share of each class that goes to test, in (0, 1): round(test_size x count),\n"
    "              half to even like Python's round(); classes keep at least one training image\n"
    "  --seed      the split is a function of the seed and the set of paths, not listing order\n"
    "  --out-dir   writes DIR/train.tsv and DIR/test.tsv";

typedef struct class_count {
    const char *label;
    size_t total, test;
} class_count;

static int cmp_class(const void *a, const void *b) {
    return strcmp(((const class_count *)a)->label, ((const class_count *)b)->label);
}

/* Per-class totals, sorted by label. Returns the number of classes or -1 (out of memory). */
static long count_classes(class_count **out, const ims_dataset *d, const uint8_t *is_test) {
    class_count *c = NULL;
    size_t n = 0, cap = 0;
    /* items of a folder are sorted by rel, hence grouped by label; a TSV list may interleave, so
     * look each label up (a linear scan over classes is fine: classes are few) */
    for (size_t i = 0; i < d->n; i++) {
        size_t k = 0;
        if (n && !strcmp(c[n - 1].label, d->items[i].label))
            k = n - 1;
        else
            for (k = 0; k < n && strcmp(c[k].label, d->items[i].label); k++) {
            }
        if (k == n) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                class_count *p = realloc(c, cap * sizeof *c);
                if (!p) {
                    free(c);
                    return -1;
                }
                c = p;
            }
            c[n].label = d->items[i].label;
            c[n].total = c[n].test = 0;
            n++;
        }
        c[k].total++;
        c[k].test += is_test[i];
    }
    if (n > 1) qsort(c, n, sizeof *c, cmp_class);
    *out = c;
    return (long)n;
}

int cmd_split(int argc, char **argv) {
    static const char *const value_opts[] = {"test-size", "seed", "out-dir", NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, value_opts, usage);
    if (started >= 0) return started;
    int quiet = !ims_log_enabled(IMGSIM_LOG_INFO); /* -q/--quiet: no summary table */
    double test_size = cli_double(&a, "test-size", 0.2, 0.0, 1.0);
    uint64_t seed = cli_u64(&a, "seed", 42);
    const char *out_dir = cli_str(&a, "out-dir", NULL);
    const char *input = cli_pos(&a, 0);
    int rc = cli_finish(&a, usage);
    if (rc) {
        cli_free(&a);
        return rc;
    }
    if (!input || !out_dir || !(test_size > 0.0 && test_size < 1.0)) {
        if (!input) fprintf(stderr, "imgsim split: missing DATASET\n");
        if (!out_dir) fprintf(stderr, "imgsim split: missing --out-dir=DIR\n");
        if (!(test_size > 0.0 && test_size < 1.0))
            fprintf(stderr, "imgsim split: --test-size must be strictly between 0 and 1\n");
        fprintf(stderr, "usage: %s\n", usage);
        cli_free(&a);
        return 2;
    }

    ims_err err;
    ims_err_clear(&err);
    ims_dataset *d = NULL;
    uint8_t *is_test = NULL;
    size_t *idx = NULL;
    class_count *classes = NULL;
    char *train_path = NULL, *test_path = NULL;
    rc = 1;
    imgsim_status st = ims_dataset_open(&d, input, &err);
    if (st != IMGSIM_OK) goto fail;

    for (size_t i = 0; i < d->n_skipped; i++)
        fprintf(stderr, "imgsim split: skipped %s: %s\n", d->skipped[i].path, d->skipped[i].reason);
    if (d->n == 0) {
        st = ims_fail(&err, IMGSIM_ERR_INVALID_ARG, "%s: no images found", input);
        goto fail;
    }
    is_test = malloc(d->n);
    idx = malloc(d->n * sizeof *idx);
    if (!is_test || !idx) {
        st = ims_fail(&err, IMGSIM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    st = ims_split(is_test, d, test_size, seed, &err);
    if (st != IMGSIM_OK) goto fail;

    st = ims_mkdir_p(out_dir, &err);
    if (st != IMGSIM_OK) goto fail;
    train_path = ims_path_join(out_dir, "train.tsv");
    test_path = ims_path_join(out_dir, "test.tsv");
    if (!train_path || !test_path) {
        st = ims_fail(&err, IMGSIM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    size_t n_train = 0, n_test = 0;
    for (size_t i = 0; i < d->n; i++)
        if (!is_test[i]) idx[n_train++] = i;
    st = ims_dataset_write_tsv(d, idx, n_train, train_path, &err);
    if (st != IMGSIM_OK) goto fail;
    for (size_t i = 0; i < d->n; i++)
        if (is_test[i]) idx[n_test++] = i;
    st = ims_dataset_write_tsv(d, idx, n_test, test_path, &err);
    if (st != IMGSIM_OK) goto fail;

    long nc = count_classes(&classes, d, is_test);
    if (nc < 0) {
        st = ims_fail(&err, IMGSIM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!quiet) {
        int w = 6; /* "(none)" */
        for (long k = 0; k < nc; k++) {
            int l = (int)strlen(classes[k].label);
            if (l > w && l <= 60) w = l;
        }
        fprintf(stderr, "%-*s %8s %8s %8s\n", w, "class", "total", "train", "test");
        for (long k = 0; k < nc; k++)
            fprintf(stderr, "%-*s %8zu %8zu %8zu\n", w, classes[k].label[0] ? classes[k].label : "(none)",
                    classes[k].total, classes[k].total - classes[k].test, classes[k].test);
        fprintf(stderr, "%-*s %8zu %8zu %8zu\n", w, "all", d->n, n_train, n_test);
        fprintf(stderr, "imgsim split: %ld classes, %zu images (%zu skipped): wrote %s and %s\n", nc, d->n,
                d->n_skipped, train_path, test_path);
    }
    rc = 0;
    goto done;

fail:
    fprintf(stderr, "imgsim split: %s\n", err.msg[0] ? err.msg : imgsim_status_str(st));
done:
    free(classes);
    free(train_path);
    free(test_path);
    free(is_test);
    free(idx);
    ims_dataset_free(d);
    cli_free(&a);
    return rc;
}
