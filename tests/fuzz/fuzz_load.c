/* libFuzzer target for the model file loader. Each input is loaded as a
 * model, a state dict and a checkpoint; then again after its CRCs have been
 * recomputed, so that mutations reach the structure checks behind them. */
#include "fuzz_fix.h"
#include "nn.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void nn_fuzz_teardown(void);


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
    fuzz_fix_model(copy, size, false);
    load_all(copy, size);
    free(copy);
    return 0;
}
