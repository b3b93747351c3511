/* cmd_run.c: imgsim run: the whole job of the old Python pipeline: stratified split, gallery
 * features (train), query features (test), exact top-k search, accuracies and per-stage timings.
 * A complete store from the same model, preprocessing, precision and images is reused, and one of
 * other images brought up to date (extract --update). Each
 * stage is a function of the job below, run in order by cmd_run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/job.h"
#include "cli/mpi.h"
#include "cli/report.h"
#include "cli/util.h"

static const char *usage =
    "imgsim run DATASET --model=M.onnx --out=DIR [--test-size=0.2] [--seed=42] [--k=5] [--layer=NAME]\n"
    "       [--device=cpu|cuda[:N]|cuda:N,M,...|cuda:all] [--precision=fp32|bf16|fp16|tf32|int8\n"
    "       [--calib=FILE|--calib-images=512]] [--batch-size=N|auto] [--workers=N]\n"
    "       [--threads=N] [--dtype=float32|float16] [--engine-cache=DIR|off] [--decode=auto|cpu|gpu]\n"
    "       [--gpu-memory=BYTES] [--fast-decode] [--shard-size=N] [--layout=single|sharded] [--no-durable] [--force] [--report] [--quiet]\n"
    "       [--resize=HxW|shorter:S] [--crop=HxW|N] [--interp=bilinear|bicubic] [--mean=R,G,B] [--std=R,G,B]\n"
    "  --report: also write DIR/report.html (summary, confusion matrix, queries with their matches)\n"
    "  int8 without --calib: calibrates on --calib-images training images into DIR/int8.calib, reused\n"
    "  by the next run while it matches (model, layer, preprocessing, method, sample), else made again;\n"
    "  a QDQ model (QuantizeLinear/DequantizeLinear) runs int8 with its own scales: no calibration, no --calib";

typedef struct stage {
    const char *name;
    double seconds;
    int64_t images;
    int reused;
    int64_t kept; /* an earlier store brought up to date: its rows kept (the rest extracted) */
} stage;

enum { ST_SPLIT, ST_MODEL, ST_CALIB, ST_ENGINE, ST_GALLERY, ST_QUERIES, ST_SEARCH, N_STAGES };

/* The job: its options, the files it writes, what each stage hands to the next. */
typedef struct run_job {
    const char *dataset, *model, *out, *layer;
    double test_size;
    uint64_t seed;
    int k, force, want_report;
    int calib_images;         /* int8 without --calib: training images to calibrate on */
    const char *calib_source; /* int8: "calibrated", "reused", "given" (--calib) or "model"
                                 (a QDQ model's own scales); NULL otherwise */
    char *p_calib;            /* DIR/int8.calib */
    int pre_given; /* CLI_PRE_* bits */
    size_t gpu_memory;
    imgsim_engine_opts eo;
    imgsim_extract_opts xo;
    char *p_train, *p_test, *p_gal, *p_q, *p_res, *p_sum;
    imgsim_dataset *all, *train, *test;
    size_t ntr, nte, n_skipped;
    imgsim_model *m;
    imgsim_model_info mi;
    imgsim_engine *eng[CLI_MAX_DEVICES]; /* one per GPU of --device=cuda:N,M,... (else eng[0]) */
    int n_eng, devices[CLI_MAX_DEVICES];
    imgsim_store *gs, *qs;
    cJSON *metrics;
    stage st[N_STAGES];
    imgsim_dir_lock *lock; /* the output folder's: one job per folder */
} run_job;

