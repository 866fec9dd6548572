/* The MPI engine: libnn's own duplicate of MPI_COMM_WORLD, errors returned
 * to the caller (MPI_ERRORS_RETURN) instead of aborting the host process.
 * dist.c calls init once and finalize once, in that order; the state here
 * only guards the collectives. */
#include "dist_comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <time.h>

enum { COMM_NONE, COMM_ACTIVE, COMM_DONE };

static int g_state = COMM_NONE;
static bool g_owns_mpi; /* MPI_Init_thread was ours: finalise it */
static MPI_Comm g_comm = MPI_COMM_NULL;
static int g_rank = 0, g_size = 1;
/* Collectives fail after this many seconds (0: wait forever); after a
 * timeout the communicator is broken (a collective is still pending on it). */
static double g_timeout = 600.0;
static bool g_broken;

/* Collectives move at most this many elements per call (MPI counts are int). */
#define CHUNK ((size_t)1 << 30)

/* NN_ERR_IO naming fn, the MPI call and MPI's own message. */
static nn_status mpi_fail(int rc, const char *fn, const char *call) {
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    return nn__err(NN_ERR_IO, "%s: %s failed (MPI error %d: %s)", fn, call, rc, msg);
}

bool nn__comm_available(void) { return true; }

/* Our communicator: a duplicate, so user traffic on MPI_COMM_WORLD never
 * interleaves with ours; errors are returned, not fatal. */
static nn_status make_comm(const char *fn) {
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &g_comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, fn, "MPI_Comm_dup");
    rc = MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(g_comm, &g_rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(g_comm, &g_size);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(&g_comm);
        g_comm = MPI_COMM_NULL;
        return mpi_fail(rc, fn, "MPI_Comm_set_errhandler/rank/size");
    }
    return NN_OK;
}

nn_status nn__comm_init(int *argc, char ***argv, const char *fn) {
    if (g_state == COMM_ACTIVE) return NN_OK;
    if (g_state == COMM_DONE)
        return nn__err(NN_ERR_STATE, "%s: called after nn_dist_finalize (MPI cannot restart)", fn);
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) return nn__err(NN_ERR_STATE, "%s: MPI was already finalised", fn);
    if (!inited) {
        int provided = MPI_THREAD_SINGLE;
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, fn, "MPI_Init_thread");
        g_owns_mpi = true;
        if (provided < MPI_THREAD_FUNNELED) {
            MPI_Finalize();
            g_state = COMM_DONE;
            return nn__err(NN_ERR_UNSUPPORTED,
                           "%s: MPI provides thread level %d, need MPI_THREAD_FUNNELED", fn,
                           provided);
        }
    }
    nn_status st = make_comm(fn);
    if (st != NN_OK) {
        if (g_owns_mpi) MPI_Finalize();
        g_state = g_owns_mpi ? COMM_DONE : COMM_NONE;
        return st;
    }
    g_state = COMM_ACTIVE;
    return NN_OK;
}

nn_status nn__comm_finalize(const char *fn) {
    if (g_state != COMM_ACTIVE) return NN_OK;
    int finalized = 0;
    MPI_Finalized(&finalized);
    nn_status st = NN_OK;
    if (g_broken) {
        /* A collective is pending on g_comm and a peer is gone or stuck:
         * MPI_Finalize would wait for it forever. Leave MPI as it is; the
         * process exits, and mpirun ends the job. */
        st = nn__err(NN_ERR_STATE,
                     "%s: rank %d of %d: not finalising MPI after a collective timed out "
                     "(exit with a non-zero status: mpirun then ends the job)",
                     fn, g_rank, g_size);
    } else if (!finalized) {
        MPI_Comm_free(&g_comm);
        if (g_owns_mpi) {
            int rc = MPI_Finalize();
            if (rc != MPI_SUCCESS) st = mpi_fail(rc, fn, "MPI_Finalize");
        }
    }
    g_comm = MPI_COMM_NULL;
    g_rank = 0;
    g_size = 1;
    g_state = COMM_DONE;
    return st;
}

int nn__comm_rank(void) { return g_state == COMM_ACTIVE ? g_rank : 0; }
int nn__comm_size(void) { return g_state == COMM_ACTIVE ? g_size : 1; }

/* Collectives before init / after finalize run in a world of one: no-ops. */
static bool alone(void) { return g_state != COMM_ACTIVE || g_size == 1; }

void nn__comm_set_timeout(double seconds) { g_timeout = seconds; }
double nn__comm_timeout(void) { return g_timeout; }

