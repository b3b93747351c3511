/*
 * test_quant_calib.c: the int8 calibration maths of src/quant/ against numpy versions of the same
 * definitions (written here, run through $IMGSIM_PYTHON; also built with ASan+UBSan):
 *  - entropy (KL) thresholds of known histograms (half-normal, a ReLU spike at 0 with an
 *    exponential tail, a core with sparse far outliers, a uniform block, every 7th bin, a
 *    histogram of a single bin): the same candidate bin as numpy's search;
 *  - percentile thresholds (99.99, 99.9, 50) of the same histograms: the same bin;
 *  - ims_hist_add over batches of Laplace samples whose range grows: numpy.histogram of all
 *    samples at the final width gives the same counts (within 2 samples for bin-edge rounding),
 *    the same max |x|, min, max and count of zeros; the entropy threshold is numpy's
 *    search over the histogram without its exact zeros;
 *  - per-output-channel weight scales and s8 weights (ties at .5 included): exactly numpy's
 *    float32 max/127 and clip(rint(w / s), -127, 127);
 *  - requantisation of int32 accumulators to s8/u8 and quantisation of reals, ties and
 *    saturation included: exactly numpy's clip(rint(float32(acc) * float32(mult))).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant/quant.h"

static char g_dir[4096];
static const char *g_python;

static const char *path_in(const char *name) {
    static char buf[4][4300];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void python(const char *args) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s ref.py %s", g_dir, g_python, args);
    if (system(cmd) != 0) fail_msg("reference failed: %s", cmd);
}

/* The numpy references. Each reads text written by the test and writes one number a line. */
static const char k_ref_py[] =
    "import sys\n"
    "import numpy as np\n"
    "def smooth(d, eps=1e-4):\n"
    "    z = d == 0\n"
    "    nz = d.size - z.sum()\n"
    "    if nz == 0: return None\n"
    "    e1 = eps * z.sum() / nz\n"
    "    if e1 >= 1: return None\n"
    "    return d + np.where(z, eps, -e1)\n"
    "def kl(p, q):\n"
    "    p = p / p.sum(); q = q / q.sum()\n"
    "    m = p > 0\n"
    "    if np.any(q[m] <= 0): return np.inf\n"
    "    return float(np.sum(p[m] * np.log(p[m] / q[m])))\n"
    "def entropy_bin(h):\n"
    "    n = h.size; best = np.inf; bi = n\n"
    "    for i in range(128, n + 1):\n"
    "        p = h[:i].copy(); p[i - 1] += h[i:].sum()\n"
    "        nz = p != 0\n"
    "        m = i // 128\n"
    "        starts = np.arange(128) * m\n"
    "        sums = np.add.reduceat(h[:i], starts)\n"
    "        cnts = np.add.reduceat(nz.astype(np.float64), starts)\n"
    "        lvl = np.minimum(np.arange(i) // m, 127)\n"
    "        q = np.where(nz, sums[lvl] / np.maximum(cnts[lvl], 1), 0.0)\n"
    "        p = smooth(p); q = smooth(q)\n"
    "        if p is None or q is None: continue\n"
    "        d = kl(p, q)\n"
    "        if d < best: best = d; bi = i\n"
    "    return bi\n"
    "def pct_bin(h, pct):\n"
    "    c = np.cumsum(h)\n"
    "    return int(np.searchsorted(c, pct / 100.0 * c[-1], side='left')) + 1\n"
    "cmd = sys.argv[1]\n"
    "if cmd == 'hist':\n"
    "    out = []\n"
    "    for line in open('hists.txt'):\n"
    "        h = np.array([float(t) for t in line.split()])\n"
    "        out += [entropy_bin(h), pct_bin(h, 99.99), pct_bin(h, 99.9), pct_bin(h, 50)]\n"
    "    open('hists.ref', 'w').write('\\n'.join(str(v) for v in out) + '\\n')\n"
    "elif cmd == 'samples':\n"
    "    sizes = [int(t) for t in open('samples.txt').read().split()]\n"
    "    x = np.fromfile('samples.f32', dtype=np.float32).astype(np.float64)\n"
    "    a = np.abs(x)\n"
    "    w = np.abs(x[:sizes[0]]).max() / 2048\n"
    "    while a.max() > w * 2048: w *= 2\n"
    "    h, _ = np.histogram(a, bins=2048, range=(0, 2048 * w))\n"
    "    z = int((x == 0).sum())\n"
    "    hz = h.astype(np.float64); hz[0] -= z\n"
    "    vals = [w, a.max(), x.min(), x.max(), z, entropy_bin(hz)] + list(h)\n"
    "    open('samples.ref', 'w').write('\\n'.join(repr(float(v)) for v in vals) + '\\n')\n"
    "elif cmd == 'weights':\n"
    "    w = np.fromfile('w.f32', dtype=np.float32).reshape(int(sys.argv[2]), -1)\n"
    "    s = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)\n"
    "    s[s == 0] = 1\n"
    "    q = np.clip(np.rint(w / s[:, None]), -127, 127).astype(np.int8)\n"
    "    s.tofile('ws.ref'); q.tofile('wq.ref')\n"
    "elif cmd == 'requant':\n"
    "    acc = np.fromfile('acc.i32', dtype=np.int32)\n"
    "    mult = np.fromfile('mult.f32', dtype=np.float32)\n"
    "    v = np.rint(acc.astype(np.float32) * mult)\n"
    "    np.clip(v, -128, 127).astype(np.int8).tofile('s8.ref')\n"
    "    np.clip(v, 0, 255).astype(np.uint8).tofile('u8.ref')\n"
    "    x = np.fromfile('x.f32', dtype=np.float32)\n"
    "    s = np.fromfile('xs.f32', dtype=np.float32)\n"
    "    r = np.rint(x / s)\n"
    "    np.clip(r, -128, 127).astype(np.int8).tofile('qs8.ref')\n"
    "    np.clip(r, 0, 255).astype(np.uint8).tofile('qu8.ref')\n";

