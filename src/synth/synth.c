/*
 * synth.c: libimgsim_synth, labelled photo-like JPEG datasets for the demo, tests and benchmarks
 * (include/imgsim_synth.h). Not part of the engine library; it uses core's helpers (errors,
 * files, thread pool, progress) from libimgsim.
 *
 * A class is a scene family (landscape, stripes, discs, checker, cloudy noise, rings: class % 6)
 * with a class palette (hue spread by the golden ratio), a class orientation and a class scale.
 * An image of the class varies these: hue and saturation jitter, position, rotation (+-12 deg),
 * scale (x0.75..1.35), brightness, sensor-like noise and up to three unrelated shapes. Rendering
 * is one pass per pixel with no transcendental functions in the inner loops (waves are smoothed
 * triangles), so 20,000 images of ~500x375 take seconds per core plus JPEG encoding.
 * Images are written with TurboJPEG (tjCompress2, 4:2:0, quality 90) in parallel on core's pool;
 * every image depends only on (seed, class, index), not on which thread made it.
 */
#define _POSIX_C_SOURCE 200809L

#include "imgsim_synth.h"

#include "core/core.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#define PI_F 3.14159265358979f

/* ---- random numbers ---------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_u64(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static float rng_f(rng *r) {
    return (float)(rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

static float rng_range(rng *r, float a, float b) {
    return a + (b - a) * rng_f(r);
}

static int rng_int(rng *r, int lo, int hi) { /* inclusive */
    return lo + (int)(rng_u64(r) % (uint64_t)(hi - lo + 1));
}

/* The seed of image `idx` of class `cls` in a dataset made with `seed`. */
static uint64_t image_seed(uint64_t seed, int cls, int idx) {
    rng r = {seed ^ ((uint64_t)(uint32_t)cls << 32) ^ (uint64_t)(uint32_t)idx};
    rng_u64(&r);
    return rng_u64(&r);
}

/* ---- colour ------------------------------------------------------------------------------------ */

typedef struct rgbf {
    float r, g, b;
} rgbf;

/* h, s, v in [0, 1] -> RGB in [0, 255] */
static rgbf hsv(float h, float s, float v) {
    h = h - floorf(h);
    float hh = h * 6.0f;
    int i = (int)hh;
    float f = hh - (float)i;
    float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    float r, g, b;
    switch (i % 6) {
    case 0:
        r = v, g = t, b = p;
        break;
    case 1:
        r = q, g = v, b = p;
        break;
    case 2:
        r = p, g = v, b = t;
        break;
    case 3:
        r = p, g = q, b = v;
        break;
    case 4:
        r = t, g = p, b = v;
        break;
    default:
        r = v, g = p, b = q;
        break;
    }
    return (rgbf){r * 255.0f, g * 255.0f, b * 255.0f};
}

