/*
 * report.h: the HTML report of a job (cmd_report.c): one self-contained report.html (inline CSS
 * and SVG, no network resources, no script) plus report-N.html pages of further rows and a
 * thumbs/ folder of small JPEGs made by imgsim's decoder and TurboJPEG.
 *   run job:  summary.json, results.tsv, gallery/ and queries/ manifests of DIR
 *   search:   results.tsv with its .metrics.json (and the stores, for failures)
 *   dedup:    the pairs JSON, grouped into near-duplicate groups
 */
#ifndef IMGSIM_CLI_REPORT_H
#define IMGSIM_CLI_REPORT_H

typedef struct report_opts {
    const char *out_dir; /* where report.html, report-N.html and thumbs/ go */
    int page_size;       /* query rows (or dedup groups) per page; default 50 */
    int thumb_size;      /* longest thumbnail side in pixels; default 128 */
    int workers;         /* thumbnail threads; 0 = all cores */
    double threshold;    /* dedup: the threshold used (NaN when unknown) */
} report_opts;

void report_opts_init(report_opts *o);

/* The report of an `imgsim run` job folder. Returns 0, or 1 after printing the error. */
int report_run(const char *job_dir, const report_opts *o);
/* The report of `imgsim search` results: results_tsv, its metrics JSON (NULL: derived from the
 * name; absent is allowed), and optionally the gallery and query store folders for failures. */
int report_search(const char *results_tsv, const char *metrics_json, const char *gallery_dir,
                  const char *query_dir, const report_opts *o);
/* The report of `imgsim dedup` pairs (the JSON it writes); store_dir (may be NULL) for counts
 * and failures. */
int report_dedup(const char *pairs_json, const char *store_dir, const report_opts *o);

#endif
