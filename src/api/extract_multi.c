/*
 * extract_multi.c: imgsim_extract_engines, one extraction shared by several engines of one process
 * (every GPU of a machine, or two engines on one GPU). It is the MPI job's scheme inside one
 * process: the store's shards planned once (imgsim_extract_plan), dealt to the engines balanced by
 * bytes (imgsim_shard_assign), each engine's part extracted on a thread of its own
 * (imgsim_extract_dataset with opt->part), then joined (opt->join) into the store one engine
 * would have written. A failed part stops the others through the progress callback, which every
 * part polls after each batch.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

typedef struct multi_job {
    pthread_mutex_t mu;
    atomic_int stop;       /* 1: a part failed, 2: the caller's callback cancelled */
    int64_t done, total;   /* images of every part so far, of the job */
    const imgsim_extract_opts *opt;
    ims_progress *bar;
} multi_job;

typedef struct part_arg {
    multi_job *job;
    imgsim_engine *eng;
    const imgsim_dataset *ds;
    const char *store_dir;
    imgsim_extract_opts o;
    uint8_t *mine;  /* the plan's shards this part extracts */
    int64_t images; /* in them */
    int64_t seen;   /* of them counted into job->done */
    imgsim_extract_stats s;
    imgsim_status st;
    char msg[IS_ERRMSG_MAX];
} part_arg;

/* every part's progress: one bar and the caller's callback for the whole job, and the stop flag */
static int part_progress(void *user, int64_t done, int64_t total) {
    (void)total;
    part_arg *a = user;
    multi_job *j = a->job;
    if (atomic_load(&j->stop)) return 1;
    pthread_mutex_lock(&j->mu);
    j->done += done - a->seen;
    ims_progress_add(j->bar, done - a->seen);
    a->seen = done;
    int r = j->opt->progress ? j->opt->progress(j->opt->progress_user, j->done, j->total) : 0;
    pthread_mutex_unlock(&j->mu);
    if (r) atomic_store(&j->stop, 2);
    return r;
}

static void *part_main(void *arg) {
    part_arg *a = arg;
    a->st = imgsim_extract_dataset(a->eng, a->ds, a->store_dir, &a->o, &a->s);
    if (a->st) {
        snprintf(a->msg, sizeof a->msg, "%s", imgsim_last_error());
        int none = 0;
        atomic_compare_exchange_strong(&a->job->stop, &none, 1);
    }
    return NULL;
}

/* The engines must make the same store: model, layer, precision, batch, output. */
static imgsim_status check_engines(imgsim_engine *const *engines, int n) {
    const imgsim_engine *e0 = engines[0];
    for (int i = 0; i < n; i++) {
        const imgsim_engine *e = engines[i];
        if (!e) return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_extract_engines: engine %d is NULL", i);
        if (i == 0) continue;
        const char *what = strcmp(e->sha256, e0->sha256)           ? "model"
                           : strcmp(e->layer, e0->layer)           ? "layer"
                           : e->info.precision != e0->info.precision ? "precision"
                           : e->info.max_batch != e0->info.max_batch ? "batch size"
                           : e->info.dim != e0->info.dim           ? "feature dimension"
                           : e->normalize != e0->normalize         ? "normalisation"
                                                                    : NULL;
        if (what)
            return ims_fail(NULL, IMGSIM_ERR_MISMATCH, "imgsim_extract_engines: engine %d (%s) has another %s than "
                            "engine 0 (%s): one extraction needs engines made alike", i, e->info.device_name, what,
                            e0->info.device_name);
    }
    return IMGSIM_OK;
}

/* The job's decode workers shared by the parts: a part gets workers / parts (at least one), the
 * first parts one more where it does not divide. */
static int part_workers(int workers, int parts, int i) {
    int w = workers / parts + (i < workers % parts);
    return w > 0 ? w : 1;
}

