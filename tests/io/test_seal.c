/* Signed and encrypted model files (FORMAT.md 10): bit-exact round trips
 * from buffers, paths and callbacks; every tamper case (a flipped byte in
 * each region, truncation at every chunk boundary, another key, no key, no
 * signature when one is required) rejected with its status and no object;
 * committed test vectors (tests/io/sealed, rewritten by
 * `test_seal --write-fixtures DIR`); an atomic save that fails leaves the
 * old file; out-of-memory sweeps; key copies wiped. */
#include "testutil.h"
#include "io/io_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (64 << 10)
#define AB 17 /* secretstream bytes per chunk */
#define EHDR 72
#define SHDR 48
#define STRL 72

static uint8_t g_seed[32], g_pk[32], g_sk[64], g_key[32];
static uint8_t o_pk[32], o_sk[64], o_key[32]; /* another signer, another key */

static void keys_init(void) {
    for (int i = 0; i < 32; i++) g_seed[i] = (uint8_t)i, g_key[i] = (uint8_t)(0x40 + i);
    TU_OK(nn_sign_keypair(g_seed, 32, g_pk, 32, g_sk, 64));
    TU_OK(nn_sign_keypair(NULL, 0, o_pk, 32, o_sk, 64));
    TU_OK(nn_encrypt_keygen(o_key, 32));
}

/* Sequential(Linear(in, out)) with weights i * 0.25 - 1 (exactly representable). */
static nn_module *model_new(int64_t in, int64_t out) {
    nn_module *seq = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(seq, nn_linear_new(in, out, true)));
    nn_statedict *sd = TU_NN(nn_module_state_dict(seq));
    for (int64_t t = 0; t < nn_statedict_size(sd); t++) {
        nn_tensor *x = nn_statedict_tensor(sd, t);
        float *v = nn_tensor_data(x);
        for (int64_t i = 0; i < nn_tensor_numel(x); i++) v[i] = (float)(i % 64) * 0.25f - 1.0f;
    }
    nn_statedict_free(sd);
    return seq;
}

/* Whether two modules hold bit-identical parameters. */
static void assert_same(nn_module *a, nn_module *b) {
    nn_statedict *x = TU_NN(nn_module_state_dict(a)), *y = TU_NN(nn_module_state_dict(b));
    assert_int_equal(nn_statedict_size(x), nn_statedict_size(y));
    for (int64_t i = 0; i < nn_statedict_size(x); i++) {
        nn_tensor *p = nn_statedict_tensor(x, i), *q = nn_statedict_tensor(y, i);
        assert_int_equal(nn_tensor_numel(p), nn_tensor_numel(q));
        assert_memory_equal(nn_tensor_data(p), nn_tensor_data(q),
                            (size_t)nn_tensor_numel(p) * sizeof(float));
    }
    nn_statedict_free(x);
    nn_statedict_free(y);
}

/* Options: sign (sk may be NULL), encrypt (key may be NULL), verify, require. */
static nn_io_options *opts(const uint8_t *sk, const uint8_t *key, const uint8_t *pk, int require,
                           int level) {
    nn_io_options *o = TU_NN(nn_io_options_new());
    if (sk) TU_OK(nn_io_options_set_sign_key(o, sk, 64));
    if (key) TU_OK(nn_io_options_set_encrypt_key(o, key, 32));
    if (pk) TU_OK(nn_io_options_set_verify_key(o, pk, 32));
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_REQUIRE_SIGNATURE, require));
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_COMPRESSION, level));
    return o;
}

static uint8_t *save(nn_module *m, const nn_io_options *o, size_t *n) {
    void *data = NULL;
    TU_OK(nn_model_save_buffer(m, NULL, o, &data, n));
    return data;
}

