/* npy.c: NumPy .npy (format 1.0) reading and streaming writing; float16 conversion. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#define NPY_HEADER_BYTES 128 /* fixed, so a streamed file's row count can be patched in place */

uint16_t ims_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0)); /* inf / nan */
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf */
    if (e <= 0) {                                     /* subnormal or zero */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++; /* may carry into exp: correct */
    return (uint16_t)half;
}

float ims_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, x;
    if (exp == 0) {
        if (man == 0) {
            x = sign;
        } else { /* subnormal */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        x = sign | 0x7f800000u | (man << 13);
    } else {
        x = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Writes the 128-byte header for shape (rank dims). */
static int write_header(FILE *f, const char *descr, const int64_t *shape, int rank) {
    char dict[NPY_HEADER_BYTES];
    char sh[96] = "";
    size_t off = 0;
    for (int i = 0; i < rank; i++)
        off += (size_t)snprintf(sh + off, sizeof sh - off, "%" PRId64 "%s", shape[i],
                                rank == 1 ? "," : (i + 1 < rank ? ", " : ""));
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, sh);
    if (n < 0 || n > NPY_HEADER_BYTES - 11) return -1;
    size_t hlen = NPY_HEADER_BYTES - 10;
    memset(dict + n, ' ', hlen - (size_t)n);
    dict[hlen - 1] = '\n';
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(dict, 1, hlen, f) != hlen) return -1;
    return 0;
}

imgsim_status ims_npy_begin(ims_npy_writer *w, const char *path, imgsim_dtype dtype, int64_t cols, ims_err *e) {
    memset(w, 0, sizeof *w);
    w->dtype = dtype;
    w->cols = cols;
    ims_ck64_init(&w->ck);
    imgsim_status st = ims_atomic_open(&w->af, path, e);
    if (st) return st;
    int64_t shape[2] = {0, cols};
    if (write_header(w->af.f, dtype == IMGSIM_F16 ? "<f2" : "<f4", shape, 2) != 0) {
        ims_atomic_abort(&w->af);
        return ims_fail(e, IMGSIM_ERR_IO, "%s: write failed", path);
    }
    return IMGSIM_OK;
}

imgsim_status ims_npy_append_f32(ims_npy_writer *w, const float *rows, int64_t n, ims_err *e) {
    size_t count = (size_t)(n * w->cols);
    if (w->dtype == IMGSIM_F32) {
        if (fwrite(rows, sizeof(float), count, w->af.f) != count)
            return ims_fail(e, IMGSIM_ERR_IO, "%s: write failed: %s", w->af.final_path, strerror(errno));
        ims_ck64_update(&w->ck, rows, count * sizeof(float));
    } else {
        uint16_t buf[1024];
        for (size_t i = 0; i < count;) {
            size_t m = count - i < 1024 ? count - i : 1024;
            for (size_t j = 0; j < m; j++) buf[j] = ims_f32_to_f16(rows[i + j]);
            if (fwrite(buf, 2, m, w->af.f) != m)
                return ims_fail(e, IMGSIM_ERR_IO, "%s: write failed: %s", w->af.final_path, strerror(errno));
            ims_ck64_update(&w->ck, buf, m * 2);
            i += m;
        }
    }
    w->rows += n;
    return IMGSIM_OK;
}

imgsim_status ims_npy_append_raw(ims_npy_writer *w, const void *rows, int64_t n, ims_err *e) {
    size_t bytes = (size_t)(n * w->cols) * (w->dtype == IMGSIM_F16 ? 2 : 4);
    if (bytes && fwrite(rows, 1, bytes, w->af.f) != bytes)
        return ims_fail(e, IMGSIM_ERR_IO, "%s: write failed: %s", w->af.final_path, strerror(errno));
    ims_ck64_update(&w->ck, rows, bytes);
    w->rows += n;
    return IMGSIM_OK;
}

imgsim_status ims_npy_finish(ims_npy_writer *w, ims_err *e) {
    int64_t shape[2] = {w->rows, w->cols};
    if (fflush(w->af.f) != 0 || fseek(w->af.f, 0, SEEK_SET) != 0 ||
        write_header(w->af.f, w->dtype == IMGSIM_F16 ? "<f2" : "<f4", shape, 2) != 0) {
        const char *p = w->af.final_path;
        imgsim_status st = ims_fail(e, IMGSIM_ERR_IO, "%s: write failed: %s", p, strerror(errno));
        ims_atomic_abort(&w->af);
        return st;
    }
    return ims_atomic_commit(&w->af, e);
}

