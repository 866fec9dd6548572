/* libnn's thread pool (lib/backend/threadpool.h): every task runs exactly
 * once, thread indices stay in range and unique within a call, nested calls
 * and calls from several host threads complete, the pool follows
 * nn_set_num_threads, a thread held inside a task holds up only that task
 * (the others steal the rest of its home range), a worker does not stay on
 * its caller's CPU and one stalled inside the last task is moved to the
 * caller's (masks given back), tiny work (batch-1 MLP
 * inference) never forks, an idle pool uses no CPU, fork() is safe, and a small
 * CNN trains to bit-identical parameters on 1, 2, 3 and 8 threads. */
#include "testutil.h"
#include "nn_internal.h"
#include "backend/threadpool.h"
#include "backend/tier.h"

#include <math.h>
#include <stdbool.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

#define MAX_TASKS 5000
#define MAX_THREADS 16

/* One call's record: how often each task ran, which thread ran it, and
 * which threads were busy at the same time (to check index uniqueness). */
typedef struct record {
    _Atomic int hits[MAX_TASKS];
    _Atomic int busy[MAX_THREADS]; /* tasks running now per thread index */
    _Atomic int clash;             /* a thread index ran two tasks at once */
    _Atomic int bad_thread;        /* an index >= limit was seen */
    _Atomic int used[MAX_THREADS];
    int limit;
    int spin; /* busy work per task */
} record;

static void record_reset(record *r, int limit, int spin) {
    for (int i = 0; i < MAX_TASKS; i++) atomic_store(&r->hits[i], 0);
    for (int i = 0; i < MAX_THREADS; i++) atomic_store(&r->busy[i], 0), atomic_store(&r->used[i], 0);
    atomic_store(&r->clash, 0);
    atomic_store(&r->bad_thread, 0);
    r->limit = limit;
    r->spin = spin;
}

static void burn(int spin) {
    volatile double x = 0;
    for (int i = 0; i < spin; i++) x += sqrt((double)i);
}

static void record_task(void *ctx, int64_t t, int thread) {
    record *r = ctx;
    if (thread < 0 || thread >= r->limit || thread >= MAX_THREADS) {
        atomic_store(&r->bad_thread, 1);
        return;
    }
    if (atomic_fetch_add(&r->busy[thread], 1) != 0) atomic_store(&r->clash, 1);
    atomic_fetch_add(&r->hits[t], 1);
    atomic_fetch_add(&r->used[thread], 1);
    burn(r->spin);
    atomic_fetch_sub(&r->busy[thread], 1);
}

static void expect_each_once(record *r, int64_t n, const char *what) {
    assert_int_equal(atomic_load(&r->bad_thread), 0);
    if (atomic_load(&r->clash)) fail_msg("%s: one thread index ran two tasks at once", what);
    for (int64_t t = 0; t < n; t++)
        if (atomic_load(&r->hits[t]) != 1)
            fail_msg("%s: task %lld ran %d times", what, (long long)t, atomic_load(&r->hits[t]));
    for (int64_t t = n; t < MAX_TASKS; t++)
        if (atomic_load(&r->hits[t]) != 0) fail_msg("%s: task %lld out of range ran", what, (long long)t);
}

static record g_rec;

/* ------------------------------------------------------------- tests */

static void test_each_task_once(void **s) {
    (void)s;
    static const int threads[] = {1, 2, 3, 8};
    static const int64_t sizes[] = {1, 2, 3, 7, 64, 1000, MAX_TASKS};
    for (size_t ti = 0; ti < sizeof threads / sizeof *threads; ti++) {
        TU_OK(nn_set_num_threads(threads[ti]));
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            for (int rep = 0; rep < 3; rep++) {
                record_reset(&g_rec, threads[ti], rep == 0 ? 2000 : 0);
                nn__parallel_for(sizes[si], record_task, &g_rec);
                char what[64];
                snprintf(what, sizeof what, "%d threads, %lld tasks", threads[ti],
                         (long long)sizes[si]);
                expect_each_once(&g_rec, sizes[si], what);
            }
        }
    }
    /* The pool follows the configured count: 8 threads -> 7 workers. */
    assert_int_equal(nn__pool_workers(), 7);
    TU_OK(nn_set_num_threads(1));
}

