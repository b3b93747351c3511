/*
 * lock.c: one writer per output folder (core.h: ims_dir_lock). Two `imgsim extract` (or `run`)
 * into the same --out used to both succeed and could leave one's features under the other's
 * manifest; now the second fails at once, naming the first. flock(2) locks go with the open file:
 * a killed holder releases its lock, so a stale lock file never blocks anyone; the pid written in
 * it is only for the message. Holding the lock also means every "NAME.tmp.PID" file in the folder
 * is a leftover of a killed writer: they are removed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/core.h"

struct ims_dir_lock {
    int fd;
};

/* 1 when name ends in ".tmp.<digits>" (ims_atomic_open's temporary names). */
static int is_tmp_name(const char *name) {
    const char *t = strstr(name, ".tmp.");
    while (t) {
        const char *d = t + 5;
        if (*d) {
            while (*d >= '0' && *d <= '9') d++;
            if (!*d) return 1;
        }
        t = strstr(t + 1, ".tmp.");
    }
    return 0;
}

void ims_remove_tmp_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_tmp_name(de->d_name)) continue;
        char *p = ims_path_join(dir, de->d_name);
        struct stat st;
        if (p && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            if (unlink(p) == 0) ims_log_info("%s: removed, left by a writer that did not finish", p);
        }
        free(p);
    }
    closedir(d);
}

imgsim_status ims_dir_lock_take(ims_dir_lock **out, const char *dir, ims_err *e) {
    *out = NULL;
    imgsim_status st = ims_mkdir_p(dir, e);
    if (st) return st;
    char *path = ims_path_join(dir, IMS_DIR_LOCK_NAME);
    ims_dir_lock *l = ims_calloc(1, sizeof *l);
    if (!path || !l) {
        free(path);
        free(l);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", dir);
    }
    l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (l->fd < 0) {
        st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot create the lock file: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
        int er = errno;
        if (er != EWOULDBLOCK) {
            st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot lock: %s", path, strerror(er));
            goto fail;
        }
        char buf[32] = {0};
        ssize_t n = pread(l->fd, buf, sizeof buf - 1, 0);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (pid > 0)
            st = ims_fail(e, IMGSIM_ERR_IO,
                         "%s: another process (pid %ld) is writing to this folder; wait for it to finish or "
                         "choose another output",
                         dir, pid);
        else
            st = ims_fail(e, IMGSIM_ERR_IO,
                         "%s: another process is writing to this folder; wait for it to finish or choose "
                         "another output",
                         dir);
        goto fail;
    }
    char pid[32];
    int np = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(l->fd, 0) != 0 || pwrite(l->fd, pid, (size_t)np, 0) != np)
        ims_log_debug("%s: cannot record the pid: %s", path, strerror(errno));
    ims_remove_tmp_leftovers(dir);
    free(path);
    *out = l;
    return IMGSIM_OK;
fail:
    if (l->fd >= 0) close(l->fd);
    free(l);
    free(path);
    return st;
}

void ims_dir_lock_release(ims_dir_lock *l) {
    if (!l) return;
    if (ftruncate(l->fd, 0) != 0) /* the pid no longer applies */
        ims_log_debug("cannot clear a lock file: %s", strerror(errno));
    close(l->fd); /* releases the flock */
    free(l);
}
