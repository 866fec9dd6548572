/* libnn's thread pool: see threadpool.h for the contract.
 *
 * One call runs at a time (g_pool.lock is held by its caller from start to
 * end). A call publishes a job (fn, ctx, n, thread limit), bumps the 32-bit
 * generation word `gen` and wakes sleeping workers; every participant then
 * claims task indices from the atomic counter of its home range (g_home),
 * then from the others' until all run out.
 * The thread that completes the last task sets `finished` and wakes the
 * caller if it went to sleep. Nothing ever waits at a barrier for a thread
 * that has no task: a worker that arrives late finds no task and leaves.
 *
 * Job lifetime: a worker announces itself in `users` before it looks at the
 * job (`open`), and leaves `users` when done with it. The next call waits
 * for `users` to drop to zero before it rewrites the job, so a straggler
 * never reads half-written fields; a straggler that arrives after a job was
 * closed sees `open == 0` and goes back to waiting, or sees the next job
 * (published with a release store of `open`) and takes part in that one.
 *
 * Waiting is a short spin (cheap to resume when kernels follow each other
 * closely, as in a training step) followed by a futex sleep, so an idle pool
 * costs no CPU and a busy machine gets its cores back quickly. */
#include "backend/threadpool.h"
#include "core/core.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* How long a worker spins for the next job, and the caller for the last
 * running tasks, before sleeping in the kernel. Long enough to bridge the
 * serial gaps between the kernels of a training step, short enough that a
 * contended machine loses little to it. */
#define WORKER_SPIN_NS 50000u
#define CALLER_SPIN_NS 50000u

/* nn_set_num_threads allows 1..1024 threads: the caller plus 1023 workers. */
#define MAX_WORKERS 1023

/* --------------------------------------------------------- wait and wake */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

#ifdef __linux__
/* Sleep while *w == val (may return early: callers re-check). */
static void word_wait(_Atomic uint32_t *w, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void word_wake(_Atomic uint32_t *w, int n) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
#else
/* Portable fallback: one mutex and condition variable for every word. The
 * waker changed *w before calling word_wake; taking the mutex there orders
 * the change against a waiter between its check and its sleep. */
static pthread_mutex_t g_wait_mx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wait_cv = PTHREAD_COND_INITIALIZER;
static void word_wait(_Atomic uint32_t *w, uint32_t val) {
    pthread_mutex_lock(&g_wait_mx);
    while (atomic_load(w) == val) pthread_cond_wait(&g_wait_cv, &g_wait_mx);
    pthread_mutex_unlock(&g_wait_mx);
}
static void word_wake(_Atomic uint32_t *w, int n) {
    (void)w, (void)n;
    pthread_mutex_lock(&g_wait_mx);
    pthread_cond_broadcast(&g_wait_cv);
    pthread_mutex_unlock(&g_wait_mx);
}
#endif

/* Spin until *w != val (true) or spin_ns have passed (false). */
static bool spin_while(_Atomic uint32_t *w, uint32_t val, uint64_t spin_ns) {
    uint64_t t0 = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != val) return true;
        cpu_relax();
        if ((i & 63) == 0) {
            uint64_t t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 >= spin_ns) return false;
        }
    }
}

/* ---------------------------------------------------- per-thread scratch */

typedef struct scratch {
    void *p[NN__SCRATCH_SLOTS];
    size_t cap[NN__SCRATCH_SLOTS];
    struct scratch *prev, *next; /* every thread's scratch, for unload and fork */
} scratch;

static _Thread_local scratch *tls_scratch;
static scratch *g_scratch_all;
static pthread_mutex_t g_scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_scratch_key; /* frees a thread's buffers at its exit */
static bool g_scratch_key_ok;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_unlink(scratch *s) {
    if (s->prev) s->prev->next = s->next;
    else g_scratch_all = s->next;
    if (s->next) s->next->prev = s->prev;
}

static void scratch_release(scratch *s) {
    for (int i = 0; i < NN__SCRATCH_SLOTS; i++) {
        nn__mem_account(NN_MEM_OTHER, -(int64_t)s->cap[i]);
        free(s->p[i]);
    }
    free(s);
}

/* Key destructor: the thread is exiting. */
static void scratch_thread_exit(void *arg) {
    scratch *s = arg;
    if (!s) return;
    pthread_mutex_lock(&g_scratch_lock);
    scratch_unlink(s);
    pthread_mutex_unlock(&g_scratch_lock);
    scratch_release(s);
}

static void scratch_key(void) {
    g_scratch_key_ok = pthread_key_create(&g_scratch_key, scratch_thread_exit) == 0;
}

