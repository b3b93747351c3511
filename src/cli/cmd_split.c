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
static long count_classes(class_count **out, const imgsim_dataset *d, size_t n_items, const uint8_t *is_test) {
    class_count *c = NULL;
    size_t n = 0, cap = 0;
    /* items of a folder are sorted by rel, hence grouped by label; a TSV list may interleave, so
     * look each label up (a linear scan over classes is fine: classes are few) */
    for (size_t i = 0; i < n_items; i++) {
        imgsim_dataset_item it;
        imgsim_dataset_get_item(d, i, &it);
        size_t k = 0;
        if (n && !strcmp(c[n - 1].label, it.label))
            k = n - 1;
        else
            for (k = 0; k < n && strcmp(c[k].label, it.label); k++) {
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
            c[n].label = it.label;
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
    int quiet = !cli_log_enabled(IMGSIM_LOG_INFO); /* -q/--quiet: no summary table */
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

    imgsim_dataset *d = NULL;
    imgsim_dataset_info di;
    uint8_t *is_test = NULL;
    size_t *idx = NULL;
    class_count *classes = NULL;
    char *train_path = NULL, *test_path = NULL;
    const char *why = NULL; /* a failure of the command's own (else the library's message) */
    rc = 1;
    if (imgsim_dataset_open(&d, input) || imgsim_dataset_get_info(d, &di)) goto fail;

    for (size_t i = 0; i < di.n_skipped; i++) {
        imgsim_dataset_skip sk;
        imgsim_dataset_get_skipped(d, i, &sk);
        fprintf(stderr, "imgsim split: skipped %s: %s\n", sk.path, sk.reason);
    }
    if (di.n == 0) {
        fprintf(stderr, "imgsim split: %s: no images found\n", input);
        goto done;
    }
    is_test = malloc(di.n);
    idx = malloc(di.n * sizeof *idx);
    train_path = cli_path_join(out_dir, "train.tsv");
    test_path = cli_path_join(out_dir, "test.tsv");
    if (!is_test || !idx || !train_path || !test_path) {
        why = "out of memory";
        goto fail;
    }
    if (imgsim_dataset_split(is_test, d, test_size, seed)) goto fail;
    if (cli_mkdir_p("split", out_dir)) goto done;
    size_t n_train = 0, n_test = 0;
    for (size_t i = 0; i < di.n; i++)
        if (!is_test[i]) idx[n_train++] = i;
    if (imgsim_dataset_write_tsv(d, idx, n_train, train_path)) goto fail;
    for (size_t i = 0; i < di.n; i++)
        if (is_test[i]) idx[n_test++] = i;
    if (imgsim_dataset_write_tsv(d, idx, n_test, test_path)) goto fail;

    long nc = count_classes(&classes, d, di.n, is_test);
    if (nc < 0) {
        why = "out of memory";
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
        fprintf(stderr, "%-*s %8zu %8zu %8zu\n", w, "all", di.n, n_train, n_test);
        fprintf(stderr, "imgsim split: %ld classes, %zu images (%zu skipped): wrote %s and %s\n", nc, di.n,
                di.n_skipped, train_path, test_path);
    }
    rc = 0;
    goto done;

fail:
    fprintf(stderr, "imgsim split: %s\n", why ? why : imgsim_last_error());
done:
    free(classes);
    free(train_path);
    free(test_path);
    free(is_test);
    free(idx);
    imgsim_dataset_destroy(d);
    cli_free(&a);
    return rc;
}
