/*
 * test_gpu_route.c: what every GPU decoder shares (image/gpu_decode.c), through a fake
 * implementation of the interface (no GPU needed): the job's lifetime (start on a background
 * thread or now, the ready flag, failure to make the decoders, staging buffers freed with the
 * job), and the routing of JPEGs between the GPU and the CPU workers: nothing before the decoders
 * are ready, only JPEGs, every JPEG in GPU mode, and in AUTO mode the share asked of the CPU
 * taken from the smallest images the decoder could take.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "image/gpu_decode_impl.h"

static int g_init_fails, g_opened, g_closed, g_inits, g_host_live;

static void fake_set(ims_gpu_decoders *s) {
    (void)s;
}
static imgsim_status fake_open(ims_gpu_decode *d, ims_err *e) {
    g_opened++;
    return IMGSIM_OK;
}
static void fake_close(ims_gpu_decode *d) {
    g_closed++;
}
static imgsim_status fake_init(ims_gpu_decode *d, ims_err *e) {
    g_inits++;
    return g_init_fails ? ims_fail(e, IMGSIM_ERR_BACKEND, "fake: no decoders") : IMGSIM_OK;
}
static const char *fake_describe(const ims_gpu_decode *d) {
    return "fake";
}
static int fake_takes(const ims_jpeg_hdr *h, const imgsim_preprocess_opts *pre) {
    return h->sof == 0xC0; /* baseline only */
}
static void *fake_alloc(size_t n) {
    g_host_live++;
    return malloc(n);
}
static void fake_free(void *p) {
    g_host_live--;
    free(p);
}
static const ims_gpu_decode_ops fake_ops = {.name = "fake",
                                            .set_prepare = fake_set,
                                            .set_free = fake_set,
                                            .open = fake_open,
                                            .close = fake_close,
                                            .init = fake_init,
                                            .describe = fake_describe,
                                            .takes = fake_takes,
                                            .host_alloc = fake_alloc,
                                            .host_free = fake_free};

/* A header-only JPEG (SOI, SOF with three components 4:2:0, SOS): what routing reads. */
static size_t fake_jpeg(uint8_t *b, int w, int h, int sof) {
    const uint8_t x[] = {0xFF,       0xD8,
                         0xFF,       (uint8_t)sof,
                         0x00,       0x11,
                         0x08,       (uint8_t)(h >> 8),
                         (uint8_t)h, (uint8_t)(w >> 8),
                         (uint8_t)w, 0x03,
                         0x01,       0x22,
                         0x00,       0x02,
                         0x11,       0x01,
                         0x03,       0x11,
                         0x01,       0xFF,
                         0xDA,       0x00,
                         0x02};
    memcpy(b, x, sizeof x);
    return sizeof x;
}

static ims_gpu_decode *open_job(ims_gpu_decoders *set, imgsim_decode mode, imgsim_preprocess_opts *pre) {
    imgsim_preprocess_opts_init(pre);
    ims_gpu_decode_cfg cfg = {.max_batch = 8, .pre = pre, .mode = mode, .cpu_threads = 1};
    ims_gpu_decode *d = NULL;
    assert_int_equal(ims_gpu_decode_open(&d, set, &cfg, NULL), IMGSIM_OK);
    return d;
}

static void test_lifetime(void **state) {
    ims_gpu_decoders set = {.ops = &fake_ops, .device = 0, .max_batch = 8, .cpu_threads = 1};
    imgsim_preprocess_opts pre;
    uint8_t jpg[64];
    size_t n = fake_jpeg(jpg, 640, 480, 0xC0);
    ims_gpu_decode *d = NULL;
    assert_int_equal(ims_gpu_decode_open(&d, NULL, &(ims_gpu_decode_cfg){.pre = &pre}, NULL),
                     IMGSIM_ERR_INVALID_ARG);
    /* CPU mode: the decoders are never made, nothing goes to the GPU */
    d = open_job(&set, IMGSIM_DECODE_CPU, &pre);
    ims_gpu_decode_start(d);
    assert_int_equal(ims_gpu_decode_ready(d), 0);
    assert_int_equal(ims_gpu_decode_route(d, 0, jpg, n), 0);
    assert_int_equal(g_inits, 0);
    assert_non_null(ims_gpu_decode_host_buffer(d, 100));
    assert_non_null(ims_gpu_decode_host_buffer(d, 100));
    assert_int_equal(g_host_live, 2);
    ims_gpu_decode_destroy(d);
    assert_int_equal(g_host_live, 0); /* freed with the job */
    assert_int_equal(g_closed, 1);
    /* AUTO: made on a background thread; ready once joined */
    d = open_job(&set, IMGSIM_DECODE_AUTO, &pre);
    ims_gpu_decode_start(d);
    assert_true(ims_gpu_decode_join(d) >= 0);
    assert_int_equal(ims_gpu_decode_ready(d), 1);
    assert_int_equal(g_inits, 1);
    ims_gpu_decode_destroy(d);
    /* GPU mode, the decoders cannot be made: -1, everything to the CPU */
    g_init_fails = 1;
    d = open_job(&set, IMGSIM_DECODE_GPU, &pre);
    ims_gpu_decode_start(d); /* (synchronous: the first image needs them) */
    assert_int_equal(g_inits, 2);
    assert_int_equal(ims_gpu_decode_ready(d), -1);
    assert_int_equal(ims_gpu_decode_route(d, 0, jpg, n), 0);
    ims_gpu_decode_destroy(d);
    g_init_fails = 0;
    assert_int_equal(g_opened, g_closed);
    ims_gpu_decode_destroy(NULL);
}

