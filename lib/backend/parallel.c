/* Threads for the backend's kernels: libnn's own pool (threadpool.c), at
 * most nn__num_threads() threads. nn__parallel_range cuts the range into
 * blocks chosen from the range alone, never from the thread count, and the
 * pool's threads claim them one at a time: a thread the OS deschedules holds
 * up one block, not a share of the call. */
#include "backend/parallel.h"
#include "backend/threadpool.h"
#include "core/core.h"

int nn__threads_for(int64_t work, int64_t grain) {
    int nt = nn__pool_threads();
    if (nt <= 1 || work < 2 * grain) return 1;
    int64_t most = work / grain;
    return most < nt ? (int)most : nt;
}

int nn__threads_cap(int threads, int64_t work, int64_t grain) {
    int nt = nn__pool_threads();
    if (threads < nt) nt = threads;
    if (nt <= 1 || work < 2 * grain) return 1;
    int64_t most = work / grain;
    return most < nt ? (int)most : nt;
}

void nn__chunk(int64_t n, int nt, int t, int64_t align, int64_t *lo, int64_t *hi) {
    int64_t blocks = (n + align - 1) / align;
    int64_t per = blocks / nt, extra = blocks % nt;
    int64_t b0 = t * per + (t < extra ? t : extra);
    int64_t b1 = b0 + per + (t < extra ? 1 : 0);
    *lo = b0 * align < n ? b0 * align : n;
    *hi = b1 * align < n ? b1 * align : n;
}

/* Blocks per range: enough that a descheduled thread's block is a small
 * part of the call, few enough that claiming one costs nothing next to it
 * (a range reaches here only when it holds >= 2 grains of work). */
#define RANGE_BLOCKS 16

typedef struct range_job {
    nn__range_fn body;
    void *ctx;
    int64_t n, block;
} range_job;

static void range_task(void *c, int64_t t, int thread) {
    const range_job *j = c;
    (void)thread;
    int64_t lo = t * j->block, hi = j->n - lo < j->block ? j->n : lo + j->block;
    j->body(j->ctx, lo, hi);
}

void nn__parallel_range(int64_t n, int nt, int64_t align, nn__range_fn body, void *ctx) {
    if (n <= 0) return;
    if (nt <= 1) {
        body(ctx, 0, n);
        return;
    }
    if (align < 1) align = 1;
    int64_t units = (n - 1) / align + 1;
    int64_t per = (units - 1) / RANGE_BLOCKS + 1;
    range_job j = {.body = body, .ctx = ctx, .n = n, .block = per * align};
    nn__parallel_for_max((n - 1) / j.block + 1, nt, range_task, &j);
}
