/*
 * search_kernels.cu: the device kernels of the exact CUDA top-k search (host side in
 * search_cuda.c; the exactness argument is written there).
 *
 * Keys. An approximate score s (from the float16/TF32 GEMM tile) of gallery row r is packed into
 * one uint64 key = ord(s) << 32 | ~r, where ord maps floats to uint32 monotonically. Sorting keys
 * in descending order sorts by score descending, then by row ascending; every real key is > 0
 * (NaN scores get key 0 and are never kept), so 0 pads.
 *
 * State. Each (query, split) owns a list of at most kp keys, sorted descending, in global memory
 * (keys [rows * splits, kp], count [rows * splits]). A split is a contiguous range of the columns
 * of every score tile; with few queries, several splits keep the GPU busy.
 */
#include <cuda_fp16.h>
#include <stdint.h>

#include "search/cuda/search_cuda_kernels.h"

#define SEL_THREADS 256
#define SEL_P 4096 /* keys in a block's shared buffer (list kp <= 2048 + one round) */
#define SEL_R 2048 /* scores scanned per round: SEL_THREADS * 8 */

/* Monotone float -> uint32 (larger float, larger value; -0 and +0 adjacent). */
static __device__ __forceinline__ uint32_t ord_f32(float f) {
    uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Inverse of ord_f32. */
static __device__ __forceinline__ float unord_f32(uint32_t o) {
    uint32_t u = (o & 0x80000000u) ? (o & 0x7fffffffu) : ~o;
    return __uint_as_float(u);
}

static __device__ __forceinline__ uint64_t make_key(float s, uint32_t row) {
    if (s != s) return 0; /* NaN: never kept */
    return ((uint64_t)ord_f32(s) << 32) | (uint64_t)(~row);
}

static __device__ __forceinline__ float key_score(uint64_t k) { return unord_f32((uint32_t)(k >> 32)); }

static __device__ __forceinline__ int next_pow2(int x) {
    int m = 1;
    while (m < x) m <<= 1;
    return m;
}

/* Sorts buf[0, m) descending (m a power of two) with all threads of the block; ends synced. */
static __device__ void bitonic_desc_u64(uint64_t *buf, int m) {
    for (int k = 2; k <= m; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int p = threadIdx.x; p < (m >> 1); p += blockDim.x) {
                int i = ((p & ~(j - 1)) << 1) | (p & (j - 1));
                int ixj = i | j;
                uint64_t a = buf[i], b = buf[ixj];
                bool desc = (i & k) == 0;
                if (desc ? (a < b) : (a > b)) {
                    buf[i] = b;
                    buf[ixj] = a;
                }
            }
            __syncthreads();
        }
    }
}

/* Loads 8 scores starting at column c of row (c is a multiple of 8, row 16-byte aligned). */
static __device__ __forceinline__ void load8(float v[8], const __half *row, int c, int c1) {
    if (c + 8 <= c1) {
        uint4 u = *reinterpret_cast<const uint4 *>(row + c);
        const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 f = __half22float2(h[j]);
            v[2 * j] = f.x;
            v[2 * j + 1] = f.y;
        }
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = c + j < c1 ? __half2float(row[c + j]) : __int_as_float(0x7fc00000);
    }
}
static __device__ __forceinline__ void load8(float v[8], const float *row, int c, int c1) {
    if (c + 8 <= c1) {
        float4 a = *reinterpret_cast<const float4 *>(row + c);
        float4 b = *reinterpret_cast<const float4 *>(row + c + 4);
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = c + j < c1 ? row[c + j] : __int_as_float(0x7fc00000);
    }
}

/*
 * Folds one score tile into the per-(query, split) candidate lists.
 * S [rows, ld] (T = half or float; row r = tile query r, column c = gallery row row0 + c, c < cols).
 * List (query st_row0 + r, split s): keys [cap] with cap = kp + slack, meta {count, sorted} in
 * st_meta [2]: keys [0, sorted) are sorted descending (the best seen when they were sorted), keys
 * [sorted, count) were appended since, unsorted. theta (the kp-th sorted key, once sorted >= kp)
 * only grows, so a score whose key is <= theta can never be in the best kp and is skipped.
 * Grid (rows, splits), SEL_THREADS threads. The block scans its column range in rounds of SEL_R
 * scores, appending keys > theta to a shared buffer that mirrors the list's positions; only when
 * the buffer could overflow, the list would pass cap, or on the final tile (final = 1) is the
 * list loaded, sorted and cut back to kp (keys are unique, so the kept set is exactly the best
 * kp keys seen). Usually nothing passes and the block reads one key and writes nothing.
 */