static void test_gpu_mode(void **state) {
    ims_gpu_decoders set = {.ops = &fake_ops, .max_batch = 8};
    imgsim_preprocess_opts pre;
    ims_gpu_decode *d = open_job(&set, IMGSIM_DECODE_GPU, &pre);
    uint8_t jpg[64], png[16] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    size_t n = fake_jpeg(jpg, 100, 100, 0xC2);
    assert_int_equal(ims_gpu_decode_route(d, 0, jpg, n), 0); /* not ready yet */
    ims_gpu_decode_start(d);
    assert_int_equal(ims_gpu_decode_ready(d), 1);
    assert_int_equal(ims_gpu_decode_route(d, 0, jpg, n), 1); /* every JPEG, even one it may refuse */
    assert_int_equal(ims_gpu_decode_route(d, 1, png, sizeof png), 0);
    ims_gpu_decode_destroy(d);
}

#define N_SIZES 10
#define PER_SIZE 256

/* AUTO: with share s asked of the CPU, about s of the JPEGs the decoder could take go to the CPU,
 * and they are the smallest (no image routed to the CPU is larger than one routed to the GPU,
 * except within the one size class the bound falls in). */
static void test_auto_share(void **state) {
    ims_gpu_decoders set = {.ops = &fake_ops, .max_batch = 8};
    imgsim_preprocess_opts pre;
    ims_gpu_decode *d = open_job(&set, IMGSIM_DECODE_AUTO, &pre);
    ims_gpu_decode_start(d);
    ims_gpu_decode_join(d);
    static uint8_t buf[N_SIZES * PER_SIZE][64];
    size_t len[N_SIZES * PER_SIZE];
    int side[N_SIZES * PER_SIZE];
    for (int i = 0; i < N_SIZES * PER_SIZE; i++) {
        side[i] = 32 << (i % N_SIZES) / 2; /* 32x32 .. 512x512 in half octaves of pixel count */
        int w = (i % N_SIZES) % 2 ? side[i] * 3 / 2 : side[i];
        len[i] = fake_jpeg(buf[i], w, side[i], 0xC0);
        side[i] = w * side[i]; /* from here on: pixels */
    }
    uint8_t prog[64];
    size_t plen = fake_jpeg(prog, 4000, 3000, 0xC2);
    /* nothing seen yet: every candidate to the GPU (the CPU share has no sizes to act on) */
    ims_gpu_decode_set_cpu_share(d, 0.5);
    for (int i = 0; i < N_SIZES * PER_SIZE; i++)
        assert_int_equal(ims_gpu_decode_route(d, i, buf[i], len[i]), 1);
    assert_int_equal(ims_gpu_decode_route(d, 0, prog, plen), 0); /* one the decoder does not take */
    const double shares[] = {0.0, 0.1, 0.3, 0.5, 0.77, 1.0};
    for (size_t k = 0; k < sizeof shares / sizeof *shares; k++) {
        ims_gpu_decode_set_cpu_share(d, shares[k]);
        int cpu = 0, max_cpu = 0, min_gpu = 1 << 30;
        for (int i = 0; i < N_SIZES * PER_SIZE; i++) {
            int g = ims_gpu_decode_route(d, i, buf[i], len[i]);
            cpu += !g;
            if (!g && side[i] > max_cpu) max_cpu = side[i];
            if (g && side[i] < min_gpu) min_gpu = side[i];
        }
        double got = (double)cpu / (N_SIZES * PER_SIZE);
        print_message("share %.2f: %.3f to the CPU\n", shares[k], got);
        assert_true(got > shares[k] - 0.04 && got < shares[k] + 0.04);
        if (cpu && cpu < N_SIZES * PER_SIZE) assert_true(max_cpu <= min_gpu);
    }
    ims_gpu_decode_destroy(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifetime),
        cmocka_unit_test(test_gpu_mode),
        cmocka_unit_test(test_auto_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
