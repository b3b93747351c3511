/* util.c: the command-line tool's own helpers (util.h). */
#define _GNU_SOURCE
#include "cli/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* "imgsim CMD: " or, without a command, "imgsim: " */
static void say(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "imgsim%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cli_num_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double cli_peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

void *cli_malloc_array(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    size_t n = count * size;
    return malloc(n ? n : 1);
}

char *cli_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

char *cli_path_join(const char *a, const char *b) {
    if (b[0] == '/' || !a[0]) return cli_strdup(b);
    size_t la = strlen(a), lb = strlen(b);
    int slash = a[la - 1] != '/';
    char *p = malloc(la + slash + lb + 1);
    if (!p) return NULL;
    memcpy(p, a, la);
    if (slash) p[la] = '/';
    memcpy(p + la + slash, b, lb + 1);
    return p;
}

int cli_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int cli_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int cli_mkdir_p(const char *cmd, const char *path) {
    char *p = cli_strdup(path);
    if (!p) {
        say(cmd, "out of memory\n");
        return -1;
    }
    int rc = 0;
    for (char *s = p + 1;; s++) {
        int end = *s == '\0';
        if (*s == '/' || end) {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                say(cmd, "%s: cannot create folder: %s\n", p, strerror(errno));
                rc = -1;
                break;
            }
            *s = c;
        }
        if (end) break;
    }
    if (!rc && !cli_is_dir(path)) {
        say(cmd, "%s: exists and is not a folder\n", path);
        rc = -1;
    }
    free(p);
    return rc;
}

int cli_atomic_open(cli_atomic *af, const char *cmd, const char *path) {
    memset(af, 0, sizeof *af);
    af->path = cli_strdup(path);
    af->tmp = malloc(strlen(path) + 32);
    if (!af->path || !af->tmp) {
        free(af->path), free(af->tmp);
        say(cmd, "%s: out of memory\n", path);
        return -1;
    }
    sprintf(af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        say(cmd, "%s: cannot create: %s\n", path, strerror(errno));
        free(af->path), free(af->tmp);
        af->path = af->tmp = NULL;
        return -1;
    }
    return 0;
}

int cli_atomic_commit(cli_atomic *af, const char *cmd) {
    int bad = ferror(af->f) || fflush(af->f) != 0;
    int er = errno;
    if (fclose(af->f) != 0) bad = 1;
    af->f = NULL;
    int rc = 0;
    if (bad) {
        say(cmd, "%s: write failed: %s\n", af->path, strerror(er));
        rc = -1;
    } else if (rename(af->tmp, af->path) != 0) {
        say(cmd, "%s: cannot rename into place: %s\n", af->path, strerror(errno));
        rc = -1;
    }
    if (rc) unlink(af->tmp);
    free(af->path), free(af->tmp);
    af->path = af->tmp = NULL;
    return rc;
}

void cli_atomic_abort(cli_atomic *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->path), free(af->tmp);
    memset(af, 0, sizeof *af);
}

int cli_write_file(const char *cmd, const char *path, const void *data, size_t len) {
    cli_atomic af;
    if (cli_atomic_open(&af, cmd, path)) return -1;
    if (len && fwrite(data, 1, len, af.f) != len) {
        say(cmd, "%s: write failed: %s\n", path, strerror(errno));
        cli_atomic_abort(&af);
        return -1;
    }
    return cli_atomic_commit(&af, cmd);
}

static imgsim_log_level g_level = IMGSIM_LOG_INFO;

void cli_set_log_level(imgsim_log_level lvl) {
    g_level = lvl;
    imgsim_set_log_level(lvl);
}

int cli_log_enabled(imgsim_log_level lvl) {
    return lvl <= g_level;
}

char *cli_json_print(const cJSON *v, int pretty) {
    char *txt = pretty ? cJSON_Print(v) : cJSON_PrintUnformatted(v);
    if (!txt) return NULL;
    char *esc = imgsim_json_escape_bytes(txt);
    cJSON_free(txt);
    char *out = esc ? cli_strdup(esc) : NULL; /* the caller free()s it */
    imgsim_free(esc);
    return out;
}