template <typename T>
__global__ void __launch_bounds__(SEL_THREADS)
    k_select(const T *__restrict__ S, int64_t ld, int cols, uint32_t row0, int splits, int64_t st_row0,
             uint64_t *__restrict__ st_keys, int *__restrict__ st_meta, int kp, int cap, int final) {
    __shared__ uint64_t buf[SEL_P];
    /* appends of round r count in s_add[r % 3]; round r clears s_add[(r + 1) % 3], which every
     * thread finished reading before round r began, so one barrier per round suffices */
    __shared__ int s_add[3];
    const int r = blockIdx.x, s = blockIdx.y, tid = threadIdx.x, lane = tid & 31;
    const int64_t sidx = (st_row0 + r) * splits + s;
    uint64_t *keys = st_keys + sidx * cap;
    const int cnt0 = st_meta[2 * sidx], sorted0 = st_meta[2 * sidx + 1];
    if (tid < 3) s_add[tid] = 0;
    int per = (cols + splits - 1) / splits;
    per = (per + 7) & ~7;
    const int c0 = s * per, c1 = min(cols, c0 + per);
    const T *row = S + (int64_t)r * ld;
    /* block-uniform state in registers: list length, sorted prefix, threshold key */
    int cnt = cnt0, sorted = sorted0, r3 = 0;
    bool loaded = false; /* buf [0, cnt0) holds the stored list */
    uint64_t theta = sorted0 >= kp ? keys[kp - 1] : 0;
    __syncthreads();
    for (int base = c0; base < c1; base += SEL_R) {
        const int c = base + tid * 8;
        float v[8];
        if (c < c1)
            load8(v, row, c, c1);
        else
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = __int_as_float(0x7fc00000);
        uint64_t key[8];
        bool anyp = false;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            key[j] = make_key(v[j] + 0.0f, row0 + (uint32_t)(c + j));
            anyp |= key[j] > theta;
        }
        if (__any_sync(0xffffffffu, anyp)) {
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const bool pass = key[j] > theta;
                const unsigned m = __ballot_sync(0xffffffffu, pass);
                if (m) {
                    const int leader = __ffs(m) - 1;
                    int pos = 0;
                    if (lane == leader) pos = atomicAdd(&s_add[r3], __popc(m));
                    pos = __shfl_sync(0xffffffffu, pos, leader);
                    if (pass) buf[cnt + pos + __popc(m & ((1u << lane) - 1u))] = key[j];
                }
            }
        }
        const int nxt = r3 == 2 ? 0 : r3 + 1;
        if (tid == 0) s_add[nxt] = 0;
        __syncthreads();
        cnt += s_add[r3];
        r3 = nxt;
        const bool last = base + SEL_R >= c1;
        if (cnt + SEL_R > SEL_P || (last && (cnt > cap || (final && cnt > sorted)))) {
            if (!loaded) {
                for (int i = tid; i < cnt0; i += SEL_THREADS) buf[i] = keys[i];
                loaded = true;
            }
            const int m = next_pow2(cnt);
            for (int i = cnt + tid; i < m; i += SEL_THREADS) buf[i] = 0;
            __syncthreads();
            bitonic_desc_u64(buf, m);
            cnt = cnt < kp ? cnt : kp;
            sorted = cnt;
            theta = cnt >= kp ? buf[kp - 1] : 0;
        }
    }
    if (final && cnt > sorted) { /* no columns here this tile, but the list must end sorted */
        if (!loaded)
            for (int i = tid; i < cnt0; i += SEL_THREADS) buf[i] = keys[i];
        loaded = true;
        const int m = next_pow2(cnt);
        for (int i = cnt + tid; i < m; i += SEL_THREADS) buf[i] = 0;
        __syncthreads();
        bitonic_desc_u64(buf, m);
        cnt = cnt < kp ? cnt : kp;
        sorted = cnt;
    }
    if (loaded) {
        for (int i = tid; i < cnt; i += SEL_THREADS) keys[i] = buf[i];
    } else {
        for (int i = cnt0 + tid; i < cnt; i += SEL_THREADS) keys[i] = buf[i];
    }
    if (tid == 0 && (cnt != cnt0 || sorted != sorted0)) {
        st_meta[2 * sidx] = cnt;
        st_meta[2 * sidx + 1] = sorted;
    }
}

