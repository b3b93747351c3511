/*
 * test_api_store.c: the public store, compatibility and dedup calls, through imgsim.h alone (also
 * built with ASan+UBSan). References come from numpy/hashlib through $IMGSIM_PYTHON:
 *  - stores extracted with imgsim_extract from two random-weight models: the meta of each names
 *    its model (sha256 as hashlib computes it), a query store from the same model is compatible,
 *    one from the other model is refused (MISMATCH, "different models"), and so is an engine of
 *    the other model; the features read back equal numpy's np.load of features.npy;
 *  - a store whose meta.json is gone is refused as incomplete;
 *  - imgsim_store_check_reusable accepts the store for the same images and settings and refuses
 *    it for another model, dtype or preprocessing; the fingerprint it compares is in the meta;
 *  - imgsim_preprocess_rgb of the pixels PIL decodes equals imgsim_preprocess_file of the file;
 *  - imgsim_dedup of a float32 and a float16 matrix with planted near-duplicates (through a store
 *    written by numpy, and straight from memory) gives exactly numpy's float64 pair set, each score
 *    within 1e-6 of numpy's.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "imgsim.h"
#include "imgsim_synth.h"

static char g_dir[4096];
static const char *g_python;

/* Runs the Python reference script with args; fails the test on a non-zero exit. */
static void python(const char *args) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s ref.py %s", g_dir, g_python, args);
    if (system(cmd) != 0) fail_msg("reference failed: %s", cmd);
}

static const char k_ref_py[] =
    "import hashlib, json, os, sys\n"
    "import numpy as np\n"
    "from PIL import Image\n"
    "cmd, d = sys.argv[1], sys.argv[2]\n"
    "if cmd == 'images':\n"
    "    rng = np.random.default_rng(5)\n"
    "    for c in range(2):\n"
    "        os.makedirs(os.path.join(d, 'c%d' % c), exist_ok=True)\n"
    "        for i in range(2):\n"
    "            a = rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)\n"
    "            a[..., c] = 255 - a[..., c] // 4\n"
    "            Image.fromarray(a).save(os.path.join(d, 'c%d' % c, 'i%d.png' % i))\n"
    "elif cmd == 'rgb':\n"  /* an image's RGB bytes as PIL decodes it, and its size */
    "    im = Image.open(d).convert('RGB')\n"
    "    open(sys.argv[3], 'wb').write(im.tobytes())\n"
    "    open(sys.argv[3] + '.size', 'w').write('%d %d' % im.size)\n"
    "elif cmd == 'sha':\n"
    "    open(sys.argv[3], 'w').write(hashlib.sha256(open(d, 'rb').read()).hexdigest())\n"
    "elif cmd == 'features':\n"  /* a store's features as float64 text, one number a line */
    "    np.savetxt(sys.argv[3], np.load(os.path.join(d, 'features.npy')).astype(np.float64).ravel(), '%.17g')\n"
    "elif cmd == 'dedup':\n"  /* d: a store folder; a matrix with near-duplicates, its raw bytes and pairs */
    "    dt = np.float16 if sys.argv[3] == 'f16' else np.float32\n"
    "    thr = float(np.float32(float(sys.argv[4])))\n"
    "    rng = np.random.default_rng(11)\n"
    "    n, dim = 700, 48\n"  /* more than one 512-row tile */
    "    X = rng.standard_normal((n, dim))\n"
    "    for a, b in rng.integers(0, n, (80, 2)):\n"  /* scores from ~0.93 to ~1, across the threshold */
    "        X[b] = X[a] + rng.uniform(0.02, 0.4) * rng.standard_normal(dim)\n"
    "    X /= np.linalg.norm(X, axis=1, keepdims=True)\n"
    "    X = X.astype(dt)\n"
    "    os.makedirs(d, exist_ok=True)\n"
    "    np.save(os.path.join(d, 'features.npy'), X)\n"
    "    X.tofile(os.path.join(d, 'x.raw'))\n"
    "    with open(os.path.join(d, 'manifest.tsv'), 'w') as f:\n"
    "        f.write('row\\tpath\\tlabel\\tstatus\\terror\\n')\n"
    "        for i in range(n): f.write('%d\\tr%d.jpg\\t\\tok\\t\\n' % (i, i))\n"
    "    json.dump({'dim': dim, 'rows': n, 'dtype': 'float16' if dt == np.float16 else 'float32'},\n"
    "              open(os.path.join(d, 'meta.json'), 'w'))\n"
    "    S = X.astype(np.float64) @ X.astype(np.float64).T\n"
    "    i, j = np.nonzero(np.triu(S >= thr, k=1))\n"
    "    with open(os.path.join(d, 'pairs.txt'), 'w') as f:\n"
    "        f.write('%d %d\\n' % (n, dim))\n"
    "        for a, b in zip(i, j): f.write('%d %d %.17g\\n' % (a, b, S[a, b]))\n";

