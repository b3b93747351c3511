/*
 * job.h: pieces shared by the search, run and demo commands: matching a query store against a
 * gallery store, writing results.tsv, and the accuracy report.
 */
#ifndef IMGSIM_CLI_JOB_H
#define IMGSIM_CLI_JOB_H

#include <cjson/cJSON.h>

#include "cli.h"

/* Refuses a query store whose model hash, layer or preprocessing differ from the gallery's
 * (imgsim_store_check_compatible): prints why and returns 1, else 0. */
int job_check_compatible(const imgsim_store *gallery, const imgsim_store *query);

/* Exact top-k of every query row against the gallery, by cosine (rows that are not unit length,
 * as in a --no-normalize store, are normalised first) or, with dot, by the raw inner product
 * (k is capped at the gallery's size); writes out_tsv (query_path, query_label,
 * rank, match_path, match_label, score) atomically and returns the metrics as JSON
 * (accuracies overall and per class where labels are known; counts; seconds). Returns 0 on
 * success, else prints the error and returns 1. */
int job_search(const imgsim_store *gallery, const imgsim_store *query, int k, int dot, const imgsim_search_opts *so,
               const char *out_tsv, cJSON **metrics);

/* The part of job_search that the other ranks of an MPI job run (rank 0 runs job_search): each
 * searches its share of the gallery's rows (cli_search_ranks). Returns 0 or 1 on every rank. */
int job_search_worker(const imgsim_store *gallery, const imgsim_search_opts *so);

/* Prints the accuracy part of metrics as a short table to stderr. */
void job_print_metrics(const cJSON *metrics);

/* Writes a cJSON value to path atomically (pretty-printed). Returns 0 or 1 (error printed). */
int job_write_json(const char *path, const cJSON *v);

/* Extracts images (folder, TSV list or file) into a temporary store with the gallery's model
 * and preprocessing (or model_override; preprocessing options given on the command line,
 * pre_given of them in xo, must be the gallery's: cli_preprocess_match); *tmp_dir receives the store folder (caller removes it
 * with job_remove_store). Returns 0 or 1. */
int job_extract_queries(const imgsim_store *gallery, const char *input, const char *model_override,
                        const imgsim_engine_opts *eo, const imgsim_extract_opts *xo, int pre_given,
                        char **tmp_dir);
void job_remove_store(const char *dir);

#endif
