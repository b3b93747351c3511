/* pool.c: a fixed pool of worker threads running parallel-for jobs; the calling thread takes part
 * as worker 0. One job at a time (ims_pool_for serialises concurrent callers). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

struct ims_pool {
    int size; /* workers including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    pthread_mutex_t job_mu; /* serialises ims_pool_for callers */
    uint64_t generation;    /* bumped for each job */
    int stop;
    /* current job */
    ims_pool_fn fn;
    void *ctx;
    int64_t n;
    atomic_llong next;
    int active; /* helper threads still working on the job */
};

typedef struct worker_arg {
    ims_pool *p;
    int id;
} worker_arg;

static void run_items(ims_pool *p, int worker) {
    for (;;) {
        int64_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) break;
        p->fn(p->ctx, i, worker);
    }
}

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    ims_pool *p = wa.p;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_items(p, wa.id);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

imgsim_status ims_pool_create(ims_pool **out, int threads, ims_err *e) {
    *out = NULL;
    threads = threads <= 0 ? ims_num_cores() : ims_threads_cap(threads, "threads");
    ims_pool *p = ims_calloc(1, sizeof *p);
    if (!p) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory creating a thread pool");
    p->size = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->job_mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->threads = ims_calloc((size_t)threads, sizeof(pthread_t));
    if (!p->threads) {
        ims_pool_destroy(p);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory creating a thread pool");
    }
    for (int i = 1; i < threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            p->size = i;
            break;
        }
        wa->p = p;
        wa->id = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->size = i; /* run with what we have */
            break;
        }
    }
    *out = p;
    return IMGSIM_OK;
}

void ims_pool_destroy(ims_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    if (p->threads)
        for (int i = 1; i < p->size; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->job_mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int ims_pool_size(const ims_pool *p) {
    return p ? p->size : 1;
}

void ims_pool_for(ims_pool *p, int64_t n, ims_pool_fn fn, void *ctx) {
    if (n <= 0) return;
    if (!p || p->size == 1 || n == 1) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->job_mu);
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->next, 0);
    p->active = p->size - 1;
    p->generation++;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    run_items(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->job_mu);
}