/* Load buf with o: expect status want (NN_OK: the model) and no model otherwise. */
static nn_model *load_expect(const void *buf, size_t n, const nn_io_options *o, nn_status want,
                             const char *what) {
    nn_model *m = nn_model_load_buffer(buf, n, o);
    nn_status got = m ? NN_OK : nn_last_status();
    if (got != want)
        fail_msg("%s: expected %s, got %s (%s)", what, nn_status_string(want),
                 nn_status_string(got), m ? "a model" : nn_last_error());
    return m;
}

/* A loaded model holds m's parameters bit for bit; back is freed. */
static void assert_loaded_same(nn_module *m, nn_model *back) {
    assert_same(m, nn_model_module(back));
    nn_model_free(back);
}

/* One tamper case: the byte at off flipped, the load's expected status. */
typedef struct tamper {
    size_t off;
    nn_status want;
    const char *what;
} tamper;

/* Each case on its own copy of buf (byte XOR mask), loaded with o. */
static void expect_tampered(const uint8_t *buf, size_t n, const nn_io_options *o, uint8_t mask,
                            const tamper *cases, size_t count) {
    uint8_t *c = malloc(n);
    assert_non_null(c);
    for (size_t i = 0; i < count; i++) {
        memcpy(c, buf, n);
        c[cases[i].off] ^= mask;
        load_expect(c, n, o, cases[i].want, cases[i].what);
    }
    free(c);
}

/* ------------------------------------------------------------- round trips */

typedef struct stream_src {
    const uint8_t *p;
    size_t n, pos, step;
} stream_src;

static int64_t read_some(void *buf, size_t size, void *user) {
    stream_src *s = user;
    size_t k = s->n - s->pos;
    if (k > size) k = size;
    if (k > s->step) k = s->step;
    memcpy(buf, s->p + s->pos, k);
    s->pos += k;
    return (int64_t)k;
}

static void test_round_trips(void **st) {
    (void)st;
    nn_module *m = model_new(300, 300); /* 361 KB stored: 6 chunks */
    const uint8_t *sks[] = {NULL, g_sk, NULL, g_sk}, *keys[] = {NULL, NULL, g_key, g_key};
    for (int c = 0; c < 4; c++)
        for (int level = 0; level <= 6; level += 6) {
            nn_io_options *w = opts(sks[c], keys[c], NULL, 0, level);
            nn_io_options *r = opts(NULL, keys[c], sks[c] ? g_pk : NULL, sks[c] != NULL, level);
            size_t n;
            uint8_t *buf = save(m, w, &n);
            assert_loaded_same(m, load_expect(buf, n, r, NN_OK, "buffer"));
            /* Through a callback, 1000 bytes at a time, and from a path. */
            stream_src s = {buf, n, 0, 1000};
            assert_loaded_same(m, TU_NN(nn_model_load_stream(read_some, &s, r)));
            char path[] = "/tmp/nn_seal_XXXXXX";
            int fd = mkstemp(path);
            assert_true(fd >= 0);
            close(fd);
            TU_OK(nn_model_save(m, path, NULL, w));
            assert_loaded_same(m, TU_NN(nn_model_load(path, r)));
            /* Weights-only loads take the same options. */
            nn_module *fresh = model_new(300, 300);
            TU_OK(nn_module_load_weights(fresh, path, r, NULL));
            nn_module_free(fresh);
            unlink(path);
            nn_free(buf);
            nn_io_options_free(w);
            nn_io_options_free(r);
        }
    nn_module_free(m);
}

