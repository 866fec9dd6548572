/* The profiler: per-thread event recording (the hooks in core.h), the text
 * report and the Chrome trace-event file.
 *
 * Recording. Each thread that records gets a `thr` record (registered once
 * in a global list, kept after the thread exits until the next session): a
 * stack of open frames that only its owner touches, and, under its own
 * mutex (uncontended except while a report or a new session reads it), the
 * session's events in chunks plus a table of aggregates keyed by (name,
 * kind, object). A frame's self time is its duration minus its children's,
 * so the self times of one thread partition the wall time its outermost
 * spans cover, and nested ops (a composite op calling others, a module
 * calling ops) are never counted twice.
 *
 * Names are interned once per process (their text copied), so a module's
 * type name may be freed with the module; a per-thread cache maps a name's
 * address to its id after a strcmp check.
 *
 * The profiler's own buffers come from the C library, not the allocator
 * hook: recording must never fail a call or change its error state, and its
 * buffers are not libnn data (they are not in nn_memory_stats). */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

_Atomic int nn__prof_enabled;

#define MAX_DEPTH 128
#define CHUNK_EVENTS 8192
#define MAX_EVENTS_PER_THREAD ((int64_t)1 << 21) /* ~80 MB of events; aggregates go on */
#define MAX_NAMES 65536
#define NAME_CACHE 256
#define MAX_MEM_SAMPLES 100000

static const char *const kind_names[NN__PROF_KINDS] = {
    "op", "backward", "optimizer", "module", "data", "step", "other", "task"};

typedef struct frame {
    int kind;
    const char *name;
    const void *obj;
    uint64_t t0, child, session;
    double flops, bytes;
} frame;

typedef struct event {
    uint64_t t0, dur;
    double flops, bytes;
    uint32_t agg; /* index into the thread's aggregates */
} event;

typedef struct chunk {
    struct chunk *next;
    int n;
    event ev[CHUNK_EVENTS];
} chunk;

typedef struct agg {
    uint32_t name;
    int kind;
    const void *obj;
    int64_t calls;
    uint64_t total, self, first;
    double flops, bytes;
} agg;

typedef struct thr {
    pthread_mutex_t mu; /* guards everything below but the stack and cache */
    struct thr *next;
    long tid;
    char label[48];
    bool dead;
    uint64_t session;
    chunk *head, *tail;
    int64_t nevents, dropped;
    agg *aggs;
    uint32_t nagg, cap; /* cap: slots of `index` (power of two) */
    int32_t *index;     /* open addressing: agg index + 1, 0 empty */
    /* owner-only */
    int depth;
    frame stack[MAX_DEPTH];
    struct {
        const char *ptr;
        uint32_t id;
    } cache[NAME_CACHE];
} thr;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* list, session, names, samples */
static thr *g_threads;
static _Atomic uint64_t g_session;
static bool g_started; /* a session exists (running or stopped) */
static unsigned g_flags;
static uint64_t g_t_start, g_t_stop;
static _Thread_local thr *tl_thr;
static pthread_key_t g_key;
static bool g_key_ok;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static _Thread_local char tl_label[48];

/* interned names: pages of stable pointers */
#define NAME_PAGE 1024
static char **g_name_pages[MAX_NAMES / NAME_PAGE];
static uint32_t g_nnames;
static uint32_t *g_name_hash; /* id + 1, open addressing */
static uint32_t g_name_hcap;

typedef struct mem_sample {
    uint64_t t;
    uint64_t cur[NN_MEM_CATEGORIES];
} mem_sample;
static mem_sample *g_samples;
static int64_t g_nsamples, g_samples_cap;

static _Atomic(nn__prof_peak_fn) g_peak_fn;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static long thread_id(void) {
#ifdef __linux__
    return (long)syscall(SYS_gettid);
#else
    static _Atomic long next = 1;
    return atomic_fetch_add(&next, 1);
#endif
}

void nn__prof_on_peak(nn__prof_peak_fn fn) { g_peak_fn = fn; }

void nn__prof_thread_label(const char *label) {
    snprintf(tl_label, sizeof tl_label, "%s", label ? label : "");
    thr *t = tl_thr;
    if (t) {
        pthread_mutex_lock(&t->mu);
        snprintf(t->label, sizeof t->label, "%s", tl_label);
        pthread_mutex_unlock(&t->mu);
    }
}

