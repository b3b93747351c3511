/*
 * test_extract_engines.c: imgsim_extract_engines (one extraction on several engines of a process,
 * the scheme behind --device=cuda:0,1 and cuda:0,0) through imgsim.h alone, on CPU engines (also
 * built with ASan+UBSan). The reference is the store one engine writes with imgsim_extract_dataset
 * (itself checked against PyTorch by the parity tests), read by numpy:
 *  - 2 and 3 engines write features.npy, manifest.tsv and inputs.tsv byte for byte equal to one
 *    engine's, with a corrupt image among the inputs (failed in the manifest, no row), and numpy
 *    reads the same matrix from both; meta.json counts the same ok and failed inputs;
 *  - one progress line for the job: the callback sees done grow to the images extracted, never
 *    overlapping, total fixed;
 *  - cancelled by the callback midway: IMGSIM_ERR_CANCELLED, no meta.json, some shards kept; the
 *    same call again extracts only the rest (the callback sees fewer images) and gives the same
 *    store;
 *  - more engines than shards to go: the idle ones do nothing, the store is the same;
 *  - engines not made alike (another model; another batch size) are refused naming the engine;
 *    update/part set are refused.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
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

static char g_dir[4096], g_model[4200], g_model2[4200], g_data[4200];
static const char *g_python;

static void path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", g_dir, name);
}

/* the whole file, or NULL */
static char *slurp(const char *p, size_t *len) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    *len = (size_t)n;
    return b;
}

static void assert_same_file(const char *a_dir, const char *b_dir, const char *name) {
    char pa[4400], pb[4400];
    snprintf(pa, sizeof pa, "%s/%s", a_dir, name);
    snprintf(pb, sizeof pb, "%s/%s", b_dir, name);
    size_t la = 0, lb = 0;
    char *a = slurp(pa, &la), *b = slurp(pb, &lb);
    if (!a || !b) fail_msg("cannot read %s or %s", pa, pb);
    if (la != lb || memcmp(a, b, la) != 0) fail_msg("%s and %s differ (%zu vs %zu bytes)", pa, pb, la, lb);
    free(a), free(b);
}

/* numpy's view: the same matrix in both stores, the manifest's ok rows and the meta's row count */
static void assert_numpy_same(const char *a_dir, const char *b_dir) {
    char cmd[9500];
    snprintf(cmd, sizeof cmd,
             "%s -c \"import json,sys,numpy as np\n"
             "a,b=sys.argv[1],sys.argv[2]\n"
             "A=np.load(a+'/features.npy'); B=np.load(b+'/features.npy')\n"
             "assert A.shape==B.shape and A.shape[0]>0, (A.shape,B.shape)\n"
             "assert np.array_equal(A,B)\n"
             "ok=[l.split('\\t') for l in open(b+'/manifest.tsv').read().splitlines()[1:]]\n"
             "assert sum(1 for r in ok if r[3]=='ok')==B.shape[0]\n"
             "assert [int(r[0]) for r in ok if r[3]=='ok']==list(range(B.shape[0]))\n"
             "assert any(r[3]=='failed' for r in ok)\n"
             "c=json.load(open(b+'/meta.json'))['counts']; assert (c['ok'],c['failed'])==(B.shape[0],1), c\n"
             "\" '%s' '%s'",
             g_python, a_dir, b_dir);
    if (system(cmd) != 0) fail_msg("numpy comparison of %s and %s failed", a_dir, b_dir);
}

static imgsim_engine *engine(const char *model, int batch) {
    imgsim_engine_opts eo;
    imgsim_engine_opts_init(&eo);
    eo.threads = 1;
    eo.max_batch = batch;
    imgsim_engine *e = NULL;
    imgsim_status st = imgsim_engine_load(&e, model, NULL, &eo);
    if (st) fail_msg("engine: %s", imgsim_last_error());
    return e;
}

static imgsim_store_layout g_layout = IMGSIM_LAYOUT_SINGLE; /* of the stores extract_n writes */

static void xopts(imgsim_extract_opts *o) {
    imgsim_extract_opts_init(o);
    o->quiet = 1;
    o->workers = 2;
    o->shard_size = 8;
}

typedef struct progress_log {
    pthread_mutex_t mu;
    int inside, overlapped, calls;
    int64_t last, total;
    int64_t cancel_at; /* > 0: stop once done reaches it */
} progress_log;

