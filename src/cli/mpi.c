/* mpi.c: the CLI under mpirun (mpi.h). With IMGSIM_HAVE_MPI, MPI is started only when a launcher
 * started the process (Open MPI, PMIx or PMI variables in the environment); otherwise, and in a
 * build without MPI, the job is one process and every collective is trivial. */
#define _POSIX_C_SOURCE 200809L
#include "cli/mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/util.h"

#ifdef IMGSIM_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_local = 1, g_on = 0;
static char g_host[256] = "";

const char *cli_mpi_host(void) {
    if (!g_host[0] && gethostname(g_host, sizeof g_host - 1) != 0) snprintf(g_host, sizeof g_host, "?");
    return g_host;
}
int cli_mpi_rank(void) { return g_rank; }
int cli_mpi_size(void) { return g_size; }
int cli_mpi_local_size(void) { return g_local; }
int cli_mpi_threads_per_rank(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    n = n > 0 ? n / g_local : 1;
    return n > 0 ? (int)n : 1;
}

#ifdef IMGSIM_HAVE_MPI

/* started by an MPI launcher (Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx and PMI ones) */
static int launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

void cli_mpi_init(int *argc, char ***argv) {
    if (!launched()) return;
    int prov;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &prov) != MPI_SUCCESS) return;
    g_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_size(local, &g_local);
        MPI_Comm_free(&local);
    }
    /* one rank's error ends the job on every rank (cli_mpi_agree); anything else MPI reports
     * aborts it rather than hanging */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
}

void cli_mpi_finalize(void) {
    if (g_on) MPI_Finalize();
    g_on = 0;
}

/* Waits for a non-blocking collective, sleeping between tests: Open MPI's blocking calls poll,
 * which would take a core from a rank that is still decoding or searching. */
