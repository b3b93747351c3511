/*
 * preprocess.c: file or memory -> normalised CHW float tensor (decode, EXIF orientation,
 * PIL-exact antialiased resize and centre crop, ToTensor + Normalize). Uses the calling thread's
 * workspace (image_priv.h), so after the first few images nothing on this path allocates:
 * the file buffer, the decoded pixels and the resize scratch are all reused.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image_priv.h"

#define WS_KEEP_BYTES ((size_t)64 << 20) /* buffers larger than this are freed after use */
#define MAX_FILE_BYTES ((uint64_t)1 << 31) /* image files over 2 GiB are refused */

/* Decodes buf with o's options and target size, and preprocesses into out using ws. */
static imgsim_status run(float *out, const uint8_t *buf, size_t len, const imgsim_preprocess_opts *o,
                         const char *name, ims_img_ws *ws, ims_err *e) {
    imgsim_status st = ims_preprocess_check(o, e);
    if (st != IMGSIM_OK) return ims_fail_prefix(e, st, name);
    int s, rh, rw;
    ims_pre_resize_of(o, &s, &rh, &rw);
    ims_decode_opts d;
    memset(&d, 0, sizeof d);
    d.max_pixels = o->max_pixels;
    d.exif_rotate = o->exif_rotate;
    d.dct_scaling = o->dct_scaling;
    d.target_w = s ? s : rw; /* the resized image (shorter:S: its shorter side S bounds the scale) */
    d.target_h = s ? s : rh;
    ims_image img;
    st = ims_image_decode_ws(&img, buf, len, &d, name, ws, e);
    if (st != IMGSIM_OK) return st;
    ims_pre_geom g;
    if ((st = ims_pre_geometry(&g, o, img.w, img.h, e)) != IMGSIM_OK) return ims_fail_prefix(e, st, name);
    size_t ss = ims_preprocess_scratch_size_geom(img.w, img.h, &g);
    void *scratch = (ss && ss != SIZE_MAX) ? ims_wsbuf_get(&ws->rs, ss) : NULL;
    if (!scratch) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory for resize scratch", name);
    st = ims_preprocess_rgb_geom(out, &img, &g, o->mean, o->std, scratch, e);
    if (st != IMGSIM_OK) ims_fail_prefix(e, st, name);
    return st;
}

imgsim_status ims_preprocess_mem(float *out, const uint8_t *buf, size_t len, const imgsim_preprocess_opts *o,
                                const char *name, ims_err *e) {
    if (!name) name = "<memory>";
    ims_img_ws *ws = ims_img_ws_thread();
    if (ws) {
        imgsim_status st = run(out, buf, len, o, name, ws, e);
        ims_img_ws_trim(ws, WS_KEEP_BYTES);
        return st;
    }
    ims_img_ws local;
    memset(&local, 0, sizeof local);
    imgsim_status st = run(out, buf, len, o, name, &local, e);
    ims_img_ws_release(&local);
    return st;
}

/* Reads the whole file at path into ws->file. */
static imgsim_status read_into(ims_wsbuf *b, size_t *len, const char *path, ims_err *e) {
    struct stat sb;
    int fd = ims_open_regular(path, &sb, e); /* a FIFO is refused, not waited on */
    if (fd < 0) return IMGSIM_ERR_IO;
    if ((uint64_t)sb.st_size > MAX_FILE_BYTES) {
        close(fd);
        return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "%s: file of %lld bytes is too large for an image", path, (long long)sb.st_size);
    }
    size_t want = (size_t)sb.st_size;
    uint8_t *p = ims_wsbuf_get(b, want + 1);
    if (!p) {
        close(fd);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, want);
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = read(fd, p + got, want - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int err = errno;
            close(fd);
            return ims_fail(e, IMGSIM_ERR_IO, "%s: read error: %s", path, strerror(err));
        }
        if (r == 0) break; /* file shrank while reading: decode what is there */
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return IMGSIM_OK;
}

imgsim_status ims_preprocess_file(float *out, const char *path, const imgsim_preprocess_opts *o, ims_err *e) {
    ims_img_ws *ws = ims_img_ws_thread();
    ims_img_ws local;
    memset(&local, 0, sizeof local);
    ims_img_ws *w = ws ? ws : &local;
    size_t len = 0;
    imgsim_status st = read_into(&w->file, &len, path, e);
    if (st == IMGSIM_OK) st = run(out, w->file.p, len, o, path, w, e);
    if (ws) ims_img_ws_trim(ws, WS_KEEP_BYTES);
    else ims_img_ws_release(&local);
    return st;
}
