/*
 * fuzz_npy.c: libFuzzer harness for the .npy reader (src/core/npy.c, ims_npy_read), which reads
 * every store's features.npy and the inputs of `imgsim topk` and `imgsim bench`.
 *
 * Input: a .npy file, written to x.npy in the harness's scratch folder.
 *
 * Invariants checked beyond "no crash, leak or sanitizer report":
 *   - failure is a real status (not IMGSIM_ERR_INTERNAL) with a message naming the file, and
 *     leaves *data NULL;
 *   - success gives rows >= 0, cols >= 0 and data; a float32 array written back with
 *     ims_npy_write_f32 reads back as the same shape and the same bytes;
 *   - read again with an allocation failing (fuzz_fail_from): IMGSIM_ERR_NOMEM with a message,
 *     or success past the last allocation, and no leak.
 */
#include <string.h>

#include "core/core.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    imgsim_set_log_level(IMGSIM_LOG_QUIET);
    const char *path = fuzz_path(0, "x.npy");
    fuzz_write(path, data, size);
    void *arr = (void *)1;
    imgsim_dtype dt;
    int64_t rows = -1, cols = -1;
    ims_err e;
    e.msg[0] = 0;
    imgsim_status st = ims_npy_read(&arr, &dt, &rows, &cols, path, &e);
    if (st != IMGSIM_OK) {
        FUZZ_CHECK(arr == NULL, "a failed read left data");
        fuzz_check_error(st, e.msg, path);
        return 0;
    }
    FUZZ_CHECK(arr != NULL, "no data");
    FUZZ_CHECK(rows >= 0 && cols >= 0, "shape %lld x %lld", (long long)rows, (long long)cols);
    FUZZ_CHECK(dt == IMGSIM_F32 || dt == IMGSIM_F16, "dtype %d", (int)dt);
    if (dt == IMGSIM_F32) {
        const char *back = fuzz_path(1, "back.npy");
        int64_t shape[2] = {rows, cols};
        st = ims_npy_write_f32(back, arr, shape, 2, &e);
        FUZZ_CHECK(st == IMGSIM_OK, "writing back a %lld x %lld array: %s", (long long)rows, (long long)cols,
                   e.msg);
        void *arr2 = NULL;
        imgsim_dtype dt2;
        int64_t r2, c2;
        st = ims_npy_read(&arr2, &dt2, &r2, &c2, back, &e);
        FUZZ_CHECK(st == IMGSIM_OK, "reading back what ims_npy_write_f32 wrote: %s", e.msg);
        FUZZ_CHECK(dt2 == IMGSIM_F32 && r2 == rows && c2 == cols, "read back as %lld x %lld (dtype %d)",
                   (long long)r2, (long long)c2, (int)dt2);
        FUZZ_CHECK(memcmp(arr, arr2, (size_t)(rows * cols) * 4) == 0, "data differs after a round trip");
        free(arr2);
    }
    free(arr);

    /* again with an allocation failing */
    fuzz_fail_from(data, size, 4);
    arr = NULL;
    st = ims_npy_read(&arr, &dt, &rows, &cols, path, &e);
    fuzz_fail_off();
    fuzz_check_nomem(st, e.msg, path);
    free(arr);
    return 0;
}
