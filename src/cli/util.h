/*
 * util.h: the command-line tool's own small helpers (time, paths, files written atomically,
 * allocation with overflow checks, the log level the options chose). The CLI is built on
 * imgsim.h alone; these are what it needs beyond the library.
 */
#ifndef IMGSIM_CLI_UTIL_H
#define IMGSIM_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "imgsim.h"

double cli_now(void);          /* monotonic seconds */
int cli_num_cores(void);       /* online CPUs (>= 1) */
double cli_peak_rss_mb(void);  /* peak resident set of this process, MiB */

/* malloc of count * size bytes (at least 1), NULL on overflow or failure. */
void *cli_malloc_array(size_t count, size_t size);
char *cli_strdup(const char *s);

/* a and b joined with '/' (b absolute: a copy of b), malloc'ed; NULL when out of memory. */
char *cli_path_join(const char *a, const char *b);
int cli_path_exists(const char *path);
int cli_is_dir(const char *path);
/* Helpers that fail print their message as "imgsim CMD: ..." ("imgsim: ..." with cmd NULL). */

/* mkdir -p; 0, or -1 with a message naming the folder. */
int cli_mkdir_p(const char *cmd, const char *path);

/* Output written under "<path>.tmp.<pid>" and renamed onto path by cli_atomic_commit (a killed
 * process never leaves a partial file under the final name); cli_atomic_abort removes it. open
 * and commit return 0, or -1 with a message printed as "imgsim CMD: path: reason". */
typedef struct cli_atomic {
    FILE *f;
    char *path, *tmp;
} cli_atomic;
int cli_atomic_open(cli_atomic *af, const char *cmd, const char *path);
int cli_atomic_commit(cli_atomic *af, const char *cmd);
void cli_atomic_abort(cli_atomic *af);
/* A whole buffer, atomically. */
int cli_write_file(const char *cmd, const char *path, const void *data, size_t len);

/* cJSON_Print (pretty) or cJSON_PrintUnformatted of v, names that are not UTF-8 escaped as
 * imgsim_json_escape_bytes does; malloc'ed (free()), NULL when out of memory. */
struct cJSON;
char *cli_json_print(const struct cJSON *v, int pretty);

/* The log level -q/-v chose (cli_log_opts; INFO until then): 1 when messages at lvl show. */
int cli_log_enabled(imgsim_log_level lvl);
void cli_set_log_level(imgsim_log_level lvl);

#endif
