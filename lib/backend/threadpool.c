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
#include <stddef.h>
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
    int64_t n;    /* tasks */
    int nthreads; /* participants allowed, caller included */
    int caller_cpu; /* the CPU the caller published the job on, or -1 */
} job;

static struct pool {
    pthread_mutex_t lock; /* held by the running call; guards tid/n_workers */
    pthread_t tid[MAX_WORKERS];
    int n_workers;
    bool dead;        /* unloaded: every later call runs serially */
    bool fork_locked; /* the atfork prepare handler took `lock` */
    const char *label; /* the caller's innermost profiler span (workers' spans take it) */

    /* One cache line holds what a worker reads and writes to start a job:
     * the generation it waits on, the job, and participant 1's claim
     * counter (its home range's next task; the others' are in g_home). A
     * worker woken by a new generation then fetches one line from the
     * caller's cache instead of four (gen, job, home range, users). On
     * Zen 5 (2 vCPUs, cpu cgroup, load 5) a 2-thread call's worker started
     * its task 0.43-0.49 us after the caller entered the call instead of
     * 0.74-0.79, a call of two 10 us tasks took 11.0 us instead of
     * 11.3-11.5, and the models' small sgemm at 2 threads ran ~2% faster
     * (64x128x256 NT 319 -> 327 GFLOP/s, 128x256x64 TN 330 -> 338; medians
     * of 31 interleaved runs). */
    alignas(64) _Atomic uint32_t gen; /* bumped per job and to stop; futex word */
    _Atomic int sleepers;             /* workers asleep on gen */
    _Atomic int stop;                 /* workers exit at the next gen */
    _Atomic int open;                 /* the job accepts workers */
    _Atomic int users;                /* workers looking at the job */
    job job;
    _Atomic int64_t next1; /* participant 1's home range: next task to claim */

    alignas(64) _Atomic int64_t done; /* tasks completed */
    _Atomic uint32_t finished;        /* done == n; futex word of the caller */
    _Atomic int caller_sleeping;
} g_pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

_Static_assert(offsetof(struct pool, next1) + sizeof(int64_t) -
                       offsetof(struct pool, gen) <= 64,
               "a worker's start of a job: one cache line");

/* Participant p's home range of the running job: tasks [next, hi) still to
 * claim, hi from the job alone (home_range). One cache line each: the owner
 * claims from it on every task (participant 1's counter: g_pool.next1). */
typedef struct home {
    alignas(64) _Atomic int64_t next;
    _Atomic int busy; /* participant p is inside a task (read by the waiting caller) */
} home;
static home g_home[MAX_WORKERS + 1];

static _Atomic int64_t *home_next(int p) { return p == 1 ? &g_pool.next1 : &g_home[p].next; }

/* Participant p (the caller is 0, worker i is i) owns the p-th of nt
 * consecutive, near-equal parts of [0, n): [*lo, *hi). */
static void home_range(int64_t n, int nt, int p, int64_t *lo, int64_t *hi) {
    const int64_t per = n / nt, extra = n % nt;
    *lo = per * p + (p < extra ? p : extra);
    *hi = *lo + per + (p < extra ? 1 : 0);
}

/* Worker i's kernel thread id (0 until it has started). */
static _Atomic int g_wtid[MAX_WORKERS];

/* The gen value worker i saw when it was created (read by it at start). */
static uint32_t g_gen0[MAX_WORKERS];

/* Workers moved (nn__pool_moves). */
static _Atomic int64_t g_moves;

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

/* Claim and run the tasks of participant q's home range until it is empty. */
static void run_range(const job *j, int q, int thread) {
    _Atomic int64_t *next = home_next(q);
    int64_t lo, hi;
    home_range(j->n, j->nthreads, q, &lo, &hi);
    (void)lo;
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(next, 1, memory_order_relaxed);
        if (t >= hi) return;
        atomic_store_explicit(&g_home[thread].busy, 1, memory_order_relaxed);
        j->fn(j->ctx, t, thread);
        atomic_store_explicit(&g_home[thread].busy, 0, memory_order_relaxed);
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
    run_range(j, p, p);
    for (int k = 1; k < j->nthreads; k++) {
        int q = p + k < j->nthreads ? p + k : p + k - j->nthreads;
        run_range(j, q, p);
    }
}