imgsim_status imgsim_extract_engines(imgsim_engine *const *engines, int n_engines, const imgsim_dataset *ds,
                                     const char *store_dir, const imgsim_extract_opts *opt,
                                     imgsim_extract_stats *stats) {
    if (!engines || n_engines < 1 || !ds || !store_dir)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_extract_engines: bad argument");
    imgsim_extract_opts def;
    if (!opt) {
        imgsim_extract_opts_init(&def);
        opt = &def;
    }
    if (n_engines == 1) return imgsim_extract_dataset(engines[0], ds, store_dir, opt, stats);
    if (opt->part || opt->join || opt->update)
        return ims_fail(NULL, IMGSIM_ERR_INVALID_ARG, "imgsim_extract_engines: opt->part, opt->join and "
                        "opt->update must be unset (an update runs on one engine)");
    imgsim_status st = check_engines(engines, n_engines);
    if (st) return st;
    double t0 = ims_now();
    imgsim_extract_stats s0;
    if (!stats) stats = &s0;
    memset(stats, 0, sizeof *stats);
    imgsim_dir_lock *lock = NULL;
    if (!opt->locked && (st = imgsim_dir_lock_take(&lock, store_dir))) return st;
    imgsim_shard_plan plan;
    if ((st = imgsim_extract_plan(&plan, engines[0], ds, store_dir, opt))) {
        imgsim_dir_lock_release(lock);
        return st;
    }
    int64_t n_items = (int64_t)ds->d->n;
    int *owner = ims_malloc_array((size_t)plan.n_shards + 1, sizeof *owner);
    part_arg *pa = ims_calloc((size_t)n_engines, sizeof *pa);
    pthread_t *th = ims_calloc((size_t)n_engines, sizeof *th);
    multi_job job = {.opt = opt};
    pthread_mutex_init(&job.mu, NULL);
    atomic_init(&job.stop, 0);
    if (!owner || !pa || !th) st = ims_fail(NULL, IMGSIM_ERR_NOMEM, "out of memory for %d engines", n_engines);
    if (!st) st = imgsim_shard_assign(owner, &plan, n_engines);
    /* (CUDA engines: each engine's feeding thread drives its GPU, so it is left a core, as one
     * engine is) */
    int cores = ims_num_cores(), cuda = engines[0]->info.device == IMGSIM_DEVICE_CUDA;
    int workers = opt->workers > 0 ? ims_threads_cap(opt->workers, "workers")
                  : cuda && cores > 2 * n_engines ? cores - n_engines : cores;
    for (int i = 0; !st && i < n_engines; i++) {
        part_arg *a = &pa[i];
        a->job = &job, a->eng = engines[i], a->ds = ds, a->store_dir = store_dir;
        if (!(a->mine = ims_calloc((size_t)plan.n_shards + 1, 1))) {
            st = ims_fail(NULL, IMGSIM_ERR_NOMEM, "out of memory");
            break;
        }
        for (int64_t k = 0; k < plan.n_shards; k++) {
            if (owner[k] != i) continue;
            a->mine[k] = 1;
            int64_t first = k * plan.shard_size, left = n_items - first;
            a->images += left < plan.shard_size ? left : plan.shard_size;
        }
        job.total += a->images;
        a->o = *opt;
        a->o.part = a->mine;
        a->o.part_shards = plan.n_shards;
        a->o.quiet = 1; /* (one bar for the job: job.bar) */
        a->o.progress = part_progress;
        a->o.progress_user = a;
        a->o.workers = part_workers(workers, n_engines, i);
    }
    int started = 0;
    if (!st) {
        job.bar = ims_progress_start("extract", job.total, opt->quiet);
        for (; started < n_engines; started++) {
            if (pa[started].images == 0) continue; /* (fewer shards to go than engines) */
            if (pthread_create(&th[started], NULL, part_main, &pa[started]) != 0) {
                st = ims_fail(NULL, IMGSIM_ERR_INTERNAL, "cannot start the thread of engine %d", started);
                atomic_store(&job.stop, 1);
                break;
            }
        }
        for (int i = 0; i < started; i++)
            if (pa[i].images > 0) pthread_join(th[i], NULL);
        ims_progress_end(job.bar);
    }
    /* the first part that failed of itself (the others were stopped: CANCELLED), else a cancel */
    for (int pass = 0; !st && pass < 2; pass++)
        for (int i = 0; !st && i < started; i++) {
            part_arg *a = &pa[i];
            if (!a->st || (pass == 0 && a->st == IMGSIM_ERR_CANCELLED)) continue;
            imgsim_engine_info ei;
            imgsim_engine_get_info(a->eng, &ei);
            st = a->st == IMGSIM_ERR_CANCELLED && atomic_load(&job.stop) == 2
                     ? ims_fail(NULL, a->st, "%s", a->msg)
                     : ims_fail(NULL, a->st, "engine %d of %d (%s): %s", i, n_engines, ei.device_name, a->msg);
        }
    if (!st) { /* the join: every shard is there now; it writes the store's files and meta.json */
        imgsim_extract_opts jo = *opt;
        jo.locked = 1;
        jo.join = 1;
        jo.quiet = 1;
        jo.progress = NULL;
        st = imgsim_extract_dataset(engines[0], ds, store_dir, &jo, stats);
    }
    if (!st) { /* the parts' work, the whole job's time */
        for (int i = 0; i < n_engines; i++) {
            stats->seconds_decode_busy += pa[i].s.seconds_decode_busy;
            stats->seconds_infer_busy += pa[i].s.seconds_infer_busy;
            stats->seconds_write += pa[i].s.seconds_write;
            stats->gpu_decoded += pa[i].s.gpu_decoded;
            stats->seconds_gpu_decode += pa[i].s.seconds_gpu_decode;
            stats->seconds_wait_workers += pa[i].s.seconds_wait_workers;
            if (pa[i].s.seconds_setup > stats->seconds_setup) stats->seconds_setup = pa[i].s.seconds_setup;
            if (pa[i].s.seconds_gpu_init > stats->seconds_gpu_init) stats->seconds_gpu_init = pa[i].s.seconds_gpu_init;
        }
        stats->seconds_total = ims_now() - t0;
        stats->images_per_s = stats->seconds_total > 0 ? (double)stats->ok / stats->seconds_total : 0;
    }
    for (int i = 0; pa && i < n_engines; i++) free(pa[i].mine);
    free(pa), free(th), free(owner);
    pthread_mutex_destroy(&job.mu);
    imgsim_shard_plan_free(&plan);
    imgsim_dir_lock_release(lock);
    return st;
}
