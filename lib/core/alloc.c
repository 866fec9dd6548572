/* The allocator hook, aligned blocks and overflow-checked size arithmetic. */
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

void *nn__malloc(size_t size) {
    if (size == 0) size = 1;
    void *p = g_malloc(size, g_user);
    if (!p) {
        nn__err(NN_ERR_NOMEM, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    return p;
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
    void *q = g_realloc(p, size, g_user);
    if (!q) nn__err(NN_ERR_NOMEM, "out of memory reallocating %zu bytes", size);
    return q;
}

void nn__free(void *p) {
    if (!p) return;
    g_free(p, g_user);
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
#define NN__HDR (2 * sizeof(void *))
#define NN__CACHE_MIN ((size_t)64 << 10) /* only blocks of 64 KiB or more */
#define NN__CACHE_SLOTS 32
#define NN__CACHE_MAX ((size_t)64 << 20) /* at most 64 MiB kept */

static struct {
    void *raw[NN__CACHE_SLOTS];
    size_t cls[NN__CACHE_SLOTS];
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

static void *cache_take(size_t cls) {
    void *raw = NULL;
    pthread_mutex_lock(&g_cache_mu);
    for (int i = g_cache.n - 1; i >= 0; i--) {
        if (g_cache.cls[i] != cls) continue;
        raw = g_cache.raw[i];
        g_cache.bytes -= cls;
        g_cache.n--;
        g_cache.raw[i] = g_cache.raw[g_cache.n];
        g_cache.cls[i] = g_cache.cls[g_cache.n];
        break;
    }
    pthread_mutex_unlock(&g_cache_mu);
    return raw;
}

static bool cache_put(void *raw, size_t cls) {
    bool kept = false;
    pthread_mutex_lock(&g_cache_mu);
    if (g_cache.n < NN__CACHE_SLOTS && g_cache.bytes + cls <= NN__CACHE_MAX) {
        g_cache.raw[g_cache.n] = raw;
        g_cache.cls[g_cache.n++] = cls;
        g_cache.bytes += cls;
        kept = true;
    }
    pthread_mutex_unlock(&g_cache_mu);
    return kept;
}

static void cache_flush(void) {
    pthread_mutex_lock(&g_cache_mu);
    for (int i = 0; i < g_cache.n; i++) nn__free(g_cache.raw[i]);
    g_cache.n = 0;
    g_cache.bytes = 0;
    pthread_mutex_unlock(&g_cache_mu);
}

__attribute__((destructor)) static void cache_release_at_exit(void) { cache_flush(); }

void *nn__aligned_alloc(size_t size) {
    size_t total, cls;
    if (!nn__size_add(size, NN__ALIGN + NN__HDR, &total) || !size_class(total, &cls)) {
        nn__err(NN_ERR_OVERFLOW, "aligned allocation of %zu bytes overflows", size);
        return NULL;
    }
    unsigned char *raw = cls >= NN__CACHE_MIN && cache_enabled() ? cache_take(cls) : NULL;
    if (!raw) raw = nn__malloc(cls);
    if (!raw) return NULL;
    uintptr_t base = (uintptr_t)(raw + NN__HDR);
    uintptr_t aligned = (base + NN__ALIGN - 1) & ~(uintptr_t)(NN__ALIGN - 1);
    ((void **)aligned)[-1] = raw;
    ((size_t *)aligned)[-2] = cls;
    return (void *)aligned;
}

void nn__aligned_free(void *p) {
    if (!p) return;
    void *raw = ((void **)p)[-1];
    size_t cls = ((size_t *)p)[-2];
    if (cls >= NN__CACHE_MIN && cache_enabled() && cache_put(raw, cls)) return;
    nn__free(raw);
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
