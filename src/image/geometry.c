/*
 * geometry.c: what the resize and the centre crop of imgsim_preprocess_opts do to one image, as
 * torchvision computes it, and the options' text form (imgsim_preprocess_opts_set).
 *
 *   Resize((h, w))  the image becomes w x h.
 *   Resize(S)       the shorter side becomes S, the longer int(S * long / short) (Python's true
 *                   division of the exact product, then truncation: the same in double here, the
 *                   product being exact below 2^53).
 *   CenterCrop      top = int(round((H - h) / 2.0)), left likewise: Python's round, half to even.
 * A crop larger than the resized image (which torchvision pads with zeros) is refused.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"

#define MAX_SIDE 16384 /* the largest size an option may give */

/* round(d / 2.0) with ties to even, for d >= 0 */
static int half_even(int d) {
    int k = d / 2;
    return (d % 2 == 0 || k % 2 == 0) ? k : k + 1;
}

const char *ims_interp_name(int interp) {
    return interp == IMGSIM_INTERP_BICUBIC ? "bicubic" : "bilinear";
}

void ims_pre_resize_of(const imgsim_preprocess_opts *o, int *shorter, int *rh, int *rw) {
    *shorter = o->resize_shorter > 0 ? o->resize_shorter : 0;
    *rh = *shorter ? 0 : o->resize_height > 0 ? o->resize_height : o->height;
    *rw = *shorter ? 0 : o->resize_width > 0 ? o->resize_width : o->width;
}

int ims_pre_is_plain(const imgsim_preprocess_opts *o) {
    int s, rh, rw;
    ims_pre_resize_of(o, &s, &rh, &rw);
    return !s && rh == o->height && rw == o->width && o->interp == IMGSIM_INTERP_BILINEAR;
}

imgsim_status ims_preprocess_check(const imgsim_preprocess_opts *o, ims_err *e) {
    if (!o) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocessing: no options");
    if (o->height <= 0 || o->width <= 0 || o->height > MAX_SIDE || o->width > MAX_SIDE)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocessing: bad target size %dx%d (1..%d)", o->height, o->width,
                        MAX_SIDE);
    if (o->interp != IMGSIM_INTERP_BILINEAR && o->interp != IMGSIM_INTERP_BICUBIC)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocessing: unknown interpolation %d", (int)o->interp);
    if (o->resize_shorter < 0 || o->resize_shorter > MAX_SIDE || o->resize_height < 0 || o->resize_width < 0 ||
        o->resize_height > MAX_SIDE || o->resize_width > MAX_SIDE || (!o->resize_height != !o->resize_width))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocessing: bad resize %dx%d / shorter:%d (1..%d)",
                        o->resize_height, o->resize_width, o->resize_shorter, MAX_SIDE);
    if (o->resize_shorter > 0 && o->resize_height > 0)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocessing: resize to %dx%d and to shorter:%d at once",
                        o->resize_height, o->resize_width, o->resize_shorter);
    int s, rh, rw;
    ims_pre_resize_of(o, &s, &rh, &rw);
    if (s && (o->height > s || o->width > s))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                        "preprocessing: crop %dx%d is larger than the resized image's shorter side %d (resize shorter:%d)",
                        o->height, o->width, s, s);
    if (!s && (o->height > rh || o->width > rw))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocessing: crop %dx%d is larger than the resized image %dx%d",
                        o->height, o->width, rh, rw);
    for (int c = 0; c < 3; c++) {
        if (!isfinite(o->mean[c]) || !isfinite(o->std[c]))
            return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocessing: mean/std[%d] is not a finite number", c);
        if (!(o->std[c] > 0.0f))
            return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocessing: std[%d] is %g: expected > 0", c, (double)o->std[c]);
    }
    return IMGSIM_OK;
}

imgsim_status ims_pre_geometry(ims_pre_geom *g, const imgsim_preprocess_opts *o, int iw, int ih, ims_err *e) {
    imgsim_status st = ims_preprocess_check(o, e);
    if (st) return st;
    if (iw <= 0 || ih <= 0) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "preprocessing: image of %dx%d pixels", iw, ih);
    int s, rh, rw;
    ims_pre_resize_of(o, &s, &rh, &rw);
    if (s) {
        int shorter = iw <= ih ? iw : ih, longer = iw <= ih ? ih : iw;
        double l = (double)((int64_t)s * longer) / shorter;
        if (l > (double)(INT_MAX / 8))
            return ims_fail(e, IMGSIM_ERR_TOO_LARGE, "preprocessing: %dx%d resized to shorter:%d is too large", iw, ih,
                            s);
        int nl = (int)l;
        rw = iw <= ih ? s : nl;
        rh = iw <= ih ? nl : s;
    }
    g->rw = rw;
    g->rh = rh;
    g->ow = o->width;
    g->oh = o->height;
    g->x0 = half_even(rw - o->width);
    g->y0 = half_even(rh - o->height);
    g->interp = o->interp;
    return IMGSIM_OK;
}

/* ---- the public calls ---- */

imgsim_status imgsim_preprocess_opts_check(const imgsim_preprocess_opts *opt) {
    return ims_preprocess_check(opt, NULL);
}

