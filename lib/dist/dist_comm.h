/* The communication engine behind lib/dist/dist.c: MPI (dist_mpi.c) or a
 * world of one process (dist_self.c), chosen by the build. dist.c does the
 * argument checks, the packing and the bookkeeping; the engine only moves
 * bytes. All functions run on the thread that called nn__comm_init. */
#ifndef NN_DIST_COMM_H
#define NN_DIST_COMM_H

#include "nn_internal.h"

/* Whether this build talks to other processes. */
bool nn__comm_available(void);
/* Join the world (fn names the public caller in messages). */
nn_status nn__comm_init(int *argc, char ***argv, const char *fn);
/* Leave the world (finalise MPI when nn__comm_init initialised it). */
nn_status nn__comm_finalize(const char *fn);
int nn__comm_rank(void);
int nn__comm_size(void);
nn_status nn__comm_barrier(const char *fn);
/* Broadcast nbytes of buf from root (any size: chunked below INT_MAX). */
nn_status nn__comm_bcast(void *buf, size_t nbytes, int root, const char *fn);
/* Elementwise sum over ranks, in place. */
nn_status nn__comm_sum_f32(float *buf, size_t n, const char *fn);
nn_status nn__comm_sum_f64(double *buf, size_t n, const char *fn);
/* Nonblocking elementwise sum over ranks of buf[0..n), in place: starts
 * the collective and returns at once with *req (NULL in a world of one).
 * buf must stay untouched until nn__comm_wait. Every rank must start its
 * nonblocking sums in the same order. */
typedef struct nn__comm_req nn__comm_req;
nn_status nn__comm_isum_f32(float *buf, size_t n, nn__comm_req **req, const char *fn);
/* Drive MPI's progress on req without blocking; *done once complete. */
nn_status nn__comm_test(nn__comm_req *req, bool *done, const char *fn);
/* Complete req within the collective deadline (NN_ERR_TIMEOUT otherwise,
 * as the blocking collectives) and free it, whatever the outcome. */
nn_status nn__comm_wait(nn__comm_req *req, const char *fn);
/* Elementwise maximum over ranks, in place. */
nn_status nn__comm_max_i64(int64_t *buf, size_t n, const char *fn);

/* Collective deadline in seconds (0: none). */
void nn__comm_set_timeout(double seconds);
double nn__comm_timeout(void);
/* Whether the world has been joined (MPI active). */
bool nn__comm_active(void);
/* Print why on stderr, naming this rank, and end every rank (MPI_Abort).
 * Returns only when there is no MPI world to abort. */
void nn__comm_abort(int code, const char *why);

#endif /* NN_DIST_COMM_H */