static void test_checkpoint(void **st) {
    (void)st;
    nn_module *m = model_new(8, 4);
    nn_tensor *params[2] = {nn_module_parameter(m, 0, NULL), nn_module_parameter(m, 1, NULL)};
    nn_optim *opt = TU_NN(nn_adam(params, 2, 1e-3));
    nn_io_options *w = opts(g_sk, g_key, NULL, 0, 6), *r = opts(NULL, g_key, g_pk, 1, 6);
    TU_OK(nn_io_options_set_training(w, opt, NULL, NULL, 2, 17));
    size_t n;
    uint8_t *buf = save(m, w, &n);
    nn_module *m2 = model_new(8, 4);
    nn_tensor *p2[2] = {nn_module_parameter(m2, 0, NULL), nn_module_parameter(m2, 1, NULL)};
    nn_optim *opt2 = TU_NN(nn_adam(p2, 2, 1e-3));
    int64_t epoch = 0, step = 0;
    TU_OK(nn_checkpoint_load_buffer(buf, n, m2, opt2, NULL, NULL, &epoch, &step, r));
    assert_int_equal(epoch, 2);
    assert_int_equal(step, 17);
    assert_same(m, m2);
    /* A damaged checkpoint changes nothing. */
    float before = ((float *)nn_tensor_data(p2[0]))[0];
    ((float *)nn_tensor_data(p2[0]))[0] = 42.0f;
    buf[n / 2] ^= 1;
    assert_int_equal(nn_checkpoint_load_buffer(buf, n, m2, opt2, NULL, NULL, &epoch, &step, r),
                     NN_ERR_DECRYPT);
    assert_true(((float *)nn_tensor_data(p2[0]))[0] == 42.0f);
    (void)before;
    nn_free(buf);
    nn_io_options_free(w);
    nn_io_options_free(r);
    nn_optim_free(opt);
    nn_optim_free(opt2);
    nn_module_free(m);
    nn_module_free(m2);
}

/* ------------------------------------------------------------ tampering */

static void test_signed_tamper(void **st) {
    (void)st;
    nn_module *m = model_new(3, 2);
    nn_io_options *w = opts(g_sk, NULL, NULL, 0, 6);
    nn_io_options *r = opts(NULL, NULL, g_pk, 1, 6), *other = opts(NULL, NULL, o_pk, 1, 6);
    nn_io_options *none = opts(NULL, NULL, NULL, 0, 6);
    size_t n;
    uint8_t *buf = save(m, w, &n);
    const tamper cases[] = {
        {SHDR + 12, NN_ERR_SIGNATURE, "inner header flags"},
        {SHDR + 40, NN_ERR_SIGNATURE, "first section"},
        {n / 2, NN_ERR_SIGNATURE, "body"},
        {n - STRL - 9, NN_ERR_SIGNATURE, "inner trailer CRC"},
        {n - STRL + 2, NN_ERR_SIGNATURE, "signature marker"},
        {n - 30, NN_ERR_SIGNATURE, "signature"},
        {n - 1, NN_ERR_SIGNATURE, "last signature byte"},
        {20, NN_ERR_WRONG_KEY, "signer key in the header"},
        {8, NN_ERR_VERSION, "envelope version"},
        {12, NN_ERR_FORMAT, "envelope flags"},
    };
    expect_tampered(buf, n, r, 0x10, cases, sizeof cases / sizeof *cases);
    uint8_t *c = malloc(n);
    /* Every single-byte flip is rejected (never a model), with one of the
     * envelope's codes; without a verify key too (the named key is used). */
    for (size_t i = 0; i < n; i++) {
        memcpy(c, buf, n);
        c[i] ^= 0x01;
        for (int k = 0; k < 2; k++) {
            nn_model *bad = nn_model_load_buffer(c, n, k ? none : r);
            if (bad) fail_msg("flip at %zu (of %zu) loaded", i, n);
            nn_status s = nn_last_status();
            if (i >= 8 && s != NN_ERR_SIGNATURE && s != NN_ERR_WRONG_KEY && s != NN_ERR_VERSION &&
                s != NN_ERR_FORMAT && s != NN_ERR_TRUNCATED)
                fail_msg("flip at %zu: %s", i, nn_last_error());
        }
    }
    /* Truncated at every byte: no model, NN_ERR_TRUNCATED past the magic. */
    for (size_t k = 0; k < n; k++) {
        nn_model *bad = nn_model_load_buffer(buf, k, r);
        if (bad) fail_msg("cut at %zu loaded", k);
        if (k >= 8 && nn_last_status() != NN_ERR_TRUNCATED)
            fail_msg("cut at %zu: %s", k, nn_last_error());
    }
    /* Signed with another key; unsigned when required; no verify key. */
    load_expect(buf, n, other, NN_ERR_WRONG_KEY, "another signer");
    tu_expect_error(NN_ERR_WRONG_KEY, "signed with another key");
    size_t pn;
    uint8_t *plain = save(m, none, &pn);
    load_expect(plain, pn, r, NN_ERR_UNSIGNED, "unsigned");
    tu_expect_error(NN_ERR_UNSIGNED, "not signed");
    nn_io_options *req = opts(NULL, NULL, NULL, 1, 6);
    load_expect(buf, n, req, NN_ERR_INVALID, "required without a key");
    /* A forger who re-signs with their own key and names it in the header
     * is still refused by the verify key. */
    nn_io_options *forge = opts(o_sk, NULL, NULL, 0, 6);
    size_t fnn;
    uint8_t *forged = save(m, forge, &fnn);
    load_expect(forged, fnn, r, NN_ERR_WRONG_KEY, "forged");
    memcpy(forged + 16, g_pk, 32); /* claim the right signer */
    load_expect(forged, fnn, r, NN_ERR_SIGNATURE, "forged, claiming the signer");
    nn_free(forged);
    nn_io_options_free(forge);
    nn_io_options_free(req);
    nn_free(plain);
    free(c);
    nn_free(buf);
    nn_io_options_free(w);
    nn_io_options_free(r);
    nn_io_options_free(other);
    nn_io_options_free(none);
    nn_module_free(m);
}