/* ------------------------------------------------------------ placement
 *
 * When the machine has no core to spare (another busy process on a 2-core
 * machine), the scheduler's own placement can make a 2-thread call slower
 * than 1 thread, in two ways measured with sched_switch traces:
 *  - a worker woken by the caller is queued on the caller's CPU (no CPU was
 *    idle, so the waker's was chosen) and nothing moves it away again: the two
 *    take turns on one core while the busy process has the other alone;
 *  - a worker that shares a core with the busy process is descheduled
 *    holding the call's last task, and the caller waits with its own core
 *    idle: an idle core does not pull a task that ran a moment ago.
 * So a worker that starts a job on the caller's CPU moves off it, and a
 * caller whose only remaining wait is a task held by a worker that is not
 * running moves that worker onto its own CPU, then sleeps. Moving = setting
 * the thread's affinity to exclude (or to be) one CPU, which migrates it at
 * once, then restoring the mask, which leaves it where it is; only libnn's
 * own workers are moved, never the caller, and only while the threads of a
 * call are no more than the CPUs they may use. */

static pthread_mutex_t g_aff_lock = PTHREAD_MUTEX_INITIALIZER;

static int this_cpu(void) {
#ifdef __linux__
    return sched_getcpu();
#else
    return -1;
#endif
}

#ifdef __linux__
/* Run kernel thread `tid` (0: this one) once on a CPU of `want` (its mask
 * minus `cpu` when `exclude`, else `cpu` alone), then give it back its mask.
 * Nothing when the mask allows no such CPU or holds fewer than `nt` CPUs. */