void ims_npy_abort(ims_npy_writer *w) {
    if (w->af.f || w->af.tmp_path) ims_atomic_abort(&w->af);
}

imgsim_status ims_npy_write_f32(const char *path, const float *data, const int64_t *shape, int rank, ims_err *e) {
    if (rank < 1 || rank > 8) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "%s: bad rank %d", path, rank);
    ims_atomic_file af;
    imgsim_status st = ims_atomic_open(&af, path, e);
    if (st) return st;
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= (size_t)shape[i];
    if (write_header(af.f, "<f4", shape, rank) != 0 || fwrite(data, sizeof(float), count, af.f) != count) {
        ims_atomic_abort(&af);
        return ims_fail(e, IMGSIM_ERR_IO, "%s: write failed", path);
    }
    return ims_atomic_commit(&af, e);
}

/* Finds "'key': " in the header dict and returns the text after it, or NULL. */
static const char *dict_find(const char *dict, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s':", key);
    const char *p = strstr(dict, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    return p;
}

imgsim_status ims_npy_read(void **data, imgsim_dtype *dtype, int64_t *rows, int64_t *cols, const char *path,
                          ims_err *e) {
    *data = NULL;
    uint8_t *buf;
    size_t len;
    imgsim_status st = ims_read_file(&buf, &len, path, 0, e);
    if (st) return st;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: not a .npy file", path);
    }
    size_t hlen, hoff;
    if (buf[6] == 1) {
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
        hoff = 10;
    } else if ((buf[6] == 2 || buf[6] == 3) && len >= 12) {
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8) | ((size_t)buf[10] << 16) | ((size_t)buf[11] << 24);
        hoff = 12;
    } else {
        int version = buf[6]; /* read before buf is freed */
        free(buf);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: unsupported .npy version %d", path, version);
    }
    if (hlen > len - hoff || hlen > 65536) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: truncated .npy header", path);
    }
    char dict[65537];
    memcpy(dict, buf + hoff, hlen);
    dict[hlen] = 0;
    const char *d = dict_find(dict, "descr"), *fo = dict_find(dict, "fortran_order"), *sh = dict_find(dict, "shape");
    if (!d || !fo || !sh) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: malformed .npy header", path);
    }
    size_t esize;
    if (!strncmp(d, "'<f4'", 5)) {
        *dtype = IMGSIM_F32;
        esize = 4;
    } else if (!strncmp(d, "'<f2'", 5)) {
        *dtype = IMGSIM_F16;
        esize = 2;
    } else {
        free(buf);
        int dl = 0; /* the descr between its quotes */
        while (d[0] == '\'' && d[1 + dl] && d[1 + dl] != '\'' && dl < 16) dl++;
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: element type '%.*s' is not float32 ('<f4') or float16 ('<f2')",
                       path, dl, d + 1);
    }
    if (strncmp(fo, "False", 5) != 0) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: Fortran-order arrays are not supported", path);
    }
    if (*sh != '(') {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: malformed shape", path);
    }
    int64_t dims[8];
    int rank = 0;
    const char *p = sh + 1;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || rank == 8) {
            free(buf);
            return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: malformed shape", path);
        }
        dims[rank++] = v;
        p = end;
    }
    int64_t r, c;
    if (rank == 2) {
        r = dims[0];
        c = dims[1];
    } else if (rank == 1) {
        r = 1;
        c = dims[0];
    } else {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: expected a 1-D or 2-D array, got %d dimensions", path, rank);
    }
    uint64_t count, bytes;
    if (ims_mul_overflow_u64((uint64_t)r, (uint64_t)c, &count) || ims_mul_overflow_u64(count, esize, &bytes) ||
        bytes > len - hoff - hlen) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: data shorter than its shape (%" PRId64 " x %" PRId64 ")", path, r,
                       c);
    }
    void *out = ims_malloc((size_t)bytes);
    if (!out) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(out, buf + hoff + hlen, (size_t)bytes);
    free(buf);
    *data = out;
    *rows = r;
    *cols = c;
    return IMGSIM_OK;
}