static char *path_in(const char *name) {
    static char p[8][4600];
    static int next;
    char *s = p[next++ % 8];
    snprintf(s, sizeof p[0], "%s/%s", g_dir, name);
    return s;
}

static void read_text(char *buf, size_t n, const char *path) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = 0;
    fclose(f);
}

/* ---- stores made by two models ------------------------------------------------------------ */

static char m1[4600], m2[4600];

/* Extracts the image folder into store with the model at model_path. */
static void extract(const char *model_path, const char *store) {
    imgsim_engine_opts eo;
    imgsim_engine_opts_init(&eo);
    eo.max_batch = 2;
    eo.threads = 2;
    imgsim_engine *e = NULL;
    if (imgsim_engine_load(&e, model_path, NULL, &eo) != IMGSIM_OK) fail_msg("%s", imgsim_last_error());
    imgsim_extract_opts xo;
    imgsim_extract_opts_init(&xo);
    xo.workers = 2;
    xo.quiet = 1;
    if (imgsim_extract(e, model_path, path_in("images"), store, &xo, NULL) != IMGSIM_OK)
        fail_msg("%s", imgsim_last_error());
    imgsim_engine_destroy(e);
}

static int setup_models(void **state) {
    (void)state;
    python("images images");
    snprintf(m1, sizeof m1, "%s", path_in("m1.onnx"));
    snprintf(m2, sizeof m2, "%s", path_in("m2.onnx"));
    if (imgsim_model_init(m1, "resnet18", 1) != IMGSIM_OK || imgsim_model_init(m2, "resnet18", 2) != IMGSIM_OK) {
        fprintf(stderr, "%s\n", imgsim_last_error());
        return -1;
    }
    extract(m1, path_in("a")); /* the gallery of every test below */
    return 0;
}

static void test_meta_names_model(void **state) {
    (void)state;
    imgsim_store *s = NULL;
    assert_int_equal(imgsim_store_open(&s, path_in("a")), IMGSIM_OK);
    imgsim_store_info si;
    imgsim_store_meta m;
    assert_int_equal(imgsim_store_get_info(s, &si), IMGSIM_OK);
    assert_int_equal(imgsim_store_get_meta(s, &m), IMGSIM_OK);
    char sha[80];
    python("sha m1.onnx sha1.txt");
    read_text(sha, sizeof sha, path_in("sha1.txt"));
    assert_string_equal(m.model_sha256, sha);
    assert_string_equal(m.model_path, m1);
    assert_string_equal(m.format, "imgsim-store-1");
    assert_int_equal(m.dim, 512);
    assert_int_equal(si.dim, 512);
    assert_int_equal(si.n, 4);
    assert_int_equal(m.stats.ok, 4);
    assert_int_equal(m.stats.inputs, 4);
    assert_int_equal(si.dtype, IMGSIM_F32);
    assert_string_equal(m.dtype, "float32");
    assert_string_equal(m.precision, "fp32");
    assert_string_equal(m.device, "cpu");
    assert_int_equal(m.normalized, 1);
    assert_int_equal(si.unit_norm, 1);
    assert_true(m.has_preprocessing && m.pre.height == 224 && m.pre.width == 224 && m.pre.exif_rotate);
    assert_true(m.layer[0] != 0);
    assert_string_equal(si.paths[0], "c0/i0.png");
    assert_string_equal(si.labels[3], "c1");
    /* the features equal numpy's reading of features.npy */
    python("features a feat.txt");
    FILE *f = fopen(path_in("feat.txt"), "r");
    assert_non_null(f);
    float *x = malloc(sizeof(float) * 4 * 512);
    assert_int_equal(imgsim_store_features_f32(x, s, 0), IMGSIM_OK);
    for (int i = 0; i < 4 * 512; i++) {
        double v;
        assert_int_equal(fscanf(f, "%lf", &v), 1);
        assert_true((double)x[i] == v);
        assert_true(((const float *)si.features)[i] == x[i]);
    }
    fclose(f);
    free(x);
    imgsim_store_close(s);
    imgsim_store_close(NULL);
}

