/* libFuzzer target for the model file loader. Each input is loaded as a
 * model, a state dict and a checkpoint; then again after its CRCs have been
 * recomputed, so that mutations reach the structure checks behind them. */
#include "nn.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void nn_fuzz_teardown(void);

static uint32_t crc_table[256];

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    if (!crc_table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Make the declared size, section CRCs and file CRC consistent (FORMAT.md). */
static void fix_crcs(uint8_t *d, size_t n) {
    if (n < 40) return;
    wr64(d + 16, n);
    size_t pos = 32, end = n - 8;
    while (pos + 24 <= end) {
        uint64_t len = rd64(d + pos + 8);
        if (len > end - pos - 24) break;
        wr32(d + pos + 16, crc32_of(d + pos + 24, (size_t)len));
        pos += 24 + (size_t)len;
    }
    wr32(d + n - 4, crc32_of(d, n - 4));
}

static nn_module *g_net;
static nn_optim *g_opt;
static nn_io_options *g_opts;
static nn_io_options *g_keyed; /* the test keys of tests/io/sealed (FORMAT.md 10) */

static void setup(void) {
    g_opts = nn_io_options_new();
    nn_io_options_set(g_opts, NN_IO_OPTION_MAX_BYTES, 64 << 20);
    g_keyed = nn_io_options_new();
    nn_io_options_set(g_keyed, NN_IO_OPTION_MAX_BYTES, 64 << 20);
    uint8_t seed[32], pk[32], sk[64], key[32];
    for (int i = 0; i < 32; i++) seed[i] = (uint8_t)i, key[i] = (uint8_t)(0x40 + i);
    if (nn_sign_keypair(seed, 32, pk, 32, sk, 64) == NN_OK) { /* else no libsodium */
        nn_io_options_set_verify_key(g_keyed, pk, 32);
        nn_io_options_set_encrypt_key(g_keyed, key, 32);
    }
    nn_clear_error();
    g_net = nn_sequential_new();
    nn_sequential_append(g_net, nn_linear_new(2, 3, true));
    nn_tensor *p[2] = {nn_module_parameter(g_net, 0, NULL), nn_module_parameter(g_net, 1, NULL)};
    g_opt = nn_adam(p, 2, 1e-3);
}

/* Free the shared objects (the replay calls it; libFuzzer never exits cleanly). */
void nn_fuzz_teardown(void) {
    nn_optim_free(g_opt);
    nn_module_free(g_net);
    nn_io_options_free(g_opts);
    nn_io_options_free(g_keyed);
    g_keyed = NULL;
    g_opt = NULL;
    g_net = NULL;
    g_opts = NULL;
}

static void load_with(const uint8_t *data, size_t size, nn_io_options *o);

static void load_all(const uint8_t *data, size_t size) {
    load_with(data, size, g_opts);
    /* A signed or encrypted input is also read with the test keys, so that
     * mutations reach the decryption and the file inside. */
    if (size >= 4 && data[0] == 0x89 && data[1] == 'N' && data[2] == 'N' &&
        (data[3] == 'S' || data[3] == 'E'))
        load_with(data, size, g_keyed);
}

static void load_with(const uint8_t *data, size_t size, nn_io_options *g_o) {
    nn_model *m = nn_model_load_buffer(data, size, g_o);
    if (m) {
        const nn_meta *meta = nn_model_meta(m);
        for (int64_t i = 0; i < nn_meta_count(meta); i++) nn_meta_kind_of(meta, nn_meta_key(meta, i));
        /* A GPT's children come from the file: a session checks every
         * tensor it will read (other kinds: a clean NN_ERR_INVALID). */
        nn_session *s = nn_session_new(m, NULL);
        const int64_t tok = 1;
        if (s && nn_session_append(s, &tok, 1) == NN_OK) {
            int64_t next;
            nn_session_sample(s, &next);
        }
        nn_session_free(s);
    }
    nn_model_free(m);
    nn_statedict_free(nn_statedict_load_buffer(data, size, g_o));
    nn_checkpoint_load_buffer(data, size, g_net, g_opt, NULL, NULL, NULL, NULL, g_o);
    nn_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_opts) setup();
    load_all(data, size);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    fix_crcs(copy, size);
    load_all(copy, size);
    free(copy);
    return 0;
}