/* Reads the options into j. Returns -1 to go on, else the exit status. */
static int parse_options(run_job *j, cli_args *a, int argc, char **argv) {
    static const char *const vals[] = {"model", "out", "test-size", "seed", "k", "layer", "gpu-memory",
                                       "calib-images", "layout", CLI_EXTRACT_VALUE_OPTS, NULL};
    int started = cli_start(a, argc, argv, vals, usage);
    if (started >= 0) return started;
    j->model = cli_str(a, "model", NULL), j->out = cli_str(a, "out", NULL);
    j->layer = cli_str(a, "layer", NULL);
    j->test_size = cli_double(a, "test-size", 0.2, 1e-9, 1 - 1e-9);
    j->seed = cli_u64(a, "seed", 42);
    j->k = (int)cli_int(a, "k", 5, 1, 1 << 20);
    j->force = cli_flag(a, "force");
    j->want_report = cli_flag(a, "report");
    j->gpu_memory = (size_t)cli_u64(a, "gpu-memory", 0);
    j->calib_images = (int)cli_int(a, "calib-images", 512, 1, 100000000);
    cli_engine_opts(a, &j->eo);
    cli_extract_opts(a, &j->xo);
    j->xo.durable = !cli_flag(a, "no-durable"); /* a job's stores survive a crash by default */
    j->n_eng = a->n_devices;
    memcpy(j->devices, a->devices, sizeof j->devices);
    j->pre_given = cli_preprocess_given(a);
    j->eo.prepare_gpu_decode = j->xo.decode != IMGSIM_DECODE_CPU; /* CUDA: nvJPEG made while the engine loads */
    j->dataset = cli_pos(a, 0);
    int rc = cli_finish(a, usage);
    if (!rc && (!j->model || !j->out || !j->dataset)) {
        fprintf(stderr, "imgsim run: DATASET, --model and --out are required\nusage: %s\n", usage);
        rc = 2;
    }
    if (!rc && j->n_eng > 1 && cli_mpi_size() > 1) {
        fprintf(stderr, "imgsim run: under mpirun each rank drives one GPU: give --device=cuda:N (a rank per GPU), "
                        "not a list\n");
        rc = 2;
    }
    if (rc) return rc;
    if (cli_mpi_size() > 1) { /* under mpirun: the cores of this host shared by its ranks */
        if (!j->eo.threads) j->eo.threads = cli_mpi_threads_per_rank();
        if (!j->xo.workers) j->xo.workers = cli_mpi_threads_per_rank();
        if (cli_mpi_rank() != 0 && cli_log_enabled(IMGSIM_LOG_INFO)) /* rank 0 reports for the job */
            cli_set_log_level(IMGSIM_LOG_WARN);
    }
    static const char *names[N_STAGES] = {"split",           "model load",     "calibration", "engine build",
                                          "gallery (train)", "queries (test)", "search"};
    for (int i = 0; i < N_STAGES; i++) j->st[i].name = names[i];
    return -1;
}

/* The output folder and the paths of what goes into it. */
static int make_paths(run_job *j) {
    j->p_train = cli_path_join(j->out, "train.tsv"), j->p_test = cli_path_join(j->out, "test.tsv");
    j->p_gal = cli_path_join(j->out, "gallery"), j->p_q = cli_path_join(j->out, "queries");
    j->p_res = cli_path_join(j->out, "results.tsv"), j->p_sum = cli_path_join(j->out, "summary.json");
    j->p_calib = cli_path_join(j->out, "int8.calib");
    if (!j->p_train || !j->p_test || !j->p_gal || !j->p_q || !j->p_res || !j->p_sum || !j->p_calib) {
        fprintf(stderr, "imgsim run: out of memory\n");
        return 1;
    }
    /* one job per output folder (a second fails at once, naming the first); a killed job's
     * temporary files go. Under mpirun rank 0 holds it for the job. */
    if (cli_mpi_rank() == 0 && imgsim_dir_lock_take(&j->lock, j->out)) {
        fprintf(stderr, "imgsim run: %s\n", imgsim_last_error());
        return 1;
    }
    return 0;
}

static int fail_run(void) {
    fprintf(stderr, "imgsim run: %s\n", imgsim_last_error());
    return 1;
}

/* split: list the dataset, split it per class, write train.tsv and test.tsv and list them again
 * (the stores record them as their inputs). */