/* After a timeout nothing more can be sent on g_comm. */
static nn_status broken(const char *fn) {
    return nn__err(NN_ERR_STATE,
                   "%s: rank %d of %d: an earlier collective timed out; the job cannot continue",
                   fn, g_rank, g_size);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Complete the nonblocking collectives req[0..n), or fail after g_timeout
 * seconds. Open MPI moves a large message only inside MPI calls, one
 * fragment exchange per MPI_Test (the CNN's 1.7 MB of gradients take ~100
 * on shared memory), so the wait first polls back to back for SPIN_S (with
 * mpi_yield_when_idle, Open MPI yields the core between polls) and only
 * then sleeps between polls, doubling from 20 us to NAP_MAX_NS: a stalled
 * peer costs a few percent of a core, and a peer that arrives late still
 * gets its message through at one fragment per nap at worst. (Sleeping
 * after 50 us with naps of up to 1 ms, as before, made every allreduce of
 * more than a few fragments take ~1 ms per fragment: 150 ms for the CNN.) */
#define SPIN_S 0.010
#define NAP_MAX_NS 100000L
static nn_status wait_deadline_n(int n, MPI_Request *req, const char *fn, const char *call) {
    if (g_timeout <= 0) {
        int rc = MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
        return rc == MPI_SUCCESS ? NN_OK : mpi_fail(rc, fn, call);
    }
    double t0 = now_s(), waited = 0;
    long nap = 20000;
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, fn, call);
        if (done) return NN_OK;
        waited = now_s() - t0;
        if (waited > g_timeout) break;
        if (waited > SPIN_S) {
            struct timespec ts = {0, nap};
            nanosleep(&ts, NULL);
            if (nap < NAP_MAX_NS) nap = nap * 2 < NAP_MAX_NS ? nap * 2 : NAP_MAX_NS;
        }
    }
    g_broken = true;
    return nn__err(NN_ERR_TIMEOUT,
                   "%s: rank %d of %d: %s did not complete within %.3g s (nn_dist_set_timeout): "
                   "another rank failed before it, died or stalled. The job cannot continue: "
                   "exit with a non-zero status (mpirun then ends every rank)",
                   fn, g_rank, g_size, call, waited);
}

static nn_status wait_deadline(MPI_Request *req, const char *fn, const char *call) {
    return wait_deadline_n(1, req, fn, call);
}

nn_status nn__comm_barrier(const char *fn) {
    if (alone()) return NN_OK;
    if (g_broken) return broken(fn);
    MPI_Request req;
    int rc = MPI_Ibarrier(g_comm, &req);
    return rc == MPI_SUCCESS ? wait_deadline(&req, fn, "MPI_Ibarrier")
                             : mpi_fail(rc, fn, "MPI_Ibarrier");
}

nn_status nn__comm_bcast(void *buf, size_t nbytes, int root, const char *fn) {
    if (alone()) return NN_OK;
    if (g_broken) return broken(fn);
    for (size_t off = 0; off < nbytes; off += CHUNK) {
        size_t n = nbytes - off < CHUNK ? nbytes - off : CHUNK;
        MPI_Request req;
        int rc = MPI_Ibcast((unsigned char *)buf + off, (int)n, MPI_BYTE, root, g_comm, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, fn, "MPI_Ibcast");
        nn_status st = wait_deadline(&req, fn, "MPI_Ibcast");
        if (st) return st;
    }
    return NN_OK;
}

/* In-place allreduce of n elements of type, chunked. */
static nn_status allreduce(void *buf, size_t n, size_t esize, MPI_Datatype type, MPI_Op op,
                           const char *fn) {
    if (alone()) return NN_OK;
    if (g_broken) return broken(fn);
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        MPI_Request req;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (unsigned char *)buf + off * esize, (int)k, type, op,
                                g_comm, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, fn, "MPI_Iallreduce");
        nn_status st = wait_deadline(&req, fn, "MPI_Iallreduce");
        if (st) return st;
    }
    return NN_OK;
}

nn_status nn__comm_sum_f32(float *buf, size_t n, const char *fn) {
    return allreduce(buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM, fn);
}

nn_status nn__comm_sum_f64(double *buf, size_t n, const char *fn) {
    return allreduce(buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM, fn);
}

/* A nonblocking sum: one MPI request per CHUNK elements. */
struct nn__comm_req {
    int n;
    MPI_Request r[];
};

nn_status nn__comm_isum_f32(float *buf, size_t n, nn__comm_req **req, const char *fn) {
    *req = NULL;
    if (alone()) return NN_OK;
    if (g_broken) return broken(fn);
    size_t chunks = n / CHUNK + (n % CHUNK != 0);
    nn__comm_req *q = nn__malloc(sizeof *q + (chunks ? chunks : 1) * sizeof(MPI_Request));
    if (!q) return NN_ERR_NOMEM;
    q->n = 0;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, g_comm,
                                &q->r[q->n]);
        if (rc != MPI_SUCCESS) {
            /* Requests already started cannot be cancelled: the job is
             * out of step, as after a timeout. */
            g_broken = q->n > 0;
            nn__free(q);
            return mpi_fail(rc, fn, "MPI_Iallreduce");
        }
        q->n++;
    }
    *req = q;
    return NN_OK;
}

nn_status nn__comm_test(nn__comm_req *req, bool *done, const char *fn) {
    *done = true;
    if (!req || req->n == 0) return NN_OK;
    int flag = 0;
    int rc = MPI_Testall(req->n, req->r, &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, fn, "MPI_Iallreduce");
    *done = flag != 0;
    return NN_OK;
}

nn_status nn__comm_wait(nn__comm_req *req, const char *fn) {
    if (!req) return NN_OK;
    nn_status st = NN_OK;
    if (req->n > 0) st = g_broken ? broken(fn) : wait_deadline_n(req->n, req->r, fn, "MPI_Iallreduce");
    nn__free(req);
    return st;
}

nn_status nn__comm_max_i64(int64_t *buf, size_t n, const char *fn) {
    return allreduce(buf, n, sizeof *buf, MPI_INT64_T, MPI_MAX, fn);
}

void nn__comm_abort(int code, const char *why) {
    fprintf(stderr, "libnn: rank %d of %d failed: %s; aborting the job\n", g_rank, g_size,
            why ? why : "(no reason given)");
    fflush(stderr);
    MPI_Abort(g_state == COMM_ACTIVE ? g_comm : MPI_COMM_WORLD, code);
}

bool nn__comm_active(void) { return g_state == COMM_ACTIVE; }