static void test_encrypted_tamper(void **st) {
    (void)st;
    nn_module *m = model_new(300, 300);
    nn_io_options *w = opts(NULL, g_key, NULL, 0, 0), *r = opts(NULL, g_key, NULL, 0, 0);
    size_t n;
    uint8_t *buf = save(m, w, &n);
    size_t chunks = (n - EHDR) / (CHUNK + AB) + 1;
    assert_true(chunks >= 5);
    const tamper cases[] = {
        {8, NN_ERR_VERSION, "version"},
        {13, NN_ERR_FORMAT, "flags"},
        {18, NN_ERR_FORMAT, "chunk size"},
        {21, NN_ERR_FORMAT, "reserved"},
        {24, NN_ERR_DECRYPT, "plain size (authenticated)"},
        {32, NN_ERR_WRONG_KEY, "key id"},
        {50, NN_ERR_DECRYPT, "stream header"},
        {EHDR + 5, NN_ERR_DECRYPT, "first chunk"},
        {EHDR + 2 * (CHUNK + AB) + 100, NN_ERR_DECRYPT, "third chunk"},
        {EHDR + CHUNK + AB - 3, NN_ERR_DECRYPT, "first chunk's tag"},
        {n - 1, NN_ERR_DECRYPT, "last tag"},
    };
    expect_tampered(buf, n, r, 0x40, cases, sizeof cases / sizeof *cases);
    /* Truncation at every chunk boundary and one byte either side of it. */
    for (size_t k = 0; k <= chunks; k++) {
        size_t at = EHDR + k * (CHUNK + AB);
        for (int d = -1; d <= 1; d++) {
            size_t cut = at + (size_t)(ptrdiff_t)d;
            if (cut >= n) continue;
            load_expect(buf, cut, r, NN_ERR_TRUNCATED, "cut");
        }
    }
    for (size_t cut = 0; cut < EHDR; cut += 7) {
        nn_model *bad = nn_model_load_buffer(buf, cut, r);
        assert_null(bad);
        if (cut >= 8) assert_int_equal(nn_last_status(), NN_ERR_TRUNCATED);
    }
    /* Bytes after the final chunk. */
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, buf, n);
    longer[n] = 0;
    load_expect(longer, n + 1, r, NN_ERR_FORMAT, "trailing byte");
    free(longer);
    /* Another key, no key, a key for a plain file. */
    nn_io_options *wrong = opts(NULL, o_key, NULL, 0, 0), *none = opts(NULL, NULL, NULL, 0, 0);
    load_expect(buf, n, wrong, NN_ERR_WRONG_KEY, "wrong key");
    tu_expect_error(NN_ERR_WRONG_KEY, "encrypted with another key");
    load_expect(buf, n, none, NN_ERR_WRONG_KEY, "no key");
    load_expect(buf, n, NULL, NN_ERR_WRONG_KEY, "NULL options");
    size_t pn;
    uint8_t *plain = save(m, none, &pn);
    load_expect(plain, pn, r, NN_ERR_DECRYPT, "plain file with a key");
    /* A wrong key whose id was forged to match: decryption still fails. */
    uint8_t *c = malloc(n);
    memcpy(c, buf, n);
    uint8_t id_other[16];
    memcpy(id_other, buf + 32, 16);
    {
        size_t on;
        uint8_t *ob = save(m, wrong, &on);
        memcpy(c + 32, ob + 32, 16); /* the other key's id on our file */
        load_expect(c, n, wrong, NN_ERR_DECRYPT, "forged key id");
        nn_free(ob);
    }
    nn_free(plain);
    free(c);
    nn_free(buf);
    nn_io_options_free(w);
    nn_io_options_free(r);
    nn_io_options_free(wrong);
    nn_io_options_free(none);
    nn_module_free(m);
}

