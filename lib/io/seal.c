/* Signed and encrypted model files (FORMAT.md 10): the envelopes that wrap
 * an ordinary file, the keys in nn_io_options, and the filter through
 * which load.c's one-pass reader sees the plain file.
 *
 * Saving: the finished file (in memory, as every save builds it) is signed
 * in place (Ed25519ph over every byte before the signature), then encrypted
 * in place (XChaCha20-Poly1305 secretstream, 64 KiB chunks), then written
 * by the usual path: the atomic save is unchanged.
 *
 * Loading: a chain of pull functions, raw input -> decrypt -> verify ->
 * load.c's window, each asking the one below for bytes. Decrypted bytes are
 * authenticated chunk by chunk before the reader sees them; the signature
 * is checked at the end of the input, so the reader may have parsed bytes
 * that a failed signature then condemns: nn__ld_close_sealed makes that
 * failure the call's result, and every loader frees what it built on a
 * failed result, so nothing of such a file is ever returned or applied.
 * Every libsodium state and key copy is wiped before the call returns. */
#include "io_internal.h"
#include "io/nn_io_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if NN_HAVE_SODIUM
#include <sodium.h>
#endif

#define SIGNED_MAGIC "\x89NNS\r\n\x1a\n"
#define ENCRYPTED_MAGIC "\x89NNE\r\n\x1a\n"
#define SIGNED_HEADER 48
#define SIGNED_TRAILER 72 /* "NSIG", u32 reserved, 64-byte signature */
#define ENCRYPTED_HEADER 72
#define ENCRYPTED_AD 48 /* header bytes authenticated with the first chunk */
#define STREAM_HEADER_AT 48
#define CHUNK_DEFAULT ((uint32_t)64 << 10)
#define CHUNK_MIN ((uint32_t)1 << 10)
#define CHUNK_MAX ((uint32_t)1 << 20)
#define SEAL_MAJOR 1
#define KEY_ID_BYTES 16
#define KEY_ID_CONTEXT "libnn encryption key id v1"

static void wipe(void *p, size_t n) {
#if NN_HAVE_SODIUM
    sodium_memzero(p, n);
#else
    volatile uint8_t *v = p;
    while (n--) *v++ = 0;
#endif
}

void nn__io_options_wipe(nn_io_options *o) {
    wipe(o->sign_key, sizeof o->sign_key);
    wipe(o->verify_key, sizeof o->verify_key);
    wipe(o->encrypt_key, sizeof o->encrypt_key);
    o->has_sign_key = o->has_verify_key = o->has_encrypt_key = false;
}

static bool opts_check(const nn_io_options *o, const char *fn) {
    return nn__handle_check(o, NN__KIND_IO_OPTIONS, fn, "opts");
}

/* key: NULL with len 0 (clear) or exactly want bytes. */
static nn_status key_args(const uint8_t *key, size_t len, size_t want, const char *fn,
                          const char *what) {
    if (!key && len == 0) return NN_OK;
    if (!key) return nn__err(NN_ERR_NULL, "%s: argument '%s' is NULL with length %zu", fn, what, len);
    if (len != want)
        return nn__err(NN_ERR_INVALID, "%s: '%s' has %zu bytes, expected %zu", fn, what, len, want);
    return NN_OK;
}

#if !NN_HAVE_SODIUM

static nn_status no_sodium(const char *fn) {
    return nn__err(NN_ERR_UNSUPPORTED,
                   "%s: this build of libnn has no libsodium (build option 'sodium')", fn);
}

nn_status nn_sign_keypair(const uint8_t *seed, size_t seed_len, uint8_t *public_key,
                          size_t public_len, uint8_t *secret_key, size_t secret_len) {
    (void)seed, (void)seed_len, (void)public_key, (void)public_len, (void)secret_key,
        (void)secret_len;
    return no_sodium("nn_sign_keypair");
}
nn_status nn_encrypt_keygen(uint8_t *key, size_t key_len) {
    (void)key, (void)key_len;
    return no_sodium("nn_encrypt_keygen");
}
nn_status nn_io_options_set_sign_key(nn_io_options *opts, const uint8_t *k, size_t len) {
    (void)opts, (void)k, (void)len;
    return no_sodium("nn_io_options_set_sign_key");
}
nn_status nn_io_options_set_verify_key(nn_io_options *opts, const uint8_t *k, size_t len) {
    (void)opts, (void)k, (void)len;
    return no_sodium("nn_io_options_set_verify_key");
}
nn_status nn_io_options_set_encrypt_key(nn_io_options *opts, const uint8_t *k, size_t len) {
    (void)opts, (void)k, (void)len;
    return no_sodium("nn_io_options_set_encrypt_key");
}