/* A deterministic uniform in [0, 1) (64-bit LCG). */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

#define NH 7

static void make_hists(double h[NH][IMS_HIST_BINS]) {
    memset(h, 0, sizeof(double) * NH * IMS_HIST_BINS);
    for (int k = 0; k < IMS_HIST_BINS; k++) {
        h[0][k] = round(1e6 * exp(-(k / 300.0) * (k / 300.0)));                 /* half-normal */
        h[1][k] = k == 0 ? 5e5 : round(1e5 * exp(-k / 150.0));                 /* ReLU spike + tail */
        h[2][k] = round(2e5 * exp(-(k / 60.0) * (k / 60.0))) + (k % 97 == 5 && k > 900 ? 1 : 0); /* outliers */
        h[3][k] = k < 1000 ? 50 : 0;                                            /* uniform block */
        h[4][k] = k % 7 == 0 ? round(1e4 * exp(-k / 400.0)) + 1 : 0;            /* sparse */
        h[5][k] = round(3e3 * (1 + sin(k / 40.0)) * exp(-k / 700.0));           /* bumpy */
    }
    h[6][0] = 1000; /* a single bin */
}

static void test_thresholds(void **state) {
    (void)state;
    static double h[NH][IMS_HIST_BINS];
    make_hists(h);
    FILE *f = fopen(path_in("hists.txt"), "w");
    assert_non_null(f);
    for (int i = 0; i < NH; i++) {
        for (int k = 0; k < IMS_HIST_BINS; k++) fprintf(f, "%.17g ", h[i][k]);
        fputc('\n', f);
    }
    fclose(f);
    python("hist");
    f = fopen(path_in("hists.ref"), "r");
    assert_non_null(f);
    const double w = 0.01;
    for (int i = 0; i < NH; i++) {
        int ref[4];
        for (int j = 0; j < 4; j++) assert_int_equal(fscanf(f, "%d", &ref[j]), 1);
        double t = ims_calib_entropy(h[i], IMS_HIST_BINS, w);
        print_message("hist %d: entropy bin %.0f (numpy %d), 99.99%% bin %.0f (numpy %d)\n", i, t / w, ref[0],
                      ims_calib_percentile(h[i], IMS_HIST_BINS, w, 99.99) / w, ref[1]);
        assert_true(fabs(t / w - ref[0]) < 1e-6);
        assert_true(fabs(ims_calib_percentile(h[i], IMS_HIST_BINS, w, 99.99) / w - ref[1]) < 1e-6);
        assert_true(fabs(ims_calib_percentile(h[i], IMS_HIST_BINS, w, 99.9) / w - ref[2]) < 1e-6);
        assert_true(fabs(ims_calib_percentile(h[i], IMS_HIST_BINS, w, 50) / w - ref[3]) < 1e-6);
    }
    fclose(f);
    /* the uniform block is kept whole, the far outliers are cut */
    assert_true(ims_calib_entropy(h[3], IMS_HIST_BINS, w) / w >= 990);
    assert_true(ims_calib_entropy(h[2], IMS_HIST_BINS, w) / w < 900);
    assert_true(ims_calib_entropy(h[0], IMS_HIST_BINS, 0) == 0);
}

