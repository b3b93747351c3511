/* cmd_run.c: imgsim run: the whole job of the old Python pipeline: stratified split, gallery
 * features (train), query features (test), exact top-k search, accuracies and per-stage timings.
 * A complete store from the same model, preprocessing, precision and images is reused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/extract.h"
#include "cli/job.h"
#include "cli/report.h"
#include "core/core.h"
#include "data/dataset.h"
#include "data/meta.h"

static const char *usage =
    "imgsim run DATASET --model=M.onnx --out=DIR [--test-size=0.2] [--seed=42] [--k=5] [--layer=NAME]\n"
    "       [--device=cpu|cuda[:N]] [--precision=fp32|bf16|fp16|tf32] [--batch-size=N|auto] [--workers=N]\n"
    "       [--threads=N] [--dtype=float32|float16] [--engine-cache=DIR|off] [--decode=auto|cpu|gpu]\n"
    "       [--gpu-memory=BYTES] [--force] [--report] [--quiet]\n"
    "  --report: also write DIR/report.html (summary, confusion matrix, queries with their matches)";

typedef struct stage {
    const char *name;
    double seconds;
    int64_t images;
    int reused;
} stage;

/* 1 if the store in dir is complete and was made from the same model, layer, preprocessing,
 * precision, dtype and images. */
static int store_reusable(const char *dir, const imgsim_model_info *mi, const imgsim_engine_opts *eo,
                          const imgsim_extract_opts *xo, const ims_dataset *ds) {
    imgsim_store *s = NULL;
    ims_err e;
    if (imgsim_store_open(&s, dir)) return 0;
    imgsim_store_meta m, want;
    imgsim_store_get_meta(s, &m);
    char want_fp[65];
    ims_dataset_fingerprint(ds, want_fp, &e);
    ims_meta_init(&want);
    want.has_preprocessing = 1;
    want.pre = xo->pre;
    want.interpolation = IMS_META_INTERPOLATION;
    imgsim_precision p = eo->precision_set ? eo->precision
                                           : (eo->device == IMGSIM_DEVICE_CUDA ? IMGSIM_PREC_FP16 : IMGSIM_PREC_FP32);
    int ok = !strcmp(m.model_sha256, mi->sha256) && !strcmp(m.layer, mi->layer) &&
             !strcmp(m.precision, imgsim_precision_str(p)) && !strcmp(m.inputs_fingerprint, want_fp) &&
             !strcmp(m.dtype, xo->dtype == IMGSIM_F16 ? "float16" : "float32") &&
             !strcmp(m.device, eo->device == IMGSIM_DEVICE_CUDA ? "cuda" : "cpu") &&
             ims_meta_same_preprocessing(&m, &want);
    imgsim_store_close(s);
    return ok;
}

/* Extracts ds into dir unless a reusable store is there. */
static int extract_stage(imgsim_engine **eng, const imgsim_model *m, const imgsim_model_info *mi,
                         const imgsim_engine_opts *eo, const imgsim_extract_opts *xo, const ims_dataset *ds,
                         const char *desc, const char *dir, int force, stage *stg, double *engine_s) {
    if (!force && store_reusable(dir, mi, eo, xo, ds)) {
        stg->reused = 1;
        stg->images = (int64_t)ds->n;
        cli_info("imgsim: %s: reusing the complete store %s (same model, preprocessing and images)\n", stg->name,
                dir);
        return 0;
    }
    if (!*eng) { /* build the engine only when something must be extracted */
        double t0 = ims_now();
        imgsim_status st = imgsim_engine_create(eng, m, eo);
        if (st) return cli_fail("run", st);
        *engine_s = ims_now() - t0;
        imgsim_engine_info ei;
        imgsim_engine_get_info(*eng, &ei);
        cli_info("imgsim: engine %s, %s, batch %d, ready in %.2f s\n", ei.device_name,
                imgsim_precision_str(ei.precision), ei.max_batch, *engine_s);
    }
    imgsim_extract_stats s;
    ims_err e;
    imgsim_status st = ims_extract_dataset(*eng, ds, desc, dir, xo, 0, &s, &e);
    if (st) {
        fprintf(stderr, "imgsim run: %s\n", e.msg);
        return 1;
    }
    stg->seconds = s.seconds_total;
    stg->images = s.ok;
    if (s.failed) fprintf(stderr, "imgsim: %s: %lld images failed (see %s/manifest.tsv)\n", stg->name, (long long)s.failed, dir);
    return 0;
}

static cJSON *stage_json(const stage *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seconds", s->seconds);
    cJSON_AddNumberToObject(o, "images", (double)s->images);
    cJSON_AddNumberToObject(o, "images_per_s", s->seconds > 0 ? (double)s->images / s->seconds : 0);
    cJSON_AddBoolToObject(o, "reused", s->reused);
    return o;
}

