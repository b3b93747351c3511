/* progress.c: progress bar with rate and ETA on a terminal; plain periodic lines otherwise. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

struct ims_progress {
    char label[64];
    int64_t total;
    atomic_llong done;
    double t0, last_print;
    int tty, quiet;
    pthread_mutex_t mu;
};

static void fmt_eta(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%02d:%02d", t / 60, t % 60);
}

static void print_line(ims_progress *p, int final) {
    int64_t done = atomic_load(&p->done);
    double el = ims_now() - p->t0;
    double rate = el > 0 ? (double)done / el : 0;
    char eta[32];
    fmt_eta(eta, sizeof eta, rate > 0 && p->total > 0 ? (double)(p->total - done) / rate : -1);
    if (p->tty) {
        int width = 30, fill = p->total > 0 ? (int)(width * (double)done / (double)p->total) : 0;
        if (fill > width) fill = width;
        char bar[64];
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(width - fill));
        bar[width] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld %.1f img/s ETA %s%s", p->label, bar, (long long)done,
                (long long)p->total, rate, eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "imgsim: %s %lld/%lld (%.1f img/s, %s)\n", p->label, (long long)done,
                (long long)p->total, rate, final ? "done" : eta);
    }
    fflush(stderr);
}

ims_progress *ims_progress_start(const char *label, int64_t total, int quiet) {
    ims_progress *p = ims_calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->t0 = p->last_print = ims_now();
    p->tty = isatty(2);
    p->quiet = quiet || !ims_log_enabled(IMGSIM_LOG_INFO);
    pthread_mutex_init(&p->mu, NULL);
    return p;
}

void ims_progress_add(ims_progress *p, int64_t n) {
    if (!p) return;
    atomic_fetch_add(&p->done, n);
    if (p->quiet) return;
    double now = ims_now(), period = p->tty ? 0.2 : 10.0;
    if (now - p->last_print < period) return;
    if (pthread_mutex_trylock(&p->mu) != 0) return;
    if (now - p->last_print >= period) {
        p->last_print = now;
        print_line(p, 0);
    }
    pthread_mutex_unlock(&p->mu);
}

void ims_progress_end(ims_progress *p) {
    if (!p) return;
    if (!p->quiet) print_line(p, 1);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
