/* The allocator hook, aligned blocks, memory accounting by category and
 * overflow-checked size arithmetic. */
#include "core/core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *default_malloc(size_t n, void *u) {
    (void)u;
    return malloc(n);
}
static void *default_realloc(void *p, size_t n, void *u) {
    (void)u;
    return realloc(p, n);
}
static void default_free(void *p, void *u) {
    (void)u;
    free(p);
}

static nn_malloc_fn g_malloc = default_malloc;
static nn_realloc_fn g_realloc = default_realloc;
static nn_free_fn g_free = default_free;
static void *g_user = NULL;

static void cache_flush(void);

nn_status nn_set_allocator(nn_malloc_fn malloc_fn, nn_realloc_fn realloc_fn, nn_free_fn free_fn,
                           void *user) {
    /* Cached blocks belong to the allocator that made them. */
    cache_flush();
    if (!malloc_fn && !realloc_fn && !free_fn) {
        g_malloc = default_malloc;
        g_realloc = default_realloc;
        g_free = default_free;
        g_user = NULL;
        return NN_OK;
    }
    if (!malloc_fn || !realloc_fn || !free_fn)
        return nn__err(NN_ERR_NULL, "nn_set_allocator: give all three functions or none");
    g_malloc = malloc_fn;
    g_realloc = realloc_fn;
    g_free = free_fn;
    g_user = user;
    return NN_OK;
}

/* ---------------------------------------------------- memory accounting
 *
 * Every block libnn allocates carries a small header with its size and
 * category, so nn_memory_stats can report current and peak bytes by
 * category at the cost of a few relaxed atomics per allocation. A block's
 * category is this thread's override (nn__mem_push) when one is set, else
 * "activations" for aligned blocks (tensor data, scratch) and "other" for
 * small ones; nn__mem_retag moves an aligned block to another category
 * (a tensor that becomes a parameter, a gradient, optimizer state). */

static _Atomic int64_t g_mem_cur[NN_MEM_CATEGORY_SLOTS], g_mem_peak[NN_MEM_CATEGORY_SLOTS];
static _Atomic int64_t g_mem_total, g_mem_total_peak;
static _Thread_local int tl_mem_cat = -1; /* -1: no override */