static void test_other_model_refused(void **state) {
    (void)state;
    extract(m1, path_in("q1"));
    extract(m2, path_in("q2"));
    imgsim_store *a = NULL, *q1 = NULL, *q2 = NULL;
    assert_int_equal(imgsim_store_open(&a, path_in("a")), IMGSIM_OK);
    assert_int_equal(imgsim_store_open(&q1, path_in("q1")), IMGSIM_OK);
    assert_int_equal(imgsim_store_open(&q2, path_in("q2")), IMGSIM_OK);
    assert_int_equal(imgsim_store_check_compatible(a, q1, NULL), IMGSIM_OK);
    assert_int_equal(imgsim_store_check_compatible(a, q2, NULL), IMGSIM_ERR_MISMATCH);
    assert_non_null(strstr(imgsim_last_error(), "different models"));
    assert_non_null(strstr(imgsim_last_error(), path_in("q2")));

    imgsim_engine *e1 = NULL, *e2 = NULL;
    assert_int_equal(imgsim_engine_load(&e1, m1, NULL, NULL), IMGSIM_OK);
    assert_int_equal(imgsim_engine_load(&e2, m2, NULL, NULL), IMGSIM_OK);
    assert_int_equal(imgsim_store_check_compatible(a, q1, e1), IMGSIM_OK);
    assert_int_equal(imgsim_store_check_compatible(a, NULL, e2), IMGSIM_ERR_MISMATCH);
    assert_non_null(strstr(imgsim_last_error(), m2));
    assert_non_null(strstr(imgsim_last_error(), "sha256 differs"));
    imgsim_engine_destroy(e1);
    imgsim_engine_destroy(e2);
    imgsim_store_close(a);
    imgsim_store_close(q1);
    imgsim_store_close(q2);
}

static void test_incomplete_refused(void **state) {
    (void)state;
    const char *dir = path_in("partial");
    extract(m1, dir);
    assert_int_equal(imgsim_store_exists(dir), 1);
    assert_int_equal(unlink(path_in("partial/meta.json")), 0);
    assert_int_equal(imgsim_store_exists(dir), 1); /* still a store, an incomplete one */
    imgsim_store *s = (imgsim_store *)&s;
    assert_int_equal(imgsim_store_open(&s, dir), IMGSIM_ERR_IO);
    assert_null(s);
    assert_non_null(strstr(imgsim_last_error(), "incomplete"));
    assert_non_null(strstr(imgsim_last_error(), dir));
    assert_int_equal(imgsim_store_exists(path_in("images")), 0);
}