nn_status nn__seal(const nn_io_options *o, uint8_t **data, size_t *size, const char *fn) {
    (void)data, (void)size;
    if (o->require_signature) return no_sodium(fn);
    return NN_OK; /* no key can have been set */
}

nn_status nn__ld_open_sealed(nn__ld *ld, nn__unseal **u, const nn__io_src *src,
                             const nn_io_options *o, const char *fn) {
    *u = NULL;
    const uint8_t *head = NULL;
    uint8_t buf[8];
    if (src->data && src->size >= 8) {
        head = src->data;
    } else if (src->path) {
        int fd = open(src->path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && read(fd, buf, 8) == 8) head = buf;
        if (fd >= 0) close(fd);
    }
    if (o->require_signature ||
        (head && (!memcmp(head, SIGNED_MAGIC, 8) || !memcmp(head, ENCRYPTED_MAGIC, 8)))) {
        nn__ld_init_failed(ld, fn);
        return no_sodium(fn);
    }
    return nn__ld_open(ld, src, o->max_bytes, fn);
}

nn_status nn__ld_close_sealed(nn__ld *ld, nn__unseal *u, nn_status st) {
    (void)u;
    return nn__ld_close(ld, st);
}

#else /* NN_HAVE_SODIUM */

static nn_status sodium_ready(const char *fn) {
    if (sodium_init() < 0)
        return nn__err(NN_ERR_IO, "%s: libsodium failed to initialise", fn);
    return NN_OK;
}

/* ------------------------------------------------------------------ keys */

nn_status nn_sign_keypair(const uint8_t *seed, size_t seed_len, uint8_t *public_key,
                          size_t public_len, uint8_t *secret_key, size_t secret_len) {
    const char *fn = "nn_sign_keypair";
    if (!nn__check_ptr(public_key, fn, "public_key") || !nn__check_ptr(secret_key, fn, "secret_key"))
        return nn_last_status();
    nn_status st = NN_OK;
    if (seed) st = key_args(seed, seed_len, crypto_sign_SEEDBYTES, fn, "seed");
    else if (seed_len)
        st = nn__err(NN_ERR_INVALID, "%s: seed is NULL but seed_len is %zu", fn, seed_len);
    if (!st) st = key_args(public_key, public_len, crypto_sign_PUBLICKEYBYTES, fn, "public_key");
    if (!st) st = key_args(secret_key, secret_len, crypto_sign_SECRETKEYBYTES, fn, "secret_key");
    if (!st) st = sodium_ready(fn);
    if (st) return st;
    int rc = seed ? crypto_sign_seed_keypair(public_key, secret_key, seed)
                  : crypto_sign_keypair(public_key, secret_key);
    if (rc != 0) return nn__err(NN_ERR_IO, "%s: key generation failed", fn);
    return nn__ok();
}

nn_status nn_encrypt_keygen(uint8_t *key, size_t key_len) {
    const char *fn = "nn_encrypt_keygen";
    if (!nn__check_ptr(key, fn, "key")) return nn_last_status();
    nn_status st = key_args(key, key_len, crypto_secretstream_xchacha20poly1305_KEYBYTES, fn, "key");
    if (!st) st = sodium_ready(fn);
    if (st) return st;
    crypto_secretstream_xchacha20poly1305_keygen(key);
    return nn__ok();
}

nn_status nn_io_options_set_sign_key(nn_io_options *opts, const uint8_t *secret_key, size_t len) {
    const char *fn = "nn_io_options_set_sign_key";
    if (!opts_check(opts, fn)) return nn_last_status();
    nn_status st = key_args(secret_key, len, crypto_sign_SECRETKEYBYTES, fn, "secret_key");
    if (!st) st = sodium_ready(fn);
    if (st) return st;
    wipe(opts->sign_key, sizeof opts->sign_key);
    opts->has_sign_key = false;
    if (!secret_key) return nn__ok();
    /* An Ed25519 secret key is seed || public key: check the halves agree,
     * so that a damaged key fails here and not as unverifiable files. */
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    bool ok = crypto_sign_seed_keypair(pk, sk, secret_key) == 0 &&
              sodium_memcmp(sk, secret_key, sizeof sk) == 0;
    wipe(sk, sizeof sk);
    if (!ok)
        return nn__err(NN_ERR_INVALID,
                       "%s: not an Ed25519 secret key (its public half does not match its seed)",
                       fn);
    memcpy(opts->sign_key, secret_key, sizeof opts->sign_key);
    opts->has_sign_key = true;
    return nn__ok();
}