static int on_progress(void *user, int64_t done, int64_t total) {
    progress_log *p = user;
    if (pthread_mutex_trylock(&p->mu) != 0) { /* another call is running */
        p->overlapped = 1;
        pthread_mutex_lock(&p->mu);
    }
    p->inside++;
    if (p->inside > 1) p->overlapped = 1;
    if (done < p->last || (p->total && total != p->total)) p->overlapped = 1; /* (misordered) */
    p->last = done;
    p->total = total;
    p->calls++;
    int stop = p->cancel_at > 0 && done >= p->cancel_at;
    p->inside--;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

static int setup(void **state) {
    (void)state;
    const char *base = getenv("IMGSIM_TEST_DIR");
    g_python = getenv("IMGSIM_PYTHON");
    if (!base || !g_python) return -1;
    snprintf(g_dir, sizeof g_dir, "%s/extract_engines", base);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    if (system(cmd) != 0) return -1;
    path(g_model, sizeof g_model, "r18.onnx");
    path(g_model2, sizeof g_model2, "r18b.onnx");
    path(g_data, sizeof g_data, "data");
    if (imgsim_model_init(g_model, "resnet18", 1) || imgsim_model_init(g_model2, "resnet18", 2)) return -1;
    imgsim_synth_opts so;
    imgsim_synth_opts_init(&so);
    so.n_classes = 3;
    so.per_class = 13; /* 39 images + 1 corrupt: 5 shards of 8 */
    so.min_side = 40;
    so.max_side = 90;
    so.quiet = 1;
    so.threads = 2;
    if (imgsim_synth_dataset(g_data, &so)) return -1;
    /* a JPEG that starts well and stops: an input that fails (a manifest line, no row) */
    snprintf(cmd, sizeof cmd, "head -c 300 \"$(ls '%s'/class_02/*.jpg | head -1)\" > '%s/class_01/broken.jpg'", g_data,
             g_data);
    return system(cmd) == 0 ? 0 : -1;
}

static void extract_one(const char *out) {
    imgsim_engine *e = engine(g_model, 4);
    imgsim_dataset *ds = NULL;
    assert_int_equal(imgsim_dataset_open(&ds, g_data), IMGSIM_OK);
    imgsim_extract_opts o;
    xopts(&o);
    imgsim_status st = imgsim_extract_dataset(e, ds, out, &o, NULL);
    if (st) fail_msg("one engine: %s", imgsim_last_error());
    imgsim_dataset_destroy(ds);
    imgsim_engine_destroy(e);
}

static imgsim_status extract_n(int n, const char *out, progress_log *pl, imgsim_extract_stats *s) {
    imgsim_engine *engs[4];
    for (int i = 0; i < n; i++) engs[i] = engine(g_model, 4);
    imgsim_dataset *ds = NULL;
    assert_int_equal(imgsim_dataset_open(&ds, g_data), IMGSIM_OK);
    imgsim_extract_opts o;
    xopts(&o);
    o.layout = g_layout;
    if (pl) {
        o.progress = on_progress;
        o.progress_user = pl;
    }
    imgsim_status st = imgsim_extract_engines(engs, n, ds, out, &o, s);
    imgsim_dataset_destroy(ds);
    for (int i = 0; i < n; i++) imgsim_engine_destroy(engs[i]);
    return st;
}

static void assert_same_store(const char *a, const char *b) {
    assert_same_file(a, b, "features.npy");
    assert_same_file(a, b, "manifest.tsv");
    assert_same_file(a, b, "inputs.tsv");
    assert_numpy_same(a, b);
}

static void test_engines_equal_one(void **state) {
    (void)state;
    char one[4200], two[4200], three[4200];
    path(one, sizeof one, "one");
    path(two, sizeof two, "two");
    path(three, sizeof three, "three");
    extract_one(one);
    progress_log pl = {.mu = PTHREAD_MUTEX_INITIALIZER};
    imgsim_extract_stats s;
    imgsim_status st = extract_n(2, two, &pl, &s);
    if (st) fail_msg("two engines: %s", imgsim_last_error());
    assert_same_store(one, two);
    assert_int_equal(pl.overlapped, 0);
    assert_true(pl.calls >= 2);
    assert_int_equal(pl.last, 40); /* every listed image, the corrupt one too */
    assert_int_equal(pl.total, 40);
    assert_int_equal(s.ok, 39);
    assert_int_equal(s.failed, 1);
    if ((st = extract_n(3, three, NULL, NULL))) fail_msg("three engines: %s", imgsim_last_error());
    assert_same_store(one, three);
}

/* --layout=sharded through the multi-engine finish: 40 images in shards of 8, one features-K.npy
 * and manifest-K.tsv each, the store (as imgsim_store_open reads it) the one engine's */
static void test_engines_sharded(void **state) {
    (void)state;
    char one[4200], dir[4200], f[4400];
    path(one, sizeof one, "one");
    path(dir, sizeof dir, "sharded");
    g_layout = IMGSIM_LAYOUT_SHARDED;
    imgsim_status st = extract_n(2, dir, NULL, NULL);
    g_layout = IMGSIM_LAYOUT_SINGLE;
    if (st) fail_msg("two engines, sharded: %s", imgsim_last_error());
    snprintf(f, sizeof f, "%s/features.npy", dir);
    assert_int_equal(access(f, F_OK), -1);
    for (int k = 0; k < 5; k++) {
        snprintf(f, sizeof f, "%s/features-%05d.npy", dir, k);
        assert_int_equal(access(f, R_OK), 0);
        snprintf(f, sizeof f, "%s/manifest-%05d.tsv", dir, k);
        assert_int_equal(access(f, R_OK), 0);
    }
    snprintf(f, sizeof f, "%s/features-00005.npy", dir);
    assert_int_equal(access(f, F_OK), -1);
    imgsim_store *a = NULL, *b = NULL;
    assert_int_equal(imgsim_store_open(&a, one), IMGSIM_OK);
    if (imgsim_store_open(&b, dir)) fail_msg("sharded store: %s", imgsim_last_error());
    imgsim_store_info ia, ib;
    imgsim_store_meta mb;
    assert_int_equal(imgsim_store_get_info(a, &ia), IMGSIM_OK);
    assert_int_equal(imgsim_store_get_info(b, &ib), IMGSIM_OK);
    assert_int_equal(imgsim_store_get_meta(b, &mb), IMGSIM_OK);
    assert_int_equal(mb.n_shards, 5);
    assert_int_equal(ia.n, ib.n);
    assert_int_equal(ia.dim, ib.dim);
    assert_int_equal(ia.n_failed, ib.n_failed);
    assert_memory_equal(ia.features, ib.features, (size_t)ia.n * (size_t)ia.dim * sizeof(float));
    for (int64_t r = 0; r < ia.n; r++) assert_string_equal(ia.paths[r], ib.paths[r]);
    imgsim_store_close(a);
    imgsim_store_close(b);
}

static void test_cancel_and_resume(void **state) {
    (void)state;
    char one[4200], dir[4200], meta[4300];
    path(one, sizeof one, "one");
    path(dir, sizeof dir, "resumed");
    snprintf(meta, sizeof meta, "%s/meta.json", dir);
    progress_log pl = {.mu = PTHREAD_MUTEX_INITIALIZER, .cancel_at = 12};
    imgsim_status st = extract_n(2, dir, &pl, NULL);
    assert_int_equal(st, IMGSIM_ERR_CANCELLED);
    assert_int_equal(access(meta, F_OK), -1); /* not a complete store */
    progress_log again = {.mu = PTHREAD_MUTEX_INITIALIZER};
    if ((st = extract_n(2, dir, &again, NULL))) fail_msg("resumed: %s", imgsim_last_error());
    assert_true(again.total < 40); /* the shards completed before the cancel were kept */
    assert_true(again.total > 0);
    assert_int_equal(again.last, again.total);
    assert_same_store(one, dir);
}

static void test_more_engines_than_shards(void **state) {
    (void)state;
    char one[4200], dir[4200];
    path(one, sizeof one, "one");
    path(dir, sizeof dir, "idle");
    imgsim_engine *engs[4];
    for (int i = 0; i < 4; i++) engs[i] = engine(g_model, 4);
    imgsim_dataset *ds = NULL;
    assert_int_equal(imgsim_dataset_open(&ds, g_data), IMGSIM_OK);
    imgsim_extract_opts o;
    xopts(&o);
    o.shard_size = 24; /* 2 shards for 4 engines */
    imgsim_status st = imgsim_extract_engines(engs, 4, ds, dir, &o, NULL);
    if (st) fail_msg("four engines, two shards: %s", imgsim_last_error());
    assert_same_file(one, dir, "features.npy");
    assert_same_file(one, dir, "manifest.tsv");
    imgsim_dataset_destroy(ds);
    for (int i = 0; i < 4; i++) imgsim_engine_destroy(engs[i]);
}

static void test_refusals(void **state) {
    (void)state;
    char dir[4200];
    path(dir, sizeof dir, "refused");
    imgsim_dataset *ds = NULL;
    assert_int_equal(imgsim_dataset_open(&ds, g_data), IMGSIM_OK);
    imgsim_extract_opts o;
    xopts(&o);
    imgsim_engine *engs[2] = {engine(g_model, 4), engine(g_model2, 4)};
    assert_int_equal(imgsim_extract_engines(engs, 2, ds, dir, &o, NULL), IMGSIM_ERR_MISMATCH);
    assert_non_null(strstr(imgsim_last_error(), "engine 1"));
    assert_non_null(strstr(imgsim_last_error(), "model"));
    imgsim_engine_destroy(engs[1]);
    engs[1] = engine(g_model, 2);
    assert_int_equal(imgsim_extract_engines(engs, 2, ds, dir, &o, NULL), IMGSIM_ERR_MISMATCH);
    assert_non_null(strstr(imgsim_last_error(), "batch size"));
    imgsim_engine_destroy(engs[1]);
    engs[1] = engine(g_model, 4);
    o.update = 1;
    assert_int_equal(imgsim_extract_engines(engs, 2, ds, dir, &o, NULL), IMGSIM_ERR_INVALID_ARG);
    o.update = 0;
    imgsim_engine *none[2] = {engs[0], NULL};
    assert_int_equal(imgsim_extract_engines(none, 2, ds, dir, &o, NULL), IMGSIM_ERR_INVALID_ARG);
    assert_int_equal(imgsim_extract_engines(engs, 0, ds, dir, &o, NULL), IMGSIM_ERR_INVALID_ARG);
    imgsim_dataset_destroy(ds);
    imgsim_engine_destroy(engs[0]);
    imgsim_engine_destroy(engs[1]);
}

int main(void) {
    imgsim_set_log_level(IMGSIM_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engines_equal_one),
        cmocka_unit_test(test_engines_sharded),
        cmocka_unit_test(test_cancel_and_resume),
        cmocka_unit_test(test_more_engines_than_shards),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