static void test_reusable(void **state) {
    (void)state;
    imgsim_dataset *ds = NULL;
    imgsim_model *a = NULL, *b = NULL;
    assert_int_equal(imgsim_dataset_open(&ds, path_in("images")), IMGSIM_OK);
    assert_int_equal(imgsim_model_load(&a, m1, NULL), IMGSIM_OK);
    assert_int_equal(imgsim_model_load(&b, m2, NULL), IMGSIM_OK);
    imgsim_extract_opts xo;
    imgsim_extract_opts_init(&xo);
    assert_int_equal(imgsim_store_check_reusable(path_in("a"), ds, a, NULL, &xo), IMGSIM_OK);
    assert_int_equal(imgsim_store_check_reusable(path_in("a"), ds, b, NULL, &xo), IMGSIM_ERR_MISMATCH);
    assert_non_null(strstr(imgsim_last_error(), "another model"));
    xo.dtype = IMGSIM_F16;
    assert_int_equal(imgsim_store_check_reusable(path_in("a"), ds, a, NULL, &xo), IMGSIM_ERR_MISMATCH);
    xo.dtype = IMGSIM_F32;
    xo.pre.exif_rotate = 0;
    assert_int_equal(imgsim_store_check_reusable(path_in("a"), ds, a, NULL, &xo), IMGSIM_ERR_MISMATCH);
    assert_int_equal(imgsim_store_check_reusable(path_in("nothing"), ds, a, NULL, NULL), IMGSIM_ERR_IO);
    char fp[65];
    assert_int_equal(imgsim_dataset_fingerprint(fp, ds), IMGSIM_OK);
    imgsim_store *s = NULL;
    imgsim_store_meta m;
    assert_int_equal(imgsim_store_open(&s, path_in("a")), IMGSIM_OK);
    imgsim_store_get_meta(s, &m);
    assert_string_equal(m.inputs_fingerprint, fp);
    imgsim_store_close(s);
    imgsim_model_destroy(a);
    imgsim_model_destroy(b);
    imgsim_dataset_destroy(ds);
}

/* imgsim_preprocess_rgb of PIL's pixels equals imgsim_preprocess_file of the PNG. */
static void test_preprocess_rgb(void **state) {
    (void)state;
    python("rgb images/c1/i1.png rgb.raw");
    char sz[64];
    read_text(sz, sizeof sz, path_in("rgb.raw.size"));
    int w = 0, h = 0;
    assert_int_equal(sscanf(sz, "%d %d", &w, &h), 2);
    uint8_t *rgb = malloc((size_t)w * h * 3);
    FILE *f = fopen(path_in("rgb.raw"), "rb");
    assert_non_null(f);
    assert_int_equal(fread(rgb, 1, (size_t)w * h * 3, f), (size_t)w * h * 3);
    fclose(f);
    imgsim_preprocess_opts o;
    imgsim_preprocess_opts_init(&o);
    o.height = 40, o.width = 30;
    float *x = malloc(sizeof(float) * 3 * 40 * 30), *y = malloc(sizeof(float) * 3 * 40 * 30);
    assert_int_equal(imgsim_preprocess_rgb(x, rgb, w, h, &o), IMGSIM_OK);
    assert_int_equal(imgsim_preprocess_file(y, path_in("images/c1/i1.png"), &o), IMGSIM_OK);
    assert_memory_equal(x, y, sizeof(float) * 3 * 40 * 30);
    assert_int_equal(imgsim_preprocess_rgb(x, rgb, 0, h, &o), IMGSIM_ERR_INVALID_ARG);
    free(x), free(y), free(rgb);
}

/* ---- dedup against numpy ----------------------------------------------------------------- */

typedef struct pairs {
    int64_t (*ij)[2];
    float *s;
    size_t n, cap;
} pairs;

static void on_pair(void *user, int64_t i, int64_t j, float score) {
    pairs *p = user;
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->ij = realloc(p->ij, p->cap * sizeof *p->ij);
        p->s = realloc(p->s, p->cap * sizeof *p->s);
        assert_non_null(p->ij);
        assert_non_null(p->s);
    }
    p->ij[p->n][0] = i;
    p->ij[p->n][1] = j;
    p->s[p->n++] = score;
}

/* Every pair of want.txt found once with its score within 1e-6, and nothing else. */
static void compare_pairs(const pairs *got, const char *want_path) {
    FILE *f = fopen(want_path, "r");
    assert_non_null(f);
    long n, dim;
    assert_int_equal(fscanf(f, "%ld %ld", &n, &dim), 2);
    size_t nwant = 0;
    long a, b;
    double s;
    unsigned char *seen = calloc(got->n + 1, 1);
    while (fscanf(f, "%ld %ld %lf", &a, &b, &s) == 3) {
        nwant++;
        size_t k = 0;
        while (k < got->n && !(got->ij[k][0] == a && got->ij[k][1] == b)) k++;
        if (k == got->n) fail_msg("pair (%ld, %ld) score %.9f not found", a, b, s);
        if (seen[k]++) fail_msg("pair (%ld, %ld) reported twice", a, b);
        if (!(got->s[k] >= s - 1e-6 && got->s[k] <= s + 1e-6))
            fail_msg("pair (%ld, %ld): score %.9g, numpy %.9g", a, b, (double)got->s[k], s);
    }
    fclose(f);
    free(seen);
    if (nwant != got->n) fail_msg("%zu pairs, numpy has %zu", got->n, nwant);
    assert_true(nwant >= 20); /* planted ones */
}