nn_status nn_io_options_set_verify_key(nn_io_options *opts, const uint8_t *public_key, size_t len) {
    const char *fn = "nn_io_options_set_verify_key";
    if (!opts_check(opts, fn)) return nn_last_status();
    nn_status st = key_args(public_key, len, crypto_sign_PUBLICKEYBYTES, fn, "public_key");
    if (st) return st;
    wipe(opts->verify_key, sizeof opts->verify_key);
    opts->has_verify_key = public_key != NULL;
    if (public_key) memcpy(opts->verify_key, public_key, sizeof opts->verify_key);
    return nn__ok();
}

nn_status nn_io_options_set_encrypt_key(nn_io_options *opts, const uint8_t *key, size_t len) {
    const char *fn = "nn_io_options_set_encrypt_key";
    if (!opts_check(opts, fn)) return nn_last_status();
    nn_status st = key_args(key, len, crypto_secretstream_xchacha20poly1305_KEYBYTES, fn, "key");
    if (!st) st = sodium_ready(fn);
    if (st) return st;
    wipe(opts->encrypt_key, sizeof opts->encrypt_key);
    opts->has_encrypt_key = key != NULL;
    if (key) memcpy(opts->encrypt_key, key, sizeof opts->encrypt_key);
    return nn__ok();
}

/* The key id stored in an encrypted file: BLAKE2b-128 keyed with the key,
 * of a fixed context string. It tells a wrong key from altered data and
 * reveals nothing of the key. */
static void key_id(const uint8_t key[32], uint8_t id[KEY_ID_BYTES]) {
    crypto_generichash(id, KEY_ID_BYTES, (const uint8_t *)KEY_ID_CONTEXT,
                       sizeof KEY_ID_CONTEXT - 1, key, 32);
}

/* ---------------------------------------------------------------- saving */

/* data (size bytes) -> header | data | "NSIG" 0 | signature, in place. */
static nn_status sign_file(const nn_io_options *o, uint8_t **data, size_t *size, const char *fn) {
    size_t n = *size, total;
    if (!nn__size_add(n, SIGNED_HEADER + SIGNED_TRAILER, &total))
        return nn__err(NN_ERR_OVERFLOW, "%s: a signed file of %zu bytes is too large", fn, n);
    uint8_t *p = nn__realloc(*data, total);
    if (!p) return NN_ERR_NOMEM;
    *data = p;
    memmove(p + SIGNED_HEADER, p, n);
    memset(p, 0, SIGNED_HEADER);
    memcpy(p, SIGNED_MAGIC, 8);
    p[8] = SEAL_MAJOR; /* major u16, minor u16 = 0, flags u32 = 0 */
    memcpy(p + 16, o->sign_key + 32, 32); /* the signer's public key */
    uint8_t *t = p + SIGNED_HEADER + n;
    memcpy(t, "NSIG", 4);
    memset(t + 4, 0, 4);
    crypto_sign_state s;
    crypto_sign_init(&s);
    crypto_sign_update(&s, p, SIGNED_HEADER + n + 8);
    int rc = crypto_sign_final_create(&s, t + 8, NULL, o->sign_key);
    wipe(&s, sizeof s);
    if (rc != 0) return nn__err(NN_ERR_IO, "%s: signing failed", fn);
    *size = total;
    return NN_OK;
}

/* data (size bytes) -> header | chunks, in place: the plain bytes move to
 * the end of the enlarged block, and chunk i is encrypted from there to its
 * place, which never reaches the plain bytes not yet read (chunk i ends at
 * H + (i+1)(C+17) <= H + 17k + (i+1)C, where chunk i+1 starts; H = 72). */