static int wait_req(MPI_Request *r) {
    int done = 0;
    long ns = 20000;
    while (!done) {
        if (MPI_Test(r, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return 1;
        if (!done) {
            struct timespec ts = {0, ns};
            nanosleep(&ts, NULL);
            if (ns < 2000000) ns *= 2;
        }
    }
    return 0;
}

enum { MSG = 512, PIECE = 1 << 30 };

int cli_mpi_agree(const char *cmd, int failed, const char *msg) {
    if (!g_on || g_size == 1) return failed ? 1 : 0;
    char mine[MSG];
    memset(mine, 0, sizeof mine);
    mine[0] = failed ? 1 : 0;
    snprintf(mine + 1, sizeof mine - 1, "%s", msg ? msg : "");
    char *all = malloc((size_t)g_size * MSG);
    if (!all) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Request r;
    if (MPI_Iallgather(mine, MSG, MPI_CHAR, all, MSG, MPI_CHAR, MPI_COMM_WORLD, &r) != MPI_SUCCESS || wait_req(&r))
        MPI_Abort(MPI_COMM_WORLD, 1);
    int bad = -1;
    for (int i = 0; i < g_size && bad < 0; i++)
        if (all[(size_t)i * MSG]) bad = i;
    if (bad >= 0 && bad != g_rank) /* the failed rank printed its own message */
        fprintf(stderr, "imgsim %s: stopping: rank %d of %d failed: %s\n", cmd, bad, g_size,
                all[(size_t)bad * MSG + 1] ? all + (size_t)bad * MSG + 1 : "(no message)");
    free(all);
    return bad >= 0;
}

int cli_mpi_bcast(void *buf, size_t bytes, int root) {
    if (!g_on || g_size == 1) return 0;
    for (size_t off = 0; off < bytes; off += PIECE) {
        int n = (int)(bytes - off < PIECE ? bytes - off : PIECE);
        MPI_Request r;
        if (MPI_Ibcast((char *)buf + off, n, MPI_BYTE, root, MPI_COMM_WORLD, &r) != MPI_SUCCESS || wait_req(&r))
            return 1;
    }
    return 0;
}

int cli_mpi_gather(const void *send, size_t bytes, void *recv, int root) {
    if (!g_on || g_size == 1) {
        memcpy(recv, send, bytes);
        return 0;
    }
    /* pieces of every rank's buffer: piece p of rank i lands at recv + i * bytes + p */
    char *tmp = NULL;
    size_t piece = bytes < PIECE / (size_t)g_size ? bytes : PIECE / (size_t)g_size;
    if (g_rank == root && piece < bytes && !(tmp = malloc(piece * (size_t)g_size))) return 1;
    for (size_t off = 0; off < bytes || (bytes == 0 && off == 0); off += piece ? piece : 1) {
        size_t n = bytes - off < piece ? bytes - off : piece;
        char *dst = piece < bytes ? tmp : recv;
        MPI_Request r;
        if (MPI_Igather((const char *)send + off, (int)n, MPI_BYTE, dst, (int)n, MPI_BYTE, root, MPI_COMM_WORLD, &r) !=
                MPI_SUCCESS || wait_req(&r)) {
            free(tmp);
            return 1;
        }
        if (g_rank == root && piece < bytes)
            for (int i = 0; i < g_size; i++) memcpy((char *)recv + (size_t)i * bytes + off, tmp + (size_t)i * n, n);
        if (bytes == 0) break;
    }
    free(tmp);
    return 0;
}

void cli_mpi_abort(int code) {
    fflush(stderr);
    if (g_on && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

#else /* no MPI in this build: one process */

void cli_mpi_abort(int code) {
    (void)code;
}

void cli_mpi_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
}
void cli_mpi_finalize(void) {}
int cli_mpi_agree(const char *cmd, int failed, const char *msg) {
    (void)cmd, (void)msg;
    return failed ? 1 : 0;
}
int cli_mpi_bcast(void *buf, size_t bytes, int root) {
    (void)buf, (void)bytes, (void)root;
    return 0;
}
int cli_mpi_gather(const void *send, size_t bytes, void *recv, int root) {
    (void)root;
    memcpy(recv, send, bytes);
    return 0;
}

#endif

int cli_search_ranks(const char *cmd, int64_t *idx, float *score, const void *gallery, int64_t n,
                     const void *queries, int64_t q, int dim, imgsim_dtype dtype, int k,
                     const imgsim_search_opts *so) {
    if (g_size == 1) {
        imgsim_status st = imgsim_search(idx, score, gallery, n, queries, q, dim, dtype, k, so);
        return st ? cli_fail(cmd, st) : 0;
    }
    /* the queries and k, from rank 0 */
    int64_t hdr[2] = {q, k};
    if (cli_mpi_bcast(hdr, sizeof hdr, 0)) return 1;
    q = hdr[0], k = (int)hdr[1];
    size_t esz = dtype == IMGSIM_F16 ? 2 : 4, qbytes = (size_t)q * (size_t)dim * esz;
    void *qbuf = NULL;
    if (g_rank != 0) queries = qbuf = malloc(qbytes ? qbytes : 1);
    int64_t lo = n * g_rank / g_size, hi = n * (g_rank + 1) / g_size;
    size_t lk = (size_t)q * (size_t)k;
    int64_t *li = cli_malloc_array(lk ? lk : 1, sizeof *li);
    float *ls = cli_malloc_array(lk ? lk : 1, sizeof *ls);
    int64_t *all = g_rank == 0 ? cli_malloc_array((lk ? lk : 1) * (size_t)g_size, sizeof *all) : NULL;
    int64_t *cand = g_rank == 0 ? cli_malloc_array((lk ? lk : 1) * (size_t)g_size, sizeof *cand) : NULL;
    int bad = !queries || (n > 0 && !gallery) || !li || !ls || (g_rank == 0 && (!all || !cand));
    char msg[300] = "out of memory";
    if (cli_mpi_agree(cmd, bad, msg)) goto fail;
    if (cli_mpi_bcast((void *)queries, qbytes, 0)) goto fail;
    /* this rank's rows [lo, hi): their exact top-k, rows made global */
    imgsim_status st = imgsim_search(li, ls, (const char *)gallery + (size_t)lo * (size_t)dim * esz, hi - lo, queries,
                                     q, dim, dtype, k, so);
    if (st) snprintf(msg, sizeof msg, "search of rows %lld..%lld on %s: %s", (long long)lo, (long long)hi,
                     cli_mpi_host(), imgsim_last_error());
    if (st) fprintf(stderr, "imgsim %s: rank %d: %s\n", cmd, g_rank, msg);
    if (cli_mpi_agree(cmd, st != IMGSIM_OK, msg)) goto fail;
    for (size_t i = 0; i < lk; i++)
        if (li[i] >= 0) li[i] += lo;
    if (cli_mpi_gather(li, lk * sizeof *li, all, 0)) goto fail;
    if (g_rank == 0) {
        /* [rank][query][k] -> [query][rank * k] */
        for (int r = 0; r < g_size; r++)
            for (int64_t i = 0; i < q; i++)
                memcpy(cand + ((size_t)i * (size_t)g_size + (size_t)r) * (size_t)k,
                       all + ((size_t)r * (size_t)q + (size_t)i) * (size_t)k, (size_t)k * sizeof *cand);
        st = imgsim_search_merge(idx, score, cand, g_size * k, gallery, n, queries, q, dim, dtype, k);
        if (st) {
            cli_fail(cmd, st);
            goto fail;
        }
    }
    free(qbuf), free(li), free(ls), free(all), free(cand);
    return 0;
fail:
    free(qbuf), free(li), free(ls), free(all), free(cand);
    return 1;
}

/* what each rank tells rank 0 about its part of an extraction */
typedef struct part_report {
    double shards, images, bytes, ok, seconds;
    char host[64];
} part_report;

int cli_extract_ranks(const char *cmd, imgsim_engine *e, const imgsim_dataset *ds, const char *store_dir,
                      const imgsim_extract_opts *opt, imgsim_extract_stats *stats) {
    imgsim_extract_stats s0;
    if (!stats) stats = &s0;
    memset(stats, 0, sizeof *stats);
    if (g_size == 1) return imgsim_extract_dataset(e, ds, store_dir, opt, stats) ? cli_fail(cmd, IMGSIM_ERR_IO) : 0;
    double t0 = cli_now();
    char msg[MSG - 8] = "";
    imgsim_dir_lock *lock = NULL;
    imgsim_shard_plan plan;
    memset(&plan, 0, sizeof plan);
    int bad = 0;
    if (opt->update) {
        snprintf(msg, sizeof msg, "--update does not run across MPI ranks yet: run it as one process");
        bad = 1;
    } else if (g_rank == 0 && (imgsim_dir_lock_take(&lock, store_dir) || imgsim_extract_plan(&plan, e, ds, store_dir, opt))) {
        snprintf(msg, sizeof msg, "%s", imgsim_last_error());
        bad = 1;
    }
    if (bad && g_rank == 0) fprintf(stderr, "imgsim %s: rank 0 of %d on %s: %s\n", cmd, g_size, cli_mpi_host(), msg);
    int *owner = NULL;
    uint8_t *mine = NULL;
    part_report *all = NULL;
    int rc = 1;
    if (cli_mpi_agree(cmd, bad, msg)) goto done;
    /* the plan's shape, then who extracts which shard (rank 0 deals; every rank gets its deal) */
    int64_t hdr[3] = {plan.n_shards, plan.shard_size, plan.n_done};
    if (cli_mpi_bcast(hdr, sizeof hdr, 0)) goto done;
    int64_t n = hdr[0];
    owner = cli_malloc_array((size_t)n + 1, sizeof *owner);
    mine = calloc((size_t)n + 1, 1);
    bad = !owner || !mine || (g_rank == 0 && imgsim_shard_assign(owner, &plan, g_size));
    if (bad) snprintf(msg, sizeof msg, "out of memory for %lld shards", (long long)n);
    if (cli_mpi_agree(cmd, bad, msg) || cli_mpi_bcast(owner, (size_t)n * sizeof *owner, 0)) goto done;
    part_report me;
    memset(&me, 0, sizeof me);
    snprintf(me.host, sizeof me.host, "%s", cli_mpi_host());
    imgsim_dataset_info di;
    imgsim_dataset_get_info(ds, &di);
    for (int64_t k = 0; k < n; k++) {
        if (owner[k] != g_rank) continue;
        mine[k] = 1;
        int64_t first = k * hdr[1], cnt = (int64_t)di.n - first < hdr[1] ? (int64_t)di.n - first : hdr[1];
        me.shards++;
        me.images += (double)cnt;
    }
    if (cli_log_enabled(IMGSIM_LOG_DEBUG)) { /* --verbose: this rank's deal, as one write */
        size_t cap = 200 + (size_t)me.shards * 21, len = 0;
        char *line = malloc(cap);
        if (line) {
            len += (size_t)snprintf(line, cap, "imgsim %s: rank %d of %d on %s: %.0f shards (%.0f images):", cmd,
                                    g_rank, g_size, cli_mpi_host(), me.shards, me.images);
            for (int64_t k = 0; k < n && len < cap; k++)
                if (mine[k]) len += (size_t)snprintf(line + len, cap - len, " %lld", (long long)k);
            fprintf(stderr, "%s\n", line);
            free(line);
        }
    }
    if (g_rank == 0) {
        for (int64_t k = 0; k < n; k++) me.bytes += owner[k] == 0 ? (double)plan.bytes[k] : 0;
        if (n - hdr[2] < g_size && n > hdr[2])
            fprintf(stderr, "imgsim %s: warning: %lld shards to extract for %d ranks: some ranks have nothing to do "
                            "(--shard-size=N sets the images per shard)\n", cmd, (long long)(n - hdr[2]), g_size);
    }
    if (me.shards > 0) { /* this rank's part */
        imgsim_extract_opts po = *opt;
        po.part = mine;
        po.part_shards = n;
        po.quiet = opt->quiet || g_rank != 0; /* one progress line: rank 0's */
        imgsim_extract_stats ps;
        double tp = cli_now();
        if (imgsim_extract_dataset(e, ds, store_dir, &po, &ps)) {
            fprintf(stderr, "imgsim %s: rank %d of %d on %s failed: %s\n", cmd, g_rank, g_size, cli_mpi_host(),
                    imgsim_last_error());
            cli_mpi_abort(1); /* the others are busy with their parts: end the job now */
            goto done;
        }
        me.ok = (double)ps.ok;
        me.seconds = cli_now() - tp;
    }
    /* every part done (a rank that is still working is waited for without spinning) */
    if (cli_mpi_agree(cmd, 0, NULL)) goto done;
    all = g_rank == 0 ? calloc((size_t)g_size, sizeof *all) : NULL;
    if (cli_mpi_gather(&me, sizeof me, g_rank == 0 ? (void *)all : (void *)&me, 0)) goto done;
    bad = 0;
    if (g_rank == 0) {
        for (int64_t k = 0; all && k < n; k++)
            if (owner[k] > 0) all[owner[k]].bytes += (double)plan.bytes[k];
        for (int r = 0; all && r < g_size; r++)
            cli_info("imgsim: %s: rank %d on %s: %.0f shards, %.0f images (%.0f bytes) in %.2f s\n", store_dir, r,
                     all[r].host, all[r].shards, all[r].images, all[r].bytes, all[r].seconds);
        imgsim_extract_opts jo = *opt; /* the join: every shard is there (no progress, no "resuming") */
        jo.locked = 1;
        jo.join = 1; /* a shard rank 0 does not see is an error (no shared file system?), not redone here */
        jo.quiet = 1;
        if (cli_log_enabled(IMGSIM_LOG_INFO)) imgsim_set_log_level(IMGSIM_LOG_WARN);
        bad = imgsim_extract_dataset(e, ds, store_dir, &jo, stats) != IMGSIM_OK;
        if (cli_log_enabled(IMGSIM_LOG_INFO)) imgsim_set_log_level(cli_log_enabled(IMGSIM_LOG_DEBUG) ? IMGSIM_LOG_DEBUG : IMGSIM_LOG_INFO);
        if (bad) {
            snprintf(msg, sizeof msg, "joining the shards of %s: %s", store_dir, imgsim_last_error());
            fprintf(stderr, "imgsim %s: rank 0 of %d on %s: %s\n", cmd, g_size, cli_mpi_host(), msg);
        }
        stats->seconds_total = cli_now() - t0;
        stats->images_per_s = stats->seconds_total > 0 ? (double)stats->ok / stats->seconds_total : 0;
    }
    if (cli_mpi_agree(cmd, bad, msg)) goto done;
    rc = 0;
done:
    imgsim_dir_lock_release(lock);
    imgsim_shard_plan_free(&plan);
    free(owner), free(mine), free(all);
    return rc;
}