static int stage_split(run_job *j) {
    double t0 = cli_now();
    imgsim_dataset_info di;
    if (imgsim_dataset_open(&j->all, j->dataset) || imgsim_dataset_get_info(j->all, &di)) return fail_run();
    j->n_skipped = di.n_skipped;
    for (size_t i = 0; i < di.n_skipped; i++) {
        imgsim_dataset_skip sk;
        imgsim_dataset_get_skipped(j->all, i, &sk);
        if (cli_log_enabled(IMGSIM_LOG_WARN)) fprintf(stderr, "imgsim: warning: skipped %s: %s\n", sk.path, sk.reason);
    }
    size_t n = di.n ? di.n : 1;
    uint8_t *is_test = calloc(n, 1);
    size_t *tr = calloc(n, sizeof *tr), *te = calloc(n, sizeof *te);
    int rc = 1;
    if (!is_test || !tr || !te) {
        fprintf(stderr, "imgsim run: out of memory\n");
        goto done;
    }
    if (imgsim_dataset_split(is_test, j->all, j->test_size, j->seed)) {
        rc = fail_run();
        goto done;
    }
    for (size_t i = 0; i < di.n; i++) {
        if (is_test[i])
            te[j->nte++] = i;
        else
            tr[j->ntr++] = i;
    }
    if (imgsim_dataset_write_tsv(j->all, tr, j->ntr, j->p_train) ||
        imgsim_dataset_write_tsv(j->all, te, j->nte, j->p_test) || imgsim_dataset_open(&j->train, j->p_train) ||
        imgsim_dataset_open(&j->test, j->p_test)) {
        rc = fail_run();
        goto done;
    }
    j->st[ST_SPLIT].seconds = cli_now() - t0;
    j->st[ST_SPLIT].images = (int64_t)di.n;
    cli_info("imgsim: split %s: %zu images -> %zu train, %zu test (test size %.2f, seed %llu)\n", j->dataset, di.n,
             j->ntr, j->nte, j->test_size, (unsigned long long)j->seed);
    rc = 0;
done:
    free(is_test), free(tr), free(te);
    return rc;
}

/* Under mpirun: rank 0 split the dataset (train.tsv, test.tsv in the output folder); the other
 * ranks list those two files and check they see what rank 0 wrote (the same fingerprints). */
static int share_split(run_job *j) {
    if (cli_mpi_size() == 1) return 0;
    char fp[2][65] = {"", ""}, want[2][65];
    int bad = 0;
    if (cli_mpi_rank() != 0)
        bad = imgsim_dataset_open(&j->train, j->p_train) || imgsim_dataset_open(&j->test, j->p_test);
    bad = bad || imgsim_dataset_fingerprint(fp[0], j->train) || imgsim_dataset_fingerprint(fp[1], j->test);
    char msg[400];
    snprintf(msg, sizeof msg, "%s", bad ? imgsim_last_error() : "");
    memcpy(want, fp, sizeof want);
    if (!bad && cli_mpi_bcast(want, sizeof want, 0)) bad = 1;
    if (!bad && memcmp(want, fp, sizeof want) != 0)
        bad = 1, snprintf(msg, sizeof msg, "%s and %s list other images than on rank 0 (is %s on a file system "
                          "every rank shares?)", j->p_train, j->p_test, j->out);
    if (bad) fprintf(stderr, "imgsim run: rank %d of %d on %s: %s\n", cli_mpi_rank(), cli_mpi_size(), cli_mpi_host(), msg);
    if (cli_mpi_agree("run", bad, msg)) return 1;
    if (cli_mpi_rank() != 0) { /* the counts, for the stage table (rank 0's alone is printed) */
        imgsim_dataset_info a, b;
        imgsim_dataset_get_info(j->train, &a), imgsim_dataset_get_info(j->test, &b);
        j->ntr = a.n, j->nte = b.n;
    }
    return 0;
}

/* model: load and optimise it once (the engine is built only if something must be extracted). */
static int stage_model(run_job *j) {
    double t0 = cli_now();
    imgsim_status s = imgsim_model_load(&j->m, j->model, j->layer);
    if (s) return cli_fail("run", s);
    imgsim_model_get_info(j->m, &j->mi);
    cli_preprocess_fit(&j->xo.pre, j->pre_given, j->mi.in_height, j->mi.in_width);
    j->st[ST_MODEL].seconds = cli_now() - t0;
    cli_info("imgsim: model %s: layer '%s', %d-d features\n", j->model, j->mi.layer, j->mi.dim);
    return 0;
}

/* Why the calibration file at path is not the one this job would make now (NULL: it is; the
 * reason in why otherwise): another model or layer (imgsim_calib_load's message), another
 * preprocessing, method, --calib-images or training sample (the fingerprint of train.tsv). */