static void test_zero_and_negative_tasks(void **s) {
    (void)s;
    TU_OK(nn_set_num_threads(2));
    record_reset(&g_rec, 2, 0);
    nn__parallel_for(0, record_task, &g_rec);
    nn__parallel_for(-5, record_task, &g_rec);
    nn__parallel_for_max(0, 2, record_task, &g_rec);
    nn__parallel_blocks(0, 4, NULL, NULL);
    expect_each_once(&g_rec, 0, "no tasks");
    TU_OK(nn_set_num_threads(1));
}

static void test_max_threads(void **s) {
    (void)s;
    TU_OK(nn_set_num_threads(8));
    for (int lim = -1; lim <= 10; lim++) {
        int want = lim < 1 ? 1 : lim > 8 ? 8 : lim;
        record_reset(&g_rec, want, 500);
        nn__parallel_for_max(400, lim, record_task, &g_rec);
        expect_each_once(&g_rec, 400, "parallel_for_max");
    }
    TU_OK(nn_set_num_threads(1));
}

/* Stealing: each participant starts with its home range (a consecutive
 * part of the tasks) and then takes what is left of the others'. A thread
 * held inside one task (as if the OS had descheduled it) must hold up only
 * that task: the task that opens the worker's home range (task 8 of 16 on 2
 * threads) waits until the other 15 have finished, which happens only if the
 * thread not held runs them, its own range and the held one's remainder.
 * Whichever thread claims task 8 (the worker normally, the caller when the
 * worker is late), the other must do everything else. */
typedef struct steal_rec {
    _Atomic int hits[16];
    _Atomic int done_others;
    _Atomic int timed_out;
    _Atomic int holder; /* thread index that ran task 8 */
    _Atomic int by_thread[2];
} steal_rec;

static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void steal_task(void *ctx, int64_t t, int thread) {
    steal_rec *r = ctx;
    atomic_fetch_add(&r->hits[t], 1);
    if (thread >= 0 && thread < 2) atomic_fetch_add(&r->by_thread[thread], 1);
    if (t != 8) {
        atomic_fetch_add(&r->done_others, 1);
        return;
    }
    atomic_store(&r->holder, thread);
    const double t0 = mono_s(); /* generous: a loaded host may be slow to run the other */
    while (atomic_load(&r->done_others) < 15)
        if (mono_s() - t0 > 20.0) {
            atomic_store(&r->timed_out, 1);
            return;
        }
}

static void test_steal_from_held_thread(void **s) {
    (void)s;
    TU_OK(nn_set_num_threads(2));
    for (int rep = 0; rep < 5; rep++) {
        steal_rec r;
        memset(&r, 0, sizeof r);
        atomic_store(&r.holder, -1);
        nn__parallel_for(16, steal_task, &r);
        assert_int_equal(atomic_load(&r.timed_out), 0);
        for (int t = 0; t < 16; t++) assert_int_equal(atomic_load(&r.hits[t]), 1);
        const int h = atomic_load(&r.holder);
        assert_true(h == 0 || h == 1);
        /* the thread holding task 8 ran at most the tasks it took before it */
        assert_int_equal(atomic_load(&r.by_thread[0]) + atomic_load(&r.by_thread[1]), 16);
    }
    /* And bit-identical work regardless of who ran what: covered by
     * test_cnn_bit_identical below. */
    TU_OK(nn_set_num_threads(1));
}

#ifdef __linux__
/* Placement (threadpool.c, "placement"). Two tasks that wait for each
 * other, so the caller runs task 0 and the worker task 1 (the caller cannot
 * steal task 1 while it waits inside task 0). The worker's task optionally
 * moves it onto `pin_cpu` first (then restores its mask, which leaves it
 * there), optionally sleeps, then records the CPU it runs on and whether its
 * affinity mask is the one it started with. */
typedef struct place_rec {
    _Atomic int started, timed_out, worker_cpu, mask_ok, ran, pinned, worker_tid;
    int pin_cpu, sleep_ms;
    cpu_set_t full;
} place_rec;

/* Whether kernel thread `tid` of this process is asleep ('S' in its
 * /proc stat line; the state follows the last ')' of the command name). */
static bool thread_asleep(int tid) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    const bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    const char *e = got ? strrchr(line, ')') : NULL;
    return e && e[1] == ' ' && e[2] == 'S';
}