static nn_status encrypt_file(const nn_io_options *o, uint8_t **data, size_t *size, const char *fn) {
    size_t n = *size, C = CHUNK_DEFAULT, A = crypto_secretstream_xchacha20poly1305_ABYTES;
    size_t k = n == 0 ? 1 : (n - 1) / C + 1, tags, total;
    if (!nn__size_mul(k, A, &tags) || !nn__size_add(tags, ENCRYPTED_HEADER, &tags) ||
        !nn__size_add(n, tags, &total))
        return nn__err(NN_ERR_OVERFLOW, "%s: an encrypted file of %zu bytes is too large", fn, n);
    uint8_t *chunk = nn__malloc(C);
    if (!chunk) return NN_ERR_NOMEM;
    uint8_t *p = nn__realloc(*data, total);
    if (!p) {
        nn__free(chunk);
        return NN_ERR_NOMEM;
    }
    *data = p;
    uint8_t *plain = p + (total - n);
    memmove(plain, p, n);
    memset(p, 0, ENCRYPTED_HEADER);
    memcpy(p, ENCRYPTED_MAGIC, 8);
    p[8] = SEAL_MAJOR;
    nn__put_u32(p + 16, (uint32_t)C);
    nn__put_u64(p + 24, (uint64_t)n);
    key_id(o->encrypt_key, p + 32);
    crypto_secretstream_xchacha20poly1305_state s;
    crypto_secretstream_xchacha20poly1305_init_push(&s, p + STREAM_HEADER_AT, o->encrypt_key);
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
        size_t len = i + 1 < k ? C : n - i * C;
        memcpy(chunk, plain + i * C, len);
        uint8_t tag = i + 1 < k ? crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
                                : crypto_secretstream_xchacha20poly1305_TAG_FINAL;
        rc = crypto_secretstream_xchacha20poly1305_push(
            &s, p + ENCRYPTED_HEADER + i * (C + A), NULL, chunk, len, i == 0 ? p : NULL,
            i == 0 ? ENCRYPTED_AD : 0, tag);
    }
    wipe(&s, sizeof s);
    wipe(chunk, C);
    nn__free(chunk);
    if (rc != 0) return nn__err(NN_ERR_IO, "%s: encryption failed", fn);
    *size = total;
    return NN_OK;
}

nn_status nn__seal(const nn_io_options *o, uint8_t **data, size_t *size, const char *fn) {
    nn_status st = NN_OK;
    if ((o->has_sign_key || o->has_encrypt_key) && (st = sodium_ready(fn))) return st;
    if (o->has_sign_key) st = sign_file(o, data, size, fn);
    if (!st && o->has_encrypt_key) st = encrypt_file(o, data, size, fn);
    return st;
}

/* --------------------------------------------------------------- loading */

struct nn__unseal {
    const char *fn;
    nn_status st; /* the envelope's first failure, and its message */
    char msg[400];
    /* raw input: exactly one of fd (a path), buf, read */
    int fd;
    const char *path;
    const uint8_t *buf;
    size_t bsize, bpos;
    nn_read_fn read;
    void *user;
    int64_t max;
    uint64_t fetched;
    bool raw_eof;
    uint8_t pre[8]; /* peeked raw bytes, replayed */
    size_t npre, ipre;
    /* decryption */
    bool enc, enc_final;
    uint8_t key[32];
    uint8_t ad[ENCRYPTED_AD];
    crypto_secretstream_xchacha20poly1305_state ss;
    uint32_t C;
    uint64_t plain_total, plain_out, chunks;
    uint8_t *cbuf, *pbuf;
    size_t ppos, plen;
    uint8_t pre2[8]; /* peeked plain bytes, replayed */
    size_t npre2, ipre2;
    /* signature */
    bool sig, sig_done, mid_eof;
    crypto_sign_state sign;
    uint8_t pk[32];
    uint8_t *hold; /* the last SIGNED_TRAILER bytes are held back */
    size_t hlen;
    uint64_t passed;   /* inner file bytes handed up */
    uint8_t inner[24]; /* the inner file's first 24 bytes (its size at 16) */
};

#define HOLD_CAP (((size_t)64 << 10) + SIGNED_TRAILER)

/* Record the envelope's first failure (message kept for the final result). */
static void vrecord(nn__unseal *u, nn_status st, const char *fmt, va_list ap) {
    if (u->st) return;
    int n = snprintf(u->msg, sizeof u->msg, "%s: ", u->fn);
    if (n > 0 && (size_t)n < sizeof u->msg) vsnprintf(u->msg + n, sizeof u->msg - (size_t)n, fmt, ap);
    u->st = st;
}

/* For pull functions: record, return -1. */
static int64_t fail(nn__unseal *u, nn_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vrecord(u, st, fmt, ap);
    va_end(ap);
    return -1;
}

/* For the header checks: record, return the envelope's status. */
static nn_status efail(nn__unseal *u, nn_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vrecord(u, st, fmt, ap);
    va_end(ap);
    return u->st;
}

