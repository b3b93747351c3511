/* npy.c: the public .npy calls of imgsim.h (imgsim_npy_read, imgsim_npy_write_f32) over core's
 * reader and writer, and imgsim_free. */
#include <stdlib.h>

#include "core/core.h"

imgsim_status imgsim_npy_read(void **data, imgsim_dtype *dtype, int64_t *rows, int64_t *cols, const char *path) {
    if (!data || !dtype || !rows || !cols || !path)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_npy_read: NULL argument");
    *data = NULL;
    return ims_npy_read(data, dtype, rows, cols, path, NULL);
}

imgsim_status imgsim_npy_write_f32(const char *path, const float *data, const int64_t *shape, int rank) {
    if (!path || !data || !shape) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_npy_write_f32: NULL argument");
    return ims_npy_write_f32(path, data, shape, rank, NULL);
}

void imgsim_free(void *p) {
    free(p);
}