void *nn__thread_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= NN__SCRATCH_SLOTS || bytes > SIZE_MAX / 2) return NULL;
    scratch *s = tls_scratch;
    if (!s) {
        pthread_once(&g_scratch_once, scratch_key);
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        pthread_mutex_lock(&g_scratch_lock);
        s->next = g_scratch_all;
        if (g_scratch_all) g_scratch_all->prev = s;
        g_scratch_all = s;
        pthread_mutex_unlock(&g_scratch_lock);
        tls_scratch = s;
        if (g_scratch_key_ok) pthread_setspecific(g_scratch_key, s);
    }
    if (s->cap[slot] < bytes || !s->p[slot]) {
        size_t want = bytes < 64 ? 64 : (bytes + 63) & ~(size_t)63;
        void *p = NULL;
        free(s->p[slot]);
        nn__mem_account(NN_MEM_OTHER, -(int64_t)s->cap[slot]);
        s->p[slot] = NULL, s->cap[slot] = 0;
        if (posix_memalign(&p, 64, want) != 0) return NULL;
        s->p[slot] = p, s->cap[slot] = want;
        nn__mem_account(NN_MEM_OTHER, (int64_t)want);
    }
    return s->p[slot];
}

/* Free every thread's scratch but `keep`. Caller holds g_scratch_lock. */
static void scratch_free_others(const scratch *keep) {
    for (scratch *s = g_scratch_all, *next; s; s = next) {
        next = s->next;
        if (s == keep) continue;
        scratch_unlink(s);
        scratch_release(s);
    }
}

/* ------------------------------------------------------------------ pool */

typedef struct job {
    nn__task_fn fn;
    void *ctx;
    const char *label; /* the caller's innermost profiler span (workers' spans take it) */
    int64_t n;    /* tasks */
    int nthreads; /* participants allowed, caller included */
} job;

static struct {
    pthread_mutex_t lock; /* held by the running call; guards tid/n_workers */
    pthread_t tid[MAX_WORKERS];
    int n_workers;
    bool dead;        /* unloaded: every later call runs serially */
    bool fork_locked; /* the atfork prepare handler took `lock` */
    job job;

    alignas(64) _Atomic uint32_t gen; /* bumped per job and to stop; futex word */
    _Atomic int sleepers;             /* workers asleep on gen */
    _Atomic int stop;                 /* workers exit at the next gen */
    _Atomic int open;                 /* the job accepts workers */
    _Atomic int users;                /* workers looking at the job */

    alignas(64) _Atomic int64_t done; /* tasks completed */
    _Atomic uint32_t finished;        /* done == n; futex word of the caller */
    _Atomic int caller_sleeping;
} g_pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Participant p's home range of the running job: tasks [next, hi) still to
 * claim. One cache line each: the owner claims from it on every task. */
typedef struct home {
    alignas(64) _Atomic int64_t next;
    int64_t hi;
} home;
static home g_home[MAX_WORKERS + 1];

/* The gen value worker i saw when it was created (read by it at start). */
static uint32_t g_gen0[MAX_WORKERS];

/* Calls that handed tasks to workers (nn__pool_forks). */
static _Atomic int64_t g_forks;

/* Set while this thread runs tasks (permanently on workers). */
static _Thread_local int tls_in_task;

static void run_serial(int64_t n, nn__task_fn fn, void *ctx) {
    int was = tls_in_task;
    tls_in_task = 1;
    for (int64_t t = 0; t < n; t++) fn(ctx, t, 0);
    tls_in_task = was;
}

/* Claim and run the tasks of home range h until it is empty. */
static void run_range(const job *j, home *h, int thread) {
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&h->next, 1, memory_order_relaxed);
        if (t >= h->hi) return;
        j->fn(j->ctx, t, thread);
        if (atomic_fetch_add_explicit(&g_pool.done, 1, memory_order_acq_rel) == j->n - 1) {
            atomic_store(&g_pool.finished, 1);
            if (atomic_load(&g_pool.caller_sleeping)) word_wake(&g_pool.finished, 1);
        }
    }
}

/* Participant p's part of j: its own home range first, then whatever is
 * left in the others' (the next participant's first), so a thread the OS
 * deschedules holds up at most the task it is running. */
static void run_tasks(const job *j, int p) {
    run_range(j, &g_home[p], p);
    for (int k = 1; k < j->nthreads; k++) {
        int q = p + k < j->nthreads ? p + k : p + k - j->nthreads;
        run_range(j, &g_home[q], p);
    }
}