/* Signed, then encrypted: decrypted and verified in one pass. */
static void test_signed_and_encrypted(void **st) {
    (void)st;
    nn_module *m = model_new(40, 40);
    nn_io_options *w = opts(g_sk, g_key, NULL, 0, 6), *r = opts(NULL, g_key, g_pk, 1, 6);
    nn_io_options *other = opts(NULL, g_key, o_pk, 1, 6), *nokey = opts(NULL, NULL, g_pk, 1, 6);
    size_t n;
    uint8_t *buf = save(m, w, &n);
    assert_loaded_same(m, load_expect(buf, n, r, NN_OK, "both"));
    load_expect(buf, n, other, NN_ERR_WRONG_KEY, "another signer inside");
    load_expect(buf, n, nokey, NN_ERR_WRONG_KEY, "no decryption key");
    buf[n / 2] ^= 4;
    load_expect(buf, n, r, NN_ERR_DECRYPT, "flip");
    /* Encrypted but unsigned, when a signature is required. */
    nn_io_options *enc_only = opts(NULL, g_key, NULL, 0, 6);
    size_t en;
    uint8_t *e = save(m, enc_only, &en);
    load_expect(e, en, r, NN_ERR_UNSIGNED, "encrypted, unsigned");
    nn_free(e);
    nn_io_options_free(enc_only);
    nn_free(buf);
    nn_io_options_free(w);
    nn_io_options_free(r);
    nn_io_options_free(other);
    nn_io_options_free(nokey);
    nn_module_free(m);
}

/* ---------------------------------------------------------- atomic save */

static ssize_t failing_write(int fd, const void *buf, size_t n) {
    (void)fd, (void)buf, (void)n;
    errno = ENOSPC;
    return -1;
}