static inline rgbf mix(rgbf a, rgbf b, float t) {
    return (rgbf){a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}

/* round and clamp to 0..255 (written so the compiler emits min/max, not branches) */
static inline uint8_t clamp8(float x) {
    x = x < 0.0f ? 0.0f : x;
    x = x > 255.0f ? 255.0f : x;
    return (uint8_t)(int)(x + 0.5f);
}

static inline void put(uint8_t *p, rgbf c) {
    p[0] = clamp8(c.r);
    p[1] = clamp8(c.g);
    p[2] = clamp8(c.b);
}

/* floor for |t| < 2^31, without a libm call (floorf is not inlined on baseline x86-64). */
static inline float ffloor(float t) {
    float i = (float)(int)t;
    return i - (float)(t < i);
}

/* A smooth periodic wave in [0, 1] with period 1 (a smoothstep'ed triangle: close to a cosine). */
static inline float wave(float t) {
    float f = t - ffloor(t);
    float tri = f < 0.5f ? 2.0f * f : 2.0f - 2.0f * f;
    return tri * tri * (3.0f - 2.0f * tri);
}

static inline float smooth01(float t) {
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return t * t * (3.0f - 2.0f * t);
}

/* ---- the look of one image ------------------------------------------------------------------- */

typedef struct look {
    int family;
    rgbf c0, c1, c2;     /* palette */
    float angle, ca, sa; /* orientation (radians) and its cosine/sine */
    float cycles;        /* waves/cells across the shorter side */
    float cx, cy;        /* a centre, in pixels */
    float phase;
    float bright; /* brightness multiplier */
    int noise;    /* noise amplitude, levels */
} look;

/* Class traits, then per-image variation drawn from r. */
static look make_look(int cls, int w, int h, rng *r) {
    look L;
    int c = cls < 0 ? -cls : cls;
    L.family = c % 6;
    float hue = 0.11f + 0.618034f * (float)c; /* golden-ratio spread of class hues */
    hue += rng_range(r, -0.035f, 0.035f);
    float sat = rng_range(r, 0.45f, 0.85f);
    L.c0 = hsv(hue, sat, rng_range(r, 0.75f, 0.95f));
    L.c1 = hsv(hue + 0.08f + 0.04f * (float)(c % 3), sat * 0.7f, rng_range(r, 0.35f, 0.6f));
    L.c2 = hsv(hue + 0.5f, sat * 0.5f, rng_range(r, 0.5f, 0.8f)); /* a complementary accent */
    L.angle = (float)(c % 7) * (PI_F / 7.0f) + rng_range(r, -0.21f, 0.21f);
    L.ca = cosf(L.angle);
    L.sa = sinf(L.angle);
    L.cycles = (3.0f + (float)((c * 5) % 9)) * rng_range(r, 0.75f, 1.35f);
    L.cx = rng_range(r, 0.2f, 0.8f) * (float)w;
    L.cy = rng_range(r, 0.2f, 0.8f) * (float)h;
    L.phase = rng_f(r);
    L.bright = rng_range(r, 0.82f, 1.15f);
    L.noise = rng_int(r, 2, 9);
    return L;
}

/* Family 0: sky gradient over a wavy horizon, ground with furrows, a sun. */
static void draw_landscape(uint8_t *rgb, int w, int h, const look *L, rng *r) {
    float horizon = rng_range(r, 0.42f, 0.7f) * (float)h;
    float amp = rng_range(r, 0.02f, 0.08f) * (float)h, hf = rng_range(r, 1.0f, 3.5f);
    float sun_x = rng_range(r, 0.1f, 0.9f) * (float)w, sun_y = rng_range(r, 0.1f, 0.5f) * horizon;
    float sun_r = rng_range(r, 0.04f, 0.1f) * (float)(w < h ? w : h);
    rgbf sky_top = mix(L->c0, (rgbf){40, 60, 140}, 0.35f), sky_low = mix(L->c0, (rgbf){250, 250, 250}, 0.5f);
    rgbf sun = {255, 240, 200};
    float *hy = malloc((size_t)w * sizeof(float)); /* horizon height per column [w] */
    if (!hy) {                                     /* out of memory: a plain sky, no allocation needed */
        for (size_t i = 0; i < (size_t)w * (size_t)h; i++)
            put(rgb + 3 * i, L->c0);
        return;
    }
    for (int x = 0; x < w; x++) {
        float t = (float)x / (float)w;
        hy[x] =
            horizon + amp * (sinf(2 * PI_F * (hf * t + L->phase)) + 0.4f * sinf(2 * PI_F * (2.7f * hf * t)));
    }
    float furrows = L->cycles * 2.0f;
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++) {
            rgbf c;
            if ((float)y < hy[x]) {
                c = mix(sky_top, sky_low, (float)y / hy[x]);
                float dx = (float)x - sun_x, dy = (float)y - sun_y, d2 = dx * dx + dy * dy;
                if (d2 < 4.0f * sun_r * sun_r) {
                    float d = sqrtf(d2);
                    float a = d < sun_r ? 1.0f : 0.35f * (1.0f - smooth01((d - sun_r) / sun_r));
                    c = mix(c, sun, a);
                }
            } else {
                float t = ((float)y - hy[x]) / ((float)h - hy[x] + 1.0f);
                c = mix(L->c1, mix(L->c1, L->c2, 0.5f), t);
                float f = wave(((float)x * L->ca * 0.3f + (float)y) / (float)h * furrows * (1.0f + 2.0f * t));
                c = mix(c, (rgbf){c.r * 0.7f, c.g * 0.7f, c.b * 0.7f}, 0.5f * f);
            }
            put(row + 3 * x, c);
        }
    }
    free(hy);
}