static void dedup_case(const char *name, const char *dt, float thr) {
    char args[256];
    snprintf(args, sizeof args, "dedup %s %s %.9g", name, dt, (double)thr);
    python(args);
    imgsim_store *s = NULL;
    assert_int_equal(imgsim_store_open(&s, path_in(name)), IMGSIM_OK);
    imgsim_store_info si;
    assert_int_equal(imgsim_store_get_info(s, &si), IMGSIM_OK);
    assert_int_equal(si.dtype, !strcmp(dt, "f16") ? IMGSIM_F16 : IMGSIM_F32);
    imgsim_search_opts so;
    imgsim_search_opts_init(&so);
    so.threads = 2;
    pairs p = {0};
    assert_int_equal(imgsim_dedup(si.features, si.n, si.dim, si.dtype, thr, &so, on_pair, &p), IMGSIM_OK);
    char want[4700];
    snprintf(want, sizeof want, "%s/pairs.txt", path_in(name));
    compare_pairs(&p, want);
    /* the same matrix from memory, default options */
    size_t elt = si.dtype == IMGSIM_F16 ? 2 : 4, bytes = (size_t)si.n * (size_t)si.dim * elt;
    void *raw = malloc(bytes);
    char rp[4700];
    snprintf(rp, sizeof rp, "%s/x.raw", path_in(name));
    FILE *f = fopen(rp, "rb");
    assert_non_null(f);
    assert_int_equal(fread(raw, 1, bytes, f), bytes);
    fclose(f);
    pairs q = {0};
    assert_int_equal(imgsim_dedup(raw, si.n, si.dim, si.dtype, thr, NULL, on_pair, &q), IMGSIM_OK);
    compare_pairs(&q, want);
    free(raw);
    free(p.ij), free(p.s), free(q.ij), free(q.s);
    imgsim_store_close(s);
}

static void test_dedup_numpy(void **state) {
    (void)state;
    dedup_case("dup32", "f32", 0.97f);
    dedup_case("dup16", "f16", 0.95f);
    /* bad arguments */
    float x[4] = {1, 0, 0, 1};
    pairs p = {0};
    assert_int_equal(imgsim_dedup(x, 2, 2, IMGSIM_F32, 0.5f, NULL, NULL, &p), IMGSIM_ERR_INVALID_ARG);
    imgsim_search_opts so;
    imgsim_search_opts_init(&so);
    so.threads = -1;
    assert_int_equal(imgsim_dedup(x, 2, 2, IMGSIM_F32, 0.5f, &so, on_pair, &p), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(p.n, 0);
}

int main(int argc, char **argv) {
    const char *base = getenv("IMGSIM_TEST_DIR");
    g_python = getenv("IMGSIM_PYTHON");
    if (!g_python || !*g_python) g_python = "/usr/bin/python3";
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0]; /* test and _asan apart */
    snprintf(g_dir, sizeof g_dir, "%s/%s", base && *base ? base : "/tmp", name);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    if (system(cmd) != 0) return 1;
    FILE *f = fopen(path_in("ref.py"), "w");
    if (!f || fputs(k_ref_py, f) < 0 || fclose(f)) return 1;
    (void)argc;
    imgsim_set_log_level(IMGSIM_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_names_model),
        cmocka_unit_test(test_other_model_refused),
        cmocka_unit_test(test_incomplete_refused),
        cmocka_unit_test(test_reusable),
        cmocka_unit_test(test_preprocess_rgb),
        cmocka_unit_test(test_dedup_numpy),
    };
    return cmocka_run_group_tests(tests, setup_models, NULL);
}
