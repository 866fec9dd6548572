/* libnn's own thread pool (pthreads; no OpenMP in libnn's code).
 *
 * nn__parallel_for(n_tasks, fn, ctx) runs fn(ctx, t, thread) once for every
 * t in [0, n_tasks) and returns when all have finished. The calling thread
 * takes part (it is thread 0); up to nn__num_threads() - 1 pool workers join
 * it. Each participant (the caller is 0, worker i is always i) first claims,
 * one at a time, the tasks of its home range: the p-th of nt consecutive,
 * near-equal parts of [0, n_tasks). Callers number tasks in data order, so
 * consecutive kernels give a thread the same part of the data, still in its
 * caches (a dynamic counter shared by all made a 2-thread ReLU on a 6.4 MB
 * activation 3x slower than fixed halves on Zen 5: each core read what the
 * other had written). Then it takes what is left of the others' ranges, so
 * a worker the OS deschedules holds up at most the task it is running,
 * never the others.
 *
 * Determinism: which thread runs a task varies from call to call. A caller
 * that wants results bit-identical for any thread count makes each task
 * compute a fixed block of independent outputs, chosen from the problem size
 * only (never from the thread count); nn__parallel_blocks does that for a
 * range.
 *
 * `thread` is unique among the threads running one call and is below the
 * thread count the call was allowed (nn__num_threads(), or max_threads for
 * nn__parallel_for_max), so per-thread scratch that belongs to the call can
 * be indexed by it. Scratch shared between calls cannot: see below.
 *
 * Waiting: a worker spins for a few microseconds after its last task (so the
 * next kernel of a training step finds it awake), then sleeps in the kernel
 * (futex on Linux, a condition variable elsewhere); an idle pool uses no CPU.
 * The caller, once no task is left to claim, waits the same way for the
 * tasks still running.
 *
 * Placement (Linux): on a machine with no core to spare, a worker that
 * starts a job on its caller's CPU moves off it, and a caller whose wait is
 * for a worker that holds a task but is not running moves that worker onto
 * its own CPU before sleeping (each by setting then restoring the worker's
 * affinity mask; the caller's thread is never touched). Why and what it
 * measured: threadpool.c, "placement".
 *
 * Re-entrancy and several host threads:
 *  - A call made from inside a task runs its tasks serially on that thread,
 *    with thread index 0 (no deadlock, no oversubscription).
 *  - The pool runs one call at a time. A call from a second host thread while
 *    the pool is busy runs its tasks serially on its own thread (thread index
 *    0) instead of waiting. So thread indices are unique within a call, not
 *    across concurrent calls: scratch indexed by `thread` must belong to one
 *    call (allocated by it or by its caller), never be a global table.
 *
 * Lifetime: workers are created on the first call that can use them, resized
 * when nn_set_num_threads changes the count (at the next call), and joined
 * at library unload (a destructor), so nothing leaks.
 *
 * fork(): handled with pthread_atfork. fork() waits for a running call to
 * finish; the child starts with no workers and creates its own on its first
 * parallel call. (Calling fork() from inside a task is not supported: the
 * child then runs every later call serially.) */
#ifndef NN_THREADPOOL_H
#define NN_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef void (*nn__task_fn)(void *ctx, int64_t task, int thread);
typedef void (*nn__block_fn)(void *ctx, int64_t lo, int64_t hi, int thread);

/* fn(ctx, t, thread) for t in [0, n_tasks) on up to nn__num_threads()
 * threads (thread < nn__num_threads()). n_tasks <= 0: nothing. */
void nn__parallel_for(int64_t n_tasks, nn__task_fn fn, void *ctx);

/* The same on at most max_threads threads (thread < max_threads; values
 * below 1 count as 1), e.g. when per-thread scratch was sized for that many
 * or the work is too small to feed more. */
void nn__parallel_for_max(int64_t n_tasks, int max_threads, nn__task_fn fn, void *ctx);

/* body(ctx, lo, hi, thread) over [0, n) in consecutive blocks of `block`
 * elements (the last one may be shorter; block < 1 counts as n). The blocks
 * depend on n and block only, so a body that writes only outputs [lo, hi)
 * gives the same bits on any number of threads. */
void nn__parallel_blocks(int64_t n, int64_t block, nn__block_fn body, void *ctx);

/* A block size for nn__parallel_blocks from the problem alone: n split into
 * at most ~32 blocks, each a multiple of `align` and at least `grain`
 * elements (the whole range when n < 2 * grain). Never depends on the
 * thread count. */
int64_t nn__block_size(int64_t n, int64_t grain, int64_t align);

/* The number of threads a call made now would use at most:
 * nn__num_threads(), or 1 inside a task. */
int nn__pool_threads(void);

/* Nonzero while the calling thread runs a task of a parallel call. */
int nn__in_parallel(void);

/* A 64-byte-aligned buffer of at least `bytes` bytes owned by the calling OS
 * thread, one per slot (0..NN__SCRATCH_SLOTS-1), for scratch that outlives
 * one call (packing buffers). Grown on demand (old contents are not kept
 * when it grows); NULL when slot is out of range or allocation fails.
 * Freed when the thread exits and, for the thread that unloads the library,
 * at unload. Safe under any concurrency: no two threads share a buffer. A
 * task must not hold one slot across a nested call that may use it. Slot 5
 * is the int8 convolution chain's (ops/quant.c), held across int8 kernels. */
#define NN__SCRATCH_SLOTS 6
void *nn__thread_scratch(int slot, size_t bytes);

/* Join every worker now (the next parallel call starts them again). The
 * unload destructor does this; tests use it to check for leaks. */
void nn__pool_shutdown(void);

/* Workers currently alive (tests). */
int nn__pool_workers(void);

/* Calls so far, from any thread, that handed tasks to the workers (tests:
 * work too small to pay for a fork/join must stay on the caller). */
int64_t nn__pool_forks(void);

/* Workers moved to another CPU so far (tests; see "placement" in
 * threadpool.c): a worker that started a job on its caller's CPU and left
 * it, or a worker holding a task without running that its caller moved to
 * its own CPU. Linux only (0 elsewhere). */
int64_t nn__pool_moves(void);

#endif
