/* fileio.c: whole-file reads with limits, atomic writes (temporary name + rename), paths. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

int ims_open_regular(const char *path, struct stat *st_out, ims_err *e) {
    /* O_NONBLOCK: opening a FIFO with no writer would otherwise block for ever */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        ims_fail(e, IMGSIM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int er = errno;
        close(fd);
        ims_fail(e, IMGSIM_ERR_IO, "%s: cannot stat: %s", path, strerror(er));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        const char *what = S_ISDIR(st.st_mode)    ? "a folder"
                           : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                           : S_ISCHR(st.st_mode)  ? "a character device"
                           : S_ISBLK(st.st_mode)  ? "a block device"
                           : S_ISSOCK(st.st_mode) ? "a socket"
                                                  : "not a regular file";
        ims_fail(e, IMGSIM_ERR_IO, "%s: is %s, not a regular file: refused", path, what);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (st_out) *st_out = st;
    return fd;
}

imgsim_status ims_read_file(uint8_t **buf, size_t *len, const char *path, uint64_t max_bytes, ims_err *e) {
    *buf = NULL;
    *len = 0;
    struct stat st;
    int fd = ims_open_regular(path, &st, e);
    if (fd < 0) return IMGSIM_ERR_IO;
    uint64_t size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
    if (max_bytes && size > max_bytes) {
        close(fd);
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "%s: file is %llu bytes, over the limit of %llu", path,
                       (unsigned long long)size, (unsigned long long)max_bytes);
    }
    if (size > (uint64_t)SIZE_MAX - 1) {
        close(fd);
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "%s: file too large", path);
    }
    /* size 0 may be a procfs file: read until EOF with growth */
    size_t cap = size ? (size_t)size : 65536, n = 0;
    uint8_t *b = ims_malloc(cap + 1);
    if (!b) {
        close(fd);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory reading %llu bytes", path, (unsigned long long)size);
    }
    for (;;) {
        if (n == cap) {
            if (size) break; /* regular file: read exactly its size */
            if (max_bytes && cap >= max_bytes) break;
            uint8_t *nb = ims_realloc(b, cap * 2 + 1);
            if (!nb) {
                free(b);
                close(fd);
                return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int er = errno;
            free(b);
            close(fd);
            return ims_fail(e, IMGSIM_ERR_IO, "%s: read error: %s", path, strerror(er));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    b[n] = 0;
    *buf = b;
    *len = n;
    return IMGSIM_OK;
}

imgsim_status ims_read_head(uint8_t *buf, size_t n, size_t *got, const char *path, ims_err *e) {
    *got = 0;
    int fd = ims_open_regular(path, NULL, e);
    if (fd < 0) return IMGSIM_ERR_IO;
    size_t k = 0;
    while (k < n) {
        ssize_t r = read(fd, buf + k, n - k);
        if (r < 0) {
            if (errno == EINTR) continue;
            int er = errno;
            close(fd);
            return ims_fail(e, IMGSIM_ERR_IO, "%s: read error: %s", path, strerror(er));
        }
        if (r == 0) break;
        k += (size_t)r;
    }
    close(fd);
    *got = k;
    return IMGSIM_OK;
}

imgsim_status ims_atomic_open(ims_atomic_file *af, const char *path, ims_err *e) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->final_path = ims_strdup(path);
    af->tmp_path = ims_malloc(n);
    if (!af->final_path || !af->tmp_path) {
        free(af->final_path);
        free(af->tmp_path);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wbe");
    if (!af->f) {
        int er = errno;
        free(af->final_path);
        free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return ims_fail(e, IMGSIM_ERR_IO, "%s: cannot create: %s", path, strerror(er));
    }
    return IMGSIM_OK;
}

static void atomic_release(ims_atomic_file *af) {
    free(af->final_path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

/* fsync of the folder holding path (so that a rename into it survives a crash) */
static int fsync_parent(const char *path) {
    char *d = ims_strdup(path);
    if (!d) return -1;
    char *slash = strrchr(d, '/');
    if (slash) *(slash == d ? slash + 1 : slash) = 0;
    int fd = open(slash ? d : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(d);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

imgsim_status ims_atomic_commit(ims_atomic_file *af, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    int bad = ferror(af->f);
    if (fflush(af->f) != 0) bad = 1;
    if (!bad && af->durable && fsync(fileno(af->f)) != 0) bad = 1;
    int er = errno;
    if (fclose(af->f) != 0) bad = 1;
    af->f = NULL;
    if (bad) {
        st = ims_fail(e, IMGSIM_ERR_IO, "%s: write failed: %s", af->final_path, strerror(er));
        unlink(af->tmp_path);
    } else if (rename(af->tmp_path, af->final_path) != 0) {
        st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot rename into place: %s", af->final_path, strerror(errno));
        unlink(af->tmp_path);
    } else if (af->durable && fsync_parent(af->final_path) != 0) {
        st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot sync its folder: %s", af->final_path, strerror(errno));
    }
    atomic_release(af);
    return st;
}

void ims_atomic_abort(ims_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_release(af);
}

imgsim_status ims_write_file_atomic(const char *path, const void *data, size_t len, ims_err *e) {
    return ims_write_file_atomic_ex(path, data, len, 0, e);
}

imgsim_status ims_write_file_atomic_ex(const char *path, const void *data, size_t len, int durable, ims_err *e) {
    ims_atomic_file af;
    imgsim_status st = ims_atomic_open(&af, path, e);
    if (st) return st;
    af.durable = durable;
    if (len && fwrite(data, 1, len, af.f) != len) {
        int er = errno;
        ims_atomic_abort(&af);
        return ims_fail(e, IMGSIM_ERR_IO, "%s: write failed: %s", path, strerror(er));
    }
    return ims_atomic_commit(&af, e);
}

char *ims_next_line(char **p) {
    char *line = *p;
    if (!line || !*line) return NULL;
    char *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = line + strlen(line);
    }
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r') line[n - 1] = '\0';
    return line;
}

imgsim_status ims_mkdir_p(const char *path, ims_err *e) {
    char *p = ims_strdup(path);
    if (!p) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int er = errno;
                imgsim_status st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot create folder: %s", p, strerror(er));
                free(p);
                return st;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    free(p);
    if (!ims_is_dir(path)) return ims_fail(e, IMGSIM_ERR_IO, "%s: exists and is not a folder", path);
    return IMGSIM_OK;
}

int ims_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int ims_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *ims_path_join(const char *a, const char *b) {
    if (!b) return ims_strdup(a);
    if (b[0] == '/' || !a || !*a) return ims_strdup(b);
    size_t na = strlen(a), nb = strlen(b);
    while (na > 1 && a[na - 1] == '/') na--;
    char *r = ims_malloc(na + nb + 2);
    if (!r) return NULL;
    memcpy(r, a, na);
    r[na] = '/';
    memcpy(r + na + 1, b, nb + 1);
    return r;
}

char *ims_path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return ims_strdup(".");
    if (slash == path) return ims_strdup("/");
    size_t n = (size_t)(slash - path);
    char *r = ims_malloc(n + 1);
    if (!r) return NULL;
    memcpy(r, path, n);
    r[n] = '\0';
    return r;
}