/* Laplace samples in batches whose scale grows, so the histogram's width doubles along the way. */
static void test_hist_add(void **state) {
    (void)state;
    enum { NB = 5, BN = 20000 };
    static float x[NB * BN];
    ims_hist h;
    ims_hist_init(&h);
    FILE *fs = fopen(path_in("samples.txt"), "w");
    assert_non_null(fs);
    for (int b = 0; b < NB; b++) {
        double sc = b == 0 ? 0.5 : b == 3 ? 7.0 : 1.0 + b;
        for (int i = 0; i < BN; i++) {
            double u = urand() - 0.5;
            double v = -sc * (u < 0 ? -1 : 1) * log(1 - 2 * fabs(u) + 1e-300);
            x[b * BN + i] = (float)(i % 11 == 0 ? 0.0 : v);
        }
        ims_hist_add(&h, x + b * BN, BN);
        fprintf(fs, "%d ", BN);
    }
    fclose(fs);
    FILE *f = fopen(path_in("samples.f32"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(x, sizeof(float), NB * BN, f), NB * BN);
    fclose(f);
    python("samples");
    f = fopen(path_in("samples.ref"), "r");
    assert_non_null(f);
    double w, amax, mn, mx, zeros, ebin;
    assert_int_equal(fscanf(f, "%lf %lf %lf %lf %lf %lf", &w, &amax, &mn, &mx, &zeros, &ebin), 6);
    assert_true(w > h.width * 0.999999 && w < h.width * 1.000001);
    assert_true(h.amax == amax && h.min == mn && h.max == mx);
    assert_true(h.n == NB * BN);
    assert_true(h.zeros == zeros);
    /* the entropy search over the non-zero samples (bin 0 without the exact zeros), cut at max |x| */
    double et = ims_calib_threshold(&h, IMS_CALIB_ENTROPY, 0), want = fmin(ebin * h.width, amax);
    print_message("entropy threshold %g (numpy bin %g: %g)\n", et, ebin, want);
    assert_true(fabs(et - want) <= 1e-9 * want);
    double diff = 0, total = 0;
    for (int k = 0; k < IMS_HIST_BINS; k++) {
        double r;
        assert_int_equal(fscanf(f, "%lf", &r), 1);
        diff += fabs(r - h.count[k]);
        total += h.count[k];
    }
    fclose(f);
    print_message("histogram: width %g, %g samples off numpy's bins\n", h.width, diff / 2);
    assert_true(total == NB * BN);
    assert_true(diff <= 4);
    assert_true(ims_calib_threshold(&h, IMS_CALIB_MINMAX, 0) == amax);
    assert_true(ims_calib_threshold(&h, IMS_CALIB_ENTROPY, 0) < amax);
}

static void test_weights(void **state) {
    (void)state;
    enum { OC = 16, K = 75 };
    static float w[OC * K], s[OC];
    static int8_t q[OC * K];
    for (int o = 0; o < OC; o++)
        for (int j = 0; j < K; j++) {
            double v = (urand() - 0.5) * (o + 1) * 0.1;
            if (o == 3) v = 0;                                  /* a channel of zeros */
            if (o == 5 && j == 0) v = 1.27;                     /* max: scale 0.01 */
            if (o == 5 && j > 0) v = 0.01 * ((j % 9) - 4 + 0.5); /* exact .5 ties at scale 0.01 */
            w[o * K + j] = (float)v;
        }
    ims_quant_weight_scales(s, w, OC, K);
    ims_quant_weights(q, w, s, OC, K);
    FILE *f = fopen(path_in("w.f32"), "wb");
    assert_non_null(f);
    fwrite(w, sizeof w, 1, f);
    fclose(f);
    python("weights 16");
    float rs[OC];
    int8_t rq[OC * K];
    f = fopen(path_in("ws.ref"), "rb");
    assert_non_null(f);
    assert_int_equal(fread(rs, sizeof rs, 1, f), 1);
    fclose(f);
    f = fopen(path_in("wq.ref"), "rb");
    assert_non_null(f);
    assert_int_equal(fread(rq, sizeof rq, 1, f), 1);
    fclose(f);
    assert_memory_equal(s, rs, sizeof rs);
    assert_memory_equal(q, rq, sizeof rq);
    assert_true(s[3] == 1.0f);
}

static void test_requant(void **state) {
    (void)state;
    enum { N = 4096 };
    static int32_t acc[N];
    static float mult[N], x[N], xs[N];
    static int8_t s8[N], r8[N], qs8[N], rqs8[N];
    static uint8_t u8[N], ru8[N], qu8[N], rqu8[N];
    for (int i = 0; i < N; i++) {
        acc[i] = (int32_t)((urand() - 0.5) * 2e5);
        mult[i] = (float)(urand() * 0.004);
        x[i] = (float)((urand() - 0.5) * 300);
        xs[i] = (float)(0.5 + urand());
    }
    /* ties and saturation */
    int32_t ta[] = {5, 7, -5, -7, 1, 3, 255, 256, 1000, -1000, 2147483647, -2147483647 - 1};
    for (size_t i = 0; i < sizeof ta / sizeof ta[0]; i++) {
        acc[i] = ta[i];
        mult[i] = 0.5f;
    }
    float tx[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 127.5f, -128.5f, 254.5f, 255.5f, 1e9f, -1e9f};
    for (size_t i = 0; i < sizeof tx / sizeof tx[0]; i++) {
        x[i] = tx[i];
        xs[i] = 1.0f;
    }
    for (int i = 0; i < N; i++) {
        s8[i] = ims_requant_s8(acc[i], mult[i]);
        u8[i] = ims_requant_u8(acc[i], mult[i]);
        qs8[i] = ims_quant_s8(x[i], xs[i]);
        qu8[i] = ims_quant_u8(x[i], xs[i]);
    }
    const struct {
        const char *name;
        const void *p;
        size_t n;
    } files[] = {{"acc.i32", acc, sizeof acc}, {"mult.f32", mult, sizeof mult}, {"x.f32", x, sizeof x}, {"xs.f32", xs, sizeof xs}};
    for (int k = 0; k < 4; k++) {
        FILE *f = fopen(path_in(files[k].name), "wb");
        assert_non_null(f);
        fwrite(files[k].p, files[k].n, 1, f);
        fclose(f);
    }
    python("requant");
    const struct {
        const char *name;
        void *p;
        size_t n;
    } refs[] = {{"s8.ref", r8, sizeof r8}, {"u8.ref", ru8, sizeof ru8}, {"qs8.ref", rqs8, sizeof rqs8}, {"qu8.ref", rqu8, sizeof rqu8}};
    for (int k = 0; k < 4; k++) {
        FILE *f = fopen(path_in(refs[k].name), "rb");
        assert_non_null(f);
        assert_int_equal(fread(refs[k].p, refs[k].n, 1, f), 1);
        fclose(f);
    }
    assert_memory_equal(s8, r8, sizeof r8);
    assert_memory_equal(u8, ru8, sizeof ru8);
    assert_memory_equal(qs8, rqs8, sizeof rqs8);
    assert_memory_equal(qu8, rqu8, sizeof rqu8);
    /* the ties as numbers: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2 */
    assert_int_equal(s8[0], 2);
    assert_int_equal(s8[1], 4);
    assert_int_equal(s8[2], -2);
    assert_int_equal(s8[8], 127);
    assert_int_equal(u8[9], 0);
}

static void test_methods(void **state) {
    (void)state;
    assert_int_equal(ims_calib_method_parse("entropy"), IMS_CALIB_ENTROPY);
    assert_int_equal(ims_calib_method_parse("percentile"), IMS_CALIB_PERCENTILE);
    assert_int_equal(ims_calib_method_parse("minmax"), IMS_CALIB_MINMAX);
    assert_int_equal(ims_calib_method_parse("kl"), -1);
    assert_string_equal(ims_calib_method_name(IMS_CALIB_PERCENTILE), "percentile");
    assert_true(ims_quant_act_scale(25.5, 1) == (float)(25.5 / 255.0));
    assert_true(ims_quant_act_scale(12.7, 0) == (float)(12.7 / 127.0));
    assert_true(ims_quant_act_scale(0, 0) == 1.0f);
}

int main(int argc, char **argv) {
    const char *base = getenv("IMGSIM_TEST_DIR");
    g_python = getenv("IMGSIM_PYTHON");
    if (!g_python || !*g_python) g_python = "/usr/bin/python3";
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    snprintf(g_dir, sizeof g_dir, "%s/%s", base && *base ? base : "/tmp", name);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    if (system(cmd) != 0) return 1;
    FILE *f = fopen(path_in("ref.py"), "w");
    if (!f || fputs(k_ref_py, f) < 0 || fclose(f)) return 1;
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thresholds), cmocka_unit_test(test_hist_add), cmocka_unit_test(test_weights),
        cmocka_unit_test(test_requant),    cmocka_unit_test(test_methods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
