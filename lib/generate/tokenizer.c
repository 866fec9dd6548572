/* The byte-level tokenizer: token i is byte i, so any text (any bytes, UTF-8
 * or not) round-trips and the vocabulary is 256. */
#include "nn_internal.h"

int64_t nn_byte_encode(const char *text, size_t len, int64_t *out, int64_t cap) {
    const char *fn = "nn_byte_encode";
    if (len > 0 && !nn__check_ptr(text, fn, "text")) return -1;
    if (cap < 0 || (cap > 0 && !out)) {
        nn__err(cap < 0 ? NN_ERR_INVALID : NN_ERR_NULL, "%s: cap = %lld with out %s", fn,
                (long long)cap, out ? "set" : "NULL");
        return -1;
    }
    if (len > (size_t)INT64_MAX) {
        nn__err(NN_ERR_OVERFLOW, "%s: len %zu does not fit a token count", fn, len);
        return -1;
    }
    const unsigned char *p = (const unsigned char *)text;
    int64_t n = (int64_t)len, k = n < cap ? n : cap;
    for (int64_t i = 0; i < k; i++) out[i] = p[i];
    nn__call_ok();
    return n;
}

int64_t nn_byte_decode(const int64_t *ids, int64_t n, char *out, int64_t cap) {
    const char *fn = "nn_byte_decode";
    if (n < 0) {
        nn__err(NN_ERR_INVALID, "%s: n = %lld, expected >= 0", fn, (long long)n);
        return -1;
    }
    if (n > 0 && !nn__check_ptr(ids, fn, "ids")) return -1;
    if (cap < 0 || (cap > 0 && !out)) {
        nn__err(cap < 0 ? NN_ERR_INVALID : NN_ERR_NULL, "%s: cap = %lld with out %s", fn,
                (long long)cap, out ? "set" : "NULL");
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] > 255) {
            nn__err(NN_ERR_RANGE, "%s: ids[%lld] = %lld is not a byte (0..255)", fn, (long long)i,
                    (long long)ids[i]);
            return -1;
        }
    int64_t k = n < cap ? n : cap;
    for (int64_t i = 0; i < k; i++) out[i] = (char)(unsigned char)ids[i];
    nn__call_ok();
    return n;
}
