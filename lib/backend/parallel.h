/* Splitting kernel work over threads (backend-internal). Kernels split over
 * independent outputs only, so results never depend on the thread count.
 * parallel.c is the one place that knows how threads are run, so swapping
 * the threading runtime touches nothing else (the runtime: threadpool.c). */
#ifndef NN_BACKEND_PARALLEL_H
#define NN_BACKEND_PARALLEL_H

#include <stdint.h>

/* Threads worth using for `work` units of roughly one float op each: one per
 * `grain` units, at most nn__num_threads(). Tiny work stays on the calling
 * thread (a fork costs ~1-2 us). */
int nn__threads_for(int64_t work, int64_t grain);
/* The same with an explicit upper bound `threads` instead of nn__num_threads(). */
int nn__threads_cap(int threads, int64_t work, int64_t grain);

/* Split [0, n) into nt chunks whose boundaries are multiples of `align`;
 * chunk t is [*lo, *hi). */
void nn__chunk(int64_t n, int nt, int t, int64_t align, int64_t *lo, int64_t *hi);

/* Run body(ctx, lo, hi) over [0, n) on up to nt threads (nt <= 1: on the
 * calling thread, one call). The range is cut into up to 16 blocks whose
 * boundaries are multiples of `align` and depend on n and align only; the
 * pool's threads claim blocks one at a time (backend/threadpool.h). */
typedef void (*nn__range_fn)(void *ctx, int64_t lo, int64_t hi);
void nn__parallel_range(int64_t n, int nt, int64_t align, nn__range_fn body, void *ctx);

#endif
