/* libFuzzer target for the safetensors loaders and the memory-mapped model
 * loader. Each input is loaded as safetensors from memory (state dict +
 * metadata, and into a small module, not strict) and mapped (the input
 * written to a memfd, loaded by its /proc path); a file that loads is saved
 * and loaded again and must come back with the same names. The same bytes
 * are then mapped as a model file (NN_IO_OPTION_MMAP 1 and 2), once as they
 * are and once with their CRCs and declared size recomputed and the aligned
 * flag set, so mutations reach the structure checks behind them. */
#include "fuzz_fix.h"
#include "nn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void nn_fuzz_teardown(void);

static nn_module *g_net;
static nn_io_options *g_opts, *g_map, *g_map2;
static int g_fd = -1;

static void setup(void) {
    g_opts = nn_io_options_new();
    nn_io_options_set(g_opts, NN_IO_OPTION_MAX_BYTES, 64 << 20);
    nn_io_options_set(g_opts, NN_IO_OPTION_STRICT, 0);
    g_map = nn_io_options_new();
    nn_io_options_set(g_map, NN_IO_OPTION_MAX_BYTES, 64 << 20);
    nn_io_options_set(g_map, NN_IO_OPTION_MMAP, 1);
    g_net = nn_sequential_new();
    nn_sequential_append(g_net, nn_linear_new(4, 8, true));
    nn_sequential_append(g_net, nn_relu_new());
    nn_sequential_append(g_net, nn_linear_new(8, 3, true));
    g_map2 = nn_io_options_new();
    nn_io_options_set(g_map2, NN_IO_OPTION_MAX_BYTES, 64 << 20);
    nn_io_options_set(g_map2, NN_IO_OPTION_MMAP, 2);
    g_fd = memfd_create("nn_fuzz_safetensors", 0);
}


/* Write data to the memfd; its /proc path in path. */
static bool to_memfd(const uint8_t *data, size_t size, char *path, size_t cap) {
    if (g_fd < 0 || ftruncate(g_fd, 0) != 0) return false;
    if (size && pwrite(g_fd, data, size, 0) != (ssize_t)size) return false;
    snprintf(path, cap, "/proc/self/fd/%d", g_fd);
    return true;
}

static void load_models(const char *path) {
    for (int k = 0; k < 2; k++) {
        nn_model *m = nn_model_load(path, k ? g_map2 : g_map);
        if (m) {
            nn_module *mod = nn_model_module(m);
            for (int64_t i = 0; i < nn_module_num_parameters(mod); i++) {
                nn_tensor *t = nn_module_parameter(mod, i, NULL);
                const uint8_t *p = nn_tensor_data(t);
                size_t nb = (size_t)nn_tensor_numel(t) * nn_dtype_size(nn_tensor_dtype(t));
                volatile uint8_t acc = 0;
                for (size_t b = 0; b < nb; b += 64) acc ^= p[b];
                (void)acc;
            }
        }
        nn_model_free(m);
    }
}

/* Free the shared objects (the replay calls it; libFuzzer never exits cleanly). */
void nn_fuzz_teardown(void) {
    nn_module_free(g_net);
    nn_io_options_free(g_opts);
    nn_io_options_free(g_map);
    nn_io_options_free(g_map2);
    if (g_fd >= 0) close(g_fd);
    g_net = NULL;
    g_opts = g_map = g_map2 = NULL;
    g_fd = -1;
}

static void touch(nn_statedict *sd) { /* read every tensor (a mapping's pages too) */
    for (int64_t i = 0; i < nn_statedict_size(sd); i++) {
        nn_tensor *t = nn_statedict_tensor(sd, i);
        const uint8_t *p = nn_tensor_data(t);
        size_t nb = (size_t)nn_tensor_numel(t) * nn_dtype_size(nn_tensor_dtype(t));
        volatile uint8_t acc = 0;
        for (size_t k = 0; k < nb; k += 64) acc ^= p[k];
        if (nb) acc ^= p[nb - 1];
        (void)acc;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_opts) setup();
    nn_meta *meta = NULL;
    nn_statedict *sd = nn_safetensors_load_buffer(data, size, g_opts, &meta);
    if (sd) {
        touch(sd);
        void *out = NULL;
        size_t n = 0;
        if (nn_safetensors_save_buffer(sd, meta, NULL, &out, &n) == NN_OK) {
            nn_statedict *again = nn_safetensors_load_buffer(out, n, g_opts, NULL);
            if (!again || nn_statedict_size(again) != nn_statedict_size(sd)) abort();
            for (int64_t i = 0; i < nn_statedict_size(sd); i++)
                if (strcmp(nn_statedict_name(sd, i), nn_statedict_name(again, i))) abort();
            nn_statedict_free(again);
            nn_free(out);
        }
    }
    nn_meta_free(meta);
    nn_statedict_free(sd);
    char *report = NULL;
    nn_module_load_safetensors_buffer(g_net, data, size, g_opts, &report);
    nn_free(report);
    char path[64];
    if (to_memfd(data, size, path, sizeof path)) {
        nn_statedict *m = nn_safetensors_load(path, g_map, NULL);
        touch(m);
        nn_statedict_free(m);
        load_models(path);
    }
    uint8_t *copy = malloc(size ? size : 1);
    if (copy) {
        if (size) memcpy(copy, data, size);
        fuzz_fix_model(copy, size, true);
        if (to_memfd(copy, size, path, sizeof path)) load_models(path);
        free(copy);
    }
    nn_clear_error();
    return 0;
}
