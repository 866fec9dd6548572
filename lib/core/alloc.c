/* The allocator hook, aligned blocks and overflow-checked size arithmetic. */
#include "nn_internal.h"

#include <stdlib.h>
#include <string.h>

static void *default_malloc(size_t n, void *u) { (void)u; return malloc(n); }
static void *default_realloc(void *p, size_t n, void *u) { (void)u; return realloc(p, n); }
static void default_free(void *p, void *u) { (void)u; free(p); }

static nn_malloc_fn g_malloc = default_malloc;
static nn_realloc_fn g_realloc = default_realloc;
static nn_free_fn g_free = default_free;
static void *g_user = NULL;
static _Atomic int64_t g_live = 0;

nn_status nn_set_allocator(nn_malloc_fn malloc_fn, nn_realloc_fn realloc_fn, nn_free_fn free_fn,
                           void *user) {
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
    g_live++;
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
    g_live--;
    g_free(p, g_user);
}

void nn_free(void *ptr) { nn__free(ptr); }

int64_t nn__live_allocations(void) { return g_live; }

char *nn__strdup(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = nn__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Aligned blocks: over-allocate, store the raw pointer just before the
 * aligned address. */
#define NN__ALIGN 64
void *nn__aligned_alloc(size_t size) {
    size_t total;
    if (!nn__size_add(size, NN__ALIGN + sizeof(void *), &total)) {
        nn__err(NN_ERR_OVERFLOW, "aligned allocation of %zu bytes overflows", size);
        return NULL;
    }
    unsigned char *raw = nn__malloc(total);
    if (!raw) return NULL;
    uintptr_t base = (uintptr_t)(raw + sizeof(void *));
    uintptr_t aligned = (base + NN__ALIGN - 1) & ~(uintptr_t)(NN__ALIGN - 1);
    ((void **)aligned)[-1] = raw;
    return (void *)aligned;
}

void nn__aligned_free(void *p) {
    if (!p) return;
    nn__free(((void **)p)[-1]);
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
