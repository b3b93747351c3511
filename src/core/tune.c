/*
 * tune.c: everything the library reads from the environment, in one place: the tuning knobs
 * (ims_tuning, read once; README.md "Tuning knobs" documents each) and the default cache folder.
 * No other file of libimgsim calls getenv.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static ims_tuning g_tuning;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* name's value as an integer in [lo, hi]: 0 when unset or invalid (with a warning). */
static int64_t env_int(const char *name, int64_t lo, int64_t hi) {
    const char *v = getenv(name);
    if (!v) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        ims_log_warn("%s=%s: expected an integer in %lld..%lld; ignored", name, v, (long long)lo,
                     (long long)hi);
        return 0;
    }
    return (int64_t)x;
}

/* name's value among choices[0..n) (index), def when unset or invalid (with a warning). */
static int env_choice(const char *name, const char *const *choices, int n, int def) {
    const char *v = getenv(name);
    if (!v) return def;
    for (int i = 0; i < n; i++)
        if (!strcmp(v, choices[i])) return i;
    char list[128] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                 i ? (i == n - 1 ? " or " : ", ") : "", choices[i]);
    ims_log_warn("%s=%s: expected %s; ignored", name, v, list);
    return def;
}

static void load(void) {
    static const char *const bools[] = {"0", "1"};
    static const char *const screens[] = {"auto", "f32", "bf16"};
    ims_tuning t;
    memset(&t, 0, sizeof t);
    t.cuda_graphs = env_choice("IMGSIM_CUDA_GRAPHS", bools, 2, 1);
    t.search_screen = (ims_screen)env_choice("IMGSIM_SEARCH_SCREEN", screens, 3, IMS_SCREEN_AUTO);
    t.gs_tile = env_int("IMGSIM_GS_TILE", 65536, (int64_t)1 << 28);
    t.gs_qb = (int)env_int("IMGSIM_GS_QB", 1, (int64_t)1 << 20);
    t.gs_qs = (int)env_int("IMGSIM_GS_QS", 1, (int64_t)1 << 30);
    t.gpu_ring = (int)env_int("IMGSIM_GPU_RING", 2, 16);
    t.gpu_init_sync = env_choice("IMGSIM_GPU_INIT_SYNC", bools, 2, 0);
    g_tuning = t;
}

const ims_tuning *ims_tuning_get(void) {
    pthread_once(&g_once, load);
    return &g_tuning;
}

void ims_tuning_reload(void) {
    pthread_once(&g_once, load);
    load();
}

char *ims_cache_dir(void) {
    const char *x = getenv("XDG_CACHE_HOME");
    if (x && *x) return ims_path_join(x, "imgsim");
    const char *home = getenv("HOME");
    if (home && *home) return ims_path_join(home, ".cache/imgsim");
    return NULL;
}