static void test_failed_save_keeps_old(void **st) {
    (void)st;
    char dir[] = "/tmp/nn_seal_dir_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/model.nnm", dir);
    nn_module *m = model_new(3, 2), *m2 = model_new(5, 2);
    nn_io_options *w = opts(g_sk, g_key, NULL, 0, 6), *r = opts(NULL, g_key, g_pk, 1, 6);
    TU_OK(nn_model_save(m, path, NULL, w));
    nn__io_sys_ops.write = failing_write;
    assert_int_equal(nn_model_save(m2, path, NULL, w), NN_ERR_IO);
    nn__io_sys_reset();
    assert_loaded_same(m, TU_NN(nn_model_load(path, r)));
    DIR *d = opendir(dir);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') files++;
    closedir(d);
    assert_int_equal(files, 1); /* no temporary left */
    unlink(path);
    rmdir(dir);
    nn_io_options_free(w);
    nn_io_options_free(r);
    nn_module_free(m);
    nn_module_free(m2);
}

/* ---------------------------------------------------------------- keys */

static bool all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

static void test_keys(void **st) {
    (void)st;
    uint8_t pk[32], sk[64], pk2[32], sk2[64];
    TU_OK(nn_sign_keypair(g_seed, 32, pk, 32, sk, 64));
    TU_OK(nn_sign_keypair(g_seed, 32, pk2, 32, sk2, 64));
    assert_memory_equal(pk, pk2, 32); /* a seed gives one key pair */
    assert_memory_equal(sk + 32, pk, 32);
    TU_OK(nn_sign_keypair(NULL, 0, pk2, 32, sk2, 64));
    assert_memory_not_equal(pk, pk2, 32);
    assert_int_equal(nn_sign_keypair(g_seed, 31, pk, 32, sk, 64), NN_ERR_INVALID);
    assert_int_equal(nn_sign_keypair(NULL, 5, pk, 32, sk, 64), NN_ERR_INVALID);
    assert_int_equal(nn_sign_keypair(NULL, 0, pk, 33, sk, 64), NN_ERR_INVALID);
    nn_clear_error(); /* a NULL argument reports a pending error as its cause */
    assert_int_equal(nn_sign_keypair(NULL, 0, NULL, 32, sk, 64), NN_ERR_NULL);
    assert_int_equal(nn_encrypt_keygen(pk, 31), NN_ERR_INVALID);
    nn_io_options *o = TU_NN(nn_io_options_new());
    /* A secret key whose halves disagree is refused. */
    memcpy(sk2, sk, 64);
    sk2[40] ^= 1;
    assert_int_equal(nn_io_options_set_sign_key(o, sk2, 64), NN_ERR_INVALID);
    assert_int_equal(nn_io_options_set_sign_key(o, sk, 32), NN_ERR_INVALID);
    nn_clear_error();
    assert_int_equal(nn_io_options_set_encrypt_key(o, NULL, 32), NN_ERR_NULL);
    assert_int_equal(nn_io_options_set(o, NN_IO_OPTION_REQUIRE_SIGNATURE, 2), NN_ERR_INVALID);
    /* Key copies are wiped when cleared. */
    TU_OK(nn_io_options_set_sign_key(o, sk, 64));
    TU_OK(nn_io_options_set_encrypt_key(o, g_key, 32));
    TU_OK(nn_io_options_set_verify_key(o, pk, 32));
    assert_memory_equal(o->sign_key, sk, 64);
    TU_OK(nn_io_options_set_sign_key(o, NULL, 0));
    TU_OK(nn_io_options_set_encrypt_key(o, NULL, 0));
    TU_OK(nn_io_options_set_verify_key(o, NULL, 0));
    assert_true(all_zero(o->sign_key, 64) && all_zero(o->encrypt_key, 32) &&
                all_zero(o->verify_key, 32));
    assert_false(o->has_sign_key || o->has_encrypt_key || o->has_verify_key);
    /* ... and when the options are freed (read through a copy of the
     * struct wiped in place: nn__io_options_wipe is what free calls). */
    TU_OK(nn_io_options_set_encrypt_key(o, g_key, 32));
    nn__io_options_wipe(o);
    assert_true(all_zero(o->encrypt_key, 32));
    /* No message ever holds key bytes: the errors above name lengths only. */
    nn_io_options_free(o);
}

/* ------------------------------------------------------------ test vectors */