/* Up to n bytes of the raw input (peeked bytes first); 0 at its end. */
static int64_t raw_pull(nn__unseal *u, uint8_t *dst, size_t n) {
    if (u->st) return -1;
    if (u->ipre < u->npre) {
        size_t k = u->npre - u->ipre < n ? u->npre - u->ipre : n;
        memcpy(dst, u->pre + u->ipre, k);
        u->ipre += k;
        return (int64_t)k;
    }
    if (u->raw_eof || n == 0) return 0;
    size_t got = 0;
    if (u->buf) {
        got = u->bsize - u->bpos < n ? u->bsize - u->bpos : n;
        memcpy(dst, u->buf + u->bpos, got);
        u->bpos += got;
    } else if (u->fd >= 0) {
        ssize_t k;
        while ((k = read(u->fd, dst, n > (1u << 30) ? (1u << 30) : n)) < 0 && errno == EINTR) {
        }
        if (k < 0) return fail(u, NN_ERR_IO, "reading '%s' failed: %s", u->path, strerror(errno));
        got = (size_t)k;
    } else {
        int64_t k = u->read(dst, n, u->user);
        if (k < 0 || (uint64_t)k > n)
            return fail(u, NN_ERR_IO, "the read callback failed after %llu bytes",
                        (unsigned long long)u->fetched);
        got = (size_t)k;
    }
    if (got == 0) u->raw_eof = true;
    u->fetched += got;
    if (u->fetched > (uint64_t)u->max)
        return fail(u, NN_ERR_LIMIT, "stream exceeds the %lld-byte limit (NN_IO_OPTION_MAX_BYTES)",
                    (long long)u->max);
    return (int64_t)got;
}

typedef int64_t (*pull_fn)(nn__unseal *u, uint8_t *dst, size_t n);

/* Exactly n bytes unless the input ends first: the count, or -1. */
static int64_t pull_full(pull_fn f, nn__unseal *u, uint8_t *dst, size_t n) {
    size_t have = 0;
    while (have < n) {
        int64_t k = f(u, dst + have, n - have);
        if (k < 0) return -1;
        if (k == 0) break;
        have += (size_t)k;
    }
    return (int64_t)have;
}

/* Decrypt the next chunk into pbuf. */
static int64_t next_chunk(nn__unseal *u) {
    /* Every chunk but the last holds C plain bytes; the header's plain
     * size (authenticated with the first chunk) says where the last ends. */
    uint64_t left = u->plain_total - u->plain_out;
    size_t A = crypto_secretstream_xchacha20poly1305_ABYTES;
    size_t want = (left < u->C ? (size_t)left : (size_t)u->C) + A;
    int64_t got = pull_full(raw_pull, u, u->cbuf, want);
    if (got < 0) return -1;
    if (got == 0 || (size_t)got < A)
        return fail(u, NN_ERR_TRUNCATED,
                    "encrypted file ends after %llu of its %llu plain bytes (chunk %llu)",
                    (unsigned long long)u->plain_out, (unsigned long long)u->plain_total,
                    (unsigned long long)u->chunks);
    unsigned long long mlen = 0;
    uint8_t tag = 0;
    bool first = u->chunks == 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&u->ss, u->pbuf, &mlen, &tag, u->cbuf,
                                                   (unsigned long long)got, first ? u->ad : NULL,
                                                   first ? ENCRYPTED_AD : 0) != 0) {
        if ((size_t)got < want)
            return fail(u, NN_ERR_TRUNCATED,
                        "encrypted file ends inside chunk %llu (%lld of %zu bytes)",
                        (unsigned long long)u->chunks, (long long)got, want);
        return fail(u, NN_ERR_DECRYPT,
                    "chunk %llu of the encrypted file fails authentication (altered data, "
                    "header or tag)",
                    (unsigned long long)u->chunks);
    }
    u->chunks++;
    bool final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    if (mlen > left || (!final && mlen != u->C) || (final && mlen != left) ||
        (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE && !final))
        return fail(u, NN_ERR_FORMAT,
                    "encrypted chunk %llu holds %llu bytes (tag %u) where %llu remain",
                    (unsigned long long)u->chunks - 1, mlen, (unsigned)tag,
                    (unsigned long long)left);
    u->plain_out += mlen;
    u->ppos = 0;
    u->plen = (size_t)mlen;
    if (final) {
        u->enc_final = true;
        uint8_t extra;
        int64_t k = raw_pull(u, &extra, 1);
        if (k < 0) return -1;
        if (k > 0) return fail(u, NN_ERR_FORMAT, "bytes follow the final encrypted chunk");
    }
    return 0;
}

