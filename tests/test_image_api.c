/*
 * test_image_api.c: unit tests of the image API (cmocka): defaults, memory vs file parity,
 * resize invariants with closed-form answers (identity size, constant images at every size),
 * argument checks, the EXIF reader on malformed blocks, and allocation failures injected into
 * decode + preprocess (each must fail cleanly with IMGSIM_ERR_NOMEM, never crash or leak).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include <cmocka.h>

#include "core/core.h"
#include "image/image.h"
#include "image/image_priv.h"

/* A w x h RGB test pattern compressed as a JPEG (caller tjFree()s *jpg). */
static void make_jpeg(unsigned char **jpg, unsigned long *size, int w, int h) {
    unsigned char *px = malloc((size_t)w * h * 3);
    assert_non_null(px);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = px + ((size_t)y * w + x) * 3;
            p[0] = (unsigned char)(x * 255 / (w > 1 ? w - 1 : 1));
            p[1] = (unsigned char)(y * 255 / (h > 1 ? h - 1 : 1));
            p[2] = (unsigned char)((x ^ y) & 255);
        }
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    *jpg = NULL;
    assert_int_equal(tjCompress2(tj, px, w, 0, h, TJPF_RGB, jpg, size, TJSAMP_420, 90, 0), 0);
    tjDestroy(tj);
    free(px);
}

static void test_defaults(void **state) {
    (void)state;
    imgsim_preprocess_opts o;
    imgsim_preprocess_opts_init(&o);
    assert_int_equal(o.height, 224);
    assert_int_equal(o.width, 224);
    assert_true(o.mean[0] == 0.485f && o.mean[1] == 0.456f && o.mean[2] == 0.406f);
    assert_true(o.std[0] == 0.229f && o.std[1] == 0.224f && o.std[2] == 0.225f);
    assert_true(o.max_pixels == 89478485u);
    assert_int_equal(o.exif_rotate, 1);
    assert_int_equal(o.dct_scaling, 0); /* opt-in since issue 12 */
}

static void test_mem_equals_file(void **state) {
    (void)state;
    unsigned char *jpg;
    unsigned long size;
    make_jpeg(&jpg, &size, 321, 243);
    const char *dir = getenv("IMGSIM_TEST_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/test_image_api.jpg", dir ? dir : "/tmp");
    if (dir) ims_mkdir_p(dir, NULL);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(jpg, 1, size, f), size);
    fclose(f);
    float *a = malloc(sizeof(float) * 3 * 224 * 224), *b = malloc(sizeof(float) * 3 * 224 * 224);
    assert_int_equal(imgsim_preprocess_mem(a, jpg, size, NULL), IMGSIM_OK);
    assert_int_equal(imgsim_preprocess_file(b, path, NULL), IMGSIM_OK);
    assert_memory_equal(a, b, sizeof(float) * 3 * 224 * 224);
    /* a different size through the options */
    imgsim_preprocess_opts o;
    imgsim_preprocess_opts_init(&o);
    o.height = 17, o.width = 300;
    float *c = malloc(sizeof(float) * 3 * 17 * 300);
    assert_int_equal(imgsim_preprocess_mem(c, jpg, size, &o), IMGSIM_OK);
    /* the decoded size */
    ims_decode_opts d = {0, 1, 0, 0, 0};
    ims_image img;
    assert_int_equal(ims_image_decode(&img, jpg, size, &d, "mem", NULL), IMGSIM_OK);
    assert_int_equal(img.w, 321);
    assert_int_equal(img.h, 243);
    ims_image_free(&img);
    ims_image_free(&img); /* twice: a no-op */
    remove(path);
    free(a), free(b), free(c);
    tjFree(jpg);
}

/* Same size in and out: the resize is the identity, so out = (v / 255 - mean) / std. */
static void test_identity(void **state) {
    (void)state;
    const int w = 37, h = 11;
    ims_image img = {w, h, malloc((size_t)w * h * 3)};
    for (int i = 0; i < w * h * 3; i++) img.px[i] = (uint8_t)(i * 7);
    const float mean[3] = {0.1f, 0.2f, 0.3f}, std[3] = {0.5f, 0.25f, 2.0f};
    float *out = malloc(sizeof(float) * 3 * w * h);
    assert_int_equal(ims_preprocess_rgb(out, &img, h, w, mean, std, NULL, NULL), IMGSIM_OK);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < w * h; i++) {
            float want = ((float)img.px[3 * i + c] / 255.0f - mean[c]) / std[c];
            assert_true(out[c * w * h + i] == want);
        }
    free(out);
    free(img.px);
}

/* A constant image stays constant at every size (coefficients sum to 1 within 2^-22). */
static void test_constant_all_sizes(void **state) {
    (void)state;
    const int sizes[][2] = {{1, 1}, {1, 500}, {500, 1}, {3, 2}, {224, 224}, {640, 480}, {1000, 7}, {2, 999}};
    const int outs[][2] = {{224, 224}, {1, 1}, {7, 300}, {300, 7}, {2, 3}};
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int w = sizes[s][0], h = sizes[s][1];
        ims_image img = {w, h, malloc((size_t)w * h * 3)};
        for (int i = 0; i < w * h; i++) img.px[3 * i] = 77, img.px[3 * i + 1] = 0, img.px[3 * i + 2] = 255;
        for (size_t o = 0; o < sizeof outs / sizeof outs[0]; o++) {
            int oh = outs[o][0], ow = outs[o][1];
            size_t ss = ims_preprocess_scratch_size(w, h, ow, oh);
            assert_true(ss > 0);
            void *scratch = malloc(ss);
            float *out = malloc(sizeof(float) * 3 * oh * ow);
            assert_int_equal(ims_preprocess_rgb(out, &img, oh, ow, mean, std, scratch, NULL), IMGSIM_OK);
            const uint8_t v[3] = {77, 0, 255};
            for (int c = 0; c < 3; c++) {
                float want = ((float)v[c] / 255.0f - mean[c]) / std[c];
                for (int i = 0; i < oh * ow; i++) assert_true(out[c * oh * ow + i] == want);
            }
            free(out);
            free(scratch);
        }
        free(img.px);
    }
}