/* Euclidean norm of a row in float64. */
static __device__ double row_sumsq(const void *x, int64_t r, int dim, int f16) {
    double acc = 0.0;
    if (f16) {
        const __half *p = (const __half *)x + r * dim;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            double v = (double)__half2float(p[i]);
            acc += v * v;
        }
    } else {
        const float *p = (const float *)x + r * dim;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            double v = (double)p[i];
            acc += v * v;
        }
    }
    return acc;
}

/* Block-wide sum of one double per thread (blockDim a multiple of 32, <= 1024); all get it. */
static __device__ double block_sum(double v) {
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    double t = 0.0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += part[w];
    __syncthreads();
    return t;
}

/* gmax_bits (a float's bits, >= 0) = max(gmax_bits, max row norm of X [rows, dim]), rounded up.
 * One block per row chunk: grid (ceil(rows / 8)), 256 threads: warp w of the block takes rows. */
static __global__ void k_rownorm_max(const void *X, int64_t rows, int dim, int f16, unsigned int *gmax_bits) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float best = 0.0f;
    for (int64_t r = (int64_t)blockIdx.x * 8 + warp; r < rows; r += (int64_t)gridDim.x * 8) {
        double acc = 0.0;
        if (f16) {
            const __half *p = (const __half *)X + r * dim;
            for (int i = lane; i < dim; i += 32) {
                double v = (double)__half2float(p[i]);
                acc += v * v;
            }
        } else {
            const float *p = (const float *)X + r * dim;
            for (int i = lane; i < dim; i += 32) {
                double v = (double)p[i];
                acc += v * v;
            }
        }
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
        if (lane == 0) {
            float nrm = (float)(sqrt(acc) * (1.0 + 0x1p-20));
            if (!(nrm <= 3.0e38f)) nrm = __int_as_float(0x7f800000); /* inf or NaN: +inf */
            best = fmaxf(best, nrm);
        }
    }
    if (lane == 0) atomicMax(gmax_bits, __float_as_uint(best));
}

/*
 * Per query: merges the splits' lists, finds the k-th best approximate score a_k and the
 * error bound eps = |q| * gmax * rel + abs_err, and proves the candidate set complete: every
 * full list's last score must be < a_k - 2 eps (then no dropped row can be in the exact top k).
 * Writes the candidates with approximate score >= a_k - 2 eps (a prefix of the merged order) as
 * rows to cand [nq, mmax] and their count to cand_n (-1: not proven, the host recomputes the
 * query). Q [nq, dim] (float16 or float32), grid nq, 256 threads; splits * kp <= 2048.
 */