/* Family 1: oriented stripes (class angle and frequency) under a soft cross-gradient. */
static void draw_stripes(uint8_t *rgb, int w, int h, const look *L) {
    float s = L->cycles / (float)(w < h ? w : h);
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++) {
            float fx = (float)x - L->cx, fy = (float)y - L->cy;
            float t = (fx * L->ca + fy * L->sa) * s + L->phase;
            float g = (-fx * L->sa + fy * L->ca) * s * 0.15f;
            rgbf c = mix(L->c0, L->c1, wave(t));
            put(row + 3 * x, mix(c, L->c2, 0.3f * wave(g)));
        }
    }
}

/* Family 2: overlapping soft-edged discs in class colours on a graded background. */
static void draw_discs(uint8_t *rgb, int w, int h, const look *L, rng *r) {
    for (int y = 0; y < h; y++) {
        rgbf c = mix(L->c2, (rgbf){L->c2.r * 0.55f, L->c2.g * 0.55f, L->c2.b * 0.55f}, (float)y / (float)h);
        uint8_t *row = rgb + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++)
            put(row + 3 * x, c);
    }
    int n = rng_int(r, 5, 12);
    float side = (float)(w < h ? w : h);
    for (int k = 0; k < n; k++) {
        float rad = rng_range(r, 0.05f, 0.2f) * side * (8.0f / L->cycles + 0.5f) * 0.7f;
        float cx = k == 0 ? L->cx : rng_range(r, 0.0f, (float)w);
        float cy = k == 0 ? L->cy : rng_range(r, 0.0f, (float)h);
        rgbf col = mix(k & 1 ? L->c0 : L->c1, (rgbf){255, 255, 255}, rng_range(r, 0.0f, 0.25f));
        int x0 = (int)floorf(cx - rad - 2), x1 = (int)ceilf(cx + rad + 2);
        int y0 = (int)floorf(cy - rad - 2), y1 = (int)ceilf(cy + rad + 2);
        if (x0 < 0) x0 = 0;
        if (y0 < 0) y0 = 0;
        if (x1 > w) x1 = w;
        if (y1 > h) y1 = h;
        for (int y = y0; y < y1; y++) {
            uint8_t *row = rgb + (size_t)y * (size_t)w * 3;
            for (int x = x0; x < x1; x++) {
                float dx = (float)x - cx, dy = (float)y - cy;
                float d = sqrtf(dx * dx + dy * dy);
                float a = 1.0f - smooth01((d - rad + 1.5f) / 3.0f); /* 3-pixel soft edge */
                if (a <= 0) continue;
                uint8_t *p = row + 3 * x;
                rgbf old = {p[0], p[1], p[2]};
                float shade = 1.0f - 0.35f * smooth01(d / (rad + 1.0f)); /* a little volume */
                put(p, mix(old, (rgbf){col.r * shade, col.g * shade, col.b * shade}, a));
            }
        }
    }
}

/* Family 3: a rotated checkerboard with a light falloff from the centre. */
static void draw_checker(uint8_t *rgb, int w, int h, const look *L) {
    float side = (float)(w < h ? w : h), s = L->cycles * 0.8f / side;
    float inv = 1.0f / (side * side);
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++) {
            float fx = (float)x - L->cx, fy = (float)y - L->cy;
            float u = (fx * L->ca + fy * L->sa) * s + L->phase, v = (-fx * L->sa + fy * L->ca) * s;
            int parity = ((int)ffloor(u) + (int)ffloor(v)) & 1;
            rgbf c = parity ? L->c0 : L->c1;
            float fall = 1.0f - 0.5f * smooth01((fx * fx + fy * fy) * inv);
            put(row + 3 * x, (rgbf){c.r * fall, c.g * fall, c.b * fall});
        }
    }
}

/* Family 4: cloudy value noise (two octaves on a random lattice) in the class palette. */
static void draw_clouds(uint8_t *rgb, int w, int h, const look *L, rng *r) {
    enum { G = 40 }; /* lattice nodes per side: the 2nd octave spans <= 1.62*14.9*0.5*2.7 = 33 cells */
    float lat[2][G][G];
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < G; i++)
            for (int j = 0; j < G; j++)
                lat[o][i][j] = rng_f(r);
    float side = (float)(w < h ? w : h);
    float f0 = L->cycles * 0.5f / side, f1 = f0 * 2.7f;
    float lim = (float)(G - 2);
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++) {
            float n = 0;
            for (int o = 0; o < 2; o++) {
                float f = o ? f1 : f0;
                float u = (float)x * f, v = (float)y * f;
                if (u > lim) u = lim;
                if (v > lim) v = lim;
                int iu = (int)u, iv = (int)v;
                float tu = smooth01(u - (float)iu), tv = smooth01(v - (float)iv);
                float a = lat[o][iv][iu] + (lat[o][iv][iu + 1] - lat[o][iv][iu]) * tu;
                float b = lat[o][iv + 1][iu] + (lat[o][iv + 1][iu + 1] - lat[o][iv + 1][iu]) * tu;
                n += (o ? 0.35f : 0.65f) * (a + (b - a) * tv);
            }
            rgbf c = mix(L->c1, L->c0, smooth01(n * 1.6f - 0.3f));
            if (n > 0.68f) c = mix(c, L->c2, smooth01((n - 0.68f) * 8.0f));
            put(row + 3 * x, c);
        }
    }
}

