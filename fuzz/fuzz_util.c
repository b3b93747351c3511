/* fuzz_util.c: the scratch folder and file helpers of fuzz.h. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "fuzz.h"

static char g_dir[512];

static void remove_dir(void) {
    if (!g_dir[0]) return;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *de;
        char p[1024];
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
            if (unlink(p) != 0) { /* a sub-folder (the TSV harness writes one): one level */
                DIR *s = opendir(p);
                if (s) {
                    struct dirent *se;
                    char q[1536];
                    while ((se = readdir(s)))
                        if (strcmp(se->d_name, ".") && strcmp(se->d_name, "..")) {
                            snprintf(q, sizeof q, "%s/%s", p, se->d_name);
                            unlink(q);
                        }
                    closedir(s);
                }
                rmdir(p);
            }
        }
        closedir(d);
    }
    rmdir(g_dir);
}

const char *fuzz_dir(void) {
    if (g_dir[0]) return g_dir;
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/imgsim-fuzz-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(remove_dir);
    return g_dir;
}

const char *fuzz_path(int slot, const char *name) {
    static char paths[4][1024];
    snprintf(paths[slot & 3], sizeof paths[0], "%s/%s", fuzz_dir(), name);
    return paths[slot & 3];
}

void fuzz_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

uint8_t *fuzz_read(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    *size = n;
    return buf;
}

void fuzz_check_error(imgsim_status st, const char *msg, const char *name) {
    FUZZ_CHECK(st != IMGSIM_ERR_INTERNAL, "internal error: %s", msg);
    FUZZ_CHECK(st > IMGSIM_OK && strcmp(imgsim_status_str(st), "unknown status") != 0,
               "status %d is not an imgsim_status", (int)st);
    FUZZ_CHECK(st != IMGSIM_ERR_CANCELLED, "cancelled without a progress callback: %s", msg);
    FUZZ_CHECK(msg && msg[0], "status %d (%s) without a message", (int)st, imgsim_status_str(st));
    FUZZ_CHECK(strstr(msg, name) != NULL, "the message does not name the file '%s': %s", name, msg);
}

void fuzz_fail_from(const uint8_t *data, size_t size, unsigned bound) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    ims_alloc_fail_after((long)(h % (bound ? bound : 1)));
}

void fuzz_fail_off(void) {
    ims_alloc_fail_after(-1);
}

void fuzz_check_nomem(imgsim_status st, const char *msg, const char *name) {
    if (st == IMGSIM_OK) return;
    FUZZ_CHECK(st == IMGSIM_ERR_NOMEM, "an allocation failure gave status %d (%s): %s", (int)st,
               imgsim_status_str(st), msg);
    FUZZ_CHECK(msg && msg[0], "out of memory without a message");
    (void)name; /* an allocation failure may name the item being worked on rather than the input */
}
