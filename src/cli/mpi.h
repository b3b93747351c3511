/* mpi.h: the CLI under mpirun (Open MPI; optional: without IMGSIM_HAVE_MPI every call is the
 * one-process case). MPI starts only when the process was started by an MPI launcher, so a plain
 * `imgsim ...` never pays for it. A collective here is entered by every rank of the job. */
#ifndef IMGSIM_CLI_MPI_H
#define IMGSIM_CLI_MPI_H

#include <stddef.h>
#include <stdint.h>

#include "imgsim.h"

/* Starts MPI when launched by mpirun/mpiexec (and built with MPI); harmless otherwise. */
void cli_mpi_init(int *argc, char ***argv);
void cli_mpi_finalize(void);
int cli_mpi_rank(void);       /* 0 without MPI */
int cli_mpi_size(void);       /* 1 without MPI */
int cli_mpi_local_size(void); /* ranks on this host (1 without MPI) */
const char *cli_mpi_host(void);
int cli_mpi_threads_per_rank(void); /* the cores of this host over its ranks, at least 1 */

/* Every rank reports whether its last step failed (msg: why); returns 0 when none did. Otherwise
 * every rank prints "imgsim CMD: rank R on HOST: MSG" for the first failed rank and returns 1, so
 * all of them stop together. Waits without spinning (a rank still working is not slowed). */
int cli_mpi_agree(const char *cmd, int failed, const char *msg);

/* bytes of buf from rank root to every rank; recv[size * bytes] on root gets each rank's send
 * (rank order). Any size (sent in pieces under 1 GiB). 0 on success. */
int cli_mpi_bcast(void *buf, size_t bytes, int root);
int cli_mpi_gather(const void *send, size_t bytes, void *recv, int root);

/* imgsim_search over every rank of the job: each rank searches its contiguous share of the
 * gallery's rows (all ranks hold the same gallery, memory-mapped: each reads only its share),
 * rank 0 merges the candidates exactly (imgsim_search_merge), so idx/score on rank 0 equal a
 * one-process imgsim_search. Rank 0 passes the queries (q, k as well); the others pass NULL/0
 * and get them broadcast; idx/score are written on rank 0 only. With one process: imgsim_search.
 * Returns 0 on success on every rank, 1 (message printed) on all of them otherwise. */
int cli_search_ranks(const char *cmd, int64_t *idx, float *score, const void *gallery, int64_t n,
                     const void *queries, int64_t q, int dim, imgsim_dtype dtype, int k,
                     const imgsim_search_opts *so);

/* Ends the whole job now (MPI_Abort: mpirun stops every rank) after the caller printed why, for a
 * failure in the middle of work the other ranks are busy with; returns only without MPI. */
void cli_mpi_abort(int code);

/* imgsim_extract_dataset over every rank of the job (all ranks pass the same dataset, listed
 * each on its own from a shared file system, the same store folder and options): rank 0 takes the
 * store's lock and plans its shards (imgsim_extract_plan: complete shards of an earlier run kept),
 * deals the others to the ranks balanced by file size (imgsim_shard_assign) and broadcasts who
 * does which; each rank extracts its shards (opt->part); rank 0 waits for every rank and joins
 * the store (byte-identical to one process's). A rank whose part fails prints
 * "imgsim CMD: rank R of N on HOST: why" and ends the job on every rank (cli_mpi_abort); a
 * killed rank ends it too (mpirun). stats (rank 0: the store's counts, the job's wall time) may be
 * NULL. With one process: imgsim_extract_dataset. Returns 0, or 1 on every rank. */
int cli_extract_ranks(const char *cmd, imgsim_engine *e, const imgsim_dataset *ds, const char *store_dir,
                      const imgsim_extract_opts *opt, imgsim_extract_stats *stats);

#endif