static nn_module *vector_model(void) { return model_new(3, 2); }

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(len > 0 ? (size_t)len + 1 : 1);
    *n = len > 0 ? fread(p, 1, (size_t)len, f) : 0;
    fclose(f);
    return p;
}

/* The committed files: signed with the key of seed 0..31, encrypted with
 * key 0x40..0x5f, of Sequential(Linear(3, 2)) with weights i/4 - 1, stored
 * (compression 0) so that the plain bytes depend on no zlib version. */
static void test_vectors(void **st) {
    (void)st;
    nn_module *m = vector_model();
    nn_io_options *w = opts(g_sk, NULL, NULL, 0, 0), *r = opts(NULL, NULL, g_pk, 1, 0);
    size_t n, vn = 0;
    uint8_t *mine = save(m, w, &n);
    uint8_t *v = read_all(tu_data_path("io/sealed/signed_linear.nnm"), &vn);
    assert_non_null(v);
    /* Ed25519 is deterministic: this build writes the committed bytes. */
    assert_int_equal(n, vn);
    assert_memory_equal(mine, v, n);
    assert_loaded_same(m, load_expect(v, vn, r, NN_OK, "signed vector"));
    /* The public key the fixture names is the one derived from the seed. */
    assert_memory_equal(v + 16, g_pk, 32);
    free(v);
    nn_free(mine);
    nn_io_options_free(w);
    nn_io_options_free(r);
    /* Encrypted (a random nonce, so only decryption is reproducible). */
    nn_io_options *e = opts(NULL, g_key, g_pk, 1, 0);
    v = read_all(tu_data_path("io/sealed/signed_encrypted_linear.nnm"), &vn);
    assert_non_null(v);
    assert_loaded_same(m, load_expect(v, vn, e, NN_OK, "encrypted vector"));
    free(v);
    nn_io_options_free(e);
    nn_module_free(m);
}

static int write_fixtures(const char *dir) {
    keys_init();
    nn_module *m = vector_model();
    char path[512];
    nn_io_options *s = opts(g_sk, NULL, NULL, 0, 0), *se = opts(g_sk, g_key, NULL, 0, 0);
    snprintf(path, sizeof path, "%s/signed_linear.nnm", dir);
    nn_status a = nn_model_save(m, path, NULL, s);
    snprintf(path, sizeof path, "%s/signed_encrypted_linear.nnm", dir);
    nn_status b = nn_model_save(m, path, NULL, se);
    nn_io_options_free(s);
    nn_io_options_free(se);
    nn_module_free(m);
    return a || b;
}

/* --------------------------------------------------------- out of memory */

typedef struct oom_ctx {
    const uint8_t *buf;
    size_t n;
    const nn_io_options *r;
} oom_ctx;

static int oom_load(void *p) {
    oom_ctx *c = p;
    nn_model *m = nn_model_load_buffer(c->buf, c->n, c->r);
    if (!m) {
        assert_int_equal(nn_last_status(), NN_ERR_NOMEM);
        return 1;
    }
    nn_model_free(m);
    return 0;
}

static void test_oom(void **st) {
    (void)st;
    nn_module *m = model_new(3, 2);
    nn_io_options *w = opts(g_sk, g_key, NULL, 0, 6), *r = opts(NULL, g_key, g_pk, 1, 6);
    size_t n;
    uint8_t *buf = save(m, w, &n);
    oom_ctx c = {buf, n, r};
    assert_true(tu_oom_sweep(oom_load, &c) > 3);
    nn_free(buf);
    nn_io_options_free(w);
    nn_io_options_free(r);
    nn_module_free(m);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-fixtures") == 0) return write_fixtures(argv[2]);
    keys_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_signed_tamper),
        cmocka_unit_test(test_encrypted_tamper),
        cmocka_unit_test(test_signed_and_encrypted),
        cmocka_unit_test(test_failed_save_keeps_old),
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