static const char *calib_differs(run_job *j, const char *path, char *why, size_t n) {
    imgsim_calib *c = NULL;
    if (imgsim_calib_load(&c, path, j->m) != IMGSIM_OK)
        return snprintf(why, n, "%s", imgsim_last_error()), why;
    imgsim_calib_info ci;
    imgsim_calib_get_info(c, &ci);
    char fp[65] = "";
    imgsim_dataset_fingerprint(fp, j->train);
    const imgsim_preprocess_opts *a = &ci.pre, *b = &j->xo.pre;
    int same_pre = imgsim_preprocess_opts_differ(a, b) == NULL;
    const char *r = NULL;
    char what[200];
    if (!same_pre)
        r = "was made with other preprocessing";
    else if (ci.method != IMGSIM_CALIB_ENTROPY)
        r = "was made by another method than run's (entropy)";
    else if (ci.images_requested != j->calib_images)
        r = what, snprintf(what, sizeof what, "was made from --calib-images=%d, not %d", ci.images_requested,
                           j->calib_images);
    else if (strcmp(ci.input_fingerprint, fp) != 0)
        r = "was made from other training images (the split or its files changed)";
    if (r) snprintf(why, n, "%s %s", path, r);
    imgsim_calib_destroy(c);
    return r ? why : NULL;
}

/* calibration (int8 without --calib): DIR/int8.calib, reused when it is what this job would make
 * (calib_differs), else made from --calib-images images spread evenly over train.tsv (sorted by
 * class and path: every class in proportion) and written under a temporary name, then renamed. */
static int stage_calibrate(run_job *j) {
    if (!j->eo.precision_set || j->eo.precision != IMGSIM_PREC_INT8) return 0;
    if (j->mi.quantized) { /* a QDQ model: its own scales, nothing to calibrate; a --calib is refused */
        if (j->eo.calib_file && *j->eo.calib_file) {
            fprintf(stderr,
                    "imgsim run: %s carries its own int8 scales (QuantizeLinear/DequantizeLinear): run it with "
                    "--precision=int8 and no --calib (%s is not used)\n",
                    j->model, j->eo.calib_file);
            return 1;
        }
        j->calib_source = "model";
        cli_info("imgsim: calibration: none, %s carries its own int8 scales (QDQ)\n", j->model);
        return 0;
    }
    if (j->eo.calib_file && *j->eo.calib_file) {
        j->calib_source = "given";
        cli_info("imgsim: calibration: %s (--calib)\n", j->eo.calib_file);
        return 0;
    }
    double t0 = cli_now();
    char why[1200];
    if (cli_path_exists(j->p_calib)) {
        const char *d = j->force ? (snprintf(why, sizeof why, "%s: --force", j->p_calib), why)
                                 : calib_differs(j, j->p_calib, why, sizeof why);
        if (!d) {
            imgsim_calib *c = NULL;
            imgsim_calib_info ci = {0};
            if (imgsim_calib_load(&c, j->p_calib, NULL) == IMGSIM_OK) imgsim_calib_get_info(c, &ci);
            j->st[ST_CALIB].images = ci.images;
            imgsim_calib_destroy(c);
            j->st[ST_CALIB].reused = 1;
            j->calib_source = "reused";
            j->eo.calib_file = j->p_calib;
            cli_info(
                "imgsim: calibration: reusing %s (same model, layer, preprocessing, method and sample)\n",
                j->p_calib);
            return 0;
        }
        cli_info("imgsim: calibration: %s: calibrating again\n", d);
    }
    imgsim_calib_opts co;
    imgsim_calib_opts_init(&co);
    co.images = j->calib_images;
    co.pre = j->xo.pre;
    co.threads = j->eo.threads;
    co.batch_size = j->eo.max_batch > 0 ? j->eo.max_batch : 32;
    co.quiet = !cli_log_enabled(IMGSIM_LOG_INFO);
    imgsim_calib *c = NULL;
    imgsim_status st = imgsim_calibrate(&c, j->m, j->p_train, &co);
    if (!st) st = imgsim_calib_save(c, j->p_calib); /* atomically: a temporary name, renamed */
    if (!st) {
        imgsim_calib_info ci;
        imgsim_calib_get_info(c, &ci);
        j->st[ST_CALIB].images = ci.images;
    }
    imgsim_calib_destroy(c);
    if (st) return cli_fail("run", st);
    j->st[ST_CALIB].seconds = cli_now() - t0;
    j->calib_source = "calibrated";
    j->eo.calib_file = j->p_calib;
    cli_info("imgsim: calibration: %lld training images -> %s in %.2f s\n", (long long)j->st[ST_CALIB].images,
             j->p_calib, j->st[ST_CALIB].seconds);
    return 0;
}

