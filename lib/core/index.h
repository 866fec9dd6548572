/* A hash index beside an array the caller owns: key -> entry number.
 *
 * Name lookups on the load path (module children, state-dict entries,
 * metadata keys) used to scan their arrays, which made loading a file of n
 * names O(n^2). The index keeps (hash, entry) pairs in an open-addressing
 * table at most half full, so a lookup or an insertion costs O(1) on
 * average. String hashes are SipHash-1-3 under a random per-process key:
 * names come from files, and a fixed hash would let a crafted file put
 * every name in one probe chain (quadratic again). The index never decides
 * an order: entries stay in the caller's array, so results are
 * deterministic whatever the key.
 *
 * Usage: the caller hashes its key (nn__hash_str / nn__hash_ptr), looks it
 * up with an equality callback over its own entries, reserves room before
 * changing its array (the only step that can fail), then adds. */
#ifndef NN_CORE_INDEX_H
#define NN_CORE_INDEX_H

#include "nn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nn__index {
    uint64_t *slots; /* (hash << 32) | (entry + 1); 0 = empty */
    uint32_t cap;    /* a power of two, or 0 before the first reserve */
    uint32_t n;      /* entries recorded */
} nn__index;

/* Arrays with at most this many names are scanned instead (no index). */
#define NN__INDEX_MIN 16

uint32_t nn__hash_str(const char *s);
uint32_t nn__hash_ptr(const void *p);

/* Whether entry of the caller's array holds the key being looked up. */
typedef bool (*nn__index_eq_fn)(const void *ctx, int64_t entry);

/* The entry whose hash is `hash` and for which eq(ctx, entry) holds, or -1. */
int64_t nn__index_find(const nn__index *x, uint32_t hash, nn__index_eq_fn eq, const void *ctx);
/* Make room for n entries in all (grows the table); NN_ERR_NOMEM or
 * NN_ERR_LIMIT (more than 2^31 entries) leave the index unchanged. */
nn_status nn__index_reserve(nn__index *x, int64_t n);
/* Record entry under hash. Cannot fail after nn__index_reserve(x, x->n + 1). */
void nn__index_add(nn__index *x, uint32_t hash, int64_t entry);
/* Forget entry (recorded under hash); no-op if absent. */
void nn__index_remove(nn__index *x, uint32_t hash, int64_t entry);
void nn__index_free(nn__index *x);

#endif