static void *worker_main(void *arg) {
    /* Participant number: fixed for the worker's life, so it gets the same
     * home range of every job of a given size (see nn__parallel_for_max). */
    const int id = (int)(intptr_t)arg;
    uint32_t seen = g_gen0[id - 1];
    tls_in_task = 1;
    nn__prof_thread_label("pool worker");
    for (;;) {
        if (!spin_while(&g_pool.gen, seen, WORKER_SPIN_NS)) {
            atomic_fetch_add(&g_pool.sleepers, 1);
            while (atomic_load(&g_pool.gen) == seen) word_wait(&g_pool.gen, seen);
            atomic_fetch_sub(&g_pool.sleepers, 1);
        }
        seen = atomic_load(&g_pool.gen);
        if (atomic_load(&g_pool.stop)) break;
        atomic_fetch_add(&g_pool.users, 1);
        if (atomic_load(&g_pool.open) && id < g_pool.job.nthreads) {
            NN__PROF_SPAN(NN__PROF_TASK, g_pool.job.label ? g_pool.job.label : "task", NULL);
            run_tasks(&g_pool.job, id);
        }
        atomic_fetch_sub(&g_pool.users, 1);
    }
    return NULL;
}

/* Join every worker. Caller holds the lock (or is the only thread left). */
static void stop_workers(void) {
    if (g_pool.n_workers == 0) return;
    atomic_store(&g_pool.stop, 1);
    atomic_fetch_add(&g_pool.gen, 1);
    word_wake(&g_pool.gen, INT_MAX);
    for (int i = 0; i < g_pool.n_workers; i++) pthread_join(g_pool.tid[i], NULL);
    g_pool.n_workers = 0;
    atomic_store(&g_pool.stop, 0);
}

/* Lock order: the pool's lock (waits for a running call), then the scratch
 * registry's (its holders never wait for anything). */
static void fork_prepare(void) {
    g_pool.fork_locked = false;
    if (!tls_in_task) { /* forking from a task: documented as unsupported */
        pthread_mutex_lock(&g_pool.lock);
        g_pool.fork_locked = true;
    }
    pthread_mutex_lock(&g_scratch_lock);
}
static void fork_parent(void) {
    if (g_pool.fork_locked) pthread_mutex_unlock(&g_pool.lock);
    pthread_mutex_unlock(&g_scratch_lock);
}
static void fork_child(void) {
    /* The workers did not survive the fork: forget them. */
    g_pool.n_workers = 0;
    atomic_store(&g_pool.sleepers, 0);
    atomic_store(&g_pool.users, 0);
    atomic_store(&g_pool.open, 0);
    atomic_store(&g_pool.stop, 0);
    if (g_pool.fork_locked) pthread_mutex_unlock(&g_pool.lock);
    else pthread_mutex_init(&g_pool.lock, NULL);
    /* Only this thread survived: the others' scratch is unreachable now. */
    scratch_free_others(tls_scratch);
    pthread_mutex_unlock(&g_scratch_lock);
}

static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

/* Make the pool hold `want` workers (fewer if the system refuses threads).
 * Caller holds the lock. */