static void test_bad_args(void **state) {
    (void)state;
    float out[3 * 4];
    uint8_t px[3] = {1, 2, 3};
    ims_image img = {1, 1, px};
    const float mean[3] = {0, 0, 0}, std0[3] = {1, 0, 1}, std1[3] = {1, 1, 1};
    ims_err e;
    assert_int_equal(ims_preprocess_rgb(out, &img, 2, 2, mean, std0, NULL, &e), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(ims_preprocess_rgb(out, &img, 0, 2, mean, std1, NULL, &e), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(ims_preprocess_rgb(NULL, &img, 2, 2, mean, std1, NULL, &e), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(imgsim_preprocess_mem(NULL, px, 3, NULL), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(imgsim_preprocess_file(out, NULL, NULL), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(imgsim_preprocess_mem(out, px, 0, NULL), IMGSIM_ERR_FORMAT);
    assert_non_null(strstr(imgsim_last_error(), "empty"));
    imgsim_preprocess_opts o;
    imgsim_preprocess_opts_init(&o);
    o.height = 0;
    unsigned char *jpg;
    unsigned long size;
    make_jpeg(&jpg, &size, 8, 8);
    float *big = malloc(sizeof(float) * 3 * 224 * 224);
    assert_int_equal(imgsim_preprocess_mem(big, jpg, size, &o), IMGSIM_ERR_INVALID_ARG);
    free(big);
    tjFree(jpg);
    assert_int_equal(ims_image_sniff(NULL, 0), IS_FMT_UNKNOWN);
    assert_string_equal(ims_imgfmt_name(IS_FMT_WEBP), "WebP");
}

/* The EXIF reader on well-formed and malformed blocks (every read must stay in bounds). */
static void test_exif(void **state) {
    (void)state;
    /* little-endian, one entry: orientation SHORT 6 */
    uint8_t le[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(ims_exif_orientation(le, sizeof le), 6);
    uint8_t with_hdr[6 + sizeof le];
    memcpy(with_hdr, "Exif\0\0", 6);
    memcpy(with_hdr + 6, le, sizeof le);
    assert_int_equal(ims_exif_orientation(with_hdr, sizeof with_hdr), 6);
    /* truncated at every length: never out of bounds, 1 when the entry is cut */
    for (size_t n = 0; n < 22; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, le, n);
        assert_int_equal(ims_exif_orientation(cut, n), 1);
        free(cut);
    }
    uint8_t bad[sizeof le];
    memcpy(bad, le, sizeof le);
    bad[4] = 0xF0, bad[5] = 0xFF, bad[6] = 0xFF, bad[7] = 0xFF; /* IFD offset far away */
    assert_int_equal(ims_exif_orientation(bad, sizeof bad), 1);
    memcpy(bad, le, sizeof le);
    bad[8] = 0xFF, bad[9] = 0xFF; /* 65535 entries claimed: the ones present are read (as PIL) */
    assert_int_equal(ims_exif_orientation(bad, sizeof bad), 6);
    bad[10] = 0x13; /* ... and the rest are not: no read past the block */
    assert_int_equal(ims_exif_orientation(bad, sizeof bad), 1);
    memcpy(bad, le, sizeof le);
    bad[18] = 9; /* out of range value */
    assert_int_equal(ims_exif_orientation(bad, sizeof bad), 1);
    memcpy(bad, le, sizeof le);
    bad[12] = 2; /* ASCII type: not an orientation */
    assert_int_equal(ims_exif_orientation(bad, sizeof bad), 1);
    assert_int_equal(ims_exif_orientation(NULL, 0), 1);
    uint8_t junk[] = "XXXXXXXXXXXXXXXXXXXX";
    assert_int_equal(ims_exif_orientation(junk, sizeof junk), 1);
}

/* Injected allocation failures during decode and resize: NOMEM or success, nothing else. */
static void test_alloc_faults(void **state) {
    (void)state;
    unsigned char *jpg;
    unsigned long size;
    make_jpeg(&jpg, &size, 99, 61);
    ims_decode_opts d = {0, 1, 0, 0, 0};
    const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    float *out = malloc(sizeof(float) * 3 * 50 * 40);
    int failures = 0;
    for (long n = 0; n < 8; n++) {
        ims_alloc_fail_after(n);
        ims_image img;
        ims_err e;
        imgsim_status st = ims_image_decode(&img, jpg, size, &d, "fault.jpg", &e);
        if (st == IMGSIM_OK) st = ims_preprocess_rgb(out, &img, 50, 40, mean, std, NULL, &e);
        ims_alloc_fail_after(-1);
        if (st != IMGSIM_OK) {
            assert_int_equal(st, IMGSIM_ERR_NOMEM);
            failures++;
        }
        ims_image_free(&img);
    }
    assert_true(failures > 0); /* the injection did reach our allocations */
    free(out);
    tjFree(jpg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_mem_equals_file),
        cmocka_unit_test(test_identity),     cmocka_unit_test(test_constant_all_sizes),
        cmocka_unit_test(test_bad_args),     cmocka_unit_test(test_exif),
        cmocka_unit_test(test_alloc_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