/* ------------------------------------------------------------- threads */

static void thread_exit(void *arg) {
    thr *t = arg;
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->dead = true;
    pthread_mutex_unlock(&t->mu);
}

static void make_key(void) { g_key_ok = pthread_key_create(&g_key, thread_exit) == 0; }

static void thr_clear(thr *t) {
    for (chunk *c = t->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    t->head = t->tail = NULL;
    t->nevents = t->dropped = 0;
    t->nagg = 0;
    if (t->index) memset(t->index, 0, sizeof(int32_t) * t->cap);
}

static void thr_free(thr *t) {
    thr_clear(t);
    free(t->aggs);
    free(t->index);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static thr *self(void) {
    thr *t = tl_thr;
    if (t) return t;
    pthread_once(&g_key_once, make_key);
    t = calloc(1, sizeof *t);
    if (!t) return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->tid = thread_id();
    if (tl_label[0])
        snprintf(t->label, sizeof t->label, "%s", tl_label);
    else if (t->tid == (long)getpid())
        snprintf(t->label, sizeof t->label, "main");
    else
        snprintf(t->label, sizeof t->label, "thread %ld", t->tid);
    pthread_mutex_lock(&g_mu);
    t->next = g_threads;
    g_threads = t;
    pthread_mutex_unlock(&g_mu);
    tl_thr = t;
    if (g_key_ok) pthread_setspecific(g_key, t);
    return t;
}

/* --------------------------------------------------------------- names */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static const char *name_of(uint32_t id) { return g_name_pages[id / NAME_PAGE][id % NAME_PAGE]; }

/* Caller holds g_mu. Returns the id, or UINT32_MAX when full / no memory. */
static uint32_t intern_locked(const char *s) {
    if (g_nnames * 2 >= g_name_hcap) {
        uint32_t ncap = g_name_hcap ? g_name_hcap * 2 : 256;
        uint32_t *nh = calloc(ncap, sizeof *nh);
        if (!nh) return UINT32_MAX;
        for (uint32_t i = 0; i < g_name_hcap; i++) {
            if (!g_name_hash[i]) continue;
            uint32_t id = g_name_hash[i] - 1, j = (uint32_t)hash_str(name_of(id)) & (ncap - 1);
            while (nh[j]) j = (j + 1) & (ncap - 1);
            nh[j] = id + 1;
        }
        free(g_name_hash);
        g_name_hash = nh;
        g_name_hcap = ncap;
    }
    uint32_t j = (uint32_t)hash_str(s) & (g_name_hcap - 1);
    for (; g_name_hash[j]; j = (j + 1) & (g_name_hcap - 1))
        if (!strcmp(name_of(g_name_hash[j] - 1), s)) return g_name_hash[j] - 1;
    if (g_nnames >= MAX_NAMES) return UINT32_MAX;
    char **page = g_name_pages[g_nnames / NAME_PAGE];
    if (!page) {
        page = calloc(NAME_PAGE, sizeof *page);
        if (!page) return UINT32_MAX;
        g_name_pages[g_nnames / NAME_PAGE] = page;
    }
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (!copy) return UINT32_MAX;
    memcpy(copy, s, n);
    page[g_nnames % NAME_PAGE] = copy;
    g_name_hash[j] = g_nnames + 1;
    return g_nnames++;
}

static uint32_t intern(thr *t, const char *s) {
    if (!s) s = "(unnamed)";
    unsigned slot = (unsigned)(((uintptr_t)s >> 3) % NAME_CACHE);
    /* The cached id's text is stable (interned copies are never freed while
     * ids are handed out), so the check needs no lock. */
    if (t->cache[slot].ptr == s && !strcmp(name_of(t->cache[slot].id), s))
        return t->cache[slot].id;
    pthread_mutex_lock(&g_mu);
    uint32_t id = intern_locked(s);
    if (id == UINT32_MAX) id = intern_locked("(other)");
    pthread_mutex_unlock(&g_mu);
    if (id != UINT32_MAX) {
        t->cache[slot].ptr = s;
        t->cache[slot].id = id;
    }
    return id;
}

/* ----------------------------------------------------------- recording */

bool nn__prof_begin(int kind, const char *name, const void *obj) {
    thr *t = self();
    if (!t || t->depth >= MAX_DEPTH) return false;
    frame *f = &t->stack[t->depth++];
    f->kind = kind;
    f->name = name;
    f->obj = obj;
    f->child = 0;
    f->flops = f->bytes = 0;
    f->session = atomic_load_explicit(&g_session, memory_order_relaxed);
    f->t0 = now_ns();
    return true;
}

/* Find or add the aggregate (name, kind, obj). Caller holds t->mu. */
static int64_t agg_slot(thr *t, uint32_t name, int kind, const void *obj, uint64_t t0) {
    if ((t->nagg + 1) * 2 > t->cap) {
        uint32_t ncap = t->cap ? t->cap * 2 : 64;
        int32_t *ni = calloc(ncap, sizeof *ni);
        agg *na = realloc(t->aggs, sizeof *na * (ncap / 2));
        if (!ni || !na) {
            free(ni);
            if (na) t->aggs = na;
            return -1;
        }
        t->aggs = na;
        for (uint32_t i = 0; i < t->nagg; i++) {
            const agg *a = &t->aggs[i];
            uint32_t j = (uint32_t)((a->name * 31u + (uint32_t)a->kind) ^ (uintptr_t)a->obj) &
                         (ncap - 1);
            while (ni[j]) j = (j + 1) & (ncap - 1);
            ni[j] = (int32_t)i + 1;
        }
        free(t->index);
        t->index = ni;
        t->cap = ncap;
    }
    uint32_t j = (uint32_t)((name * 31u + (uint32_t)kind) ^ (uintptr_t)obj) & (t->cap - 1);
    for (; t->index[j]; j = (j + 1) & (t->cap - 1)) {
        agg *a = &t->aggs[t->index[j] - 1];
        if (a->name == name && a->kind == kind && a->obj == obj) return t->index[j] - 1;
    }
    agg *a = &t->aggs[t->nagg];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->kind = kind;
    a->obj = obj;
    a->first = t0;
    t->index[j] = (int32_t)t->nagg + 1;
    return t->nagg++;
}

static void sample_memory(uint64_t t1) {
    nn_memory_stats_t st;
    nn__mem_snapshot(&st);
    pthread_mutex_lock(&g_mu);
    if (g_nsamples == g_samples_cap && g_samples_cap < MAX_MEM_SAMPLES) {
        int64_t ncap = g_samples_cap ? g_samples_cap * 2 : 256;
        mem_sample *ns = realloc(g_samples, sizeof *ns * (size_t)ncap);
        if (ns) g_samples = ns, g_samples_cap = ncap;
    }
    if (g_nsamples < g_samples_cap) {
        mem_sample *m = &g_samples[g_nsamples++];
        m->t = t1;
        for (int c = 0; c < NN_MEM_CATEGORIES; c++) m->cur[c] = st.current[c];
    }
    pthread_mutex_unlock(&g_mu);
}

void nn__prof_end(void) {
    const uint64_t t1 = now_ns();
    thr *t = tl_thr;
    if (!t || t->depth <= 0) return;
    frame f = t->stack[--t->depth];
    const uint64_t dur = t1 - f.t0;
    if (t->depth > 0) t->stack[t->depth - 1].child += dur;
    /* Spans that end after the session stopped, or began in another one,
     * are not recorded. */
    if (!atomic_load_explicit(&nn__prof_enabled, memory_order_relaxed) ||
        f.session != atomic_load_explicit(&g_session, memory_order_relaxed))
        return;
    const uint32_t name = intern(t, f.name);
    if (name == UINT32_MAX) return;
    pthread_mutex_lock(&t->mu);
    if (t->session != f.session) {
        thr_clear(t);
        t->session = f.session;
    }
    int64_t ai = agg_slot(t, name, f.kind, f.obj, f.t0);
    if (ai >= 0) {
        agg *a = &t->aggs[ai];
        a->calls++;
        a->total += dur;
        a->self += dur > f.child ? dur - f.child : 0;
        a->flops += f.flops;
        a->bytes += f.bytes;
        event *e = NULL;
        if (t->nevents < MAX_EVENTS_PER_THREAD) {
            if (!t->tail || t->tail->n == CHUNK_EVENTS) {
                chunk *c = malloc(sizeof *c);
                if (c) {
                    c->n = 0;
                    c->next = NULL;
                    if (t->tail) t->tail->next = c;
                    else t->head = c;
                    t->tail = c;
                }
            }
            if (t->tail && t->tail->n < CHUNK_EVENTS) e = &t->tail->ev[t->tail->n++];
        }
        if (e) {
            *e = (event){.t0 = f.t0, .dur = dur, .flops = f.flops, .bytes = f.bytes,
                         .agg = (uint32_t)ai};
            t->nevents++;
        } else {
            t->dropped++;
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (f.kind == NN__PROF_OPTIM && (g_flags & NN_PROFILER_MEMORY)) sample_memory(t1);
}

void nn__prof_count_slow(double flops, double bytes) {
    thr *t = tl_thr;
    if (!t || t->depth <= 0) return;
    frame *f = &t->stack[t->depth - 1];
    f->flops += flops;
    f->bytes += bytes;
}

const char *nn__prof_current_name(void) {
    thr *t = tl_thr;
    if (!t || t->depth <= 0) return NULL;
    return t->stack[t->depth - 1].name;
}

/* ---------------------------------------------------------- sessions */

nn_status nn_profiler_start(uint32_t flags) {
    if (flags & ~(unsigned)NN_PROFILER_MEMORY)
        return nn__err(NN_ERR_INVALID, "nn_profiler_start: unknown flag bits 0x%x",
                       flags & ~(unsigned)NN_PROFILER_MEMORY);
    pthread_mutex_lock(&g_mu);
    if (atomic_load(&nn__prof_enabled)) {
        pthread_mutex_unlock(&g_mu);
        return nn__err(NN_ERR_STATE, "nn_profiler_start: a session is already running "
                                     "(nn_profiler_stop it first)");
    }
    /* Drop the previous session: live threads' records are cleared, exited
     * threads' freed. */
    for (thr **pp = &g_threads; *pp;) {
        thr *t = *pp;
        pthread_mutex_lock(&t->mu);
        bool dead = t->dead;
        thr_clear(t);
        pthread_mutex_unlock(&t->mu);
        if (dead) {
            *pp = t->next;
            thr_free(t);
        } else {
            pp = &t->next;
        }
    }
    g_nsamples = 0;
    g_flags = flags;
    g_started = true;
    g_t_start = now_ns();
    g_t_stop = 0;
    atomic_fetch_add(&g_session, 1);
    atomic_store(&nn__prof_enabled, 1);
    pthread_mutex_unlock(&g_mu);
    return nn__ok();
}

nn_status nn_profiler_stop(void) {
    pthread_mutex_lock(&g_mu);
    if (!atomic_load(&nn__prof_enabled)) {
        pthread_mutex_unlock(&g_mu);
        return nn__err(NN_ERR_STATE, "nn_profiler_stop: no session is running");
    }
    atomic_store(&nn__prof_enabled, 0);
    g_t_stop = now_ns();
    pthread_mutex_unlock(&g_mu);
    return nn__ok();
}

bool nn_profiler_running(void) { return atomic_load(&nn__prof_enabled) != 0; }

/* ------------------------------------------------------------ snapshot */

/* The session's aggregates merged over threads, plus per-thread totals. */
typedef struct row {
    uint32_t name;
    int kind;
    const void *obj;
    int64_t calls;
    uint64_t total, self, first;
    double flops, bytes;
    int instance; /* modules: 1, 2, ... in order of first appearance */
} row;

typedef struct tinfo {
    long tid;
    char label[48];
    uint64_t self, task;
    int64_t events, dropped;
} tinfo;

typedef struct snap {
    row *rows;
    int64_t nrows;
    tinfo *threads;
    int nthreads;
    int64_t events, dropped;
    uint64_t wall;
} snap;

static void snap_free(snap *s) {
    free(s->rows);
    free(s->threads);
}

/* Caller holds g_mu. */
static bool snapshot(snap *s) {
    memset(s, 0, sizeof *s);
    const uint64_t sess = atomic_load(&g_session);
    int64_t cap = 0;
    int tcap = 0;
    for (thr *t = g_threads; t; t = t->next) tcap++;
    s->threads = calloc((size_t)(tcap ? tcap : 1), sizeof *s->threads);
    if (!s->threads) return false;
    for (thr *t = g_threads; t; t = t->next) {
        pthread_mutex_lock(&t->mu);
        if (t->session != sess || t->nagg == 0) {
            pthread_mutex_unlock(&t->mu);
            continue;
        }
        tinfo *ti = &s->threads[s->nthreads++];
        ti->tid = t->tid;
        memcpy(ti->label, t->label, sizeof ti->label);
        ti->events = t->nevents;
        ti->dropped = t->dropped;
        s->events += t->nevents;
        s->dropped += t->dropped;
        for (uint32_t i = 0; i < t->nagg; i++) {
            const agg *a = &t->aggs[i];
            if (a->kind == NN__PROF_TASK) ti->task += a->total;
            else ti->self += a->self;
            int64_t k = 0;
            for (; k < s->nrows; k++) {
                row *r = &s->rows[k];
                if (r->name == a->name && r->kind == a->kind && r->obj == a->obj) break;
            }
            if (k == s->nrows) {
                if (s->nrows == cap) {
                    int64_t ncap = cap ? cap * 2 : 64;
                    row *nr = realloc(s->rows, sizeof *nr * (size_t)ncap);
                    if (!nr) {
                        pthread_mutex_unlock(&t->mu);
                        snap_free(s);
                        return false;
                    }
                    s->rows = nr, cap = ncap;
                }
                s->rows[k] = (row){.name = a->name, .kind = a->kind, .obj = a->obj,
                                   .first = a->first};
                s->nrows++;
            }
            row *r = &s->rows[k];
            r->calls += a->calls;
            r->total += a->total;
            r->self += a->self;
            r->flops += a->flops;
            r->bytes += a->bytes;
            if (a->first < r->first) r->first = a->first;
        }
        pthread_mutex_unlock(&t->mu);
    }
    s->wall = (g_t_stop ? g_t_stop : now_ns()) - g_t_start;
    /* Number module instances by first appearance, per type name. */
    for (int64_t i = 0; i < s->nrows; i++) {
        row *r = &s->rows[i];
        if (r->kind != NN__PROF_MODULE) continue;
        r->instance = 1;
        for (int64_t j = 0; j < s->nrows; j++) {
            const row *q = &s->rows[j];
            if (j != i && q->kind == NN__PROF_MODULE && q->name == r->name &&
                (q->first < r->first || (q->first == r->first && j < i)))
                r->instance++;
        }
    }
    return true;
}

/* -------------------------------------------------------------- report */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) NN__PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = true;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        while (ncap < b->n + (size_t)k + 1) ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np, b->cap = ncap;
    }
}

static int by_self_desc(const void *a, const void *b) {
    const row *x = a, *y = b;
    return x->self < y->self ? 1 : x->self > y->self ? -1 : 0;
}
static int by_first(const void *a, const void *b) {
    const row *x = a, *y = b;
    return x->first > y->first ? 1 : x->first < y->first ? -1 : 0;
}

static double g_peak_cached = -1.0;
static const char *g_peak_tier = "";

static double fma_peak(const char **tier) {
    if (g_peak_cached < 0) {
        nn__prof_peak_fn fn = g_peak_fn;
        g_peak_cached = fn ? fn(&g_peak_tier) : 0.0;
        if (!g_peak_tier) g_peak_tier = "";
    }
    *tier = g_peak_tier;
    return g_peak_cached;
}

#define TOP_OPS 25

static void report_ops(sbuf *b, snap *s, double peak, int threads, uint64_t covered) {
    if (s->nrows > 1) qsort(s->rows, (size_t)s->nrows, sizeof *s->rows, by_self_desc);
    sb_printf(b, "\nTop ops by self time (calling threads; %% of the %.3f ms they cover):\n",
              (double)covered * 1e-6);
    sb_printf(b, "  %-9s %-28s %8s %10s %6s %10s %9s %8s %8s %6s %7s\n", "kind", "name", "calls",
              "self ms", "self%", "total ms", "avg us", "GFLOP", "GFLOP/s", "%peak", "GB/s");
    int shown = 0;
    for (int64_t i = 0; i < s->nrows && shown < TOP_OPS; i++) {
        const row *r = &s->rows[i];
        if (r->kind == NN__PROF_TASK) continue;
        shown++;
        char nm[64];
        if (r->kind == NN__PROF_MODULE)
            snprintf(nm, sizeof nm, "%s#%d", name_of(r->name), r->instance);
        else
            snprintf(nm, sizeof nm, "%s", name_of(r->name));
        sb_printf(b, "  %-9s %-28.28s %8lld %10.3f %5.1f%% %10.3f %9.1f", kind_names[r->kind], nm,
                  (long long)r->calls, (double)r->self * 1e-6,
                  covered ? 100.0 * (double)r->self / (double)covered : 0.0,
                  (double)r->total * 1e-6, (double)r->total * 1e-3 / (double)r->calls);
        if (r->flops > 0 && r->total > 0) {
            double gf = r->flops / (double)r->total; /* FLOP per ns = GFLOP/s */
            sb_printf(b, " %8.3f %8.1f", r->flops * 1e-9, gf);
            if (peak > 0) sb_printf(b, " %5.1f%%", 100.0 * gf / (peak * threads));
            else sb_printf(b, " %6s", "-");
            sb_printf(b, " %7.1f\n", r->bytes / (double)r->total);
        } else {
            sb_printf(b, " %8s %8s %6s %7s\n", "-", "-", "-", "-");
        }
    }
    int64_t rest = 0;
    uint64_t rest_self = 0;
    for (int64_t i = 0, k = 0; i < s->nrows; i++) {
        if (s->rows[i].kind == NN__PROF_TASK) continue;
        if (k++ >= TOP_OPS) rest++, rest_self += s->rows[i].self;
    }
    if (rest)
        sb_printf(b, "  (%lld more rows: %.3f ms self)\n", (long long)rest,
                  (double)rest_self * 1e-6);
}

static void report_modules(sbuf *b, snap *s, uint64_t covered) {
    if (s->nrows > 1) qsort(s->rows, (size_t)s->nrows, sizeof *s->rows, by_first);
    bool any = false;
    for (int64_t i = 0; i < s->nrows; i++) {
        const row *r = &s->rows[i];
        if (r->kind != NN__PROF_MODULE) continue;
        if (!any)
            sb_printf(b, "\nPer-module totals (forward, in order of first call):\n  %-32s %8s %10s "
                         "%10s %7s %8s %8s\n",
                      "module", "calls", "total ms", "self ms", "total%", "GFLOP", "GFLOP/s");
        any = true;
        char nm[64];
        snprintf(nm, sizeof nm, "%s#%d", name_of(r->name), r->instance);
        sb_printf(b, "  %-32.32s %8lld %10.3f %10.3f %6.1f%%", nm, (long long)r->calls,
                  (double)r->total * 1e-6, (double)r->self * 1e-6,
                  covered ? 100.0 * (double)r->total / (double)covered : 0.0);
        if (r->flops > 0) sb_printf(b, " %8.3f %8.1f\n", r->flops * 1e-9, r->flops / (double)r->total);
        else sb_printf(b, " %8s %8s\n", "-", "-");
    }
}

static void report_memory(sbuf *b) {
    nn_memory_stats_t st;
    nn__mem_snapshot(&st);
    sb_printf(b, "\nMemory held by libnn (MiB, current / peak):\n");
    for (int c = 0; c < NN_MEM_CATEGORIES; c++)
        sb_printf(b, "  %-24s %9.2f / %9.2f\n", nn_memory_category_name(c),
                  (double)st.current[c] / 1048576.0, (double)st.peak[c] / 1048576.0);
    sb_printf(b, "  %-24s %9.2f / %9.2f\n", "total", (double)st.current_total / 1048576.0,
              (double)st.peak_total / 1048576.0);
}

/* Caller holds g_mu. */
static char *build_report(void) {
    snap s;
    if (!snapshot(&s)) return NULL;
    sbuf b = {0};
    const char *tier;
    const double peak = fma_peak(&tier);
    const int threads = nn__num_threads();
    uint64_t covered = 0, kind_self[NN__PROF_KINDS] = {0};
    for (int64_t i = 0; i < s.nrows; i++) {
        kind_self[s.rows[i].kind] += s.rows[i].self;
        if (s.rows[i].kind != NN__PROF_TASK) covered += s.rows[i].self;
    }
    sb_printf(&b, "libnn profile: %.3f s of session%s, %lld events on %d threads", (double)s.wall * 1e-9,
              atomic_load(&nn__prof_enabled) ? " (running)" : "", (long long)s.events,
              s.nthreads);
    if (s.dropped) sb_printf(&b, " (%lld events not kept in the trace)", (long long)s.dropped);
    sb_printf(&b, "\n");
    if (peak > 0)
        sb_printf(&b, "FMA peak: %.1f GFLOP/s per core (tier %s, measured), %d thread%s: %.1f GFLOP/s\n",
                  peak, tier, threads, threads == 1 ? "" : "s", peak * threads);
    else
        sb_printf(&b, "FMA peak: unknown (reference tier)\n");
    sb_printf(&b, "Self time by kind:");
    for (int k = 0; k < NN__PROF_KINDS; k++)
        if (kind_self[k] && k != NN__PROF_TASK)
            sb_printf(&b, " %s %.3f ms (%.1f%%);", kind_names[k], (double)kind_self[k] * 1e-6,
                      covered ? 100.0 * (double)kind_self[k] / (double)covered : 0.0);
    sb_printf(&b, "\n");
    report_ops(&b, &s, peak, threads, covered);
    report_modules(&b, &s, covered);
    sb_printf(&b, "\nThreads:\n  %-8s %-20s %10s %12s %9s\n", "tid", "name", "self ms", "in tasks ms",
              "events");
    for (int i = 0; i < s.nthreads; i++) {
        const tinfo *t = &s.threads[i];
        sb_printf(&b, "  %-8ld %-20.20s %10.3f %12.3f %9lld\n", t->tid, t->label,
                  (double)t->self * 1e-6, (double)t->task * 1e-6, (long long)t->events);
    }
    report_memory(&b);
    snap_free(&s);
    if (b.failed || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

char *nn_profiler_report(void) {
    pthread_mutex_lock(&g_mu);
    if (!g_started) {
        pthread_mutex_unlock(&g_mu);
        return NN__FAIL(NN_ERR_STATE, "nn_profiler_report: no profiler session was started");
    }
    char *r = build_report();
    pthread_mutex_unlock(&g_mu);
    if (!r) return NN__FAIL(NN_ERR_NOMEM, "nn_profiler_report: out of memory");
    /* Hand it out through the allocator hook so nn_free releases it. */
    char *out = nn__strdup(r);
    free(r);
    if (out) nn__call_ok();
    return out;
}

nn_status nn_profiler_write_report(int fd) {
    if (fd < 0) return nn__err(NN_ERR_INVALID, "nn_profiler_write_report: fd = %d", fd);
    char *r = nn_profiler_report();
    if (!r) return nn__forward("nn_profiler_write_report");
    size_t n = strlen(r), off = 0;
    while (off < n) {
        ssize_t k = write(fd, r + off, n - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = errno;
            nn__free(r);
            return nn__err(NN_ERR_IO, "nn_profiler_write_report: write to fd %d failed: %s", fd,
                           strerror(e));
        }
        off += (size_t)k;
    }
    nn__free(r);
    return nn__ok();
}

double nn_profiler_total_seconds(void) {
    pthread_mutex_lock(&g_mu);
    if (!g_started) {
        pthread_mutex_unlock(&g_mu);
        return NAN;
    }
    snap s;
    double r = NAN;
    if (snapshot(&s)) {
        uint64_t covered = 0;
        for (int64_t i = 0; i < s.nrows; i++)
            if (s.rows[i].kind != NN__PROF_TASK) covered += s.rows[i].self;
        r = (double)covered * 1e-9;
        snap_free(&s);
    }
    pthread_mutex_unlock(&g_mu);
    return r;
}

/* --------------------------------------------------------------- trace */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* Caller holds g_mu. */
static bool write_trace(FILE *f) {
    const uint64_t sess = atomic_load(&g_session);
    const long pid = (long)getpid();
    snap s;
    if (!snapshot(&s)) return false;
    fprintf(f, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"producer\":\"libnn %s\"},\n"
               "\"traceEvents\":[\n",
            nn_version());
    fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%ld,\"tid\":0,\"args\":{\"name\":"
               "\"libnn\"}}",
            pid);
    for (thr *t = g_threads; t; t = t->next) {
        pthread_mutex_lock(&t->mu);
        if (t->session != sess) {
            pthread_mutex_unlock(&t->mu);
            continue;
        }
        fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%ld,\"tid\":%ld,\"args\":{"
                   "\"name\":",
                pid, t->tid);
        json_str(f, t->label);
        fprintf(f, "}}");
        for (chunk *c = t->head; c; c = c->next)
            for (int i = 0; i < c->n; i++) {
                const event *e = &c->ev[i];
                const agg *a = &t->aggs[e->agg];
                char nm[96];
                int inst = 0;
                if (a->kind == NN__PROF_MODULE)
                    for (int64_t k = 0; k < s.nrows; k++)
                        if (s.rows[k].name == a->name && s.rows[k].kind == a->kind &&
                            s.rows[k].obj == a->obj)
                            inst = s.rows[k].instance;
                if (inst) snprintf(nm, sizeof nm, "%s#%d", name_of(a->name), inst);
                else snprintf(nm, sizeof nm, "%s", name_of(a->name));
                fprintf(f, ",\n{\"name\":");
                json_str(f, nm);
                fprintf(f,
                        ",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%ld,"
                        "\"tid\":%ld",
                        kind_names[a->kind], (double)(e->t0 - g_t_start) * 1e-3,
                        (double)e->dur * 1e-3, pid, t->tid);
                if (e->flops > 0 || e->bytes > 0)
                    fprintf(f, ",\"args\":{\"flops\":%.0f,\"bytes\":%.0f}", e->flops, e->bytes);
                fputc('}', f);
            }
        pthread_mutex_unlock(&t->mu);
    }
    for (int64_t i = 0; i < g_nsamples; i++) {
        const mem_sample *m = &g_samples[i];
        fprintf(f, ",\n{\"name\":\"memory MiB\",\"ph\":\"C\",\"ts\":%.3f,\"pid\":%ld,\"tid\":0,"
                   "\"args\":{",
                (double)(m->t - g_t_start) * 1e-3, pid);
        for (int c = 0; c < NN_MEM_CATEGORIES; c++)
            fprintf(f, "%s\"%s\":%.3f", c ? "," : "", nn_memory_category_name(c),
                    (double)m->cur[c] / 1048576.0);
        fprintf(f, "}}");
    }
    fprintf(f, "\n]}\n");
    snap_free(&s);
    return true;
}

nn_status nn_profiler_write_trace(const char *path) {
    const char *fn = "nn_profiler_write_trace";
    if (!path) return nn__err_null(fn, "path");
    pthread_mutex_lock(&g_mu);
    if (!g_started || atomic_load(&nn__prof_enabled)) {
        bool running = g_started;
        pthread_mutex_unlock(&g_mu);
        return nn__err(NN_ERR_STATE, "%s: %s", fn,
                       running ? "the session is still running (nn_profiler_stop it first)"
                               : "no profiler session was started");
    }
    size_t n = strlen(path);
    char *tmp = malloc(n + 32);
    if (!tmp) {
        pthread_mutex_unlock(&g_mu);
        return nn__err(NN_ERR_NOMEM, "%s: out of memory", fn);
    }
    snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int e = errno;
        pthread_mutex_unlock(&g_mu);
        free(tmp);
        return nn__err(NN_ERR_IO, "%s: cannot create '%s': %s", fn, path, strerror(e));
    }
    bool ok = write_trace(f);
    pthread_mutex_unlock(&g_mu);
    ok = !ferror(f) && ok;
    if (fclose(f) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        free(tmp);
        return nn__err(NN_ERR_IO, "%s: writing '%s' failed: %s", fn, path, strerror(e));
    }
    free(tmp);
    return nn__ok();
}

/* ------------------------------------------------------------- unload */

__attribute__((destructor)) static void prof_unload(void) {
    atomic_store(&nn__prof_enabled, 0);
    pthread_mutex_lock(&g_mu);
    for (thr *t = g_threads, *n; t; t = n) {
        n = t->next;
        thr_free(t);
    }
    g_threads = NULL;
    tl_thr = NULL;
    for (uint32_t i = 0; i < g_nnames; i++) free(g_name_pages[i / NAME_PAGE][i % NAME_PAGE]);
    for (size_t p = 0; p < sizeof g_name_pages / sizeof g_name_pages[0]; p++) {
        free(g_name_pages[p]);
        g_name_pages[p] = NULL;
    }
    g_nnames = 0;
    free(g_name_hash);
    g_name_hash = NULL;
    g_name_hcap = 0;
    free(g_samples);
    g_samples = NULL;
    g_nsamples = g_samples_cap = 0;
    if (g_key_ok) {
        pthread_key_delete(g_key);
        g_key_ok = false;
    }
    pthread_mutex_unlock(&g_mu);
}