/* Up to n plain bytes: decrypted, or the raw input when not encrypted. */
static int64_t dec_pull(nn__unseal *u, uint8_t *dst, size_t n) {
    if (!u->enc) return raw_pull(u, dst, n);
    if (u->st) return -1;
    while (u->ppos == u->plen) {
        if (u->enc_final) return 0;
        if (next_chunk(u) < 0) return -1;
    }
    size_t k = u->plen - u->ppos < n ? u->plen - u->ppos : n;
    memcpy(dst, u->pbuf + u->ppos, k);
    u->ppos += k;
    return (int64_t)k;
}

/* dec_pull with the peeked plain bytes replayed first. */
static int64_t mid_pull(nn__unseal *u, uint8_t *dst, size_t n) {
    if (u->ipre2 < u->npre2) {
        size_t k = u->npre2 - u->ipre2 < n ? u->npre2 - u->ipre2 : n;
        memcpy(dst, u->pre2 + u->ipre2, k);
        u->ipre2 += k;
        return (int64_t)k;
    }
    return dec_pull(u, dst, n);
}

/* At the end of a signed file: the held bytes are the trailer. */
static int64_t verify_end(nn__unseal *u) {
    u->sig_done = true;
    uint64_t declared = nn__get_u64(u->inner + 16);
    if (u->hlen < SIGNED_TRAILER || u->passed < 24 || u->passed < declared)
        return fail(u, NN_ERR_TRUNCATED,
                    "signed file ends early (%llu bytes of its %llu-byte file, %zu of the "
                    "%d-byte signature block)",
                    (unsigned long long)u->passed, (unsigned long long)declared,
                    u->hlen < SIGNED_TRAILER ? u->hlen : (size_t)SIGNED_TRAILER, SIGNED_TRAILER);
    crypto_sign_update(&u->sign, u->hold, 8);
    if (crypto_sign_final_verify(&u->sign, u->hold + 8, u->pk) != 0)
        return fail(u, NN_ERR_SIGNATURE,
                    "the Ed25519 signature does not verify: the file or its signature was "
                    "altered");
    if (memcmp(u->hold, "NSIG", 4) != 0 || nn__get_u32(u->hold + 4) != 0)
        return fail(u, NN_ERR_FORMAT, "signed file: bad signature block marker");
    return 0;
}

/* Up to n bytes of the inner file: everything but the trailer, hashed. */
static int64_t sig_pull(nn__unseal *u, uint8_t *dst, size_t n) {
    if (u->st) return -1;
    if (u->sig_done) return 0;
    while (u->hlen <= SIGNED_TRAILER && !u->mid_eof) {
        int64_t k = mid_pull(u, u->hold + u->hlen, HOLD_CAP - u->hlen);
        if (k < 0) return -1;
        if (k == 0) u->mid_eof = true;
        u->hlen += (size_t)k;
    }
    if (u->hlen <= SIGNED_TRAILER) return verify_end(u);
    size_t k = u->hlen - SIGNED_TRAILER < n ? u->hlen - SIGNED_TRAILER : n;
    memcpy(dst, u->hold, k);
    crypto_sign_update(&u->sign, u->hold, k);
    for (size_t i = 0; i < k && u->passed + i < 24; i++) u->inner[u->passed + i] = u->hold[i];
    u->passed += k;
    memmove(u->hold, u->hold + k, u->hlen - k);
    u->hlen -= k;
    return (int64_t)k;
}

static int64_t top_read(void *buf, size_t n, void *user) {
    nn__unseal *u = user;
    return u->sig ? sig_pull(u, buf, n) : mid_pull(u, buf, n);
}

static void unseal_free(nn__unseal *u) {
    if (!u) return;
    if (u->fd >= 0) close(u->fd);
    if (u->pbuf) wipe(u->pbuf, u->C);
    nn__free(u->cbuf);
    nn__free(u->pbuf);
    nn__free(u->hold);
    wipe(u, sizeof *u); /* the key, the stream and hash states */
    nn__free(u);
}

static bool is_magic(const uint8_t *p, size_t n, const char *magic) {
    return n == 8 && memcmp(p, magic, 8) == 0;
}

/* The encrypted file's header (its magic already read): checked, and the
 * stream opened. */