void imgsim_preprocess_opts_describe(char *buf, size_t size, const imgsim_preprocess_opts *o) {
    if (!buf || !size) return;
    if (!o) {
        buf[0] = 0;
        return;
    }
    int s, rh, rw;
    ims_pre_resize_of(o, &s, &rh, &rw);
    char rs[32];
    if (s) snprintf(rs, sizeof rs, "shorter:%d", s);
    else snprintf(rs, sizeof rs, "%dx%d", rh, rw);
    if (ims_pre_is_plain(o) || (!s && rh == o->height && rw == o->width))
        snprintf(buf, size, "resize %s %s", rs, ims_interp_name(o->interp));
    else
        snprintf(buf, size, "resize %s %s, crop %dx%d", rs, ims_interp_name(o->interp), o->height, o->width);
}

/* "HxW" (or "N" when square_ok) with both in 1..MAX_SIDE: 0, else -1. */
static int parse_hw(const char *v, int square_ok, int *h, int *w) {
    char *end;
    long a = strtol(v, &end, 10), b;
    if (end == v || a < 1 || a > MAX_SIDE) return -1;
    if (*end == 0) {
        if (!square_ok) return -1;
        b = a;
    } else {
        if (*end != 'x' && *end != 'X') return -1;
        const char *p = end + 1;
        b = strtol(p, &end, 10);
        if (end == p || *end || b < 1 || b > MAX_SIDE) return -1;
    }
    *h = (int)a;
    *w = (int)b;
    return 0;
}

/* "a,b,c": three finite floats into v: 0, else -1. */
static int parse3(const char *s, float v[3]) {
    const char *p = s;
    for (int c = 0; c < 3; c++) {
        char *end;
        while (*p == ' ') p++;
        double d = strtod(p, &end);
        if (end == p || !isfinite(d) || fabs(d) > 1e30) return -1;
        v[c] = (float)d;
        p = end;
        while (*p == ' ') p++;
        if (c < 2) {
            if (*p != ',') return -1;
            p++;
        }
    }
    return *p ? -1 : 0;
}

imgsim_status imgsim_preprocess_opts_set(imgsim_preprocess_opts *opt, const char *name, const char *value) {
    if (!opt || !name || !value)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_preprocess_opts_set: NULL argument");
    if (!strcmp(name, "resize")) {
        int h, w;
        if (!strncmp(value, "shorter:", 8)) {
            char *end;
            long s = strtol(value + 8, &end, 10);
            if (end == value + 8 || *end || s < 1 || s > MAX_SIDE)
                return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "resize=%s: expected shorter:S with S in 1..%d", value,
                                MAX_SIDE);
            opt->resize_shorter = (int)s;
            opt->resize_height = opt->resize_width = 0;
            return IMGSIM_OK;
        }
        if (parse_hw(value, 0, &h, &w))
            return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG,
                            "resize=%s: expected HxW or shorter:S (sizes 1..%d; torchvision's Resize(S) is shorter:S)",
                            value, MAX_SIDE);
        opt->resize_height = h;
        opt->resize_width = w;
        opt->resize_shorter = 0;
        return IMGSIM_OK;
    }
    if (!strcmp(name, "crop")) {
        int h, w;
        if (parse_hw(value, 1, &h, &w))
            return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "crop=%s: expected HxW or N (N x N), sizes 1..%d", value,
                            MAX_SIDE);
        opt->height = h;
        opt->width = w;
        return IMGSIM_OK;
    }
    if (!strcmp(name, "mean") || !strcmp(name, "std")) {
        float v[3];
        int is_std = name[0] == 's';
        if (parse3(value, v))
            return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "%s=%s: expected three numbers r,g,b", name, value);
        for (int c = 0; c < 3 && is_std; c++)
            if (!(v[c] > 0.0f))
                return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "std=%s: every std must be > 0 (it divides)", value);
        memcpy(is_std ? opt->std : opt->mean, v, sizeof v);
        return IMGSIM_OK;
    }
    if (!strcmp(name, "interpolation") || !strcmp(name, "interp")) {
        if (!strcmp(value, "bilinear")) opt->interp = IMGSIM_INTERP_BILINEAR;
        else if (!strcmp(value, "bicubic")) opt->interp = IMGSIM_INTERP_BICUBIC;
        else
            return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "%s=%s: expected bilinear or bicubic", name, value);
        return IMGSIM_OK;
    }
    return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG,
                    "imgsim_preprocess_opts_set: unknown option '%s' (resize, crop, mean, std, interpolation)", name);
}

const char *imgsim_preprocess_opts_differ(const imgsim_preprocess_opts *a, const imgsim_preprocess_opts *b) {
    if (!a || !b) return a == b ? NULL : "crop";
    if (a->height != b->height || a->width != b->width) return "crop";
    int sa, ha, wa, sb, hb, wb;
    ims_pre_resize_of(a, &sa, &ha, &wa);
    ims_pre_resize_of(b, &sb, &hb, &wb);
    if (sa != sb || ha != hb || wa != wb) return "resize";
    if (a->interp != b->interp) return "interpolation";
    for (int c = 0; c < 3; c++)
        if (a->mean[c] != b->mean[c]) return "mean";
    for (int c = 0; c < 3; c++)
        if (a->std[c] != b->std[c]) return "std";
    if (!a->exif_rotate != !b->exif_rotate) return "exif_rotate";
    if (!a->dct_scaling != !b->dct_scaling) return "dct_scaling";
    return NULL;
}