static void place_task(void *ctx, int64_t t, int thread) {
    place_rec *r = ctx;
    (void)t;
    if (thread == 1) { /* where the job started, and who runs it */
        atomic_store(&r->worker_cpu, sched_getcpu());
        atomic_store(&r->worker_tid, (int)syscall(SYS_gettid));
    }
    atomic_fetch_add(&r->started, 1);
    const double t0 = mono_s();
    while (atomic_load(&r->started) < 2) {
        if (mono_s() - t0 > 20.0) {
            atomic_store(&r->timed_out, 1);
            return;
        }
        sched_yield();
    }
    if (thread == 0) { /* wait inside the task (not probing) while the worker pins itself */
        while (!atomic_load(&r->pinned)) {
            if (mono_s() - t0 > 20.0) {
                atomic_store(&r->timed_out, 1);
                return;
            }
            sched_yield();
        }
        /* A worker that sleeps in its task: return (and start the pool's
         * one stall probe) only once it is asleep in the kernel. Between
         * `pinned` and nanosleep it still runs; under ThreadSanitizer that
         * took longer than the probe's 40 us and the probe, seeing it use
         * the CPU, rightly did not move it. */
        while (r->sleep_ms > 0 && !thread_asleep(atomic_load(&r->worker_tid))) {
            if (mono_s() - t0 > 20.0) {
                atomic_store(&r->timed_out, 1);
                return;
            }
            sched_yield();
        }
        return;
    }
    if (r->pin_cpu >= 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(r->pin_cpu, &one);
        sched_setaffinity(0, sizeof one, &one);
        sched_setaffinity(0, sizeof r->full, &r->full);
    }
    atomic_store(&r->pinned, 1);
    if (r->sleep_ms > 0) {
        struct timespec d = {0, r->sleep_ms * 1000000L};
        nanosleep(&d, NULL);
    }
    cpu_set_t now;
    atomic_store(&r->mask_ok, sched_getaffinity(0, sizeof now, &now) == 0 && CPU_EQUAL(&now, &r->full));
    atomic_store(&r->ran, 1);
}

static void place_run(place_rec *r, const cpu_set_t *full, int pin_cpu, int sleep_ms) {
    memset(r, 0, sizeof *r);
    r->full = *full;
    r->pin_cpu = pin_cpu;
    r->sleep_ms = sleep_ms;
    atomic_store(&r->worker_cpu, -1);
    nn__parallel_for(2, place_task, r);
    assert_int_equal(atomic_load(&r->timed_out), 0);
    assert_int_equal(atomic_load(&r->ran), 1);
}

static int first_cpu(const cpu_set_t *m) {
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, m)) return c;
    return -1;
}

/* A worker that starts a job on its caller's CPU leaves it (it used to stay,
 * and the two took turns on one core while a busy process had the other);
 * its affinity mask is given back unchanged. */
static void test_worker_leaves_callers_cpu(void **s) {
    (void)s;
    cpu_set_t full, one;
    assert_int_equal(sched_getaffinity(0, sizeof full, &full), 0);
    if (CPU_COUNT(&full) < 2) {
        skip();
        return;
    }
    nn__pool_shutdown(); /* workers start again with this thread's full mask */
    TU_OK(nn_set_num_threads(2));
    const int c0 = first_cpu(&full);
    CPU_ZERO(&one);
    CPU_SET(c0, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0); /* the caller stays on c0 */
    place_rec r;
    for (int rep = 0; rep < 5; rep++) {
        place_run(&r, &full, c0, 0); /* the worker goes to c0 too, keeping its mask */
        assert_int_equal(atomic_load(&r.mask_ok), 1);
        /* Next job: the worker starts it elsewhere (woken onto another CPU,
         * or moved off c0, counted; under valgrind its CPU may change again
         * between the move and the task) and keeps its mask. */
        const int64_t m0 = nn__pool_moves();
        place_run(&r, &full, -1, 0);
        assert_true(atomic_load(&r.worker_cpu) != c0 || nn__pool_moves() > m0);
        assert_int_equal(atomic_load(&r.mask_ok), 1);
    }
    assert_int_equal(sched_setaffinity(0, sizeof full, &full), 0);
    TU_OK(nn_set_num_threads(1));
}