static void move_thread(pid_t tid, int cpu, bool exclude, int nt) {
    cpu_set_t mask, want;
    if (cpu < 0 || cpu >= CPU_SETSIZE) return;
    pthread_mutex_lock(&g_aff_lock);
    if (sched_getaffinity(tid, sizeof mask, &mask) == 0 && CPU_ISSET(cpu, &mask) &&
        CPU_COUNT(&mask) >= nt) {
        if (exclude) {
            want = mask;
            CPU_CLR(cpu, &want);
        } else {
            CPU_ZERO(&want);
            CPU_SET(cpu, &want);
        }
        if (CPU_COUNT(&want) > 0 && sched_setaffinity(tid, sizeof want, &want) == 0) {
            sched_setaffinity(tid, sizeof mask, &mask);
            atomic_fetch_add_explicit(&g_moves, 1, memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&g_aff_lock);
}

/* CPU time of worker w (1-based participant), ns; -1 when unknown. */
static int64_t worker_cpu_ns(int w) {
    clockid_t c;
    struct timespec t;
    if (pthread_getcpuclockid(g_pool.tid[w - 1], &c) != 0 || clock_gettime(c, &t) != 0) return -1;
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
#endif

static void *worker_main(void *arg) {
    /* Participant number: fixed for the worker's life, so it gets the same
     * home range of every job of a given size (see nn__parallel_for_max). */
    const int id = (int)(intptr_t)arg;
    uint32_t seen = g_gen0[id - 1];
    tls_in_task = 1;
#ifdef __linux__
    atomic_store(&g_wtid[id - 1], (int)syscall(SYS_gettid));
#endif
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
#ifdef __linux__
            const int cpu = g_pool.job.caller_cpu;
            if (cpu >= 0 && this_cpu() == cpu) move_thread(0, cpu, true, g_pool.job.nthreads);
#endif
            const char *label = nn__prof_on() ? g_pool.label : NULL;
            NN__PROF_SPAN(NN__PROF_TASK, label ? label : "task", NULL);
            /* a copy: the line the job is in takes participant 1's claims */
            const job jb = g_pool.job;
            run_tasks(&jb, id);
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
    for (int i = 0; i < g_pool.n_workers; i++) {
        pthread_join(g_pool.tid[i], NULL);
        atomic_store(&g_wtid[i], 0);
    }
    g_pool.n_workers = 0;
    atomic_store(&g_pool.stop, 0);
}

/* Lock order: the pool's lock (waits for a running call), then the
 * placement lock, then the scratch registry's (the holders of these two never
 * wait for anything). */
static void fork_prepare(void) {
    g_pool.fork_locked = false;
    if (!tls_in_task) { /* forking from a task: documented as unsupported */
        pthread_mutex_lock(&g_pool.lock);
        g_pool.fork_locked = true;
    }
    pthread_mutex_lock(&g_aff_lock);
    pthread_mutex_lock(&g_scratch_lock);
}
static void fork_parent(void) {
    if (g_pool.fork_locked) pthread_mutex_unlock(&g_pool.lock);
    pthread_mutex_unlock(&g_aff_lock);
    pthread_mutex_unlock(&g_scratch_lock);
}
static void fork_child(void) {
    /* The workers did not survive the fork: forget them. */
    g_pool.n_workers = 0;
    atomic_store(&g_pool.sleepers, 0);
    atomic_store(&g_pool.users, 0);
    atomic_store(&g_pool.open, 0);
    atomic_store(&g_pool.stop, 0);
    for (int i = 0; i < MAX_WORKERS; i++) atomic_store(&g_wtid[i], 0), atomic_store(&g_home[i + 1].busy, 0);
    pthread_mutex_unlock(&g_aff_lock);
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

/* The caller's wait for the tasks still running once none is left to claim:
 * true when they finished while it spun, false when it should sleep. After
 * STALL_PROBE_NS it looks at the workers still inside a task; one that got
 * under a quarter of the CPU time that passed meanwhile is not running (the
 * OS runs something else on its core): it is moved to this CPU and the
 * caller sleeps at once, so that it runs here. */
#define STALL_PROBE_NS 20000u
static bool caller_spin(int nt) {
#ifdef __linux__
    if (spin_while(&g_pool.finished, 0, STALL_PROBE_NS)) return true;
    int64_t c0[4];
    int w[4], k = 0;
    for (int p = 1; p < nt && k < 4; p++)
        if (atomic_load_explicit(&g_home[p].busy, memory_order_relaxed) && atomic_load(&g_wtid[p - 1]))
            w[k] = p, c0[k] = worker_cpu_ns(p), k++;
    if (k == 0) return spin_while(&g_pool.finished, 0, CALLER_SPIN_NS - STALL_PROBE_NS);
    const uint64_t t0 = now_ns();
    if (spin_while(&g_pool.finished, 0, STALL_PROBE_NS)) return true;
    const int64_t wall = (int64_t)(now_ns() - t0);
    for (int i = 0; i < k; i++) {
        const int64_t c1 = worker_cpu_ns(w[i]);
        if (c0[i] < 0 || c1 < 0 || 4 * (c1 - c0[i]) >= wall) continue;
        if (!atomic_load_explicit(&g_home[w[i]].busy, memory_order_relaxed)) continue;
        move_thread(atomic_load(&g_wtid[w[i] - 1]), this_cpu(), false, nt);
        return atomic_load(&g_pool.finished) != 0;
    }
    return spin_while(&g_pool.finished, 0, CALLER_SPIN_NS - 2 * STALL_PROBE_NS);
#else
    (void)nt;
    return spin_while(&g_pool.finished, 0, CALLER_SPIN_NS);
#endif
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
    g_pool.label = nn__prof_on() ? nn__prof_current_name() : NULL;
    /* the caller runs from its own copy of the job: the shared line takes
     * participant 1's claims (on Zen 5 reading fn and ctx from it for every
     * task made the 16-task calls of the small GEMM path 4-5% slower) */
    const job jb = {.fn = fn, .ctx = ctx, .n = n_tasks, .nthreads = nt, .caller_cpu = this_cpu()};
    g_pool.job = jb;
    /* Home ranges: participant p (the caller is 0, worker i is i) owns the
     * p-th of nt consecutive, near-equal parts of [0, n). Callers number
     * tasks in data order, so consecutive kernels give each thread the same
     * part of the data, which then is still in its caches. */
    for (int p = 0; p < nt; p++) {
        int64_t lo, hi;
        home_range(n_tasks, nt, p, &lo, &hi);
        atomic_store_explicit(home_next(p), lo, memory_order_relaxed);
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
    run_tasks(&jb, 0);
    tls_in_task = 0;

    /* Wait for the tasks other threads are still running. */
    if (!caller_spin(nt)) {
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

int64_t nn__pool_moves(void) { return atomic_load_explicit(&g_moves, memory_order_relaxed); }

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
