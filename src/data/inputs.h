/*
 * inputs.h: STORE/inputs.tsv, the state of each input file when its store was made: header
 * "path<TAB>size<TAB>mtime_ns", then one line per listed image (ok or failed), in listing order,
 * path as in the manifest (relative to the dataset root), size in bytes and modification time in
 * nanoseconds since the epoch, taken when the extraction began (-1 and 0: the file could not be
 * read). `imgsim extract --update` compares them with the files now. A store made with --hash
 * (imgsim_extract_opts.hash) has a fourth column, "sha256": the SHA-256 of the file's content,
 * or "-" where it is unknown (the file could not be read, or changed while the store was made).
 */
#ifndef IMGSIM_INPUTS_H
#define IMGSIM_INPUTS_H

#include <stdint.h>

#include "core/core.h"
#include "data/dataset.h"
#include "data/shards.h"

/* Size and modification time of every item of ds, now, into stamps[ds->n]. */
void ims_inputs_stamp(ims_stamp *stamps, const ims_dataset *ds);

/* Content hashes (for --hash): hex[i] is the SHA-256 of item i's file read now, or "" where it
 * cannot be read or its size or modification time are no longer stamps[i] (it changed since it
 * was stamped, so its row may be of either content: recorded as unknown, and the next update
 * extracts it again). Reads on up to `threads` threads (0: one per core). */
void ims_inputs_hash(char (*hex)[65], const ims_dataset *ds, const ims_stamp *stamps, int threads);

/* Writes inputs.tsv for ds's items with their stamps (and hashes, hex non-NULL) into f (opened by
 * the caller). */
imgsim_status ims_inputs_write(FILE *f, const ims_dataset *ds, const ims_stamp *stamps, const char (*hex)[65],
                               ims_err *e);

/* A read inputs.tsv: rel[i], stamps[i] for n lines, sorted by rel (for ims_inputs_find). */
typedef struct ims_inputs {
    char *text; /* the file, its lines cut in place */
    const char **rel;
    ims_stamp *stamps;
    const char **sha256; /* [n] the content hashes, "" where unknown; NULL: the file has none */
    int64_t n;
} ims_inputs;

/* Reads path; errors name it and the line. */
imgsim_status ims_inputs_read(ims_inputs *in, const char *path, ims_err *e);
void ims_inputs_free(ims_inputs *in);
/* The stamp recorded for rel, or NULL; *sha256 (when non-NULL) is set to its content hash, or
 * NULL when the file records none. */
const ims_stamp *ims_inputs_find(const ims_inputs *in, const char *rel, const char **sha256);

#endif /* IMGSIM_INPUTS_H */