/* A worker that holds the call's last task without running (here: asleep
 * in it) is moved to the waiting caller's CPU, its mask given back; with a
 * single allowed CPU nothing is moved. */
static void test_stalled_worker_moved(void **s) {
    (void)s;
    cpu_set_t full, one;
    assert_int_equal(sched_getaffinity(0, sizeof full, &full), 0);
    if (CPU_COUNT(&full) < 2) {
        skip();
        return;
    }
    nn__pool_shutdown();
    TU_OK(nn_set_num_threads(2));
    place_rec r;
    /* The caller probes once per call, 20-40 us after its last task; the
     * worker is asleep by then (place_task waits for it), but a slow host
     * (sanitizers, valgrind, load) can still run it in the probe's window
     * (a sleeping thread's wake-up, the tools' own work): three tries, and
     * a pool that never moves a stalled worker fails all three. */
    int64_t m0 = nn__pool_moves();
    for (int attempt = 0; attempt < 3 && nn__pool_moves() == m0; attempt++) {
        place_run(&r, &full, -1, 30);
        assert_int_equal(atomic_load(&r.mask_ok), 1);
    }
    assert_true(nn__pool_moves() > m0);
    place_run(&r, &full, -1, 0); /* and its mask stays the full one afterwards */
    assert_int_equal(atomic_load(&r.mask_ok), 1);

    /* Workers created while the caller may use one CPU inherit that mask:
     * two threads cannot be placed apart, so nothing moves. */
    nn__pool_shutdown();
    CPU_ZERO(&one);
    CPU_SET(first_cpu(&full), &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    m0 = nn__pool_moves();
    place_run(&r, &one, -1, 30);
    assert_int_equal(atomic_load(&r.mask_ok), 1);
    place_run(&r, &one, -1, 0);
    assert_int_equal(nn__pool_moves(), m0);
    assert_int_equal(sched_setaffinity(0, sizeof full, &full), 0);
    nn__pool_shutdown(); /* later tests get workers with the full mask */
    TU_OK(nn_set_num_threads(1));
}
#endif

/* Tiny work stays on the caller: at 2 threads, batch-1 inference of the
 * benchmark's MLP (784-256-128-10) hands the pool at most one call per
 * forward, the 784x256 layer's (200,704 weights, ~0.8 MB: the GEMV path
 * splits B from 2 x 65,536 elements on); the 256x128 and 128x10 layers and
 * the elementwise ops are far below the cost of a fork/join. A 2-task
 * call does fork (the counter counts). */
static void test_tiny_work_stays_on_caller(void **s) {
    (void)s;
    TU_OK(nn_set_num_threads(2));
    nn_module *m = nn_sequential_new();
    assert_non_null(m);
    TU_OK(nn_sequential_append(m, nn_linear_new(784, 256, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_linear_new(256, 128, true)));
    TU_OK(nn_sequential_append(m, nn_relu_new()));
    TU_OK(nn_sequential_append(m, nn_linear_new(128, 10, true)));
    TU_OK(nn_module_train(m, false));
    const bool was = nn_set_grad_enabled(false);
    const int64_t xs[2] = {1, 784};
    nn_tensor *x = nn_tensor_ones(NN_DTYPE_F32, xs, 2);
    assert_non_null(x);
    const int64_t f0 = nn__pool_forks();
    for (int i = 0; i < 20; i++) {
        nn_tensor *y = nn_module_forward(m, x);
        assert_non_null(y);
        nn_tensor_free(y);
    }
    assert_true(nn__pool_forks() - f0 <= 20);
    /* the same without the first layer: nothing forks */
    nn_tensor *h = nn_tensor_ones(NN_DTYPE_F32, (const int64_t[]){1, 256}, 2);
    assert_non_null(h);
    const int64_t f1 = nn__pool_forks();
    for (int i = 0; i < 20; i++) {
        nn_module *rest[] = {nn_sequential_get(m, 2), nn_sequential_get(m, 3),
                             nn_sequential_get(m, 4)};
        nn_tensor *y = nn_tensor_clone(h);
        for (int j = 0; j < 3 && y; j++) {
            nn_tensor *next = nn_module_forward(rest[j], y);
            nn_tensor_free(y);
            y = next;
        }
        assert_non_null(y);
        nn_tensor_free(y);
    }
    assert_int_equal(nn__pool_forks(), f1);
    nn_tensor_free(h);
    record_reset(&g_rec, 2, 0);
    nn__parallel_for(2, record_task, &g_rec);
    expect_each_once(&g_rec, 2, "2 tasks");
    assert_true(nn__pool_forks() > f0);
    nn_set_grad_enabled(was);
    nn_tensor_free(x);
    nn_module_free(m);
    TU_OK(nn_set_num_threads(1));
}

/* Blocks: consecutive, of the requested size, covering [0, n) once. */
typedef struct blocks_rec {
    _Atomic int hits[MAX_TASKS];
    int64_t n, block;
    _Atomic int bad;
} blocks_rec;

static void blocks_body(void *ctx, int64_t lo, int64_t hi, int thread) {
    blocks_rec *b = ctx;
    (void)thread;
    int64_t want_hi = lo + b->block < b->n ? lo + b->block : b->n;
    if (lo % b->block != 0 || hi != want_hi || lo >= hi) atomic_store(&b->bad, 1);
    for (int64_t i = lo; i < hi && i < MAX_TASKS; i++) atomic_fetch_add(&b->hits[i], 1);
}

static void test_blocks(void **s) {
    (void)s;
    static blocks_rec b;
    static const int64_t ns[] = {1, 5, 63, 64, 65, 1000, 4999};
    static const int64_t blocks[] = {1, 3, 64, 100, 5000};
    for (int nt = 1; nt <= 3; nt++) {
        TU_OK(nn_set_num_threads(nt));
        for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
            for (size_t j = 0; j < sizeof blocks / sizeof *blocks; j++) {
                memset(&b, 0, sizeof b);
                b.n = ns[i];
                b.block = blocks[j] > ns[i] ? ns[i] : blocks[j];
                nn__parallel_blocks(ns[i], blocks[j], blocks_body, &b);
                assert_int_equal(atomic_load(&b.bad), 0);
                for (int64_t k = 0; k < ns[i]; k++) assert_int_equal(atomic_load(&b.hits[k]), 1);
            }
    }
    /* Block sizes come from the problem alone. */
    int64_t seen[3];
    for (int nt = 1; nt <= 3; nt++) {
        TU_OK(nn_set_num_threads(nt));
        seen[nt - 1] = nn__block_size(1 << 20, 4096, 64);
    }
    assert_true(seen[0] == seen[1] && seen[1] == seen[2]);
    assert_int_equal(seen[0] % 64, 0);
    assert_true(seen[0] >= 4096 && (1 << 20) / seen[0] <= 32);
    assert_int_equal(nn__block_size(1000, 4096, 64), 1000); /* too small to split */
    assert_int_equal(nn__block_size(0, 16, 8), 1);
    assert_int_equal(nn__block_size(100, 0, 0) >= 1, 1);
    TU_OK(nn_set_num_threads(1));
}

/* A task that itself calls nn__parallel_for: the inner call runs serially
 * on the task's thread, with thread index 0. */
typedef struct nest_ctx {
    _Atomic int inner_hits[64 * 64];
    _Atomic int bad;
} nest_ctx;
typedef struct inner_ctx {
    nest_ctx *outer;
    int64_t row;
} inner_ctx;

static void inner_task(void *ctx, int64_t t, int thread) {
    inner_ctx *ic = ctx;
    if (thread != 0 || !nn__in_parallel() || nn__pool_threads() != 1) atomic_store(&ic->outer->bad, 1);
    atomic_fetch_add(&ic->outer->inner_hits[ic->row * 64 + t], 1);
}

static void outer_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    inner_ctx ic = {.outer = ctx, .row = t};
    nn__parallel_for(64, inner_task, &ic);
    burn(300);
}

static void test_nested(void **s) {
    (void)s;
    static nest_ctx nc;
    for (int nt = 1; nt <= 3; nt++) {
        TU_OK(nn_set_num_threads(nt));
        memset(&nc, 0, sizeof nc);
        assert_false(nn__in_parallel());
        nn__parallel_for(64, outer_task, &nc);
        assert_false(nn__in_parallel());
        assert_int_equal(atomic_load(&nc.bad), 0);
        for (int i = 0; i < 64 * 64; i++) assert_int_equal(atomic_load(&nc.inner_hits[i]), 1);
    }
    TU_OK(nn_set_num_threads(1));
}

/* Several host threads call the pool at once (one gets it, the others run
 * their own tasks inline); every call still runs each task exactly once. */
#define HOSTS 4
static record g_host_rec[HOSTS];
static _Atomic int g_host_fail;

static void *host_main(void *arg) {
    record *r = arg;
    for (int call = 0; call < 60; call++) {
        int64_t n = 1 + (call * 97) % 700;
        record_reset(r, 8, call % 3 ? 0 : 300);
        nn__parallel_for(n, record_task, r);
        if (atomic_load(&r->bad_thread) || atomic_load(&r->clash)) atomic_store(&g_host_fail, 1);
        for (int64_t t = 0; t < MAX_TASKS; t++)
            if (atomic_load(&r->hits[t]) != (t < n)) atomic_store(&g_host_fail, 1);
    }
    return NULL;
}

static void *flip_threads(void *arg) {
    _Atomic int *stop = arg;
    for (int i = 0; !atomic_load(stop); i++) {
        if (nn_set_num_threads(1 + (i * 5) % 8) != NN_OK) atomic_store(&g_host_fail, 1);
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void test_many_host_threads(void **s) {
    (void)s;
    for (int flip = 0; flip < 2; flip++) {
        TU_OK(nn_set_num_threads(3));
        atomic_store(&g_host_fail, 0);
        _Atomic int stop = 0;
        pthread_t h[HOSTS], f;
        if (flip) assert_int_equal(pthread_create(&f, NULL, flip_threads, &stop), 0);
        for (int i = 0; i < HOSTS; i++)
            assert_int_equal(pthread_create(&h[i], NULL, host_main, &g_host_rec[i]), 0);
        for (int i = 0; i < HOSTS; i++) pthread_join(h[i], NULL);
        atomic_store(&stop, 1);
        if (flip) pthread_join(f, NULL);
        assert_int_equal(atomic_load(&g_host_fail), 0);
    }
    TU_OK(nn_set_num_threads(1));
}

/* Changing the thread count between calls resizes the pool. */
static void test_resize(void **s) {
    (void)s;
    static const int seq[] = {2, 8, 3, 1, 5, 2, 4};
    for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
        TU_OK(nn_set_num_threads(seq[i]));
        record_reset(&g_rec, seq[i], 200);
        nn__parallel_for(300, record_task, &g_rec);
        expect_each_once(&g_rec, 300, "after a resize");
        if (seq[i] > 1) assert_int_equal(nn__pool_workers(), seq[i] - 1);
    }
    nn__pool_shutdown();
    assert_int_equal(nn__pool_workers(), 0);
    TU_OK(nn_set_num_threads(2));
    record_reset(&g_rec, 2, 0);
    nn__parallel_for(50, record_task, &g_rec); /* starts again after a shutdown */
    expect_each_once(&g_rec, 50, "after shutdown");
    assert_int_equal(nn__pool_workers(), 1);
    TU_OK(nn_set_num_threads(1));
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* After work, an idle pool sleeps: the process uses (almost) no CPU while
 * the host sleeps 200 ms. A spinning pool would use ~200 ms per worker. A
 * functional check, not a speed test: three tries, the best one counts. */
static void test_idle_uses_no_cpu(void **s) {
    (void)s;
    TU_OK(nn_set_num_threads(4));
    double best = 1e9;
    for (int attempt = 0; attempt < 3 && best > 0.04; attempt++) {
        for (int i = 0; i < 20; i++) {
            record_reset(&g_rec, 4, 100);
            nn__parallel_for(200, record_task, &g_rec);
        }
        assert_int_equal(nn__pool_workers(), 3);
        double c0 = cpu_seconds();
        struct timespec ts = {0, 200000000};
        while (nanosleep(&ts, &ts) != 0) {
        }
        double used = cpu_seconds() - c0;
        if (used < best) best = used;
    }
    printf("CPU used by the process while idle for 200 ms: %.1f ms\n", best * 1e3);
    assert_true(best < 0.04);
    TU_OK(nn_set_num_threads(1));
}

/* Scratch: per OS thread and slot, aligned, growing. */
typedef struct scratch_rec {
    void *p[MAX_THREADS];
    _Atomic int bad;
} scratch_rec;

static void scratch_task(void *ctx, int64_t t, int thread) {
    scratch_rec *r = ctx;
    (void)t;
    float *a = nn__thread_scratch(0, 1000 * sizeof(float));
    float *b = nn__thread_scratch(1, 10);
    if (!a || !b || a == (float *)b || ((uintptr_t)a & 63) || ((uintptr_t)b & 63)) {
        atomic_store(&r->bad, 1);
        return;
    }
    for (int i = 0; i < 1000; i++) a[i] = (float)thread; /* a race would show under TSan */
    for (int i = 0; i < 1000; i++)
        if (a[i] != (float)thread) atomic_store(&r->bad, 1);
    r->p[thread] = a;
}

static void test_thread_scratch(void **s) {
    (void)s;
    assert_null(nn__thread_scratch(-1, 16));
    assert_null(nn__thread_scratch(NN__SCRATCH_SLOTS, 16));
    char *p = nn__thread_scratch(2, 100);
    assert_non_null(p);
    memset(p, 1, 100);
    assert_ptr_equal(nn__thread_scratch(2, 50), p); /* no shrink, same buffer */
    char *q = nn__thread_scratch(2, 1 << 20);       /* grows */
    assert_non_null(q);
    memset(q, 2, 1 << 20);
    static scratch_rec r;
    memset(&r, 0, sizeof r);
    TU_OK(nn_set_num_threads(3));
    nn__parallel_for(300, scratch_task, &r);
    assert_int_equal(atomic_load(&r.bad), 0);
    TU_OK(nn_set_num_threads(1));
}

/* Built with ThreadSanitizer (gcc defines __SANITIZE_THREAD__, clang has
 * the feature test). */
#if defined(__SANITIZE_THREAD__)
#define TU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TU_TSAN 1
#endif
#endif

/* fork() with a live pool: the child gets a working pool of its own. */
static void test_fork(void **s) {
    (void)s;
#ifdef TU_TSAN
    /* ThreadSanitizer does not support threads started in the child of a
     * multi-threaded fork ("starting new threads after multi-threaded fork
     * is not supported"; with die_after_fork=0 its thread registry then
     * reports "dup thread with used id" and the child fails): the tool's
     * limit, the same with the pool before session 7. The other runs
     * (plain, valgrind, ASan/UBSan) cover fork. */
    skip();
    return;
#endif
    TU_OK(nn_set_num_threads(3));
    record_reset(&g_rec, 3, 100);
    nn__parallel_for(500, record_task, &g_rec);
    assert_int_equal(nn__pool_workers(), 2);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int ok = nn__pool_workers() == 0;
        record_reset(&g_rec, 3, 100);
        nn__parallel_for(500, record_task, &g_rec);
        for (int t = 0; t < 500; t++) ok &= atomic_load(&g_rec.hits[t]) == 1;
        ok &= !atomic_load(&g_rec.bad_thread) && !atomic_load(&g_rec.clash);
        ok &= nn__pool_workers() == 2;
        nn__pool_shutdown();
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* the parent's pool still works */
    record_reset(&g_rec, 3, 0);
    nn__parallel_for(500, record_task, &g_rec);
    expect_each_once(&g_rec, 500, "parent after fork");
    TU_OK(nn_set_num_threads(1));
}

/* A small CNN (conv, relu, max-pool, conv, relu, pool, linear, cross
 * entropy, Adam) trained for a few steps through the public API: the
 * parameters must be bit-identical for 1, 2, 3 and 8 threads, since every
 * kernel splits its work into blocks chosen from the shapes only. */
static void train_cnn(int threads, float *out, int64_t cap) {
    TU_OK(nn_set_num_threads(threads));
    TU_OK(nn_generator_seed(NULL, 321));
    nn_module *net = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(net, nn_conv2d_new(1, 16, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(net, nn_relu_new()));
    TU_OK(nn_sequential_append(net, nn_max_pool2d_new(2, 2, 0)));
    TU_OK(nn_sequential_append(net, nn_conv2d_new(16, 32, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(net, nn_relu_new()));
    TU_OK(nn_sequential_append(net, nn_max_pool2d_new(2, 2, 0)));
    TU_OK(nn_sequential_append(net, nn_flatten_new(1, -1)));
    TU_OK(nn_sequential_append(net, nn_linear_new(32 * 7 * 7, 64, true)));
    TU_OK(nn_sequential_append(net, nn_relu_new()));
    TU_OK(nn_sequential_append(net, nn_linear_new(64, 10, true)));
    int64_t np = nn_module_num_parameters(net);
    nn_tensor *ps[16];
    assert_true(np > 0 && np <= 16);
    for (int64_t i = 0; i < np; i++) ps[i] = nn_module_parameter(net, i, NULL);
    nn_optim *opt = TU_NN(nn_adam(ps, np, 1e-2));
    nn_generator *g = TU_NN(nn_generator_new(11));
    int64_t xs[4] = {16, 1, 28, 28};
    nn_tensor *x = TU_NN(nn_rand(g, xs, 4));
    int64_t lab[16], ys[1] = {16};
    for (int i = 0; i < 16; i++) lab[i] = (i * 7) % 10;
    nn_tensor *y = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, ys, 1, lab));
    for (int step = 0; step < 2; step++) {
        nn_scope *sc = TU_NN(nn_scope_begin());
        TU_OK(nn_optim_zero_grad(opt));
        nn_tensor *loss = TU_NN(nn_cross_entropy(nn_module_forward(net, x), y));
        TU_OK(nn_backward(loss));
        TU_OK(nn_optim_step(opt));
        TU_OK(nn_scope_end(sc));
    }
    int64_t at = 0;
    for (int64_t i = 0; i < np; i++) {
        int64_t n = nn_tensor_numel(ps[i]);
        assert_true(at + n <= cap);
        TU_OK(nn_tensor_copy_to(ps[i], out + at, (size_t)n * sizeof(float)));
        at += n;
    }
    nn_tensor_free(x), nn_tensor_free(y);
    nn_generator_free(g);
    nn_optim_free(opt);
    nn_module_free(net);
    TU_OK(nn_set_num_threads(1));
}

/* For every kernel tier this machine runs (reference with BLIS or libnn's
 * GEMM, AVX2, AVX-512). */
static void test_cnn_bit_identical(void **s) {
    (void)s;
    const int64_t cap = 120000;
    static const int threads[] = {1, 2, 3, 8};
    float *base = calloc(cap, sizeof(float)), *other = calloc(cap, sizeof(float));
    assert_true(base && other);
    for (int tier = 0; tier < NN_TIER_COUNT; tier++) {
        if (!nn__backend_force_tier(tier)) continue;
        memset(base, 0, (size_t)cap * sizeof(float));
        train_cnn(1, base, cap);
        for (size_t i = 1; i < sizeof threads / sizeof *threads; i++) {
            memset(other, 0, (size_t)cap * sizeof(float));
            train_cnn(threads[i], other, cap);
            int64_t k = 0;
            while (k < cap && memcmp(&other[k], &base[k], sizeof(float)) == 0) k++;
            if (k < cap) {
                float got = other[k], want = base[k];
                free(base), free(other);
                nn__backend_force_tier(-1);
                fail_msg("tier %s, %d threads vs 1: parameter %lld is %.9g vs %.9g",
                         nn__tier_name(tier), threads[i], (long long)k, (double)got,
                         (double)want);
            }
        }
        printf("tier %s: bit-identical on 1, 2, 3 and 8 threads\n", nn__tier_name(tier));
    }
    nn__backend_force_tier(-1);
    free(base), free(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_task_once),
        cmocka_unit_test(test_zero_and_negative_tasks),
        cmocka_unit_test(test_max_threads),
        cmocka_unit_test(test_steal_from_held_thread),
#ifdef __linux__
        cmocka_unit_test(test_worker_leaves_callers_cpu),
        cmocka_unit_test(test_stalled_worker_moved),
#endif
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_many_host_threads),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_idle_uses_no_cpu),
        cmocka_unit_test(test_thread_scratch),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_cnn_bit_identical),
        /* after test_fork: the first kernel call times BLIS at start-up, whose
         * OpenMP threads a forked child under valgrind reports as lost */
        cmocka_unit_test(test_tiny_work_stays_on_caller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