static __global__ void k_candidates(const uint64_t *__restrict__ st_keys, const int *__restrict__ st_meta, int splits,
                             int kp, int cap, int k, const void *Q, int dim, int f16, const unsigned int *gmax_bits,
                             double rel, double abs_err, double amax, uint32_t *cand, int *cand_n, int mmax) {
    __shared__ uint64_t buf[2048];
    __shared__ int off[65];
    __shared__ int s_fail, s_m;
    const int q = blockIdx.x, tid = threadIdx.x;
    if (tid == 0) {
        int o = 0;
        for (int s = 0; s < splits; s++) {
            off[s] = o;
            o += st_meta[2 * ((int64_t)q * splits + s)];
        }
        off[splits] = o;
        s_fail = 0;
        s_m = 0;
    }
    __syncthreads();
    const int total = off[splits];
    for (int s = 0; s < splits; s++) {
        const uint64_t *keys = st_keys + ((int64_t)q * splits + s) * cap;
        const int n = off[s + 1] - off[s];
        for (int i = tid; i < n; i += blockDim.x) buf[off[s] + i] = keys[i];
    }
    const int m = next_pow2(total > 1 ? total : 1);
    for (int i = total + tid; i < m; i += blockDim.x) buf[i] = 0;
    __syncthreads();
    bitonic_desc_u64(buf, m);
    const double qn = sqrt(block_sum(row_sumsq(Q, q, dim, f16)));
    if (total == 0) {
        if (tid == 0) cand_n[q] = 0;
        return;
    }
    const int kk = k < total ? k : total;
    const double ak = (double)key_score(buf[kk - 1]);
    const double gmax = (double)__uint_as_float(*gmax_bits);
    const double eps = qn * gmax * rel + abs_err;
    const double thr = ak - 2.0 * eps;
    if (tid == 0 && !(fabs(ak) < amax && thr > -1e300 && eps < 1e300)) s_fail = 1;
    if (tid < splits) {
        const int n = off[tid + 1] - off[tid];
        if (n >= kp) {
            const double last = (double)key_score(st_keys[((int64_t)q * splits + tid) * cap + kp - 1]);
            if (!(last < thr)) atomicExch(&s_fail, 1);
        }
    }
    /* candidates: the prefix of buf with score >= thr */
    for (int i = tid; i < total; i += blockDim.x) {
        const bool in = (double)key_score(buf[i]) >= thr;
        const bool next_in = i + 1 < total && (double)key_score(buf[i + 1]) >= thr;
        if (in && !next_in) s_m = i + 1;
    }
    __syncthreads();
    if (s_fail) {
        if (tid == 0) cand_n[q] = -1;
        return;
    }
    const int mc = s_m;
    for (int i = tid; i < mc; i += blockDim.x) cand[(int64_t)q * mmax + i] = ~(uint32_t)buf[i];
    if (tid == 0) cand_n[q] = mc;
}

/* Neumaier-compensated float64 dot of a float32 query row and a gallery row, in the same
 * order and operations as the CPU's ims_dot64 (no contraction), so the results are identical. */
static __device__ double dot64(const float *q, const void *g, int64_t row, int dim, int f16) {
    double s = 0.0, c = 0.0;
    if (f16) {
        const __half *p = (const __half *)g + row * dim;
        for (int i = 0; i < dim; i++) {
            double pr = __dmul_rn((double)q[i], (double)__half2float(p[i]));
            double t = __dadd_rn(s, pr);
            c = __dadd_rn(c, fabs(s) >= fabs(pr) ? __dadd_rn(__dsub_rn(s, t), pr) : __dadd_rn(__dsub_rn(pr, t), s));
            s = t;
        }
    } else {
        const float *p = (const float *)g + row * dim;
        for (int i = 0; i < dim; i++) {
            double pr = __dmul_rn((double)q[i], (double)p[i]);
            double t = __dadd_rn(s, pr);
            c = __dadd_rn(c, fabs(s) >= fabs(pr) ? __dadd_rn(__dsub_rn(s, t), pr) : __dadd_rn(__dsub_rn(pr, t), s));
            s = t;
        }
    }
    return __dadd_rn(s, c);
}

/* a before b: score descending, then row ascending. */
static __device__ __forceinline__ bool better(double sa, uint32_t ia, double sb, uint32_t ib) {
    return sa > sb || (sa == sb && ia < ib);
}

/*
 * Per query: re-scores its cand_n candidates exactly (float64) against the resident gallery
 * G [n, dim], ranks them by (score desc, row asc) and writes the best k to idx/score [nq, k]
 * (idx -1 and score -inf past the candidates). Queries with cand_n < 0 are left alone. Q is the
 * query block [nq, dim] in float32 (qf). Grid nq, 256 threads.
 */