/* Family 5: concentric rings around a random centre. */
static void draw_rings(uint8_t *rgb, int w, int h, const look *L) {
    float s = L->cycles * 0.7f / (float)(w < h ? w : h);
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++) {
            float fx = (float)x - L->cx, fy = (float)y - L->cy;
            float d = sqrtf(fx * fx + fy * fy) * s;
            rgbf c = mix(L->c0, L->c2, wave(d + L->phase));
            put(row + 3 * x, mix(c, L->c1, 0.4f * smooth01(d / (L->cycles * 0.7f))));
        }
    }
}

/* Up to three unrelated shapes (rectangles) in random colours: clutter that is not the class. */
static void draw_clutter(uint8_t *rgb, int w, int h, rng *r) {
    int n = rng_int(r, 0, 3);
    float side = (float)(w < h ? w : h);
    for (int k = 0; k < n; k++) {
        int rw = (int)(rng_range(r, 0.05f, 0.15f) * side) + 1,
            rh = (int)(rng_range(r, 0.05f, 0.15f) * side) + 1;
        int x0 = rng_int(r, 0, w - 1), y0 = rng_int(r, 0, h - 1);
        rgbf col = hsv(rng_f(r), rng_range(r, 0.2f, 0.9f), rng_range(r, 0.3f, 1.0f));
        for (int y = y0; y < y0 + rh && y < h; y++)
            for (int x = x0; x < x0 + rw && x < w; x++) {
                uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
                put(p, mix((rgbf){p[0], p[1], p[2]}, col, 0.85f));
            }
    }
}

/* Renders image (cls, seed) into rgb [h, w, 3]. Fails only when out of memory (the noise table). */
static imgsim_status synth_image(uint8_t *rgb, int w, int h, int cls, uint64_t seed) {
    rng r = {seed};
    rng_u64(&r);
    look L = make_look(cls, w, h, &r);
    switch (L.family) {
    case 0:
        draw_landscape(rgb, w, h, &L, &r);
        break;
    case 1:
        draw_stripes(rgb, w, h, &L);
        break;
    case 2:
        draw_discs(rgb, w, h, &L, &r);
        break;
    case 3:
        draw_checker(rgb, w, h, &L);
        break;
    case 4:
        draw_clouds(rgb, w, h, &L, &r);
        break;
    default:
        draw_rings(rgb, w, h, &L);
        break;
    }
    draw_clutter(rgb, w, h, &r);
    /* brightness and per-channel noise: rgb [h, w, 3]. Noise comes from a table of random values
     * in [-amp, amp) read at a random offset per row, so the loop has no dependency chain. */
    int amp = L.noise, bright = (int)(L.bright * 256.0f);
    size_t row = (size_t)w * 3, nt = (size_t)w * (size_t)h * 3;
    if (nt > 65536) nt = 65536;
    nt += row;
    int8_t *tab = malloc(nt);
    if (!tab) return ims_fail(NULL, IMGSIM_ERR_NOMEM, "synth: out of memory for a %dx%d image's noise", w, h);
    for (size_t i = 0; i < nt; i += 8) { /* tab [nt] */
        uint64_t b = rng_u64(&r);
        for (size_t k = 0; k < 8 && i + k < nt; k++, b >>= 8)
            tab[i + k] = (int8_t)((((int)(b & 0xFF) - 128) * amp) >> 7);
    }
    for (int y = 0; y < h; y++) {
        uint8_t *restrict p = rgb + (size_t)y * row;
        const int8_t *restrict t = tab + rng_u64(&r) % (nt - row + 1);
        for (size_t j = 0; j < row; j++) {
            int v = ((int)p[j] * bright >> 8) + t[j];
            v = v < 0 ? 0 : v;
            p[j] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
    free(tab);
    return IMGSIM_OK;
}

imgsim_status imgsim_synth_image(uint8_t *rgb, int width, int height, int cls, uint64_t seed) {
    if (!rgb) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_synth_image: rgb must not be NULL");
    if (width < 1 || height < 1 || width > 65535 || height > 65535 || cls < 0)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG,
                        "imgsim_synth_image: %dx%d, class %d: sides must be in 1..65535, class >= 0", width,
                        height, cls);
    return synth_image(rgb, width, height, cls, seed);
}

/* The dataset's size rule (see imgsim_synth_size); min_side >= 1, max_side >= min_side. */
static void synth_size(int *w, int *h, int min_side, int max_side, uint64_t seed) {
    rng r = {seed ^ 0x5A5A5A5A5A5A5A5Aull};
    int lng = rng_int(&r, min_side, max_side);
    float aspect = rng_range(&r, 0.62f, 1.0f);
    int shrt = (int)((float)lng * aspect + 0.5f);
    if (shrt < min_side) shrt = min_side;
    if (shrt > lng) shrt = lng;
    if (rng_f(&r) < 0.7f) {
        *w = lng, *h = shrt; /* landscape */
    } else {
        *w = shrt, *h = lng;
    }
}

imgsim_status imgsim_synth_size(int *width, int *height, int min_side, int max_side, uint64_t seed) {
    if (!width || !height)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_synth_size: width and height must not be NULL");
    if (min_side < 1 || max_side < min_side)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG,
                        "imgsim_synth_size: sides must satisfy 1 <= min (%d) <= max (%d)", min_side,
                        max_side);
    synth_size(width, height, min_side, max_side, seed);
    return IMGSIM_OK;
}