static void peak_raise(_Atomic int64_t *peak, int64_t v) {
    int64_t p = atomic_load_explicit(peak, memory_order_relaxed);
    while (v > p &&
           !atomic_compare_exchange_weak_explicit(peak, &p, v, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

void nn__mem_account(int cat, int64_t delta) {
    if (cat < 0 || cat >= NN_MEM_CATEGORIES || delta == 0) return;
    int64_t c = atomic_fetch_add_explicit(&g_mem_cur[cat], delta, memory_order_relaxed) + delta;
    int64_t t = atomic_fetch_add_explicit(&g_mem_total, delta, memory_order_relaxed) + delta;
    if (delta > 0) {
        peak_raise(&g_mem_peak[cat], c);
        peak_raise(&g_mem_total_peak, t);
    }
}

/* Move bytes between categories without touching the total (a block that
 * changes hands, a block entering or leaving the block cache). */
static void mem_move(int from, int to, int64_t bytes) {
    if (from == to || bytes == 0) return;
    atomic_fetch_sub_explicit(&g_mem_cur[from], bytes, memory_order_relaxed);
    int64_t c = atomic_fetch_add_explicit(&g_mem_cur[to], bytes, memory_order_relaxed) + bytes;
    peak_raise(&g_mem_peak[to], c);
}

int nn__mem_push(int cat) {
    int prev = tl_mem_cat;
    tl_mem_cat = cat;
    return prev;
}

void nn__mem_pop(int *prev) { tl_mem_cat = *prev; }

static int mem_cat(int fallback) { return tl_mem_cat >= 0 ? tl_mem_cat : fallback; }

void nn__mem_snapshot(nn_memory_stats_t *s) {
    memset(s, 0, sizeof *s);
    s->size = (uint32_t)sizeof *s;
    s->ncategories = NN_MEM_CATEGORIES;
    for (int c = 0; c < NN_MEM_CATEGORIES; c++) {
        int64_t v = atomic_load_explicit(&g_mem_cur[c], memory_order_relaxed);
        int64_t p = atomic_load_explicit(&g_mem_peak[c], memory_order_relaxed);
        s->current[c] = v > 0 ? (uint64_t)v : 0;
        s->peak[c] = p > 0 ? (uint64_t)p : 0;
    }
    int64_t t = atomic_load_explicit(&g_mem_total, memory_order_relaxed);
    int64_t tp = atomic_load_explicit(&g_mem_total_peak, memory_order_relaxed);
    s->current_total = t > 0 ? (uint64_t)t : 0;
    s->peak_total = tp > 0 ? (uint64_t)tp : 0;
}

nn_status nn_memory_stats(nn_memory_stats_t *out) {
    if (!out) return nn__err(NN_ERR_NULL, "nn_memory_stats: argument 'out' is NULL");
    const size_t head = offsetof(nn_memory_stats_t, current_total);
    if (out->size < head)
        return nn__err(NN_ERR_INVALID,
                       "nn_memory_stats: out->size = %u, expected sizeof(nn_memory_stats_t) = %zu "
                       "(set it before the call)",
                       (unsigned)out->size, sizeof(nn_memory_stats_t));
    nn_memory_stats_t s;
    nn__mem_snapshot(&s);
    /* Copy what the caller's struct has room for: an older caller with a
     * smaller struct gets its prefix. */
    const uint32_t n = out->size < s.size ? out->size : s.size;
    s.size = n;
    memcpy(out, &s, n);
    return nn__ok();
}

nn_status nn_memory_reset_peak(void) {
    for (int c = 0; c < NN_MEM_CATEGORIES; c++)
        atomic_store_explicit(&g_mem_peak[c],
                              atomic_load_explicit(&g_mem_cur[c], memory_order_relaxed),
                              memory_order_relaxed);
    atomic_store_explicit(&g_mem_total_peak, atomic_load_explicit(&g_mem_total, memory_order_relaxed),
                          memory_order_relaxed);
    return nn__ok();
}

const char *nn_memory_category_name(int category) {
    static const char *const names[NN_MEM_CATEGORIES] = {
        "parameters", "gradients", "optimizer state", "activations and graph",
        "block cache", "data loader", "other"};
    return category >= 0 && category < NN_MEM_CATEGORIES ? names[category] : "unknown";
}

/* Small blocks: a 16-byte header (size, category) before the caller's
 * pointer keeps malloc's 16-byte alignment. */
typedef struct small_hdr {
    size_t size;
    int64_t cat;
} small_hdr;
_Static_assert(sizeof(small_hdr) == 16, "small block header keeps 16-byte alignment");

static void *raw_malloc(size_t size) {
    void *p = g_malloc(size, g_user);
    if (!p) nn__err(NN_ERR_NOMEM, "out of memory allocating %zu bytes", size);
    return p;
}

void *nn__malloc(size_t size) {
    if (size == 0) size = 1;
    size_t total;
    if (!nn__size_add(size, sizeof(small_hdr), &total)) {
        nn__err(NN_ERR_NOMEM, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    small_hdr *h = raw_malloc(total);
    if (!h) {
        nn__err(NN_ERR_NOMEM, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    h->size = size;
    h->cat = mem_cat(NN_MEM_OTHER);
    nn__mem_account((int)h->cat, (int64_t)size);
    return h + 1;
}

void *nn__calloc(size_t n, size_t size) {
    size_t total;
    if (!nn__size_mul(n, size, &total)) {
        nn__err(NN_ERR_OVERFLOW, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = nn__malloc(total);
    if (p) memset(p, 0, total == 0 ? 1 : total);
    return p;
}

void *nn__realloc(void *p, size_t size) {
    if (!p) return nn__malloc(size);
    if (size == 0) size = 1;
    small_hdr *h = (small_hdr *)p - 1;
    size_t total;
    if (!nn__size_add(size, sizeof(small_hdr), &total)) {
        nn__err(NN_ERR_NOMEM, "out of memory reallocating %zu bytes", size);
        return NULL;
    }
    const size_t old = h->size;
    const int cat = (int)h->cat;
    small_hdr *q = g_realloc(h, total, g_user);
    if (!q) {
        nn__err(NN_ERR_NOMEM, "out of memory reallocating %zu bytes", size);
        return NULL;
    }
    q->size = size;
    nn__mem_account(cat, (int64_t)size - (int64_t)old);
    return q + 1;
}

void nn__free(void *p) {
    if (!p) return;
    small_hdr *h = (small_hdr *)p - 1;
    nn__mem_account((int)h->cat, -(int64_t)h->size);
    g_free(h, g_user);
}

void nn_free(void *ptr) { nn__free(ptr); }


char *nn__strdup(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = nn__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Aligned blocks: over-allocate, store the raw pointer and the block's size
 * class just before the aligned address.
 *
 * Large blocks (tensor data, conv column buffers) are recycled through a
 * small bounded cache when the default allocator is in use: a training step
 * frees and re-allocates the same large sizes every step, and handing them
 * back to glibc each time made it unmap and trim the heap, so that about
 * 40% of a CNN training step was spent in page faults (measured with the
 * benchmark: 630 -> ~1280 img/s on one thread with blocks kept). With a
 * user allocator installed nothing is cached: every block goes straight
 * back to the hook, so its owner sees exact counts. */
#define NN__ALIGN 64
#define NN__HDR (4 * sizeof(void *)) /* raw pointer, size class, size, category */
#define NN__CACHE_MIN ((size_t)64 << 10) /* only blocks of 64 KiB or more */
#define NN__CACHE_SLOTS 128
#define NN__CACHE_MAX ((size_t)64 << 20) /* at least 64 MiB may be kept */

/* The most the cache may hold: 64 MiB, or as much as libnn holds in use
 * when that is more. A large model's step frees and re-allocates blocks of
 * hundreds of MiB (GPT-2 124M: the 154 MiB gradients of the tied
 * embedding / LM head, the 51 MiB logits and their gradient); with a fixed
 * 64 MiB cap each went back to the kernel and came back as fresh pages:
 * measured on that step, about a third of its CPU time was page faults and
 * the clearing of fresh pages (with half of what is in use, blocks freed at
 * zero_grad still went: the cache holds the step's activations and its
 * gradients). Cached blocks were resident while in use, so keeping them
 * does not raise the peak of a loop that re-allocates the same sizes. */
static size_t cache_cap(size_t cached) {
    int64_t total = atomic_load_explicit(&g_mem_total, memory_order_relaxed);
    size_t in_use = total > (int64_t)cached ? (size_t)total - cached : 0;
    return in_use > NN__CACHE_MAX ? in_use : NN__CACHE_MAX;
}

/* A cached block is accounted under "block cache" with the size it last
 * held (the bytes its user touched, so roughly what is resident). */
static struct {
    void *raw[NN__CACHE_SLOTS];
    size_t cls[NN__CACHE_SLOTS];
    size_t used[NN__CACHE_SLOTS];
    int n;
    size_t bytes;
} g_cache;
static pthread_mutex_t g_cache_mu = PTHREAD_MUTEX_INITIALIZER;

/* Round large sizes up to one of 4 classes per power of two (<= 19% waste)
 * so that blocks of nearly the same size can be reused. */
static bool size_class(size_t n, size_t *cls) {
    if (n < NN__CACHE_MIN) {
        *cls = n;
        return true;
    }
    int b = 63 - __builtin_clzll((unsigned long long)n);
    size_t step = (size_t)1 << (b - 2);
    size_t r;
    if (!nn__size_add(n, step - 1, &r)) return false;
    *cls = r & ~(step - 1);
    return true;
}

static bool cache_enabled(void) { return g_malloc == default_malloc; }

static void *cache_take(size_t cls, size_t *used) {
    void *raw = NULL;
    pthread_mutex_lock(&g_cache_mu);
    for (int i = g_cache.n - 1; i >= 0; i--) {
        if (g_cache.cls[i] != cls) continue;
        raw = g_cache.raw[i];
        *used = g_cache.used[i];
        g_cache.bytes -= cls;
        g_cache.n--;
        g_cache.raw[i] = g_cache.raw[g_cache.n];
        g_cache.cls[i] = g_cache.cls[g_cache.n];
        g_cache.used[i] = g_cache.used[g_cache.n];
        break;
    }
    pthread_mutex_unlock(&g_cache_mu);
    return raw;
}

static bool cache_put(void *raw, size_t cls, size_t used, int cat) {
    bool kept = false;
    pthread_mutex_lock(&g_cache_mu);
    /* What libnn holds in use shrank (a model freed): the oldest blocks go
     * back until the cache fits its cap again. */
    size_t cap = cache_cap(g_cache.bytes);
    while (g_cache.n > 0 && g_cache.bytes > cap) {
        nn__mem_account(NN_MEM_BLOCK_CACHE, -(int64_t)g_cache.used[0]);
        g_free(g_cache.raw[0], g_user);
        g_cache.bytes -= g_cache.cls[0];
        g_cache.n--;
        g_cache.raw[0] = g_cache.raw[g_cache.n];
        g_cache.cls[0] = g_cache.cls[g_cache.n];
        g_cache.used[0] = g_cache.used[g_cache.n];
        cap = cache_cap(g_cache.bytes);
    }
    if (g_cache.n < NN__CACHE_SLOTS && g_cache.bytes + cls <= cap) {
        mem_move(cat, NN_MEM_BLOCK_CACHE, (int64_t)used); /* under the lock: never negative */
        g_cache.raw[g_cache.n] = raw;
        g_cache.used[g_cache.n] = used;
        g_cache.cls[g_cache.n++] = cls;
        g_cache.bytes += cls;
        kept = true;
    }
    pthread_mutex_unlock(&g_cache_mu);
    return kept;
}

static void cache_flush(void) {
    pthread_mutex_lock(&g_cache_mu);
    for (int i = 0; i < g_cache.n; i++) {
        nn__mem_account(NN_MEM_BLOCK_CACHE, -(int64_t)g_cache.used[i]);
        g_free(g_cache.raw[i], g_user);
    }
    g_cache.n = 0;
    g_cache.bytes = 0;
    pthread_mutex_unlock(&g_cache_mu);
}

__attribute__((destructor)) static void cache_release_at_exit(void) { cache_flush(); }

void *nn__aligned_alloc(size_t size) {
    size_t total, cls, used = 0;
    if (!nn__size_add(size, NN__ALIGN + NN__HDR, &total) || !size_class(total, &cls)) {
        nn__err(NN_ERR_OVERFLOW, "aligned allocation of %zu bytes overflows", size);
        return NULL;
    }
    const int cat = mem_cat(NN_MEM_ACTIVATIONS);
    unsigned char *raw = cls >= NN__CACHE_MIN && cache_enabled() ? cache_take(cls, &used) : NULL;
    if (raw) {
        /* From the cache: its bytes change category. A block counts the
         * most it ever held (those pages stay resident), so the total grows
         * only by what this use touches beyond its earlier ones. */
        mem_move(NN_MEM_BLOCK_CACHE, cat, (int64_t)used);
        if (size > used) {
            nn__mem_account(cat, (int64_t)(size - used));
            used = size;
        }
    } else {
        used = size;
        raw = raw_malloc(cls);
        if (!raw) return NULL;
        nn__mem_account(cat, (int64_t)size);
    }
    uintptr_t base = (uintptr_t)(raw + NN__HDR);
    uintptr_t aligned = (base + NN__ALIGN - 1) & ~(uintptr_t)(NN__ALIGN - 1);
    ((void **)aligned)[-1] = raw;
    ((size_t *)aligned)[-2] = cls;
    ((size_t *)aligned)[-3] = used;
    ((size_t *)aligned)[-4] = (size_t)cat;
    return (void *)aligned;
}

void nn__aligned_free(void *p) {
    if (!p) return;
    void *raw = ((void **)p)[-1];
    size_t cls = ((size_t *)p)[-2];
    size_t size = ((size_t *)p)[-3]; /* the bytes accounted for it */
    int cat = (int)((size_t *)p)[-4];
    if (cls >= NN__CACHE_MIN && cache_enabled() && cache_put(raw, cls, size, cat)) return;
    nn__mem_account(cat, -(int64_t)size);
    g_free(raw, g_user);
}

void nn__mem_retag(void *p, int cat) {
    if (!p || cat < 0 || cat >= NN_MEM_CATEGORIES) return;
    size_t *slot = &((size_t *)p)[-4];
    int from = (int)*slot;
    if (from == cat) return;
    *slot = (size_t)cat;
    mem_move(from, cat, (int64_t)((size_t *)p)[-3]);
}

bool nn__size_mul(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

bool nn__size_add(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_add_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}
