/* alloc.c: overflow-checked allocation with fault injection for tests; time, cores, peak RSS. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

static atomic_long g_fail_after = -1;

void ims_alloc_fail_after(long n) {
    atomic_store(&g_fail_after, n);
}

/* Returns 1 when the injected fault fires for this allocation. */
static int inject_fault(void) {
    long n = atomic_load(&g_fail_after);
    if (n < 0) return 0;
    if (n == 0) return 1;
    atomic_fetch_sub(&g_fail_after, 1);
    return 0;
}

void *ims_malloc(size_t n) {
    if (inject_fault()) return NULL;
    return malloc(n ? n : 1);
}

void *ims_calloc(size_t count, size_t size) {
    if (inject_fault()) return NULL;
    if (size && count > SIZE_MAX / size) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *ims_realloc(void *p, size_t n) {
    if (inject_fault()) return NULL;
    return realloc(p, n ? n : 1);
}

void *ims_malloc_array(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    return ims_malloc(count * size);
}

char *ims_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = ims_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int ims_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a && b > UINT64_MAX / a) return -1;
    *out = a * b;
    return 0;
}

double ims_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ims_num_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int ims_threads_cap(int asked, const char *what) {
    int cores = ims_num_cores(), cap = cores * 4 > 4 ? cores * 4 : 4;
    if (asked <= cap) return asked;
    /* warned once per name (a job makes several pools) */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static const char *warned[8];
    int seen = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 8 && warned[i] && !seen; i++) seen = !strcmp(warned[i], what);
    for (int i = 0; i < 8 && !seen; i++)
        if (!warned[i]) {
            warned[i] = what;
            break;
        }
    pthread_mutex_unlock(&mu);
    if (!seen)
        ims_log_warn("%s=%d is far more than the %d cores: using %d threads (more only add context switches)",
                    what, asked, cores, cap);
    return cap;
}

size_t ims_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024u;
}