/* ---- dataset --------------------------------------------------------------------------------- */

void imgsim_synth_opts_init(imgsim_synth_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_classes = 10;
    o->per_class = 30;
    o->min_side = 256;
    o->max_side = 640;
    o->seed = 42;
    o->large_fraction = 0.0;
    o->large_min_side = 1200;
    o->quality = 90;
}

typedef struct synth_job {
    const char *root;
    const imgsim_synth_opts *o;
    tjhandle *tj; /* one compressor per worker */
    atomic_int failed;
    ims_err err; /* the first failure */
    imgsim_status err_st;
    atomic_flag err_taken;
    ims_progress *progress;
} synth_job;

/* Writes a file under a temporary name and renames it into place: readers never see a partial
 * image. No fsync: generated data can be regenerated, and 20,000 fsyncs would dominate the run. */
static imgsim_status write_image(const char *path, const void *data, size_t len, ims_err *e) {
    size_t lp = strlen(path);
    char *tmp = ims_malloc(lp + 32);
    if (!tmp) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, lp + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        imgsim_status st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    int bad = fwrite(data, 1, len, f) != len;
    int er = errno;
    if (fclose(f) != 0 && !bad) bad = 1, er = errno;
    if (!bad && rename(tmp, path) != 0) bad = 1, er = errno;
    if (bad) {
        remove(tmp);
        free(tmp);
        return ims_fail(e, IMGSIM_ERR_IO, "%s: cannot write: %s", path, strerror(er));
    }
    free(tmp);
    return IMGSIM_OK;
}

