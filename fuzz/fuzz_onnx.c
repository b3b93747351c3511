/*
 * fuzz_onnx.c: libFuzzer harness for the ONNX importer through the public imgsim_model_load
 * (protobuf-c unpacking, version checks, tensor conversion, external data, attribute checks,
 * graph linking, shape inference, embedding-layer selection, BN folding and fusion).
 *
 * Input: an ONNX file. It is written to model.onnx in the harness's scratch folder, next to a
 * fixed external-data file weights.bin (WEIGHTS_FLOATS float32 values, see below), so that
 * models whose initializers point into "weights.bin" (one seed does) load their data and
 * mutated locations, offsets and lengths are tried against a real file.
 *
 * Invariants checked beyond "no crash, leak or sanitizer report":
 *   - failure is a real status (not IMGSIM_ERR_INTERNAL) with a message naming the model file;
 *   - success gives sane model info (dim >= 1, C/H/W >= 1, a layer name, a 64-digit sha256), and
 *     loading the same file again with that layer named explicitly gives the same dim and layer
 *     (skipped for a name of 255 bytes or more, which imgsim_model_info.layer cannot hold);
 *   - a model that loads, loaded again with one of the library's allocations failing
 *     (fuzz_fail_from), gives IMGSIM_ERR_NOMEM with a message, or loads when the
 *     failure point is past the last allocation, and leaks nothing.
 */
#include <string.h>

#include "fuzz.h"

#define WEIGHTS_FLOATS 4096

static const char *g_model;

static void setup(void) {
    if (g_model) return;
    imgsim_set_log_level(IMGSIM_LOG_QUIET);
    float w[WEIGHTS_FLOATS]; /* small, varied, exactly representable values */
    for (int i = 0; i < WEIGHTS_FLOATS; i++)
        w[i] = (float)((i * 37) % 97 - 48) / 64.0f;
    fuzz_write(fuzz_path(1, "weights.bin"), w, sizeof w);
    g_model = fuzz_path(0, "model.onnx");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    fuzz_write(g_model, data, size);
    imgsim_model *m = NULL;
    imgsim_status st = imgsim_model_load(&m, g_model, NULL);
    if (st != IMGSIM_OK) {
        FUZZ_CHECK(m == NULL, "a failed load returned a model");
        fuzz_check_error(st, imgsim_last_error(), g_model);
        return 0;
    }
    FUZZ_CHECK(m != NULL, "a successful load returned no model");
    imgsim_model_info info;
    FUZZ_CHECK(imgsim_model_get_info(m, &info) == IMGSIM_OK, "get_info failed: %s", imgsim_last_error());
    FUZZ_CHECK(info.dim >= 1, "feature dimension %d", info.dim);
    FUZZ_CHECK(info.in_channels >= 1 && info.in_height >= 1 && info.in_width >= 1, "input %dx%dx%d",
               info.in_channels, info.in_height, info.in_width);
    FUZZ_CHECK(info.layer[0] != 0, "no layer name");
    FUZZ_CHECK(strlen(info.sha256) == 64, "sha256 '%s'", info.sha256);
    imgsim_model_destroy(m);

    /* again with an allocation failing: a clean NOMEM (or success past the last one), no leak */
    fuzz_fail_from(data, size, 512);
    m = NULL;
    st = imgsim_model_load(&m, g_model, NULL);
    fuzz_fail_off();
    fuzz_check_nomem(st, imgsim_last_error(), g_model);
    FUZZ_CHECK((st == IMGSIM_OK) == (m != NULL), "status %d with model %p", (int)st, (void *)m);
    imgsim_model_destroy(m);

    /* the chosen layer, named explicitly, is the same layer (unless info.layer had to cut it) */
    if (strlen(info.layer) >= sizeof info.layer - 1) return 0;
    imgsim_model *m2 = NULL;
    st = imgsim_model_load(&m2, g_model, info.layer);
    FUZZ_CHECK(st == IMGSIM_OK,
               "the model loads with layer=NULL (choosing '%s') but not with that layer named: %s",
               info.layer, imgsim_last_error());
    imgsim_model_info info2;
    FUZZ_CHECK(imgsim_model_get_info(m2, &info2) == IMGSIM_OK, "get_info failed: %s", imgsim_last_error());
    FUZZ_CHECK(info2.dim == info.dim && !strcmp(info2.layer, info.layer),
               "layer '%s' (dim %d) named explicitly gives layer '%s' (dim %d)", info.layer, info.dim,
               info2.layer, info2.dim);
    imgsim_model_destroy(m2);
    return 0;
}