/* gallery or queries: extract ds into dir unless a reusable store is there. */
static int stage_extract(run_job *j, const imgsim_dataset *ds, const char *dir, stage *stg) {
    /* under mpirun rank 0 decides and tells the others */
    int64_t reuse = cli_mpi_rank() == 0 && !j->force &&
                    imgsim_store_check_reusable(dir, ds, j->m, &j->eo, &j->xo) == IMGSIM_OK;
    if (cli_mpi_bcast(&reuse, sizeof reuse, 0)) return 1;
    if (reuse) {
        imgsim_dataset_info di;
        imgsim_dataset_get_info(ds, &di);
        stg->reused = 1;
        stg->images = (int64_t)di.n;
        cli_info("imgsim: %s: reusing the complete store %s (same model, preprocessing and images)\n", stg->name,
                 dir);
        return 0;
    }
    if (!j->eng[0]) { /* build the engines only when something must be extracted */
        double t0 = cli_now();
        cli_args da = {.cmd = "run", .n_devices = j->n_eng};
        memcpy(da.devices, j->devices, sizeof da.devices);
        int bad = cli_engines_make("run", &da, j->m, NULL, NULL, &j->eo, j->eng);
        if (cli_mpi_agree("run", bad, "the engine could not be built")) return 1;
        double secs = j->st[ST_ENGINE].seconds = cli_now() - t0;
        imgsim_engine_info ei;
        imgsim_engine_get_info(j->eng[0], &ei);
        cli_info("imgsim: engine%s %s, %s, batch %d, ready in %.2f s%s\n", j->n_eng > 1 ? "s" : "", ei.device_name,
                 imgsim_precision_str(ei.precision), ei.max_batch, secs, j->n_eng > 1 ? " (one per listed GPU)" : "");
    }
    imgsim_extract_stats s;
    imgsim_extract_opts xo = j->xo;
    /* a complete store of an earlier run whose images changed (added, removed, rewritten; or
     * another split of a grown dataset): brought up to date, only what is new extracted, when one
     * process on one engine writes it (extract --update; other settings: extracted in full) */
    char mp[4200];
    snprintf(mp, sizeof mp, "%s/meta.json", dir);
    xo.update = !j->force && j->n_eng == 1 && cli_mpi_size() == 1 && cli_path_exists(mp);
    if (j->n_eng > 1) { /* the shards dealt to the engines */
        if (imgsim_extract_engines(j->eng, j->n_eng, ds, dir, &xo, &s)) return cli_fail("run", IMGSIM_ERR_IO);
    } else if (cli_extract_ranks("run", j->eng[0], ds, dir, &xo, &s)) {
        return 1; /* (every rank of an MPI job) */
    }
    stg->seconds = s.seconds_total;
    stg->images = s.ok;
    stg->kept = xo.update ? s.kept : 0;
    if (stg->kept)
        cli_info("imgsim: %s: %s brought up to date: %lld rows kept, %lld images extracted\n", stg->name, dir,
                 (long long)stg->kept, (long long)(s.ok + s.failed - stg->kept));
    if (s.failed)
        fprintf(stderr, "imgsim: %s: %lld images failed (see %s/%s)\n", stg->name, (long long)s.failed, dir,
                j->xo.layout == IMGSIM_LAYOUT_SHARDED ? "manifest-*.tsv" : "manifest.tsv");
    return 0;
}

/* search: the query store against the gallery store, results.tsv and the metrics. */
static int stage_search(run_job *j) {
    imgsim_search_opts so;
    imgsim_search_opts_init(&so);
    so.threads = j->eo.threads;
    so.device = j->eo.device;
    so.device_index = j->eo.device_index;
    so.gpu_memory = j->gpu_memory;
    if (j->n_eng > 1) { /* the gallery's rows spread over the GPUs, top-k merged */
        so.devices = j->devices;
        so.n_devices = j->n_eng;
    }
    if (cli_mpi_size() > 1) { /* every rank searches its share of the gallery's rows, rank 0 merges */
        int bad = imgsim_store_open(&j->gs, j->p_gal) != IMGSIM_OK;
        if (bad) fail_run();
        if (cli_mpi_agree("run", bad, "the gallery store could not be opened")) return 1;
        if (cli_mpi_rank() != 0) return job_search_worker(j->gs, &so);
        if (imgsim_store_open(&j->qs, j->p_q)) { /* the others wait for the queries: tell them to stop */
            int64_t stop[2] = {1, 0};
            cli_mpi_bcast(stop, sizeof stop, 0);
            return fail_run();
        }
    } else if (imgsim_store_open(&j->gs, j->p_gal) || imgsim_store_open(&j->qs, j->p_q)) {
        return fail_run();
    }
    double t0 = cli_now();
    if (job_search(j->gs, j->qs, j->k, 0, &so, j->p_res, &j->metrics)) return 1;
    imgsim_store_info qi;
    imgsim_store_get_info(j->qs, &qi);
    j->st[ST_SEARCH].seconds = cli_now() - t0;
    j->st[ST_SEARCH].images = qi.n;
    return 0;
}

