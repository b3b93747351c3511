/*
 * fuzz_tsv.c: libFuzzer harness for the dataset list parser (src/data/dataset.c, ims_dataset_open
 * on a file): the "path<TAB>label" TSV list (byte-order mark, CRLF, blank lines, tabs, carriage
 * returns, absolute and relative paths), and what a file that is not a list falls back to (a
 * single image, sniffed by its first bytes). Entries are not opened, so no image files are needed.
 *
 * Input: the file, written to list.tsv in the harness's scratch folder.
 *
 * Invariants checked beyond "no crash, leak or sanitizer report":
 *   - failure is a real status (not IMGSIM_ERR_INTERNAL) with a message naming the list;
 *   - success gives items with a non-empty path and rel and a label, none holding a tab or a
 *     newline (they are written back into TSV files);
 *   - the list written back with ims_dataset_write_tsv (into a sub-folder, so paths are made
 *     relative to another folder) reads back as the same number of items with the same labels,
 *     and writing that again gives the same file: the round trip is a fixed point;
 *   - opened again with an allocation failing (fuzz_fail_from): IMGSIM_ERR_NOMEM with a
 *     message, or success past the last allocation, and no leak.
 */
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "fuzz.h"

static void check_items(const ims_dataset *d) {
    for (size_t i = 0; i < d->n; i++) {
        const ims_item *it = &d->items[i];
        FUZZ_CHECK(it->path && it->path[0] && it->rel && it->rel[0] && it->label, "item %zu is incomplete",
                   i);
        FUZZ_CHECK(!strpbrk(it->path, "\t\n") && !strpbrk(it->rel, "\t\n") && !strpbrk(it->label, "\t\n"),
                   "item %zu holds a tab or a newline", i);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    imgsim_set_log_level(IMGSIM_LOG_QUIET);
    const char *list = fuzz_path(0, "list.tsv");
    const char *sub = fuzz_path(1, "sub");
    const char *out1 = fuzz_path(2, "sub/out1.tsv"), *out2 = fuzz_path(3, "sub/out2.tsv");
    mkdir(sub, 0700);
    fuzz_write(list, data, size);
    ims_dataset *d = NULL;
    ims_err e;
    e.msg[0] = 0;
    imgsim_status st = ims_dataset_open(&d, list, &e);
    if (st != IMGSIM_OK) {
        FUZZ_CHECK(d == NULL, "a failed open returned a dataset");
        fuzz_check_error(st, e.msg, list);
        return 0;
    }
    FUZZ_CHECK(d != NULL, "no dataset");
    check_items(d);

    size_t *idx = malloc((d->n ? d->n : 1) * sizeof *idx);
    FUZZ_CHECK(idx != NULL, "out of memory");
    for (size_t i = 0; i < d->n; i++)
        idx[i] = i;
    st = ims_dataset_write_tsv(d, idx, d->n, out1, &e);
    FUZZ_CHECK(st == IMGSIM_OK, "writing back a list that was read: %s", e.msg);
    ims_dataset *d1 = NULL;
    st = ims_dataset_open(&d1, out1, &e);
    FUZZ_CHECK(st == IMGSIM_OK, "reading back a list written by ims_dataset_write_tsv: %s", e.msg);
    FUZZ_CHECK(d1->n == d->n, "%zu items read back as %zu", d->n, d1->n);
    check_items(d1);
    for (size_t i = 0; i < d->n; i++)
        FUZZ_CHECK(!strcmp(d->items[i].label, d1->items[i].label), "item %zu: label '%s' read back as '%s'",
                   i, d->items[i].label, d1->items[i].label);
    st = ims_dataset_write_tsv(d1, idx, d1->n, out2, &e);
    FUZZ_CHECK(st == IMGSIM_OK, "writing back a list read back: %s", e.msg);
    size_t n1 = 0, n2 = 0;
    uint8_t *b1 = fuzz_read(out1, &n1), *b2 = fuzz_read(out2, &n2);
    FUZZ_CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1),
               "the written list is not a fixed point of read + write");
    free(b1);
    free(b2);
    free(idx);
    ims_dataset_free(d1);
    ims_dataset_free(d);

    /* again with an allocation failing */
    fuzz_fail_from(data, size, 64);
    d = NULL;
    st = ims_dataset_open(&d, list, &e);
    fuzz_fail_off();
    fuzz_check_nomem(st, e.msg, list);
    ims_dataset_free(d);
    return 0;
}