/* Makes image i (class i / per_class, index i % per_class) and writes it. */
static void synth_one(void *ctx, int64_t i, int worker) {
    synth_job *J = ctx;
    if (atomic_load(&J->failed)) return;
    const imgsim_synth_opts *o = J->o;
    int cls = (int)(i / o->per_class), idx = (int)(i % o->per_class);
    uint64_t s = image_seed(o->seed, cls, idx);
    rng r = {s ^ 0xA0761D6478BD642Full};
    int large = o->large_fraction > 0 && (double)rng_f(&r) < o->large_fraction;
    int w, h;
    if (large)
        synth_size(&w, &h, o->large_min_side, o->large_min_side * 4 / 3, s);
    else
        synth_size(&w, &h, o->min_side, o->max_side, s);

    char rel[64];
    snprintf(rel, sizeof rel, "class_%02d/img_%04d.jpg", cls, idx);
    char *path = ims_path_join(J->root, rel);
    uint8_t *rgb = ims_malloc_array((size_t)w * (size_t)h, 3);
    unsigned char *jpeg = NULL;
    unsigned long jsize = 0;
    ims_err err;
    ims_err_clear(&err);
    imgsim_status st = IMGSIM_OK;
    if (!path || !rgb) {
        st = ims_fail(&err, IMGSIM_ERR_NOMEM, "synth: out of memory for a %dx%d image", w, h);
    } else {
        st = synth_image(rgb, w, h, cls, s);
        if (st != IMGSIM_OK)
            ims_fail_copy(&err, NULL, st);
        else if (tjCompress2(J->tj[worker], rgb, w, 0, h, TJPF_RGB, &jpeg, &jsize, TJSAMP_420, o->quality,
                             0) != 0)
            st = ims_fail(&err, IMGSIM_ERR_INTERNAL, "%s: JPEG encoding failed: %s", path,
                          tjGetErrorStr2(J->tj[worker]));
        else
            st = write_image(path, jpeg, (size_t)jsize, &err);
    }
    if (st != IMGSIM_OK) {
        atomic_store(&J->failed, 1);
        if (!atomic_flag_test_and_set(&J->err_taken)) {
            J->err = err;
            J->err_st = st;
        }
    }
    tjFree(jpeg);
    free(rgb);
    free(path);
    if (J->progress) ims_progress_add(J->progress, 1);
}

static imgsim_status synth_dataset(const char *root, const imgsim_synth_opts *o, ims_err *e) {
    if (o->n_classes < 1 || o->n_classes > 10000 || o->per_class < 1 || o->per_class > 10000000)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                        "synth: need 1..10000 classes and 1..10000000 images per class");
    if (o->min_side < 8 || o->max_side < o->min_side || o->max_side > 16384)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                        "synth: sides must satisfy 8 <= min (%d) <= max (%d) <= 16384", o->min_side,
                        o->max_side);
    if (o->large_fraction < 0 || o->large_fraction > 1 ||
        (o->large_fraction > 0 && (o->large_min_side < 8 || o->large_min_side > 12288)))
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                        "synth: large fraction must be in [0, 1], large side in 8..12288");
    if (o->quality < 1 || o->quality > 100)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "synth: JPEG quality %d not in 1..100", o->quality);

    imgsim_status st = ims_mkdir_p(root, e);
    if (st != IMGSIM_OK) return st;
    for (int c = 0; c < o->n_classes && st == IMGSIM_OK; c++) {
        char name[32];
        snprintf(name, sizeof name, "class_%02d", c);
        char *dir = ims_path_join(root, name);
        st = dir ? ims_mkdir_p(dir, e) : ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", root);
        free(dir);
    }
    if (st != IMGSIM_OK) return st;

    ims_pool *pool = NULL;
    st = ims_pool_create(&pool, o->threads, e);
    if (st != IMGSIM_OK) return st;
    int nw = ims_pool_size(pool);
    synth_job *J = ims_calloc(1, sizeof *J);
    tjhandle *tj = ims_calloc((size_t)nw, sizeof(tjhandle));
    if (!J || !tj) {
        free(J);
        free(tj);
        ims_pool_destroy(pool);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "synth: out of memory");
    }
    for (int i = 0; i < nw && st == IMGSIM_OK; i++)
        if (!(tj[i] = tjInitCompress()))
            st = ims_fail(e, IMGSIM_ERR_INTERNAL, "synth: tjInitCompress failed");
    if (st == IMGSIM_OK) {
        J->root = root;
        J->o = o;
        J->tj = tj;
        atomic_init(&J->failed, 0);
        atomic_flag_clear(&J->err_taken);
        int64_t total = (int64_t)o->n_classes * o->per_class;
        J->progress = ims_progress_start("synth", total, o->quiet);
        ims_pool_for(pool, total, synth_one, J);
        if (J->progress) ims_progress_end(J->progress);
        if (atomic_load(&J->failed)) st = ims_fail_copy(e, &J->err, J->err_st);
    }
    for (int i = 0; i < nw; i++)
        if (tj[i]) tjDestroy(tj[i]);
    free(tj);
    free(J);
    ims_pool_destroy(pool);
    return st;
}

imgsim_status imgsim_synth_dataset(const char *root, const imgsim_synth_opts *opt) {
    imgsim_synth_opts def;
    if (!opt) {
        imgsim_synth_opts_init(&def);
        opt = &def;
    }
    if (!root) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_synth_dataset: root must not be NULL");
    return synth_dataset(root, opt, NULL);
}
