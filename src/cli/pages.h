/*
 * pages.h: what the HTML report (cmd_report.c) and the query service (cmd_serve.c) share:
 * thumbnails (imgsim's decoder through imgsim.h, encoded by TurboJPEG), a growing text buffer,
 * HTML/JSON escaping, the page templates embedded at build time (src/cli/report/, see
 * cmake/embed.cmake), and a read-only view of a gallery store.
 */
#ifndef IMGSIM_CLI_PAGES_H
#define IMGSIM_CLI_PAGES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "imgsim.h"

/* The embedded templates (NUL-terminated; _len excludes the NUL). */
extern const unsigned char cli_asset_serve_html[], cli_asset_report_css[];
extern const size_t cli_asset_serve_html_len, cli_asset_report_css_len;

/* A growing NUL-terminated byte buffer; on allocation failure it sets oom and stops growing. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

void sb_put(sbuf *b, const void *data, size_t n);
void sb_puts(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void sb_html(sbuf *b, const char *s); /* s escaped for HTML text and quoted attributes */
void sb_url(sbuf *b, const char *s);  /* s percent-encoded for a URL query value */
void sb_json_str(sbuf *b, const char *s); /* s as a JSON string literal, quotes included */
void sb_free(sbuf *b);

/* Encodes RGB8 (w x h x 3) as a baseline JPEG (TurboJPEG); *jpg is malloc'ed (free()).
 * Returns 0, or -1 with a reason in err. */
int pages_jpeg_encode(unsigned char **jpg, size_t *len, const uint8_t *rgb, int w, int h, int quality, char *err,
                      size_t errlen);
/* A thumbnail of the image file at path: decoded, EXIF-rotated and shrunk to fit max_side x
 * max_side by imgsim (imgsim_image_load_rgb with pre's max_pixels), then JPEG-encoded.
 * Returns 0, or -1 with the reason in err. */
int pages_thumbnail(unsigned char **jpg, size_t *len, const char *path, int max_side, const imgsim_preprocess_opts *pre,
                    char *err, size_t errlen);

/* A gallery store as the pages read it: rows, float32 features, paths and labels, and what
 * meta.json says about how it was made. */
typedef struct gview {
    char *dir;
    int64_t n;
    int dim;
    float *features;   /* [n, dim] float32, rows of unit length (cosine, as imgsim search) */
    char **paths;      /* [n] as in manifest.tsv */
    char **labels;     /* [n], "" when unlabelled */
    char *model_path;  /* the model file meta.json names ("" when none) */
    char *layer;       /* "" when none */
    char *root;        /* pages_store_root, or NULL */
    char model_sha256[65];
    imgsim_preprocess_opts pre; /* the store's preprocessing */
} gview;

/* The folder a store's relative manifest paths are relative to: the dataset root its meta.json
 * "input" names (that folder, or the folder of a list or single file), as given when the store was
 * made (so relative to the working folder of that time). malloc'ed; NULL when unknown. */
char *pages_store_root(const char *store_dir);
/* The file to open for a manifest path: path itself when absolute or when root is NULL or
 * root/path does not exist, else root/path. malloc'ed (NULL when out of memory). */
char *pages_resolve(const char *root, const char *path);

/* Opens the store folder dir. Returns 0, or -1 with the reason (naming the file) in err. */
int gview_open(gview *g, const char *dir, char *err, size_t errlen);
void gview_free(gview *g);

/* One failed line of a store's manifest.tsv (row -1): path and reason. */
typedef struct gfail {
    char *path, *reason;
} gfail;
/* Reads the failed entries of dir/manifest.tsv into *out (malloc'ed, n in *n). A missing
 * manifest gives none. Returns 0, or -1 when out of memory. */
int gview_failures(gfail **out, size_t *n, const char *dir);
void gview_failures_free(gfail *f, size_t n);

/* 64-bit FNV-1a of s as 16 hex digits (+ NUL): stable names for thumbnail files. */
void pages_hash_name(char out[17], const char *s);

#endif
