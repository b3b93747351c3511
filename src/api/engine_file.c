/* engine_file.c: the public CUDA engine-file calls of imgsim.h (imgsim_engine_file,
 * imgsim_engine_file_describe); the file format is the CUDA backend's (backend/cuda/cuda_plan.h). */
#include "api/api.h"
#include "backend/cuda/cuda_backend.h"

const char *imgsim_engine_file(const imgsim_engine *e) {
    if (!e || !e->b || e->info.device != IMGSIM_DEVICE_CUDA) return "";
    return ims_cuda_engine_path(e->b);
}

imgsim_status imgsim_engine_file_describe(char *buf, size_t size, size_t *len, const char *path) {
    if (!path || (!buf && size))
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_engine_file_describe: NULL argument");
    return ims_cuda_engine_file_describe(buf, size, len, path, NULL);
}