static cJSON *stage_json(const stage *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seconds", s->seconds);
    cJSON_AddNumberToObject(o, "images", (double)s->images);
    cJSON_AddNumberToObject(o, "images_per_s", s->seconds > 0 ? (double)s->images / s->seconds : 0);
    cJSON_AddBoolToObject(o, "reused", s->reused);
    cJSON_AddNumberToObject(o, "kept", (double)s->kept);
    return o;
}

/* summary: summary.json (what ran, counts, accuracies, stage timings). */
static int write_summary(const run_job *j, double total) {
    imgsim_store_info gi, qi;
    imgsim_store_get_info(j->gs, &gi);
    imgsim_store_get_info(j->qs, &qi);
    cJSON *sum = cJSON_CreateObject();
    cJSON_AddStringToObject(sum, "dataset", j->dataset);
    cJSON_AddStringToObject(sum, "model", j->model);
    cJSON_AddStringToObject(sum, "model_sha256", j->mi.sha256);
    cJSON_AddStringToObject(sum, "layer", j->mi.layer);
    cJSON_AddNumberToObject(sum, "dim", j->mi.dim);
    cJSON_AddStringToObject(sum, "device", j->eo.device == IMGSIM_DEVICE_CUDA ? "cuda" : "cpu");
    if (j->calib_source) { /* int8: the calibration the stores were extracted with */
        imgsim_store_meta gm;
        imgsim_store_get_meta(j->gs, &gm);
        cJSON *cb = cJSON_AddObjectToObject(sum, "calibration");
        if (j->eo.calib_file)
            cJSON_AddStringToObject(cb, "file", j->eo.calib_file);
        else /* "model": the QDQ model's own scales, no file */
            cJSON_AddNullToObject(cb, "file");
        cJSON_AddStringToObject(cb, "sha256", gm.calib_sha256);
        cJSON_AddStringToObject(cb, "source", j->calib_source);
    }
    cJSON *sp = cJSON_AddObjectToObject(sum, "split");
    cJSON_AddNumberToObject(sp, "test_size", j->test_size);
    cJSON_AddNumberToObject(sp, "seed", (double)j->seed);
    cJSON_AddNumberToObject(sp, "train", (double)j->ntr);
    cJSON_AddNumberToObject(sp, "test", (double)j->nte);
    cJSON_AddNumberToObject(sp, "skipped", (double)j->n_skipped);
    cJSON *cn = cJSON_AddObjectToObject(sum, "counts");
    cJSON_AddNumberToObject(cn, "gallery", (double)gi.n);
    cJSON_AddNumberToObject(cn, "gallery_failed", (double)gi.n_failed);
    cJSON_AddNumberToObject(cn, "queries", (double)qi.n);
    cJSON_AddNumberToObject(cn, "queries_failed", (double)qi.n_failed);
    cJSON_AddNumberToObject(sum, "k", j->k);
    cJSON *acc = cJSON_GetObjectItemCaseSensitive(j->metrics, "accuracy");
    if (acc) cJSON_AddItemToObject(sum, "accuracy", cJSON_Duplicate(acc, 1));
    cJSON *pc = cJSON_GetObjectItemCaseSensitive(j->metrics, "per_class");
    if (pc) cJSON_AddItemToObject(sum, "per_class", cJSON_Duplicate(pc, 1));
    cJSON *stg = cJSON_AddObjectToObject(sum, "stages");
    for (int i = 0; i < N_STAGES; i++) cJSON_AddItemToObject(stg, j->st[i].name, stage_json(&j->st[i]));
    cJSON_AddNumberToObject(sum, "total_seconds", total);
    int rc = job_write_json(j->p_sum, sum);
    cJSON_Delete(sum);
    return rc;
}

