/* The hash index of index.h: SipHash-1-3 for strings, open addressing with
 * linear probing and backward-shift deletion. */
#include "core/core.h"
#include "core/index.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define MAX_ENTRIES ((int64_t)1 << 29) /* table of at most 2^30 slots */

/* ------------------------------------------------------------- hashing */

static uint64_t g_key[2];
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static uint64_t mix64(uint64_t z) { /* splitmix64's finaliser */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void key_init(void) {
    uint64_t k[2] = {0, 0};
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
        /* No entropy yet (early boot): time and addresses still vary. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] ^= mix64((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&ts);
        k[1] ^= mix64((uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&key_init);
    }
    g_key[0] = k[0];
    g_key[1] = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

/* SipHash-1-3 (one compression round, three finalisation rounds). */
static uint64_t siphash13(const uint8_t *p, size_t n) {
    uint64_t v0 = 0x736f6d6570736575ull ^ g_key[0], v1 = 0x646f72616e646f6dull ^ g_key[1];
    uint64_t v2 = 0x6c7967656e657261ull ^ g_key[0], v3 = 0x7465646279746573ull ^ g_key[1];
    uint64_t b = (uint64_t)n << 56;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t m = 0;
        for (int i = 7; i >= 0; i--) m = m << 8 | p[i]; /* little-endian on every host */
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < n; i++) b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint32_t nn__hash_str(const char *s) {
    pthread_once(&g_key_once, key_init);
    uint64_t h = siphash13((const uint8_t *)s, strlen(s));
    return (uint32_t)(h ^ (h >> 32));
}

uint32_t nn__hash_ptr(const void *p) {
    uint64_t h = mix64((uint64_t)(uintptr_t)p);
    return (uint32_t)(h ^ (h >> 32));
}

/* --------------------------------------------------------------- table */

static uint32_t slot_hash(uint64_t s) { return (uint32_t)(s >> 32); }
static int64_t slot_entry(uint64_t s) { return (int64_t)(uint32_t)s - 1; }

int64_t nn__index_find(const nn__index *x, uint32_t hash, nn__index_eq_fn eq, const void *ctx) {
    if (!x->cap) return -1;
    uint32_t mask = x->cap - 1;
    for (uint32_t i = hash & mask;; i = (i + 1) & mask) {
        uint64_t s = x->slots[i];
        if (!s) return -1;
        if (slot_hash(s) == hash && eq(ctx, slot_entry(s))) return slot_entry(s);
    }
}

static void put(uint64_t *slots, uint32_t cap, uint64_t s) {
    uint32_t mask = cap - 1;
    uint32_t i = slot_hash(s) & mask;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = s;
}

nn_status nn__index_reserve(nn__index *x, int64_t n) {
    if (n > MAX_ENTRIES)
        return nn__err(NN_ERR_LIMIT, "name index: %lld entries exceed the limit of %lld",
                       (long long)n, (long long)MAX_ENTRIES);
    uint32_t cap = x->cap ? x->cap : 32;
    while ((int64_t)cap < 2 * n) cap *= 2; /* at most half full */
    if (cap == x->cap) return NN_OK;
    uint64_t *slots = nn__calloc(cap, sizeof *slots);
    if (!slots) return NN_ERR_NOMEM;
    for (uint32_t i = 0; i < x->cap; i++)
        if (x->slots[i]) put(slots, cap, x->slots[i]);
    nn__free(x->slots);
    x->slots = slots;
    x->cap = cap;
    return NN_OK;
}

void nn__index_add(nn__index *x, uint32_t hash, int64_t entry) {
    put(x->slots, x->cap, (uint64_t)hash << 32 | (uint64_t)(entry + 1));
    x->n++;
}

void nn__index_remove(nn__index *x, uint32_t hash, int64_t entry) {
    if (!x->cap) return;
    uint32_t mask = x->cap - 1;
    uint64_t want = (uint64_t)hash << 32 | (uint64_t)(entry + 1);
    uint32_t i = hash & mask;
    while (x->slots[i] != want) {
        if (!x->slots[i]) return;
        i = (i + 1) & mask;
    }
    /* Backward shift: move later members of the probe run into the hole
     * when their home slot does not lie (cyclically) between hole and them. */
    for (uint32_t j = (i + 1) & mask; x->slots[j]; j = (j + 1) & mask) {
        uint32_t home = slot_hash(x->slots[j]) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            x->slots[i] = x->slots[j];
            i = j;
        }
    }
    x->slots[i] = 0;
    x->n--;
}

void nn__index_free(nn__index *x) {
    nn__free(x->slots);
    x->slots = NULL;
    x->cap = x->n = 0;
}