static nn_status open_encrypted(nn__unseal *u, const nn_io_options *o) {
    uint8_t h[ENCRYPTED_HEADER];
    memcpy(h, u->pre, 8);
    int64_t got = pull_full(raw_pull, u, h + 8, sizeof h - 8);
    if (got < 0) return u->st;
    if ((size_t)got < sizeof h - 8)
        return efail(u, NN_ERR_TRUNCATED, "encrypted file ends inside its %d-byte header",
                    ENCRYPTED_HEADER);
    unsigned major = h[8] | h[9] << 8;
    if (major != SEAL_MAJOR)
        return efail(u, NN_ERR_VERSION, "encrypted file version %u.%u (this reader: %d)", major,
                    (unsigned)(h[10] | h[11] << 8), SEAL_MAJOR);
    uint32_t C = nn__get_u32(h + 16);
    u->plain_total = nn__get_u64(h + 24);
    if (nn__get_u32(h + 12) || nn__get_u32(h + 20))
        return efail(u, NN_ERR_FORMAT, "encrypted file: flags / reserved fields not zero");
    if (C < CHUNK_MIN || C > CHUNK_MAX)
        return efail(u, NN_ERR_FORMAT, "encrypted file: chunk size %u outside [%u, %u]", C,
                    CHUNK_MIN, CHUNK_MAX);
    if (u->plain_total > (uint64_t)u->max)
        return efail(u, NN_ERR_LIMIT,
                    "encrypted file holds %llu bytes, over the %lld-byte limit "
                    "(NN_IO_OPTION_MAX_BYTES)",
                    (unsigned long long)u->plain_total, (long long)u->max);
    if (!o->has_encrypt_key)
        return efail(u, NN_ERR_WRONG_KEY,
                    "the file is encrypted and no key was given (nn_io_options_set_encrypt_key)");
    uint8_t id[KEY_ID_BYTES];
    key_id(o->encrypt_key, id);
    if (sodium_memcmp(id, h + 32, KEY_ID_BYTES) != 0)
        return efail(u, NN_ERR_WRONG_KEY, "the file was encrypted with another key");
    u->C = C;
    memcpy(u->ad, h, ENCRYPTED_AD);
    if (!(u->cbuf = nn__malloc((size_t)C + crypto_secretstream_xchacha20poly1305_ABYTES)) ||
        !(u->pbuf = nn__malloc(C)))
        return NN_ERR_NOMEM;
    if (crypto_secretstream_xchacha20poly1305_init_pull(&u->ss, h + STREAM_HEADER_AT, o->encrypt_key) != 0)
        return efail(u, NN_ERR_DECRYPT, "encrypted file: invalid stream header");
    u->enc = true;
    return NN_OK;
}

/* The signed file's header (its magic in pre2): checked, hashing begun. */
static nn_status open_signed(nn__unseal *u, const nn_io_options *o) {
    uint8_t h[SIGNED_HEADER];
    memcpy(h, u->pre2, 8);
    u->ipre2 = u->npre2;
    int64_t got = pull_full(dec_pull, u, h + 8, sizeof h - 8);
    if (got < 0) return u->st;
    if ((size_t)got < sizeof h - 8)
        return efail(u, NN_ERR_TRUNCATED, "signed file ends inside its %d-byte header",
                    SIGNED_HEADER);
    unsigned major = h[8] | h[9] << 8;
    if (major != SEAL_MAJOR)
        return efail(u, NN_ERR_VERSION, "signed file version %u.%u (this reader: %d)", major,
                    (unsigned)(h[10] | h[11] << 8), SEAL_MAJOR);
    if (nn__get_u32(h + 12))
        return efail(u, NN_ERR_FORMAT, "signed file: flags not zero");
    if (o->has_verify_key && sodium_memcmp(h + 16, o->verify_key, 32) != 0)
        return efail(u, NN_ERR_WRONG_KEY, "the file is signed with another key");
    memcpy(u->pk, o->has_verify_key ? o->verify_key : h + 16, 32);
    if (!(u->hold = nn__malloc(HOLD_CAP))) return NN_ERR_NOMEM;
    crypto_sign_init(&u->sign);
    crypto_sign_update(&u->sign, h, sizeof h);
    u->sig = true;
    return NN_OK;
}