/* the stage table and the accuracies on stderr */
static void print_table(const run_job *j, double total) {
    cli_info("\n  %-18s %10s %10s %12s\n", "stage", "seconds", "images", "images/s");
    for (int i = 0; i < N_STAGES; i++) {
        const stage *x = &j->st[i];
        if (i == ST_CALIB && !j->calib_source) continue; /* not an int8 job */
        if (i == ST_CALIB && (!strcmp(j->calib_source, "given") || !strcmp(j->calib_source, "model")))
            cli_info("  %-18s %10s %10s %12s\n", x->name, strcmp(j->calib_source, "given") ? "model" : "--calib",
                     "-", "-");
        else if (x->reused)
            cli_info("  %-18s %10s %10lld %12s\n", x->name, "reused", (long long)x->images, "-");
        else if (x->images)
            cli_info("  %-18s %10.3f %10lld %12.1f\n", x->name, x->seconds, (long long)x->images,
                     x->seconds > 0 ? (double)x->images / x->seconds : 0);
        else
            cli_info("  %-18s %10.3f %10s %12s\n", x->name, x->seconds, "-", "-");
    }
    cli_info("  %-18s %10.3f\n\n", "total", total);
    job_print_metrics(j->metrics);
    cli_info("imgsim: results in %s, summary in %s\n", j->p_res, j->p_sum);
}

static void run_job_free(run_job *j) {
    cJSON_Delete(j->metrics);
    imgsim_dir_lock_release(j->lock);
    imgsim_store_close(j->gs);
    imgsim_store_close(j->qs);
    cli_engines_destroy(j->eng, j->n_eng);
    imgsim_model_destroy(j->m);
    imgsim_dataset_destroy(j->all);
    imgsim_dataset_destroy(j->train);
    imgsim_dataset_destroy(j->test);
    free(j->p_train), free(j->p_test), free(j->p_gal), free(j->p_q), free(j->p_res), free(j->p_sum);
    free(j->p_calib);
}

int cmd_run(int argc, char **argv) {
    run_job j;
    memset(&j, 0, sizeof j);
    cli_args a;
    int rc = parse_options(&j, &a, argc, argv);
    if (rc >= 0) {
        if (a.used) cli_free(&a);
        return rc;
    }
    double t_all = cli_now();
    /* under mpirun every step is entered by every rank (rank 0 alone splits and writes the
     * summary); a failure on one stops them all at the next step, cli_mpi_agree */
    int root = cli_mpi_rank() == 0;
    rc = make_paths(&j);
    rc = cli_mpi_agree("run", rc, "the output folder could not be taken");
    if (!rc) rc = cli_mpi_agree("run", root && stage_split(&j), "the split failed");
    rc = rc || share_split(&j);
    if (!rc) rc = cli_mpi_agree("run", stage_model(&j), "the model could not be loaded");
    if (!rc) rc = cli_mpi_agree("run", root && stage_calibrate(&j), "the calibration failed");
    if (!rc && j.eo.precision_set && j.eo.precision == IMGSIM_PREC_INT8 && !j.eo.calib_file && !j.mi.quantized)
        j.eo.calib_file = j.p_calib; /* the other ranks of an MPI job: rank 0's calibration */
    rc = rc || stage_extract(&j, j.train, j.p_gal, &j.st[ST_GALLERY]) ||
         stage_extract(&j, j.test, j.p_q, &j.st[ST_QUERIES]);
    cli_engines_destroy(j.eng, j.n_eng); /* before the search: their device memory back */
    if (!rc) rc = stage_search(&j);
    double total = cli_now() - t_all;
    if (!rc && !root) { /* the rest is rank 0's */
        run_job_free(&j);
        cli_free(&a);
        return 0;
    }
    if (!rc) rc = write_summary(&j, total);
    if (!rc) print_table(&j, total);
    if (!rc && j.want_report) { /* report.html of the job folder */
        report_opts ro;
        report_opts_init(&ro);
        ro.workers = j.xo.workers;
        rc = report_run(j.out, &ro);
    }
    run_job_free(&j);
    cli_free(&a);
    return rc;
}