static void resize_workers(int want) {
    if (want > MAX_WORKERS) want = MAX_WORKERS;
    if (want < 0) want = 0;
    if (g_pool.n_workers == want) return;
    stop_workers();
    if (want == 0) return;
    pthread_once(&g_atfork_once, register_atfork);
    /* Workers block every signal: the host's handlers run on its own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    uint32_t gen = atomic_load(&g_pool.gen);
    for (int i = 0; i < want; i++) {
        g_gen0[i] = gen;
        if (pthread_create(&g_pool.tid[i], NULL, worker_main, (void *)(intptr_t)(i + 1)) != 0)
            break;
        g_pool.n_workers = i + 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Wait until no worker looks at the previous job. Normally already true; a
 * straggler is a worker between its last claim and leaving. */
static void wait_users(void) {
    for (unsigned i = 0; atomic_load(&g_pool.users) != 0; i++) {
        if (i < 4096) cpu_relax();
        else sched_yield();
    }
}

void nn__parallel_for_max(int64_t n_tasks, int max_threads, nn__task_fn fn, void *ctx) {
    if (n_tasks <= 0 || !fn) return;
    const int configured = nn__num_threads();
    int nt = max_threads < configured ? max_threads : configured;
    if ((int64_t)nt > n_tasks) nt = (int)n_tasks;
    if (nt <= 1 || tls_in_task || pthread_mutex_trylock(&g_pool.lock) != 0) {
        run_serial(n_tasks, fn, ctx);
        return;
    }
    if (!g_pool.dead) resize_workers(configured - 1);
    if (nt > g_pool.n_workers + 1) nt = g_pool.n_workers + 1;
    if (nt <= 1) {
        pthread_mutex_unlock(&g_pool.lock);
        run_serial(n_tasks, fn, ctx);
        return;
    }

    wait_users();
    g_pool.job = (job){.fn = fn, .ctx = ctx, .n = n_tasks, .nthreads = nt,
                       .label = nn__prof_on() ? nn__prof_current_name() : NULL};
    /* Home ranges: participant p (the caller is 0, worker i is i) owns the
     * p-th of nt consecutive, near-equal parts of [0, n). Callers number
     * tasks in data order, so consecutive kernels give each thread the same
     * part of the data, which then is still in its caches. */
    for (int p = 0; p < nt; p++) {
        const int64_t per = n_tasks / nt, extra = n_tasks % nt;
        const int64_t lo = per * p + (p < extra ? p : extra);
        atomic_store_explicit(&g_home[p].next, lo, memory_order_relaxed);
        g_home[p].hi = lo + per + (p < extra ? 1 : 0);
    }
    atomic_store_explicit(&g_pool.done, 0, memory_order_relaxed);
    atomic_store_explicit(&g_pool.finished, 0, memory_order_relaxed);
    atomic_store_explicit(&g_pool.caller_sleeping, 0, memory_order_relaxed);
    atomic_store(&g_pool.open, 1);
    atomic_fetch_add(&g_pool.gen, 1);
    atomic_fetch_add_explicit(&g_forks, 1, memory_order_relaxed);
    /* Only workers 1..nt-1 take part; a futex wakes arbitrary sleepers, so
     * when not every worker is wanted, wake them all (the others go back to
     * waiting). */
    if (atomic_load(&g_pool.sleepers) > 0)
        word_wake(&g_pool.gen, nt - 1 < g_pool.n_workers ? INT_MAX : nt - 1);

    tls_in_task = 1;
    run_tasks(&g_pool.job, 0);
    tls_in_task = 0;

    /* Wait for the tasks other threads are still running. */
    if (!spin_while(&g_pool.finished, 0, CALLER_SPIN_NS)) {
        atomic_store(&g_pool.caller_sleeping, 1);
        while (atomic_load(&g_pool.finished) == 0) word_wait(&g_pool.finished, 0);
    }
    atomic_store(&g_pool.open, 0);
    pthread_mutex_unlock(&g_pool.lock);
}

void nn__parallel_for(int64_t n_tasks, nn__task_fn fn, void *ctx) {
    nn__parallel_for_max(n_tasks, INT_MAX, fn, ctx);
}

typedef struct blocks_ctx {
    nn__block_fn body;
    void *ctx;
    int64_t n, block;
} blocks_ctx;

static void block_task(void *c, int64_t t, int thread) {
    const blocks_ctx *b = c;
    int64_t lo = t * b->block, hi = b->n - lo < b->block ? b->n : lo + b->block;
    b->body(b->ctx, lo, hi, thread);
}

void nn__parallel_blocks(int64_t n, int64_t block, nn__block_fn body, void *ctx) {
    if (n <= 0 || !body) return;
    if (block < 1 || block > n) block = n;
    const int64_t tasks = (n - 1) / block + 1;
    if (tasks == 1) {
        int was = tls_in_task;
        tls_in_task = 1;
        body(ctx, 0, n, 0);
        tls_in_task = was;
        return;
    }
    blocks_ctx b = {.body = body, .ctx = ctx, .n = n, .block = block};
    nn__parallel_for(tasks, block_task, &b);
}

int64_t nn__block_size(int64_t n, int64_t grain, int64_t align) {
    if (n <= 1) return 1;
    if (grain < 1) grain = 1;
    if (align < 1) align = 1;
    if (n < 2 * grain) return n;
    int64_t b = (n - 1) / 32 + 1;
    if (b < grain) b = grain;
    b = (b - 1) / align * align + align;
    return b < n ? b : n;
}

int64_t nn__pool_forks(void) { return atomic_load_explicit(&g_forks, memory_order_relaxed); }

int nn__pool_threads(void) { return tls_in_task ? 1 : nn__num_threads(); }

int nn__in_parallel(void) { return tls_in_task; }

void nn__pool_shutdown(void) {
    pthread_mutex_lock(&g_pool.lock);
    stop_workers();
    pthread_mutex_unlock(&g_pool.lock);
}

int nn__pool_workers(void) {
    pthread_mutex_lock(&g_pool.lock);
    int n = g_pool.n_workers;
    pthread_mutex_unlock(&g_pool.lock);
    return n;
}

/* At unload, join the workers (valgrind then sees no thread stacks; their
 * scratch is freed as they exit). A call still running on another thread
 * keeps its pool: the process is exiting. Then every scratch buffer still
 * held (threads still alive must not run kernels past this point), and no
 * key destructor may call into unloaded code afterwards. */
__attribute__((destructor)) static void pool_unload(void) {
    if (pthread_mutex_trylock(&g_pool.lock) == 0) {
        stop_workers();
        g_pool.dead = true;
        pthread_mutex_unlock(&g_pool.lock);
    }
    if (g_scratch_key_ok) {
        pthread_setspecific(g_scratch_key, NULL);
        pthread_key_delete(g_scratch_key);
        g_scratch_key_ok = false;
    }
    pthread_mutex_lock(&g_scratch_lock);
    scratch_free_others(NULL);
    pthread_mutex_unlock(&g_scratch_lock);
    tls_scratch = NULL;
}