int cmd_run(int argc, char **argv) {
    static const char *const vals[] = {"model", "out",        "test-size", "seed", "k", "layer",
                                       "gpu-memory", CLI_EXTRACT_VALUE_OPTS, NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vals, usage);
    if (started >= 0) return started;
    const char *model = cli_str(&a, "model", NULL), *out = cli_str(&a, "out", NULL);
    const char *layer = cli_str(&a, "layer", NULL);
    double test_size = cli_double(&a, "test-size", 0.2, 1e-9, 1 - 1e-9);
    uint64_t seed = cli_u64(&a, "seed", 42);
    int k = (int)cli_int(&a, "k", 5, 1, 1 << 20);
    int force = cli_flag(&a, "force");
    int want_report = cli_flag(&a, "report");
    size_t gpu_memory = (size_t)cli_u64(&a, "gpu-memory", 0);
    imgsim_engine_opts eo;
    imgsim_extract_opts xo;
    cli_engine_opts(&a, &eo);
    cli_extract_opts(&a, &xo);
    eo.prepare_gpu_decode = xo.decode != IMGSIM_DECODE_CPU; /* CUDA: nvJPEG made while the engine loads */
    const char *dataset = cli_pos(&a, 0);
    int rc = cli_finish(&a, usage);
    if (!rc && (!model || !out || !dataset)) {
        fprintf(stderr, "imgsim run: DATASET, --model and --out are required\nusage: %s\n", usage);
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }
    rc = 1;
    double t_all = ims_now();
    ims_err e;
    ims_dataset *all = NULL, *train = NULL, *test = NULL;
    imgsim_model *m = NULL;
    imgsim_engine *eng = NULL;
    imgsim_store *gs = NULL, *qs = NULL;
    imgsim_store_info gi, qi;
    cJSON *metrics = NULL, *sum = NULL;
    uint8_t *is_test = NULL;
    size_t *tr = NULL, *te = NULL;
    char *p_train = ims_path_join(out, "train.tsv"), *p_test = ims_path_join(out, "test.tsv");
    char *p_gal = ims_path_join(out, "gallery"), *p_q = ims_path_join(out, "queries");
    char *p_res = ims_path_join(out, "results.tsv"), *p_sum = ims_path_join(out, "summary.json");
    stage st_split = {"split", 0, 0, 0}, st_model = {"model load", 0, 0, 0}, st_engine = {"engine build", 0, 0, 0};
    stage st_gal = {"gallery (train)", 0, 0, 0}, st_q = {"queries (test)", 0, 0, 0}, st_search = {"search", 0, 0, 0};
    if (!p_train || !p_test || !p_gal || !p_q || !p_res || !p_sum) goto done;
    if (ims_mkdir_p(out, &e)) {
        fprintf(stderr, "imgsim run: %s\n", e.msg);
        goto done;
    }

    /* split */
    double t0 = ims_now();
    if (ims_dataset_open(&all, dataset, &e)) {
        fprintf(stderr, "imgsim run: %s\n", e.msg);
        goto done;
    }
    for (size_t i = 0; i < all->n_skipped; i++)
        ims_log_warn("skipped %s: %s", all->skipped[i].path, all->skipped[i].reason);
    is_test = ims_calloc(all->n ? all->n : 1, 1);
    tr = ims_calloc(all->n ? all->n : 1, sizeof *tr);
    te = ims_calloc(all->n ? all->n : 1, sizeof *te);
    if (!is_test || !tr || !te) goto done;
    if (ims_split(is_test, all, test_size, seed, &e)) {
        fprintf(stderr, "imgsim run: %s\n", e.msg);
        goto done;
    }
    size_t ntr = 0, nte = 0;
    for (size_t i = 0; i < all->n; i++) {
        if (is_test[i])
            te[nte++] = i;
        else
            tr[ntr++] = i;
    }
    if (ims_dataset_write_tsv(all, tr, ntr, p_train, &e) || ims_dataset_write_tsv(all, te, nte, p_test, &e)) {
        fprintf(stderr, "imgsim run: %s\n", e.msg);
        goto done;
    }
    if (ims_dataset_open(&train, p_train, &e) || ims_dataset_open(&test, p_test, &e)) {
        fprintf(stderr, "imgsim run: %s\n", e.msg);
        goto done;
    }
    st_split.seconds = ims_now() - t0;
    st_split.images = (int64_t)all->n;
    cli_info("imgsim: split %s: %zu images -> %zu train, %zu test (test size %.2f, seed %llu)\n", dataset,
            all->n, ntr, nte, test_size, (unsigned long long)seed);

    /* model */
    t0 = ims_now();
    imgsim_status s = imgsim_model_load(&m, model, layer);
    if (s) {
        rc = cli_fail("run", s);
        goto done;
    }
    imgsim_model_info mi;
    imgsim_model_get_info(m, &mi);
    xo.pre.height = mi.in_height;
    xo.pre.width = mi.in_width;
    st_model.seconds = ims_now() - t0;
    cli_info("imgsim: model %s: layer '%s', %d-d features\n", model, mi.layer, mi.dim);

    if (extract_stage(&eng, m, &mi, &eo, &xo, train, p_train, p_gal, force, &st_gal, &st_engine.seconds)) goto done;
    if (extract_stage(&eng, m, &mi, &eo, &xo, test, p_test, p_q, force, &st_q, &st_engine.seconds)) goto done;
    imgsim_engine_destroy(eng);
    eng = NULL;

    /* search */
    if (imgsim_store_open(&gs, p_gal) || imgsim_store_open(&qs, p_q)) {
        fprintf(stderr, "imgsim run: %s\n", imgsim_last_error());
        goto done;
    }
    imgsim_store_get_info(gs, &gi);
    imgsim_store_get_info(qs, &qi);
    imgsim_search_opts so;
    imgsim_search_opts_init(&so);
    so.threads = eo.threads;
    so.device = eo.device;
    so.device_index = eo.device_index;
    so.gpu_memory = gpu_memory;
    t0 = ims_now();
    if (job_search(gs, qs, k, 0, &so, p_res, &metrics)) goto done;
    st_search.seconds = ims_now() - t0;
    st_search.images = qi.n;

    /* summary */
    double total = ims_now() - t_all;
    sum = cJSON_CreateObject();
    cJSON_AddStringToObject(sum, "dataset", dataset);
    cJSON_AddStringToObject(sum, "model", model);
    cJSON_AddStringToObject(sum, "model_sha256", mi.sha256);
    cJSON_AddStringToObject(sum, "layer", mi.layer);
    cJSON_AddNumberToObject(sum, "dim", mi.dim);
    cJSON_AddStringToObject(sum, "device", eo.device == IMGSIM_DEVICE_CUDA ? "cuda" : "cpu");
    cJSON *sp = cJSON_AddObjectToObject(sum, "split");
    cJSON_AddNumberToObject(sp, "test_size", test_size);
    cJSON_AddNumberToObject(sp, "seed", (double)seed);
    cJSON_AddNumberToObject(sp, "train", (double)ntr);
    cJSON_AddNumberToObject(sp, "test", (double)nte);
    cJSON_AddNumberToObject(sp, "skipped", (double)all->n_skipped);
    cJSON *cn = cJSON_AddObjectToObject(sum, "counts");
    cJSON_AddNumberToObject(cn, "gallery", (double)gi.n);
    cJSON_AddNumberToObject(cn, "gallery_failed", (double)gi.n_failed);
    cJSON_AddNumberToObject(cn, "queries", (double)qi.n);
    cJSON_AddNumberToObject(cn, "queries_failed", (double)qi.n_failed);
    cJSON_AddNumberToObject(sum, "k", k);
    cJSON *acc = cJSON_GetObjectItemCaseSensitive(metrics, "accuracy");
    if (acc) cJSON_AddItemToObject(sum, "accuracy", cJSON_Duplicate(acc, 1));
    cJSON *pc = cJSON_GetObjectItemCaseSensitive(metrics, "per_class");
    if (pc) cJSON_AddItemToObject(sum, "per_class", cJSON_Duplicate(pc, 1));
    cJSON *stg = cJSON_AddObjectToObject(sum, "stages");
    const stage *all_st[] = {&st_split, &st_model, &st_engine, &st_gal, &st_q, &st_search};
    for (int i = 0; i < 6; i++) cJSON_AddItemToObject(stg, all_st[i]->name, stage_json(all_st[i]));
    cJSON_AddNumberToObject(sum, "total_seconds", total);
    if (job_write_json(p_sum, sum)) goto done;

    cli_info("\n  %-18s %10s %10s %12s\n", "stage", "seconds", "images", "images/s");
    for (int i = 0; i < 6; i++) {
        const stage *x = all_st[i];
        if (x->reused)
            cli_info("  %-18s %10s %10lld %12s\n", x->name, "reused", (long long)x->images, "-");
        else if (x->images)
            cli_info("  %-18s %10.3f %10lld %12.1f\n", x->name, x->seconds, (long long)x->images,
                    x->seconds > 0 ? (double)x->images / x->seconds : 0);
        else
            cli_info("  %-18s %10.3f %10s %12s\n", x->name, x->seconds, "-", "-");
    }
    cli_info("  %-18s %10.3f\n\n", "total", total);
    job_print_metrics(metrics);
    cli_info("imgsim: results in %s, summary in %s\n", p_res, p_sum);
    if (want_report) {
        report_opts ro;
        report_opts_init(&ro);
        ro.workers = xo.workers;
        if (report_run(out, &ro)) goto done;
    }
    rc = 0;
done:
    cJSON_Delete(metrics);
    cJSON_Delete(sum);
    imgsim_store_close(gs);
    imgsim_store_close(qs);
    imgsim_engine_destroy(eng);
    imgsim_model_destroy(m);
    ims_dataset_free(all);
    ims_dataset_free(train);
    ims_dataset_free(test);
    free(is_test), free(tr), free(te);
    free(p_train), free(p_test), free(p_gal), free(p_q), free(p_res), free(p_sum);
    cli_free(&a);
    return rc;
}
