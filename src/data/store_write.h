/*
 * store_write.h: writing a store's final files in either layout (imgsim_store_layout):
 *   single   features.npy + manifest.tsv
 *   sharded  features-00000.npy + manifest-00000.tsv, features-00001.npy + ..., one pair per shard
 *            (5 digits, more past 99999), each manifest with manifest.tsv's header and columns and
 *            its rows numbered in the whole store (the rows of the shards' features one after the
 *            other), so the manifests end to end less their headers are manifest.tsv's lines.
 * Every file is written under a temporary name and renamed when complete; the caller writes
 * meta.json after ims_store_writer_commit (it lists the files, data/meta.c), so a reader never
 * sees a mix: a store is complete when meta.json is there, and the caller removes meta.json first.
 */
#ifndef IMGSIM_STORE_WRITE_H
#define IMGSIM_STORE_WRITE_H

#include <stdio.h>

#include "core/core.h"
#include "data/meta.h"

typedef struct ims_store_writer {
    char *dir;
    int sharded;
    imgsim_dtype dtype;
    int dim;
    int durable;
    int64_t rows;            /* feature rows written so far (all shards) */
    int64_t k;               /* the shard being written, -1 none */
    ims_npy_writer npy;      /* its features (the single layout: features.npy) */
    ims_atomic_file man;     /* its manifest */
    int adopted;             /* its features are a complete file renamed into place (next_adopt) */
    int64_t adopted_rows;    /* its rows, and its data's checksum64 (hex) */
    char adopted_ck[17];
    int64_t first_row;       /* its first row */
    uint64_t man_bytes;      /* its manifest's bytes, and checksum64 so far */
    ims_ck64 man_ck;
    ims_store_files files;   /* what meta.json records (the shards committed) */
    int64_t cap;             /* of files.shards */
} ims_store_writer;

/* The file name of shard k's features ("features", "npy") or manifest ("manifest", "tsv") into buf. */
void ims_store_shard_name(char *buf, size_t n, const char *base, int64_t k, const char *ext);

/* Begins the store's files in dir (no file is created until the first shard). */
imgsim_status ims_store_writer_begin(ims_store_writer *w, const char *dir, int sharded, imgsim_dtype dtype, int dim,
                                     int durable, ims_err *e);
/* Starts the next shard (the one before it committed). The single layout has one: the first call
 * opens features.npy and manifest.tsv, later calls do nothing. */
imgsim_status ims_store_writer_next(ims_store_writer *w, ims_err *e);
/* The sharded layout's next shard with features already complete: the npy file src (rows rows of
 * the writer's dtype and dim, its data's checksum64 ck_hex, as ims_npy_writer writes it) is renamed
 * to the shard's features file (same file system: no copy); its manifest is written as by
 * ims_store_writer_next. (A durable writer's manifest commit fsyncs the folder, which holds both
 * renames.) */
imgsim_status ims_store_writer_next_adopt(ims_store_writer *w, const char *src, int64_t rows, const char *ck_hex,
                                          ims_err *e);
/* Appends n feature rows already in the writer's dtype to the current shard. */
imgsim_status ims_store_writer_rows(ims_store_writer *w, const void *rows, int64_t n, ims_err *e);
/* Appends one manifest line (without its newline) to the current shard's manifest (opening the
 * first shard when none is). */
imgsim_status ims_store_writer_line(ims_store_writer *w, const char *line, size_t len, ims_err *e);
/* The same, formatted (printf's rules; the newline added). */
imgsim_status ims_store_writer_linef(ims_store_writer *w, ims_err *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Commits the last shard (opening one first when there was none), removes the files of the
 * other layout and the shards past the last one (the leftovers of an earlier store in dir), and
 * fills files for meta.json. */
imgsim_status ims_store_writer_commit(ims_store_writer *w, ims_store_files *files, ims_err *e);
/* Removes what was not committed and frees w (after commit too: frees only). */
void ims_store_writer_end(ims_store_writer *w);

/* Removes dir's store files of both layouts (features.npy, manifest.tsv, features-K.npy,
 * manifest-K.tsv); keep_shards >= 0: the shards below it stay. */
void ims_store_remove_layout_files(const char *dir, int keep_single, int64_t keep_shards);

#endif /* IMGSIM_STORE_WRITE_H */