static __global__ void k_rescore(const uint32_t *__restrict__ cand, const int *__restrict__ cand_n, int mmax,
                          const void *G, int f16, const float *qf, int dim, int k, int64_t *out_idx,
                          float *out_score) {
    __shared__ double sc[2048];
    __shared__ uint32_t id[2048];
    const int q = blockIdx.x, tid = threadIdx.x;
    const int mc = cand_n[q];
    if (mc < 0) return;
    const float *qrow = qf + (int64_t)q * dim;
    for (int i = tid; i < mc; i += blockDim.x) {
        const uint32_t row = cand[(int64_t)q * mmax + i];
        sc[i] = dot64(qrow, G, row, dim, f16);
        id[i] = row;
    }
    const int m = next_pow2(mc > 1 ? mc : 1);
    for (int i = mc + tid; i < m; i += blockDim.x) {
        sc[i] = -__longlong_as_double(0x7ff0000000000000ll);
        id[i] = 0xffffffffu;
    }
    __syncthreads();
    for (int kk = 2; kk <= m; kk <<= 1) {
        for (int j = kk >> 1; j > 0; j >>= 1) {
            for (int p = tid; p < (m >> 1); p += blockDim.x) {
                int i = ((p & ~(j - 1)) << 1) | (p & (j - 1));
                int ixj = i | j;
                bool first = (i & kk) == 0; /* this half sorted best-first */
                bool swap = first ? better(sc[ixj], id[ixj], sc[i], id[i]) : better(sc[i], id[i], sc[ixj], id[ixj]);
                if (swap) {
                    double ts = sc[i];
                    sc[i] = sc[ixj];
                    sc[ixj] = ts;
                    uint32_t ti = id[i];
                    id[i] = id[ixj];
                    id[ixj] = ti;
                }
            }
            __syncthreads();
        }
    }
    for (int i = tid; i < k; i += blockDim.x) {
        const bool have = i < mc;
        out_idx[(int64_t)q * k + i] = have ? (int64_t)id[i] : -1;
        out_score[(int64_t)q * k + i] = have ? (float)sc[i] : -__int_as_float(0x7f800000);
    }
}

/* qf [nq, dim] float32 = float32 of Q (float16). */
static __global__ void k_half_to_float(float *qf, const __half *Q, int64_t count) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        qf[i] = __half2float(Q[i]);
}

/* ---- launchers (C linkage) ------------------------------------------------------------------ */

extern "C" cudaError_t ims_gs_launch_select(cudaStream_t st, int f16, const void *S, int64_t ld, int rows, int cols,
                                           uint32_t row0, int splits, int64_t st_row0, uint64_t *st_keys,
                                           int *st_meta, int kp, int cap, int final) {
    dim3 grid((unsigned)rows, (unsigned)splits);
    if (f16)
        k_select<__half><<<grid, SEL_THREADS, 0, st>>>((const __half *)S, ld, cols, row0, splits, st_row0, st_keys,
                                                        st_meta, kp, cap, final);
    else
        k_select<float><<<grid, SEL_THREADS, 0, st>>>((const float *)S, ld, cols, row0, splits, st_row0, st_keys,
                                                       st_meta, kp, cap, final);
    return cudaGetLastError();
}

extern "C" cudaError_t ims_gs_launch_rownorm_max(cudaStream_t st, const void *X, int64_t rows, int dim, int f16,
                                                unsigned int *gmax_bits) {
    if (rows <= 0) return cudaSuccess;
    int64_t blocks = (rows + 7) / 8;
    if (blocks > 4096) blocks = 4096;
    k_rownorm_max<<<(unsigned)blocks, 256, 0, st>>>(X, rows, dim, f16, gmax_bits);
    return cudaGetLastError();
}

extern "C" cudaError_t ims_gs_launch_candidates(cudaStream_t st, int nq, const uint64_t *st_keys, const int *st_meta,
                                               int splits, int kp, int cap, int k, const void *Q, int dim, int f16,
                                               const unsigned int *gmax_bits, double rel, double abs_err,
                                               double amax, uint32_t *cand, int *cand_n, int mmax) {
    if (nq <= 0) return cudaSuccess;
    k_candidates<<<(unsigned)nq, 256, 0, st>>>(st_keys, st_meta, splits, kp, cap, k, Q, dim, f16, gmax_bits, rel, abs_err,
                                              amax, cand, cand_n, mmax);
    return cudaGetLastError();
}

extern "C" cudaError_t ims_gs_launch_rescore(cudaStream_t st, int nq, const uint32_t *cand, const int *cand_n,
                                            int mmax, const void *G, int f16, const float *qf, int dim, int k,
                                            int64_t *out_idx, float *out_score) {
    if (nq <= 0) return cudaSuccess;
    k_rescore<<<(unsigned)nq, 256, 0, st>>>(cand, cand_n, mmax, G, f16, qf, dim, k, out_idx, out_score);
    return cudaGetLastError();
}

extern "C" cudaError_t ims_gs_launch_half_to_float(cudaStream_t st, float *qf, const void *Q, int64_t count) {
    if (count <= 0) return cudaSuccess;
    int64_t blocks = (count + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    k_half_to_float<<<(unsigned)blocks, 256, 0, st>>>(qf, (const __half *)Q, count);
    return cudaGetLastError();
}
