/*
 * ycc.cu: YCbCr planes (as nvJPEG decodes them) -> RGB8, exactly as libjpeg-turbo (and so PIL)
 * produces them: "fancy" (triangle-filter) chroma upsampling for 4:2:0 (h2v2) and 4:2:2 (h2v1),
 * none for 4:4:4, then the JFIF integer colour conversion of jdcolor.c (16-bit fixed point,
 * rounding and clamping as there). nvJPEG's own RGB output replicates chroma samples instead,
 * which moves colours at chroma edges by many levels.
 *
 * Grid: (ceil(w / 128), h, n images), one thread per output pixel.
 */
#include "image/cuda/ycc.h"

#define YCC_THREADS 128
#define FIX(x) ((int)((x) * 65536.0 + 0.5))

/* Chroma sample of plane c (cw x ch, pitch cp) at luma position (x, y), upsampled like jdsample.c. */
__device__ static inline int chroma(const uint8_t *c, int cp, int cw, int ch, int x, int y, int css) {
    if (css == IS_CSS_444) return c[(size_t)y * cp + x];
    if (css == IS_CSS_422) { /* h2v1_fancy_upsample */
        int col = x >> 1;
        if (col >= cw) col = cw - 1;
        const uint8_t *row = c + (size_t)y * cp;
        int v = row[col];
        if ((x & 1) == 0) return col == 0 ? v : (v * 3 + row[col - 1] + 1) >> 2;
        return col == cw - 1 ? v : (v * 3 + row[col + 1] + 2) >> 2;
    }
    /* IS_CSS_420: h2v2_fancy_upsample; the row beyond the edge is the edge row itself */
    int r = y >> 1;
    if (r >= ch) r = ch - 1;
    int r1 = (y & 1) == 0 ? (r > 0 ? r - 1 : 0) : (r + 1 < ch ? r + 1 : ch - 1);
    const uint8_t *p0 = c + (size_t)r * cp, *p1 = c + (size_t)r1 * cp;
    int col = x >> 1;
    if (col >= cw) col = cw - 1;
    int thiss = p0[col] * 3 + p1[col];
    if ((x & 1) == 0) {
        if (col == 0) return (thiss * 4 + 8) >> 4;
        int last = p0[col - 1] * 3 + p1[col - 1];
        return (thiss * 3 + last + 8) >> 4;
    }
    if (col == cw - 1) return (thiss * 4 + 7) >> 4;
    int next = p0[col + 1] * 3 + p1[col + 1];
    return (thiss * 3 + next + 7) >> 4;
}

__device__ static inline uint8_t clamp255(int v) {
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static __global__ void ycc_to_rgb_kernel(const ims_ycc_desc *descs) {
    const ims_ycc_desc d = descs[blockIdx.z];
    const int x = blockIdx.x * YCC_THREADS + threadIdx.x, y = blockIdx.y;
    if (d.rgb == nullptr || x >= d.w || y >= d.h) return;
    const int Y = d.y[(size_t)y * d.yp + x];
    uint8_t *o = d.rgb + (size_t)y * d.w * 3 + (size_t)x * 3;
    if (d.css == IS_CSS_GRAY) {
        o[0] = o[1] = o[2] = (uint8_t)Y;
        return;
    }
    const int cb = chroma(d.cb, d.cp, d.cw, d.ch, x, y, d.css) - 128;
    const int cr = chroma(d.cr, d.cp, d.cw, d.ch, x, y, d.css) - 128;
    /* jdcolor.c build_ycc_rgb_table + ycc_rgb_convert */
    const int r_add = (FIX(1.40200) * cr + (1 << 15)) >> 16;
    const int b_add = (FIX(1.77200) * cb + (1 << 15)) >> 16;
    const int g_add = (-FIX(0.34414) * cb + (1 << 15) + -FIX(0.71414) * cr) >> 16;
    o[0] = clamp255(Y + r_add);
    o[1] = clamp255(Y + g_add);
    o[2] = clamp255(Y + b_add);
}

extern "C" imgsim_status ims_ycc_to_rgb(const ims_ycc_desc *descs_dev, int n, int max_w, int max_h, cudaStream_t s,
                                       ims_err *e) {
    if (n <= 0) return IMGSIM_OK;
    dim3 grid((unsigned)((max_w + YCC_THREADS - 1) / YCC_THREADS), (unsigned)max_h, (unsigned)n);
    ycc_to_rgb_kernel<<<grid, YCC_THREADS, 0, s>>>(descs_dev);
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess) return ims_fail(e, IMGSIM_ERR_BACKEND, "YCbCr to RGB kernel: %s", cudaGetErrorString(ce));
    return IMGSIM_OK;
}