static nn_status open_chain(nn__unseal *u, const nn_io_options *o, const char *fn) {
    if (o->require_signature && !o->has_verify_key)
        return efail(u, NN_ERR_INVALID,
                     "NN_IO_OPTION_REQUIRE_SIGNATURE is set but no verify key was given "
                     "(nn_io_options_set_verify_key)");
    int64_t got = pull_full(raw_pull, u, u->pre, 8);
    if (got < 0) return u->st;
    u->npre = (size_t)got;
    nn_status st;
    if (is_magic(u->pre, u->npre, ENCRYPTED_MAGIC)) {
        u->ipre = u->npre;
        if ((st = open_encrypted(u, o))) return st;
        if ((got = pull_full(dec_pull, u, u->pre2, 8)) < 0) return u->st;
        u->npre2 = (size_t)got;
    } else {
        if (o->has_encrypt_key)
            return efail(u, NN_ERR_DECRYPT,
                         "an encryption key was given but the file is not encrypted");
        memcpy(u->pre2, u->pre, u->npre); /* the raw bytes are the plain ones */
        u->npre2 = u->npre;
        u->ipre = u->npre;
    }
    if (is_magic(u->pre2, u->npre2, SIGNED_MAGIC)) {
        if ((st = open_signed(u, o))) return st;
    } else if (o->require_signature) {
        return efail(u, NN_ERR_UNSIGNED,
                    "a signature is required (NN_IO_OPTION_REQUIRE_SIGNATURE) and the file is "
                    "not signed");
    }
    (void)fn;
    return NN_OK;
}

/* The first 8 bytes of a path or buffer source, when cheap to see. */
static bool peek_plain(const nn__io_src *src, bool *plain) {
    uint8_t b[8];
    const uint8_t *h = NULL;
    if (src->path) {
        int fd = open(src->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return false;
        ssize_t k = pread(fd, b, 8, 0);
        close(fd);
        if (k != 8) return false;
        h = b;
    } else if (src->data && src->size >= 8) {
        h = src->data;
    } else {
        return false;
    }
    *plain = memcmp(h, SIGNED_MAGIC, 8) != 0 && memcmp(h, ENCRYPTED_MAGIC, 8) != 0;
    return true;
}

nn_status nn__ld_open_sealed(nn__ld *ld, nn__unseal **out, const nn__io_src *src,
                             const nn_io_options *o, const char *fn) {
    *out = NULL;
    bool keys = o->has_encrypt_key || o->require_signature, plain;
    /* A plain file from a path or buffer, with no key asking for more, is
     * read exactly as before (its size known up front). */
    if (!keys && !src->read && (peek_plain(src, &plain) ? plain : true))
        return nn__ld_open(ld, src, o->max_bytes, fn);
    nn_status st = sodium_ready(fn);
    nn__unseal *u = st ? NULL : nn__calloc(1, sizeof *u);
    if (!st && !u) st = NN_ERR_NOMEM;
    if (st) {
        nn__ld_init_failed(ld, fn);
        return st;
    }
    u->fn = fn;
    u->fd = -1;
    u->max = o->max_bytes;
    if (src->path) {
        u->path = src->path;
        u->fd = open(src->path, O_RDONLY | O_CLOEXEC);
        if (u->fd < 0)
            fail(u, errno == ENOENT ? NN_ERR_NOT_FOUND : NN_ERR_IO, "cannot open '%s': %s",
                 src->path, strerror(errno));
    } else if (src->read) {
        u->read = src->read;
        u->user = src->user;
    } else if (!src->data && src->size) {
        fail(u, NN_ERR_NULL, "argument 'data' is NULL");
    } else {
        u->buf = src->data ? src->data : (const uint8_t *)"";
        u->bsize = src->size;
    }
    st = u->st ? u->st : open_chain(u, o, fn);
    if (st) {
        if (u->st) nn__err(u->st, "%s", u->msg);
        unseal_free(u);
        nn__ld_init_failed(ld, fn);
        return st;
    }
    nn__io_src inner = {.read = top_read, .user = u};
    *out = u;
    return nn__ld_open(ld, &inner, o->max_bytes, fn);
}

nn_status nn__ld_close_sealed(nn__ld *ld, nn__unseal *u, nn_status st) {
    st = nn__ld_close(ld, st);
    if (!u) return st;
    if (st != NN_ERR_NOMEM) {
        /* Read whatever the reader left, so that the whole envelope is
         * checked (bounded by NN_IO_OPTION_MAX_BYTES on the raw input). */
        uint8_t scratch[4096];
        while (!u->st && top_read(scratch, sizeof scratch, u) > 0) {
        }
        if (u->st) st = nn__err(u->st, "%s", u->msg);
    }
    unseal_free(u);
    return st;
}

#endif /* NN_HAVE_SODIUM */
