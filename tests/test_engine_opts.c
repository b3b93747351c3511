/*
 * test_engine_opts.c: engine options resolved once (ims_engine_config, api/engine_opts.c): the
 * device defaults, what --batch-size=auto means on each device, and one error per mistake, each
 * refused before any model file or device is touched (imgsim_engine_load on a missing file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"
#include "imgsim.h"

static void test_defaults(void **state) {
    imgsim_engine_opts o;
    imgsim_engine_opts_init(&o);
    ims_backend_cfg c;
    assert_int_equal(ims_engine_config(&c, &o, NULL), IMGSIM_OK);
    assert_int_equal(c.precision, IMGSIM_PREC_FP32);
    assert_int_equal(c.max_batch, 32);
    assert_int_equal(c.batch_auto, 0);
    assert_int_equal(c.threads, ims_num_cores()); /* 0: all cores */
    assert_int_equal(c.normalize, 1);
    assert_int_equal(c.cached_only, 0);
    o.device = IMGSIM_DEVICE_CUDA;
    o.device_index = 3;
    o.threads = 5;
    o.engine_cache = "off";
    assert_int_equal(ims_engine_config(&c, &o, NULL), IMGSIM_OK);
    assert_int_equal(c.precision, IMGSIM_PREC_FP16); /* the CUDA default */
    assert_int_equal(c.max_batch, 32);
    assert_int_equal(c.device_index, 3);
    assert_int_equal(c.threads, 5);
    assert_string_equal(c.engine_cache, "off");
    o.precision = IMGSIM_PREC_TF32;
    o.precision_set = 1;
    assert_int_equal(ims_engine_config(&c, &o, NULL), IMGSIM_OK);
    assert_int_equal(c.precision, IMGSIM_PREC_TF32);
}

/* --batch-size=auto (max_batch 0): on CUDA at most 256, lowered by the backend to what fits;
 * on the CPU 32. --batch-size=N: N, never lowered. */
static void test_batch_size(void **state) {
    imgsim_engine_opts o;
    imgsim_engine_opts_init(&o);
    ims_backend_cfg c;
    o.max_batch = 0;
    assert_int_equal(ims_engine_config(&c, &o, NULL), IMGSIM_OK);
    assert_true(c.max_batch == 32 && c.batch_auto == 1);
    o.device = IMGSIM_DEVICE_CUDA;
    assert_int_equal(ims_engine_config(&c, &o, NULL), IMGSIM_OK);
    assert_true(c.max_batch == 256 && c.batch_auto == 1);
    o.max_batch = 7;
    assert_int_equal(ims_engine_config(&c, &o, NULL), IMGSIM_OK);
    assert_true(c.max_batch == 7 && c.batch_auto == 0);
    o.max_batch = 65536;
    assert_int_equal(ims_engine_config(&c, &o, NULL), IMGSIM_OK);
    assert_int_equal(c.max_batch, 65536);
}

/* Each mistake: its own status and a message that names it; imgsim_engine_load refuses it before
 * looking at the model file (which does not exist here). */
static void check_refused(const imgsim_engine_opts *o, imgsim_status want, const char *words) {
    ims_backend_cfg c;
    ims_err e;
    assert_int_equal(ims_engine_config(&c, o, &e), want);
    assert_non_null(strstr(e.msg, words));
    imgsim_engine *eng = (imgsim_engine *)1;
    assert_int_equal(imgsim_engine_load(&eng, "/nonexistent/model.onnx", NULL, o), want);
    assert_null(eng);
    assert_non_null(strstr(imgsim_last_error(), words));
}

static void test_mistakes(void **state) {
    imgsim_engine_opts o;
    imgsim_engine_opts_init(&o);
    o.precision = IMGSIM_PREC_FP16;
    o.precision_set = 1;
    check_refused(&o, IMGSIM_ERR_UNSUPPORTED, "precision fp16 is for --device=cuda");
    o.precision = IMGSIM_PREC_TF32;
    check_refused(&o, IMGSIM_ERR_UNSUPPORTED, "precision tf32 is for --device=cuda");
    o.device = IMGSIM_DEVICE_CUDA;
    o.precision = IMGSIM_PREC_BF16;
    check_refused(&o, IMGSIM_ERR_UNSUPPORTED, "bf16 is not supported by the CUDA engine");
    imgsim_engine_opts_init(&o);
    o.max_batch = 65537;
    check_refused(&o, IMGSIM_ERR_INVALID_ARG, "batch size 65537");
    imgsim_engine_opts_init(&o);
    o.threads = -1;
    check_refused(&o, IMGSIM_ERR_INVALID_ARG, "-1 threads");
    imgsim_engine_opts_init(&o);
    o.device = IMGSIM_DEVICE_CUDA;
    o.device_index = -2;
    check_refused(&o, IMGSIM_ERR_INVALID_ARG, "CUDA device -2");
    imgsim_engine_opts_init(&o);
    o.device = (imgsim_device)7;
    check_refused(&o, IMGSIM_ERR_INVALID_ARG, "unknown device 7");
    imgsim_engine_opts_init(&o);
    o.precision = (imgsim_precision)9;
    o.precision_set = 1;
    check_refused(&o, IMGSIM_ERR_INVALID_ARG, "unknown precision 9");
    /* valid options: the missing model file is what fails */
    imgsim_engine_opts_init(&o);
    imgsim_engine *eng = NULL;
    assert_int_not_equal(imgsim_engine_load(&eng, "/nonexistent/model.onnx", NULL, &o), IMGSIM_OK);
    assert_non_null(strstr(imgsim_last_error(), "/nonexistent/model.onnx"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_batch_size),
        cmocka_unit_test(test_mistakes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
